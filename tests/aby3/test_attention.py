"""Secure attention variants and LayerNorm vs refimpl.bert.functional (spec/aby3.md ABY3-ATTN-*, ABY3-LN-1)."""

import numpy as np
import pytest

from refimpl.aby3 import attention as A
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import reveal, share_input
from refimpl.bert import functional as Fn

from .helpers import run

RNG = np.random.default_rng(7)
S = RNG.normal(0, 2, (2, 12, 12))
MASK = np.ones(12)
MASK[9:] = 0
TOL = {"softmax": 5e-3, "2quad": 5e-5, "2relu": 5e-5, "scaling": 2e-5,
       "softmax-freediv": 2e-3, "2quad-freediv": 2e-5}  # softmax-freediv: relative


@pytest.mark.parametrize("variant", A.VARIANTS)
def test_attention_variant_matches_plaintext(variant):
    """ABY3-ATTN-1: each variant within its tolerance of attention_probs; masked keys give exactly 0."""
    out, _, cost = run(lambda p, s: A.attention_probs(p, s, MASK, variant), S)
    ref = Fn.attention_probs(S, MASK, variant)
    err = np.abs(out - ref)
    if variant == "softmax-freediv":
        err = err / np.maximum(np.abs(ref), 1.0)
    assert np.max(err) < TOL[variant]
    assert np.all(out[..., 9:] == 0)


def test_freediv_costs():
    """ABY3-ATTN-2: 2Quad-freeDiv = one product + one truncation (2 rounds); Scaling = one truncation."""
    _, _, cost = run(lambda p, s: A.attention_probs(p, s, MASK, "2quad-freediv"), S)
    assert cost["rounds"] == 2 and cost["bytes"] / S.size < 80  # SPU: 80 B, 5 send actions
    _, _, cost = run(lambda p, s: A.attention_probs(p, s, MASK, "scaling"), S)
    assert cost["rounds"] == 1 and cost["bytes"] / S.size < 28  # SPU: 28 B, 2 send actions


def test_bad_variant_and_mask():
    with pytest.raises(ValueError, match="unknown attention variant"):
        run(lambda p, s: A.attention_probs(p, s, MASK, "linear"), S)
    with pytest.raises(ValueError, match="keys"):
        run(lambda p, s: A.attention_probs(p, s, MASK[:5], "2quad"), S)
    with pytest.raises(ValueError, match="unknown activation"):
        run(lambda p, s: A.activation(p, s, "tanh"), S)


@pytest.mark.parametrize("name", ["gelu", "gelu_poly4", "quad", "relu"])
def test_activations(name):
    """ABY3-ACT-1: every activation name of bert.functional has a secure version."""
    x = np.linspace(-6, 6, 97)
    out, _, _ = run(lambda p, s: A.activation(p, s, name), x)
    assert np.max(np.abs(out - Fn.activation(x, name))) < 5e-4


def test_layer_norm_public_and_secret_weights():
    """ABY3-LN-1: LayerNorm with public or secret gamma/beta within 2e-4 of float64."""
    x = RNG.normal(1, 3, (6, 40))
    g, b = RNG.normal(1, 0.1, 40), RNG.normal(0, 0.1, 40)

    def prog(p):
        xs = share_input(p, 0, x if p.id == 0 else None)
        gs = share_input(p, 1, g if p.id == 1 else None)
        bs = share_input(p, 1, b if p.id == 1 else None)
        return reveal(p, A.layer_norm(p, xs, g, b)), reveal(p, A.layer_norm(p, xs, gs, bs))

    y1, y2 = simulate(prog).outputs[0]
    ref = Fn.layer_norm(x, g, b)
    assert np.max(np.abs(y1 - ref)) < 2e-4
    assert np.max(np.abs(y2 - ref)) < 2e-4


def test_layer_norm_large_public_gamma_and_wide_rows():
    """ABY3-LN-1: public gamma up to 20 on rows of 768 (|output| up to sqrt(d) |gamma| ~ 550) stays
    in range: the fused truncation lowers its coefficient bits from the bound."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (2, 768))
    x[:, 0] = 60.0  # one outlier: normalized value ~ sqrt(768) - small
    g, b = rng.uniform(-20, 20, 768), rng.normal(0, 1, 768)
    out, _, _ = run(lambda p, s: A.layer_norm(p, s, g, b), x)
    ref = Fn.layer_norm(x, g, b)
    assert np.max(np.abs(out - ref)) < 1e-2  # outputs up to ~500: 2e-5 relative (1/d at 18 bits: 0.2)
