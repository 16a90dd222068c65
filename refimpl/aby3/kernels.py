"""Integer matrix products over Z_2^64 (no BLAS exists for them): numba kernels.

uint64 products wrap mod 2^64 in numba exactly as in numpy, so the kernel is the
textbook triple loop in i-k-j order (the inner loop is contiguous and vectorizes).
`nogil` lets the three party threads run their products in parallel.
"""

from __future__ import annotations

import numba
import numpy as np

from refimpl.aby3.fixed import U64

BLOCK = 512  # column and inner-dimension block: a [512, 512] uint64 slab of b (2 MiB) stays in cache


@numba.njit(nogil=True, cache=True)
def _matmul_acc(a, b, out):  # [n, k] @ [k, m] added into out [n, m], all uint64
    n, k = a.shape
    m = b.shape[1]
    for i in range(n):
        for t in range(k):
            s = a[i, t]
            for j in range(m):
                out[i, j] += s * b[t, j]


def matmul_u64(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """a @ b mod 2^64 for uint64 arrays [..., n, k] @ [..., k, m] (leading axes must agree)."""
    if a.shape[-1] != b.shape[-2] or a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"matmul shapes do not match: {a.shape} @ {b.shape}")
    lead = a.shape[:-2]
    n, k, m = a.shape[-2], a.shape[-1], b.shape[-1]
    if out is None:
        out = np.zeros(lead + (n, m), dtype=U64)
    a3 = np.ascontiguousarray(a, dtype=U64).reshape(-1, n, k)
    b3 = np.ascontiguousarray(b, dtype=U64).reshape(-1, k, m)
    o3 = out.reshape(-1, n, m)
    for h in range(a3.shape[0]):  # loop over the batch (heads), never over elements
        if k * m <= BLOCK * BLOCK:
            _matmul_acc(a3[h], b3[h], o3[h])
            continue
        for j0 in range(0, m, BLOCK):  # cache blocking: a [k, 512] slab of b is re-read n times
            bj = np.ascontiguousarray(b3[h][:, j0:j0 + BLOCK])
            oj = np.ascontiguousarray(o3[h][:, j0:j0 + BLOCK])
            for t0 in range(0, k, BLOCK):
                _matmul_acc(np.ascontiguousarray(a3[h][:, t0:t0 + BLOCK]), bj[t0:t0 + BLOCK], oj)
            o3[h][:, j0:j0 + BLOCK] = oj
    return out


@numba.njit(nogil=True, cache=True)
def _unzip_kernel(x, ev, od):  # bits 0, 2, 4, ... -> ev; bits 1, 3, 5, ... -> od (compacted)
    m0 = np.uint64(0x5555555555555555)
    m1 = np.uint64(0x3333333333333333)
    m2 = np.uint64(0x0F0F0F0F0F0F0F0F)
    m3 = np.uint64(0x00FF00FF00FF00FF)
    m4 = np.uint64(0x0000FFFF0000FFFF)
    m5 = np.uint64(0x00000000FFFFFFFF)
    for i in range(x.size):
        for k in range(2):
            v = (x[i] >> np.uint64(k)) & m0
            v = (v | (v >> np.uint64(1))) & m1
            v = (v | (v >> np.uint64(2))) & m2
            v = (v | (v >> np.uint64(4))) & m3
            v = (v | (v >> np.uint64(8))) & m4
            v = (v | (v >> np.uint64(16))) & m5
            if k == 0:
                ev[i] = v
            else:
                od[i] = v


def unzip_bits(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(even bits, odd bits) of each uint64 word, each compacted into the low half (a bit permutation)."""
    x = np.ascontiguousarray(x, dtype=U64)
    ev, od = np.empty_like(x), np.empty_like(x)
    _unzip_kernel(x.ravel(), ev.ravel(), od.ravel())
    return ev, od
