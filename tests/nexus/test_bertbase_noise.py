"""`refimpl experiment bertbase-noise` (ours, a diagnosis): bertbase-run's synthetic model on a small insecure ring
with exact and noisy refreshes, against the float64 model."""

from refimpl.experiments.bertbase import noise


def test_noisy_refreshes_cost_precision_and_name_their_pieces():
    """Exact refreshes keep layer 0 within CKKS noise of the float64 model; 2^-12 noise on every refreshed slot
    moves it (N = 2^10, n = 16, hidden 32, 4 heads of 8); the refresh points come in the plan's order with names."""
    exact, noisy = noise.run("student", 16, {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}, 10,
                             ["exact", "12"])
    assert exact["max_abs_err"] < 1e-3
    assert noisy["max_abs_err"] > 10 * exact["max_abs_err"]
    assert exact["refresh_points"] == noisy["refresh_points"] and exact["refresh_points"]
    assert all(name.startswith("L0.") and boots >= 1 for name, boots in exact["refresh_points"])


def test_all_layers_reports_every_layer_and_the_logits_and_seeds_draw_anew():
    """--all-layers: one error per layer and the logits' against the float64 model, layer 0's equal to the row's
    max_abs_err; another seed draws other keys and noise (a different error), the same seed the same one."""
    size = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
    (a,) = noise.run("student", 16, size, 10, ["12"], layers=2, all_layers=True)
    (b,) = noise.run("student", 16, size, 10, ["12"], layers=2, all_layers=True, seed=1)
    (c,) = noise.run("student", 16, size, 10, ["12"], layers=2, all_layers=True, seed=1)
    assert len(a["layer_err"]) == 2 and a["layer_err"][0] == a["max_abs_err"]
    assert 0 < a["logit_err"] < 0.5 and len(a["logits"]) == len(a["model_logits"])
    assert b["layer_err"] != a["layer_err"] and b["layer_err"] == c["layer_err"]


def test_design_options_are_named_and_checked():
    """`--options previous` turns every design option off; an unknown name is refused (by the parser and by
    NexusModel), never ignored."""
    import pytest

    from refimpl.experiments.bertbase.plan import parse_options
    from refimpl.nexus import bert as nb

    prev = parse_options("previous,rsqrt_carry=1")
    assert set(prev) == set(nb.DESIGN_OPTIONS) and prev["rsqrt_carry"] and not prev["pv_quads"]
    assert parse_options("qk_lazy=1") == {"qk_lazy": True}
    with pytest.raises(ValueError, match="unknown option 'qk_lazzy'"):
        parse_options("qk_lazzy=1")
    model = noise.build_model("2quad-freediv-quad", 1, {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64})
    with pytest.raises(ValueError, match="unknown NexusModel design options"):
        nb.NexusModel(model.config, model.params, ranges=model.ranges, options={"qk_lazzy": True})


def test_seed_lists_and_the_table_of_stored_runs():
    """`--seed 0,2` -> two draws; a bad list is refused; --table prints one row per noise of an --all-layers run,
    each error's range over the seeds (layer 0, the largest layer, the last, the logits), the previous path's errors
    over another design's draw by draw where both are given, and refuses layer-0-only rows."""
    import pytest

    assert noise.seeds_of("0,2") == [0, 2] and noise.seeds_of(3) == [3]
    for bad in ("", "a", "1,-1"):
        with pytest.raises(ValueError, match="--seed"):
            noise.seeds_of(bad)
    doc = {"command": "refimpl experiment bertbase-noise --model student --layers 2 --all-layers --seed 0,2 "
                      "--options previous 19 --json FILE",
           "rows": [{"spec": "19", "seed": 0, "layer_err": [1e-4, 3e-4], "logit_err": 2e-5},
                    {"spec": "19", "seed": 2, "layer_err": [2e-4, 1e-4], "logit_err": 2e-5}]}
    text = noise.table([doc])
    assert ("| student | previous path | 2^-19 noise | 0, 2 | 1.00e-04 to 2.00e-04 | 2.00e-04 to 3.00e-04 | "
            "1.00e-04 to 3.00e-04 | 2.00e-05 |") in text
    assert "previous path's error / this" not in text  # no second design: no ratios
    cur = {"command": doc["command"].replace("--options previous ", ""),
           "rows": [{"spec": "19", "seed": 0, "layer_err": [1e-5, 1e-4], "logit_err": 1e-5},
                    {"spec": "19", "seed": 2, "layer_err": [4e-5, 5e-5], "logit_err": 4e-5}]}
    # draw by draw: seed 0 10 and 3, seed 2 5 and 2 per layer; the logits 2 and 0.5
    assert "| student | current | 2^-19 noise | 0, 2 | 2.00 to 10.00 | 0.50 to 2.00 |" in noise.table([doc, cur])
    with pytest.raises(ValueError, match="--all-layers"):
        noise.table([{"command": doc["command"], "rows": [{"spec": "19", "max_abs_err": 1e-4}]}])


def test_the_current_design_is_more_precise_than_the_previous_path_at_equal_refresh_noise():
    """Per-layer and logit errors of the current design are no worse than the previous path's (every design option
    off) under the same keys, input and 2^-16 refresh noise, over a two-layer forward; here >= 10x smaller (the
    previous path loses LayerNorm 2's variance bits at its refresh)."""
    from refimpl.nexus import bert as nb

    size = {"hidden_size": 32, "num_attention_heads": 4, "intermediate_size": 64}
    (cur,) = noise.run("student", 16, size, 10, ["16"], layers=2, all_layers=True)
    (prev,) = noise.run("student", 16, size, 10, ["16"], layers=2, all_layers=True,
                        options={k: False for k in nb.DESIGN_OPTIONS})
    assert all(10 * c <= p for c, p in zip(cur["layer_err"], prev["layer_err"]))
    assert 10 * cur["logit_err"] <= prev["logit_err"]
