"""`refimpl bench ckks`: RNS-CKKS operations at N = 2^13 .. 2^16, beside OpenFHE, SEAL and DESILO.

For each N, the 128-bit preset of refimpl (one 60-bit q_0, 40-bit scaling primes, 60-bit special
primes; refimpl/constants.toml bounds) and the same modulus in each peer (a 60-bit first prime plus
the same number of 40-bit primes), measured in the same run, each peer in its own venv
(refimpl.bench.peers). Per operation: median seconds over `reps` runs after a warm-up, one
thread and default threads, and the ratio refimpl / peer. The NTT is compared per limb and per
modulus bit. Sizes: serialized ciphertext and keys in bytes.
"""

from __future__ import annotations

import platform

import numpy as np

from ..ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, preset
from ..ckks import serialize as S
from ..ring.ntt import ntt_inplace
from ..ring.sampling import RandomSource
from . import peers
from .common import Report, median_s, set_threads, thread_modes

CKKS_PEERS = ("openfhe", "seal", "desilo")
OPS = ["ntt", "encode+encrypt", "add", "pt-ct mul", "mul+relin", "rescale", "rotate", "decrypt+decode"]


def measure_refimpl(N: int, reps: int) -> dict:
    """Times of every operation at the 128-bit preset for N (current thread setting)."""
    p = preset(f"128-2^{N.bit_length() - 1}")
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    sk = kg.secret_key()
    pk = kg.public_key(sk)
    ek = kg.evaluation_keys(sk, rotations=[1])
    enc, E, D, ev = Encoder(p), Encryptor(pk, RandomSource.insecure_seeded(2)), Decryptor(sk), Evaluator(p, ek)
    rng = np.random.default_rng(0)
    z, w = rng.uniform(-1, 1, p.slots), rng.uniform(-1, 1, p.slots)
    a, b = E.encrypt(enc.encode(z)), E.encrypt(enc.encode(w))
    pt = enc.encode(w)
    prod = ev.multiply(a, b)
    limb = np.ascontiguousarray(a.c[0][:1])
    t1 = p.ctx.tables((0,))
    ops = {
        "ntt": lambda: ntt_inplace(limb, t1),
        "encode+encrypt": lambda: E.encrypt(enc.encode(z)),
        "add": lambda: ev.add(a, b),
        "pt-ct mul": lambda: ev.mul_plain(a, pt),
        "mul+relin": lambda: ev.multiply(a, b),
        "rescale": lambda: ev.rescale(prod),
        "rotate": lambda: ev.rotate(a, 1),
        "decrypt+decode": lambda: enc.decode(D.decrypt(a)),
    }
    times = {name: median_s(fn, reps) for name, fn in ops.items()}
    err = np.max(np.abs(enc.decode(D.decrypt(ev.rescale(prod))) - z * w))
    sizes = {
        "ciphertext": len(S.serialize_ciphertext(a)),
        "relin_key": len(S.serialize_switching_key(ek.relin)),
        "rotation_key": len(S.serialize_switching_key(next(iter(ek.galois.values())))),
    }
    return {
        "N": N, "limbs": len(p.q), "special_primes": len(p.p), "dnum": p.dnum, "log_qp": round(p.log_qp, 1),
        "security": p.security_note, "ops": times, "sizes": sizes, "max_err_log2": float(np.log2(err)),
        "ntt_prime_bits": p.q[0].bit_length(),
    }


def measure_bootstrap(cfg: dict, timeout: float = 7200) -> dict:
    """refimpl's bootstrap in its own process (its own peak memory): refimpl.bench.bootjob."""
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "refimpl.bench.bootjob", json.dumps(cfg)],
                       capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        return {"error": (r.stderr or r.stdout).strip().splitlines()[-1:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def bench_bootstrap(report: Report, mode: str, quick: bool, use_peers: bool = True) -> None:
    """Bootstrap rows: refimpl and OpenFHE's EvalBootstrap in the same run at the same N, slots
    and level budget: at N = 2^12 also the same secret (sparse, h = 192) and security flag
    (none); at N = 2^16 refimpl's 128-bit set beside OpenFHE's own chain with the same levels
    after bootstrapping (OpenFHE refuses 128-bit for it: "ring dimension ... 131072")."""
    reps = 2 if quick else 3
    cases = [(2**12, {"N": 2**12, "levels_after": 2, "h": 192, "insecure": True},
              {"levels_after": 2, "secret": "sparse", "security": "none"})]
    if not quick:  # our 128-bit set; OpenFHE refuses 128-bit here, so it runs its own insecure chain
        cases.append((2**16, {"preset": "128-2^16-dense19", "expand_keys": False},
                      {"levels_after": 19, "secret": "uniform", "security": "none"}))
    for N, our_cfg, peer_cfg in cases:
        ours = measure_bootstrap({**our_cfg, "level_budget": [3, 3], "reps": reps if N < 2**16 else 2, "threads": mode})
        peer = peers.run_peer("openfhe", "boot_openfhe", {
            "N": N, "slots": N // 2, "level_budget": [3, 3], **peer_cfg,
            "reps": reps if N < 2**16 else 1, "threads": 1 if mode == "1" else None}, timeout=3600) \
            if use_peers else {"peer": "openfhe", "missing": "not run (--no-peers)"}
        rec = {"name": "ckks.bootstrap", "N": N, "slots": N // 2, "threads": mode, "refimpl": ours}
        if "missing" not in peer and ours.get("median_s"):
            rec.update(peer="openfhe", peer_median_s=peer.get("median_s"),
                       ratio=ours["median_s"] / peer["median_s"] if peer.get("median_s") else None,
                       peer_precision_bits=peer.get("precision_bits"), peer_peak_rss_mib=peer.get("peak_rss_mib"),
                       peer_notes=peer.get("notes"))
        else:
            rec["peer_missing"] = peer.get("missing")
        report.emit(rec)


def main(quick: bool = False, json_path: str | None = None, threads: str | None = None, use_peers: bool = True) -> int:
    """use_peers=False (--no-peers): refimpl alone; no peer venv is created or run."""
    report = Report("ckks", json_path)
    sizes = [2**13, 2**14] if quick else [2**13, 2**14, 2**15, 2**16]
    reps = 3 if quick else 5
    peer_names = list(CKKS_PEERS) if use_peers else []
    for mode in thread_modes(threads):
        n_threads = set_threads(mode)
        for N in sizes:
            report.note(f"N = 2^{N.bit_length() - 1}, threads = {mode}: refimpl")
            ours = measure_refimpl(N, reps)
            theirs = {}
            for name in peer_names:
                report.note(f"N = 2^{N.bit_length() - 1}, threads = {mode}: {name}")
                cfg = {"N": N, "log_q0": 60, "log_qi": 40, "levels": ours["limbs"] - 1, "dnum": None,
                       "reps": reps, "threads": 1 if mode == "1" else None, "security": "128"}
                theirs[name] = peers.run_peer(name, f"ckks_{name}", cfg, timeout=3600)
            for op in OPS:
                rec = {
                    "name": f"ckks.{op}", "N": N, "limbs": ours["limbs"], "log_qp": ours["log_qp"],
                    "threads": mode, "numba_threads": n_threads, "median_s": ours["ops"][op],
                }
                if op == "ntt":
                    rec["unit"] = "one limb"
                    rec["s_per_bit"] = ours["ops"][op] / ours["ntt_prime_bits"]
                peer_rows = {}
                for name, doc in theirs.items():
                    if "missing" in doc:
                        continue
                    t = doc.get("ops", {}).get(op)
                    if t:
                        row = {"median_s": t, "ratio": ours["ops"][op] / t}
                        if op == "ntt":  # peers' primes: modulus bits per limb of their chain
                            bits = (doc.get("log_q") or (60 + 40 * (ours["limbs"] - 1))) / doc.get("limbs", ours["limbs"])
                            row["s_per_bit"] = t / bits
                            row["ratio_per_bit"] = rec["s_per_bit"] / row["s_per_bit"]
                        peer_rows[name] = row
                if peer_rows:
                    best = min(peer_rows, key=lambda k: peer_rows[k]["median_s"])
                    rec.update(peer=best, peer_median_s=peer_rows[best]["median_s"], ratio=peer_rows[best]["ratio"])
                    rec["peers"] = peer_rows
                report.emit(rec)
            report.emit({
                "name": "ckks.sizes", "N": N, "threads": mode, "bytes": ours["sizes"],
                "max_err_log2_after_mul_rescale": ours["max_err_log2"], "security": ours["security"],
                "dnum": ours["dnum"], "special_primes": ours["special_primes"],
                "peers": {k: ({"missing": v["missing"]} if "missing" in v else
                              {"bytes": v.get("sizes"), "max_err_log2": v.get("max_err_log2"),
                               "security": v.get("security"), "version": v.get("version"), "notes": v.get("notes")})
                          for k, v in theirs.items()},
            })
        report.note(f"bootstrap, threads = {mode}")
        bench_bootstrap(report, mode, quick, use_peers)
    report.close({"machine": platform.processor() or platform.machine(), "quick": quick})
    return 0
