"""exp, Goldschmidt inverse and Softmax (NEXUS §3.1.3, Alg. 1) against float64.

Tight bound: the model runs the same approximations in float64; the CKKS error after the
chain (QuickMax, 7 exp levels that square the error 2^6 times relative, inverse) stays below
2^-20 here (softmax outputs <= 1). The approximations' own error (spec NEXUS-SOFTMAX-ERR):
exp with r = 6 is off by up to 4.3e-3 on [-10, 0]; the softmax rows (entries in [-4, 4]) by up to 1.5e-2.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refimpl.ckks import Parameters
from refimpl.ckks.bootstrap import OracleBootstrapper
from refimpl.nexus.counting import CountingBootstrapper, CountingEvaluator
from refimpl.nexus.softmax import (
    EXP_LEVELS, exp, exp_plain, goldschmidt_iterations, inverse, inverse_plain, softmax, softmax_plain,
)

from .helpers import Kit, bits


@pytest.fixture(scope="module")
def kit():
    return Kit(Parameters.create(N=2048, levels=20, dnum=4, insecure=True), rotations=[1, 2, 4, -8, 8, 16, 32, 64, 128, 256, 512])


def test_exp(kit):
    """NEXUS-EXP: (1 + x/64)^64, 7 levels; error of the approximation itself <= 4.3e-3 on [-10, 0]."""
    x = np.linspace(-64, 0, kit.p.slots)
    ct = kit.encrypt(x)
    out = exp(kit.ev, ct)
    assert ct.level - out.level == EXP_LEVELS == 7
    assert bits(kit.decrypt(out) - exp_plain(x)) >= 22
    g = np.linspace(-10, 0, 100001)
    assert np.max(np.abs(exp_plain(g) - np.exp(g))) < 4.3e-3
    with pytest.raises(ValueError, match="subtract the row maximum"):
        exp(kit.ev, ct, lo=-70.0)


@given(lo=st.floats(0.05, 1.0), ratio=st.floats(1.0, 200.0))
@settings(max_examples=10)
def test_goldschmidt_iterations_law(lo, ratio):
    """NEXUS-INV-ERR: k factors reach relative error 2^-12 on [lo, hi] (float64 model)."""
    hi = lo * ratio
    k = goldschmidt_iterations(lo, hi)
    x = np.linspace(lo, hi, 10001)
    assert np.max(np.abs(inverse_plain(x, lo, hi, k) * x - 1)) <= 2.0**-12 * 1.0001


def test_inverse(kit):
    """NEXUS-INV-LEVELS: k + 1 levels; tight against the model."""
    x = np.linspace(1, 8, kit.p.slots)
    k = goldschmidt_iterations(0.5, 8)
    out = inverse(kit.ev, kit.encrypt(x), 0.5, 8, k)
    assert kit.p.L - out.level == k + 1
    assert bits(kit.decrypt(out) - inverse_plain(x, 0.5, 8, k)) >= 22
    assert np.max(np.abs(kit.decrypt(out) * x - 1)) < 2.0**-11.9
    with pytest.raises(ValueError, match="0 <= lo < hi"):
        inverse(kit.ev, kit.encrypt(x), -1.0, 2.0, 3)


def test_softmax_masked_rows(kit):
    """NEXUS-SOFTMAX: rows of 8 keys (some padded) in windows of 16; QuickMax 3 rounds, bootstraps between."""
    n, w, B = 8, 16, 4.0
    rows = kit.rng.uniform(-B, B, (64, n))
    real = np.array([8, 5, 8, 3] * 16)
    km = (np.arange(n)[None, :] < real[:, None]).astype(float)
    x = np.zeros((64, w)); x[:, :n] = rows * km
    mask = np.zeros((64, w)); mask[:, :n] = km
    ev = CountingEvaluator(kit.ev)
    bts = CountingBootstrapper(OracleBootstrapper(kit.sk))
    out = softmax(ev, kit.encrypt(x.ravel()), n, B, key_mask=mask.ravel(), window=w, bootstrapper=bts)
    assert ev.counts["rotations"] == 2 * (3 + 1)  # QuickMax and QuickSum: log2(8) + 1 duplication each
    assert bts.calls == 3  # levels 20: one QuickMax round (18 levels, B > 1/2) per refresh, then the tail
    z = kit.decrypt(out).reshape(64, w)[:, :n]
    model = softmax_plain(x.ravel(), n, B, key_mask=mask.ravel(), window=w).reshape(64, w)[:, :n]
    assert bits(z - model) >= 20
    ex = np.exp(rows - np.where(km > 0, rows, -np.inf).max(1, keepdims=True)) * km
    ex /= ex.sum(1, keepdims=True)
    assert np.max(np.abs(z - ex)) < 1.5e-2 and np.all(np.abs(z[km == 0]) < 1e-6)


def test_softmax_one_row(kit):
    """One row of n = N/2 = 1024 keys filling the slots: no duplication, no mask; 10 QuickMax rounds."""
    n, B = kit.p.slots, 0.5
    x = kit.rng.uniform(-B, B, kit.p.slots)
    ev = CountingEvaluator(kit.ev)
    bts = CountingBootstrapper(OracleBootstrapper(kit.sk))
    out = softmax(ev, kit.encrypt(x), n, B, bootstrapper=bts)
    assert ev.counts["rotations"] == 2 * 10
    z = kit.decrypt(out).reshape(-1, n)
    model = softmax_plain(x, n, B).reshape(-1, n)
    assert bits(z - model) >= 20
    ex = np.exp(x.reshape(-1, n)); ex /= ex.sum(1, keepdims=True)
    assert np.max(np.abs(z - ex)) < 1e-5  # entries ~ 1/1024


def test_softmax_range_error(kit):
    with pytest.raises(ValueError, match="scale the scores"):
        softmax(kit.ev, kit.encrypt(np.zeros(4)), 8, 40.0, window=16)
    with pytest.raises(ValueError, match="fill all"):
        softmax(kit.ev, kit.encrypt(np.zeros(4)), 8, 1.0)
