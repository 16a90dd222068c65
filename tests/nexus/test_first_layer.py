"""The first layer counted two ways (refimpl.experiments.first_layer): today's input expansion + BSGS
projections against the paper's Alg. 5 decompression feeding the broadcast ct-pt product (NEXUS
§3.1.1). Both must decrypt to numpy's Q, K, V; the counts are those docs/nexus-scale.md compares.
Small insecure ring (N = 2^10), CountingEvaluator (real arithmetic)."""

from refimpl.experiments import first_layer as fl


def test_both_first_layer_paths_compute_qkv_and_count_as_documented():
    """NEXUS-FIRST-LAYER: same Q, K, V both ways; the paper's path: the decompression's Subs as its only key
    switches and 3 (d / P) n d plaintext products; today's: the same Subs plus the projections' rotations."""
    r = fl.counts_small(logN=10, hidden=64, heads=4, n=4)
    s, today, paper = r["setting"], r["today"], r["paper"]
    nd = s["n"] * s["d"]
    assert today["max_err"] < 1e-4 and paper["max_err"] < 1e-4
    subs = today["total"]["subs"]
    assert subs == paper["total"]["subs"] == (1 << (nd - 1).bit_length()) - 1  # one tree of the next power of two
    assert paper["key_switches"] == subs and today["key_switches"] > subs
    chunks = -(-s["d"] // s["P"])
    assert paper["total"]["pt_mults"] == paper["plaintexts"] == 3 * chunks * nd
    assert today["expand"]["pt_mults"] == nd
