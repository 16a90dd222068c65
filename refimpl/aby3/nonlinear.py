"""Non-linear functions on arithmetic shares: ReLU, max, polynomials, exp, reciprocal, rsqrt, GeLU.

Each takes and returns fixed-point AShares at p.fxp.f fraction bits. Secret inputs cannot
be range-checked without revealing them: every function states the input range it assumes.
Polynomials use one truncation for the whole final level (`fused_sums`): products of
already-truncated powers are summed as 3-of-3 values and truncated once.
"""

from __future__ import annotations

import math

import numpy as np

from refimpl.aby3 import arith
from refimpl.aby3.arith import fxp_mul, mul_local, own, trunc3
from refimpl.aby3.boolean import a2b, and_, bit, inject, msb, not_bit, public_share, xor
from refimpl.aby3.fixed import U64, public_fixed
from refimpl.aby3.party import Party
from refimpl.aby3.shares import AShare, BShare
from refimpl.constants import C

EXP_ITERS = 8  # exp(x) = (1 + x/2^r)^(2^r), r = 8 (SPU fxp_exp_iters default)
RECIP_ITERS = 3  # Goldschmidt: |e| 0.086 -> 7e-3 -> 5e-5 -> 3e-9
RSQRT_ITERS = 2  # Newton from a linear guess: 2e-2 -> 6e-4 -> 5e-7
MAX_LOG2 = 20  # reciprocal / rsqrt inputs must be below 2^20 (and at least 2^-f)
RSQRT_OUT_BITS = 32  # extra fraction bits of the public rsqrt scale factors


# ---- stacking helpers (batch several same-shape operations into one message) ------------

def stack(p: Party, xs: list[AShare]) -> AShare:
    return AShare(np.stack([x.a for x in xs]), np.stack([x.b for x in xs]), p.session)


def stack_bits(p: Party, xs: list[BShare]) -> BShare:
    return BShare(np.stack([x.a for x in xs]), np.stack([x.b for x in xs]), p.session, xs[0].nbits)


def broadcast(p: Party, x: AShare, shape: tuple) -> AShare:
    """Local broadcast of shares (e.g. a per-row value to the whole row)."""
    return AShare(np.ascontiguousarray(np.broadcast_to(x.a, shape)),
                  np.ascontiguousarray(np.broadcast_to(x.b, shape)), p.session)


# ---- comparisons and selection ------------------------------------------------------------

def relu(p: Party, x: AShare) -> AShare:
    """ReLU(x) = x (1 - msb(x)): MSB + bit injection, 10 rounds, ~151 B (SPU: 172 B, 11 sends)."""
    with p.net.scope("relu"):
        return inject(p, not_bit(p, msb(p, x)), x)


def select(p: Party, b: BShare, x: AShare, y: AShare) -> AShare:
    """b ? x : y = y + b (x - y)."""
    return arith.add(p, y, inject(p, b, arith.sub(p, x, y)))


def maximum(p: Party, x: AShare, y: AShare) -> AShare:
    """max(x, y) = y + ReLU(x - y)."""
    return arith.add(p, y, relu(p, arith.sub(p, x, y)))


def max_last_axis(p: Party, x: AShare) -> AShare:
    """Row maximum by a tree of pairwise maxima: ceil(log2 n) levels of ReLU (keepdims)."""
    with p.net.scope("max"):
        while x.shape[-1] > 1:
            n = x.shape[-1]
            h = n // 2
            m = maximum(p, x[..., :h], x[..., h:2 * h])
            if n % 2:  # the odd one out waits for the next level
                m = AShare(np.concatenate([m.a, x.a[..., 2 * h:]], -1), np.concatenate([m.b, x.b[..., 2 * h:]], -1), p.session)
            x = m
        return x


# ---- polynomials ---------------------------------------------------------------------------

def fused_sums(p: Party, sums: list[tuple[list, float]], t: int | None = None, bound: float | None = None) -> list[AShare]:
    """Several sum_j c_j (products or values) + c_0, each truncated once, all in one trunc3.

    A term is (c, x) (a value at scale f) or (c, x, y) (a product x y at scale 2f). Every
    sum is built at scale 2^(2f + t) as a 3-of-3 value and truncated by f + t: 2 rounds,
    42 B per element however many terms. Needs |result| < 2^(26 - t) (t coefficient bits):
    with `bound` (a public bound on |result|) t is lowered until that holds.
    """
    f = p.fxp.f
    coefs = np.concatenate([np.ravel(c) for terms, c0 in sums for c, *_ in terms] + [np.ravel(c0) for _, c0 in sums])
    t = arith.coef_bits(coefs, f) if t is None else t
    if bound is not None:
        t = max(0, min(t, 25 - math.ceil(math.log2(max(bound, 1.0)))))
    zs = []
    for terms, c0 in sums:
        z = None
        for c, *xs in terms:
            cu = public_fixed(c, t)
            if len(xs) == 2:
                v = mul_local(p, xs[0], xs[1]) * cu  # scale 2^(2f + t)
            else:
                v = (own(xs[0]) << U64(f)) * cu  # x_i 2^f: scale 2^(2f + t)
            z = v if z is None else z + v
        z = z + p.prss.zero(z.shape)
        if p.id == 0:
            z = z + public_fixed(c0, 2 * f + t)  # the constant, once, by party 0
        zs.append(z)
    shapes = [z.shape for z in zs]
    out = trunc3(p, np.concatenate([z.ravel() for z in zs]), f + t)
    res, o = [], 0
    for s in shapes:
        n = int(np.prod(s, dtype=np.int64))
        res.append(out[o:o + n].reshape(s))
        o += n
    return res


def powers(p: Party, x: AShare, h: int) -> dict[int, AShare]:
    """{1: x, 2: x^2, ..., h: x^h} by levels of batched fxp_mul (ceil(log2 h) levels)."""
    pw = {1: x}
    m = 1
    while m < h:
        targets = list(range(m + 1, min(2 * m, h) + 1))
        xs = stack(p, [pw[m]] * len(targets))
        ys = stack(p, [pw[j - m] for j in targets])
        z = fxp_mul(p, xs, ys)
        for k, j in enumerate(targets):
            pw[j] = z[k]
        m = targets[-1]
    return pw


def poly_terms(p: Party, x: AShare, coeffs, pw: dict | None = None) -> tuple[list, float]:
    """Terms of sum_j coeffs[j] x^j for `fused_sums`: powers up to ceil(D/2), the rest as products."""
    d = len(coeffs) - 1
    h = max(1, (d + 1) // 2)
    pw = pw if pw is not None and max(pw) >= h else powers(p, x, h)
    terms = []
    for j in range(1, d + 1):
        if coeffs[j] == 0:
            continue
        terms.append((coeffs[j], pw[j]) if j <= h else (coeffs[j], pw[h], pw[j - h]))
    return terms, float(coeffs[0])


def poly(p: Party, x: AShare, coeffs) -> AShare:
    """sum_j coeffs[j] x^j with one truncation for the final level (coefficients low to high)."""
    with p.net.scope("poly"):
        return fused_sums(p, [poly_terms(p, x, coeffs)])[0]


def quad(p: Party, x: AShare) -> AShare:
    """Quad(x) = 0.125 x^2 + 0.25 x + 0.5 fused: one mul + one truncation, 42 B (SPU: 108 B).

    Reference: MPCFormer training code; coefficients from refimpl/constants.toml [activations].
    """
    c0, c1, c2 = (float(v) for v in C["activations"]["quad"])
    with p.net.scope("quad"):
        return fused_sums(p, [([(c1, x), (c2, x, x)], c0)])[0]


# ---- exp -------------------------------------------------------------------------------------

def exp_neg(p: Party, x: AShare, *, iters: int = EXP_ITERS, out_scale=1.0, clamp: bool = True,
            x_max: float = 0.0, order: int = 1) -> AShare:
    """out_scale * exp(x) ~ out_scale * max(0, 1 + x/2^r)^(2^r); x <= x_max (default 0).

    order = 3 replaces 1 + y (y = x/2^r) by 1 + y + y^2/2 + y^3/6 (two more truncations,
    relative error about x^4 / (24 2^(3r)) instead of x^2 / 2^(r+1), so r can be halved);
    it needs abs(x) <= 2^r and no clamp.

    1 + x/2^r is x's encoding plus 2^(f+r) read at scale 2^(f+r) (exact, no truncation);
    the clamp (a ReLU) makes x < -2^r give 0 instead of garbage. Squaring doubles the
    relative error, so the squarings keep H = f + r fraction bits while the value stays
    below 2 (bounded by exp(x_max 2^j / 2^r)), and only the last ones run at f bits.
    Relative error about x^2 / 2^(r+1) + 2^(j_f - f) (j_f squarings at f bits).
    out_scale (public) costs one more truncation. Needs f + r <= 30.
    Reference: SPU fxp_approx exp (Taylor mode), CrypTen exp; NEXUS §3.
    """
    f, r = p.fxp.f, iters
    hi = f + r
    if hi > 30:
        raise ValueError(f"exp with r = {r} iterations needs f + r <= 30 (f = {f})")
    if order not in (1, 3) or (order == 3 and clamp):
        raise ValueError("exp: order must be 1, or 3 without clamp")
    with p.net.scope("exp"):
        if order == 3:  # x's encoding read at scale 2^(f+r) is y = x/2^r
            y2 = trunc3(p, mul_local(p, x, x), hi)  # y^2 at scale 2^hi
            t = 11  # bits of 1/2 and 1/6: |base| 2^(2 hi + t) < 2^62 for hi <= 24
            z = ((own(x) << U64(hi + t)) + (own(y2) << U64(hi)) * public_fixed(0.5, t)
                 + mul_local(p, y2, x) * public_fixed(1.0 / 6.0, t) + p.prss.zero(x.shape))
            if p.id == 0:
                z = z + U64(1 << (2 * hi + t))
            y = trunc3(p, z, hi + t)  # 1 + y + y^2/2 + y^3/6 at scale 2^hi
        else:
            y = arith.add_raw(p, x, U64(1 << hi))  # 1 + x/2^r at scale 2^(f+r)
        if clamp:
            y = relu(p, y)
        scale = hi
        for j in range(1, r + 1):
            keep = j < r and math.exp(max(x_max, 0.0) * 2.0**j / 2.0**r) < 2.0
            target = hi if keep else f
            y = trunc3(p, mul_local(p, y, y), 2 * scale - target)  # y^2: scale 2^(2 scale) -> 2^target
            scale = target
        if np.all(np.asarray(out_scale) == 1.0):
            return y
        return arith.mul_public(p, y, out_scale)  # own truncation: y may be large (x > 0)


# ---- normalization by the highest set bit ----------------------------------------------------

def _or(p: Party, x: BShare, y: BShare) -> BShare:
    return xor(p, xor(p, x, y), and_(p, x, y))


def _highest_bit(p: Party, x: AShare, nbits: int) -> BShare:
    """One-hot word with the highest set bit of x (0 < x < 2^nbits); A2B + prefix OR."""
    w = a2b(p, x)
    m = U64((1 << nbits) - 1)
    y = BShare(w.a & m, w.b & m, p.session, nbits)
    s = 1
    while s < nbits:  # y |= y >> s: every bit below the highest becomes 1
        y = _or(p, y, BShare(y.a >> U64(s), y.b >> U64(s), p.session, nbits))
        s *= 2
    return xor(p, y, BShare(y.a >> U64(1), y.b >> U64(1), p.session, nbits))


def _bit_factors(p: Party, onehot: BShare, nbits: int, tables: list[np.ndarray]) -> list[AShare]:
    """sum_j e_j T[j] for each public table T (e = onehot bits): one batched bit injection."""
    shape = onehot.shape
    bits = stack_bits(p, [bit(onehot, j) for j in range(nbits)])  # [nbits, ...]
    bits = stack_bits(p, [bits] * len(tables))  # [tables, nbits, ...]
    vals = np.stack([np.broadcast_to(np.asarray(tb, dtype=U64).reshape((nbits,) + (1,) * len(shape)), (nbits,) + shape)
                     for tb in tables])
    prod = inject(p, bits, public_share(p, vals))
    s = arith.sum_axis(p, prod, axis=1)  # [tables, ...]
    return [s[k] for k in range(len(tables))]


def reciprocal(p: Party, x: AShare, *, iters: int = RECIP_ITERS, max_log2: int = MAX_LOG2,
               extra_bits: int = 0) -> AShare:
    """1/x for 2^-f <= x < 2^max_log2 by normalization and Goldschmidt iterations.

    With extra_bits = e the result carries f + e fraction bits (for a later product that
    truncates by f + e: a division num/den then keeps the precision of num).

    x 2^f has its highest bit at h: c = x 2^(f-h-1) is in [0.5, 1), and with the public
    table F[h] = 2^(L-h-1) (L = f + max_log2), c = trunc_{L-f}(x F) and
    1/x = trunc_{L-f}((1/c) F). 1/c: w = 2.9142 - 2c, e = 1 - c w; repeat w *= 1 + e, e *= e.
    Reference: SPU fxp_approx reciprocal (Goldschmidt); CrypTen reciprocal.
    """
    f = p.fxp.f
    L = f + max_log2
    with p.net.scope("reciprocal"):
        onehot = _highest_bit(p, x, L)
        (fac,) = _bit_factors(p, onehot, L, [np.array([1 << (L - 1 - j) for j in range(L)], dtype=np.uint64)])
        c = trunc3(p, mul_local(p, x, fac), L - f)  # in [0.5, 1)
        w = arith.add_public(p, arith.mul_int(p, c, -2), 2.9142)
        (e,) = fused_sums(p, [([(-1.0, c, w)], 1.0)])  # e = 1 - c w
        for k in range(iters):
            if k < iters - 1:
                w, e = fused_sums(p, [([(1.0, w), (1.0, w, e)], 0.0), ([(1.0, e, e)], 0.0)])
            else:
                (w,) = fused_sums(p, [([(1.0, w), (1.0, w, e)], 0.0)])
        return trunc3(p, mul_local(p, w, fac), L - f - extra_bits)


_C = np.cos(np.linspace(0, np.pi, 64)) * 0.25 + 0.75
RSQRT_INIT = tuple(np.polynomial.polynomial.polyfit(_C, _C**-0.5, 1))  # linear guess on [0.5, 1]


def rsqrt(p: Party, x: AShare, *, iters: int = RSQRT_ITERS, max_log2: int = MAX_LOG2) -> AShare:
    """1/sqrt(x) for 2^-f <= x < 2^max_log2: normalize to c in [0.5, 1), Newton, rescale.

    x = c 2^(h+1-f): 1/sqrt(x) = c^(-1/2) 2^(-(h+1-f)/2); the second factor (with sqrt 2 for
    odd exponents) is a public table G[h] = round(2^(32 - (h+1-f)/2)), injected with the
    bits of h. y0 = linear fit, then y = y (3 - c y^2) / 2. Reference: SPU rsqrt (normalize
    by the highest bit); NEXUS LayerNorm (Newton).
    """
    f = p.fxp.f
    L = f + max_log2
    g = RSQRT_OUT_BITS
    with p.net.scope("rsqrt"):
        onehot = _highest_bit(p, x, L)
        tf = np.array([1 << (L - 1 - j) for j in range(L)], dtype=np.uint64)
        tg = np.array([round(2.0 ** (g - (j + 1 - f) / 2)) for j in range(L)], dtype=np.uint64)
        fac, gac = _bit_factors(p, onehot, L, [tf, tg])
        c = trunc3(p, mul_local(p, x, fac), L - f)
        (y,) = fused_sums(p, [([(RSQRT_INIT[1], c)], RSQRT_INIT[0])])
        for _ in range(iters):
            y2 = fxp_mul(p, y, y)
            cy2 = fxp_mul(p, c, y2)
            (y,) = fused_sums(p, [([(1.5, y), (-0.5, y, cy2)], 0.0)])
        return trunc3(p, mul_local(p, y, gac), g)


# ---- GeLU ------------------------------------------------------------------------------------

_G = C["nexus"]["gelu"]
GELU_P = tuple(float(v) for v in _G["P"])
GELU_Q = tuple(float(v) for v in _G["Q"])
GELU_BREAKS = tuple(float(v) for v in _G["breakpoints"])


def gelu_poly4(p: Party, x: AShare) -> AShare:
    """NEXUS/PUMA 4-piece GeLU: 0 | P(x) on [-4, -1.95] | Q(x) on (-1.95, 3] | x; valid |x| < 2^(43-f).

    Segment bits b_k = [x <= t_k] from one batched MSB; the indicators are XORs of them
    (b_1 implies b_2 implies b_3); P, Q share (x/4)^2 and are truncated together; one
    batched bit injection selects. Reference: NEXUS §3.3; PUMA GeLU; refimpl/constants.toml [nexus.gelu].
    """
    t1, t2, t3 = GELU_BREAKS
    ulp = 2.0**-p.fxp.f
    with p.net.scope("gelu_poly4"):
        shifted = stack(p, [arith.add_public(p, x, -(t + ulp)) for t in (t1, t2, t3)])
        b = msb(p, shifted)  # [3, ...]: x <= -4, x <= -1.95, x <= 3 (x - t - ulp < 0)
        b1, b2, b3 = (BShare(b.a[k], b.b[k], p.session, 1) for k in range(3))
        # v = x/4 keeps every coefficient of P and Q (in powers of v) between 0.1 and 10,
        # so 18-bit coefficients are precise; u = v^2 = (x/4)^2
        (u,) = fused_sums(p, [([(1.0 / 16, x, x)], 0.0)])
        u2 = fxp_mul(p, u, u)
        p0, p1, p2, p3 = GELU_P
        q0, q1, q2, _, q4, _, q6 = GELU_Q
        p_terms = ([(p1, x), (16 * p2, u), (16 * p3, u, x)], p0)  # x^2 = 16 u, x^3 = 16 u x
        q_terms = ([(q1, x), (16 * q2, u), (256 * q4, u2), (4096 * q6, u2, u)], q0)
        P, Q = fused_sums(p, [p_terms, q_terms])
        sel = stack_bits(p, [xor(p, b1, b2), xor(p, b2, b3), not_bit(p, b3)])
        y = inject(p, sel, stack(p, [P, Q, x]))
        return arith.add(p, arith.add(p, y[0], y[1]), y[2])


def _fit_gelu_even(T: float, m: int) -> tuple[float, ...]:
    """Coefficients of E(x) = GeLU(x) - x/2 = x erf(x/sqrt 2)/2 as a polynomial in w = (x/T)^2."""
    x = np.cos(np.linspace(0, np.pi, 2001)) * T
    e = x * np.vectorize(math.erf)(x / math.sqrt(2.0)) / 2
    w = (x / T) ** 2
    cheb = np.polynomial.chebyshev.chebfit(2 * w - 1, e, m)
    mono = np.polynomial.Polynomial(np.polynomial.chebyshev.cheb2poly(cheb))(np.polynomial.Polynomial([-1.0, 2.0]))
    return tuple(float(c) for c in mono.coef)


GELU_T = 4.0  # beyond |x| = 4, GeLU(x) = ReLU(x) within 4 Phi(-4) = 1.3e-4
GELU_EVEN = _fit_gelu_even(GELU_T, 8)  # degree 8 in w = (x/4)^2: fit error 4e-5


def gelu_erf(p: Party, x: AShare) -> AShare:
    """GeLU(x) = x Phi(x) (erf form): x/2 + E(x) for |x| < 4, else ReLU(x); max error ~3e-4.

    E(x) = x erf(x/sqrt 2)/2 is even and smooth: a degree-8 polynomial in w = (x/4)^2
    (Chebyshev fit, coefficients computed at import). Two batched MSBs give [x < -4] and
    [x > 4]; one batched injection selects (x/2 + E, x, or 0). Valid |x| < 2^(43-f).
    Reference: Hendrycks and Gimpel (GELU); the even-part trick is refimpl's own.
    """
    with p.net.scope("gelu_erf"):
        s = stack(p, [arith.add_public(p, x, GELU_T), arith.add_public(p, arith.neg(p, x), GELU_T)])
        b = msb(p, s)  # [x < -4], [x > 4]
        lo, hi = BShare(b.a[0], b.b[0], p.session, 1), BShare(b.a[1], b.b[1], p.session, 1)
        (w,) = fused_sums(p, [([(1.0 / GELU_T**2, x, x)], 0.0)])
        terms, c0 = poly_terms(p, w, GELU_EVEN)
        (inner,) = fused_sums(p, [(terms + [(0.5, x)], c0)])
        mid = not_bit(p, xor(p, lo, hi))
        y = inject(p, stack_bits(p, [mid, hi]), stack(p, [inner, x]))
        return arith.add(p, y[0], y[1])


AS_ERF = (1.0, 0.278393, 0.230389, 0.000972, 0.078108)  # Abramowitz-Stegun 7.1.27, |error| <= 5e-4
AS_ERF_CLAMP = 3.0  # SPU: erf(z) = 1 for z >= 3


def gelu_erf_as(p: Party, x: AShare) -> AShare:
    """GeLU(x) = x/2 (1 + erf(x/sqrt 2)) with SPU's erf recipe: the baseline SPU runs (for the speed table).

    erf(z) = 1 - (1 + a1 z + a2 z^2 + a3 z^3 + a4 z^4)^-4 for 0 <= z < 3, 1 above, odd
    (A&S 7.1.27); the reciprocal is the Goldschmidt `reciprocal` (normalization by the
    highest bit: an A2B), the sign and the clamp come from one batched MSB, selections are
    bit injections. Valid |x| < 2^13 (the polynomial must stay below 2^20). refimpl's own
    `gelu_erf` (an even polynomial) is the cheap way; this one reproduces what SPU's
    jax.nn.gelu(approximate=False) pays. Reference: SPU fxp_approx erf; Abramowitz and Stegun 7.1.27.
    """
    c = AS_ERF_CLAMP * math.sqrt(2.0)  # z < 3  <=>  |x| < 3 sqrt 2
    with p.net.scope("gelu_erf_as"):
        b = msb(p, stack(p, [x, arith.add_public(p, x, -c), arith.add_public(p, arith.neg(p, x), -c)]))
        neg, hi, lo = (BShare(b.a[k], b.b[k], p.session, 1) for k in range(3))  # x < 0, x < c, -x < c
        sx = inject(p, neg, x)  # x [x < 0]
        z = arith.mul_public(p, arith.sub(p, x, arith.mul_int(p, sx, 2)), 1.0 / math.sqrt(2.0))  # |x| / sqrt 2
        q = poly(p, z, AS_ERF)
        r = reciprocal(p, q)
        r2 = fxp_mul(p, r, r)
        r4 = fxp_mul(p, r2, r2)
        inside = and_(p, hi, lo)  # |x| < c
        e_abs = arith.add_public(p, arith.neg(p, inject(p, inside, r4)), 1.0)  # 1 - r^4 inside, 1 outside
        erf = arith.sub(p, e_abs, arith.mul_int(p, inject(p, neg, e_abs), 2))  # odd: sign of x
        half = arith.mul_public(p, x, 0.5)
        return fxp_mul(p, half, arith.add_public(p, erf, 1.0))
