"""A BERT encoder layer on shares vs the float64 layer built from bert.functional (ABY3-LAYER-1),
and the benchmark's quick run (ABY3-BENCH-1)."""

import json

import numpy as np
import pytest

from refimpl.aby3.encoder import LAYER_KEYS, encoder_layer
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import reveal, share_input
from refimpl.bench import aby3 as bench


@pytest.mark.parametrize("attention,act", [("softmax", "gelu"), ("2quad-freediv", "quad"), ("2relu", "relu")])
def test_encoder_layer_matches_float(attention, act):
    """ABY3-LAYER-1: secret input and secret weights; the output within 2e-2 (softmax) / 1e-3 of float64."""
    rng = np.random.default_rng(0)
    n, d, h, ff = 8, 32, 2, 64
    w = bench.random_layer_weights(rng, d, ff)
    x = rng.normal(size=(n, d))
    mask = np.ones(n)
    mask[6:] = 0

    def prog(p):
        xs = share_input(p, 0, x if p.id == 0 else None)
        ws = {k: share_input(p, 1, w[k] if p.id == 1 else None) for k in LAYER_KEYS}
        return reveal(p, encoder_layer(p, xs, ws, mask, heads=h, attention=attention, act=act))

    out = simulate(prog).outputs[0]
    ref = bench.layer_reference(x, w, mask, h, attention, act)
    assert np.max(np.abs(out - ref)) < (2e-2 if attention == "softmax" else 1e-3)


def test_bench_quick_prints_json(tmp_path, monkeypatch, capsys):
    """ABY3-BENCH-1: every row carries name, bytes, rounds, median_s, LAN/WAN estimates and error."""
    monkeypatch.setattr(bench, "SPU_PYTHON", tmp_path / "none")
    monkeypatch.setattr(bench, "LAYERS", [("2quad-freediv", "quad")])
    out = tmp_path / "b.json"
    assert bench.main(quick=True, json_path=str(out)) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.splitlines()]
    assert lines[0]["peer"] == "spu-0.9.5" and "missing" in lines[0]
    rows = lines[1:]
    assert {r["name"] for r in rows} >= {"fxp_mul", "matmul", "attn_2quad-freediv", "act_quad", "layernorm"}
    for r in rows:
        assert {"bytes", "rounds", "median_s", "lan_s", "wan_s", "max_abs_err"} <= set(r)
    assert json.loads(out.read_text())["items"] == rows
