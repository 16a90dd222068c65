"""Negacyclic NTT over Z_q[X]/(X^N + 1), per limb and over all RNS limbs at once (numba).

Forward: Cooley-Tukey butterflies with the powers of psi in bit-reversed order; the output
is in bit-reversed order, a_hat[i] = a(psi^(2 brv(i) + 1)). Inverse: Gentleman-Sande, the
mirror image, followed by the factor N^-1. Butterflies reduce lazily (Harvey 2014): values
stay in [0, 4q) inside the forward transform and [0, 2q) inside the inverse.

Reference: Longa and Naehrig, "Speeding up the NTT", CANS 2016 (Alg. 1 and 2); Harvey 2014.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numba as nb
import numpy as np

from .modarith import barrett_constants, mul_shoup_lazy, powers_mod, shoup_companions, shoup_constant
from .primes import primitive_root_2n

U64 = np.uint64


def bit_reverse_permutation(N: int) -> np.ndarray:
    """brv[i] = i with its log2(N) bits reversed."""
    logn = N.bit_length() - 1
    idx = np.arange(N, dtype=np.int64)
    rev = np.zeros(N, dtype=np.int64)
    for b in range(logn):
        rev |= ((idx >> b) & 1) << (logn - 1 - b)
    return rev


@dataclass(frozen=True, eq=False)
class NTTTables:
    """Twiddles of a set of primes, stacked as [P, N] arrays (Shoup companions beside), and the
    rows in use: limb l of an array is transformed with the tables of prime rows[l]. A subset
    shares the arrays of the whole set (no copies: at N = 2^16 a copy per basis would cost
    60 MB, and key switching meets hundreds of bases)."""

    N: int
    q_all: np.ndarray  # [P] uint64
    psi_rev: np.ndarray  # [P, N]  psi^brv(i)
    psi_rev_shoup: np.ndarray
    psi_inv_rev: np.ndarray  # [P, N]  psi^-brv(i)
    psi_inv_rev_shoup: np.ndarray
    n_inv: np.ndarray  # [P]
    n_inv_shoup: np.ndarray
    rows: np.ndarray  # [L] int64: the primes in use, in limb order

    @property
    def q(self) -> np.ndarray:
        """The moduli of the limbs in use."""
        return self.q_all[self.rows]

    def select(self, rows) -> "NTTTables":
        """The tables of a subset of the primes in use (rows: index array into this set)."""
        return NTTTables(
            self.N, self.q_all, self.psi_rev, self.psi_rev_shoup, self.psi_inv_rev, self.psi_inv_rev_shoup,
            self.n_inv, self.n_inv_shoup, np.ascontiguousarray(self.rows[rows], dtype=np.int64),
        )


@lru_cache(maxsize=None)
def _prime_tables(q: int, N: int) -> tuple[np.ndarray, ...]:
    psi = primitive_root_2n(q, N)
    psi_inv = pow(psi, -1, q)
    mu, k = barrett_constants(q)
    brv = bit_reverse_permutation(N)
    qq = U64(q)
    fwd = powers_mod(U64(psi), N, qq, U64(mu), U64(k))[brv]
    inv = powers_mod(U64(psi_inv), N, qq, U64(mu), U64(k))[brv]
    n_inv = pow(N, -1, q)
    return (
        np.ascontiguousarray(fwd), shoup_companions(np.ascontiguousarray(fwd), qq),
        np.ascontiguousarray(inv), shoup_companions(np.ascontiguousarray(inv), qq),
        n_inv, shoup_constant(n_inv, q),
    )


def make_tables(primes, N: int) -> NTTTables:
    """Stack the NTT tables of the given primes."""
    rows = [_prime_tables(int(q), N) for q in primes]
    return NTTTables(
        N,
        np.array([int(q) for q in primes], dtype=U64),
        np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows]),
        np.stack([r[2] for r in rows]), np.stack([r[3] for r in rows]),
        np.array([r[4] for r in rows], dtype=U64), np.array([r[5] for r in rows], dtype=U64),
        np.arange(len(primes), dtype=np.int64),
    )


@nb.njit(cache=True, nogil=True, fastmath=False)
def forward_limb(a, q, w, ws):
    """In-place forward NTT of one limb; output fully reduced, bit-reversed order."""
    N = a.shape[0]
    two_q = q + q
    four_q = two_q + two_q
    t = N
    m = 1
    while m < N:
        t >>= 1
        for i in range(m):
            j1 = 2 * i * t
            S = w[m + i]
            Ss = ws[m + i]
            for j in range(j1, j1 + t):
                U = a[j]
                if U >= two_q:
                    U -= two_q
                V = mul_shoup_lazy(a[j + t], S, Ss, q)  # [0, 2q)
                a[j] = U + V  # [0, 4q)
                a[j + t] = U - V + two_q  # (0, 4q)
        m <<= 1
    for j in range(N):
        x = a[j]
        if x >= two_q:
            x -= two_q
        if x >= q:
            x -= q
        a[j] = x
    _ = four_q


@nb.njit(cache=True, nogil=True)
def inverse_limb(a, q, w, ws, n_inv, n_inv_s):
    """In-place inverse NTT of one limb (bit-reversed input); output fully reduced."""
    N = a.shape[0]
    two_q = q + q
    t = 1
    m = N
    while m > 1:
        h = m >> 1
        j1 = 0
        for i in range(h):
            S = w[h + i]
            Ss = ws[h + i]
            for j in range(j1, j1 + t):
                U = a[j]
                V = a[j + t]
                x = U + V
                if x >= two_q:
                    x -= two_q
                a[j] = x  # [0, 2q)
                a[j + t] = mul_shoup_lazy(U - V + two_q, S, Ss, q)  # [0, 2q)
            j1 += 2 * t
        t <<= 1
        m = h
    for j in range(N):
        x = mul_shoup_lazy(a[j], n_inv, n_inv_s, q)
        if x >= q:
            x -= q
        a[j] = x


@nb.njit(cache=True, nogil=True, parallel=True)
def _forward_all(a, rows, q, w, ws):
    for l in nb.prange(a.shape[0]):
        r = rows[l]
        forward_limb(a[l], q[r], w[r], ws[r])


@nb.njit(cache=True, nogil=True, parallel=True)
def _inverse_all(a, rows, q, w, ws, n_inv, n_inv_s):
    for l in nb.prange(a.shape[0]):
        r = rows[l]
        inverse_limb(a[l], q[r], w[r], ws[r], n_inv[r], n_inv_s[r])


def ntt(a: np.ndarray, tables: NTTTables) -> np.ndarray:
    """Forward NTT of every limb of a ([L, N] uint64, values < q); returns a new array."""
    out = np.array(a, dtype=U64, copy=True, order="C")
    _check(out, tables)
    _forward_all(out, tables.rows, tables.q_all, tables.psi_rev, tables.psi_rev_shoup)
    return out


def intt(a: np.ndarray, tables: NTTTables) -> np.ndarray:
    """Inverse NTT of every limb of a ([L, N] uint64, values < q); returns a new array."""
    out = np.array(a, dtype=U64, copy=True, order="C")
    _check(out, tables)
    _inverse_all(out, tables.rows, tables.q_all, tables.psi_inv_rev, tables.psi_inv_rev_shoup, tables.n_inv, tables.n_inv_shoup)
    return out


def ntt_inplace(a: np.ndarray, tables: NTTTables) -> None:
    """Forward NTT in place (a must be C-contiguous uint64 [L, N])."""
    _forward_all(a, tables.rows, tables.q_all, tables.psi_rev, tables.psi_rev_shoup)


def intt_inplace(a: np.ndarray, tables: NTTTables) -> None:
    """Inverse NTT in place."""
    _inverse_all(a, tables.rows, tables.q_all, tables.psi_inv_rev, tables.psi_inv_rev_shoup, tables.n_inv, tables.n_inv_shoup)


def _check(a: np.ndarray, tables: NTTTables) -> None:
    if a.ndim != 2 or a.shape != (tables.rows.shape[0], tables.N):
        raise ValueError(f"expected a [{tables.rows.shape[0]}, {tables.N}] array of residues, got shape {a.shape}")
