"""The approximations' constants pinned to the papers, and each approximation against the exact function
(NEXUS-CONST-PIN, NEXUS-APPROX-EXACT).

The float64 models (`*_plain`) are what the encrypted blocks are tested against, and both read
refimpl/constants.toml: a wrong constant there passes every encrypted-vs-model test. Here the
papers' values are written out literally (not read from the constants file), and each model
is compared with the exact function (math.erf, numpy exp / sqrt / max) on the regions where
its error is documented to be small, with tolerances set a little (10-25 %) above the error
measured on this grid. The measured errors are in the comments.

Sources: NEXUS (Zhang et al., NDSS 2025) §2.4 Sgn with d_f = d_g = 2, §3.1.3 exp with r = 6,
§3.3 the 4-piece GELU (breakpoints -4, -1.95, 3; PUMA/Bumblebee's coefficients), §3.2
LayerNorm (the official code's 4 Newton + 2 Goldschmidt steps); Cheon, Kim, Kim, Lee, Lee,
ASIACRYPT 2020, f_n and g_4; freeDiv (Liu et al. 2024) the fitted f(n) = a n^b; MPCFormer
Quad; SPU's exp iterations.
"""

import math

import numpy as np
import pytest
import sympy

from refimpl.aby3 import attention as aby3_attention, nonlinear as aby3_nonlinear
from refimpl.nexus import gelu as G, layernorm as LN, sign as SG, softmax as SM
from refimpl.nexus.argmax import argmax_plain
from refimpl.nexus.folding import max_pair_error_bound, quick_max_plain

x_ = sympy.Symbol("x")

# ---- the papers' values, written out ------------------------------------------------------

F4 = [sympy.Rational(c, 2**7) for c in (315, -420, 378, -180, 35)]  # x, x^3, ..., x^9 (Cheon et al. f_4)
G4 = [sympy.Rational(c, 2**10) for c in (5850, -34974, 97015, -113492, 46623)]  # Cheon et al. g_4
GELU_BREAKPOINTS = (-4.0, -1.95, 3.0)
GELU_P = (-0.5054031199708174, -0.42226581151983866, -0.11807612951181953, -0.011034134030615728)
GELU_Q = (0.008526321541038084, 0.5, 0.3603292692789629, 0.0, -0.037688200365904236, 0.0, 0.0018067462606141187)
EXP_R = 6
FREEDIV_SOFTMAX = (0.9923937666772096, 0.333253864762922)  # f(n) = a n^b
FREEDIV_2QUAD = (84.07373758071103, 0.7174745255779887)
QUAD_C = 5.0
QUAD = (0.5, 0.25, 0.125)  # MPCFormer: 0.125 x^2 + 0.25 x + 0.5


def _odd(coeffs):
    return sum(c * x_ ** (2 * k + 1) for k, c in enumerate(coeffs))


def test_sgn_coefficients_and_composition_are_the_papers():
    """NEXUS-CONST-PIN: f4 = Cheon et al.'s f_4 (also from its definition sum_i 4^-i C(2i, i) x (1 - x^2)^i),
    g4 = their g_4; Sgn = f4 o f4 o g4 o g4 (d_f = d_g = 2), 16 levels (4 per degree-9 factor)."""
    f_def = sympy.expand(sum(sympy.Rational(math.comb(2 * i, i), 4**i) * x_ * (1 - x_**2) ** i for i in range(5)))
    assert sympy.expand(_odd(F4) - f_def) == 0
    for name, want in (("f4", F4), ("g4", G4)):
        got = SG.exact_coefficients(name)
        assert list(got[1::2]) == want and all(c == 0 for c in got[0::2])
    f, g = (lambda t: sympy.lambdify(x_, _odd(F4))(t)), (lambda t: sympy.lambdify(x_, _odd(G4))(t))
    x = np.linspace(-1, 1, 4001)
    assert np.max(np.abs(SG.sgn_plain(x) - f(f(g(g(x)))))) < 1e-12
    assert np.max(np.abs(SG.sgn_plain(x, 0.5) - 0.5 * f(f(g(g(x)))))) < 1e-12
    assert SG.DEPTH == 16 and SG.sgn_levels() == 16 and SG.sgn_levels(2.0) == 17
    assert SG.ERROR_BOUND == 2.0**-16 and SG.MIN_ABS_INPUT == 0.0174


def test_gelu_constants_are_the_papers():
    """NEXUS-CONST-PIN: breakpoints -4, -1.95, 3; P (degree 3) and Q (degree 6, no x^3 and x^5 terms);
    segment bits Sgn((x - t)/16); 18 levels; valid inputs [-13, 12]."""
    assert G.BREAKPOINTS == GELU_BREAKPOINTS
    assert tuple(G.P) == GELU_P and tuple(G.Q) == GELU_Q
    assert G.SGN_PRESCALE == 16.0 and G.LEVELS == 18 and G.VALID_RANGE == (-13.0, 12.0)
    assert aby3_nonlinear.GELU_BREAKS == GELU_BREAKPOINTS  # the ABY3 4-piece GeLU uses the same
    assert aby3_nonlinear.GELU_P == GELU_P and aby3_nonlinear.GELU_Q == GELU_Q


def test_exp_inverse_layernorm_counts_are_the_papers():
    """NEXUS-CONST-PIN: exp's r = 6 (7 levels); Goldschmidt factors k = the smallest with
    ((n - 1/2)/(n + 1/2))^(2^k) <= 2^-12; LayerNorm 4 Newton + 2 Goldschmidt steps, 17 levels."""
    assert SM.EXP_R == EXP_R and SM.EXP_LEVELS == EXP_R + 1
    for n in (2, 8, 64, 128):
        y, k = (n - 0.5) / (n + 0.5), 1
        while y ** (2**k) > 2.0**-12:
            k += 1
        assert SM.goldschmidt_iterations(0.5, n) == k
    assert [SM.goldschmidt_iterations(0.5, n) for n in (2, 8, 64, 128)] == [5, 7, 10, 11]
    assert (LN.NEWTON, LN.GOLDSCHMIDT) == (4, 2)
    assert LN.rsqrt_levels() == 1 + 2 * 4 + 1 + 2 * 2 and LN.layernorm_levels() == 17


def test_freediv_and_aby3_constants_are_the_papers():
    """NEXUS-CONST-PIN: freeDiv's fitted f(n) = a n^b for Softmax and 2Quad (c = 5), f(1) = 0.99 for
    Softmax; MPCFormer's Quad; SPU's exp with r = 8."""
    assert aby3_attention.FREEDIV["softmax-freediv"] == FREEDIV_SOFTMAX
    assert aby3_attention.FREEDIV["2quad-freediv"] == FREEDIV_2QUAD
    assert aby3_attention.QUAD_C == QUAD_C
    assert round(FREEDIV_SOFTMAX[0] * 1.0 ** FREEDIV_SOFTMAX[1], 2) == 0.99
    assert aby3_nonlinear.EXP_ITERS == 8
    from refimpl.constants import C  # the activation table itself: Quad has no module constant

    assert tuple(C["activations"]["quad"]) == QUAD


# ---- the models against the exact functions -----------------------------------------------

_erf = np.vectorize(math.erf)


def gelu_exact(x):
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def test_sgn_against_sign():
    """NEXUS-APPROX-EXACT: |Sgn(x) - sign(x)| <= 2^-16 for 0.0174 <= |x| <= 1 (measured 1.489e-5 = 0.976 2^-16);
    at |x| = 0.0087 (half the stated input bound) the error is already 0.031."""
    x = np.linspace(0.0174, 1.0, 200_001)
    err = max(np.max(np.abs(SG.sgn_plain(x) - 1)), np.max(np.abs(SG.sgn_plain(-x) + 1)))
    assert 1.45e-5 < err <= 2.0**-16
    assert 0.025 < abs(SG.sgn_plain(np.array([0.0087]))[0] - 1) < 0.04


# region of x -> (measured max |gelu_plain - GELU|, tolerance): the pieces away from the breakpoints
# (|x - t| >= 0.28, where Sgn is saturated) and the blending bands around them
GELU_REGIONS = {
    (-13.0, -4.28): (4.00e-5, 5e-5),  # 0: GELU's own tail
    (-3.72, -2.23): (6.84e-4, 8e-4),  # P
    (-1.67, 2.72): (8.53e-3, 9.5e-3),  # Q (its error is Q(0) = 0.0085 at x = 0)
    (3.28, 12.0): (1.70e-3, 2e-3),  # x
    (-4.28, -3.72): (4.44e-4, 5.5e-4),  # band at -4
    (-2.23, -1.67): (6.84e-3, 7.5e-3),  # band at -1.95
    (2.72, 3.28): (1.198e-2, 1.35e-2),  # band at 3
}


@pytest.mark.parametrize("region", sorted(GELU_REGIONS))
def test_gelu_model_against_exact_gelu(region):
    """NEXUS-APPROX-EXACT: the 4-piece GELU model within a tolerance near its measured error of the
    exact GELU on each piece and on each band around a breakpoint (together all of [-13, 12])."""
    lo, hi = region
    measured, tol = GELU_REGIONS[region]
    x = np.linspace(lo, hi, 20_001)
    err = np.max(np.abs(G.gelu_plain(x) - gelu_exact(x)))
    assert 0.9 * measured < err <= tol


def test_gelu_model_is_the_piecewise_function_away_from_the_breakpoints():
    """NEXUS-APPROX-EXACT: where every Sgn is saturated the model is the exact piecewise function
    0 | P | Q | x of the paper (Sgn's error 2^-16 times the piece's size; measured 1.1e-4)."""
    x = np.linspace(-13, 12, 50_001)
    far = np.all(np.abs(x[:, None] - np.array(GELU_BREAKPOINTS)) >= 16 * 0.0174, axis=1)
    P = np.polynomial.polynomial.polyval(x, GELU_P)
    Q = np.polynomial.polynomial.polyval(x, GELU_Q)
    piecewise = np.select([x < -4, x <= -1.95, x <= 3], [0.0 * x, P, Q], x)
    err = np.abs(G.gelu_plain(x) - piecewise)[far]
    assert np.max(err / np.maximum(np.abs(piecewise[far]), 1.0)) < 2.0**-16


def test_exp_model_against_exp():
    """NEXUS-APPROX-EXACT: (1 + x/64)^64 errs by at most 0.00425 (absolute, at x = -2) on (-64, 0]
    and by at most x^2/128 relative on [-1, 0] (measured 0.00786 at x = -1)."""
    x = np.linspace(-64, 0, 200_001)
    err = np.max(np.abs(SM.exp_plain(x) - np.exp(x)))
    assert 0.0042 < err <= 0.0045
    x = np.linspace(-1, 0, 10_001)
    rel = np.abs(SM.exp_plain(x) / np.exp(x) - 1)
    assert np.max(rel) <= 1 / 128 * 1.01 and np.max(rel) > 0.0078


@pytest.mark.parametrize("n", [2, 8, 128])
def test_inverse_model_against_reciprocal(n):
    """NEXUS-APPROX-EXACT: Goldschmidt's product on [1/2, n] has relative error ((n - 1/2)/(n + 1/2))^(2^k)
    (measured equal to it within 1e-9 relative)."""
    k = SM.goldschmidt_iterations(0.5, n)
    x = np.linspace(0.5, n, 100_001)
    rel = np.max(np.abs(SM.inverse_plain(x, 0.5, n, k) * x - 1))
    bound = ((n - 0.5) / (n + 0.5)) ** (2**k)
    assert 0.99 * bound < rel <= 1.01 * bound


# [lo, hi] -> (measured relative error of rsqrt_plain, tolerance)
RSQRT = {(1.0, 64.0): (3.36e-8, 4e-8), (1.0, 256.0): (9.49e-4, 1.1e-3), (3.45, 922.0): (1.20e-3, 1.35e-3)}


@pytest.mark.parametrize("rng_", sorted(RSQRT))
def test_rsqrt_model_against_rsqrt(rng_):
    """NEXUS-APPROX-EXACT: linear guess + 4 Newton + 2 Goldschmidt steps: relative error 3.4e-8 on [1, 64],
    9.5e-4 on [1, 256], 1.2e-3 on the official range [3.45, 922]."""
    lo, hi = rng_
    measured, tol = RSQRT[rng_]
    v = np.geomspace(lo, hi, 100_001)
    rel = np.max(np.abs(LN.rsqrt_plain(v, lo, hi) * np.sqrt(v) - 1))
    assert 0.9 * measured < rel <= tol


def test_quickmax_and_argmax_models_against_exact():
    """NEXUS-APPROX-EXACT: QuickMax of n in [-1/2, 1/2] within log2(n) max_pair bounds of the true maximum
    (per pair 6.86e-4, 4.1e-3 for six rounds; measured 1.25e-3 at n = 64); Argmax's selection vector is the exact one-hot within
    1.3e-7 when the top two differ by more than the Sgn resolution (measured 1.08e-7)."""
    assert 6.8e-4 < max_pair_error_bound(0.5) < 6.9e-4
    gen = np.random.default_rng(0)
    worst_max = worst_sel = 0.0
    for _ in range(100):
        x = gen.uniform(-0.5, 0.5, 64)
        worst_max = max(worst_max, abs(quick_max_plain(x, 64, 0.5)[0] - x.max()))
        y = gen.uniform(-0.5, 0.5, 16)
        top = np.sort(y)
        if top[-1] - top[-2] >= 1.1 * 0.0348 * 0.5:
            worst_sel = max(worst_sel, np.max(np.abs(argmax_plain(y, 16, 0.5) - (y == y.max()))))
    assert 1.1e-3 < worst_max <= 1.4e-3 < 6 * max_pair_error_bound(0.5)
    assert 0 < worst_sel < 1.3e-7


def test_softmax_and_layernorm_models_against_exact():
    """NEXUS-APPROX-EXACT: the Softmax model (QuickMax, exp r = 6, Goldschmidt) within 0.0125 of the exact
    softmax for rows in [-4, 4] (measured 0.0112 at n = 8, 0.0042 at n = 64); the LayerNorm model within
    1.25e-7 of the exact LayerNorm when the variance lies in [1, 64] (measured 1.04e-7)."""
    gen = np.random.default_rng(0)
    worst = {8: 0.0, 64: 0.0}
    for _ in range(100):
        for n in worst:
            x = gen.uniform(-4, 4, n)
            e = np.exp(x - x.max())
            worst[n] = max(worst[n], np.max(np.abs(SM.softmax_plain(x, n, 4.0) - e / e.sum())))
    assert 0.01 < worst[8] <= 0.0125 and 0.003 < worst[64] <= 0.005
    n, F, ln_worst = 64, 48, 0.0
    for _ in range(50):
        x = np.zeros(n)
        x[:F] = gen.normal(0, 1, F)
        x[:F] = (x[:F] - x[:F].mean()) / x[:F].std() * gen.uniform(1.05, 7.9) + gen.uniform(-3, 3)  # var in (1, 64)
        g, b = np.zeros(n), np.zeros(n)
        g[:F], b[:F] = gen.uniform(0.5, 1.5, F), gen.uniform(-1, 1, F)
        xf = x[:F]
        exact = (xf - xf.mean()) / xf.std() * g[:F] + b[:F]
        ln_worst = max(ln_worst, np.max(np.abs(LN.layernorm_plain(x, F, n, g, b)[:F] - exact)))
    assert 0 < ln_worst < 1.25e-7


def test_models_with_duplicated_rows_masks_and_prescale():
    """NEXUS-APPROX-EXACT: the layouts the blocks use beside one row per ciphertext: rows of n slots in
    windows of 2n (duplication), rows spread with a step, padded keys masked, LayerNorm's free prescale
    alpha and its variance range ends (var 1 and 64). Each model against the exact function, per row."""
    from refimpl.nexus.folding import quick_sum_plain

    gen = np.random.default_rng(3)
    n, w, rows = 8, 16, 4
    x = np.zeros(w * rows)
    for r in range(rows):
        x[r * w:r * w + n] = gen.uniform(-1, 1, n)
    s = quick_sum_plain(x, n, duplicate=True)
    for r in range(rows):
        assert np.allclose(s[r * w:r * w + n], x[r * w:r * w + n].sum(), atol=1e-12)
    y = np.zeros(32)
    y[0:16:2] = gen.uniform(-1, 1, 8)  # one row of 8 elements every 2 slots, filling 16 slots cyclically
    assert np.allclose(quick_sum_plain(np.tile(y[:16], 2), 8, step=2)[0:16:2], y[0:16:2].sum(), atol=1e-12)
    # Softmax with duplication and a key mask (the last two keys of each row padded)
    keys = np.zeros(w * rows)
    for r in range(rows):
        keys[r * w:r * w + n - 2] = 1.0
    xs = x * 4 * keys
    sm = SM.softmax_plain(xs, n, 4.0, key_mask=keys, window=w)
    for r in range(rows):
        row = xs[r * w:r * w + n - 2]
        e = np.exp(row - row.max())
        assert np.max(np.abs(sm[r * w:r * w + n - 2] - e / e.sum())) < 0.0125
        assert np.max(np.abs(sm[r * w + n - 2:r * w + n])) < 1e-9  # padded keys get nothing
    # LayerNorm, duplicated rows of F = 6 features, prescale alpha, variances at the range ends 1 and 64
    F, alpha = 6, 0.5
    for target_var in (1.0, 64.0):
        xl, g, b = np.zeros(w * rows), np.zeros(w * rows), np.zeros(w * rows)
        for r in range(rows):
            v = gen.normal(0, 1, F)
            xl[r * w:r * w + F] = ((v - v.mean()) / v.std() * np.sqrt(target_var) / alpha) + gen.uniform(-2, 2)
            g[r * w:r * w + F], b[r * w:r * w + F] = gen.uniform(0.5, 1.5, F), gen.uniform(-1, 1, F)
        out = LN.layernorm_plain(xl, F, n, g, b, window=w, alpha=alpha)
        for r in range(rows):
            xf = xl[r * w:r * w + F]
            exact = (xf - xf.mean()) / xf.std() * g[r * w:r * w + F] + b[r * w:r * w + F]
            assert np.max(np.abs(out[r * w:r * w + F] - exact)) < 1.25e-7
    assert LN.rsqrt_levels(4, 0) == 9 and LN.rsqrt_levels(3, 1) == 10 and LN.layernorm_levels(4, 1) == 3 + 12


def test_model_helpers_contracts():
    """NEXUS-APPROX-EXACT: the helpers behind the models keep their stated contracts: LayerNorm's linear
    guess has equal relative value at lo and hi and peak 1.5 (flat range: 1.5/sqrt(v)); Goldschmidt's
    count is 1 for a point or a tiny range and refuses lo <= 0; QuickMax's pair error scales with the
    bound; the row mask is a float 0/1 vector; the defaults are the stated ones (B = 1/2)."""
    for lo, hi in ((1.0, 64.0), (3.45, 922.0), (0.5, 8.0)):
        a, b = LN.initial_guess(lo, hi)
        rel = lambda v: (b - a * v) * np.sqrt(v)  # noqa: E731
        assert abs(rel(lo) / rel(hi) - 1) < 1e-9
        assert abs(np.max(rel(np.geomspace(lo, hi, 100_001))) - 1.5) < 1e-6
    assert LN.initial_guess(4.0, 4.0) == (0.0, 0.75)
    assert SM.goldschmidt_iterations(2.0, 2.0) == 1 and SM.goldschmidt_iterations(1.0, 1.001) == 1
    for lo in (0.0, -1.0):
        with pytest.raises(ValueError, match="0 < lo <= hi"):
            SM.goldschmidt_iterations(lo, 8.0)
    assert max_pair_error_bound() == max_pair_error_bound(0.5)
    assert abs(max_pair_error_bound(2.0) / max_pair_error_bound(0.5) - 4.0) < 1e-9
    m = SM.row_mask(16, 3, 8)
    assert m.dtype == np.float64 and m.tolist() == [1.0] * 3 + [0.0] * 5 + [1.0] * 3 + [0.0] * 5
    gen = np.random.default_rng(4)
    y = gen.uniform(-0.5, 0.5, 16)
    assert np.array_equal(argmax_plain(y, 16), argmax_plain(y, 16, 0.5))
    x = np.zeros(32)
    x[0:8], x[16:24] = gen.uniform(-4, 4, 8), gen.uniform(-4, 4, 8)
    sm = SM.softmax_plain(x, 8, 4.0, window=16)  # duplicated rows, no key mask: the row mask is used
    for r in (0, 16):
        e = np.exp(x[r:r + 8] - x[r:r + 8].max())
        assert np.max(np.abs(sm[r:r + 8] - e / e.sum())) < 0.0125


def test_fold_schedule_and_layout_checks():
    """NEXUS-APPROX-EXACT: the fold schedule (Alg. 7) and its checks: rotations step 2^i for i < log2(n)
    (none for n = 1), n not a power of two refused by name; RotL moves slot j + r to j along the last
    axis only; rows spread by a step and duplicated (windows of 2 n step) fold to the exact row sum and
    maximum; the layouts a fold would mix are refused with the window each needs."""
    from refimpl.nexus.folding import fold_rotations, quick_sum_plain, rotl_plain

    assert fold_rotations(8) == [1, 2, 4] and fold_rotations(4, 2) == [2, 4] and fold_rotations(1) == []
    for bad in (0, 6, -4):
        with pytest.raises(ValueError, match=f"n must be a power of two, got {bad}"):
            fold_rotations(bad)
    assert rotl_plain(np.arange(4.0), 1).tolist() == [1.0, 2.0, 3.0, 0.0]
    assert rotl_plain(np.arange(6.0).reshape(2, 3), 1).tolist() == [[1.0, 2.0, 0.0], [4.0, 5.0, 3.0]]
    gen = np.random.default_rng(6)
    n, step, w = 4, 2, 16  # row elements at slots 0, 2, 4, 6 of every window of 16; slots 8..15 zero
    x = np.zeros(2 * w)
    for r in range(2):
        x[r * w:r * w + n * step:step] = gen.uniform(-0.5, 0.5, n)
    s = quick_sum_plain(x, n, step=step, duplicate=True)
    mx = quick_max_plain(x, n, step=step, duplicate=True)
    for r in range(2):
        row = x[r * w:r * w + n * step:step]
        assert np.allclose(s[r * w:r * w + n * step:step], row.sum(), atol=1e-12)
        assert np.max(np.abs(mx[r * w:r * w + n * step:step] - row.max())) < 2 * max_pair_error_bound(0.5)
    y = gen.uniform(-0.5, 0.5, 16)
    assert np.array_equal(quick_max_plain(y, 16), quick_max_plain(y, 16, 0.5))
    assert SM.window_layout(32, 32, None) == (32, False) and SM.window_layout(32, 8, 16) == (16, True)
    with pytest.raises(ValueError, match="must fill all 32 slots"):
        SM.window_layout(32, 8, None)
    with pytest.raises(ValueError, match=r"a window of 12 slots cannot hold a row of 8 .* use >= 16$"):
        SM.window_layout(32, 8, 12)


def test_softmax_argmax_layernorm_models_use_their_arguments():
    """NEXUS-APPROX-EXACT: the models with non-default arguments. Softmax: padded keys holding the row's
    bound are masked out of the maximum; a row with one dominant entry (sum near 1, the low end of the
    inverse's range [1/2, n]) is exact up to float64 against exp's own model normalised exactly
    (measured 1.1e-15; an inverse tuned to [1.5, n] errs by 5e-4); an explicit Goldschmidt count is
    used. Argmax: bound 2, rows in windows of 2n, padded keys masked: the exact one-hot (measured
    1.5e-6 when the top two differ by 1.1 times the Sgn resolution). LayerNorm: defaults [1, 64] and an explicit Goldschmidt count reach the inverse square root."""
    gen = np.random.default_rng(7)
    n, w, rows, B = 8, 16, 4, 4.0
    x, keys = np.zeros(w * rows), np.zeros(w * rows)
    for r in range(rows):
        x[r * w:r * w + n - 2] = gen.uniform(-B, 0.0, n - 2)
        x[r * w + n - 2:r * w + n] = B  # padded keys hold the largest allowed value: only the mask stops them
        keys[r * w:r * w + n - 2] = 1.0
    sm = SM.softmax_plain(x, n, B, key_mask=keys, window=w)
    for r in range(rows):
        row = x[r * w:r * w + n - 2]
        e = np.exp(row - row.max())
        assert np.max(np.abs(sm[r * w:r * w + n - 2] - e / e.sum())) < 0.0125
    for n1 in (8, 64):
        z = np.full(n1, -4.0)
        z[3] = 4.0
        e = SM.exp_plain(z - 4.0)
        assert np.max(np.abs(SM.softmax_plain(z, n1, 4.0) - e / e.sum())) < 1e-12
        assert np.max(np.abs(SM.softmax_plain(z, n1, 4.0, iters=1) - e / e.sum())) > 0.1
    # Argmax with bound 2 in windows of 16, the last two keys of each row padded
    B, worst = 2.0, 0.0
    for _ in range(20):
        xa, km, want = np.zeros(w * rows), np.zeros(w * rows), np.zeros(w * rows)
        for r in range(rows):
            while True:
                v = gen.uniform(-B, B, n - 2)
                t = np.sort(v)
                if t[-1] - t[-2] >= 1.1 * 0.0348 * B and t[-1] > 0.2:
                    break
            xa[r * w:r * w + n - 2], km[r * w:r * w + n - 2] = v, 1.0
            xa[r * w + n - 2:r * w + n] = B  # padded keys at the bound: only the mask stops them
            want[r * w + int(np.argmax(v))] = 1.0
        sel = argmax_plain(xa, n, B, key_mask=km, window=w)
        for r in range(rows):
            worst = max(worst, np.max(np.abs(sel[r * w:r * w + n] - want[r * w:r * w + n])))
    assert 0 < worst < 2e-6
    # LayerNorm: defaults and an explicit Goldschmidt count, against the model's own pieces
    n, F = 16, 12
    xl, g, b = np.zeros(n), np.zeros(n), np.zeros(n)
    xl[:F], g[:F], b[:F] = gen.normal(0, 3, F), gen.uniform(0.5, 1.5, F), gen.uniform(-1, 1, F)
    xc = xl[:F] - xl[:F].mean()
    var = float(np.mean(xc * xc))
    for k in (0, 1, 2):
        out = LN.layernorm_plain(xl, F, n, g, b, goldschmidt=k)
        assert np.allclose(out[:F], xc * g[:F] * LN.rsqrt_plain(np.array([var]), 1.0, 64.0, goldschmidt=k) + b[:F],
                           rtol=0, atol=1e-12)
    assert np.array_equal(LN.layernorm_plain(xl, F, n, g, b), LN.layernorm_plain(xl, F, n, g, b, lo=1.0, hi=64.0))
