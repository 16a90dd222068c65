"""Arithmetic shares: sharing, reveal, mul, matmul, truncations (spec/aby3.md ABY3-SHARE-*, ABY3-MUL-*, ABY3-TRUNC-*)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from refimpl.aby3 import arith
from refimpl.aby3.fixed import Fxp
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import reveal, share_input

from .helpers import run

F = Fxp()
ULP = 2.0**-F.f


def fxp_round(x):
    return np.rint(np.asarray(x) * 2.0**F.f) / 2.0**F.f


def test_share_reveal_roundtrip_and_two_parties_reconstruct():
    """ABY3-SHARE-1: any two parties' pairs hold all three components; reveal gives x back."""
    x = np.array([0.0, 1.5, -2.25, 1e6, -1e-5])

    def prog(p):
        s = share_input(p, 1, x if p.id == 1 else None)
        return s.a, s.b, reveal(p, s)

    res = simulate(prog)
    (a0, b0, y), (a1, b1, _), (a2, b2, _) = res.outputs
    assert np.array_equal(b0, a1) and np.array_equal(b1, a2) and np.array_equal(b2, a0)  # replication
    for comps in [(a0, b0, b1), (a1, b1, a0), (a2, b2, a1)]:  # pairs (0,1), (1,2), (2,0)
        assert np.array_equal(F.decode(comps[0] + comps[1] + comps[2]), fxp_round(x))
    assert np.array_equal(y, fxp_round(x))
    assert res.bytes_total == (2 + 3) * 8 * x.size  # owner sends x_{o+2} twice; reveal: 3 elements
    assert res.rounds == 2  # sharing 1 + reveal 1


def test_reveal_to_one_party_only():
    """ABY3-SHARE-2: reveal to one party costs one ring element and the others learn nothing."""
    def prog(p):
        s = share_input(p, 0, np.arange(4.0) if p.id == 0 else None)
        with p.net.scope("op"):
            return reveal(p, s, to=2)

    res = simulate(prog)
    assert res.outputs[0] is None and res.outputs[1] is None
    assert np.array_equal(res.outputs[2], np.arange(4.0))
    assert res.scope("op") == {"bytes": 32, "rounds": 1, "sends": 1}


def test_bad_inputs_raise():
    """ABY3-SHARE-3: out-of-range input, bad party ids, shape mismatch, shares of another run."""
    with pytest.raises(ValueError, match="fixed-point range"):
        simulate(lambda p: share_input(p, 0, np.array([2.0**50]) if p.id == 0 else None))
    with pytest.raises(ValueError, match="owner"):
        simulate(lambda p: share_input(p, 3, None))
    with pytest.raises(ValueError, match="NaN"):
        F.encode(np.array([np.nan]))

    def bad_reveal(p):
        return reveal(p, share_input(p, 0, np.ones(2) if p.id == 0 else None), to=5)

    with pytest.raises(ValueError, match="party 5"):
        simulate(bad_reveal)

    def bad_shape(p):
        x = share_input(p, 0, np.ones(2) if p.id == 0 else None)
        y = share_input(p, 0, np.ones(3) if p.id == 0 else None)
        return arith.mul(p, x, y)

    with pytest.raises(ValueError, match="shape"):
        simulate(bad_shape)
    stale = simulate(lambda p: share_input(p, 0, np.ones(2) if p.id == 0 else None)).outputs

    def mixed(p):
        return arith.add(p, stale[p.id], share_input(p, 0, np.ones(2) if p.id == 0 else None))

    with pytest.raises(ValueError, match="different protocol runs"):
        simulate(mixed)


@given(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=20), st.integers(0, 2**16))
def test_mul_is_exact_ring_product(xs, seed):
    """ABY3-MUL-1: mul without truncation is the exact ring product of the encodings."""
    x = np.array(xs)
    y = x[::-1] * 0.5 - 1
    out, _, cost = run(lambda p, a, b: arith.mul(p, a, b), x, y, seed=seed, reveal_raw=True)
    assert np.array_equal(out, F.encode(x) * F.encode(y))
    assert cost == {"bytes": 3 * 8 * x.size, "rounds": 1, "sends": 1}  # 3 x 64 bits per element


def test_local_ops():
    """ABY3-LIN-1: add, sub, public add, integer and public real multiplication."""
    x, y = np.array([1.5, -2.0, 3.25]), np.array([0.5, 4.0, -1.0])

    def f(p, a, b):
        s = arith.add(p, arith.sub(p, a, b), arith.add_public(p, a, 2.0))
        return arith.mul_int(p, s, 3)

    out, _, cost = run(f, x, y)
    assert np.array_equal(out, 3 * ((x - y) + (x + 2.0)))
    assert cost["bytes"] == 0
    out, _, cost = run(lambda p, a: arith.mul_public(p, a, np.array([0.25, 0.5, 0.125])), x)
    assert np.max(np.abs(out - x * np.array([0.25, 0.5, 0.125]))) <= ULP  # one truncation: <= 1 ulp
    # exact powers of two: t = 3 bits; y_1 (8 B each) + two OTs of 3-bit messages, bit-packed
    assert cost["bytes"] == 8 * 3 + 2 * (-(-2 * 3 * 3 // 8) + -(-3 * 3 // 8)) and cost["rounds"] == 1


def test_matmul_cost_independent_of_inner_dimension():
    """ABY3-MUL-2: matmul = 1 round and 3 ring elements per output element, any inner dimension."""
    rng = np.random.default_rng(0)
    for k in (1, 7, 64):
        a, b = rng.normal(size=(5, k)), rng.normal(size=(k, 3))
        out, _, cost = run(lambda p, x, y: arith.matmul(p, x, y), a, b, reveal_raw=True)
        ea, eb = F.encode(a), F.encode(b)
        ref = (ea.astype(object) @ eb.astype(object)) % 2**64
        assert np.array_equal(out, ref.astype(np.uint64))
        assert cost == {"bytes": 24 * 15, "rounds": 1, "sends": 1}


def test_batched_fxp_matmul_against_float():
    """ABY3-MUL-3: fused fixed-point matmul (2 rounds, 42 B per output) within (k/2 + 1) ulp."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 4, 16)), rng.normal(size=(2, 16, 3))
    out, _, cost = run(lambda p, x, y: arith.fxp_matmul(p, x, y), a, b)
    ref = fxp_round(a) @ fxp_round(b)
    assert np.max(np.abs(out - ref)) <= 2 * ULP
    assert cost == {"bytes": 42 * 24, "rounds": 2, "sends": 3}


@given(st.lists(st.floats(-3e4, 3e4), min_size=1, max_size=30), st.integers(0, 2**16))
def test_fxp_mul_error_at_most_one_ulp(xs, seed):
    """ABY3-TRUNC-2: fxp_mul = floor(x y 2^f) or that + 1 ulp (exact when exact); 2 rounds, 42 B."""
    x = np.array(xs)
    y = np.cos(x) * 100
    out, _, cost = run(lambda p, a, b: arith.fxp_mul(p, a, b), x, y, seed=seed)
    prod = (F.encode(x).view(np.int64).astype(object) * F.encode(y).view(np.int64).astype(object))
    exact = np.array([v >> F.f for v in prod], dtype=np.float64) / 2**F.f  # floor
    diff = np.round((out - exact) / ULP)
    assert set(np.unique(diff)) <= {0.0, 1.0}
    exact_case = (prod % 2**F.f) == 0  # x y 2^f an integer: no rounding at all
    assert np.all(diff[exact_case.astype(bool)] == 0)
    assert cost == {"bytes": 42 * x.size, "rounds": 2, "sends": 3}


def test_truncation_error_rates():
    """ABY3-TRUNC-1/2: measured error of both truncations on 2f-scaled products.

    Share truncation I (ABY3 §5.1) fails (error ~2^(64-d)) with probability ~|x| / 2^63:
    for |x 2^(2f)| ~ 2^56 that is ~1/128, so 20000 samples show failures. The wrap-corrected
    truncation never fails and is off by at most one ulp.
    """
    rng = np.random.default_rng(2)
    x = rng.uniform(-2**20, 2**20, 20000)  # raw values around 2^(20 + 36) after scaling

    def f(p, a):
        z = arith.lshift(p, a, F.f)  # x at scale 2^(2f), like a product
        return arith.truncate_share(p, z, F.f), arith.truncate(p, z, F.f)

    def prog(p):
        a = share_input(p, 0, x if p.id == 0 else None)
        ts, tw = f(p, a)
        return reveal(p, ts), reveal(p, tw)

    ts, tw = simulate(prog, insecure_seed=3).outputs[0]
    ref = fxp_round(x)
    bad_share = np.abs(ts - ref) > 1
    assert 0.001 < bad_share.mean() < 0.05  # ~ 2^56 / 2^63 = 1/128 expected
    assert np.max(np.abs(tw - ref)) <= ULP
    assert np.max(np.abs(ts - ref)[~bad_share]) <= ULP
