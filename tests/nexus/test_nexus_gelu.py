"""GELU, the paper's 4-piece version (NEXUS §3.3), encrypted vs its float64 model and vs the exact functions.

Tight bound: the pieces reach |Q(12)| ~ 5.4e3 ~ 2^12.4 and multiply segment bits whose CKKS
error is about 2^-(40 - 11 - 8 - 7.6) (fresh error, Sgn slope): we require 2^-14 against
`gelu_plain`. The approximation's own error (spec NEXUS-GELU-ERR, measured on a dense grid):
max 0.012 vs erf-GELU (at x = 3, where Q(3) = 3.016 and the x-piece blend), mean 1.2e-3.
"""

import numpy as np
import pytest

from refimpl.bert.functional import gelu_erf, gelu_poly4
from refimpl.ckks import Parameters
from refimpl.nexus.counting import CountingEvaluator
from refimpl.ckks.polyeval import evaluate_power
from refimpl.nexus.gelu import BREAKPOINTS, LEVELS, P, Q, SGN_PRESCALE, VALID_RANGE, gelu, gelu_plain, segments_and_pieces
from refimpl.nexus.sign import sgn

from .helpers import Kit, bits


@pytest.fixture(scope="module")
def kit():
    return Kit(Parameters.create(N=2048, levels=19, dnum=4, insecure=True))


def test_gelu_plain_model_error():
    """NEXUS-GELU-ERR: the model against the exact piecewise P/Q (blend near breakpoints) and erf-GELU."""
    x = np.linspace(*VALID_RANGE, 250_001)
    g = gelu_plain(x)
    assert np.max(np.abs(g - gelu_poly4(x))) < 0.0085
    assert np.max(np.abs(g - gelu_erf(x))) < 0.0125 and np.mean(np.abs(g - gelu_erf(x))) < 1.3e-3
    far = np.min(np.abs(x[:, None] - np.array([-4.0, -1.95, 3.0])), axis=1) > 0.3
    assert np.max(np.abs(g - gelu_poly4(x))[far]) < 2e-3  # away from breakpoints: the pieces themselves


def test_gelu_encrypted(kit):
    """NEXUS-GELU-LEVELS: 18 levels, 3 Sgn; tight against the model."""
    x = np.linspace(*VALID_RANGE, kit.p.slots)
    ct = kit.encrypt(x)
    ev = CountingEvaluator(kit.ev)
    out = gelu(ev, ct)
    assert ct.level - out.level == LEVELS == 18 and out.scale == ct.scale
    assert ev.counts["rotations"] == 0
    z = kit.decrypt(out)
    assert bits(z - gelu_plain(x)) >= 14
    assert np.max(np.abs(z - gelu_erf(x))) < 0.0125


@pytest.mark.parametrize("lazy", [False, True])
def test_gelu_shares_the_powers_of_its_five_polynomials(kit, lazy):
    """NEXUS-GELU-SHARED: the segment bits and pieces from one set of Chebyshev powers (ours) equal the separate
    evaluations (three Sgn, P, Q: the oracle) at the same levels and scales, with 12 products instead of 22 in
    the five polynomials of x; with lazy relinearization (ours, CKKS-POLY-LAZY) 9 key switches instead of 12
    there and 12 instead of 15 in each Sgn tail."""
    x = np.linspace(*VALID_RANGE, kit.p.slots)
    ct = kit.encrypt(x)
    q_bit = float(kit.p.q[ct.level - 17])
    ev = CountingEvaluator(kit.ev)
    bits_, p, q = segments_and_pieces(ev, ct, *VALID_RANGE, SGN_PRESCALE, q_bit, lazy=lazy)
    shared = ev.counts["relinearizations"]
    ev = CountingEvaluator(kit.ev)
    ref = [sgn(ev, ct, bound=SGN_PRESCALE, center=t, factor=0.5, target_scale=q_bit, lazy=lazy) for t in BREAKPOINTS]
    ref += [evaluate_power(ev, ct, c, *VALID_RANGE, lazy=lazy)[0] for c in (P, Q)]
    want_counts = (3 * 12 + 9, 3 * 12 + 19) if lazy else (3 * 15 + 12, 3 * 15 + 22)
    assert (shared, ev.counts["relinearizations"]) == want_counts
    for got, want in zip(bits_ + [p, q], ref):
        assert (got.level, got.scale, got.size) == (want.level, want.scale, 2)
        assert np.max(np.abs(kit.decrypt(got) - kit.decrypt(want))) < 2**-14 * max(1.0, np.max(np.abs(kit.decrypt(want))))


def test_lazy_gelu_matches_the_eager_path(kit):
    """NEXUS-GELU-SHARED, CKKS-POLY-LAZY: GELU with lazy relinearization (ours, the default) lands at the eager
    path's level and scale with 46 key switches instead of 60 (the five polynomials of x 9 instead of 12, the
    Sgn tails 36 instead of 45, the three final products 1 instead of 3), and decrypts to the same values within 2^-15
    (the CKKS noise of either), as close to the float64 model."""
    x = np.linspace(*VALID_RANGE, kit.p.slots)
    ct = kit.encrypt(x)
    outs, counts = [], []
    for lazy in (True, False):
        ev = CountingEvaluator(kit.ev)
        outs.append(gelu(ev, ct, lazy=lazy))
        counts.append(ev.counts["key_switches"])
    assert counts == [46, 60]
    assert (outs[0].level, outs[0].scale) == (outs[1].level, outs[1].scale)
    z, z_eager = (kit.decrypt(o) for o in outs)
    assert bits(z - z_eager) >= 15 and bits(z - gelu_plain(x)) >= max(14, bits(z_eager - gelu_plain(x)) - 1)


def test_gelu_range_error(kit):
    with pytest.raises(ValueError, match="valid range"):
        gelu(kit.ev, kit.encrypt(np.zeros(4)), lo=-20.0, hi=5.0)
