"""LayerNorm (NEXUS §3.2): mean, variance, Newton + Goldschmidt 1/sqrt, gamma, beta; vs bert.functional.layer_norm.

Tight bound: CKKS error about 2^-(40 - 11 - 6) on x, amplified by the normalisation
(1/sigma <= 1/sqrt(lo)) and |gamma| <= 1.5: we require 2^-20 against the model. The model's
own error is the 1/sqrt relative error on [lo, hi] (spec NEXUS-LN-RANGE): <= 2^-10 for
hi/lo <= 256 with 4 Newton + 2 Goldschmidt steps.
"""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refimpl.bert.functional import layer_norm
from refimpl.ckks import Parameters
from refimpl.nexus.counting import CountingEvaluator
from refimpl.nexus.layernorm import REL_ERR, layernorm, layernorm_levels, layernorm_plain, rsqrt, rsqrt_plain, valid

from .helpers import Kit, bits


@pytest.fixture(scope="module")
def kit():
    return Kit(Parameters.create(N=2048, levels=18, dnum=4, insecure=True), rotations=[1 << i for i in range(10)] + [-64])


@given(lo=st.floats(0.01, 100.0), log_ratio=st.floats(0.0, 8.0))
@settings(max_examples=15)
def test_rsqrt_valid_range_law(lo, log_ratio):
    """NEXUS-LN-RANGE: any [lo, lo 2^k], k <= 8, is valid (relative error <= 2^-10): the method is scale free."""
    hi = lo * 2.0**log_ratio
    assert valid(lo, hi) <= REL_ERR
    v = np.geomspace(lo, hi, 1001)
    assert np.max(np.abs(rsqrt_plain(v, lo, hi) * np.sqrt(v) - 1)) <= REL_ERR


def test_rsqrt_range_error(kit):
    with pytest.raises(ValueError, match="narrow the variance range"):
        rsqrt(kit.ev, kit.encrypt(np.ones(4)), 1.0, 1024.0)


def test_layernorm(kit):
    """NEXUS-LN: 17 levels, 2 (log2 n + 1) rotations; rows of F = 48 features padded to 64 in windows of 128."""
    F, n, w, rows_n = 48, 64, 128, kit.p.slots // 128
    rows = kit.rng.normal(0.3, 2.0, (rows_n, F)) * kit.rng.uniform(0.5, 2, (rows_n, 1))  # var in about [1, 16]
    gam, bet = kit.rng.uniform(0.5, 1.5, F), kit.rng.uniform(-0.5, 0.5, F)
    x, G, Bt = (np.zeros((rows_n, w)) for _ in range(3))
    x[:, :F], G[:, :F], Bt[:, :F] = rows, gam, bet
    ev = CountingEvaluator(kit.ev)
    ct = kit.encrypt(x.ravel())
    out = layernorm(ev, ct, F, n, G.ravel(), Bt.ravel(), window=w, lo=0.5, hi=64.0)
    assert ct.level - out.level == layernorm_levels() == 17
    assert ev.counts["rotations"] == 2 * (6 + 1)
    z = kit.decrypt(out).reshape(rows_n, w)
    model = layernorm_plain(x.ravel(), F, n, G.ravel(), Bt.ravel(), window=w, lo=0.5, hi=64.0).reshape(rows_n, w)
    assert bits(z - model) >= 20
    assert bits(z[:, :F] - layer_norm(rows, gam, bet, eps=0.0)) >= 20
    assert bits(z[:, F:]) >= 20  # padding stays 0


def test_layernorm_layout_error(kit):
    """Rows of n < N/2 slots without room for duplication: refused (the folds would mix rows)."""
    with pytest.raises(ValueError, match="fill all"):
        layernorm(kit.ev, kit.encrypt(np.ones(4)), 64, 64, np.ones(4), np.zeros(4))


def test_layernorm_prescale(kit):
    """alpha folds the pre-scaling into the mask product: var(x) ~ 0.01 normalised with alpha = 16."""
    F = n = kit.p.slots  # one row filling the slots: cyclic without duplication
    x = kit.rng.normal(0, 0.1, kit.p.slots)
    G, Bt = np.ones(kit.p.slots), np.zeros(kit.p.slots)
    out = layernorm(kit.ev, kit.encrypt(x), F, n, G, Bt, alpha=16.0, lo=0.5, hi=64.0)
    ref = layer_norm(x.reshape(-1, F), np.ones(F), np.zeros(F), eps=0.0).ravel()
    assert bits(kit.decrypt(out) - ref) >= 18
