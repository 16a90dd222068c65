"""The fused plaintext multiply-accumulate against the chain it replaces (ours).

sum_k ct_k * pt_k, the inner sum of a giant step of the linear layers (refimpl.nexus.bert.forward,
Forward.linear), computed two ways on the same operands in one process, alternately (so the ratio is
taken under the same machine load): the chain `Evaluator.mul_plain` + `Evaluator.add` per term, and
`Evaluator.mul_plain_sum` (one pass, 128-bit lazy sums, one reduction per coefficient). Both results
are compared bit for bit. The operands cycle through `distinct` ciphertexts and plaintexts (8: each
21 MB at N = 2^16, level 19, far above the caches, so reuse buys no cache hits) to keep the memory
under 1 GiB whatever the number of terms.

Parameters: the 128-bit preset 128-2^16-dense19 (N = 2^16), level 19 (20 limbs); --quick: an insecure
N = 2^12 ring (timing of the code path only).

Run: refimpl bench mac [--quick] [--threads 1|default|both] [--json FILE]
"""

from __future__ import annotations

import os
import time
from statistics import median

import numpy as np

from ..ckks import Encoder, Encryptor, Evaluator, KeyGenerator
from ..ckks.bootstrap.bootstrapper import bootstrap_parameters, bootstrap_preset
from ..measure import peak_rss_mib
from ..ring.sampling import RandomSource
from .common import Report, set_threads, thread_modes

PRESET, LEVEL, TERMS = "128-2^16-dense19", 19, (16, 64, 192)


def operands(params, level: int, distinct: int = 8):
    """`distinct` fresh ciphertexts and plaintexts at `level` (insecure seeded: timing only); product scale q_level."""
    kg = KeyGenerator(params, RandomSource.insecure_seeded(1))
    sk = kg.secret_key()
    enc, E = Encoder(params), Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(2))
    rng = np.random.default_rng(0)
    cts = [E.encrypt(enc.encode(rng.uniform(-1, 1, params.slots), level=level)) for _ in range(distinct)]
    pts = [enc.encode(rng.uniform(-1, 1, params.slots), level=level, scale=float(params.q[level]))
           for _ in range(distinct)]
    return cts, pts


def chain(ev: Evaluator, cts, pts, terms: int):
    """sum of `terms` products, one mul_plain and one add per term (operands cycled)."""
    acc = None
    for k in range(terms):
        t = ev.mul_plain(cts[k % len(cts)], pts[k % len(pts)])
        acc = t if acc is None else ev.add(acc, t)
    return acc


def fused(ev: Evaluator, cts, pts, terms: int):
    """The same sum by mul_plain_sum."""
    return ev.mul_plain_sum((cts[k % len(cts)] for k in range(terms)), (pts[k % len(pts)] for k in range(terms)))


def compare(ev: Evaluator, cts, pts, terms: int, reps: int) -> dict:
    """Wall and process CPU seconds of both, median of `reps` alternate runs (after a warm-up each)."""
    a, b = chain(ev, cts, pts, terms), fused(ev, cts, pts, terms)
    same = all(np.array_equal(x, y) for x, y in zip(a.c, b.c))
    del a, b
    times: dict = {"chain": ([], []), "fused": ([], [])}
    for _ in range(reps):
        for name, f in (("chain", chain), ("fused", fused)):
            w, c = time.perf_counter(), time.process_time()
            f(ev, cts, pts, terms)
            times[name][0].append(time.perf_counter() - w)
            times[name][1].append(time.process_time() - c)
    out = {"terms": terms, "bit_identical": same}
    for name, (wall, cpu) in times.items():
        out[f"{name}_s"] = round(median(wall), 4)
        out[f"{name}_cpu_s"] = round(median(cpu), 4)
        out[f"{name}_ms_per_term"] = round(1e3 * median(wall) / terms, 3)
    out["ratio_chain_over_fused"] = round(out["chain_s"] / out["fused_s"], 2)
    out["cpu_ratio_chain_over_fused"] = round(out["chain_cpu_s"] / out["fused_cpu_s"], 2)  # steadier on a loaded machine
    return out


def main(quick: bool = False, json_path: str | None = None, threads: str | None = None) -> int:
    """`refimpl bench mac`: chain vs fused at 16, 64 and 192 terms, on 1 and all numba threads."""
    if quick:
        params, _ = bootstrap_parameters(1 << 12, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)
        terms, reps, security = (4, 16), 2, "INSECURE N = 2^12 ring (timing of the code path only)"
    else:
        params, _ = bootstrap_preset(PRESET)
        terms, reps, security = TERMS, 3, f"{PRESET}: {params.security_note}"
    rep = Report("mac", json_path)
    rep.note(security)
    cts, pts = operands(params, LEVEL)
    ev = Evaluator(params)
    for mode in thread_modes(threads):
        n = set_threads(mode)
        for k in terms:
            rep.emit({"threads": n, "N": params.N, "level": LEVEL, "limbs": LEVEL + 1, **compare(ev, cts, pts, k, reps)})
    rep.close({"command": f"refimpl bench mac{' --quick' if quick else ''} --threads {threads or 'both'}"
                          f"{f' --json {json_path}' if json_path else ''}",
               "preset": None if quick else PRESET, "security": security, "N": params.N, "level": LEVEL,
               "distinct_operands": len(cts), "load_average": os.getloadavg(), "peak_rss_mib": round(peak_rss_mib())})
    return 0
