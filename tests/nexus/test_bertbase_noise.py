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
