"""Every manual backward against central finite differences in float64 (STYLE.md section 4).

Each check takes L = sum(R * output) for a random R, so d output = R, and compares
<grad, v> with (L(theta + eps v) - L(theta - eps v)) / (2 eps) along random directions v.
With eps = 1e-6 in float64 the difference quotient is accurate to about 1e-8 relative
(truncation eps^2 ~ 1e-12 times the third derivative, rounding 1e-16 / eps ~ 1e-10 times the
loss scale), so rtol 1e-5 plus 1e-8 |L| leaves room and still fails on any wrong term.

Spec IDs: BERT-ANNEAL, BERT-GRAD-LINEAR, BERT-GRAD-LAYERNORM, BERT-GRAD-ACT, BERT-GRAD-ATTN-PROBS,
BERT-GRAD-ATTN, BERT-GRAD-FFN, BERT-GRAD-EMB, BERT-GRAD-HEAD, BERT-GRAD-MODEL.
"""

from __future__ import annotations

from typing import Callable

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.bert import functional as F
from refimpl.bert import layers as L
from refimpl.bert import model as M
from refimpl.bert.config import BertConfig

EPS = 1e-6
RTOL = 1e-5


def assert_directional(loss: Callable[[np.ndarray], float], x: np.ndarray, grad: np.ndarray,
                       rng: np.random.Generator, what: str, directions: int = 2) -> None:
    """<grad, v> equals the central difference of loss at x along random unit-scale v."""
    assert grad.shape == x.shape, what
    for _ in range(directions):
        v = rng.normal(size=x.shape)
        numeric = (loss(x + EPS * v) - loss(x - EPS * v)) / (2 * EPS)
        analytic = float((grad * v).sum())
        scale = max(abs(numeric), abs(analytic))
        rounding = 1e-8 * max(1.0, abs(loss(x)))  # ~ 100 ulp(L) / eps: the quotient's rounding noise
        assert abs(numeric - analytic) <= RTOL * scale + rounding, f"{what}: numeric {numeric}, analytic {analytic}"


seeds = st.integers(0, 2**31 - 1)


@given(seed=seeds, rows=st.integers(1, 4), n_in=st.integers(1, 6), n_out=st.integers(1, 6))
def test_linear_backward(seed, rows, n_in, n_out):
    # BERT-GRAD-LINEAR
    rng = np.random.default_rng(seed)
    x, w, b = rng.normal(size=(2, rows, n_in)), rng.normal(size=(n_out, n_in)), rng.normal(size=n_out)
    r = rng.normal(size=(2, rows, n_out))
    dx, dw, db = L.linear_backward(r, x, w)
    assert_directional(lambda t: (r * L.linear(t, w, b)).sum(), x, dx, rng, "dx")
    assert_directional(lambda t: (r * L.linear(x, t, b)).sum(), w, dw, rng, "dW")
    assert_directional(lambda t: (r * L.linear(x, w, t)).sum(), b, db, rng, "db")


@given(seed=seeds, rows=st.integers(1, 4), d=st.integers(2, 12), eps=st.sampled_from([1e-12, 1e-5]))
def test_layer_norm_backward(seed, rows, d, eps):
    # BERT-GRAD-LAYERNORM (and the cached forward equals functional.layer_norm)
    rng = np.random.default_rng(seed)
    x = rng.normal(1.0, 2.0, size=(rows, d))
    g, b = rng.normal(size=d), rng.normal(size=d)
    y, cache = L.layer_norm_forward(x, g, b, eps)
    np.testing.assert_allclose(y, F.layer_norm(x, g, b, eps), rtol=1e-12, atol=1e-12)
    r = rng.normal(size=y.shape)
    dx, dg, db = L.layer_norm_backward(r, cache)
    assert_directional(lambda t: (r * F.layer_norm(t, g, b, eps)).sum(), x, dx, rng, "dx")
    assert_directional(lambda t: (r * F.layer_norm(x, t, b, eps)).sum(), g, dg, rng, "dgamma")
    assert_directional(lambda t: (r * F.layer_norm(x, g, t, eps)).sum(), b, db, rng, "dbeta")


@pytest.mark.parametrize("name", F.ACTIVATIONS)
@given(seed=seeds, size=st.integers(1, 40), spread=st.sampled_from([1.0, 3.0, 6.0]))
def test_activation_backward(name, seed, size, spread):
    # BERT-GRAD-ACT: every activation, inputs spread over all pieces of gelu_poly4
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, spread, size=size)
    r = rng.normal(size=size)
    dx = L.activation_backward(r, x, name)
    # elementwise: check every element, not only directions (away from kinks by > 1e-4)
    kinks = np.array([0.0, *F.GELU_BREAKPOINTS])
    x = np.where(np.abs(x[:, None] - kinks[None, :]).min(1) < 1e-4, x + 1e-3, x)
    dx = L.activation_backward(r, x, name)
    numeric = (F.activation(x + EPS, name) - F.activation(x - EPS, name)) / (2 * EPS) * r
    np.testing.assert_allclose(dx, numeric, rtol=1e-6, atol=1e-8)


@st.composite
def attention_inputs(draw):
    seed = draw(seeds)
    rng = np.random.default_rng(seed)
    b, h, n = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 5))
    scores = rng.normal(0.0, draw(st.sampled_from([0.5, 2.0])), size=(b, h, n, n))
    lengths = rng.integers(1, n + 1, size=b)
    mask = (np.arange(n)[None, :] < lengths[:, None]).astype(np.float64)[:, None, :]  # [B, 1, n]
    return rng, scores, mask


@pytest.mark.parametrize("variant", F.VARIANTS)
@given(data=attention_inputs())
def test_attention_probs_backward(variant, data):
    # BERT-GRAD-ATTN-PROBS: every variant, with key masks
    rng, scores, mask = data
    probs = F.attention_probs(scores, mask, variant)
    r = rng.normal(size=probs.shape)
    ds = L.attention_probs_backward(r, probs, scores, mask, variant)
    assert_directional(lambda t: (r * F.attention_probs(t, mask, variant)).sum(), scores, ds, rng, variant)


def small_config(draw, **kw) -> BertConfig:
    heads = draw(st.integers(1, 2))
    return BertConfig(vocab_size=draw(st.integers(3, 12)), hidden_size=heads * draw(st.integers(3, 4)),
                      num_hidden_layers=draw(st.integers(1, 2)), num_attention_heads=heads,
                      intermediate_size=draw(st.integers(2, 10)), max_position_embeddings=8,
                      layer_norm_eps=1e-12, **kw)


@st.composite
def model_case(draw, **kw):
    config = small_config(draw, pooling=draw(st.sampled_from(["cls", "mean"])),
                          num_labels=draw(st.integers(1, 3)), **kw)
    rng = np.random.default_rng(draw(seeds))
    params = {k: v + rng.normal(0.0, 0.1, v.shape) for k, v in
              M.init_params(config, rng, np.float64).items()}  # LayerNorm gamma/beta away from 1/0
    for k in params:
        if "weight" in k and "LayerNorm" not in k:
            params[k] = params[k] * 15.0  # N(0, 0.3^2): the nonlinearities leave their linear range
    bsz, n = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    ids = rng.integers(0, config.vocab_size, size=(bsz, n))
    types = rng.integers(0, 2, size=(bsz, n))
    lengths = rng.integers(1, n + 1, size=bsz)
    mask = (np.arange(n)[None, :] < lengths[:, None]).astype(np.int64)
    return rng, config, params, ids, types, mask


@pytest.mark.parametrize("variant", F.VARIANTS)
@given(data=st.data())
def test_attention_block_backward(variant, data):
    # BERT-GRAD-ATTN: the whole attention block (QKV, variant, context, output, LayerNorm) per variant
    rng, config, params, ids, types, mask = data.draw(model_case(attention=variant))
    w = M.sub_params(params, "encoder.layer.0.")
    x = rng.normal(size=(ids.shape[0], ids.shape[1], config.hidden_size))
    maskf = mask.astype(np.float64)
    y, cache = L.attention_forward(x, maskf, w, config)
    r = rng.normal(size=y.shape)
    r_scores = rng.normal(size=cache["scores"].shape)  # a loss term on the scores too (stage 1)
    dx, grads = L.attention_backward(r, cache, r_scores)

    def loss_with(name: str | None, t: np.ndarray) -> float:
        ww = w if name is None else w | {name: t}
        xx = t if name is None else x
        out, c = L.attention_forward(xx, maskf, ww, config)
        return float((r * out).sum() + (r_scores * c["scores"]).sum())

    assert_directional(lambda t: loss_with(None, t), x, dx, rng, "dx")
    for name, g in grads.items():
        assert_directional(lambda t, name=name: loss_with(name, t), w[name], g, rng, name, directions=1)


@pytest.mark.parametrize("activation", ["gelu", "gelu_poly4", "quad", "relu"])
@given(data=st.data())
def test_ffn_block_backward(activation, data):
    # BERT-GRAD-FFN: per activation
    rng, config, params, ids, _, _ = data.draw(model_case(activation=activation))
    w = M.sub_params(params, "encoder.layer.0.")
    x = rng.normal(size=(ids.shape[0], ids.shape[1], config.hidden_size))
    y, cache = L.ffn_forward(x, w, config)
    r = rng.normal(size=y.shape)
    dx, grads = L.ffn_backward(r, cache)
    assert_directional(lambda t: (r * L.ffn_forward(t, w, config)[0]).sum(), x, dx, rng, "dx")
    for name, g in grads.items():
        assert_directional(lambda t, name=name: (r * L.ffn_forward(x, w | {name: t}, config)[0]).sum(),
                           w[name], g, rng, name, directions=1)


@given(data=st.data())
def test_embeddings_backward_with_repeated_ids(data):
    # BERT-GRAD-EMB: word / position / type tables and LayerNorm; repeated ids accumulate
    rng, config, params, ids, types, _ = data.draw(model_case())
    ids = ids.copy()
    ids[0, 0] = ids[-1, -1]  # at least one repeated id
    w = M.sub_params(params, "embeddings.")
    y, cache = L.embeddings_forward(ids, types, w, config.layer_norm_eps)
    r = rng.normal(size=y.shape)
    grads = L.embeddings_backward(r, cache)
    assert set(grads) == set(w)
    for name, g in grads.items():
        assert_directional(lambda t, name=name: (r * L.embeddings_forward(ids, types, w | {name: t},
                                                                         config.layer_norm_eps)[0]).sum(),
                           w[name], g, rng, name, directions=1)


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_pool_backward(pooling):
    # BERT-GRAD-HEAD: pooling transpose
    rng = np.random.default_rng(3)
    h = rng.normal(size=(3, 4, 5))
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]])
    r = rng.normal(size=(3, 5))
    dh = L.pool_backward(r, h.shape, mask, pooling)
    assert_directional(lambda t: (r * L.pool(t, mask, pooling)).sum(), h, dh, rng, pooling)
    if pooling == "mean":
        assert np.all(dh[mask == 0] == 0)


@pytest.mark.parametrize("variant", F.VARIANTS)
@given(data=st.data())
def test_model_backward(variant, data):
    # BERT-GRAD-MODEL: every parameter of the whole model, losses on logits, pooled output,
    # every hidden state and every layer's scores (the distillation terms)
    activation = data.draw(st.sampled_from(["gelu", "gelu_poly4", "quad", "relu"]))
    rng, config, params, ids, types, mask = data.draw(model_case(attention=variant, activation=activation))
    out = M.forward(params, config, ids, types, mask)
    r_logits = rng.normal(size=out.logits.shape)
    r_pooled = rng.normal(size=out.pooled.shape)
    r_hidden = [rng.normal(size=h.shape) for h in out.hidden_states]
    r_scores = [rng.normal(size=s.shape) for s in out.attention_scores]

    def loss(p: M.Params) -> float:
        o = M.forward(p, config, ids, types, mask)
        total = (r_logits * o.logits).sum() + (r_pooled * o.pooled).sum()
        total += sum((r * h).sum() for r, h in zip(r_hidden, o.hidden_states))
        total += sum((r * s).sum() for r, s in zip(r_scores, o.attention_scores))
        return float(total)

    grads = M.backward(params, config, out, r_logits, d_pooled=r_pooled, d_hidden_states=r_hidden,
                       d_attention_scores=r_scores)
    assert set(grads) == set(params)
    for name in params:
        assert_directional(lambda t, name=name: loss(params | {name: t}), params[name], grads[name], rng,
                           name, directions=1)


def test_float32_model_stays_float32():
    # BERT-DTYPE: forward and backward in float32 keep float32 (no float64 scalar promotion)
    config = BertConfig(vocab_size=20, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, max_position_embeddings=8)
    for variant in F.VARIANTS:
        for activation in F.ACTIVATIONS:
            cfg = config.replace(attention=variant, activation=activation)
            params = M.init_params(cfg, np.random.default_rng(0))
            out = M.forward(params, cfg, np.array([[1, 2, 3]]), None, np.array([[1, 1, 0]]))
            assert out.logits.dtype == np.float32 and out.hidden_states[-1].dtype == np.float32
            grads = M.backward(params, cfg, out, np.ones((1, 2)))
            assert all(g.dtype == np.float32 for g in grads.values()), (variant, activation)


def test_gelu_blockwise_paths_match_the_plain_formulas():
    # BERT-GRAD-ACT: above F.BLOCK elements GELU's forward and backward run block by block
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 3.0, size=(2, F.BLOCK + 3))
    dy = rng.normal(size=x.shape)
    np.testing.assert_allclose(x * L.gelu_cdf(x), F.gelu_erf(x), rtol=1e-13, atol=1e-15)
    cdf = 0.5 * (1.0 + F.erf_block(x / np.sqrt(2.0)))
    want = dy * (cdf + x * np.exp(-0.5 * x * x) / np.sqrt(2.0 * np.pi))
    np.testing.assert_allclose(L.activation_backward(dy, x, "gelu"), want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("variant", [v for v in F.VARIANTS if v != "softmax"])
@given(data=st.data(), share=st.floats(0.05, 0.95))
def test_annealed_attention_block_backward(variant, data, share):
    # BERT-ANNEAL: w softmax + (1 - w) variant, as forward (against both references) and backward
    rng, config, params, ids, types, mask = data.draw(model_case(attention=variant))
    w = M.sub_params(params, "encoder.layer.0.")
    x = rng.normal(size=(ids.shape[0], ids.shape[1], config.hidden_size))
    maskf = mask.astype(np.float64)
    y, cache = L.attention_forward(x, maskf, w, config, None, share)
    km = maskf[:, None, :]
    ref = (share * F.attention_probs(cache["scores"], km, "softmax")
           + (1 - share) * F.attention_probs(cache["scores"], km, variant))
    np.testing.assert_allclose(cache["probs"], ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(L.annealed_probs(cache["scores"], km, config, share)[0], cache["probs"])
    r = rng.normal(size=y.shape)
    dx, grads = L.attention_backward(r, cache)

    def loss_with(name: str | None, t: np.ndarray) -> float:
        out, _ = L.attention_forward(x if name is not None else t, maskf, w if name is None else w | {name: t}, config,
                                   None, share)
        return float((r * out).sum())

    assert_directional(lambda t: loss_with(None, t), x, dx, rng, "dx")
    for name in ("attention.self.query.weight", "attention.self.key.bias"):
        assert_directional(lambda t, name=name: loss_with(name, t), w[name], grads[name], rng, name, directions=1)


def test_softmax_share_is_validated_and_no_part_of_a_deployed_config():
    # BERT-ANNEAL: the share is a training setting (a forward option), never a config field
    config = BertConfig(vocab_size=8, hidden_size=4, num_hidden_layers=1, num_attention_heads=1,
                        intermediate_size=4, attention="2quad")
    params = M.init_params(config, np.random.default_rng(0))
    ids = np.array([[1, 2, 3]])
    for bad in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="softmax_share is the softmax weight of annealed attention"):
            M.forward(params, config, ids, softmax_share=bad)
    mid = M.forward(params, config, ids, softmax_share=0.25).attention_probs[0]
    assert not np.allclose(mid, M.forward(params, config, ids).attention_probs[0])
    with pytest.raises(TypeError):
        BertConfig(attention="2quad", softmax_share=0.25)  # type: ignore[call-arg]
    assert "softmax_share" not in config.to_json()
    saved = json.loads(config.to_json())
    assert BertConfig.from_json(json.dumps(saved | {"softmax_share": 0.0})) == config
    with pytest.raises(ValueError, match="softmax_share = 0.25, a distillation-time attention blend"):
        BertConfig.from_json(json.dumps(saved | {"softmax_share": 0.25}))
