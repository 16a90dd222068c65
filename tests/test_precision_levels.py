"""`refimpl experiment precision-levels` (ours): precision along the chain and after each bootstrap."""

from refimpl.experiments.precision_levels import measure


def test_precision_along_the_chain_and_through_a_bootstrap():
    r = measure(log_n=10, cycles=1)
    rows, top = r["rows"], r["output_level"]
    assert r["insecure"] and "INSECURE" in r["security"] and r["N"] == 2**10
    assert [x["level"] for x in rows] == list(range(top, -1, -1)) * 2
    assert [x["event"] for x in rows].count("bootstrap") == 1 and rows[top + 1]["event"] == "bootstrap"
    assert all(x["precision_bits"]["mean"] > 20 for x in rows)  # 40-bit scale: about 26 bits here
    assert rows[top]["precision_bits"]["mean"] < rows[0]["precision_bits"]["mean"]  # products add noise
    assert [f["level"] for f in r["fresh"]] == list(range(top, -1, -1))
