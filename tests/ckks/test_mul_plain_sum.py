"""The fused plaintext multiply-accumulate (ours; spec: CKKS-MAC): RNSContext.mul_sum and
Evaluator.mul_plain_sum return exactly the residues of the chain of products and additions, carry
correctly on maximal residues past the fold of every LAZY_TERMS terms, and refuse what the chain
refuses."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refimpl.ckks import Evaluator, Parameters
from refimpl.ckks.ciphertext import Ciphertext
from refimpl.ckks.errors import KeyMismatchError, LevelMismatchError, ParameterMismatchError, ScaleMismatchError
from refimpl.ckks.evaluator import MAC_BATCH
from refimpl.ring.modarith import LAZY_TERMS
from refimpl.ring.primes import ntt_primes
from refimpl.ring.rns import RNSContext
from refimpl.ring.sampling import RandomSource


def _context(N: int, bits=(61, 60, 40, 30)) -> tuple[RNSContext, tuple[int, ...]]:
    primes = []
    for b in bits:
        primes.append(ntt_primes(b, N, 1, exclude=tuple(primes))[0])
    return RNSContext(N, primes), tuple(range(len(bits)))


def _chain(ctx, xs, ys, basis, acc=None):
    """The definition: one product per term and component, added one by one."""
    out = None if acc is None else list(acc)
    for x, y in zip(xs, ys):
        terms = [ctx.mul(c, y, basis) for c in x]
        out = terms if out is None else [ctx.add(o, t, basis) for o, t in zip(out, terms)]
    return out


def test_mul_sum_carries_with_largest_residues():
    """(q - 1)^2 = 1 mod q, K times, K past two folds (and a start value q - 1): the 128-bit sums carry
    out of the low word at almost every step and must come out as K (K - 1) mod q."""
    N = 16
    ctx, basis = _context(N, bits=(61, 61))
    top = (ctx.moduli(basis) - np.uint64(1))[:, None] * np.ones(N, dtype=np.uint64)
    K = 2 * LAZY_TERMS + 3
    got = ctx.mul_sum([(top, top)] * K, [top] * K, basis)
    assert got.shape == (2, 2, N)
    assert got.tolist() == [[[K % int(q)] * N for q in ctx.moduli(basis)]] * 2
    with_acc = ctx.mul_sum([(top,)] * K, [top] * K, basis, acc=np.stack([top]))
    assert with_acc.tolist() == [[[(K - 1) % int(q)] * N for q in ctx.moduli(basis)]]


@settings(max_examples=25, deadline=None)
@given(K=st.integers(1, 2 * LAZY_TERMS + 5), C=st.integers(1, 3), seed=st.integers(0, 2**32 - 1),
       start=st.booleans())
def test_mul_sum_equals_the_chain(K, C, seed, start):
    """Random residues of 61-, 60-, 40- and 30-bit primes, any number of terms and components, with or
    without a start value: equal to the chain of mul and add, residue for residue."""
    N = 32
    ctx, basis = _context(N)
    rs = RandomSource.insecure_seeded(seed)
    mods = ctx.moduli(basis)
    xs = [tuple(rs.uniform(mods, N) for _ in range(C)) for _ in range(K)]
    ys = [rs.uniform(mods, N) for _ in range(K)]
    acc = np.stack([rs.uniform(mods, N) for _ in range(C)]) if start else None
    got = ctx.mul_sum(xs, ys, basis, acc=acc)
    want = _chain(ctx, xs, ys, basis, acc)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


def test_mul_sum_refuses_malformed_input():
    ctx, basis = _context(16)
    x = np.zeros((len(basis), 16), dtype=np.uint64)
    with pytest.raises(ValueError, match="as many"):
        ctx.mul_sum([(x, x)], [x, x], basis)
    with pytest.raises(ValueError, match="components"):
        ctx.mul_sum([(x, x), (x,)], [x, x], basis)
    with pytest.raises(ValueError, match="uint64 array"):
        ctx.mul_sum([(x[:2], x[:2])], [x[:2]], basis)
    with pytest.raises(ValueError, match="accumulator"):
        ctx.mul_sum([(x, x)], [x], basis, acc=np.stack([x]))


def _terms(kit, K, level, seed=0):
    rng = np.random.default_rng(seed)
    zs = [rng.uniform(-1, 1, kit.p.slots) for _ in range(K)]
    ws = [rng.uniform(-1, 1, kit.p.slots) for _ in range(K)]
    cts = [kit.encrypt(z, level=level) for z in zs]
    pts = [kit.enc.encode(w, level=level, scale=float(kit.p.q[level])) for w in ws]
    return zs, ws, cts, pts


@pytest.mark.parametrize("K", [1, 5, MAC_BATCH + 3])
def test_mul_plain_sum_equals_the_chain(kit, K):
    """Bit for bit the chain mul_plain + add (over more than one batch too, from generators), at the
    product scale, and decrypts to sum_k z_k w_k."""
    ev = kit.ev
    level = kit.p.L - 1
    zs, ws, cts, pts = _terms(kit, K, level)
    chain = None
    for a, pt in zip(cts, pts):
        t = ev.mul_plain(a, pt)
        chain = t if chain is None else ev.add(chain, t)
    got = ev.mul_plain_sum(iter(cts), (pt for pt in pts))
    assert (got.level, got.scale, got.size, got.key_id) == (chain.level, chain.scale, chain.size, chain.key_id)
    assert all(np.array_equal(g, w) for g, w in zip(got.c, chain.c))
    want = sum(z * w for z, w in zip(zs, ws))
    assert np.max(np.abs(kit.decrypt(ev.rescale(got)).real - want)) < 1e-5 * K


def test_mul_plain_sum_refuses_what_the_chain_refuses(kit):
    """Mismatched levels, product scales, sizes, lengths, keys and parameters; no terms."""
    ev, p = kit.ev, kit.p
    level = p.L - 1
    _, _, cts, pts = _terms(kit, 3, level)
    low = ev.drop_level(cts[1], level - 1)
    with pytest.raises(LevelMismatchError, match="term 1"):
        ev.mul_plain_sum([cts[0], low], [pts[0], kit.enc.encode(np.ones(4), level=level - 1)])
    with pytest.raises(LevelMismatchError):  # a plaintext at another level than its ciphertext
        ev.mul_plain_sum([cts[0], low], pts[:2])
    other = kit.enc.encode(np.ones(4), level=level, scale=2.0**30)
    with pytest.raises(ScaleMismatchError, match="term 2"):
        ev.mul_plain_sum(cts, [pts[0], pts[1], other])
    c3 = ev.multiply(cts[0], cts[1], relinearize=False)
    c3 = Ciphertext(c3.c, c3.level, cts[0].scale, p, c3.key_id)
    with pytest.raises(ValueError, match="components"):
        ev.mul_plain_sum([cts[0], c3], pts[:2])
    with pytest.raises(ValueError):
        ev.mul_plain_sum(cts, pts[:2])
    with pytest.raises(ValueError, match="no terms"):
        ev.mul_plain_sum([], [])
    foreign = Ciphertext(cts[1].c, cts[1].level, cts[1].scale, p, b"\x01" * 8)
    with pytest.raises(KeyMismatchError):
        ev.mul_plain_sum([cts[0], foreign], pts[:2])
    with pytest.raises(KeyMismatchError):  # an evaluator without keys: the terms must still agree
        Evaluator(p).mul_plain_sum([cts[0], foreign], pts[:2])
    q = Parameters.create(N=p.N, levels=p.L, log_q0=60, log_qi=39, log_p=60, num_p=2, insecure=True)
    alien = Ciphertext(cts[1].c, cts[1].level, cts[1].scale, q)
    with pytest.raises(ParameterMismatchError):
        ev.mul_plain_sum([cts[0], alien], pts[:2])
