"""numba uint64 matmul vs Python-int schoolbook products mod 2^64 (ABY3-MUL-2's kernel)."""

import numpy as np
from hypothesis import given, settings, strategies as st

from refimpl.aby3.kernels import BLOCK, matmul_u64


def schoolbook(a, b):
    """Exact integer product reduced mod 2^64 (Python ints: no wrap-around shortcuts)."""
    return (a.astype(object) @ b.astype(object)) % (1 << 64)


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 6), st.integers(1, 9), st.integers(1, 7), st.integers(0, 2**32))
def test_matmul_u64_small_shapes(n, k, m, seed):
    """Any small shape, full 64-bit words: equal to the schoolbook product mod 2^64."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**64, (n, k), dtype=np.uint64)
    b = rng.integers(0, 2**64, (k, m), dtype=np.uint64)
    assert np.array_equal(matmul_u64(a, b).astype(object), schoolbook(a, b))


def test_matmul_u64_blocked_path_and_batches():
    """Shapes past the cache block (k, m > 512, not multiples of it) and a batch of 2 heads."""
    rng = np.random.default_rng(3)
    k, m = BLOCK + 37, BLOCK + 101
    a = rng.integers(0, 2**64, (2, 3, k), dtype=np.uint64)
    b = rng.integers(0, 2**64, (2, k, m), dtype=np.uint64)
    c = matmul_u64(a, b)
    for h in range(2):
        assert np.array_equal(c[h].astype(object), schoolbook(a[h], b[h]))
