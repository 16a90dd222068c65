"""Lazy relinearization in the encrypted forward (ours; the model option lazy_relin, False the previous path and the
oracle): QuickMax's max_pair with 16 key switches in its Sgn instead of 20 on a real ring, LayerNorm's sum of squares
with one, and the two-layer forward of both models against the previous path on a real small ring (N = 2^10):
the same logits within CKKS noise, the same levels and refreshes, fewer key switches exactly where the lazy sums
are (Softmax, GELU, LayerNorm)."""

import numpy as np
import pytest

from refimpl.ckks import Parameters
from refimpl.nexus.bert.nonlinear import sum_of_squares
from refimpl.nexus.counting import CountingEvaluator
from refimpl.nexus.folding import max_pair

from .helpers import Kit, bits, small_forward


@pytest.fixture(scope="module")
def kit():
    return Kit(Parameters.create(N=2048, levels=19, dnum=4, insecure=True))


def test_max_pair_and_squares_lazy_against_eager(kit):
    """NEXUS-LAZY-RELIN: max_pair (B = 2, 18 levels) with lazy relinearization in its Sgn: 17 key switches instead of
    21 (4 degree-9 steps, 4 each instead of 5, and the product), the same level and scale, the same maxima within
    2^-16; the sum of three squares: 1 relinearization instead of 3, the same sum."""
    rng = np.random.default_rng(1)
    a, b = rng.uniform(-2, 2, kit.p.slots), rng.uniform(-2, 2, kit.p.slots)
    ca, cb = kit.encrypt(a), kit.encrypt(b)
    outs, ks = [], []
    for lazy in (True, False):
        ev = CountingEvaluator(kit.ev)
        outs.append(max_pair(ev, ca, cb, bound=2.0, lazy=lazy))
        ks.append(ev.counts["key_switches"])
    assert ks == [17, 21]
    assert (outs[0].level, outs[0].scale, outs[0].size) == (outs[1].level, outs[1].scale, 2)
    z, z_eager = (kit.decrypt(o) for o in outs)
    assert bits(z - z_eager) >= 16
    far = np.abs(a - b) > 0.1  # where Sgn has saturated
    assert np.max(np.abs(z - np.maximum(a, b))[far]) < 1e-3
    xs = [kit.encrypt(rng.uniform(-1, 1, kit.p.slots)) for _ in range(3)]
    sums, relins = [], []
    for lazy in (True, False):
        ev = CountingEvaluator(kit.ev)
        sums.append(sum_of_squares(ev, xs, lazy))
        relins.append(ev.counts["relinearizations"])
    assert relins == [1, 3] and (sums[0].level, sums[0].scale) == (sums[1].level, sums[1].scale)
    want = sum(kit.decrypt(x) ** 2 for x in xs)
    assert bits(kit.decrypt(sums[0]) - want) >= 20 and bits(kit.decrypt(sums[1]) - want) >= 20


def forward(attention, activation, lazy):
    """The two-layer small forward (tests.nexus.helpers.small_forward): (logits, trace, float64 logits)."""
    run = small_forward(attention, activation, {"lazy_relin": lazy}, layers=2)
    return run["logits"], run["trace"], run["ref"]


@pytest.mark.parametrize("attention,activation", [("softmax", "gelu"), ("2quad-freediv", "quad")])
def test_two_layer_forward_lazy_against_eager(attention, activation):
    """NEXUS-LAZY-RELIN: the two-layer forward with lazy relinearization (the default) decrypts to the previous path's
    logits within 1e-3 and to the float64 model's within 1e-3, through the same pieces at the same levels with the
    same refreshes; its key switches are fewer in Softmax and GELU and equal elsewhere."""
    new, trace, ref = forward(attention, activation, True)
    old, old_trace, _ = forward(attention, activation, False)
    np.testing.assert_allclose(new, old, atol=1e-3)
    np.testing.assert_allclose(new, ref, atol=1e-3)
    assert [(r["block"], r["level_in"], r["level_out"], r["bootstraps"]) for r in trace] == \
        [(r["block"], r["level_in"], r["level_out"], r["bootstraps"]) for r in old_trace]
    fewer = set()
    for r, o in zip(trace, old_trace):
        ks, ks_old = r["counts"].get("key_switches", 0), o["counts"].get("key_switches", 0)
        assert ks <= ks_old, r["block"]
        if ks < ks_old:
            fewer.add(r["block"].split(".", 1)[1].split(".")[0])
    # LayerNorm's squares: one hidden chunk here (hidden 32), so no fewer (BERT-base: 6 chunks, 5 fewer each)
    assert fewer == ({"softmax", "gelu"} if attention == "softmax" else set())
