"""The homomorphic sign function Sgn(x) = f4(f4(g4(g4(x)))) on [-1, 1] (NEXUS §2.4, d_f = d_g = 2).

    f4(x) = (315x - 420x^3 + 378x^5 - 180x^7 + 35x^9) / 2^7
    g4(x) = (5850x - 34974x^3 + 97015x^5 - 113492x^7 + 46623x^9) / 2^10

g4 (Cheon, Kim, Kim, Lee, Lee, ASIACRYPT 2020) pushes small |x| away from 0 quickly; f4 then
flattens the result onto +-1. Each degree-9 factor costs 4 levels (ceil(log2 10)), so Sgn
consumes 16 levels. Resolution (measured in the tests): |Sgn(x) - sign(x)| <= 2^-16 for
|x| >= 0.0174 (NEXUS's alpha: about 2^-5.85); useless below |x| ~ 2^-7.

Normalisation (x - c) / B (the paper's x := a / max|a|; GELU's (x - t)/16) is the affine map
of the first g4 evaluation: one more level, 17 in all (the official code counts the same).
It cannot be had for free by recording a B times larger scale: the powers of the first
polynomial would then drift from the primes (scale s^2 / q per squaring) until the
constants' own scale underflows; spec NEXUS-SGN-DEPTH records this.

Unlike the official code (src/ckks_evaluator.cpp, sgn_eval), which multiplies both the last
g4 and the last f4 by `factor` and so feeds the f-chain +-1/2 (about 8 bits), an output factor
here scales the last f4 only: Sgn(x) factor exactly.

Reference: NEXUS §2.4 (Zhang et al., NDSS 2025); Cheon et al., "Efficient homomorphic
comparison methods with optimal complexity", ASIACRYPT 2020 (f_n, g_n).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import sympy

from ..ckks import Ciphertext
from ..ckks.polyeval import evaluate_power
from ..constants import C

SGN = C["nexus"]["sgn"]
DEPTH = int(SGN["depth"])  # 16 levels
MIN_ABS_INPUT = float(SGN["min_abs_input"])  # 0.0174: |x| from which the error is <= 2^-16
ERROR_BOUND = float(SGN["error_bound"])  # 2^-16


@lru_cache(maxsize=None)
def exact_coefficients(name: str) -> tuple[sympy.Rational, ...]:
    """Power-basis coefficients x^0 .. x^9 of f4 or g4 as exact rationals (from refimpl/constants.toml)."""
    num, den = SGN[f"{name}_num"], SGN[f"{name}_den"]
    coeffs = [sympy.Integer(0)] * 10
    for k, c in enumerate(num):
        coeffs[2 * k + 1] = sympy.Rational(c, den)
    return tuple(coeffs)


def coefficients(name: str, factor: float = 1.0) -> np.ndarray:
    """float64 coefficients of factor * f4 or g4 (exact in binary: denominators 2^7, 2^10)."""
    return np.array([float(c) for c in exact_coefficients(name)]) * factor


def _odd9(x: np.ndarray, c: np.ndarray) -> np.ndarray:
    """sum_k c_k x^k for an odd degree-9 polynomial (x u(x^2), Horner in x^2)."""
    x2 = x * x
    return x * ((((c[9] * x2 + c[7]) * x2 + c[5]) * x2 + c[3]) * x2 + c[1])


def sgn_plain(x: np.ndarray, factor: float = 1.0) -> np.ndarray:
    """The float64 model of `sgn`: factor f4(f4(g4(g4(x)))) (NEXUS §2.4)."""
    f, g = coefficients("f4"), coefficients("g4")
    return _odd9(_odd9(_odd9(_odd9(x, g), g), f), coefficients("f4", factor))


def sgn_levels(bound: float = 1.0, center: float = 0.0) -> int:
    """Levels `sgn` consumes: 16, plus 1 for the normalisation unless (bound, center) = (1, 0)."""
    return DEPTH + (0 if (bound, center) == (1.0, 0.0) else 1)


def sgn(ev, ct: Ciphertext, bound: float = 1.0, factor: float = 1.0, center: float = 0.0,
        target_scale: float | None = None, lazy: bool = True) -> Ciphertext:
    """factor Sgn((x - center) / bound) = factor f4(f4(g4(g4((x - c) / B)))) in every slot (NEXUS §2.4).

    Args: ct at level l >= sgn_levels(bound, center), |x - center| <= bound (the caller's
    guarantee: the normalisation of the paper); factor multiplies the last f4 only; lazy: each degree-9
    step with lazy relinearization (ours, refimpl.ckks.polyeval: 4 key switches instead of 5; False: the
    previous path). Returns level l - 16 (l - 17 when normalising) at `target_scale` (default: ct's scale)."""
    if not bound > 0:
        raise ValueError(f"Sgn needs a positive input bound, got {bound}")
    out_scale = ct.scale if target_scale is None else float(target_scale)
    g = coefficients("g4")
    if (bound, center) == (1.0, 0.0):
        y, _ = evaluate_power(ev, ct, g, lazy=lazy)  # level l -> l-4
    else:  # g4((x - c)/B) as a polynomial in x on [c - B, c + B]
        y, _ = evaluate_power(ev, ct, first_coefficients(bound, center), center - bound, center + bound,
                              lazy=lazy)  # l-5
    return sgn_rest(ev, y, factor, out_scale, lazy)


def first_coefficients(bound: float, center: float) -> np.ndarray:
    """Power-basis coefficients in x of Sgn's first step g4((x - center) / bound) (NEXUS §2.4's normalisation
    folded into g4): for callers that evaluate it beside other polynomials of the same x
    (`refimpl.ckks.polyeval.evaluate_power_many`, as NEXUS's GELU does)."""
    g = coefficients("g4")
    return np.polynomial.Polynomial(g)(np.polynomial.Polynomial([-center / bound, 1.0 / bound])).coef


def sgn_rest(ev, y: Ciphertext, factor: float = 1.0, target_scale: float | None = None,
             lazy: bool = True) -> Ciphertext:
    """factor f4(f4(g4(y))) with y = g4(normalised x) (Sgn after its first step): level -12, at `target_scale`
    (default: y's scale); lazy as in `sgn`."""
    out_scale = y.scale if target_scale is None else float(target_scale)
    g, f = coefficients("g4"), coefficients("f4")
    y, _ = evaluate_power(ev, y, g, lazy=lazy)  # level -4
    y, _ = evaluate_power(ev, y, f, lazy=lazy)  # level -8
    y, _ = evaluate_power(ev, y, coefficients("f4", factor), target_scale=out_scale, lazy=lazy)  # level -12
    return y
