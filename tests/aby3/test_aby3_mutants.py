"""Tests written for the mutants of `python tests/mutation.py sample aby3` that survived (docs/testing.md).

Every expected value is computed independently of refimpl (math.erf, float64).
"""

import math

import numpy as np

from refimpl.aby3 import nonlinear as NL


def test_gelu_even_polynomial_is_gelu_minus_half_x():
    """ABY3-GELU-2: the coefficients of gelu_erf's even part, computed at import, evaluated in
    w = (x/4)^2, give E(x) = GeLU(x) - x/2 = x erf(x/sqrt 2)/2 on [-4, 4] within the documented fit
    error (measured 4.09e-5). gelu_erf's own test compares the whole protocol with a tolerance of
    5e-4, far above this; a fit in the wrong variable is off by 0.43."""
    assert NL.GELU_T == 4.0 and len(NL.GELU_EVEN) == 9  # degree 8 in w
    x = np.linspace(-4.0, 4.0, 4001)
    want = np.array([v * math.erf(v / math.sqrt(2.0)) / 2 for v in x])
    got = np.polynomial.polynomial.polyval((x / 4.0) ** 2, NL.GELU_EVEN)
    assert np.max(np.abs(got - want)) < 4.5e-5
