"""RNS arithmetic: a chain of primes, pointwise kernels, CRT, fast base conversion, ModUp/ModDown.

A polynomial over Q = q_0 ... q_{l} is a C-contiguous uint64 array [l+1, N] of residues
(row i holds the polynomial mod q_i), in the coefficient or the NTT (evaluation) domain.

Fast base conversion from basis C = {c_i} to basis B = {b_j} (approximate, Bajard et al. /
Halevi-Polyakov-Shoup): y_i = [x_i (C/c_i)^-1]_{c_i}, then
    Conv(x)_j = sum_i y_i [C/c_i]_{b_j}  mod b_j  =  x + u C  (0 <= u < |C|).
ModDown by P (hybrid key switching, Han-Ki): x' = (x - Conv_{P->Q}(x mod P)) P^-1 mod q_i.

Reference: Bajard, Eynard, Hasan, Zucca, SAC 2016; Halevi, Polyakov, Shoup, CT-RSA 2019;
Han and Ki, "Better bootstrapping for approximate HE", CT-RSA 2020 (hybrid key switching).
"""

from __future__ import annotations

from contextlib import contextmanager
from functools import lru_cache, wraps
from math import prod

import numba as nb
import numpy as np

from .modarith import (LAZY_TERMS, barrett_constants, mul_add128, mul_barrett, mul_shoup, mul_shoup_lazy, reduce128,
                       reduction128_constants, shoup_constant)
from .ntt import NTTTables, forward_limb, intt_inplace, inverse_limb, make_tables, ntt_inplace

U64 = np.uint64

PARALLEL_MIN_WORDS = 1 << 18  # below this many residues a kernel runs on one thread
MAC_BLOCK = 1024  # coefficients per accumulator tile of `_mul_sum` (C x 2 tiles of 8 KB)


@contextmanager
def serial_when_small(words: int):
    """Run the numba kernels inside on one thread when they touch fewer than PARALLEL_MIN_WORDS
    residues.

    A parallel region costs a thread handshake per call; on a busy 2-core machine a
    descheduled worker stalls every small call (measured: 1023 Subs at N = 2^10 took 16.5 s
    on two threads, 0.67 s on one)."""
    prev = nb.get_num_threads()
    if words >= PARALLEL_MIN_WORDS or prev == 1:
        yield
        return
    nb.set_num_threads(1)
    try:
        yield
    finally:
        nb.set_num_threads(prev)


def _sized(method):
    """Run the numba kernels of `method` on one thread when its first array is small."""

    @wraps(method)
    def call(self, a, *args, **kwargs):
        with serial_when_small(np.size(a)):
            return method(self, a, *args, **kwargs)

    return call


# ----------------------------------------------------------------------------- kernels
@nb.njit(cache=True, nogil=True, parallel=True)
def _mul(a, b, q, mu, k):
    out = np.empty_like(a)
    for l in nb.prange(a.shape[0]):
        ql, mul_, kl = q[l], mu[l], k[l]
        for n in range(a.shape[1]):
            out[l, n] = mul_barrett(a[l, n], b[l, n], ql, mul_, kl)
    return out


@nb.njit(cache=True, nogil=True, parallel=True)
def _mul_acc(acc, a, b, q, mu, k):
    """acc += a * b (mod q), in place."""
    for l in nb.prange(a.shape[0]):
        ql, mul_, kl = q[l], mu[l], k[l]
        for n in range(a.shape[1]):
            x = acc[l, n] + mul_barrett(a[l, n], b[l, n], ql, mul_, kl)
            acc[l, n] = x - ql if x >= ql else x


@nb.njit(cache=True, nogil=True, parallel=True)
def _mul_sum(xs, ys, C, acc, q, r64, r64_s, one_s):
    """out[c] = acc[c] + sum_t xs[t C + c] ys[t] mod q (acc of shape (0, 0, 0): none) (ours: a plaintext multiply-accumulate). Per limb and tile of
    MAC_BLOCK coefficients, the products are summed as 128-bit integers (`mul_add128`), folded into [0, q)
    every LAZY_TERMS terms and reduced once at the end; each ys row is read once for all C components."""
    K = len(ys)
    L, N = ys[0].shape
    out = np.empty((C, L, N), dtype=np.uint64)
    for l in nb.prange(L):
        hi = np.empty((C, MAC_BLOCK), dtype=np.uint64)
        lo = np.empty((C, MAC_BLOCK), dtype=np.uint64)
        ql, rl, rsl, osl = q[l], r64[l], r64_s[l], one_s[l]
        for n0 in range(0, N, MAC_BLOCK):
            m = min(MAC_BLOCK, N - n0)
            hi[:, :] = 0
            lo[:, :] = 0
            if acc.shape[0]:  # a residue < q to start from: r + 64 (q - 1)^2 < 2^128 as after a fold
                for c in range(C):
                    lo[c, :m] = acc[c, l, n0:n0 + m]
            for t in range(K):
                y = ys[t][l]
                for c in range(C):
                    x = xs[t * C + c][l]
                    hc, lc = hi[c], lo[c]
                    for i in range(m):
                        u, v = mul_add128(hc[i], lc[i], x[n0 + i], y[n0 + i])
                        hc[i] = u
                        lc[i] = v
                if (t + 1) % LAZY_TERMS == 0 and t + 1 < K:  # fold: r + 64 (q - 1)^2 < 2^128 still
                    for c in range(C):
                        for i in range(m):
                            lo[c, i] = reduce128(hi[c, i], lo[c, i], ql, rl, rsl, osl)
                            hi[c, i] = 0
            for c in range(C):
                for i in range(m):
                    out[c, l, n0 + i] = reduce128(hi[c, i], lo[c, i], ql, rl, rsl, osl)
    return out


@nb.njit(cache=True, nogil=True, parallel=True)
def _add(a, b, q):
    out = np.empty_like(a)
    for l in nb.prange(a.shape[0]):
        ql = q[l]
        for n in range(a.shape[1]):
            x = a[l, n] + b[l, n]
            out[l, n] = x - ql if x >= ql else x
    return out


@nb.njit(cache=True, nogil=True, parallel=True)
def _add_rows(a, c, q):
    """a[l] + c[l] (a constant per row)."""
    out = np.empty_like(a)
    for l in nb.prange(a.shape[0]):
        ql, cl = q[l], c[l]
        for n in range(a.shape[1]):
            x = a[l, n] + cl
            out[l, n] = x - ql if x >= ql else x
    return out


@nb.njit(cache=True, nogil=True, parallel=True)
def _sub(a, b, q):
    out = np.empty_like(a)
    for l in nb.prange(a.shape[0]):
        ql = q[l]
        for n in range(a.shape[1]):
            x = a[l, n] + ql - b[l, n]
            out[l, n] = x - ql if x >= ql else x
    return out


@nb.njit(cache=True, nogil=True, parallel=True)
def _neg(a, q):
    out = np.empty_like(a)
    for l in nb.prange(a.shape[0]):
        ql = q[l]
        for n in range(a.shape[1]):
            x = a[l, n]
            out[l, n] = ql - x if x != 0 else x
    return out


@nb.njit(cache=True, nogil=True, parallel=True)
def _mul_scalar(a, w, ws, q):
    """Row l times the constant w[l] (Shoup)."""
    out = np.empty_like(a)
    for l in nb.prange(a.shape[0]):
        ql, wl, wsl = q[l], w[l], ws[l]
        for n in range(a.shape[1]):
            out[l, n] = mul_shoup(a[l, n], wl, wsl, ql)
    return out


@nb.njit(cache=True, nogil=True, parallel=True)
def _base_convert(x, c_in, inv_w, inv_ws, p_out, m_w, m_ws):
    """Fast base conversion: x [Lin, N] mod c_in -> [Lout, N] mod p_out."""
    Lin, N = x.shape
    Lout = p_out.shape[0]
    y = np.empty_like(x)
    for i in nb.prange(Lin):
        ci, w, ws = c_in[i], inv_w[i], inv_ws[i]
        for n in range(N):
            y[i, n] = mul_shoup(x[i, n], w, ws, ci)  # y_i = [x_i (C/c_i)^-1]_{c_i}
    out = np.zeros((Lout, N), dtype=np.uint64)
    for j in nb.prange(Lout):
        p = p_out[j]
        two_p = p + p
        row = out[j]
        for i in range(Lin):
            w = m_w[i, j]
            ws = m_ws[i, j]
            for n in range(N):
                s = row[n] + mul_shoup_lazy(y[i, n], w, ws, p)  # < 4p
                row[n] = s - two_p if s >= two_p else s
        for n in range(N):
            s = row[n]
            row[n] = s - p if s >= p else s
    return out


@nb.njit(cache=True, nogil=True, parallel=True)
def _mod_down(xs, gq, gp, h_p, h_q, inv_w, inv_ws, m_w, m_ws, pinv_w, pinv_ws, q_all, psi, psi_s, ipsi, ipsi_s, n_inv, n_inv_s):
    """ModDown of every x in xs (NTT domain over gq then gp, global prime indices), one row per task:
    a P row is transformed back, offset by H and scaled by (P/p)^-1 while in cache; a q row is
    lifted from those, offset by -H, transformed and subtracted. The steps of RNSContext.mod_down."""
    C, nq, K, N = len(xs), gq.shape[0], gp.shape[0], xs[0].shape[1]
    y = np.empty((C, K, N), dtype=np.uint64)
    for t in nb.prange(C * K):
        c, i = t // K, t % K
        g = gp[i]
        p = q_all[g]
        row = y[c, i]
        row[:] = xs[c][nq + i]
        inverse_limb(row, p, ipsi[g], ipsi_s[g], n_inv[g], n_inv_s[g])
        hp, w, ws = h_p[i], inv_w[i], inv_ws[i]
        for n in range(N):
            v = row[n] + hp  # [x + H]_P
            v = v - p if v >= p else v
            row[n] = mul_shoup(v, w, ws, p)  # y_i of the base conversion
    out = np.empty((C, nq, N), dtype=np.uint64)
    for t in nb.prange(C * nq):
        c, r = t // nq, t % nq
        g = gq[r]
        qr = q_all[g]
        two_q = qr + qr
        row = out[c, r]
        row[:] = 0
        for i in range(K):
            w, ws = m_w[i, r], m_ws[i, r]
            for n in range(N):
                s = row[n] + mul_shoup_lazy(y[c, i, n], w, ws, qr)
                row[n] = s - two_q if s >= two_q else s
        hq = h_q[r]
        for n in range(N):
            s = row[n]
            s = s - qr if s >= qr else s
            s = s + hq  # - H mod q
            row[n] = s - qr if s >= qr else s
        forward_limb(row, qr, psi[g], psi_s[g])
        x, pw, pws = xs[c][r], pinv_w[r], pinv_ws[r]
        for n in range(N):
            row[n] = mul_shoup(x[n] + qr - row[n], pw, pws, qr)  # (x - lift) P^-1
    return out


# ----------------------------------------------------------------------------- base conversion
class BaseConverter:
    """Approximate conversion from basis `src` to basis `dst` (lists of primes)."""

    def __init__(self, src: list[int], dst: list[int]):
        C = prod(src)
        self.src = np.array(src, dtype=U64)
        self.dst = np.array(dst, dtype=U64)
        inv = [pow(C // c, -1, c) for c in src]
        self.inv_w = np.array(inv, dtype=U64)
        self.inv_ws = np.array([shoup_constant(v, c) for v, c in zip(inv, src)], dtype=U64)
        m = [[(C // c) % p for p in dst] for c in src]
        self.m_w = np.array(m, dtype=U64).reshape(len(src), len(dst))
        self.m_ws = np.array(
            [[shoup_constant(m[i][j], p) for j, p in enumerate(dst)] for i in range(len(src))], dtype=U64
        ).reshape(len(src), len(dst))

    @_sized
    def convert(self, x: np.ndarray) -> np.ndarray:
        """Conv(x) = x + u C over dst, 0 <= u < len(src); x in the coefficient domain."""
        if x.shape[0] != self.src.shape[0]:
            raise ValueError(f"base conversion expects {self.src.shape[0]} limbs, got {x.shape[0]}")
        return _base_convert(np.ascontiguousarray(x), self.src, self.inv_w, self.inv_ws, self.dst, self.m_w, self.m_ws)


# ----------------------------------------------------------------------------- the context
class RNSContext:
    """All primes of a parameter set (ciphertext chain first, then special primes), with tables.

    Limbs are addressed by index into `primes`; a basis is a tuple of indices.
    """

    def __init__(self, N: int, primes: list[int]):
        self.N = N
        self.primes = [int(p) for p in primes]
        self.q = np.array(self.primes, dtype=U64)
        bc = [barrett_constants(p) for p in self.primes]
        self.mu = np.array([m for m, _ in bc], dtype=U64)
        self.k = np.array([k for _, k in bc], dtype=U64)
        self.all_tables = make_tables(self.primes, N)  # every prime's NTT tables (a basis selects rows)

    def tables(self, basis: tuple[int, ...]) -> NTTTables:
        return self._tables(tuple(basis))

    @lru_cache(maxsize=None)
    def _tables(self, basis: tuple[int, ...]) -> NTTTables:
        return self.all_tables.select(np.array(basis, dtype=np.int64))

    def moduli(self, basis) -> np.ndarray:
        return self.q[list(basis)]

    @lru_cache(maxsize=None)
    def converter(self, src: tuple[int, ...], dst: tuple[int, ...]) -> BaseConverter:
        return BaseConverter([self.primes[i] for i in src], [self.primes[i] for i in dst])

    @lru_cache(maxsize=None)
    def _scalar(self, basis: tuple[int, ...], value: int) -> tuple[np.ndarray, np.ndarray]:
        w = [value % self.primes[i] for i in basis]
        return (np.array(w, dtype=U64), np.array([shoup_constant(v, self.primes[i]) for v, i in zip(w, basis)], dtype=U64))

    # -- elementwise
    @_sized
    def add(self, a, b, basis):
        return _add(a, b, self.q[list(basis)])

    @_sized
    def sub(self, a, b, basis):
        return _sub(a, b, self.q[list(basis)])

    @_sized
    def neg(self, a, basis):
        return _neg(a, self.q[list(basis)])

    @_sized
    def mul(self, a, b, basis):
        """Pointwise product (both operands in the NTT domain for a ring product)."""
        idx = list(basis)
        return _mul(a, b, self.q[idx], self.mu[idx], self.k[idx])

    @_sized
    def mul_acc(self, acc, a, b, basis):
        idx = list(basis)
        _mul_acc(acc, a, b, self.q[idx], self.mu[idx], self.k[idx])

    def mul_sum(self, xs, ys, basis, acc: np.ndarray | None = None) -> np.ndarray:
        """acc[c] + sum_t xs[t][c] * ys[t] for each component c (acc [C, len(basis), N] or None), pointwise mod the primes of `basis` (ours: the plaintext
        multiply-accumulate, one pass, one reduction per coefficient): xs a sequence of K tuples of C arrays,
        ys K arrays, all [len(basis), N]; returns [C, len(basis), N]. Exactly the residues of the chain of
        `mul` and `add`."""
        if len(xs) != len(ys) or not ys:
            raise ValueError(f"mul_sum needs as many (at least one) polynomial tuples as multipliers, got {len(xs)} and {len(ys)}")
        C = len(xs[0])
        if any(len(x) != C for x in xs):
            raise ValueError(f"mul_sum: every term needs {C} components, got {sorted({len(x) for x in xs})}")
        shape = (len(basis), self.N)
        flat = [np.ascontiguousarray(c) for x in xs for c in x]
        ys = [np.ascontiguousarray(y) for y in ys]
        if any(a.shape != shape or a.dtype != U64 for a in flat + ys):
            raise ValueError(f"mul_sum: every polynomial must be a {shape} uint64 array")
        if acc is None:
            acc = np.zeros((0, 0, 0), dtype=U64)
        elif acc.shape != (C,) + shape or acc.dtype != U64:
            raise ValueError(f"mul_sum: the accumulator must be a {(C,) + shape} uint64 array, got {acc.shape} {acc.dtype}")
        q, r64, r64_s, one_s = reduction128_constants(tuple(self.primes[i] for i in basis))
        with serial_when_small(shape[0] * shape[1] * C):
            return _mul_sum(nb.typed.List(flat), nb.typed.List(ys), C, np.ascontiguousarray(acc), q, r64, r64_s, one_s)

    @_sized
    def mul_int(self, a, value: int, basis):
        """a times the integer `value` (any size, reduced per limb)."""
        basis = tuple(basis)
        w, ws = self._scalar(basis, int(value))
        return _mul_scalar(a, w, ws, self.q[list(basis)])

    @_sized
    def add_int(self, a, value: int, basis):
        """a + value on every NTT point (adds the constant polynomial `value`)."""
        basis = tuple(basis)
        c = np.array([int(value) % self.primes[i] for i in basis], dtype=U64)
        return _add_rows(np.ascontiguousarray(a), c, self.q[list(basis)])

    @_sized
    def mul_rows(self, a, values: list[int], basis):
        """Row i times values[i] (already reduced mod its prime)."""
        basis = tuple(basis)
        w = np.array(values, dtype=U64)
        ws = np.array([shoup_constant(v, self.primes[i]) for v, i in zip(values, basis)], dtype=U64)
        return _mul_scalar(a, w, ws, self.q[list(basis)])

    # -- domains
    @_sized
    def ntt(self, a, basis):
        out = np.array(a, dtype=U64, order="C", copy=True)
        ntt_inplace(out, self.tables(basis))
        return out

    @_sized
    def intt(self, a, basis):
        out = np.array(a, dtype=U64, order="C", copy=True)
        intt_inplace(out, self.tables(basis))
        return out

    # -- representations
    def from_int(self, coeffs: np.ndarray, basis) -> np.ndarray:
        """Signed integer coefficients (int64 array [N]) to residues [len(basis), N]."""
        c = np.asarray(coeffs, dtype=np.int64)
        q = self.q[list(basis)].astype(np.int64)
        return np.mod(c[None, :], q[:, None]).astype(U64)

    def from_bigint(self, coeffs, basis) -> np.ndarray:
        """Python-int coefficients of any size to residues (slow; exact)."""
        return np.array([[int(c) % self.primes[i] for c in coeffs] for i in basis], dtype=U64)

    def reconstruct(self, a: np.ndarray, basis, centered: bool = True) -> list[int]:
        """CRT: residues [len(basis), N] to Python integers in [0, Q) or (-Q/2, Q/2]. Test oracle."""
        primes = [self.primes[i] for i in basis]
        Q = prod(primes)
        out = [0] * a.shape[1]
        for row, p in zip(a, primes):
            Qp = Q // p
            f = Qp * pow(Qp, -1, p)
            for n, v in enumerate(row.tolist()):
                out[n] += v * f
        out = [v % Q for v in out]
        if centered:
            out = [v - Q if v > Q // 2 else v for v in out]
        return out

    # -- hybrid key switching helpers
    def mod_down(self, x: np.ndarray, q_basis: tuple[int, ...], p_basis: tuple[int, ...]) -> np.ndarray:
        """NTT-domain x over q_basis + p_basis -> round(x / P) over q_basis (NTT domain).

        round(x / P) = (x - ([x + H]_P - H)) / P with H = floor(P / 2), the bracket lifted to
        q_basis by base conversion; H is added to every coefficient (coefficient domain)."""
        return self.mod_down_many((x,), q_basis, p_basis)[0]

    def mod_down_many(self, xs, q_basis: tuple[int, ...], p_basis: tuple[int, ...]) -> np.ndarray:
        """mod_down of several polynomials in one parallel kernel (ours: one task per output row,
        converted and transformed while in cache); [len(xs), len(q_basis), N]."""
        q_basis, p_basis = tuple(q_basis), tuple(p_basis)
        h_p, h_q = self._half(q_basis, p_basis)
        conv = self.converter(p_basis, q_basis)
        w, ws = self._p_inv(q_basis, p_basis)
        t = self.all_tables
        xs = tuple(np.ascontiguousarray(x, dtype=U64) for x in xs)
        with serial_when_small(len(xs) * xs[0].size):
            return _mod_down(xs, np.array(q_basis, dtype=np.int64), np.array(p_basis, dtype=np.int64), h_p, h_q,
                             conv.inv_w, conv.inv_ws, conv.m_w, conv.m_ws, w, ws, t.q_all, t.psi_rev, t.psi_rev_shoup,
                             t.psi_inv_rev, t.psi_inv_rev_shoup, t.n_inv, t.n_inv_shoup)

    @lru_cache(maxsize=None)
    def _half(self, q_basis: tuple[int, ...], p_basis: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """(H mod p_j, -H mod q_i) for H = floor(P / 2)."""
        H = prod(self.primes[i] for i in p_basis) // 2
        return (np.array([H % self.primes[i] for i in p_basis], dtype=U64),
                np.array([(-H) % self.primes[i] for i in q_basis], dtype=U64))

    @lru_cache(maxsize=None)
    def _p_inv(self, q_basis: tuple[int, ...], p_basis: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """[P^-1]_{q_i} and Shoup companions, P = prod of p_basis."""
        P = prod(self.primes[i] for i in p_basis)
        w = [pow(P, -1, self.primes[i]) for i in q_basis]
        return (np.array(w, dtype=U64), np.array([shoup_constant(v, self.primes[i]) for v, i in zip(w, q_basis)], dtype=U64))

    def rescale(self, x: np.ndarray, basis: tuple[int, ...]) -> np.ndarray:
        """NTT-domain x over basis -> round(x / q_last) over basis[:-1]."""
        return self.mod_down(x, tuple(basis[:-1]), (basis[-1],))

    def rescale_many(self, xs, basis: tuple[int, ...]) -> np.ndarray:
        """rescale of several polynomials (the components of a ciphertext) in one kernel."""
        return self.mod_down_many(xs, tuple(basis[:-1]), (basis[-1],))
