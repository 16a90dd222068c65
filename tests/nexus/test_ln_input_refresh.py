"""NEXUS-LN-INPUT (ours): by default no refresh sits at a LayerNorm's input (x + residual).

Such a refresh's error, relative to the input's bound, reaches the LayerNorm's output divided by the smallest
standard deviation: at BERT-base with the shipped model's ranges (the sum's bound 791, variance down to 1.2e-4)
the 12-layer plan refreshed layer 0's LayerNorm 2 input, and the real layer 0 came out 0.0138 from the float64
model (refimpl experiment bertbase-noise --layers 12: 0.016 at 19-bit refreshes, 5.6e-4 with the refresh moved;
results/nexus/nexus_bertbase_noise_ln_input_2^12.json). Forbidding it costs that plan nothing: the placement
refreshes the FFN's input instead, the same ciphertexts."""

import pytest

from refimpl.experiments.bertbase.plan import config, shipped_ranges, synthetic_model, widest_ranges
from refimpl.nexus.bert.chain import plan

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
