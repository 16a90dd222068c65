"""What the cryptographic randomness source costs: key generation and encryption, before and after.

"before" is the former generator (numpy's PCG64, not cryptographic), rebuilt here for the
comparison only: `PCG64Source` draws the secret, the errors and the encryption randomness
from PCG64, and the uniform halves of switching keys are expanded by PCG64 from their seeds.
"after" is refimpl's RandomSource (AES-256-CTR with fast key erasure, refimpl.csprng). Both
run in one process, alternately, so the ratio is taken under the same machine load.

Also measured: the raw throughput of the candidate primitives (PCG64, SHAKE-128/256 of the
standard library, AES-256-CTR and ChaCha20 of the `cryptography` package).

Run: refimpl bench csprng [--quick] [--json FILE]
"""

from __future__ import annotations

import hashlib
import os
import time
from contextlib import contextmanager, nullcontext
from statistics import median

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..ckks import keys as ckks_keys
from ..ckks.encoder import Encoder
from ..ckks.encryptor import Encryptor
from ..ckks.keys import KeyGenerator
from ..ckks.params import preset
from ..ring.sampling import SIGMA, GAUSSIAN_TAIL, RandomSource
from .common import Report


class PCG64Source(RandomSource):
    """The former sampler (numpy PCG64): NOT cryptographic; here only to measure the change."""

    def __init__(self, seed: int):
        super().__init__(insecure_seed=seed)
        self.rng = np.random.default_rng(seed)

    def uniform(self, moduli, N):
        return np.stack([self.rng.integers(0, int(q), N, dtype=np.uint64) for q in moduli])

    def ternary(self, N):
        return self.rng.integers(-1, 2, N, dtype=np.int64)

    def gaussian(self, N, sigma=SIGMA):
        e = np.rint(self.rng.normal(0.0, sigma, N))
        bound = np.floor(GAUSSIAN_TAIL * sigma)
        return np.clip(e, -bound, bound).astype(np.int64)

    def seed(self):
        return int(self.rng.integers(0, 2**63 - 1, dtype=np.int64))


def pcg64_from_seed(seed, moduli, N):
    return PCG64Source(seed).uniform(moduli, N)


@contextmanager
def former_generator():
    """Inside: switching keys expand their uniform halves with PCG64, as before."""
    keep = ckks_keys.uniform_from_seed
    ckks_keys.uniform_from_seed = pcg64_from_seed
    try:
        yield
    finally:
        ckks_keys.uniform_from_seed = keep


def primitives(mb: int) -> dict:
    """MB/s of each candidate stream (best of 3)."""
    n = mb << 20
    zeros = bytes(n)
    key = os.urandom(32)
    rng = np.random.default_rng(1)
    cands = {
        "pcg64_numpy": lambda: rng.bit_generator.random_raw(n // 8),
        "shake_256": lambda: hashlib.shake_256(key).digest(n),
        "shake_128": lambda: hashlib.shake_128(key).digest(n),
        "aes_256_ctr": lambda: Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor().update(zeros),
        "chacha20": lambda: Cipher(algorithms.ChaCha20(key, bytes(16)), None).encryptor().update(zeros),
    }
    out = {}
    for name, f in cands.items():
        best = min(_time(f) for _ in range(3))
        out[name] = round(n / best / 1e6, 1)
    return out


def _time(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def keygen_encrypt(params_name: str, reps: int) -> dict:
    """Median / min seconds of (secret + public + relinearization key) and of one encryption,
    before and after, the two timed alternately (one of each per repetition)."""
    p = preset(params_name)
    pt = Encoder(p).encode(np.linspace(-1, 1, p.slots))
    sides = {"before_pcg64": (lambda: PCG64Source(1), former_generator),
             "after_aes_ctr": (RandomSource, nullcontext)}

    def keygen(make):
        kg = KeyGenerator(p, make(), expand_keys=False)
        sk = kg.secret_key()
        return kg.public_key(sk), kg.relin_key(sk)

    times = {k: {"keygen": [], "encrypt": []} for k in sides}
    encryptors = {}
    for r in range(reps + 1):  # the first round warms up
        for name, (make, ctx) in sides.items():
            with ctx():
                t = time.perf_counter()
                pk, _ = keygen(make)
                dt = time.perf_counter() - t
                encryptors.setdefault(name, Encryptor(pk, make()))
                t = time.perf_counter()
                encryptors[name].encrypt(pt)
                de = time.perf_counter() - t
            if r:
                times[name]["keygen"].append(dt)
                times[name]["encrypt"].append(de)
    row = {"params": params_name, "N": p.N, "limbs": len(p.q) + len(p.p), "reps": reps,
           "keygen": "secret + public + relinearization key (seeded a halves)", "encrypt": "one public-key encryption"}
    for name, t in times.items():
        row[name] = {f"{k}_s": round(median(v), 4) for k, v in t.items()} | {f"{k}_min_s": round(min(v), 4) for k, v in t.items()}
    b, a = row["before_pcg64"], row["after_aes_ctr"]
    row["ratio_after_over_before"] = {k: round(a[f"{k}_s"] / b[f"{k}_s"], 3) for k in ("keygen", "encrypt")}
    return row


def main(quick: bool = False, json_path: str | None = None, threads: str | None = None) -> int:
    """`refimpl bench csprng`: stream throughput, then key generation and encryption before and after (threads: unused)."""
    rep = Report("csprng", json_path)
    rep.emit({"what": "stream throughput MB/s", **primitives(8 if quick else 64)})
    rep.emit({"what": "keygen and encryption", **keygen_encrypt("toy-4096" if quick else "128-2^16", 2 if quick else 5)})
    rep.close()
    return 0

