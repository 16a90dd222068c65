"""The plaintext definitions of refimpl.bert.functional against slow, obviously right oracles.

Spec IDs: BERT-ATTN-SOFTMAX, BERT-ATTN-2QUAD, BERT-ATTN-2RELU, BERT-ATTN-SCALING,
BERT-ATTN-SOFTMAX-FREEDIV, BERT-ATTN-2QUAD-FREEDIV, BERT-ATTN-MASK, BERT-ACT-GELU,
BERT-ACT-GELU-POLY4, BERT-ACT-QUAD, BERT-ACT-RELU, BERT-LAYERNORM, BERT-DTYPE.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from refimpl.bert import functional as F
from refimpl.constants import C


def _row_oracle(s: list[float], m: list[int], variant: str, c: float = 5.0) -> list[float]:
    """One attention row in plain Python floats over the real keys only (the oracle)."""
    real = [i for i, mi in enumerate(m) if mi]
    n = len(real)
    out = [0.0] * len(s)
    if variant == "softmax":
        mx = max(s[i] for i in real)
        e = {i: math.exp(s[i] - mx) for i in real}
        tot = sum(e.values())
        for i in real:
            out[i] = e[i] / tot
    elif variant in ("2quad", "2quad-freediv"):
        q = {i: (s[i] + c) ** 2 for i in real}
        if variant == "2quad":
            tot = sum(q.values())
        else:
            tot = C["freediv"]["quad2"]["a"] * n ** C["freediv"]["quad2"]["b"]
        for i in real:
            out[i] = q[i] / tot
    elif variant == "2relu":
        r = {i: max(s[i], 0.0) for i in real}
        tot = sum(r.values())
        for i in real:
            out[i] = r[i] / tot if tot > 0 else 0.0
    elif variant == "scaling":
        for i in real:
            out[i] = s[i] / n
    elif variant == "softmax-freediv":
        tot = C["freediv"]["softmax"]["a"] * n ** C["freediv"]["softmax"]["b"]
        top = max(s[i] for i in real)
        for i in real:
            out[i] = math.exp(s[i] - top) / tot
    return out


_VARIANT_IDS = {
    "softmax": "BERT-ATTN-SOFTMAX",
    "2quad": "BERT-ATTN-2QUAD",
    "2relu": "BERT-ATTN-2RELU",
    "scaling": "BERT-ATTN-SCALING",
    "softmax-freediv": "BERT-ATTN-SOFTMAX-FREEDIV",
    "2quad-freediv": "BERT-ATTN-2QUAD-FREEDIV",
}


@st.composite
def _scores_and_mask(draw):
    batch = draw(st.integers(1, 3))
    heads = draw(st.integers(1, 2))
    n_q = draw(st.integers(1, 4))
    n_k = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    scale = draw(st.sampled_from([0.1, 1.0, 4.0]))
    scores = rng.normal(0.0, scale, size=(batch, heads, n_q, n_k))
    lengths = rng.integers(1, n_k + 1, size=batch)  # n >= 1 real keys per sequence
    mask = (np.arange(n_k)[None, :] < lengths[:, None]).astype(np.int64)  # [batch, n_k]
    return scores, mask


@pytest.mark.parametrize("variant", F.VARIANTS)
@given(data=_scores_and_mask())
def test_attention_probs_match_row_oracle(variant, data):
    # BERT-ATTN-* (each variant) and BERT-ATTN-MASK: masked keys are exactly 0
    scores, mask = data
    p = F.attention_probs(scores, mask[:, None, :], variant)  # mask [batch, 1, n_k]
    assert p.shape == scores.shape and p.dtype == np.float64
    b, h, nq, nk = scores.shape
    for i in range(b):
        for j in range(h):
            for q in range(nq):
                want = _row_oracle(list(scores[i, j, q]), list(mask[i]), variant)
                np.testing.assert_allclose(p[i, j, q], want, rtol=1e-12, atol=1e-14, err_msg=_VARIANT_IDS[variant])
    assert np.all(p[np.broadcast_to(mask[:, None, None, :] == 0, p.shape)] == 0.0)


@given(data=_scores_and_mask(), alpha=st.floats(0.25, 16.0), c=st.floats(0.5, 10.0))
def test_2quad_shift_is_the_query_scale_in_disguise(data, alpha, c):
    """BERT-ATTN-2QUAD: (alpha s + c)^2 = alpha^2 (s + c / alpha)^2, so a per-head shift adds nothing to alpha.

    Normalised, the rows of scores alpha s with shift c are those of s with shift c / alpha; under
    freeDiv they differ by the per-head factor alpha^2, which the head's columns of the attention
    output projection absorb. A per-head public shift c is thus the query scale of score-init.
    """
    scores, mask = data
    m = mask[:, None, :]
    np.testing.assert_allclose(F.attention_probs(alpha * scores, m, "2quad", c=c),
                               F.attention_probs(scores, m, "2quad", c=c / alpha), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(F.attention_probs(alpha * scores, m, "2quad-freediv", c=c),
                               alpha**2 * F.attention_probs(scores, m, "2quad-freediv", c=c / alpha),
                               rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("variant", ["softmax", "2quad", "2relu"])
def test_normalized_variants_sum_to_one(variant):
    # BERT-ATTN-SOFTMAX, BERT-ATTN-2QUAD, BERT-ATTN-2RELU: rows with a positive sum sum to 1
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(4, 8, 8)) + 1.0
    mask = np.array([[1] * 8, [1] * 3 + [0] * 5, [1] * 5 + [0] * 3, [1] + [0] * 7])  # [batch, n_k]
    p = F.attention_probs(scores, mask, variant)
    sums = p.sum(-1)
    ok = sums > 0  # 2relu gives an all-zero row when no real score is positive
    np.testing.assert_allclose(sums[ok], 1.0, rtol=1e-13)


def test_softmax_ignores_huge_masked_scores_and_shift():
    # BERT-ATTN-MASK: a masked key with a huge score changes nothing; softmax is shift-invariant
    s = np.array([[0.3, -1.2, 2.0, 1e6]])
    m = np.array([1, 1, 1, 0])
    p = F.attention_probs(s, m, "softmax")
    np.testing.assert_allclose(p, F.attention_probs(s + 700.0, m, "softmax"), rtol=1e-12)
    assert p[0, 3] == 0.0 and np.isfinite(p).all()


def test_2quad_mask_is_multiplicative_not_additive():
    # BERT-ATTN-MASK (DESIGN.md section 5): an additive -10000 would give (s - 10000 + c)^2, huge
    s = np.zeros((1, 3))
    p = F.attention_probs(s, np.array([1, 1, 0]), "2quad")
    np.testing.assert_allclose(p, [[0.5, 0.5, 0.0]])


def test_freediv_uses_spec_constants_and_overrides():
    # BERT-ATTN-2QUAD-FREEDIV: f(n) = a n^b with the paper's a, b unless given
    s = np.full((1, 4), 1.0)
    m = np.ones(4)
    a, b = C["freediv"]["quad2"]["a"], C["freediv"]["quad2"]["b"]
    np.testing.assert_allclose(F.attention_probs(s, m, "2quad-freediv"), 36.0 / (a * 4**b))
    np.testing.assert_allclose(F.attention_probs(s, m, "2quad-freediv", a=2.0, b=1.0), 36.0 / 8.0)
    np.testing.assert_allclose(F.attention_probs(s, m, "2quad", c=1.0), 0.25)


def test_ambiguous_mask_is_refused():
    # BERT-ATTN-MASK: [B, n_k] against [B, h, n_q, n_k] would broadcast B against h: refused
    s = np.zeros((2, 2, 3, 3))
    with pytest.raises(ValueError, match="batch, 1, n_k"):
        F.attention_probs(s, np.ones((2, 3)), "2quad")
    assert F.attention_probs(s, np.ones(3), "2quad").shape == s.shape  # one mask for all rows


def test_unknown_names_are_refused():
    with pytest.raises(ValueError, match="softmax"):
        F.attention_probs(np.zeros((1, 1)), np.ones(1), "sofmax")
    with pytest.raises(ValueError, match="quad"):
        F.activation(np.zeros(1), "gleu")


def test_erf_and_gelu_match_math_erf():
    # BERT-ACT-GELU: exact erf GELU; erf against libm's math.erf over all three Cephes pieces
    x = np.concatenate([np.linspace(-40, 40, 20001), [0.0, 1.0, -1.0, 8.0, -8.0, 1e-300]])
    want_erf = np.array([math.erf(t) for t in x])
    np.testing.assert_allclose(F.erf(x), want_erf, rtol=2e-15, atol=1e-300)
    want_gelu = np.array([0.5 * t * (1.0 + math.erf(t / math.sqrt(2.0))) for t in x])
    np.testing.assert_allclose(F.gelu_erf(x), want_gelu, rtol=1e-14, atol=1e-15)


def test_erf_in_blocks_equals_erf_at_once():
    # BERT-ACT-GELU: the cache-sized blocks (with a ragged tail) change nothing, in either dtype
    x = np.random.default_rng(0).normal(0.0, 3.0, size=(3, F.BLOCK + 17))
    for dtype in (np.float64, np.float32):
        xd = x.astype(dtype)
        got = F.erf(xd)
        assert got.dtype == dtype and got.shape == x.shape
        np.testing.assert_array_equal(got, F.erf_block(xd))
    np.testing.assert_allclose(F.erf(x)[2, -5:], [math.erf(t) for t in x[2, -5:]], rtol=2e-15)


def test_gelu_poly4_pieces_and_accuracy():
    # BERT-ACT-GELU-POLY4: the 4 pieces with NEXUS's coefficients, and |poly4 - GELU| small
    P = C["nexus"]["gelu"]["P"]
    Q = C["nexus"]["gelu"]["Q"]
    x = np.linspace(-13.0, 12.0, 50001)
    want = np.select(
        [x <= -4.0, x <= -1.95, x <= 3.0],
        [np.zeros_like(x), np.polynomial.polynomial.polyval(x, P), np.polynomial.polynomial.polyval(x, Q)],
        default=x,
    )
    np.testing.assert_allclose(F.gelu_poly4(x), want, rtol=1e-13, atol=1e-14)
    # measured max error 0.0199 on [-13, 12] (at the breakpoints): a loose bound that still fails
    # on a wrong coefficient or a swapped piece
    assert np.abs(F.gelu_poly4(x) - F.gelu_erf(x)).max() < 0.025


def test_quad_and_relu():
    # BERT-ACT-QUAD: 0.125 x^2 + 0.25 x + 0.5; BERT-ACT-RELU
    x = np.array([-3.0, -1.0, 0.0, 0.5, 2.0])
    np.testing.assert_allclose(F.quad(x), 0.125 * x**2 + 0.25 * x + 0.5, rtol=1e-15)
    np.testing.assert_array_equal(F.relu(x), [0.0, 0.0, 0.0, 0.5, 2.0])
    for name, fn in [("gelu", F.gelu_erf), ("gelu_poly4", F.gelu_poly4), ("quad", F.quad), ("relu", F.relu)]:
        np.testing.assert_array_equal(F.activation(x, name), fn(x))


@given(
    rows=st.integers(1, 4),
    d=st.integers(2, 16),
    seed=st.integers(0, 2**31 - 1),
)
def test_layer_norm_matches_python_oracle(rows, d, seed):
    # BERT-LAYERNORM: (x - mean)/sqrt(var + eps) gamma + beta, biased variance, eps inside the root
    rng = np.random.default_rng(seed)
    x = rng.normal(2.0, 3.0, size=(rows, d))
    gamma, beta = rng.normal(size=d), rng.normal(size=d)
    got = F.layer_norm(x, gamma, beta, eps=1e-5)
    for r in range(rows):
        mu = sum(x[r]) / d
        var = sum((v - mu) ** 2 for v in x[r]) / d
        want = [(v - mu) / math.sqrt(var + 1e-5) * g + b for v, g, b in zip(x[r], gamma, beta)]
        np.testing.assert_allclose(got[r], want, rtol=1e-10, atol=1e-12)


def test_float32_stays_float32():
    # BERT-DTYPE: no numpy float64 scalar promotes a float32 array (DESIGN.md section 6)
    x = np.linspace(-5, 5, 64, dtype=np.float32).reshape(2, 4, 8)
    m = np.ones((2, 8), dtype=np.float32)  # [batch, n_k] for scores [batch, n_q, n_k]
    for v in F.VARIANTS:
        assert F.attention_probs(x, m, v).dtype == np.float32, v
    assert F.attention_probs(x, m.astype(np.int64), "2quad-freediv").dtype == np.float32
    for name in F.ACTIVATIONS:
        assert F.activation(x, name).dtype == np.float32, name
    g = np.ones(8, np.float32)
    assert F.layer_norm(x, g, g).dtype == np.float32
