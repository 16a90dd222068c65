"""Ring layer against exact Python-integer and galois oracles (spec: RING-NTT, RING-CONV, RING-AUTO)."""

from math import prod

import galois
import numpy as np
import pytest
from hypothesis import given, strategies as st

from refimpl.ring.automorphism import automorphism_coeff, automorphism_ntt
from refimpl.ring.ntt import intt, make_tables, ntt
from refimpl.ring.primes import ntt_primes, primitive_root_2n
from refimpl.ring.rns import RNSContext
from refimpl.ring.sampling import RandomSource, ZeroNoise


def schoolbook_negacyclic(a, b, q):
    N = len(a)
    out = [0] * N
    for i in range(N):
        for j in range(N):
            v = int(a[i]) * int(b[j])
            if i + j >= N:
                out[i + j - N] -= v
            else:
                out[i + j] += v
    return [x % q for x in out]


@given(logn=st.integers(1, 6), bits=st.integers(20, 61), seed=st.integers(0, 2**32))
def test_ntt_product_equals_schoolbook(logn, bits, seed):
    """RING-NTT: INTT(NTT(a) * NTT(b)) is the negacyclic product mod q."""
    N = 2**logn
    if bits <= logn + 2:
        return
    qs = ntt_primes(bits, N, 2)
    ctx = RNSContext(N, qs)
    rng = np.random.default_rng(seed)
    basis = (0, 1)
    a = RandomSource.insecure_seeded(seed).uniform(ctx.q, N)
    b = RandomSource.insecure_seeded(seed + 1).uniform(ctx.q, N)
    c = ctx.intt(ctx.mul(ctx.ntt(a, basis), ctx.ntt(b, basis), basis), basis)
    for l, q in enumerate(qs):
        assert c[l].tolist() == schoolbook_negacyclic(a[l], b[l], q)
    del rng


@pytest.mark.parametrize("N", [8, 1024, 4096])
def test_ntt_roundtrip_and_root(N):
    qs = ntt_primes(60, N, 3)
    for q in qs:
        psi = primitive_root_2n(q, N)
        assert pow(psi, N, q) == q - 1  # psi is a primitive 2N-th root
    T = make_tables(qs, N)
    a = RandomSource.insecure_seeded(1).uniform(T.q, N)
    assert np.array_equal(intt(ntt(a, T), T), a)


@given(bits=st.integers(30, 61), seed=st.integers(0, 2**32))
def test_pointwise_mul_against_galois(bits, seed):
    """Barrett product of variable operands agrees with GF(q) arithmetic."""
    q = ntt_primes(bits, 4, 1)[0]
    ctx = RNSContext(4, [q])
    a = RandomSource.insecure_seeded(seed).uniform(ctx.q, 4)
    b = RandomSource.insecure_seeded(seed + 7).uniform(ctx.q, 4)
    GF = galois.GF(q)
    want = GF([int(x) for x in a[0]]) * GF([int(x) for x in b[0]])
    assert [int(x) for x in ctx.mul(a, b, (0,))[0]] == [int(x) for x in want]


def test_pointwise_mul_extremes():
    q = ntt_primes(61, 4, 1)[0]
    ctx = RNSContext(4, [q])
    a = np.array([[q - 1, q - 1, 0, 1]], dtype=np.uint64)
    b = np.array([[q - 1, q - 2, q - 1, q - 1]], dtype=np.uint64)
    got = ctx.mul(a, b, (0,))[0].tolist()
    assert got == [int(x) * int(y) % q for x, y in zip(a[0], b[0])]


@given(n_src=st.integers(1, 4), n_dst=st.integers(1, 3), seed=st.integers(0, 2**32))
def test_base_conversion_is_x_plus_small_multiple_of_C(n_src, n_dst, seed):
    """RING-CONV: Conv(x) = x + u C with 0 <= u < len(src), checked by CRT with Python ints."""
    N = 16
    primes = ntt_primes(50, N, n_src + n_dst)
    ctx = RNSContext(N, primes)
    src, dst = tuple(range(n_src)), tuple(range(n_src, n_src + n_dst))
    x = RandomSource.insecure_seeded(seed).uniform(ctx.moduli(src), N)
    X = ctx.reconstruct(x, src, centered=False)
    y = ctx.converter(src, dst).convert(x)
    Cq = prod(primes[i] for i in src)
    for j, pj in zip(range(n_dst), (primes[i] for i in dst)):
        for n in range(N):
            diffs = [(X[n] + u * Cq) % pj for u in range(n_src)]
            assert int(y[j, n]) in diffs


def test_mod_down_divides_by_P():
    """ModDown(x) = round-ish(x / P): error at most len(P) in every coefficient."""
    N = 32
    primes = ntt_primes(45, N, 3) + ntt_primes(55, N, 2)
    ctx = RNSContext(N, primes)
    qb, pb = (0, 1, 2), (3, 4)
    P = primes[3] * primes[4]
    rng = np.random.default_rng(3)
    vals = [int(v) * P + int(r) for v, r in zip(rng.integers(-(2**60), 2**60, N), rng.integers(0, P // 2**60, N))]
    full = qb + pb
    x = ctx.ntt(ctx.from_bigint(vals, full), full)
    got = ctx.reconstruct(ctx.intt(ctx.mod_down(x, qb, pb), qb), qb)
    for g, v in zip(got, vals):
        assert abs(g * P - v) <= 3 * P  # exact integers: floor division error plus u < len(P)


@given(logn=st.integers(2, 8), k_half=st.integers(0, 2**10), seed=st.integers(0, 2**16))
def test_automorphism_both_domains_agree(logn, k_half, seed):
    """RING-AUTO: sigma_k in the coefficient domain equals the NTT-domain permutation."""
    N = 2**logn
    k = (2 * k_half + 1) % (2 * N)
    primes = ntt_primes(40, N, 2)
    ctx = RNSContext(N, primes)
    b = (0, 1)
    a = RandomSource.insecure_seeded(seed).uniform(ctx.q, N)
    via_coeff = automorphism_coeff(a, k, ctx.q)
    via_ntt = ctx.intt(automorphism_ntt(ctx.ntt(a, b), k), b)
    assert np.array_equal(via_coeff, via_ntt)
    # independent definition: a(X^k) by summing monomials with Python ints
    q = primes[0]
    want = [0] * N
    for i, c in enumerate(a[0].tolist()):
        e = i * k % (2 * N)
        if e >= N:
            want[e - N] -= c
        else:
            want[e] += c
    assert via_coeff[0].tolist() == [w % q for w in want]


def test_automorphism_rejects_even_k():
    with pytest.raises(ValueError, match="odd"):
        automorphism_ntt(np.zeros((1, 8), dtype=np.uint64), 4)


def test_samplers():
    r = RandomSource.insecure_seeded(5)
    s = r.sparse_ternary(1024, 192)
    assert np.count_nonzero(s) == 192 and set(np.unique(s)) <= {-1, 1, 0}
    t = r.ternary(4096)
    assert set(np.unique(t)) == {-1, 0, 1}
    e = r.gaussian(1 << 16)
    assert abs(e.std() - 3.2) < 0.1 and np.abs(e).max() <= 19
    assert not ZeroNoise.insecure_seeded(1).gaussian(64).any()
    assert np.array_equal(RandomSource.insecure_seeded(9).uniform(np.array([97], dtype=np.uint64), 8),
                          RandomSource.insecure_seeded(9).uniform(np.array([97], dtype=np.uint64), 8))


def test_prime_search_properties():
    ps = ntt_primes(40, 4096, 5)
    assert len(set(ps)) == 5
    for p in ps:
        assert p % 8192 == 1 and p.bit_length() == 40
    with pytest.raises(ValueError, match="power of two"):
        ntt_primes(40, 1000, 1)


@given(bits=st.integers(20, 61), seed=st.integers(0, 2**32))
def test_shoup_companions_exact(bits, seed):
    """floor(w 2^64 / q) by the numba kernel equals the Python-integer value."""
    from refimpl.ring.modarith import shoup_companions

    q = ntt_primes(bits, 4, 1)[0]
    w = np.concatenate([RandomSource.insecure_seeded(seed).uniform(np.array([q], dtype=np.uint64), 64)[0],
                        np.array([0, 1, q - 1, q - 2], dtype=np.uint64)])
    got = shoup_companions(w, np.uint64(q))
    assert [int(x) for x in got] == [(int(v) << 64) // q for v in w]
