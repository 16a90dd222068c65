"""Non-linear protocols vs float64 references (spec/aby3.md ABY3-RELU-1 ... ABY3-GELU-2).

Tolerances: fixed point with f = 18 has ulp 3.8e-6; each bound below is the approximation
error of the method (stated in the protocol's docstring) plus a few ulps times the size of
the coefficients involved.
"""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from refimpl.aby3 import nonlinear as NL
from refimpl.bert import functional as Fn

from .helpers import run

ULP = 2.0**-18


@given(st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=30), st.integers(0, 99))
def test_relu(xs, seed):
    """ABY3-RELU-1: ReLU = MSB + bit injection: exact up to the input encoding; 10 rounds."""
    x = np.array(xs)
    out, _, cost = run(NL.relu, x, seed=seed)
    assert np.max(np.abs(out - Fn.relu(np.rint(x * 2**18) / 2**18))) == 0
    assert cost["rounds"] == 10


def test_relu_cost_beats_spu():
    """ABY3-RELU-1: ~151 B per element (SPU 0.9.5 measured 172 B, 11 send actions)."""
    _, _, cost = run(NL.relu, np.linspace(-5, 5, 800))
    assert cost["bytes"] / 800 < 172 and cost["rounds"] <= 11


def test_max_rows():
    """ABY3-MAX-1: row maximum by a tree of ReLUs, odd lengths included; ceil(log2 n) levels."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 13)) * 10
    out, _, cost = run(NL.max_last_axis, x)
    assert np.max(np.abs(out - x.max(-1, keepdims=True))) <= ULP
    assert cost["rounds"] <= 4 * 10  # 4 levels of ReLU (13 -> 7 -> 4 -> 2 -> 1); rounds may overlap


@given(st.lists(st.floats(-50, 50), min_size=1, max_size=30))
def test_quad_fused(xs):
    """ABY3-QUAD-1: Quad(x) = 0.125x^2 + 0.25x + 0.5 fused: one mul + one truncation, 42 B, 2 rounds."""
    x = np.array(xs)
    out, _, cost = run(NL.quad, x)
    xr = np.rint(x * 2**18) / 2**18
    assert np.max(np.abs(out - Fn.quad(xr))) <= 2 * ULP
    assert cost == {"bytes": 42 * x.size, "rounds": 2, "sends": 3}


def test_poly_general_one_truncation_last_level():
    """ABY3-POLY-1: degree-5 polynomial: powers x^2, x^3 then one fused truncation (3 levels)."""
    x = np.linspace(-1, 1, 50)
    c = (0.3, -1.2, 0.5, 2.0, -0.7, 0.25)
    out, _, cost = run(lambda p, s: NL.poly(p, s, c), x)
    assert np.max(np.abs(out - Fn.horner(x, c))) < 20 * ULP
    assert cost["rounds"] == 3 * 2


def test_exp_negative_range():
    """ABY3-EXP-1: exp(x) for x in [-20, 0]: error <= x^2 e^x / 2^9 + few ulp; below -2^8 it is 0."""
    x = np.concatenate([np.linspace(-20, 0, 200), [-300.0, -1000.0]])
    out, _, _ = run(NL.exp_neg, x)
    bound = x**2 * np.exp(x) / 2**9 + 4 * ULP
    assert np.all(np.abs(out - np.exp(x)) <= bound)
    assert np.all(out[-2:] == 0)


def test_exp_positive_range_high_precision_squarings():
    """ABY3-EXP-2: with x_max, r = 12 squarings stay precise for x up to 8: relative error within
    the Taylor-limit error x^2 / 2^13 plus 2e-4 (without the high-precision squarings: ~1 %)."""
    x = np.linspace(-4, 8, 60)
    out, _, _ = run(lambda p, s: NL.exp_neg(p, s, iters=12, x_max=8.0), x)
    assert np.all(np.abs(out / np.exp(x) - 1) < x**2 / 2**13 + 2e-4)


def test_exp_cubic_base():
    """ABY3-EXP-3: 1 + y + y^2/2 + y^3/6 base, r = 6: relative error x^4 / (24 2^18) + 1e-4 on [-20, 10]."""
    x = np.linspace(-20, 10, 61)
    out, _, cost = run(lambda p, s: NL.exp_neg(p, s, iters=6, x_max=10.0, clamp=False, order=3), x)
    assert np.all(np.abs(out - np.exp(x)) <= (x**4 / (24 * 2**18) + 1e-4) * np.exp(x) + 4 * ULP)
    assert cost["rounds"] == 2 * (2 + 6)


@pytest.mark.parametrize("scale", [1e-4, 1e-2, 1.0, 37.0, 3e4])
def test_reciprocal_and_rsqrt(scale):
    """ABY3-RECIP-1, ABY3-RSQRT-1: Goldschmidt 1/x and Newton 1/sqrt(x) within 2 ulp of the output
    plus 3e-5 relative (the 18-bit normalized mantissa), on inputs over eight decades."""
    x = np.rint(np.linspace(1, 2, 9) * scale * 2**18) / 2**18
    out, _, _ = run(NL.reciprocal, x)
    assert np.all(np.abs(out - 1 / x) <= 2 * ULP + 3e-5 / x)
    out, _, _ = run(NL.rsqrt, x)
    assert np.all(np.abs(out - x**-0.5) <= 2 * ULP + 3e-5 * x**-0.5)


def test_gelu_poly4_matches_plaintext_pieces():
    """ABY3-GELU-1: 4-piece GeLU (NEXUS/PUMA) vs refimpl.bert.functional.gelu_poly4, ties included."""
    x = np.concatenate([np.linspace(-8, 8, 401), [-4.0, -1.95, 3.0]])
    xr = np.rint(x * 2**18) / 2**18
    out, _, cost = run(NL.gelu_poly4, x)
    assert np.max(np.abs(out - Fn.gelu_poly4(xr))) < 1e-4
    assert cost["bytes"] / x.size < 923  # SPU PUMA GeLU, measured


def test_gelu_erf():
    """ABY3-GELU-2: erf GeLU within 5e-4 of gelu_erf on [-10, 10] (SPU's erf GeLU: 4.3e-4)."""
    x = np.linspace(-10, 10, 801)
    out, _, cost = run(NL.gelu_erf, x)
    assert np.max(np.abs(out - Fn.gelu_erf(x))) < 5e-4
    assert cost["bytes"] / x.size < 5304 / 5  # SPU erf GeLU: 5304 B per element


def test_gelu_erf_as_spu_recipe():
    """ABY3-GELU-3: GeLU with SPU's erf recipe (A&S 7.1.27 + Goldschmidt reciprocal) is within
    1e-3 of the exact GeLU on [-12, 12] (A&S: |erf error| <= 5e-4, times |x|/2 near the clamp) and
    costs several times refimpl's even-polynomial gelu_erf (why the baseline's GeLU matters)."""
    from refimpl.aby3.nonlinear import gelu_erf, gelu_erf_as
    from refimpl.bert import functional as Fn

    x = np.concatenate([np.linspace(-12, 12, 801), [0.0, 4.2426, -4.2426]])
    y, _, st = run(gelu_erf_as, x)
    assert np.max(np.abs(y - Fn.gelu_erf(x))) < 1e-3
    _, _, st_ours = run(gelu_erf, x)
    assert st["bytes"] > 5 * st_ours["bytes"] and st["rounds"] > 2 * st_ours["rounds"]
