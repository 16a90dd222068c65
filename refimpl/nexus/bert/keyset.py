"""The Galois keys the encrypted forward uses, at the level each serves, from a dry run (ours).

`rotation_steps` (refimpl.nexus.bert.layout) lists every step any path of the forward could take
(the oracle paths of the attention included): 740 at BERT-base, n = 128, of which the default forward
uses about 210. A key at N = 2^16 takes tens of MB, so the client should make only the used ones, each
over Q_level P for the highest level it is applied at. `forward_key_levels` runs the forward's own code
(`encrypted_forward`) on refimpl.nexus.counting.DryEvaluator, which records every Galois element an
automorphism uses and the highest level it runs at: the exact key set of that forward (its layout, mask
length, plan and design switches), nothing derived by hand. The bootstrapper's own keys come from
Bootstrapper.galois_levels; `merged` joins the two (an element used by both gets the higher level).
"""

from __future__ import annotations

import numpy as np

from ..counting import DryBootstrapper, DryEvaluator
from .forward import encrypted_forward
from .layout import input_layout
from .ranges import NexusModel


def forward_key_levels(model: NexusModel, n: int, params, input_level: int, bootstrap_level: int, *,
                       attention_mask=None, argmax: bool = False, head_rows: bool = False, **kw) -> dict[int, int]:
    """Galois element -> the highest level the encrypted forward of `model` on n tokens applies it at
    (inputs at input_level, bootstraps returning bootstrap_level; kw: encrypted_forward's design switches).
    The dry evaluator holds no keys, so the forward takes the paths of an evaluator that can conjugate (a
    real one with a bootstrapper's keys)."""
    ev = DryEvaluator(params)
    lay = input_layout(model.config, n, params.slots, head_rows=head_rows)
    cts = [ev.fresh(input_level) for _ in range(lay.chunks(lay.d))]
    mask = np.ones(n) if attention_mask is None else attention_mask
    encrypted_forward(ev, DryBootstrapper(params, bootstrap_level), model, cts, n, mask, argmax=argmax,
                      head_rows=head_rows, **kw)
    return dict(sorted(ev.galois.items()))


def merged(*levels: dict[int, int]) -> dict[int, int]:
    """The union of element -> level maps, each element at the highest level any of them gives."""
    out: dict[int, int] = {}
    for m in levels:
        for k, lv in m.items():
            out[int(k)] = max(out.get(int(k), -1), int(lv))
    return dict(sorted(out.items()))
