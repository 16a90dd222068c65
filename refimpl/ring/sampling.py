"""Samplers for RLWE: uniform mod q, uniform and sparse ternary secrets, discrete Gaussian errors.

All secret randomness comes from a `RandomSource`, a cryptographic stream (refimpl.csprng:
AES-256-CTR with fast key erasure) keyed from the operating system. Public uniform polynomials
(the `a` halves of public and switching keys) are expanded from a public 64-bit seed by a
separate deterministic stream (`uniform_from_seed`), never from the stream that makes secrets;
the seeds themselves come from a second OS-keyed stream.

Deterministic runs exist for tests and examples only, through the loudly named
`RandomSource.insecure_seeded(seed)`. `ZeroNoise` makes the errors zero (algebra tests).

The samplers are vectorised (ours): rejection sampling on masked 64-bit words for uniform
residues, on bytes for ternary values, a random h-subset as the h smallest of N random words,
and inversion of the rounded Gaussian's cumulative table (cut at 6 sigma) on 64-bit words.
"""

from __future__ import annotations

from functools import lru_cache
from math import erf, sqrt

import numpy as np

from ..constants import C
from ..csprng import Stream, expand_seed, insecure_key, os_key

SIGMA = C["ckks"]["error_sigma"]
GAUSSIAN_TAIL = 6.0  # errors are cut at 6 sigma (as OpenFHE and the HE standard do)
_ABSENT = object()


def uniform_rows(stream: Stream, moduli: np.ndarray, N: int) -> np.ndarray:
    """[len(moduli), N] uint64, row i uniform in [0, moduli[i]) (rejection on masked words)."""
    out = np.empty((len(moduli), N), dtype=np.uint64)
    for i, q in enumerate(int(x) for x in moduli):
        mask = np.uint64((1 << q.bit_length()) - 1)
        accept = q / float(1 << q.bit_length())  # >= 1/2
        got = 0
        while got < N:
            need = N - got
            w = stream.words(int(need / accept * 1.02) + 64) & mask
            w = w[w < np.uint64(q)][:need]
            out[i, got : got + w.size] = w
            got += w.size
    return out


def _ternary(stream: Stream, N: int) -> np.ndarray:
    out = np.empty(N, dtype=np.int64)
    got = 0
    while got < N:
        b = np.frombuffer(stream.read(int((N - got) * 1.01) + 64), dtype=np.uint8)
        b = b[b < 255][: N - got]  # 255 = 3 * 85: b mod 3 is uniform on the rest
        out[got : got + b.size] = (b % 3).astype(np.int64) - 1
        got += b.size
    return out


@lru_cache(maxsize=8)
def gaussian_table(sigma: float) -> np.ndarray:
    """Thresholds T_k (uint64) of round(N(0, sigma^2)) clipped to [-B, B], B = floor(6 sigma):
    a word w < 2^64 maps to -B + #{k : T_k <= w}; T_k = 2^64 P(X <= -B + k), 2B entries."""
    bound = int(np.floor(GAUSSIAN_TAIL * sigma))
    if bound == 0:
        return np.zeros(0, dtype=np.uint64)
    # P(round(X) <= v) = Phi((v + 1/2) / sigma); the clip puts the tails' mass on -B and B
    cdf = [0.5 * (1.0 + erf((v + 0.5) / (sigma * sqrt(2.0)))) for v in range(-bound, bound)]
    return np.array([min(int(c * 2.0**64), 2**64 - 1) for c in cdf], dtype=np.uint64)


class RandomSource:
    """The four distributions from a cryptographic stream keyed from the OS.

    `RandomSource()` is the only form for real keys. `RandomSource.insecure_seeded(seed)`
    (or `RandomSource(insecure_seed=seed)`) is reproducible and INSECURE: tests and examples."""

    def __init__(self, seed=_ABSENT, *, insecure_seed: int | None = None):
        if seed is not _ABSENT and seed is not None:  # transition: the old seeded form, until its callers move
            insecure_seed = seed
        self.insecure = insecure_seed is not None
        if self.insecure:
            self.stream = Stream(insecure_key(insecure_seed, "ckks secret"))
            self.public = Stream(insecure_key(insecure_seed, "ckks public seeds"))
        else:
            self.stream = Stream(os_key())  # secrets: s, errors, encryption randomness
            self.public = Stream(os_key())  # seeds of public uniform polynomials only

    @classmethod
    def insecure_seeded(cls, seed: int) -> "RandomSource":
        """INSECURE, reproducible: every secret follows from `seed`. Tests and examples only."""
        return cls(insecure_seed=int(seed))

    def uniform(self, moduli: np.ndarray, N: int) -> np.ndarray:
        """Uniform residues: [len(moduli), N] uint64, row i uniform in [0, moduli[i])."""
        return uniform_rows(self.stream, moduli, N)

    def ternary(self, N: int) -> np.ndarray:
        """Uniform ternary {-1, 0, 1}^N."""
        return _ternary(self.stream, N)

    def sparse_ternary(self, N: int, h: int) -> np.ndarray:
        """Exactly h nonzero coefficients, each +-1, at uniform positions (the h smallest of N random words)."""
        if not 0 < h <= N:
            raise ValueError(f"Hamming weight h must be in (0, N={N}], got {h}")
        s = np.zeros(N, dtype=np.int64)
        keys = self.stream.words(N)
        pos = np.argpartition(keys, h - 1)[:h] if h < N else np.arange(N)
        signs = self.stream.words(h) & np.uint64(1)
        s[pos] = 2 * signs.astype(np.int64) - 1
        return s

    def gaussian(self, N: int, sigma: float = SIGMA) -> np.ndarray:
        """Rounded Gaussian of standard deviation sigma, cut at 6 sigma: one 64-bit word per
        coefficient, looked up in the distribution's cumulative table (inversion sampling)."""
        thresholds = gaussian_table(float(sigma))
        if thresholds.size == 0:
            return np.zeros(N, dtype=np.int64)
        bound = thresholds.size // 2
        return np.searchsorted(thresholds, self.stream.words(N), side="right").astype(np.int64) - bound

    def seed(self) -> int:
        """A fresh 64-bit public seed (for the uniform halves of keys): never from the secret stream."""
        return int(self.public.words(1)[0])


class ZeroNoise(RandomSource):
    """Errors are zero: encryptions become exact, for tests of the algebra only."""

    def gaussian(self, N: int, sigma: float = SIGMA) -> np.ndarray:
        return np.zeros(N, dtype=np.int64)


def uniform_from_seed(seed: int, moduli: np.ndarray, N: int) -> np.ndarray:
    """The public uniform polynomial a seeded XOF expands from `seed` (seeded key halves)."""
    return uniform_rows(expand_seed(seed, "uniform"), moduli, N)
