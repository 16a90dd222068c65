"""AdamW and the learning-rate schedules against a float64 scalar reference (spec BERT-TRAIN-ADAMW, BERT-TRAIN-SCHEDULE)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.bert.optim import AdamW, constant_schedule, decays, linear_schedule


def adamw_reference(w, grads, lr, b1, b2, eps, wd, decay, scales):
    """Loshchilov & Hutter Alg. 2 written element by element in Python floats (PyTorch's order)."""
    w = [float(x) for x in w]
    m = [0.0] * len(w)
    v = [0.0] * len(w)
    for t, (g, s) in enumerate(zip(grads, scales), start=1):
        lr_t = lr * s
        for i in range(len(w)):
            gi = float(g[i])
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            if decay:
                w[i] = w[i] * (1 - lr_t * wd)
            mhat = m[i] / (1 - b1**t)
            vhat = v[i] / (1 - b2**t)
            w[i] = w[i] - lr_t * mhat / (math.sqrt(vhat) + eps)
    return np.array(w)


@pytest.mark.parametrize("name,decay", [("encoder.layer.0.attention.self.query.weight", True),
                                        ("encoder.layer.0.output.dense.bias", False),
                                        ("embeddings.LayerNorm.weight", False)])
def test_adamw_matches_scalar_reference(name, decay):
    rng = np.random.default_rng(1)
    w0 = rng.normal(size=7)
    grads = [rng.normal(size=7) * 10 ** rng.uniform(-3, 1) for _ in range(6)]
    scales = [0.2, 0.4, 1.0, 0.75, 0.5, 0.25]
    opt = AdamW(lr=1e-2, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)
    params = {name: w0.copy()}
    for g, s in zip(grads, scales):
        opt.step(params, {name: g}, s)
    ref = adamw_reference(w0, grads, 1e-2, 0.9, 0.99, 1e-8, 0.1, decay, scales)
    np.testing.assert_allclose(params[name], ref, rtol=1e-12, atol=1e-14)
    assert decays(name) == decay


def test_adamw_state_round_trip_continues_identically():
    rng = np.random.default_rng(2)
    params = {"a.weight": rng.normal(size=(3, 4)), "a.bias": rng.normal(size=3)}
    grads = [{k: rng.normal(size=v.shape) for k, v in params.items()} for _ in range(4)]
    opt = AdamW(lr=1e-3)
    p1 = {k: v.copy() for k, v in params.items()}
    for g in grads:
        opt.step(p1, g)
    opt2 = AdamW(lr=1e-3)
    p2 = {k: v.copy() for k, v in params.items()}
    for g in grads[:2]:
        opt2.step(p2, g)
    opt3 = AdamW(lr=1e-3)
    opt3.load_state({k: v.copy() for k, v in opt2.state().items()})
    for g in grads[2:]:
        opt3.step(p2, g)
    for k in params:
        np.testing.assert_array_equal(p1[k], p2[k])


def test_adamw_keeps_float32():
    params = {"w.weight": np.ones((2, 2), np.float32)}
    AdamW().step(params, {"w.weight": np.ones((2, 2), np.float64)})
    assert params["w.weight"].dtype == np.float32


def test_adamw_rejects_bad_input():
    with pytest.raises(ValueError, match="betas"):
        AdamW(betas=(1.0, 0.9))
    opt = AdamW()
    with pytest.raises(KeyError, match="unknown parameter"):
        opt.step({"a": np.zeros(2)}, {"b": np.zeros(2)})
    with pytest.raises(ValueError, match="shape"):
        opt.step({"a": np.zeros(2)}, {"a": np.zeros(3)})


@settings(max_examples=50, deadline=None)
@given(total=st.integers(1, 500), frac=st.floats(0, 0.9))
def test_linear_schedule_shape(total, frac):
    warmup = int(frac * total)
    values = [linear_schedule(s, total, warmup) for s in range(total + 1)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert values[-1] == 0.0
    peak = values.index(max(values))
    assert all(a <= b for a, b in zip(values[:peak], values[1:peak + 1]))  # rises
    assert all(a >= b for a, b in zip(values[peak:], values[peak + 1:]))  # then falls
    if warmup > 0:
        assert values[0] == 0.0 and values[warmup] == 1.0


def test_known_schedule_values():
    assert linear_schedule(5, 100, 10) == 0.5
    assert linear_schedule(55, 100, 10) == 0.5
    assert constant_schedule(50, 100, 0) == 1.0
    assert constant_schedule(2, 100, 4) == 0.5
    with pytest.raises(ValueError):
        linear_schedule(0, 0, 0)
