"""Polynomial evaluation on ciphertexts in the Chebyshev basis, at the optimal depth.

p(x) = sum_k c_k T_k(y), y = (2x - a - b) / (b - a) maps [a, b] onto [-1, 1].

Depth. T_j is computed at depth ceil(log2 j) (T_2j = 2 T_j^2 - 1; otherwise
T_j = 2 T_(2^m) T_(j - 2^m) - T_(2^(m+1) - j) with 2^m the largest power of two below j).
A polynomial of degree d < 2^k gets a budget of k = ceil(log2(d + 1)) levels:
  - leaf: if d < 2^ceil(k/2) (the baby steps) and ceil(log2 d) + 1 <= budget, sum_j c_j T_j
    directly (the constants cost one level);
  - split: otherwise p = q T_(2^m) + r with 2^m the largest power of two <= d (Chebyshev
    division); q gets budget - 1 (the product takes the last level), r keeps the budget.
By induction every node fits its budget, so the result is at depth exactly ceil(log2(d + 1))
(one more level for the affine map when [a, b] != [-1, 1]). Leaves share the baby steps
T_1 .. T_(2^ceil(k/2) - 1) and splits multiply by the giant steps T_(2^m): about
2^(k/2) + d / 2^(k/2) + k non-scalar products (Paterson-Stockmeyer's count) instead of d.

Exact scales. Every node is evaluated to a requested (level, scale): a leaf multiplies T_j by
c_j encoded at scale s q_(l+1) / scale(T_j), so that after one rescale all terms have scale s
exactly; a split asks q for scale s q_(l+1) / scale(T_(2^m)). The result lands at a predictable
level with exactly the requested scale: no "scales differ" surprise downstream.

Lazy relinearization (ours; keyword lazy=True, the default; lazy=False is the previous, eager path and
the oracle). A giant-step combination q_1 T_m1 + q_2 T_m2 + ... + r sums products: each is formed without
relinearizing (a degree-2 ciphertext (d_0, d_1, d_2)), rescaled and added at one level and scale (additions,
constant products and rescales act on each component alike), and the sum is relinearized once, when it is
returned or multiplied again. The powers T_j stay relinearized (factors of later powers and of every leaf).
One key switch per polynomial instead of one per giant step; the odd degree-9 scheme 4 instead of 5.

Reference: Bossuat, Mouchet, Troncoso-Pastoriza, Hubaux, EUROCRYPT 2021, section 4.2 (scale-
invariant evaluation); Lee, Lee, Kim, No, "High-precision bootstrapping...", 2020 (depth).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import ceil, log2
from typing import Callable

import numpy as np
from numpy.polynomial import chebyshev as npcheb

from .ciphertext import Ciphertext
from .errors import CKKSError, LevelExhaustedError

MIN_CONSTANT_SCALE = 2.0**20  # below this a coefficient keeps fewer than ~20 bits: refuse


@dataclass
class PolyStats:
    """What one evaluation used."""

    degree: int
    depth: int  # levels consumed
    mults: int = 0  # non-scalar (ciphertext x ciphertext) multiplications
    level_in: int = 0
    level_out: int = 0
    powers: list[int] = field(default_factory=list)


def poly_depth(degree: int) -> int:
    """ceil(log2(d + 1)): the optimal multiplicative depth of a degree-d polynomial."""
    return 0 if degree <= 0 else ceil(log2(degree + 1))


def _tj_depth(j: int) -> int:
    return 0 if j <= 1 else ceil(log2(j))


def chebyshev_interpolate(f: Callable[[np.ndarray], np.ndarray], a: float, b: float, degree: int) -> tuple[np.ndarray, float]:
    """Chebyshev coefficients of the interpolant of f at the degree+1 Chebyshev nodes of [a, b],
    and its max error on a dense grid of [a, b]."""
    n = degree + 1
    theta = np.pi * (np.arange(n) + 0.5) / n
    y = np.cos(theta)  # Chebyshev nodes on [-1, 1]
    fx = f((y * (b - a) + a + b) / 2)
    # c_k = (2/n) sum_j f(y_j) cos(k theta_j) (c_0 halved): the discrete cosine transform, exact
    # at the nodes and stable (a least-squares fit on the Vandermonde matrix loses ~6 bits)
    coeffs = (2.0 / n) * np.cos(np.outer(np.arange(n), theta)) @ fx
    coeffs[0] /= 2
    grid = np.linspace(a, b, 20001)
    err = float(np.max(np.abs(npcheb.chebval((2 * grid - a - b) / (b - a), coeffs) - f(grid))))
    return coeffs, err


class _Powers:
    """T_j(y) as ciphertexts, computed on demand at depth ceil(log2 j), memoized."""

    def __init__(self, ev, t1: Ciphertext, stats: PolyStats):
        self.ev = ev
        self.T = {1: t1}
        self.stats = stats

    def get(self, j: int) -> Ciphertext:
        if j in self.T:
            return self.T[j]
        ev = self.ev
        m = 1 << (j.bit_length() - 1)
        if m == j:  # T_2j = 2 T_j^2 - 1
            h = self.get(j // 2)
            sq = ev.rescale(ev.square(h))
            out = ev.add_const(ev.mul_int(sq, 2), -1.0)
        else:  # T_j = 2 T_m T_(j-m) - T_(2m-j)  (T_m T_n = (T_(m+n) + T_(m-n)) / 2)
            x, y = self.get(m), self.get(j - m)
            lvl = min(x.level, y.level)
            prod = ev.rescale(ev.multiply(ev.drop_level(x, lvl), ev.drop_level(y, lvl)))
            prod = ev.mul_int(prod, 2)
            low = self.get(2 * m - j) if 2 * m - j > 0 else None
            if low is None:
                out = prod
            else:
                out = _sub_matching(ev, prod, low)
        self.stats.mults += 1
        self.stats.powers.append(j)
        self.T[j] = out
        return out


def relinearized(ev, ct: Ciphertext) -> Ciphertext:
    """ct with two components: relinearized if it has three (lazy relinearization, ours), else ct itself."""
    return ev.relinearize(ct) if ct.size == 3 else ct


def _sub_matching(ev, a: Ciphertext, b: Ciphertext) -> Ciphertext:
    """a - b where b is brought to a's level and exact scale (one constant multiplication)."""
    if b.level > a.level:
        # multiply b by 1 at scale a.scale q / b.scale, then rescale: same level and scale as a
        lvl = a.level + 1
        bb = ev.drop_level(b, lvl)
        fix = ev.rescale(ev.mul_const(bb, 1.0, scale=a.scale * float(ev.params.q[lvl]) / bb.scale))
        return ev.sub(a, _force_scale(fix, a.scale))
    if b.level == a.level:
        return ev.sub(a, _force_scale(b, a.scale))
    raise LevelExhaustedError(f"internal: T term at level {b.level} below the product at level {a.level}")


def _force_scale(ct: Ciphertext, scale: float) -> Ciphertext:
    """Declare `scale` for a ciphertext whose scale equals it up to float rounding."""
    if abs(ct.scale - scale) > 1e-9 * scale:
        raise ValueError(f"internal scale mismatch {ct.scale} vs {scale}")
    return Ciphertext(ct.c, ct.level, scale, ct.params, ct.key_id)


def _cheb_divide(c: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """c = q T_m + r in the Chebyshev basis (deg r < m), using T_m T_k = (T_(m+k) + T_|m-k|) / 2."""
    c = np.array(c, dtype=np.float64)
    d = len(c) - 1
    q = np.zeros(d - m + 1)
    r = c.copy()
    for k in range(d - m, -1, -1):  # peel the top coefficient of r off onto q
        coef = r[m + k]
        if coef == 0:
            continue
        if k == 0:
            q[0] += coef
            r[m] -= coef
        else:
            q[k] += 2 * coef
            r[m + k] -= coef
            r[abs(m - k)] -= coef
    return q, r[:m]


class _Evaluation:
    def __init__(self, ev, powers: _Powers, level_in: int, baby: int, lazy: bool = True):
        self.ev = ev
        self.P = powers
        self.level_in = level_in
        self.baby = baby  # leaves use T_j with j < baby only (baby-step giant-step)
        self.lazy = lazy  # giant-step products summed unrelinearized (ours): eval may return 3 components

    def eval(self, c: np.ndarray, budget: int, level: int, scale: float) -> Ciphertext:
        """sum c_k T_k at exactly (level, scale), using at most `budget` levels below level_in."""
        ev = self.ev
        if self.lazy:  # one sum of unrelinearized products, relinearized, then rescaled (ours)
            return _force_scale(ev.rescale(relinearized(ev, self.unrescaled(c, budget, level, scale))), scale)
        c = np.trim_zeros(np.asarray(c, dtype=np.float64), "b")
        d = len(c) - 1
        if d <= 0 or (d < self.baby and _tj_depth(d) + 1 <= budget):
            return self.leaf(c, level, scale)
        m = 1 << (d.bit_length() - 1)
        q, r = _cheb_divide(c, m)
        Tm = ev.drop_level(self.P.get(m), level + 1)
        q_ct = self.eval(q, budget - 1, level + 1, scale * float(ev.params.q[level + 1]) / Tm.scale)
        prod = ev.rescale(ev.multiply(q_ct, Tm))  # level l+1 -> l, scale s exactly
        self.P.stats.mults += 1
        prod = _force_scale(prod, scale)
        if len(np.trim_zeros(r, "b")) == 0:
            return prod
        return ev.add(prod, self.eval(r, budget, level, scale))

    def unrescaled(self, c: np.ndarray, budget: int, level: int, scale: float) -> Ciphertext:
        """Lazy relinearization (ours): sum c_k T_k at level + 1 and scale s q_(l+1), the rescale to (level, scale)
        still to come; three components when it sums products q_j T_(m_j) (none is rescaled unrelinearized: the
        rounding of a rescale would meet s^2 in the third component)."""
        c = np.trim_zeros(np.asarray(c, dtype=np.float64), "b")
        d = len(c) - 1
        if d <= 0 or (d < self.baby and _tj_depth(d) + 1 <= budget):
            return self.leaf(c, level, scale, rescale=False)
        ev = self.ev
        m = 1 << (d.bit_length() - 1)
        q, r = _cheb_divide(c, m)
        q_up = float(ev.params.q[level + 1])
        Tm = ev.drop_level(self.P.get(m), level + 1)
        q_ct = self.eval(q, budget - 1, level + 1, scale * q_up / Tm.scale)  # relinearized
        prod = _force_scale(ev.multiply(q_ct, Tm, relinearize=False), scale * q_up)
        self.P.stats.mults += 1
        if len(np.trim_zeros(r, "b")) == 0:
            return prod
        return ev.add(prod, self.unrescaled(r, budget, level, scale))

    def leaf(self, c: np.ndarray, level: int, scale: float, rescale: bool = True) -> Ciphertext:
        """c_0 + sum_j c_j T_j at (level, scale): each term times c_j at scale s q_(l+1)/scale(T_j).
        rescale=False: the sum before its rescale, at level + 1 and scale s q_(l+1)."""
        ev = self.ev
        up = level + 1
        q_up = float(ev.params.q[up])
        acc = None
        for j in range(1, len(c)):
            if c[j] == 0:
                continue
            t = ev.drop_level(self.P.get(j), up)
            enc_scale = scale * q_up / t.scale
            if enc_scale < MIN_CONSTANT_SCALE:
                raise CKKSError(
                    f"polynomial evaluation: the constants would be encoded at scale 2^{np.log2(enc_scale):.1f} "
                    f"(T_{j} has scale 2^{np.log2(t.scale):.1f}, level {t.level}, primes ~2^{np.log2(q_up):.0f}): "
                    "bring the input's scale near the primes first (mul_const then rescale)"
                )
            term = ev.mul_const(t, c[j], scale=enc_scale)
            term = Ciphertext(term.c, term.level, scale * q_up, term.params)  # equal up to float rounding
            acc = term if acc is None else ev.add(acc, term)
        if acc is None:  # a constant: encode it on a zero multiple of T_1
            t = ev.drop_level(self.P.get(1), up)
            acc = Ciphertext(ev.mul_int(t, 0).c, up, scale * q_up, t.params, t.key_id)
        acc = ev.add_const(acc, c[0]) if len(c) and c[0] != 0 else acc
        if not rescale:
            return acc
        return _force_scale(ev.rescale(acc), scale)  # level l+1 -> l, scale s


def _affine(ev, ct: Ciphertext, a: float, b: float) -> Ciphertext:
    """y = (2x - a - b) / (b - a): one level, or x itself on [-1, 1]."""
    if (a, b) == (-1.0, 1.0):
        return ct
    alpha, beta = 2.0 / (b - a), -(a + b) / (b - a)
    return ev.add_const(ev.rescale(ev.mul_const(ct, alpha)), beta)


def _evaluate_on(ev, ct: Ciphertext, y: Ciphertext, P: _Powers, coeffs, target_scale: float | None,
                 stats: PolyStats, lazy: bool = True) -> Ciphertext:
    """sum_k coeffs[k] T_k(y), y the affine image of ct, with the powers P of y (memoized, maybe shared)."""
    coeffs = np.trim_zeros(np.asarray(coeffs, dtype=np.float64), "b")
    d = max(len(coeffs) - 1, 0)
    target_scale = ct.scale if target_scale is None else float(target_scale)
    need = poly_depth(d) + (ct.level - y.level)
    if ct.level < need or (d >= 1 and y.level < poly_depth(d)):
        raise LevelExhaustedError(
            f"a degree-{d} polynomial needs {need} levels but the ciphertext is at level {ct.level}: bootstrap first"
        )
    out_level = y.level - poly_depth(d)
    if d == 9 and not np.any(coeffs[0::2]):
        return _odd9(ev, y, coeffs, target_scale, stats, lazy)
    if d == 0:
        zero = ev.drop_level(ev.mul_int(y, 0), out_level)
        return ev.add_const(Ciphertext(zero.c, out_level, target_scale, zero.params, zero.key_id),
                            coeffs[0] if len(coeffs) else 0.0)
    baby = 1 << -(-poly_depth(d) // 2)  # 2^ceil(k/2): ~2 sqrt(d) products in all
    return _Evaluation(ev, P, y.level, baby, lazy).eval(coeffs, poly_depth(d), out_level, target_scale)


def evaluate_chebyshev(ev, ct: Ciphertext, coeffs, a: float = -1.0, b: float = 1.0,
                       target_scale: float | None = None, lazy: bool = True) -> tuple[Ciphertext, PolyStats]:
    """sum_k coeffs[k] T_k((2x - a - b) / (b - a)) on every slot, at depth ceil(log2(d+1))
    (+1 when [a, b] != [-1, 1]); the result has scale `target_scale` (default: ct's scale) and is
    relinearized. lazy: the giant-step products summed before relinearizing (ours; False: each
    product relinearized, the previous path)."""
    d = max(len(np.trim_zeros(np.asarray(coeffs, dtype=np.float64), "b")) - 1, 0)
    stats = PolyStats(degree=d, depth=0, level_in=ct.level)
    y = _affine(ev, ct, a, b)
    out = _evaluate_on(ev, ct, y, _Powers(ev, y, stats), coeffs, target_scale, stats, lazy)
    stats.level_out = out.level
    stats.depth = ct.level - out.level
    return out, stats


def evaluate_power_many(ev, ct: Ciphertext, polys, a: float = -1.0, b: float = 1.0,
                        target_scales=None, lazy: bool = True) -> tuple[list[Ciphertext], PolyStats]:
    """Several power-basis polynomials of one ciphertext on [a, b], sharing the affine map and the Chebyshev
    powers T_j (ours): each polynomial lands where `evaluate_power` would put it (depth ceil(log2(d+1)) + 1,
    scale its target, default ct's), but T_2, T_3, T_4, T_8 ... are computed once for all. NEXUS's GELU
    (refimpl.nexus.gelu) evaluates five polynomials of the same x (three Sgn first steps, P and Q): 12
    products instead of 25; lazy (as evaluate_chebyshev): 9 key switches instead of 12. stats.mults counts
    the products of all of them."""
    polys = [np.asarray(c, dtype=np.float64) for c in polys]
    scales = [None] * len(polys) if target_scales is None else list(target_scales)
    stats = PolyStats(degree=max(len(c) - 1 for c in polys), depth=0, level_in=ct.level)
    lin = np.polynomial.Polynomial([(a + b) / 2, (b - a) / 2])
    y = _affine(ev, ct, a, b)
    P = _Powers(ev, y, stats)
    outs = [_evaluate_on(ev, ct, y, P, npcheb.poly2cheb(np.polynomial.Polynomial(c)(lin).coef), s, stats, lazy)
            for c, s in zip(polys, scales)]
    stats.level_out = min(o.level for o in outs)
    stats.depth = ct.level - stats.level_out
    return outs, stats


def _at(ev, ct: Ciphertext, c: float, level: int, scale: float) -> Ciphertext:
    """c ct at a lower `level` with exactly `scale`: drop to level + 1, one constant, one rescale."""
    t = ev.drop_level(ct, level + 1)
    q = float(ct.params.q[level + 1])
    return _force_scale(ev.rescale(ev.mul_const(t, c, scale=scale * q / t.scale)), scale)


def _odd9(ev, x: Ciphertext, c: np.ndarray, target: float, stats: PolyStats, lazy: bool = True) -> Ciphertext:
    """An odd Chebyshev series of degree 9 in 5 products and 4 levels (the official NEXUS
    sgn_eval's x^2, x^3, x^4, x^5 scheme, moved to the Chebyshev basis for stability):

        p = T5 (b0 + b2 T2 + b4 T4) + e1 T1 + e3 T3,  b4 = 2 c9, b2 = 2 c7, b0 = c5,
        e3 = c3 - c7, e1 = c1 - c9      (T5 T_k = (T_(5+k) + T_(5-k)) / 2).

    The general baby-step giant-step path spends 6 or 7 products on the same polynomial. lazy: `_odd9_lazy`."""
    if lazy:
        return _odd9_lazy(ev, x, c, target, stats)
    l, q = x.level, lambda j: float(x.params.q[j])
    sq = ev.rescale(ev.square(x))
    t2 = ev.add_const(ev.mul_int(sq, 2), -1.0)  # level l-1
    sq = ev.rescale(ev.square(t2))
    t4 = ev.add_const(ev.mul_int(sq, 2), -1.0)  # l-2
    p3 = ev.mul_int(ev.rescale(ev.multiply(ev.drop_level(x, l - 1), t2)), 2)
    t3 = ev.sub(p3, _at(ev, x, 1.0, l - 2, p3.scale))  # 2 T1 T2 - T1, l-2
    p5 = ev.mul_int(ev.rescale(ev.multiply(ev.drop_level(x, l - 2), t4)), 2)
    t5 = ev.sub(p5, _at(ev, t3, 1.0, l - 3, p5.scale))  # 2 T1 T4 - T3, l-3
    u_scale = target * q(l - 3) / t5.scale
    inner = ev.add(_at(ev, t2, 2 * c[7], l - 3, u_scale), _at(ev, t4, 2 * c[9], l - 3, u_scale))
    hi = _force_scale(ev.rescale(ev.multiply(ev.add_const(inner, c[5]), t5)), target)  # l-4
    lo = ev.add(_at(ev, t3, c[3] - c[7], l - 4, target), _at(ev, x, c[1] - c[9], l - 4, target))
    stats.mults += 5
    stats.powers += [2, 4, 3, 5]
    return ev.add(hi, lo)


def _odd9_lazy(ev, x: Ciphertext, c: np.ndarray, target: float, stats: PolyStats) -> Ciphertext:
    """`_odd9`'s polynomial with lazy relinearization (ours): 4 key switches (T2, T4, T5, p) instead of 5, the
    same 5 products and 4 levels. T3 is never formed; it enters as a product of T1 (2 T1 T2 = T3 + T1):

        T5 = T1 (2 T4 - 2 T2 + 1),   p = T5 (b0 + b2 T2 + b4 T4) + T1 (2 e3 T2 + e1 - e3),

    the two products of p summed unrelinearized before their one rescale (a degree-2 ciphertext is never
    rescaled: the rounding would meet s^2)."""
    l, q = x.level, lambda j: float(x.params.q[j])
    sq = ev.rescale(ev.square(x))
    t2 = ev.add_const(ev.mul_int(sq, 2), -1.0)  # level l-1
    sq = ev.rescale(ev.square(t2))
    t4 = ev.add_const(ev.mul_int(sq, 2), -1.0)  # l-2
    w = ev.add_const(ev.sub(ev.mul_int(t4, 2), _at(ev, t2, 2.0, l - 2, t4.scale)), 1.0)  # 2 T4 - 2 T2 + 1, l-2
    t5 = ev.rescale(ev.multiply(ev.drop_level(x, l - 2), w))  # l-3
    pre = target * q(l - 3)  # the scale of p before its rescale
    u_scale = pre / t5.scale
    inner = ev.add(_at(ev, t2, 2 * c[7], l - 3, u_scale), _at(ev, t4, 2 * c[9], l - 3, u_scale))
    hi = _force_scale(ev.multiply(ev.add_const(inner, c[5]), t5, relinearize=False), pre)
    e1, e3 = c[1] - c[9], c[3] - c[7]
    v = ev.add_const(_at(ev, t2, 2 * e3, l - 3, pre / x.scale), e1 - e3)  # 2 e3 T2 + e1 - e3, l-3
    lo = _force_scale(ev.multiply(ev.drop_level(x, l - 3), v, relinearize=False), pre)
    stats.mults += 5
    stats.powers += [2, 4, 5]
    return _force_scale(ev.rescale(ev.relinearize(ev.add(hi, lo))), target)  # l-4


def evaluate_power(ev, ct: Ciphertext, coeffs, a: float = -1.0, b: float = 1.0,
                   target_scale: float | None = None, lazy: bool = True) -> tuple[Ciphertext, PolyStats]:
    """sum_k coeffs[k] x^k (power basis) via its exact Chebyshev expansion.

    [a, b] is only the domain of x (where the Chebyshev basis lives); the polynomial is in x
    itself, not in a rescaled variable."""
    coeffs = np.asarray(coeffs, dtype=np.float64)
    if (a, b) == (-1.0, 1.0):
        return evaluate_chebyshev(ev, ct, npcheb.poly2cheb(coeffs), target_scale=target_scale, lazy=lazy)
    # p(x) with x = ((b - a) y + a + b) / 2: compose, then convert
    lin = np.polynomial.Polynomial([(a + b) / 2, (b - a) / 2])
    composed = np.polynomial.Polynomial(coeffs)(lin).coef
    return evaluate_chebyshev(ev, ct, npcheb.poly2cheb(composed), a, b, target_scale, lazy)
