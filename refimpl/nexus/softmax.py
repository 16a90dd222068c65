"""Softmax over rows of slots (NEXUS §3.1.3, Alg. 1): QuickMax, subtract, exp, QuickSum, inverse, multiply.

    y_i = exp(a_i - a_max) / sum_j exp(a_j - a_max)

exp(x) ~ (1 + x / 2^r)^(2^r), r = 6, for x in (-2^r, 0]: one constant product and r squarings
(r + 1 levels). The row sum S lies in [1, n] (the maximum contributes exp(0) = 1), and its
inverse is Goldschmidt's product 1/z = prod_{i<k} (1 + y^(2^i)) / (1 - y^(2^k)), y = 1 - z,
on z = S 2 / (lo + hi) in (0, 2): relative error |y|^(2^k), |y| <= (hi - lo) / (hi + lo);
k + 1 levels.

Layout: rows of n slots (n a power of two) at the start of windows of w slots; either one
row fills the ciphertext (w = n = N/2: folding is cyclic) or w >= 2n with zeros behind each
row (duplication makes the windows cyclic). Padded keys are masked: before QuickMax they
are set to -B (they never win), and exp is multiplied by the 0/1 key mask (folded into its
constant product, no extra level), so they add nothing to the sum.

Levels: QuickMax log2(n) rounds of 17 (18 for B > 1/2; bootstraps between rounds), then r + 1
(exp, +0 for the mask), k + 1 (inverse), 1 (product). Split points where the bootstrapper
refreshes what does not fit: the difference a - a_max before exp, the row sum before the
inverse. The official code's Softmax skips QuickMax (inputs <= 0) and uses
r = 7 and a fixed x0.01 pre-scaling of the sum (valid for sums in about [19, 181]).

exp's r: r = 6 is the paper's and the default here. Departure (ours, the official code's r): the
encrypted BERT (refimpl.nexus.bert.ranges) takes r = 7 when its calibrated score bound B has
2B > 64, because r = 6 only holds on [-64, 0]: measured with `refimpl reproduce nexus-blocks`,
r = 6 reaches an error of 1 on [-128, 0] where r = 7 stays within 2.1e-3. Every committed
BERT run has B = 64, hence r = 7. Neither r reaches the paper's "mean error 1e-5" (r = 6: mean
2.4e-4 on [-64, 0], max 4.3e-3 at x = -2; r = 7 halves both).

Reference: NEXUS §3.1.3 and Alg. 1 (Zhang et al., NDSS 2025); Goldschmidt division as in
NEXUS refs [21, 24]; official code src/softmax.cpp.
"""

from __future__ import annotations

import math

import numpy as np

from ..ckks import Ciphertext
from ..constants import C
from .folding import quick_max, quick_max_plain, quick_sum, quick_sum_plain
from .levels import align, ensure_levels

EXP_R = int(C["nexus"]["exp"]["r"])  # 6
EXP_LEVELS = EXP_R + 1


# ------------------------------------------------------------------ exp
def exp_plain(x: np.ndarray, r: int = EXP_R) -> np.ndarray:
    """(1 + x / 2^r)^(2^r) in float64 (the model of `exp`)."""
    y = 1.0 + x / 2.0**r
    for _ in range(r):
        y = y * y
    return y


def exp(ev, ct: Ciphertext, lo: float = -(2.0**EXP_R), mask=None, r: int = EXP_R, unit: float = 1.0) -> Ciphertext:
    """exp(x) ~ (1 + x / 2^r)^(2^r) slotwise, r = 6 (NEXUS §3.1.3); times the 0/1 `mask` if given.

    The slots hold x / unit (unit > 0; ours: a caller that carries its values scaled, as the encrypted
    BERT's prescaled scores, folds unit into the first constant product, no level). Inputs x / unit in
    [lo, 0] with lo unit >= -2^r (checked: below, 1 + x/2^r < 0 and the even power explodes).
    Level l -> l - (r + 1)."""
    if lo * unit < -(2.0**r):
        raise ValueError(f"exp inputs reach {lo * unit} < -2^{r}: subtract the row maximum first (QuickMax)")
    if mask is None:
        y = ev.add_const(ev.rescale(ev.mul_const(ct, unit / 2**r)), 1.0)  # level l -> l-1
    else:
        m = np.asarray(mask, dtype=np.float64)
        y = ev.add_const(ev.rescale(ev.mul_const(ct, m * (unit / 2**r))), m)  # (1 + x/2^r) m, level l -> l-1
    for _ in range(r):
        y = ev.rescale(ev.square(y))  # level -1 each
    return y


# ------------------------------------------------------------------ inverse
def goldschmidt_iterations(lo: float, hi: float, rel_err: float = 2.0**-12) -> int:
    """The smallest k with ((hi - lo) / (hi + lo))^(2^k) <= rel_err."""
    if not 0 < lo <= hi:
        raise ValueError(f"the inverse needs 0 < lo <= hi, got [{lo}, {hi}]")
    y = (hi - lo) / (hi + lo)
    if y == 0:
        return 1
    return max(1, math.ceil(math.log2(math.log(rel_err) / math.log(y))))


def inverse_plain(x: np.ndarray, lo: float, hi: float, iters: int) -> np.ndarray:
    """Goldschmidt's product in float64 (the model of `inverse`)."""
    c = 2.0 / (lo + hi)
    y = 1.0 - x * c
    acc, p = (1.0 + y) * c, y
    for _ in range(1, iters):
        p = p * p
        acc = acc * (1.0 + p)
    return acc


def inverse(ev, ct: Ciphertext, lo: float, hi: float, iters: int | None = None) -> Ciphertext:
    """1/x ~ c prod_{i<k} (1 + y^(2^i)), y = 1 - c x, c = 2/(lo + hi), for x in [lo, hi] (Goldschmidt).

    Relative error ((hi - lo)/(hi + lo))^(2^k); k defaults to goldschmidt_iterations(lo, hi).
    Level l -> l - (k + 1)."""
    if lo < 0 or not hi > lo:
        raise ValueError(f"the inverse needs inputs in [lo, hi] with 0 <= lo < hi (z = 2x/(lo + hi) in (0, 2)), got [{lo}, {hi}]")
    k = goldschmidt_iterations(lo, hi) if iters is None else int(iters)
    c = 2.0 / (lo + hi)
    y = ev.add_const(ev.negate(ev.rescale(ev.mul_const(ct, c))), 1.0)  # y = 1 - c x, level l -> l-1
    acc = ev.rescale(ev.mul_const(ev.add_const(y, 1.0), c))  # c (1 + y), level l-2
    p = y
    for _ in range(1, k):
        p = ev.rescale(ev.square(p))  # y^(2^i)
        lvl = min(acc.level, p.level)
        factor = ev.add_const(ev.drop_level(p, lvl), 1.0)
        acc = ev.rescale(ev.multiply(ev.drop_level(acc, lvl), factor))  # level -1
    return acc


def inverse_levels(k: int) -> int:
    """Levels of `inverse` with k factors: k + 1."""
    return k + 1


# ------------------------------------------------------------------ softmax
def row_mask(slots: int, n: int, window: int) -> np.ndarray:
    """1 on the first n slots of every window of `window` slots."""
    return (np.arange(slots) % window < n).astype(np.float64)


def window_layout(slots: int, n: int, window: int | None) -> tuple[int, bool]:
    """(window, duplicate?) for rows of n slots; refuses layouts whose folds would mix rows."""
    window = n if window is None else window
    if window == n and n != slots:
        raise ValueError(f"without duplication a row must fill all {slots} slots (n = {n}): use a window >= 2n")
    if window != n and window < 2 * n:
        raise ValueError(f"a window of {window} slots cannot hold a row of {n} and its duplicate: use >= {2 * n}")
    return window, window != n


def softmax_plain(x: np.ndarray, n: int, bound: float, key_mask=None, window: int | None = None,
                  iters: int | None = None) -> np.ndarray:
    """The float64 model of `softmax`, the same approximations in the same order."""
    slots = x.size
    window, dup = window_layout(slots, n, window)
    mask = row_mask(slots, n, window) if key_mask is None and dup else key_mask
    xa = x if mask is None else x - bound * (row_mask(slots, n, window) - mask)
    m = quick_max_plain(xa, n, bound, duplicate=dup)
    e = exp_plain(x - m) if mask is None else exp_plain(x - m) * mask
    s = quick_sum_plain(e, n, duplicate=dup)
    lo, hi = 0.5, float(n)
    k = goldschmidt_iterations(lo, hi) if iters is None else iters
    return e * inverse_plain(s, lo, hi, k)


def softmax(ev, ct: Ciphertext, n: int, bound: float, key_mask=None, window: int | None = None,
            bootstrapper=None, iters: int | None = None) -> Ciphertext:
    """Row softmax (NEXUS §3.1.3, Alg. 1) of rows with entries in [-B, B], B = bound <= 2^(r-1).

    Args: key_mask a 0/1 slot vector of the real keys (padded keys must hold 0 on input, as
    do the slots behind every row when window >= 2n); iters the Goldschmidt factors (default: relative error
    2^-12 for sums in [1/2, n]). Returns e * 1/S at a level that depends on the bootstraps."""
    if 2 * bound > 2.0**EXP_R:
        raise ValueError(f"softmax inputs in [-{bound}, {bound}]: a - max reaches -{2 * bound} < -2^{EXP_R}; scale the scores")
    slots = ev.params.slots
    window, dup = window_layout(slots, n, window)
    mask = row_mask(slots, n, window) if key_mask is None and dup else key_mask
    xa = ct if mask is None else ev.add_const(ct, -bound * (row_mask(slots, n, window) - np.asarray(mask)))  # padded -> -B
    m = quick_max(ev, xa, n, bound=bound, duplicate=dup, bootstrapper=bootstrapper)  # log2(n) rounds
    lo, hi = 0.5, float(n)  # S >= exp(max - max) = 1, up to the approximations
    k = goldschmidt_iterations(lo, hi) if iters is None else iters
    if ct.level > m.level:
        d = ev.sub(align(ev, ct, m.level, m.scale), m)
    else:
        d = ev.sub(ct, align(ev, m, ct.level, ct.scale))
    d = ensure_levels(d, EXP_LEVELS + 1, bootstrapper, "softmax: exp after QuickMax")  # split point 1
    e = exp(ev, d, lo=-2 * bound, mask=mask)  # level -7
    s = quick_sum(ev, e, n, duplicate=dup)  # 0 levels
    s = ensure_levels(s, inverse_levels(k) + 1, bootstrapper, "softmax: inverse of the row sum")  # split point 2
    inv = inverse(ev, s, lo, hi, k)  # level -(k+1)
    lvl = min(e.level, inv.level)
    return ev.rescale(ev.multiply(ev.drop_level(e, lvl), ev.drop_level(inv, lvl)))  # level -1


__all__ = ["exp", "exp_plain", "inverse", "inverse_plain", "goldschmidt_iterations", "softmax", "softmax_plain",
           "row_mask", "EXP_R", "EXP_LEVELS"]
