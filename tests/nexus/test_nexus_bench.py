"""The benchmark rows of the NEXUS blocks (refimpl.experiments.nexus_blocks) run (quick settings) and carry their fields."""

from refimpl.experiments import nexus_blocks as bench
from refimpl.experiments.nexus_blocks import run


def test_bench_quick_rows():
    recs = run(quick=True, emit=lambda r: None, rows=("layernorm", "matmul"))
    assert [r["name"] for r in recs] == ["nexus.like_for_like.layernorm_nomean", "nexus.full.layernorm",
                                         "nexus.like_for_like.matmul_compressed"]
    for r in recs:
        assert {"median_s", "peak_rss_gib", "levels_consumed", "max_err_exact", "mean_err_exact", "counts"} <= r.keys()
        assert r["max_err_model"] < 1e-5
    assert recs[2]["counts"]["subs"] == 1023 and recs[2]["peer_median_s"] == 245.6


def test_argmax_with_real_bootstrapping_row():
    """The full Argmax row runs with the real Bootstrapper (quick: a deep toy ring) and reports it."""
    rows = []
    bench.run(quick=True, emit=rows.append, rows=("argmax_boot",))
    (r,) = rows
    assert r["name"] == "nexus.full.argmax8_bootstrapped"
    assert r["max_err_model"] < 1e-3 and "sparse-secret encapsulation" in r["bootstrapper"]
    assert r["bootstraps"] == 3  # one refresh before each of the 3 QuickMax rounds / the final Sgn (18 levels each)


def test_softmax_with_real_bootstrapping_row():
    """The paper's Softmax (QuickMax over the keys) with the real Bootstrapper: matches its
    float64 model and refreshes between QuickMax rounds (quick: 32 keys on a deep toy ring)."""
    rows = []
    bench.run(quick=True, emit=rows.append, rows=("softmax_boot",))
    (r,) = rows
    assert r["max_err_model"] < 1e-4 and r["max_err_exact"] < 0.05
    assert r["bootstraps"] >= 5  # log2(32) QuickMax rounds of 17 levels on an 18-level refresh


def test_qk_packings_row():
    """NEXUS-MM-CTCT in the benchmark: the batched packing needs n products for all of S, the
    per-pair form n per query row (n^2 in all); both match Q K^T."""
    rows = {}
    bench.run(quick=True, emit=lambda r: rows.__setitem__(r["name"], r), rows=("qk",))
    b, p = rows["nexus.full.qk_batched"], rows["nexus.full.qk_pairwise"]
    n = b["shape"][0]
    assert b["counts"]["ct_mults"] == n and p["all_rows_counts"]["ct_mults"] == n * n
    assert b["max_err_exact"] < 1e-5 and p["max_err_exact"] < 1e-5
