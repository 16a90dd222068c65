"""1/sqrt(u) with its Newton state carried as (y, t = -u y^2 / 2) (ours), for LayerNorm across a refresh.

NEXUS §3.2 computes 1/sqrt(u) by Newton steps y <- 1.5 y - 0.5 u y^3 from a linear guess, then
Goldschmidt steps x = u y, h = y/2; r = 1/2 - x h; x <- x (1 + r); h <- h (1 + r); 1/sqrt(u) = 2h
(refimpl.nexus.layernorm). Where a refresh must sit between the steps (a wide variance range needs up
to 12 Newton steps, more levels than one bootstrap returns), the previous path refreshed y and u
(or -u/2). A bootstrap leaves an absolute error of about 2^-19 of a value's bound, and u's bound is
the widest variance of the calibration: at BERT-base's second LayerNorm (range ratio ~8,000) u sits
up to 13 bits below its bound, so its refreshed value is off by up to a few percent, and no later
step can correct u: 1/sqrt came out 0.5-3 % off (0.07 on the layer's output at N = 2^16).

The same iteration written on t = -u y^2 / 2 (so 1.5 - 0.5 u y^2 = 3/2 + t):

    s = 3/2 + t;   y <- y s;   t <- t s^2

is Newton's step exactly, and also Goldschmidt's (h = y/2, x h = -t, 1 + r = 3/2 + t): one update for
both. t stays in [-1/2, 0] once the guess has had a step (y sqrt(u) <= 1 after any Newton step), so its
refresh keeps its bits whatever the variance; y's refresh costs it 2^-19 of its bound relative to its
value, at most sqrt of the range ratio. The state (y, t) defines u = -2 t / y^2 itself, so the steps
after the refresh converge to 1/sqrt of that u: the result's relative error is about y's relative
error plus t's over 2 |t| (y's error was corrected by the later steps before, u's was not).

Levels: the guess y_0 = b - a u (1), t_0 = ((-u/2) y_0) y_0 (3 in all);
per step t loses 2 levels (s^2, t s^2), y one (y s) and stays one level above t; the last step computes
y only (1 level). From v: 3 + 2 k levels for k steps, 2 + 2 (newton + goldschmidt) in all, as the paper's form
(Goldschmidt's x = u y is not needed, t_0 takes its level). Key switches: 3 per step (1 on the last),
2 for t_0: the same as the paper's form.
"""

from __future__ import annotations

import math

import numpy as np

from ..ckks import Ciphertext
from .layernorm import initial_guess
from .levels import multiply_lower, times_at


def start(ev, v: Ciphertext, lo: float, hi: float, v_factor: float = 1.0) -> tuple[Ciphertext, Ciphertext]:
    """(y_0, t_0) for u = v_factor v in [lo, hi]: y_0 = b - a u at level l - 1 (refimpl.nexus.layernorm's guess),
    t_0 = ((-u/2) y_0) y_0 at level l - 3 (2 key switches). Products keep t_0's relative precision where it is
    small (y_0 -> 0 at the top of the range, u -> lo at the bottom); the cubic in v in two levels did not
    (measured: 1e-6 absolute on t_0 ~ 1e-3, as good as a wrong u)."""
    a, b = initial_guess(lo, hi)
    f, s, lvl = v_factor, v.scale, v.level
    y = ev.add_const(times_at(ev, v, -a * f, lvl - 1, s), b)  # level l-1
    w = times_at(ev, v, -0.5 * f, lvl - 1, s)  # -u/2, level l-1
    return y, multiply_lower(ev, multiply_lower(ev, w, y), y)  # level l-3


def steps(ev, y: Ciphertext, t: Ciphertext, k: int, last: bool = False) -> tuple[Ciphertext, Ciphertext | None]:
    """k steps s = 3/2 + t; y <- y s; t <- t s^2 (t: 2 levels each, y one level above t). last: the k-th step
    updates y only (t returned None; 1 level)."""
    for j in range(k):
        s = ev.add_const(t, 1.5)
        y = multiply_lower(ev, y, s)
        if last and j == k - 1:
            return y, None
        t = multiply_lower(ev, t, ev.rescale(ev.square(s)))
    return y, t


def steps_plain(y: np.ndarray, t: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The float64 model of `steps`."""
    for _ in range(k):
        s = 1.5 + t
        y, t = y * s, t * s * s
    return y, t


def rsqrt_plain(u: np.ndarray, lo: float, hi: float, newton: int, goldschmidt: int) -> np.ndarray:
    """The float64 model of the carried form: newton + goldschmidt steps from (y_0, t_0); equal to
    refimpl.nexus.layernorm.rsqrt_plain up to float rounding (the same iteration)."""
    a, b = initial_guess(lo, hi)
    y = b - a * u
    y, _ = steps_plain(y, -0.5 * u * y * y, newton + goldschmidt)
    return y


def split(newton: int, per_piece: int) -> tuple[int, int]:
    """Newton steps before and after the refresh point: as many before as a piece of 3 + 2 first <= 1 + 2 per_piece
    levels holds (the paper's form's largest piece) (y sqrt(u) nearer 1 at the refresh: y's refresh error is relative to y), at least one after."""
    first = max(1, min(newton - 1, per_piece - 1))
    return first, newton - first


def bounds(lo: float) -> tuple[float, float]:
    """Refresh bounds of (y, t) after at least one step: y sqrt(u) <= 1 (Newton's map c (3 - c^2) / 2 is at most 1),
    so y <= 1 / sqrt(lo) (5 % margin); t = -(y sqrt(u))^2 / 2 in [-1/2, 0]."""
    return max(1.0, 1.05 / math.sqrt(lo)), 0.5


def levels(first: int, rest: int, goldschmidt: int) -> tuple[int, int, int]:
    """Levels of the three pieces: guess, t_0 and `first` steps (3 + 2 first, from v); `rest` steps (2 rest, from t's
    level); `goldschmidt` steps, the last updating y only (2 goldschmidt - 1)."""
    return 3 + 2 * first, 2 * rest, 2 * goldschmidt - 1
