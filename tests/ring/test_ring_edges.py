"""Edges of the ring layer that the round-trip tests cannot see (RING-NTT, RING-CONV).

Written from the mutation run of refimpl/ring: the NTT tables are cached per (q, N), so a wrong
bit reversal or table dtype only shows in a fresh process; these tests check the pieces
directly. Also the prime search's size limits and the dtypes of the RNS tables.
"""

import numpy as np
import pytest

from refimpl.ring.ntt import bit_reverse_permutation, make_tables
from refimpl.ring.primes import ntt_primes
from refimpl.ring.rns import RNSContext


def test_bit_reverse_permutation():
    """RING-NTT: brv[i] is i with its log2(N) bits reversed: an int64 involution."""
    assert bit_reverse_permutation(8).tolist() == [0, 4, 2, 6, 1, 5, 3, 7]
    for N in (2, 16, 1024):
        brv = bit_reverse_permutation(N)
        assert brv.dtype == np.int64 and sorted(brv.tolist()) == list(range(N))
        assert np.array_equal(brv[brv], np.arange(N))
        logn = N.bit_length() - 1
        i = np.arange(N)
        assert all(int(format(int(v), f"0{logn}b")[::-1], 2) == int(r) for v, r in zip(i, brv))


def test_prime_search_limits():
    """RING-NTT: prime sizes outside [2, 61] bits are refused by size; 2 bits is a valid size (no such
    prime for 2N = 4, which is said); the primes found are 1 mod 2N and of the requested size."""
    for bits in (1, 62):
        with pytest.raises(ValueError, match=r"prime size must be in \[2, 61\] bits"):
            ntt_primes(bits, 8, 1)
    with pytest.raises(ValueError, match="only 0 primes"):
        ntt_primes(2, 2, 1)
    ps = ntt_primes(30, 1024, 3)
    assert all((q - 1) % 2048 == 0 and q.bit_length() == 30 for q in ps) and len(set(ps)) == 3


def test_table_dtypes():
    """RING-NTT, RING-CONV: NTT and RNS tables are uint64 words (row indices int64), as the kernels expect."""
    primes = ntt_primes(40, 256, 2)
    t = make_tables(primes, 256)
    for arr in (t.q_all, t.psi_rev, t.psi_rev_shoup, t.psi_inv_rev, t.psi_inv_rev_shoup, t.n_inv, t.n_inv_shoup):
        assert arr.dtype == np.uint64
    assert t.rows.dtype == np.int64 and t.rows.tolist() == [0, 1]
    assert all(int(t.n_inv[i]) * 256 % q == 1 for i, q in enumerate(primes))
    ctx = RNSContext(256, primes)
    assert ctx.k.dtype == np.uint64
    big = ctx.from_bigint([2**100 + 5, -7], (0, 1))
    assert big.dtype == np.uint64 and int(big[1, 1]) == primes[1] - 7 and int(big[0, 0]) == (2**100 + 5) % primes[0]
