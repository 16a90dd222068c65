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
