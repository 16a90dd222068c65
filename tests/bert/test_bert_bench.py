"""`refimpl bench bert` runs and prints well-formed JSON lines (no timing assertions).

Spec IDs: BERT-BENCH.
"""

from __future__ import annotations

import json

from refimpl.bench import bert as bench
from refimpl.bert.config import BertConfig


def test_model_gflop_counts_every_matmul():
    # BERT-BENCH: per layer Q, K, V, O (4 d^2), FFN (2 d I) at 2 flop per multiply-add, plus
    # Q K^T and P V (2 x 2 B n^2 d); counted by hand for a tiny config
    c = BertConfig(vocab_size=10, hidden_size=4, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=8)
    b, n = 3, 5
    t = b * n
    by_hand = 2 * (4 * (2 * t * 4 * 4) + 2 * (2 * t * 4 * 8) + 2 * (2 * b * n * n * 4))
    assert bench.model_gflop(c, b, n) * 1e9 == by_hand


def test_bench_quick_single_thread_prints_json(capsys, tmp_path):
    # BERT-BENCH: the CLI entry point (refimpl bench bert --quick --threads 1 --json FILE)
    out = tmp_path / "bert.json"
    assert bench.main(quick=True, json_path=str(out), threads="1") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    names = [row["name"] for row in lines]
    assert names.count("bert.forward") == 2 and names.count("bert.forward_backward") == 2
    assert "numpy.gemm" in names
    for row in lines:
        assert row["median_s"] > 0 and row["threads"] == "1"
    assert json.loads(out.read_text())["results"] == lines
    assert bench.main(quick=True, json_path=None, threads="seven") == 2
