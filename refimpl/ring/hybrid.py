"""Fused kernels of hybrid key switching (ours): ModUp of every digit in one parallel pass, and
the key inner product over every digit with one reduction per coefficient.

The algorithms are those of `rns.py` (fast base conversion, Halevi-Polyakov-Shoup CT-RSA 2019;
hybrid key switching, Han-Ki CT-RSA 2020); what is ours is how the work is laid out, for two
cores and for memory traffic at N = 2^16, where one digit set of a ciphertext is 200 MB:

- `ModUpPlan.run`: one parallel loop over the (digit, output row) pairs; a row is converted
  (sum_i y_i [C/c_i]_p) and transformed (forward NTT) while it sits in cache, instead of a
  conversion pass, a copy, an NTT pass and two gathers per digit.
- `inner_product`: acc_0 = sum_j ext_j b_j and acc_1 = sum_j ext_j a_j in one pass: each
  digit row is read once for both key halves, and the products are summed as 128-bit integers
  (a < q < 2^61: every product < 2^122, so up to 64 of them fit) and reduced once, with two
  Shoup products, instead of a Barrett reduction and a store per product (lazy reduction as in
  Harvey 2014, applied to the inner product). With `perm` the digits are read through the
  automorphism sigma_k (a permutation in the NTT domain), which saves the permuted copies of
  hoisted rotations (Halevi-Shoup, CRYPTO 2018).

Both return exactly the residues of the unfused code (every step is an exact operation mod q).
"""

from __future__ import annotations

from functools import lru_cache

import numba as nb
import numpy as np

from .modarith import LAZY_TERMS, mul_add128, mul_shoup, mul_shoup_lazy, reduce128, reduction128_constants
from .ntt import forward_limb
from .rns import RNSContext, serial_when_small

U64 = np.uint64
MAX_DIGITS = LAZY_TERMS  # 64 products < 2^122 each sum below 2^128
BLOCK = 1024  # coefficients per accumulator tile of the inner product (4 tiles of 8 KB)


# ----------------------------------------------------------------------------- ModUp
@nb.njit(cache=True, nogil=True, parallel=True)
def _mod_up(d, dc, own_idx, own_cnt, is_own, inv_w, inv_ws, m_w, m_ws, g, q_all, psi, psi_s):
    """ext[j, r] = d[r] for the rows r of digit j; else the lift of digit j to prime g[r], NTT."""
    D, A = own_idx.shape
    F = g.shape[0]
    N = d.shape[1]
    y = np.empty((D, A, N), dtype=np.uint64)
    for t in nb.prange(D * A):
        j, i = t // A, t % A
        if i < own_cnt[j]:
            src = own_idx[j, i]
            c = q_all[g[src]]
            w, ws = inv_w[j, i], inv_ws[j, i]
            for n in range(N):
                y[j, i, n] = mul_shoup(dc[src, n], w, ws, c)  # y_i = [x_i (C/c_i)^-1]_{c_i}
    ext = np.empty((D, F, N), dtype=np.uint64)
    for t in nb.prange(D * F):
        j, r = t // F, t % F
        row = ext[j, r]
        if is_own[j, r]:
            row[:] = d[r]
            continue
        p = q_all[g[r]]
        two_p = p + p
        row[:] = 0
        for i in range(own_cnt[j]):
            w, ws = m_w[j, i, r], m_ws[j, i, r]
            for n in range(N):
                s = row[n] + mul_shoup_lazy(y[j, i, n], w, ws, p)  # < 4p
                row[n] = s - two_p if s >= two_p else s
        for n in range(N):
            s = row[n]
            row[n] = s - p if s >= p else s
        forward_limb(row, p, psi[g[r]], psi_s[g[r]])
    return ext


class ModUpPlan:
    """The constants of ModUp at one level: digits `owns` (chain indices) lifted to `full`."""

    def __init__(self, ctx: RNSContext, full: tuple[int, ...], owns: tuple[tuple[int, ...], ...]):
        self.ctx = ctx
        D, A, F = len(owns), max(len(o) for o in owns), len(full)
        pos = {c: r for r, c in enumerate(full)}
        self.g = np.array(full, dtype=np.int64)
        self.own_idx = np.zeros((D, A), dtype=np.int64)
        self.own_cnt = np.array([len(o) for o in owns], dtype=np.int64)
        self.is_own = np.zeros((D, F), dtype=np.bool_)
        self.inv_w = np.zeros((D, A), dtype=U64)
        self.inv_ws = np.zeros((D, A), dtype=U64)
        self.m_w = np.zeros((D, A, F), dtype=U64)
        self.m_ws = np.zeros((D, A, F), dtype=U64)
        for j, own in enumerate(owns):
            others = [r for r, c in enumerate(full) if c not in own]
            conv = ctx.converter(own, tuple(full[r] for r in others))  # the constants of rns.BaseConverter
            for i, c in enumerate(own):
                self.own_idx[j, i] = pos[c]
                self.is_own[j, pos[c]] = True
                self.inv_w[j, i], self.inv_ws[j, i] = conv.inv_w[i], conv.inv_ws[i]
                self.m_w[j, i, others], self.m_ws[j, i, others] = conv.m_w[i], conv.m_ws[i]
        self.words = D * F * ctx.N

    def run(self, d: np.ndarray, d_coeff: np.ndarray) -> np.ndarray:
        """[D, len(full), N] NTT-domain digits; d and d_coeff: the input over the first rows of
        `full` in the NTT and the coefficient domain."""
        t = self.ctx.all_tables
        with serial_when_small(self.words):
            return _mod_up(np.ascontiguousarray(d), np.ascontiguousarray(d_coeff), self.own_idx, self.own_cnt,
                           self.is_own, self.inv_w, self.inv_ws, self.m_w, self.m_ws, self.g, t.q_all,
                           t.psi_rev, t.psi_rev_shoup)


@lru_cache(maxsize=None)
def mod_up_plan(ctx: RNSContext, full: tuple[int, ...], owns: tuple[tuple[int, ...], ...]) -> ModUpPlan:
    return ModUpPlan(ctx, full, owns)


# ----------------------------------------------------------------------------- inner product
_EMPTY = np.zeros((0, 0), dtype=np.uint64)


@nb.njit(cache=True, nogil=True, parallel=True)
def _inner_product(ext, perm, kb, ka, rows, q, r64, r64_s, one_s):
    D, F, N = ext.shape
    out0 = np.empty((F, N), dtype=np.uint64)
    out1 = np.empty((F, N), dtype=np.uint64)
    permuted = perm.shape[0] > 0
    for l in nb.prange(F):
        h0 = np.empty(BLOCK, dtype=np.uint64)
        l0 = np.empty(BLOCK, dtype=np.uint64)
        h1 = np.empty(BLOCK, dtype=np.uint64)
        l1 = np.empty(BLOCK, dtype=np.uint64)
        kr = rows[l]
        for n0 in range(0, N, BLOCK):
            m = min(BLOCK, N - n0)
            h0[:] = 0
            l0[:] = 0
            h1[:] = 0
            l1[:] = 0
            for j in range(D):
                e = ext[j, l]
                b = kb[j][kr]
                a = ka[j][kr]
                for t in range(m):
                    x = e[perm[n0 + t]] if permuted else e[n0 + t]
                    u, v = mul_add128(h0[t], l0[t], x, b[n0 + t])
                    h0[t] = u
                    l0[t] = v
                    u, v = mul_add128(h1[t], l1[t], x, a[n0 + t])
                    h1[t] = u
                    l1[t] = v
            ql, rl, rsl, osl = q[l], r64[l], r64_s[l], one_s[l]
            for t in range(m):
                out0[l, n0 + t] = reduce128(h0[t], l0[t], ql, rl, rsl, osl)
                out1[l, n0 + t] = reduce128(h1[t], l1[t], ql, rl, rsl, osl)
    return out0, out1


def inner_product(ctx: RNSContext, ext: np.ndarray, kb, ka, rows: np.ndarray, basis: tuple[int, ...],
                  perm: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sum_j sigma(ext[j]) kb[j][rows], sum_j sigma(ext[j]) ka[j][rows]) mod the primes of `basis`,
    sigma the NTT-domain permutation `perm` (None: identity); ext [D, len(basis), N]."""
    if ext.shape[0] > MAX_DIGITS:
        raise ValueError(f"the lazy inner product sums at most {MAX_DIGITS} digits, got {ext.shape[0]}")
    if len(kb) != ext.shape[0] or len(ka) != ext.shape[0]:
        raise ValueError(f"{ext.shape[0]} digits but {len(kb)} and {len(ka)} key parts")
    q, r64, r64_s, one_s = reduction128_constants(tuple(ctx.primes[i] for i in basis))
    perm = np.zeros(0, dtype=np.int64) if perm is None else np.ascontiguousarray(perm, dtype=np.int64)
    # the key parts padded to a power of two with empty arrays: a tuple's length is part of its numba type, so
    # each digit count compiled its own kernel (26 in the test suite, 3-10 s each); the kernel reads ext's D
    size = 1 << max(0, len(kb) - 1).bit_length()
    pad = (_EMPTY,) * (size - len(kb))
    kb = tuple(np.ascontiguousarray(x) for x in kb) + pad
    ka = tuple(np.ascontiguousarray(x) for x in ka) + pad
    with serial_when_small(ext.size):
        return _inner_product(np.ascontiguousarray(ext), perm, kb, ka, np.ascontiguousarray(rows, dtype=np.int64),
                              q, r64, r64_s, one_s)
