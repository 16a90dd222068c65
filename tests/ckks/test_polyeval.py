"""CKKS-POLY-1: Chebyshev evaluation at the optimal depth with exact scales, against numpy."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from numpy.polynomial import chebyshev as npcheb

from refimpl.ckks import LevelExhaustedError, Parameters
from refimpl.ckks.bootstrap import OracleBootstrapper
from refimpl.ckks.polyeval import (
    chebyshev_interpolate,
    evaluate_chebyshev,
    evaluate_power,
    evaluate_power_many,
    poly_depth,
)
from refimpl.nexus.counting import CountingEvaluator

from conftest import Kit


@pytest.fixture(scope="module")
def deep():
    p = Parameters.create(N=1024, levels=12, log_q0=60, log_qi=40, log_p=60, num_p=3, insecure=True)
    return Kit(p)


def bits(err):
    return float(-np.log2(np.max(np.abs(err)) + 1e-300))


@pytest.mark.parametrize("d", [1, 2, 3, 4, 7, 8, 9, 16, 31, 63])
def test_depth_is_optimal_and_scale_exact(deep, d):
    x = deep.rng.uniform(-1, 1, deep.p.slots)
    ct = deep.encrypt(x)
    c = deep.rng.uniform(-1, 1, d + 1) / (np.arange(d + 1) + 1)
    out, st = evaluate_chebyshev(deep.ev, ct, c)
    assert st.depth == poly_depth(d) == int(np.ceil(np.log2(d + 1)))
    assert out.level == ct.level - st.depth
    assert out.scale == pytest.approx(ct.scale, rel=1e-12)
    # non-scalar products: baby-step giant-step, ~2 sqrt(d) + log2 d (Paterson-Stockmeyer), >= log2 d
    assert np.floor(np.log2(d)) <= st.mults <= 3 * np.sqrt(d + 1) + poly_depth(d)
    # precision: fresh noise (~2^-(40-15)) grows with the coefficient mass
    assert bits(deep.decrypt(out).real - npcheb.chebval(x, c)) >= 40 - (10 + 5) - np.log2(1 + np.abs(c).sum()) - 2


@given(lo=st.floats(-8, 0), width=st.floats(0.5, 8), d=st.integers(2, 12))
@settings(max_examples=6)
def test_interval_map_costs_one_level(deep, lo, width, d):
    hi = lo + width
    c, err = chebyshev_interpolate(np.sin, lo, hi, d)
    x = deep.rng.uniform(lo, hi, deep.p.slots)
    out, st = evaluate_chebyshev(deep.ev, deep.encrypt(x), c, lo, hi)
    assert st.depth == poly_depth(d) + 1
    assert np.max(np.abs(deep.decrypt(out).real - np.sin(x))) <= err + 2**-18


def test_power_basis_sgn_piece(deep):
    """NEXUS f4 (power basis, degree 9) at depth 4."""
    f4 = np.zeros(10)
    f4[[1, 3, 5, 7, 9]] = np.array([315, -420, 378, -180, 35]) / 128
    x = deep.rng.uniform(-1, 1, deep.p.slots)
    out, st = evaluate_power(deep.ev, deep.encrypt(x), f4)
    assert st.depth == 4
    assert bits(deep.decrypt(out).real - np.polynomial.polynomial.polyval(x, f4)) >= 20


def test_interpolation_error_is_reported():
    c, err = chebyshev_interpolate(np.exp, -1, 1, 12)
    grid = np.linspace(-1, 1, 1001)
    assert err == pytest.approx(np.max(np.abs(npcheb.chebval(grid, c) - np.exp(grid))), rel=0.1)
    assert err < 1e-10


def test_too_few_levels_is_refused(deep):
    ct = deep.ev.drop_level(deep.encrypt(np.zeros(4)), 2)
    with pytest.raises(LevelExhaustedError, match="degree-15 polynomial needs 4 levels"):
        evaluate_chebyshev(deep.ev, ct, np.ones(16))


def test_oracle_bootstrapper_counts_and_refreshes(deep):
    bs = OracleBootstrapper(deep.sk, output_level=9)
    x = deep.rng.uniform(-1, 1, deep.p.slots)
    ct = deep.ev.drop_level(deep.encrypt(x), 0)
    out = bs.bootstrap(ct)
    assert out.level == 9 and bs.calls == 1 and ct.level == 0
    assert bits(deep.decrypt(out).real - x) >= 20


def test_input_scale_far_from_the_primes_is_refused(deep):
    """A scale far above the primes would encode the constants below 2^20: refuse, never a
    silent wrong answer (reported by the NEXUS side: 2^65 errors otherwise)."""
    from refimpl.ckks import CKKSError, with_scale

    x = deep.rng.uniform(-1, 1, deep.p.slots)
    ct = deep.encrypt(x)
    big = with_scale(deep.ev.mul_int(ct, 2**30), ct.scale * 2**30)  # same slots, scale 2^70
    with pytest.raises(CKKSError, match="bring the input's scale near the primes"):
        evaluate_chebyshev(deep.ev, big, np.ones(10))


@given(seed=st.integers(0, 2**16), lo=st.floats(-4, -1.5), width=st.floats(0.5, 4))
@settings(max_examples=4, deadline=None, derandomize=True)
def test_odd_degree_9_takes_5_products(deep, seed, lo, width):
    """CKKS-POLY-ODD9: an odd degree-9 series in 5 products at depth 4 (the general path: 6 or 7),
    exact scale, as precise as the general path on the same ciphertext."""
    rng = np.random.default_rng(seed)
    c = np.zeros(10)
    c[1::2] = rng.uniform(-1, 1, 5)
    x = deep.rng.uniform(-1, 1, deep.p.slots)
    ct = deep.encrypt(x)
    target = ct.scale * 1.5
    out, st = evaluate_chebyshev(deep.ev, ct, c, target_scale=target)
    assert (st.mults, st.depth, out.scale) == (5, 4, target)
    got = bits(deep.decrypt(out).real - npcheb.chebval(x, c))
    assert got >= 40 - 15 - np.log2(1 + np.abs(c).sum()) - 3
    general = c.copy()
    general[8] = 1e-12  # not odd any more: the general baby-step giant-step path
    ref, st_ref = evaluate_chebyshev(deep.ev, ct, general, target_scale=target)
    assert st_ref.depth == 4 and st_ref.mults >= 6
    assert got >= bits(deep.decrypt(ref).real - npcheb.chebval(x, general)) - 1
    # on an interval [lo, lo + width] the odd path keeps its one extra level for the affine map
    out2, st2 = evaluate_chebyshev(deep.ev, deep.encrypt(lo + width * (x + 1) / 2), c, lo, lo + width)
    assert (st2.mults, st2.depth) == (5, 5)
    # the affine map multiplies the input noise by 2 / width
    assert bits(deep.decrypt(out2).real - npcheb.chebval(x, c)) >= 40 - 15 - np.log2(1 + np.abs(c).sum()) - np.log2(2 / width) - 3


@given(seed=st.integers(0, 2**16), lo=st.floats(-8, 0), width=st.floats(1, 8),
       degrees=st.lists(st.integers(1, 12), min_size=2, max_size=5))
@settings(max_examples=5, deadline=None, derandomize=True)
def test_many_polynomials_share_their_powers(deep, seed, lo, width, degrees):
    """CKKS-POLY-MANY: polynomials of one ciphertext evaluated together land at the level and exact scale of
    separate evaluations, as precise, with at most the products of the separate ones (the powers shared)."""
    rng = np.random.default_rng(seed)
    hi = lo + width
    polys = [rng.uniform(-1, 1, d + 1) / (np.abs(lo) + width) ** np.arange(d + 1) for d in degrees]
    x = rng.uniform(lo, hi, deep.p.slots)
    ct = deep.encrypt(x)
    targets = [ct.scale * (1 + k) for k in range(len(polys))]
    outs, st_many = evaluate_power_many(deep.ev, ct, polys, lo, hi, targets)
    separate = 0
    for c, t, out in zip(polys, targets, outs):
        ref, st_one = evaluate_power(deep.ev, ct, c, lo, hi, target_scale=t)
        separate += st_one.mults
        assert (out.level, out.scale) == (ref.level, ref.scale) == (ct.level - st_one.depth, t)
        want = np.polynomial.polynomial.polyval(x, c)
        assert bits(deep.decrypt(out).real - want) >= bits(deep.decrypt(ref).real - want) - 1
    assert st_many.mults <= separate
    if len(set(degrees)) < len(degrees) and max(degrees) >= 2:  # a repeated degree >= 2 reuses its powers
        assert st_many.mults < separate


def key_switches(ev, fn):
    """(fn's result, the key switches it asked of ev) on a CountingEvaluator in front of ev."""
    cev = CountingEvaluator(ev)
    out = fn(cev)
    return out, cev.counts["key_switches"]


@given(seed=st.integers(0, 2**16), d=st.integers(1, 40), interval=st.booleans())
@settings(max_examples=8, deadline=None, derandomize=True)
def test_lazy_relinearization_matches_the_eager_path(deep, seed, d, interval):
    """CKKS-POLY-LAZY: the giant-step products summed before relinearizing (ours, the default) land at the eager
    path's level and exact scale, relinearized, as precise, with at most its key switches: one per power T_j and per
    relinearized sum instead of one per product."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1, 1, d + 1) / (np.arange(d + 1) + 1)
    lo, hi = (-3.0, 5.0) if interval else (-1.0, 1.0)
    x = rng.uniform(lo, hi, deep.p.slots)
    ct = deep.encrypt(x)
    (lazy, st_lazy), ks_lazy = key_switches(deep.ev, lambda ev: evaluate_chebyshev(ev, ct, c, lo, hi))
    (eager, st_eager), ks_eager = key_switches(deep.ev, lambda ev: evaluate_chebyshev(ev, ct, c, lo, hi, lazy=False))
    assert (lazy.level, lazy.scale, lazy.size) == (eager.level, eager.scale, 2)
    assert st_lazy.mults == st_eager.mults == ks_eager
    want = npcheb.chebval((2 * x - lo - hi) / (hi - lo), c)
    assert bits(deep.decrypt(lazy).real - want) >= bits(deep.decrypt(eager).real - want) - 1
    assert np.max(np.abs(deep.decrypt(lazy).real - deep.decrypt(eager).real)) < 2**-20
    giant = st_eager.mults - len(st_eager.powers)  # the giant-step products
    assert len(st_eager.powers) + min(giant, 1) <= ks_lazy <= ks_eager
    if 8 <= d <= 11:  # p = q T_8 + (q' T_4 + r'), q and q' leaves: two giant steps, one relinearization
        assert (giant, ks_lazy) == (2, len(st_eager.powers) + 1)


def test_lazy_odd_degree_9_and_shared_powers_save_key_switches(deep):
    """CKKS-POLY-LAZY: the odd degree-9 scheme 4 key switches instead of 5 (T3 and the last product unrelinearized);
    NEXUS's GELU's five polynomials of x (three degree-9 Sgn first steps, degree 3 and 6) 9 instead of 12."""
    x = deep.rng.uniform(-1, 1, deep.p.slots)
    ct = deep.encrypt(x)
    c = np.zeros(10)
    c[1::2] = [1.2, -0.7, 0.5, -0.3, 0.1]
    (lazy, _), ks = key_switches(deep.ev, lambda ev: evaluate_chebyshev(ev, ct, c))
    (eager, _), ks_eager = key_switches(deep.ev, lambda ev: evaluate_chebyshev(ev, ct, c, lazy=False))
    assert (ks, ks_eager) == (4, 5)
    assert np.max(np.abs(deep.decrypt(lazy).real - npcheb.chebval(x, c))) < 2**-18
    assert np.max(np.abs(deep.decrypt(lazy).real - deep.decrypt(eager).real)) < 2**-20
    rng = np.random.default_rng(7)
    polys = [rng.uniform(-1, 1, d + 1) / 4.0 ** np.arange(d + 1) for d in (9, 9, 9, 3, 6)]
    (outs, _), ks = key_switches(deep.ev, lambda ev: evaluate_power_many(ev, ct, polys, -4.0, 4.0))
    (refs, _), ks_eager = key_switches(deep.ev, lambda ev: evaluate_power_many(ev, ct, polys, -4.0, 4.0, lazy=False))
    assert (ks, ks_eager) == (9, 12)
    for out, ref in zip(outs, refs):
        assert (out.level, out.scale, out.size) == (ref.level, ref.scale, 2)
        assert np.max(np.abs(deep.decrypt(out).real - deep.decrypt(ref).real)) < 2**-20
