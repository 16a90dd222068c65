"""Automorphisms sigma_k: a(X) -> a(X^k) of Z_q[X]/(X^N + 1), k odd, in both domains.

Coefficient domain: coefficient i moves to i k mod 2N, negated when that index is >= N
(because X^N = -1). NTT domain (bit-reversed order, a_hat[i] = a(psi^(2 brv(i) + 1))): a pure
permutation, sigma_k(a)_hat[i] = a_hat[j] with 2 brv(j) + 1 = (2 brv(i) + 1) k mod 2N.
Rotation of CKKS slots by r is k = 5^r mod 2N, conjugation k = 2N - 1.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .ntt import bit_reverse_permutation


def _check_k(k: int, N: int) -> int:
    k = int(k) % (2 * N)
    if k % 2 == 0:
        raise ValueError(f"automorphism X -> X^k needs an odd k (a unit mod 2N = {2 * N}), got {k}")
    return k


@lru_cache(maxsize=256)
def coeff_permutation(k: int, N: int) -> tuple[np.ndarray, np.ndarray]:
    """(dest, negate): coefficient i of a goes to dest[i] of sigma_k(a), negated where negate[i]."""
    k = _check_k(k, N)
    e = (np.arange(N, dtype=np.int64) * k) % (2 * N)
    return e % N, e >= N


@lru_cache(maxsize=256)
def ntt_permutation(k: int, N: int) -> np.ndarray:
    """src with sigma_k(a)_hat = a_hat[:, src] in the bit-reversed NTT domain."""
    k = _check_k(k, N)
    brv = bit_reverse_permutation(N)
    e = ((2 * brv + 1) * k) % (2 * N)  # exponent reached by output slot i
    return brv[(e - 1) // 2].astype(np.int64)


def automorphism_coeff(a: np.ndarray, k: int, q: np.ndarray) -> np.ndarray:
    """sigma_k of residues a [L, N] in the coefficient domain."""
    N = a.shape[-1]
    dest, neg = coeff_permutation(k, N)
    out = np.empty_like(a)
    vals = np.where(neg[None, :] & (a != 0), q[:, None] - a, a)
    out[:, dest] = vals
    return out


def automorphism_ntt(a: np.ndarray, k: int) -> np.ndarray:
    """sigma_k of residues a [L, N] in the NTT domain (a permutation of every limb)."""
    return np.take(a, ntt_permutation(k, a.shape[-1]), axis=-1)
