"""DESILO FHE (CPU) CKKS per-operation timings, run by refimpl.bench.peers in the desilo venv.

Reads a config JSON on stdin, prints one JSON document. Standalone: needs desilofhe, numpy.
DESILO picks N and its own prime chain from max_level (= levels): 0-2 -> 2^13, 3-7 -> 2^14,
8-17 -> 2^15, 18-36 -> 2^16, and states 128-bit security; it cannot be asked for a given
prime size, dnum or security level. Its multiply (ct-ct and pt-ct) rescales automatically,
so "mul+relin" and "pt-ct mul" include a rescale and there is no separate "rescale".
"""

import importlib.metadata
import json
import math
import statistics
import sys
import time

import desilofhe
import numpy as np


def median_s(fn, reps):
    """Median seconds of `reps` timed calls of fn() after one untimed warm-up."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    cfg = {"N": 1 << 13, "log_q0": 60, "log_qi": 40, "levels": 2, "dnum": None, "reps": 5,
           "threads": None, "security": "128"}
    cfg.update(json.load(sys.stdin))
    reps = cfg["reps"]
    engine = desilofhe.Engine(max_level=cfg["levels"], mode="cpu", thread_count=cfg["threads"])
    n, slots = 2 * engine.slot_count, engine.slot_count
    notes = [f"DESILO chose its own prime chain for max_level={cfg['levels']} "
             "(prime sizes, dnum and special primes not exposed; log_q0/log_qi/dnum ignored)",
             "security: the library states 128-bit and has no switch; config security ignored",
             "mul+relin and pt-ct mul include DESILO's automatic rescale; no separate rescale"]
    if n != cfg["N"]:
        notes.append(f"asked N={cfg['N']}, DESILO chose N={n} for max_level={cfg['levels']}")
    sk = engine.create_secret_key()
    pk = engine.create_public_key(sk)
    rlk = engine.create_relinearization_key(sk)
    rot_key = engine.create_fixed_rotation_key(sk, delta=1)
    rng = np.random.default_rng(1)
    x, y = rng.uniform(-1, 1, slots), rng.uniform(-1, 1, slots)
    c1, c2 = engine.encrypt(x, pk), engine.encrypt(y, pk)
    pt_y = engine.encode(y)
    limbs = cfg["levels"] + 1  # levels above the base, as DESILO counts them
    words = c1.nbytes // (2 * n * 8)  # 64-bit residues per coefficient: DESILO's real RNS limbs
    notes.append(f"limbs = max_level + 1; a fresh ciphertext holds {words} 64-bit residues per "
                 f"coefficient ({c1.nbytes} bytes): DESILO's chain differs from one prime per level")
    err = float(np.max(np.abs(engine.decrypt(engine.multiply(c1, c2, rlk), sk) - x * y)))
    rot_err = float(np.max(np.abs(engine.decrypt(engine.rotate(c1, rot_key), sk) - np.roll(x, -1))))
    if rot_err > 1e-3:  # DESILO's rotation direction differs from SEAL/OpenFHE's left shift?
        right = float(np.max(np.abs(engine.decrypt(engine.rotate(c1, rot_key), sk) - np.roll(x, 1))))
        notes.append("rotate by 1 moves slots right (np.roll(x, 1))" if right < 1e-3
                     else f"rotation check failed: max error {rot_err:.3g}")
    c1_coeff = engine.intt(c1)  # coefficient form: 2 polynomials x limbs
    ops = {
        "ntt": lambda: engine.ntt(c1_coeff),
        "encode+encrypt": lambda: engine.encrypt(engine.encode(x), pk),
        "add": lambda: engine.add(c1, c2),
        "pt-ct mul": lambda: engine.multiply(c1, pt_y),
        "mul+relin": lambda: engine.multiply(c1, c2, rlk),
        "rotate": lambda: engine.rotate(c1, rot_key),
        "decrypt+decode": lambda: engine.decrypt(c1, sk),
    }
    timings = {name: median_s(fn, reps) for name, fn in ops.items()}
    timings["ntt"] /= 2 * words
    notes.append(f"ntt: Engine.ntt of a coefficient-form ciphertext / (2 polys x {words} residues), "
                 "per 64-bit residue")
    sizes = {
        "ciphertext": len(engine.serialize_ciphertext(c1)),
        "relin_key": len(engine.serialize_relinearization_key(rlk)),
        "rotation_key": len(engine.serialize_fixed_rotation_key(rot_key)),
    }
    notes.append("sizes: DESILO serialize_* bytes")
    print(json.dumps({
        "peer": "desilo", "version": importlib.metadata.version("desilofhe"), "N": n,
        "limbs": limbs, "residues": words, "log_q": None, "log_qp": None,
        "security": "library default (stated 128-bit)",
        "ops": timings, "sizes": sizes, "max_err_log2": math.log2(err) if err > 0 else None,
        "threads": cfg["threads"], "notes": notes,
    }))


if __name__ == "__main__":
    main()
