"""NEXUS-LN-INPUT (ours): no refresh at a LayerNorm's input (x + residual) where its error would be large.

Such a refresh's error, relative to the input's bound, reaches the LayerNorm's output divided by the smallest
standard deviation: at BERT-base with the shipped model's ranges (the sum's bound 791, sigma down to 0.55) the
12-layer plan refreshed layer 0's LayerNorm 2 input, and the real layer 0 came out 0.0138 from the float64 model
(`refimpl experiment bertbase-noise --layers 12`: 0.016 at 19-bit refreshes, 5.6e-4 with the refresh moved;
results/nexus/nexus_bertbase_noise_12_unguarded_2^12.json, nexus_bertbase_noise_12_2^12.json). Forbidding it
costs that plan nothing: the placement refreshes the FFN's input instead, as many ciphertexts."""

import math

import pytest

from refimpl.experiments.bertbase.plan import config, shipped_ranges, synthetic_model, widest_ranges
from refimpl.nexus.bert.chain import LN_GUARD_BITS, LN_INPUT_ERROR, layernorm_pieces, plan

STUDENT = "2quad-freediv-quad"


def refreshes(options: dict) -> dict:
    cfg = config(STUDENT, 12)
    model = synthetic_model(cfg, widest_ranges(shipped_ranges(STUDENT), 12), options=options)
    return {r["block"]: r["bootstraps"] for r in plan(model, 128, "128-2^16-dense19", head_rows=True) if r.get("bootstraps")}


@pytest.fixture(scope="module")
def plans():
    return refreshes({}), refreshes({"ln_input_guard": False})


def test_no_layernorm_input_is_refreshed_by_default(plans):
    default, _ = plans
    assert not [b for b in default if b.endswith((".ln1", ".ln2"))]


def test_the_previous_plan_refreshed_one_and_the_count_is_the_same(plans):
    default, before = plans
    assert before.get("L0.ln2")  # the refresh the option removes
    assert sum(default.values()) == sum(before.values())
    assert default["L0.ffn1"] == before["L0.ln2"]


def test_the_guard_forbids_only_refreshes_whose_error_would_be_large():
    """bound x 2^-19 x alpha / sqrt(lo) against 1e-3: the student's LayerNorm 2 (bound 791, alpha 0.0202, lo 1.25e-4:
    2.7e-3) is forbidden, a LayerNorm 1 of bound 7.7 (alpha 0.61, lo 0.043: 4.3e-5) is not; without the guard neither."""
    def first(bound, ln, guard):
        return layernorm_pieces("ln", ln, 6, 768, ("in", "qkv", 0), bound, guard=guard)[0].bootable

    ln2, ln1 = (0.0202, 1.25e-4, 1.0, 9), (0.606, 0.043, 1.0, 4)
    assert not first(791.0, ln2, True) and first(791.0, ln2, False)
    assert first(7.7, ln1, True) and first(7.7, ln1, False)
    edge = LN_INPUT_ERROR * 2.0**LN_GUARD_BITS * math.sqrt(ln2[1]) / ln2[0]  # the largest bound allowed
    assert first(edge * 0.999, ln2, True) and not first(edge * 1.001, ln2, True)
