"""SIMD slot folding (NEXUS Alg. 7): an associative f over the n slots of every row window.

Rows: row r occupies the slots [r w, r w + n) with a window stride w (a power of two, n <= w);
with `step` > 1 the row's elements sit every `step` slots instead ([r w + t step], t < n).

Folding: for i = 0 .. log2(n) - 1:  s <- f(s, RotL(s, step 2^i)).
After the loop, slot r w + t holds f over the cyclic window t, t + 1, ..., t + n - 1 (mod the
window), which is the whole row only if the row is cyclic. A row is made cyclic by the row
duplication x <- x + RotR(x, n step) (the pre-step of the official code, reported on its issue tracker), which
needs zero slots [n, 2n) behind every row (w >= 2n); or for free when one row fills the whole
ciphertext (n step = N/2).

QuickSum (§5.1): f = +: log2(n) rotations, 0 levels (+1 rotation for the duplication).
QuickMax (§5.2): f = max(a, b) = (a + b)/2 + (a - b) Sgn(a - b)/2 with |a - b| <= 1:
log2(n) rounds of one Sgn and one product each, 17 levels per round; a bootstrapper refreshes
the running maximum between rounds when the next round would not fit.

Sgn count: the paper's text (§3.1.3) counts log m - 1 Sgn for QuickMax over m slots; Alg. 7's
loop, which refimpl follows, takes log2 m rounds of one Sgn each, and fewer rounds cannot cover
m entries (a round at most doubles the entries a slot's maximum covers). Measured with
`refimpl reproduce nexus-counts`: 3 Sgn for m = 8 (the text: 2), and the fold cut to
log2 m - 1 rounds misses the maximum (by more than 2e-3) in 44 % of random rows of 128. refimpl keeps
log2 m; there is no option for the text's count, since it does not compute the maximum.

Reference: NEXUS Alg. 7, §5.1 and §5.2 (Zhang et al., NDSS 2025).
"""

from __future__ import annotations

import numpy as np

from ..ckks import Ciphertext
from .levels import ensure_levels, with_scale
from .sign import DEPTH as SGN_DEPTH, sgn, sgn_levels, sgn_plain

QUICKMAX_ROUND_LEVELS = SGN_DEPTH + 1  # Sgn, then the product (a - b) Sgn(a - b); for bound 1/2


def round_levels(bound: float = 0.5) -> int:
    """Levels of one QuickMax round: 17 for |x| <= 1/2, 18 otherwise (Sgn normalises (a - b) / 2B)."""
    return sgn_levels(2 * bound) + 1


def _log2(n: int, what: str) -> int:
    if n < 1 or n & (n - 1):
        raise ValueError(f"{what} must be a power of two, got {n}")
    return n.bit_length() - 1


def fold_rotations(n: int, step: int = 1) -> list[int]:
    """The rotations of one fold over n slots: step 2^i, i < log2(n)."""
    return [step << i for i in range(_log2(n, "n"))]


def duplicate_rows(ev, ct: Ciphertext, n: int, step: int = 1) -> Ciphertext:
    """x + RotR(x, n step): copies each row behind itself so that windows are cyclic (1 rotation, 0 levels)."""
    return ev.add(ct, ev.rotate(ct, -n * step))


def quick_sum(ev, ct: Ciphertext, n: int, step: int = 1, duplicate: bool = False) -> Ciphertext:
    """Sum over each row window of n slots, in every slot of the window (NEXUS §5.1, Alg. 7).

    s <- s + RotL(s, step 2^i), i < log2(n): log2(n) rotations (+1 with duplicate=True), 0 levels."""
    s = duplicate_rows(ev, ct, n, step) if duplicate else ct
    for r in fold_rotations(n, step):
        s = ev.add(s, ev.rotate(s, r))  # level unchanged
    return s


def max_pair(ev, a: Ciphertext, b: Ciphertext, bound: float = 0.5, lazy: bool = True) -> Ciphertext:
    """max(a, b) = (a + b)/2 + (a - b) Sgn((a - b) / 2B) / 2 slotwise, for |a|, |b| <= B (NEXUS §5.2).

    Level l -> l - 17 (B = 1/2; else l - 18), scale unchanged. lazy: Sgn with lazy relinearization (ours,
    refimpl.nexus.sign.sgn: 16 key switches instead of 20; False: the previous path)."""
    d = ev.sub(a, b)  # |d| <= 2B
    lo = a.level - sgn_levels(2 * bound)  # level l - 16 (l - 17)
    s = sgn(ev, d, bound=2 * bound, factor=0.5, target_scale=float(ev.params.q[lo]), lazy=lazy)  # Sgn/2 at level lo
    prod = ev.rescale(ev.multiply(ev.drop_level(d, lo), s))  # level lo -> lo-1, scale d.scale
    half_sum = ev.rescale(ev.mul_const(ev.drop_level(ev.add(a, b), lo), 0.5))  # level lo-1, same scale
    return ev.add(with_scale(half_sum, prod.scale), prod)


def quick_max(ev, ct: Ciphertext, n: int, bound: float = 0.5, step: int = 1, duplicate: bool = False,
              bootstrapper=None) -> Ciphertext:
    """Max over each row window of n slots, in every slot of the window (NEXUS §5.2, Alg. 7).

    s <- max(s, RotL(s, step 2^i)), i < log2(n); every slot must lie in [-B, B] (B = bound),
    including padded ones (fill them with -B: they never win). log2(n) rotations (+1), log2(n)
    Sgn, 17 levels per round (18 if B > 1/2); when a round does not fit in the levels left,
    the bootstrapper refreshes the running maximum (an error if none is given)."""
    need = round_levels(bound)
    s = duplicate_rows(ev, ct, n, step) if duplicate else ct
    for r in fold_rotations(n, step):
        s = ensure_levels(s, need, bootstrapper, "a quick_max round")  # refresh between rounds
        s = max_pair(ev, s, ev.rotate(s, r), bound)  # level l -> l-17
    return s


# ------------------------------------------------------------------ float64 models (oracles)
def rotl_plain(x: np.ndarray, r: int) -> np.ndarray:
    """RotL on a slot vector: result[j] = x[(j + r) mod len]."""
    return np.roll(x, -r, axis=-1)


def quick_sum_plain(x: np.ndarray, n: int, step: int = 1, duplicate: bool = False) -> np.ndarray:
    """The same schedule as `quick_sum` on a float64 slot vector."""
    s = x + rotl_plain(x, -n * step) if duplicate else x
    for r in fold_rotations(n, step):
        s = s + rotl_plain(s, r)
    return s


def quick_max_plain(x: np.ndarray, n: int, bound: float = 0.5, step: int = 1, duplicate: bool = False) -> np.ndarray:
    """The same schedule as `quick_max` with the same Sgn polynomial, on float64 slots."""
    s = x + rotl_plain(x, -n * step) if duplicate else x
    for r in fold_rotations(n, step):
        b = rotl_plain(s, r)
        d = s - b
        s = (s + b) / 2 + d * sgn_plain(d / (2 * bound), 0.5)
    return s


def max_pair_error_bound(bound: float = 0.5) -> float:
    """sup over |d| <= 2B of |max(a, b) - max_pair(a, b)| = sup |d| |1 - Sgn(d / 2B)| / 2 (float64, dense grid)."""
    d = np.linspace(0.0, 2 * bound, 2_000_001)
    return float(np.max(d * np.abs(1.0 - sgn_plain(d / (2 * bound))) / 2))
