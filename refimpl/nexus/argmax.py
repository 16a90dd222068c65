"""Argmax as a selection vector (NEXUS §3.4): QuickMax, then 1 + Sgn(x - max).

    b_i = 1 + Sgn((a_i - a_max) / 2B)  ~ 1 where a_i = a_max, ~ 0 where a_max - a_i >= 0.0348 B

for entries in [-B, B] (a - a_max in [-2B, 0]). Ties share the 1s; a gap below the Sgn
resolution gives fractions. The QuickMax estimate may sit slightly below the true maximum
(max_pair's own error), which lifts the winner's b a little above 1.

Layout and padding as in softmax: rows of n slots, one row filling the slots or windows of
w >= 2n with zeros behind (duplication); padded entries (key_mask 0) are set to -B first.
Slots outside the rows hold garbage.

Levels: log2(n) QuickMax rounds (17 each for B = 1/2), then Sgn (16, +1 normalising);
bootstraps between rounds and before the final Sgn as levels require. Over the BERT vocabulary
(m = 30522 -> 2^15) that is 15 rounds.

Reference: NEXUS §3.4 (Zhang et al., NDSS 2025); official code src/argmax.cpp (one bootstrap
after every round, Sgn factor 1 in the last step).
"""

from __future__ import annotations

import numpy as np

from ..ckks import Ciphertext
from .folding import quick_max, quick_max_plain
from .levels import align, ensure_levels
from .sign import sgn, sgn_levels, sgn_plain
from .softmax import row_mask, window_layout


def argmax_plain(x: np.ndarray, n: int, bound: float = 0.5, key_mask=None, window: int | None = None) -> np.ndarray:
    """The float64 model of `argmax` on a slot vector."""
    window, dup = window_layout(x.size, n, window)
    xa = x if key_mask is None else x - bound * (row_mask(x.size, n, window) - key_mask)
    m = quick_max_plain(xa, n, bound, duplicate=dup)
    return 1.0 + sgn_plain((xa - m) / (2 * bound))


def argmax(ev, ct: Ciphertext, n: int, bound: float = 0.5, key_mask=None, window: int | None = None,
           bootstrapper=None) -> Ciphertext:
    """1 + Sgn((x - QuickMax(x)) / 2B) per row of n slots, entries in [-B, B] (NEXUS §3.4)."""
    slots = ev.params.slots
    window, dup = window_layout(slots, n, window)
    xa = ct if key_mask is None else ev.add_const(ct, -bound * (row_mask(slots, n, window) - np.asarray(key_mask)))
    m = quick_max(ev, xa, n, bound=bound, duplicate=dup, bootstrapper=bootstrapper)
    if xa.level > m.level:
        d = ev.sub(align(ev, xa, m.level, m.scale), m)
    else:
        d = ev.sub(xa, align(ev, m, xa.level, xa.scale))
    need = sgn_levels(2 * bound)
    d = ensure_levels(d, need, bootstrapper, "argmax: Sgn after QuickMax")
    return ev.add_const(sgn(ev, d, bound=2 * bound), 1.0)  # level -16 (-17)
