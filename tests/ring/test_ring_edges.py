"""Edges of the ring layer that the round-trip tests cannot see (RING-NTT, RING-CONV).

Written from the mutation run of refimpl/ring: the NTT tables are cached per (q, N), so a wrong
bit reversal or table dtype only shows in a fresh process; these tests check the pieces
directly. Also the prime search's size limits and the dtypes of the RNS tables.
"""

import numpy as np
import pytest

from refimpl.ring.automorphism import automorphism_coeff, automorphism_ntt
from refimpl.ring.ntt import bit_reverse_permutation, intt, make_tables, ntt
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


def test_prime_search_below_and_exhaustion():
    """RING-NTT: with `below` the primes are below it (a prime equal to it is not taken); asking for more
    primes of a size than exist says how many there are (5 bits, 1 mod 4: only 17 and 29)."""
    assert ntt_primes(5, 2, 1, below=29) == [17]
    assert ntt_primes(5, 2, 2) == [29, 17]
    with pytest.raises(ValueError, match="only 2 primes q = 1 mod 4 of 5 bits exist, asked 3"):
        ntt_primes(5, 2, 3)


def test_automorphism_definition_edges():
    """RING-AUTO: sigma_k(a)(X) = a(X^k) mod X^N + 1 on residues that include 0 and 1 at negated
    positions; k, k + 2N and k + 4N act alike in both domains; an even k is refused naming 2N."""
    from refimpl.ring.automorphism import coeff_permutation, ntt_permutation

    coeff_permutation.cache_clear()  # compute the permutations here, not from an earlier test's cache
    ntt_permutation.cache_clear()
    N, q = 16, 97
    a = np.arange(N, dtype=np.uint64) % 3  # 0, 1, 2, 0, 1, ...: zeros and ones everywhere
    for k in (3, 5, 31):
        want = np.zeros(N, dtype=np.int64)
        for i in range(N):
            e = i * k % (2 * N)
            want[e % N] += int(a[i]) if e < N else -int(a[i])
        got = automorphism_coeff(a[None, :], k, np.array([q], dtype=np.uint64))[0]
        assert np.array_equal(got, want % q)
        for k2 in (k + 2 * N, k + 4 * N):
            assert np.array_equal(automorphism_coeff(a[None, :], k2, np.array([q], dtype=np.uint64))[0], want % q)
        x = np.arange(2 * N, dtype=np.uint64).reshape(2, N)
        assert np.array_equal(automorphism_ntt(x, k), automorphism_ntt(x, k + 4 * N))
    with pytest.raises(ValueError, match=r"unit mod 2N = 32\), got 4"):
        automorphism_ntt(np.zeros((1, N), dtype=np.uint64), 4)


def test_ntt_input_checks_and_copies():
    """RING-NTT: ntt/intt return new C-ordered uint64 arrays and leave the input alone; int64 residues
    and a Fortran-ordered input give the same transform; a [L, N/2] array is refused naming [L, N]."""
    primes = ntt_primes(30, 64, 2)
    t = make_tables(primes, 64)
    gen = np.random.default_rng(0)
    a = np.stack([gen.integers(0, q, 64, dtype=np.uint64) for q in primes])
    keep = a.copy()
    f = ntt(a, t)
    assert np.array_equal(a, keep) and f.dtype == np.uint64 and f.flags.c_contiguous
    back = intt(f, t)
    assert np.array_equal(back, a) and np.array_equal(f, ntt(a, t))
    assert np.array_equal(ntt(a.astype(np.int64), t), f)
    assert np.array_equal(ntt(np.asfortranarray(a), t), f) and np.array_equal(intt(np.asfortranarray(f), t), a)
    with pytest.raises(ValueError, match=r"expected a \[2, 64\] array of residues, got shape \(2, 32\)"):
        ntt(a[:, :32], t)
    sub = t.select(np.array([1]))
    assert sub.N == 64 and sub.rows.dtype == np.int64 and sub.rows.tolist() == [1]
    assert np.array_equal(ntt(a[1:], sub), f[1:])


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


def test_fresh_base_converter_and_crt_centering():
    """RING-CONV: a base converter built here (not the context's cached one) has uint64 tables and gives
    x + u C with 0 <= u < #src; the context keeps N; the CRT oracle centres on (-Q/2, Q/2]: (Q - 1)/2
    stays positive, (Q + 1)/2 becomes -(Q - 1)/2, 2Q/5 stays positive."""
    from refimpl.ring.rns import BaseConverter

    N = 64
    src, dst = ntt_primes(40, N, 2), ntt_primes(35, N, 2)
    bc = BaseConverter(src, dst)
    for arr in (bc.src, bc.dst, bc.inv_w, bc.inv_ws, bc.m_w, bc.m_ws):
        assert arr.dtype == np.uint64
    gen = np.random.default_rng(1)
    x = np.stack([gen.integers(0, q, N, dtype=np.uint64) for q in src])
    C = src[0] * src[1]
    xi = [int(a) * (C // src[0]) * pow(C // src[0], -1, src[0]) + int(b) * (C // src[1]) * pow(C // src[1], -1, src[1])
          for a, b in zip(x[0], x[1])]
    xi = [v % C for v in xi]
    y = bc.convert(x)
    for j, p in enumerate(dst):
        for n in range(N):
            assert any((xi[n] + u * C) % p == int(y[j, n]) for u in range(len(src)))
    ctx = RNSContext(N, src + dst)
    assert ctx.N == N
    Q = src[0] * src[1]
    vals = [(Q - 1) // 2, (Q + 1) // 2, 2 * Q // 5]
    got = ctx.reconstruct(ctx.from_bigint(vals, (0, 1)), (0, 1))
    assert got == [(Q - 1) // 2, -((Q - 1) // 2), 2 * Q // 5]
    assert ctx.reconstruct(ctx.from_bigint(vals, (0, 1)), (0, 1), centered=False) == vals


def test_from_int_reduces_signed_coefficients():
    """RING-CONV: signed int64 coefficients become uint64 residues c mod q_i of every prime in the basis
    (60-bit primes, coefficients up to 2^62 in size: exact)."""
    primes = ntt_primes(60, 16, 2)  # above 2^53: a float64 detour would round
    ctx = RNSContext(16, primes)
    c = np.array([-1, 0, 5, -(2**40), 2**40, 7, -(2**62), 3] * 2, dtype=np.int64)
    r = ctx.from_int(c, (1, 0))
    assert r.dtype == np.uint64 and r.shape == (2, 16)
    for row, q in zip(r, (primes[1], primes[0])):
        assert [int(v) for v in row] == [int(x) % q for x in c]
