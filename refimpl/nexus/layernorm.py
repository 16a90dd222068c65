"""LayerNorm over rows of slots (NEXUS §3.2): mean and variance by QuickSum, 1/sqrt by Newton + Goldschmidt.

    y = gamma (x - mu) / sqrt(var) + beta,   mu = sum x / F,   var = sum (x - mu)^2 / F

Rows: F features (F <= n, n a power of two) at the start of windows of w slots, zeros
elsewhere; folding is cyclic when one row fills the slots (w = n = N/2) or after duplication
(w >= 2n). LayerNorm is scale invariant, so the input is pre-scaled by alpha for free (alpha
is folded into the mask product): var(alpha x) = alpha^2 var(x) must lie in [lo, hi].

1/sqrt(v) on [lo, hi]:
  y_0 = b - a v, the line with equal relative guess c = y_0 sqrt(v) at lo and hi and
      max c = 1.5 (Newton maps c to c (3 - c^2)/2: c near sqrt 3 falls back near 0);
  Newton:      y <- 1.5 y - 0.5 v y^3          (2 levels: v y and y^2 in parallel)
  Goldschmidt: x = v y, h = y/2; r = 1/2 - x h; x <- x + x r; h <- h + h r   (2 levels each)
  1/sqrt(v) = 2h.
The valid range is where the float64 model reaches relative error 2^-10 with the given
iteration counts (`valid`, checked when the caller passes [lo, hi]); defaults: 4 Newton and 2
Goldschmidt steps (the official code's counts), valid for a range ratio hi/lo up to 256
(relative error 9.5e-4 on [1, 256], 3.4e-8 on [1, 64], 1.2e-3 on the official [3.45, 922]).

Levels: mask 1, square 1, guess 1 (1/F folded in), Newton 2 per step, Goldschmidt 1 + 2 per
step, product 1 (gamma is applied to x - mu early, in parallel): 5 + 2 newton + 2 goldschmidt
= 17 with the defaults (the official code: 18, without mean, gamma or beta).

Reference: NEXUS §3.2 (Zhang et al., NDSS 2025); official code src/layer_norm.cpp and
CKKSEvaluator::invert_sqrt; Goldschmidt's iteration for 1/sqrt as in Panda, "Polynomial
approximation of inverse sqrt function for FHE", 2022.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..ckks import Ciphertext
from .folding import quick_sum, quick_sum_plain
from .levels import align, multiply_lower, times_at
from .softmax import row_mask

NEWTON, GOLDSCHMIDT = 4, 2  # the official code's counts (layer_norm.cpp)
REL_ERR = 2.0**-10  # the relative error that defines the valid variance range
GUESS_PEAK = 1.5  # max of y_0 sqrt(v) on [lo, hi]: best of 1.0 .. 1.65 for ratios 16 .. 256 (measured)


def initial_guess(lo: float, hi: float) -> tuple[float, float]:
    """(a, b) of y_0 = b - a v: equal relative guess at lo and hi, peak GUESS_PEAK."""
    kappa = (np.sqrt(hi) - np.sqrt(lo)) / (hi**1.5 - lo**1.5) if hi > lo else 0.0
    v = np.geomspace(lo, hi, 4097)
    peak = np.max(np.sqrt(v) * (1 - kappa * v))
    b = GUESS_PEAK / peak
    return b * kappa, b


def rsqrt_plain(v: np.ndarray, lo: float, hi: float, newton: int = NEWTON, goldschmidt: int = GOLDSCHMIDT) -> np.ndarray:
    """The float64 model of `rsqrt`."""
    a, b = initial_guess(lo, hi)
    y = b - a * v
    for _ in range(newton):
        y = 1.5 * y - 0.5 * (v * y) * (y * y)
    x, h = v * y, 0.5 * y
    for _ in range(goldschmidt):
        r = 0.5 - x * h
        x, h = x + x * r, h + h * r
    return 2 * h


@lru_cache(maxsize=256)
def valid(lo: float, hi: float, newton: int = NEWTON, goldschmidt: int = GOLDSCHMIDT) -> float:
    """Max relative error of the model on [lo, hi] (log grid)."""
    v = np.geomspace(lo, hi, 20001)
    return float(np.max(np.abs(rsqrt_plain(v, lo, hi, newton, goldschmidt) * np.sqrt(v) - 1)))


def rsqrt_levels(newton: int = NEWTON, goldschmidt: int = GOLDSCHMIDT) -> int:
    """Levels of `rsqrt` from v: 1 (guess) + 2 newton + 1 + 2 goldschmidt."""
    return 1 + 2 * newton + (1 + 2 * goldschmidt if goldschmidt else 0)


def layernorm_levels(newton: int = NEWTON, goldschmidt: int = GOLDSCHMIDT) -> int:
    """Levels of `layernorm`: mask 1, square 1, rsqrt, product 1."""
    return 3 + rsqrt_levels(newton, goldschmidt)


def rsqrt(ev, v: Ciphertext, lo: float, hi: float, newton: int = NEWTON, goldschmidt: int = GOLDSCHMIDT,
          v_factor: float = 1.0) -> Ciphertext:
    """1/sqrt(u), u = v_factor v in [lo, hi], by a linear guess, Newton and Goldschmidt steps (NEXUS §3.2).

    v_factor is folded into the constant products (LayerNorm passes the row sum and 1/F).
    Raises if the model's relative error on [lo, hi] exceeds 2^-10 (prescale the input).
    Level l -> l - rsqrt_levels(newton, goldschmidt)."""
    err = valid(float(lo), float(hi), newton, goldschmidt)
    if err > REL_ERR:
        raise ValueError(
            f"1/sqrt on [{lo}, {hi}] with {newton} Newton + {goldschmidt} Goldschmidt steps has relative "
            f"error {err:.2e} > 2^-10: narrow the variance range (pre-scale x) or add steps"
        )
    a, b = initial_guess(lo, hi)
    s = v.scale
    y = ev.add_const(times_at(ev, v, -a * v_factor, v.level - 1, s), b)  # y_0 = b - a u, level l-1
    neg_half_u = times_at(ev, v, -0.5 * v_factor, v.level - 1, s)  # -u/2, level l-1
    for _ in range(newton):  # y <- 1.5 y + (-u y / 2) y^2: 2 levels
        t = multiply_lower(ev, y, neg_half_u)  # -u y / 2, level -1
        cubic = multiply_lower(ev, t, ev.rescale(ev.square(y)))  # -u y^3 / 2, level -2
        y = ev.add(cubic, times_at(ev, y, 1.5, cubic.level, cubic.scale))
    if goldschmidt == 0:
        return y
    u = times_at(ev, v, v_factor, v.level - 1, s) if v_factor != 1.0 else v
    return goldschmidt_rsqrt(ev, y, u, goldschmidt)


def goldschmidt_rsqrt(ev, y: Ciphertext, u: Ciphertext, steps: int = GOLDSCHMIDT) -> Ciphertext:
    """Refine y ~ 1/sqrt(u): x = u y, h = y/2; r = 1/2 - x h; x += x r; h += h r (`steps`
    times); returns 2h (NEXUS §3.2, the official invert_sqrt). Level: 1 + 2 steps. The last step's x is never
    read, so it is not computed (ours: one product fewer than the official code, the same h)."""
    x = multiply_lower(ev, y, u)  # x = u y, level -1
    h = times_at(ev, y, 0.5, x.level, x.scale)  # h = y / 2, same level and scale as x
    for k in range(steps):
        r = ev.add_const(ev.negate(multiply_lower(ev, x, h)), 0.5)  # r = 1/2 - x h, level -1
        hr = multiply_lower(ev, h, r)  # level -1
        if k + 1 < steps:
            xr = multiply_lower(ev, x, r)
            x = ev.add(align(ev, x, xr.level, xr.scale), xr)
        h = ev.add(align(ev, h, hr.level, hr.scale), hr)
    return ev.mul_int(h, 2)  # 2h, no level


def layernorm_plain(x: np.ndarray, F: int, n: int, gamma, beta, window: int | None = None, alpha: float = 1.0,
                    lo: float = 1.0, hi: float = 64.0, newton: int = NEWTON, goldschmidt: int = GOLDSCHMIDT) -> np.ndarray:
    """The float64 model of `layernorm` on a slot vector."""
    slots = x.size
    window = n if window is None else window
    dup = window != n
    mask = row_mask(slots, F, window)
    s = quick_sum_plain(x, n, duplicate=dup)
    xc = (F * x - s) * (mask * alpha / F)
    v = quick_sum_plain(xc * xc, n, duplicate=dup) / F
    return xc * np.asarray(gamma) * rsqrt_plain(v, lo, hi, newton, goldschmidt) + np.asarray(beta)


def layernorm(ev, ct: Ciphertext, F: int, n: int, gamma, beta, window: int | None = None, alpha: float = 1.0,
              lo: float = 1.0, hi: float = 64.0, newton: int = NEWTON, goldschmidt: int = GOLDSCHMIDT) -> Ciphertext:
    """gamma (x - mu) / sqrt(var) + beta per row of F features (NEXUS §3.2).

    Args: rows of F <= n features (n a power of two) in windows of `window` slots (= n = N/2
    for one row filling the slots, else >= 2n with zeros behind); gamma, beta slot vectors (0
    outside the rows); alpha the free pre-scaling, chosen so that var(alpha x) is in [lo, hi]
    (checked against the model's valid range). Level l -> l - layernorm_levels(newton, goldschmidt)."""
    window = n if window is None else window
    dup = window != n
    slots = ev.params.slots
    if dup and window < 2 * n:
        raise ValueError(f"a window of {window} slots cannot hold a row of {n} and its duplicate")
    if not dup and n != slots:
        raise ValueError(f"without duplication a row must fill all {slots} slots (n = {n}): use a window >= 2n")
    mask = row_mask(slots, F, window)
    s = quick_sum(ev, ct, n, duplicate=dup)  # F mu in the row's slots, 0 levels
    centred = ev.sub(ev.mul_int(ct, F), s)  # F (x - mu), exact integer product
    xc = ev.rescale(ev.mul_const(centred, mask * (alpha / F)))  # alpha (x - mu) on the rows, 0 elsewhere; level l-1
    v = quick_sum(ev, ev.rescale(ev.square(xc)), n, duplicate=dup)  # F var, level l-2
    y = rsqrt(ev, v, lo, hi, newton, goldschmidt, v_factor=1.0 / F)  # 1/sqrt(var)
    xg = ev.rescale(ev.mul_const(xc, np.asarray(gamma, dtype=np.float64)))  # gamma alpha (x - mu), level l-2
    out = multiply_lower(ev, xg, y)  # level -1
    return ev.add_const(out, np.asarray(beta, dtype=np.float64))
