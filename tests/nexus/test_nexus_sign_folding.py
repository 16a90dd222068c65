"""Sgn (NEXUS §2.4) and slot folding (Alg. 7): QuickSum, QuickMax, row duplication.

Tolerances: "tight" compares the homomorphic result with the same approximation in float64;
the CKKS error of a fresh slot is about 2^-(40 - 11 - 3) at N = 2^11, Delta = 2^40, and Sgn
multiplies input errors by its slope (at most f4'(0)^2 g4'(0)^2 ~ 2^7.6 near 0): we require
2^-16 for Sgn, 2^-14 for QuickMax (three rounds). "Exact" compares with the true function;
the gap is the approximation's own error, reported (spec NEXUS-SGN-ERR, NEXUS-QMAX-ERR).
"""

import numpy as np
import pytest
import sympy
from hypothesis import given, settings, strategies as st

from refimpl.ckks import Parameters
from refimpl.ckks.bootstrap import OracleBootstrapper
from refimpl.nexus.counting import CountingBootstrapper, CountingEvaluator
from refimpl.nexus.folding import (
    QUICKMAX_ROUND_LEVELS, max_pair_error_bound, quick_max, quick_max_plain, quick_sum, quick_sum_plain,
)
from refimpl.nexus.sign import DEPTH, MIN_ABS_INPUT, exact_coefficients, sgn, sgn_plain

from .helpers import Kit, bits

SLOTS = 1024


@pytest.fixture(scope="module")
def kit():
    p = Parameters.create(N=2048, levels=18, dnum=4, insecure=True)
    rot = sorted({1 << i for i in range(10)} | {-(1 << i) for i in range(10)})
    return Kit(p, rotations=rot)


def test_sgn_coefficients_exact():
    """NEXUS-SGN-COEF: f4, g4 are the exact rationals of the paper; f4(1) = 1, f4 odd; g4(1) = 5850-... / 2^10."""
    x = sympy.Symbol("x")
    f = sum(c * x**k for k, c in enumerate(exact_coefficients("f4")))
    g = sum(c * x**k for k, c in enumerate(exact_coefficients("g4")))
    assert f.subs(x, 1) == 1 and sympy.expand(f.subs(x, -x) + f) == 0
    assert g.subs(x, 1) == sympy.Rational(5850 - 34974 + 97015 - 113492 + 46623, 1024)
    assert exact_coefficients("f4")[1] == sympy.Rational(315, 128)


def test_sgn_plain_resolution():
    """NEXUS-SGN-ERR: |Sgn(x) - sign(x)| <= 2^-16 for 0.0174 <= |x| <= 1 (float64, dense grid)."""
    x = np.linspace(MIN_ABS_INPUT, 1.0, 2_000_001)
    err = np.max(np.abs(sgn_plain(x) - 1.0))
    assert err <= 2.0**-16
    assert np.max(np.abs(sgn_plain(np.array([2.0**-7]))- 1)) > 0.01  # useless below ~2^-7: stated, checked


def test_sgn_encrypted(kit):
    """NEXUS-SGN-DEPTH: 16 levels; tight against the float64 composite; the output factor scales f4 only."""
    x = np.linspace(-1, 1, SLOTS)
    ct = kit.encrypt(x)
    ev = CountingEvaluator(kit.ev)
    out = sgn(ev, ct)
    assert ct.level - out.level == DEPTH == 16
    assert ev.counts["ct_mults"] == 4 * 5  # odd degree-9 pieces: 5 products each (official: 5)
    assert out.scale == ct.scale
    z = kit.decrypt(out)
    assert bits(z - sgn_plain(x)) >= 16
    far = np.abs(x) >= MIN_ABS_INPUT
    assert bits((z - np.sign(x))[far]) >= 15.5
    half = kit.decrypt(sgn(kit.ev, ct, bound=2.0, factor=0.5))  # Sgn(x / 2) / 2: the free normalisation
    assert bits(half - sgn_plain(x / 2, 0.5)) >= 16


@given(log_n=st.integers(0, 10), dup=st.booleans())
@settings(max_examples=8)
def test_quick_sum_law(kit, log_n, dup):
    """NEXUS-QSUM-ROT: log2(n) rotations (+1 duplication), 0 levels; equals the cyclic window sum."""
    n = 1 << log_n
    x = kit.rng.uniform(-1, 1, SLOTS)
    ev = CountingEvaluator(kit.ev)
    ct = kit.encrypt(x)
    out = quick_sum(ev, ct, n, duplicate=dup and 2 * n <= SLOTS)
    dup = dup and 2 * n <= SLOTS
    assert ev.counts["rotations"] == log_n + dup and out.level == ct.level
    assert bits(kit.decrypt(out) - quick_sum_plain(x, n, duplicate=dup)) >= 40 - 11 - 5 - log_n


def test_quick_sum_rows_with_duplication(kit):
    """NEXUS-QSUM-DUP: rows of n = 16 in windows of 32 (zero padded): after duplication every slot of a row holds its sum."""
    n, w = 16, 32
    rows = kit.rng.uniform(-1, 1, (SLOTS // w, n))
    x = np.zeros((SLOTS // w, w))
    x[:, :n] = rows
    out = kit.decrypt(quick_sum(kit.ev, kit.encrypt(x.ravel()), n, duplicate=True)).reshape(-1, w)
    assert bits(out[:, :n] - rows.sum(1, keepdims=True)) >= 20


def test_quick_sum_strided(kit):
    """NEXUS-QSUM-ROT: elements every `step` slots (the interleaved layout of ct-ct products) fold the same way."""
    x = kit.rng.uniform(-1, 1, SLOTS)
    ev = CountingEvaluator(kit.ev)
    out = quick_sum(ev, kit.encrypt(x), 64, step=16)
    assert ev.counts["rotations"] == 6
    assert bits(kit.decrypt(out) - x.reshape(64, 16).sum(0)[np.arange(SLOTS) % 16]) >= 20


def test_quick_max(kit):
    """NEXUS-QMAX-ROUNDS: n = 8: 3 rounds = 3 rotations, 3 Sgn, 17 levels each, bootstraps between rounds."""
    n = 8
    x = kit.rng.uniform(-0.5, 0.5, SLOTS)
    ev = CountingEvaluator(kit.ev)
    bts = CountingBootstrapper(OracleBootstrapper(kit.sk))
    ct = kit.encrypt(x)
    out = quick_max(ev, ct, n, bootstrapper=bts)
    assert ev.counts["rotations"] == 3 and bts.calls == 2  # levels 18: one round per refresh
    assert out.level == kit.p.L - QUICKMAX_ROUND_LEVELS
    z = kit.decrypt(out)
    assert bits(z - quick_max_plain(x, n)) >= 14
    exact = np.max(np.stack([np.roll(x, -k) for k in range(n)]), axis=0)
    assert np.max(np.abs(z - exact)) <= 3 * max_pair_error_bound() + 2**-14  # NEXUS-QMAX-ERR


def test_quick_max_needs_levels(kit):
    """A round that does not fit and no bootstrapper: a clear error."""
    ct = kit.ev.drop_level(kit.encrypt(np.zeros(4)), 10)
    with pytest.raises(ValueError, match="pass a bootstrapper"):
        quick_max(kit.ev, ct, 2)
