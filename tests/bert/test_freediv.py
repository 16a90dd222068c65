"""freeDiv denominator recording and the power-law fit (spec BERT-FREEDIV-FIT)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.bert import freediv
from refimpl.bert.config import BertConfig
from refimpl.bert.model import forward, init_params


@settings(max_examples=40, deadline=None)
@given(a=st.floats(0.05, 500), b=st.floats(-1, 2), seed=st.integers(0, 2**31))
def test_fit_recovers_a_and_b_of_noiseless_data(a, b, seed):
    n = np.unique(np.random.default_rng(seed).integers(2, 128, 12))
    if n.size < 2:
        n = np.array([3, 40])
    fa, fb = freediv.fit_power_law(n, a * n.astype(float) ** b)
    assert fa == pytest.approx(a, rel=1e-9)
    assert fb == pytest.approx(b, abs=1e-9)


def test_fit_with_multiplicative_noise_is_close():
    rng = np.random.default_rng(0)
    n = np.arange(3, 65)
    z = 84.07 * n ** 0.7175 * np.exp(rng.normal(0, 0.02, n.size))
    a, b = freediv.fit_power_law(n, z)
    assert a == pytest.approx(84.07, rel=0.05) and b == pytest.approx(0.7175, abs=0.02)


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="positive"):
        freediv.fit_power_law(np.array([1, 2]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="two"):
        freediv.fit_power_law(np.array([3]), np.array([1.0]))
    with pytest.raises(ValueError, match="fewer than two"):
        freediv.fit({3: (1.0, 10), 4: (2.0, 1)})


@pytest.mark.parametrize("kind", freediv.KINDS)
def test_record_denominators_match_a_per_sentence_loop(kind):
    cfg = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=8, max_position_embeddings=16)
    params = init_params(cfg, np.random.default_rng(0), np.float64)
    rng = np.random.default_rng(1)
    ids = [[2, *rng.integers(5, 20, k).tolist(), 3] for k in (1, 3, 3, 5, 1, 3)]
    types = [[0] * len(r) for r in ids]
    rec = freediv.record_denominators(params, cfg, ids, types, kind, batch_size=2)
    assert sorted(rec) == [3, 5, 7]
    for n in rec:
        sums = []
        for r in ids:
            if len(r) != n:
                continue
            res = forward(params, cfg, np.array([r]))
            for s in res.attention_scores:  # [1, h, n, n]
                for row in s[0].reshape(-1, n):
                    q = np.exp(row - row.max()) if kind == "softmax" else (row + cfg.quad_c) ** 2
                    sums.append(q.sum())
        assert rec[n][0] == pytest.approx(np.mean(sums), rel=1e-12)
        assert rec[n][1] == sum(len(r) == n for r in ids)
