"""The official code's simplified variants, for like-for-like benchmarks only (zju-abclab/NEXUS HEAD e15058c).

They stay in the library (not in refimpl.experiments) because the library's tests check them
against their float64 models (tests/nexus/test_nexus_official.py, spec NEXUS-OFF-*) and the
benchmark rows of refimpl.experiments.nexus_blocks run them.

They differ from the paper's blocks (refimpl.nexus.gelu/softmax/layernorm), as the official
code does:
  GELU       3 pieces: 0 (x < -3.5), A(x) (degree 12) on [-3.5, 3.5], x (x > 3.5); segment
             bits Sgn((x -+ 3.5)/8.5); valid for x in [-5, 5]          (src/gelu.cpp)
  Softmax    no QuickMax (inputs <= 0), exp = (1 + x/128)^128 (r = 7), row sum x 0.01,
             Goldschmidt inverse with 4 squarings, x 0.01 again      (src/softmax.cpp)
  LayerNorm  x / sqrt(mean x^2): no mean, no gamma, beta; 1/sqrt by the linear guess
             -1.29054537e-4 v + 0.129054537, 4 Newton + 2 Goldschmidt steps (src/layer_norm.cpp)
The Sgn used here is refimpl's exact composite (the official factor-0.5 quirk is not copied).

The constants are the official code's, read from refimpl/constants.toml [nexus.official].

Reference: official code src/gelu.cpp, src/softmax.cpp, src/layer_norm.cpp,
CKKSEvaluator::invert_sqrt, CKKSEvaluator::inverse.
"""

from __future__ import annotations

import numpy as np

from ..ckks import Ciphertext
from ..constants import C
from ..ckks.polyeval import evaluate_power
from .folding import quick_sum, quick_sum_plain
from .layernorm import goldschmidt_rsqrt
from .levels import align, multiply_lower, times_at, with_scale
from .sign import sgn, sgn_levels, sgn_plain
from .softmax import exp, exp_plain, inverse, inverse_plain

_OFF = C["nexus"]["official"]
# src/gelu.cpp: A(x), coefficients of x^0 .. x^12 (odd ones 0 but x^1)
GELU3_A = np.array(_OFF["gelu3_A"])
GELU3_T, GELU3_SCALE = _OFF["gelu3_breakpoint"], _OFF["gelu3_sgn_prescale"]  # Sgn((x -+ 3.5)/8.5)
SOFTMAX_R, SOFTMAX_SUM_SCALE, SOFTMAX_INV_SQUARINGS = (
    _OFF["softmax_exp_r"], _OFF["softmax_sum_scale"], _OFF["softmax_inverse_squarings"])
INVSQRT_GUESS = tuple(_OFF["invsqrt_guess"])  # y0 = a v + b (zero at v = 1000)
INVSQRT_NEWTON, INVSQRT_GOLDSCHMIDT = _OFF["invsqrt_newton"], _OFF["invsqrt_goldschmidt"]


def gelu3_plain(x: np.ndarray) -> np.ndarray:
    """Float64 model of `gelu3` (official 3-piece GELU with the exact Sgn)."""
    lo = sgn_plain((x + GELU3_T) / GELU3_SCALE, 0.5)
    hi = sgn_plain((x - GELU3_T) / GELU3_SCALE, 0.5)
    return np.polynomial.polynomial.polyval(x, GELU3_A) * (lo - hi) + x * (hi + 0.5)


def gelu3(ev, ct: Ciphertext) -> Ciphertext:
    """A(x) (b_lo - b_hi) + x (b_hi + 1/2), b = Sgn((x -+ 3.5)/8.5)/2, x in [-5, 5] (official src/gelu.cpp).

    Level l -> l - 18."""
    s = ct.scale
    lvl = ct.level - sgn_levels(GELU3_SCALE, GELU3_T)
    q_lvl = float(ev.params.q[lvl])
    b_lo = sgn(ev, ct, bound=GELU3_SCALE, center=-GELU3_T, factor=0.5, target_scale=q_lvl)  # level l-17
    b_hi = sgn(ev, ct, bound=GELU3_SCALE, center=GELU3_T, factor=0.5, target_scale=q_lvl)
    a, _ = evaluate_power(ev, ct, GELU3_A, -5.0, 5.0)  # level l-5
    t1 = ev.multiply(align(ev, a, lvl, s), ev.sub(b_lo, b_hi))
    t2 = ev.multiply(align(ev, ct, lvl, s), ev.add_const(b_hi, 0.5))
    return with_scale(ev.rescale(ev.add(t1, t2)), s)  # level l-18


def softmax_official_plain(x: np.ndarray, n: int) -> np.ndarray:
    """Float64 model of `softmax_official` (rows of n with zeros behind, windows of 2n)."""
    e = exp_plain(x, SOFTMAX_R) * (np.arange(x.size) % (2 * n) < n)
    s = quick_sum_plain(e, n, duplicate=True) * SOFTMAX_SUM_SCALE
    return e * inverse_plain(s, 0.0, 2.0, SOFTMAX_INV_SQUARINGS + 1) * SOFTMAX_SUM_SCALE


def softmax_official(ev, ct: Ciphertext, n: int) -> Ciphertext:
    """exp(x) / sum with inputs <= 0, no max (official src/softmax.cpp): exp r = 7, sum x 0.01, inverse, x 0.01.

    Rows of n in windows of 2n (zeros behind). The row mask is folded into exp's constant."""
    mask = (np.arange(ev.params.slots) % (2 * n) < n).astype(np.float64)
    e = exp(ev, ct, lo=-(2.0**SOFTMAX_R), mask=mask, r=SOFTMAX_R)  # level -8
    s = quick_sum(ev, e, n, duplicate=True)
    s = ev.rescale(ev.mul_const(s, SOFTMAX_SUM_SCALE))  # level -1
    inv = inverse(ev, s, 0.0, 2.0, SOFTMAX_INV_SQUARINGS + 1)  # 1/z on (0, 2): c = 1, level -(k+1)
    inv = ev.rescale(ev.mul_const(inv, SOFTMAX_SUM_SCALE))  # level -1
    lvl = min(e.level, inv.level)
    return ev.rescale(ev.multiply(ev.drop_level(e, lvl), ev.drop_level(inv, lvl)))


def invsqrt_official_plain(v: np.ndarray) -> np.ndarray:
    """Float64 model of the official 1/sqrt (CKKSEvaluator::invert_sqrt)."""
    a, b = INVSQRT_GUESS
    y = a * v + b
    for _ in range(INVSQRT_NEWTON):
        y = 1.5 * y - 0.5 * v * y * y * y
    x, h = v * y, 0.5 * y
    for _ in range(INVSQRT_GOLDSCHMIDT):
        r = 0.5 - x * h
        x, h = x + x * r, h + h * r
    return 2 * h


def layernorm_official_plain(x: np.ndarray, F: int, n: int) -> np.ndarray:
    """Float64 model of `layernorm_official`: x / sqrt(mean x^2) per row (windows of 2n)."""
    v = quick_sum_plain(x * x, n, duplicate=True) / F
    return x * invsqrt_official_plain(v)


def layernorm_official(ev, ct: Ciphertext, F: int, n: int) -> Ciphertext:
    """x / sqrt(sum x^2 / F) per row (official src/layer_norm.cpp: no mean, gamma, beta).

    The official linear guess and step counts, expressed with refimpl's rsqrt machinery."""
    v = quick_sum(ev, ev.rescale(ev.square(ct)), n, duplicate=True)  # F mean(x^2), level -1
    a, b = INVSQRT_GUESS
    s = v.scale
    y = ev.add_const(times_at(ev, v, a / F, v.level - 1, s), b)  # y0, level -1
    neg_half_u = times_at(ev, v, -0.5 / F, v.level - 1, s)
    for _ in range(INVSQRT_NEWTON):
        t = multiply_lower(ev, y, neg_half_u)
        cubic = multiply_lower(ev, t, ev.rescale(ev.square(y)))
        y = ev.add(cubic, times_at(ev, y, 1.5, cubic.level, cubic.scale))
    u = times_at(ev, v, 1.0 / F, v.level - 1, s)
    return multiply_lower(ev, ct, goldschmidt_rsqrt(ev, y, u, INVSQRT_GOLDSCHMIDT))
