"""Tests written for the mutants of `python tests/mutation.py sample nexus-blocks` that survived
(docs/testing.md). Every expected value is computed independently (Python loops, the documented limits)."""

import numpy as np
import pytest

from refimpl.ckks import Parameters
from refimpl.nexus.matmul import layout_interleaved
from refimpl.nexus.softmax import EXP_R, softmax

from .helpers import Kit


def test_layout_interleaved_every_group():
    """NEXUS §3.1.2: score ciphertext g holds S[g d + r, j] in slot j d + r, for every group g (the
    last one partial), zeros elsewhere."""
    n, d, slots = 10, 4, 64
    S = np.arange(1.0, 1.0 + n * n).reshape(n, n)
    for g in range((n + d - 1) // d):
        want = np.zeros(slots)
        for r in range(d):
            if g * d + r < n:
                for j in range(n):
                    want[j * d + r] = S[g * d + r, j]
        assert np.array_equal(layout_interleaved(S, g, d, slots), want)


@pytest.fixture(scope="module")
def kit():
    return Kit(Parameters.create(N=1024, levels=2, insecure=True))


def test_softmax_accepts_bounds_up_to_half_of_exps_range(kit):
    """NEXUS-SOFTMAX: entries in [-B, B] are accepted exactly when 2 B <= 2^r (a - max >= -2^r, the
    range of exp's (1 + x/2^r)^(2^r)), r = 6: B = 32 passes the range check (and fails the next, the
    layout's, on purpose: no encryption is run), B = 32.5 does not."""
    assert EXP_R == 6
    ct = kit.encrypt(np.zeros(4))
    with pytest.raises(ValueError, match="fill all"):
        softmax(kit.ev, ct, 8, 32.0)
    with pytest.raises(ValueError, match="scale the scores"):
        softmax(kit.ev, ct, 8, 32.5)
