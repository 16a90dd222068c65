"""Test helpers: run a program on three parties with secret inputs owned by party 0."""

from __future__ import annotations

import numpy as np

from refimpl.aby3.party import simulate
from refimpl.aby3.shares import reveal, share_input


def run(fn, *inputs, seed=0, record_views=False, fxp=None, reveal_raw=False):
    """Share each input from party 0, apply fn(p, *shares), reveal the result to all.

    Returns (revealed value at party 0, RunResult, scope stats of the measured part).
    The measured part is wrapped in the scope "op" (inputs and output are excluded).
    """
    def prog(p):
        xs = [share_input(p, 0, x if p.id == 0 else None) for x in inputs]
        with p.net.scope("op"):
            y = fn(p, *xs)
        return reveal(p, y, raw=reveal_raw)

    res = simulate(prog, insecure_seed=seed, record_views=record_views, fxp=fxp)
    for o in res.outputs[1:]:
        assert np.array_equal(o, res.outputs[0])
    return res.outputs[0], res, res.scope("op")
