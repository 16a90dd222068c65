"""Word-level modular arithmetic for 64-bit words, as numba inline functions.

Word size: every RNS prime q is below 2^61 and every residue is stored in a uint64. Products
need 128 bits; numba has no 128-bit integer, so the high word of a 64x64 product is built
from four 32x32 -> 64 products (`mulhi64`), which LLVM turns into vector `vpmuludq` lanes.
Two reductions are used:

- Shoup (multiplication by a precomputed constant w, with w' = floor(w 2^64 / q)):
  r = a w - floor(a w' / 2^64) q  lies in [0, 2q) for any a < 2^64; one mulhi per product.
  Used by the NTT twiddles, base conversion constants and scalar multiplications.
- Lazy sums (ours, after Harvey 2014): products of residues a, b < q < 2^61 are < 2^122, so up
  to LAZY_TERMS = 64 of them add up as 128-bit integers (`mul_add128`) and are reduced once
  (`reduce128`: hi 2^64 + lo with two Shoup products). Used by the key inner product and the
  plaintext multiply-accumulate.
- Barrett (both operands variable, a, b < q < 2^61): x = a b < 2^(2k) with k = bitlen(q);
  t = x >> (k-1); q_est = (t mu) >> (k+1) with mu = floor(2^(2k) / q); r = x - q_est q lies
  in [0, 3q). Two mulhi per product. Used by pointwise products of polynomials.

Reference: D. Harvey, "Faster arithmetic for number-theoretic transforms", J. Symb. Comp. 2014
(Shoup butterflies with lazy reduction); Barrett, CRYPTO 1986.
"""

from __future__ import annotations

from functools import lru_cache

import numba as nb
import numpy as np

MAX_PRIME_BITS = 61  # lazy butterflies keep values below 4q < 2^63
LAZY_TERMS = 64  # products < 2^122 (q < 2^61) that a 128-bit sum holds: 64 (q - 1)^2 + q < 2^128

U64 = np.uint64
_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)
_ONE = np.uint64(1)


@nb.njit(inline="always", cache=True)
def mulhi64(a, b):
    """High 64 bits of the 128-bit product a*b (four 32x32 products)."""
    a0 = a & _M32
    a1 = a >> _S32
    b0 = b & _M32
    b1 = b >> _S32
    p00 = a0 * b0
    p01 = a0 * b1
    p10 = a1 * b0
    p11 = a1 * b1
    mid = (p00 >> _S32) + (p01 & _M32) + (p10 & _M32)
    return p11 + (p01 >> _S32) + (p10 >> _S32) + (mid >> _S32)


@nb.njit(inline="always", cache=True)
def mul_shoup_lazy(a, w, w_shoup, q):
    """a*w mod q in [0, 2q), for any a < 2^64, w < q, w_shoup = floor(w 2^64 / q)."""
    return a * w - mulhi64(a, w_shoup) * q


@nb.njit(inline="always", cache=True)
def mul_shoup(a, w, w_shoup, q):
    """a*w mod q in [0, q)."""
    r = a * w - mulhi64(a, w_shoup) * q
    return r - q if r >= q else r


@nb.njit(inline="always", cache=True)
def mul_add128(hi, lo, a, b):
    """(hi, lo) + a * b as a 128-bit integer (hi 2^64 + lo); no reduction."""
    p_lo = a * b
    p_hi = mulhi64(a, b)
    s = lo + p_lo
    return hi + p_hi + (_ONE if s < p_lo else np.uint64(0)), s


@nb.njit(inline="always", cache=True)
def reduce128(hi, lo, q, r64, r64_s, one_s):
    """(hi 2^64 + lo) mod q in [0, q), with r64 = 2^64 mod q and the Shoup companions r64_s of r64
    and one_s of 1 (`reduction128_constants`)."""
    x = mul_shoup(hi, r64, r64_s, q) + mul_shoup(lo, _ONE, one_s, q)
    return x - q if x >= q else x


@lru_cache(maxsize=None)
def reduction128_constants(primes: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """(q, 2^64 mod q, its Shoup companion, the Shoup companion of 1) per prime, for `reduce128`."""
    r64 = [(1 << 64) % p for p in primes]
    return (np.array(primes, dtype=U64), np.array(r64, dtype=U64),
            np.array([shoup_constant(r, p) for r, p in zip(r64, primes)], dtype=U64),
            np.array([shoup_constant(1, p) for p in primes], dtype=U64))


@nb.njit(inline="always", cache=True)
def mul_barrett(a, b, q, mu, k):
    """a*b mod q in [0, q) for a, b < q < 2^61; mu = floor(2^(2k)/q), k = bitlen(q)."""
    lo = a * b
    hi = mulhi64(a, b)
    km1 = k - _ONE
    t = (hi << (np.uint64(64) - km1)) | (lo >> km1)  # x >> (k-1), < 2^(k+1)
    tlo = t * mu
    thi = mulhi64(t, mu)
    kp1 = k + _ONE
    qest = (thi << (np.uint64(64) - kp1)) | (tlo >> kp1)
    r = lo - qest * q  # in [0, 3q)
    if r >= q:
        r -= q
    if r >= q:
        r -= q
    return r


@nb.njit(cache=True)
def _remainder_128(w, t, q):
    """(w 2^64 - t q) as a signed pair (negative flag, |value| if it fits 64 bits else 2^64-1)."""
    lo = t * q
    hi = mulhi64(t, q)
    r_lo = np.uint64(0) - lo
    borrow = np.uint64(1) if lo != np.uint64(0) else np.uint64(0)
    r_hi = w - hi - borrow
    return r_hi, r_lo


@nb.njit(cache=True)
def shoup_companions(w, q):
    """floor(w_i 2^64 / q) for an array w of residues < q (exact; float estimate + correction)."""
    out = np.empty_like(w)
    qf = np.float64(q)
    two64 = 18446744073709551616.0
    for i in range(w.shape[0]):
        est = np.float64(w[i]) / qf * two64
        if est > 1.8446744073709e19:
            est = 1.8446744073709e19
        t = np.uint64(est)
        for _ in range(4):  # Newton-like correction from the exact 128-bit remainder
            r_hi, r_lo = _remainder_128(w[i], t, q)
            rf = np.float64(np.int64(r_hi)) * two64 + np.float64(r_lo)
            c = np.int64(np.floor(rf / qf))
            if c == 0:
                break
            t = np.uint64(np.int64(t) + c) if c > 0 or t >= np.uint64(-c) else np.uint64(0)
        # final exact adjustment into 0 <= r < q
        for _ in range(64):
            r_hi, r_lo = _remainder_128(w[i], t, q)
            if np.int64(r_hi) < 0:
                t -= np.uint64(1)
            elif r_hi > np.uint64(0) or r_lo >= q:
                t += np.uint64(1)
            else:
                break
        out[i] = t
    return out


@nb.njit(cache=True)
def powers_mod(x, n, q, mu, k):
    """[1, x, x^2, ..., x^(n-1)] mod q."""
    out = np.empty(n, dtype=np.uint64)
    acc = np.uint64(1)
    for i in range(n):
        out[i] = acc
        acc = mul_barrett(acc, x, q, mu, k)
    return out


def shoup_constant(w: int, q: int) -> int:
    """w' = floor(w 2^64 / q), the Shoup companion of the constant w < q."""
    return (int(w) << 64) // int(q)


def barrett_constants(q: int) -> tuple[int, int]:
    """(mu, k) with k = bitlen(q) and mu = floor(2^(2k) / q)."""
    k = int(q).bit_length()
    return (1 << (2 * k)) // int(q), k
