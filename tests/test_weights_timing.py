"""refimpl.experiments.weights_timing on a toy ring: every way of reading a stored diagonal gives the encoding."""

from refimpl.experiments import weights_timing as wt


def test_encode_vs_expand_every_way_equals_the_encoding():
    rows = wt.encode_vs_expand("toy-2^10-deep", levels=(5, 3), reps=2, window=16, log=lambda row: None)
    assert [r["level"] for r in rows] == [5, 3]
    for r in rows:
        for way in ("read_v1", "ntt_full", "scatter_ntt", "expand"):
            assert r[f"{way}_equals_encode"] is True, (r["level"], way)
        assert r["kept_coefficients"] * r["stride"] == 2**10


def test_timed_counts_calls_and_cpu_seconds():
    spent = {"calls": 0, "cpu_s": 0.0}
    f = wt.timed(lambda x: 2 * x, spent)
    assert [f(1), f(2)] == [2, 4]
    assert spent["calls"] == 2 and spent["cpu_s"] >= 0.0
