"""One bootstrap measurement in its own process (so that peak memory is its own, refimpl.measure): JSON in, JSON out.

Usage: python -m refimpl.bench.bootjob '{"N": 4096, "levels_after": 2, "h": 192, "level_budget": [3, 3],
                                         "reps": 3, "threads": "1", "insecure": true}'
("cache_diagonals": false encodes CoeffsToSlots' and SlotsToCoeffs' diagonals in every bootstrap;
by default they are encoded once, at setup, timed apart as setup_s, and kept: diagonal_bytes.)
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np

from ..ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from ..ckks.bootstrap.bootstrapper import BootstrapConfig, Bootstrapper, bootstrap_parameters, bootstrap_preset
from ..ckks.precision import precision_bits
from ..measure import peak_rss_mib
from ..ring.sampling import RandomSource
from .common import median_s, set_threads


def run(cfg: dict) -> dict:
    threads = set_threads(str(cfg.get("threads", "1")))
    bc = BootstrapConfig(level_budget=tuple(cfg.get("level_budget", (3, 3))))
    if cfg.get("params"):  # explicit bootstrap_parameters(**params): chain experiments
        p, rc = bootstrap_parameters(config=bc, **cfg["params"])
    elif cfg.get("preset"):
        p, rc = bootstrap_preset(cfg["preset"], bc)
    else:
        p, rc = bootstrap_parameters(
            cfg["N"], cfg.get("levels_after", 2), h=cfg.get("h", 192), config=bc,
            num_p=cfg.get("num_p", 3), insecure=cfg.get("insecure", False),
        )
    t = time.perf_counter()
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1), expand_keys=cfg.get("expand_keys", True))
    sk = kg.secret_key()
    pk = kg.public_key(sk)
    elements = Bootstrapper(Evaluator(p), rc).galois_elements()
    ek = kg.evaluation_keys(sk, elements=elements)
    encaps = kg.encapsulation_keys(sk, kg.secret_key(hamming_weight=rc.encapsulation_h)) if rc.encapsulation_h else None
    keygen_s = time.perf_counter() - t
    ev = Evaluator(p, ek)
    bs = Bootstrapper(ev, rc, encapsulation=encaps, cache_diagonals=cfg.get("cache_diagonals", True))
    t = time.perf_counter()
    diagonal_bytes = bs.precompute()  # setup, outside the timed bootstraps (as OpenFHE's EvalBootstrapSetup)
    setup_s = time.perf_counter() - t
    enc, D = Encoder(p), Decryptor(sk)
    rng = np.random.default_rng(0)
    z = rng.uniform(-1, 1, p.slots)
    ct = ev.drop_level(Encryptor(pk, RandomSource.insecure_seeded(2)).encrypt(enc.encode(z)), 0)
    out = bs.bootstrap(ct)
    prec = precision_bits(enc.decode(D.decrypt(out)).real, z)
    reps = cfg.get("reps", 3)
    med = median_s(lambda: bs.bootstrap(ct), reps - 1) if reps > 1 else None
    return {
        "preset": cfg.get("preset"), "N": p.N, "slots": p.slots, "limbs": len(p.q), "special_primes": len(p.p), "dnum": p.dnum,
        "log_qp": round(p.log_qp, 1), "security": p.security_note, "h": p.h,
        "K": rc.eval_mod.K, "degree": rc.eval_mod.degree, "double_angle": rc.eval_mod.double_angle,
        "level_budget": list(rc.level_budget), "depth": rc.depth, "output_level": bs.output_level,
        "log2_failure": rc.log2_failure, "galois_keys": len(ek.galois),
        "key_bytes_in_memory": sum(k.nbytes for k in ek.galois.values()) + (ek.relin.nbytes if ek.relin else 0)
        + (sum(k.nbytes for k in encaps) if encaps else 0),
        "encapsulation_h": rc.encapsulation_h, "secret": p.secret,
        "keygen_s": keygen_s, "setup_s": setup_s, "cache_diagonals": bs.cache_diagonals,
        "diagonal_bytes": diagonal_bytes, "encoded_in_bootstrap": bs.encoded_in_bootstrap, "median_s": med, "precision_bits": prec, "threads": threads,
        "peak_rss_mib": peak_rss_mib(),
    }


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
