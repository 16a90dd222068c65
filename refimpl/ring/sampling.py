"""Samplers for RLWE: uniform mod q, uniform and sparse ternary secrets, discrete Gaussian errors.

All randomness comes from an injectable `RandomSource` (a seeded numpy Generator), so runs are
reproducible and tests can swap in `ZeroNoise` to check the exact algebra.
"""

from __future__ import annotations

import numpy as np

from ..constants import C

SIGMA = C["ckks"]["error_sigma"]
GAUSSIAN_TAIL = 6.0  # errors are cut at 6 sigma (as OpenFHE and the HE standard do)


class RandomSource:
    """Seeded source of the four distributions. `seed=None` draws fresh OS entropy."""

    def __init__(self, seed: int | None = None):
        self.rng = np.random.default_rng(seed)

    def uniform(self, moduli: np.ndarray, N: int) -> np.ndarray:
        """Uniform residues: [len(moduli), N] uint64, row i uniform in [0, moduli[i])."""
        return np.stack([self.rng.integers(0, int(q), N, dtype=np.uint64) for q in moduli])

    def ternary(self, N: int) -> np.ndarray:
        """Uniform ternary {-1, 0, 1}^N."""
        return self.rng.integers(-1, 2, N, dtype=np.int64)

    def sparse_ternary(self, N: int, h: int) -> np.ndarray:
        """Exactly h nonzero coefficients, each +-1, at uniform positions."""
        if not 0 < h <= N:
            raise ValueError(f"Hamming weight h must be in (0, N={N}], got {h}")
        s = np.zeros(N, dtype=np.int64)
        pos = self.rng.choice(N, size=h, replace=False)
        s[pos] = self.rng.choice(np.array([-1, 1], dtype=np.int64), size=h)
        return s

    def gaussian(self, N: int, sigma: float = SIGMA) -> np.ndarray:
        """Rounded Gaussian of standard deviation sigma, cut at 6 sigma."""
        e = np.rint(self.rng.normal(0.0, sigma, N))
        bound = np.floor(GAUSSIAN_TAIL * sigma)
        return np.clip(e, -bound, bound).astype(np.int64)

    def seed(self) -> int:
        """A fresh 64-bit seed (for seeded uniform halves of keys)."""
        return int(self.rng.integers(0, 2**63 - 1, dtype=np.int64))


class ZeroNoise(RandomSource):
    """Errors are zero: encryptions become exact, for tests of the algebra only."""

    def gaussian(self, N: int, sigma: float = SIGMA) -> np.ndarray:
        return np.zeros(N, dtype=np.int64)


def uniform_from_seed(seed: int, moduli: np.ndarray, N: int) -> np.ndarray:
    """The uniform polynomial a PRG expands from `seed` (how seeded key halves are stored)."""
    return RandomSource(seed).uniform(moduli, N)
