"""The fused key-switching kernels (ring/hybrid.py) against their definition, residue for residue
(spec: RING-KS-FUSED): ModUp = base conversion of each digit to the other primes, then NTT; the
inner product = sum_j sigma(ext_j) key_j mod q, sigma an NTT-domain permutation."""

from math import prod

import numpy as np
import pytest

from refimpl.ring.automorphism import automorphism_ntt, ntt_permutation
from refimpl.ring.hybrid import MAX_DIGITS, inner_product, mod_up_plan
from refimpl.ring.primes import ntt_primes
from refimpl.ring.rns import RNSContext
from refimpl.ring.sampling import RandomSource


def _context(N, bits=(52, 40, 40, 40, 60, 60), special=(61, 61)):
    primes = []
    for b in list(bits) + list(special):
        primes.append(ntt_primes(b, N, 1, exclude=tuple(primes))[0])
    return RNSContext(N, primes), tuple(range(len(bits))), tuple(range(len(bits), len(bits) + len(special)))


@pytest.mark.parametrize("N", [16, 1024])
def test_mod_up_equals_convert_then_ntt(N):
    ctx, q, p = _context(N)
    full = q + p
    owns = ((0, 1), (2, 3), (4,), (5,))  # uneven digits, one of a single prime
    d = RandomSource.insecure_seeded(3).uniform(ctx.moduli(q), N)  # NTT domain over q
    ext = mod_up_plan(ctx, full, owns).run(d, ctx.intt(d, q))
    dc = ctx.intt(d, q)
    for j, own in enumerate(owns):
        others = tuple(i for i in full if i not in own)
        want = ctx.ntt(ctx.converter(own, others).convert(dc[list(own)]), others)
        assert np.array_equal(ext[j][list(own)], d[list(own)])
        assert np.array_equal(ext[j][list(others)], want)


@pytest.mark.parametrize("galois", [None, 5, 2 * 64 - 1])
def test_inner_product_equals_sum_of_products(galois):
    N = 64
    ctx, q, p = _context(N)
    full = q + p
    src = RandomSource.insecure_seeded(4)
    D = 4
    ext = np.stack([src.uniform(ctx.moduli(full), N) for _ in range(D)])
    # keys over more rows than used, read through `rows`
    kb = [src.uniform(ctx.q, N) for _ in range(D)]
    ka = [src.uniform(ctx.q, N) for _ in range(D)]
    rows = np.array(full, dtype=np.int64)
    got0, got1 = inner_product(ctx, ext, kb, ka, rows, full, None if galois is None else ntt_permutation(galois, N))
    want0 = np.zeros((len(full), N), dtype=np.uint64)
    want1 = np.zeros_like(want0)
    for j in range(D):
        e = ext[j] if galois is None else automorphism_ntt(ext[j], galois)
        want0 = ctx.add(want0, ctx.mul(e, kb[j][rows], full), full)
        want1 = ctx.add(want1, ctx.mul(e, ka[j][rows], full), full)
    assert np.array_equal(got0, want0) and np.array_equal(got1, want1)


def test_inner_product_carries_with_largest_residues():
    """12 products of (q - 1)^2 (the dnum of the N = 2^16 sets): the 128-bit sum carries out of its
    low word at almost every step and must come out as 12 mod q; more than MAX_DIGITS is refused."""
    N = 16
    ctx, q, p = _context(N, bits=(61,), special=(61,))
    full = q + p
    top = (ctx.moduli(full) - np.uint64(1))[:, None] * np.ones(N, dtype=np.uint64)
    D = 12
    got0, got1 = inner_product(ctx, np.stack([top] * D), [top] * D, [top] * D, np.arange(2), full)
    assert got0.tolist() == got1.tolist() == [[D % int(m)] * N for m in ctx.moduli(full)]  # (-1)^2 = 1, D times
    many = np.stack([top] * (MAX_DIGITS + 1))
    with pytest.raises(ValueError, match="at most"):
        inner_product(ctx, many, [top] * (MAX_DIGITS + 1), [top] * (MAX_DIGITS + 1), np.arange(2), full)


@pytest.mark.parametrize("special", [(61,), (61, 61, 60)])
def test_fused_mod_down_equals_its_steps(special):
    """ModDown in one kernel = INTT of the P rows, + H, base conversion to Q, - H, NTT, (x - lift) P^-1."""
    N = 256
    ctx, q, p = _context(N, special=special)
    xs = [RandomSource.insecure_seeded(s).uniform(ctx.moduli(q + p), N) for s in (5, 6)]
    got = ctx.mod_down_many(xs, q, p)
    P = prod(ctx.primes[i] for i in p)
    for x, g in zip(xs, got):
        xp = ctx.add_int(ctx.intt(x[len(q):], p), P // 2, p)
        lift = ctx.ntt(ctx.add_int(ctx.converter(p, q).convert(xp), -(P // 2), q), q)
        want = ctx.mul_rows(ctx.sub(x[: len(q)], lift, q), [pow(P, -1, ctx.primes[i]) for i in q], q)
        assert np.array_equal(g, want)
        assert np.array_equal(ctx.mod_down(x, q, p), want)
