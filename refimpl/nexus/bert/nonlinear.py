"""The paper's non-linear blocks of the encrypted forward, as methods of `Forward` (a mixin).

`Nonlinear` holds Softmax (NEXUS Alg. 1: QuickMax rounds, exp, QuickSum, Goldschmidt inverse; the row
duplication of Alg. 7), LayerNorm (NEXUS §3.2: sums, Newton and Goldschmidt 1/sqrt, split into the
plan's pieces), the 4-piece GELU (NEXUS §3.3) and the single refresh (a bootstrap with the slots scaled
into [-1, 1] first). They use the plan bookkeeping of refimpl.nexus.bert.forward.Forward (`enter`,
`leave`, `join`, `ev`, `lay`, `vec`, `st`, `bts`), which mixes this class in.

Reference: NEXUS (Zhang et al., NDSS 2025) §3.2-3.3, Alg. 1, 7.
"""

from __future__ import annotations

import math

from ...ckks import Ciphertext
from ..folding import duplicate_rows, max_pair, quick_sum
from ..gelu import LEVELS as GELU_LEVELS, segments_and_pieces
from ..layernorm import GOLDSCHMIDT, goldschmidt_rsqrt, initial_guess, valid as rsqrt_valid
from .. import rsqrt_carry as carry
from ..levels import align, multiply_lower, times_at, with_scale
from ..softmax import exp, goldschmidt_iterations, inverse
from .chain import carry_whole, newton_split
from .ranges import gelu_valid_range


def _check_range(lo: float, hi: float, newton: int) -> None:
    """The variance range must be valid for 1/sqrt's steps (relative error <= 2^-10 in the float64 model)."""
    err = rsqrt_valid(float(lo), float(hi), newton, GOLDSCHMIDT)
    if err > 2.0**-10:
        raise ValueError(f"1/sqrt on [{lo}, {hi}] with {newton} Newton steps has relative error {err:.2e} > 2^-10")


def _rsqrt_newton(ev, v: Ciphertext, lo: float, hi: float, newton: int, v_factor: float, steps: int | None = None):
    """y ~ 1/sqrt(u), u = v_factor v in [lo, hi]: linear guess, Newton y <- 1.5 y - 0.5 u y^3 (NEXUS §3.2;
    refimpl.nexus.layernorm.rsqrt up to its Goldschmidt steps). `newton` steps in all (the error check),
    the first `steps` of them here (default all). Returns (y at level l - 1 - 2 steps, u at l - 1,
    -u/2 at l - 1): -u/2 carries the remaining steps of a split (_newton_steps)."""
    _check_range(lo, hi, newton)
    a, b = initial_guess(lo, hi)
    s = v.scale
    y = ev.add_const(times_at(ev, v, -a * v_factor, v.level - 1, s), b)  # level l-1
    neg_half_u = times_at(ev, v, -0.5 * v_factor, v.level - 1, s)
    y = _newton_steps(ev, y, neg_half_u, newton if steps is None else steps)
    return y, times_at(ev, v, v_factor, v.level - 1, s), neg_half_u


def _newton_steps(ev, y: Ciphertext, neg_half_u: Ciphertext, steps: int) -> Ciphertext:
    """`steps` Newton steps y <- 1.5 y + (-u/2) y^3 (2 levels each; -u/2 at y's level or above)."""
    for _ in range(steps):
        t = multiply_lower(ev, y, neg_half_u)
        cubic = multiply_lower(ev, t, ev.rescale(ev.square(y)))
        y = ev.add(cubic, times_at(ev, y, 1.5, cubic.level, cubic.scale))  # level -2
    return y


def sum_of_squares(ev, xs: list[Ciphertext], lazy: bool = True) -> Ciphertext:
    """sum_c x_c^2 (1 level): lazy (ours), the squares summed unrelinearized before one relinearization and one
    rescale; else each square relinearized and rescaled (the previous path)."""
    if lazy:
        total = None
        for x in xs:
            t = ev.multiply(x, x, relinearize=False)
            total = t if total is None else ev.add(total, t)
        return ev.rescale(ev.relinearize(total))
    sq = None
    for u in xs:
        t = ev.rescale(ev.square(u))
        sq = t if sq is None else ev.add(sq, t)
    return sq


def _rsqrt_goldschmidt(ev, y: Ciphertext, u: Ciphertext) -> Ciphertext:
    """x = u y, h = y/2; r = 1/2 - x h; x += x r; h += h r (GOLDSCHMIDT times); returns 2h (level - 1 - 2 G)."""
    return goldschmidt_rsqrt(ev, y, u, GOLDSCHMIDT)


PRECISE_K = 2**12  # META-BTS's gain: the first bootstrap's error (<= 2^-16 seen at N = 2^16) times K stays << 1


class Nonlinear:
    """Softmax, LayerNorm, GELU and the single refresh of `Forward` (NEXUS §3.2-3.3, Alg. 1)."""

    def refresh(self, ct: Ciphertext, bound: float, precise: bool = False) -> Ciphertext:
        """Bootstrap, with the slots scaled into [-1, 1] first when a level is left (EvalMod's accurate range).

        precise: META-BTS (Bae, Cheon, Cho, Kim, Kim, CCS 2022; OpenFHE's iterative bootstrapping): the first
        bootstrap's error e = ct/M - BTS(ct/M) is bootstrapped again times K = min(M, 2^12) and added back, so the
        result's absolute error is that of one bootstrap divided by K (e.g. 2^-19 M -> 2^-19 M / K): a second
        bootstrap for ~log2 K more bits (LayerNorm's variance, whose values sit up to 13 bits below its bound)."""
        M = 2.0 ** max(0, math.ceil(math.log2(max(bound, 1.0))))
        if M > 1 and ct.level >= 1:
            low = self.ev.rescale(self.ev.mul_const(ct, 1.0 / M))  # slots / M, same scale
            out = self.bts.bootstrap(low)
            if precise:
                K = int(min(M, PRECISE_K))
                e = self.ev.sub(low, align(self.ev, out, low.level, low.scale))  # minus the bootstrap's error
                fix = self.bts.bootstrap(self.ev.mul_int(e, K))
                return self.ev.add(self.ev.mul_int(out, int(M)), self.ev.mul_int(fix, int(M) // K))
            return self.ev.mul_int(out, int(M))  # slots x M: no level, scale kept
        return self.bts.bootstrap(ct)

    def softmax_pieces(self, i: int, S: list[Ciphertext]) -> list[Ciphertext]:
        """Softmax over each row (NEXUS Alg. 1): QuickMax rounds, exp, QuickSum, Goldschmidt, product.
        With pair_rows, two heads per ciphertext and no row duplication (`softmax_paired`, ours)."""
        if self.lay.pair_rows:
            return self.softmax_paired(i, S)
        ev, lay, vec, p = self.ev, self.lay, self.vec, f"L{i}."
        u, n_pad = self.st["score_unit"], lay.n_pad  # the scores arrive divided by u (ours: u = 2B, or 1)
        B = self.st["B"] / u
        rows = vec.row_mask()  # every row segment's first n_pad slots
        kms = [vec.key_rows(c) for c in range(len(S))]
        x = self.enter(p + "softmax.round0", S)
        s = [duplicate_rows(ev, ev.add_const(xc, -B * (rows - km)), n_pad) for xc, km in zip(x, kms)]  # padded -> -B
        rounds = n_pad.bit_length() - 1
        for k in range(rounds):
            if k:
                s = self.enter(p + f"softmax.round{k}", s)
            s = self.leave(p + f"softmax.round{k}", [max_pair(ev, sc, ev.rotate(sc, 1 << k), B, lazy=self.st["lazy_relin"])
                                                     for sc in s])
        d = self.enter(p + "softmax.exp", [self.join(xc, m, subtract=True) for xc, m in zip(x, s)])
        r = self.st["exp_r"]  # 6 (NEXUS), 7 when 2B > 64 (the official code's r)
        e = self.leave(p + "softmax.exp", [exp(ev, dc, lo=-2 * B, mask=km, r=r, unit=u) for dc, km in zip(d, kms)])
        k_inv = goldschmidt_iterations(0.5, float(n_pad))
        ssum = self.enter(p + "softmax.inverse", [quick_sum(ev, ec, n_pad, duplicate=True) for ec in e])
        inv = self.leave(p + "softmax.inverse", [inverse(ev, sc, 0.5, float(n_pad), k_inv) for sc in ssum])
        self.enter(p + "softmax.normalize", [])
        return self.leave(p + "softmax.normalize", [multiply_lower(ev, ec, ic) for ec, ic in zip(e, inv)])

    def layernorm(self, name: str, xs: list[Ciphertext], gamma, beta, ln: tuple) -> list[Ciphertext]:
        """gamma (x - mu) / sqrt(var) + beta over the d features of each token, chunks summed (NEXUS §3.2).

        xs entered the piece `name` already (joined, refreshed as planned). 1/sqrt: refimpl.nexus.layernorm's
        linear guess, Newton and Goldschmidt steps, split where a refresh may go."""
        ev, lay, vec = self.ev, self.lay, self.vec
        alpha, lo, hi, newton = ln
        d, P = lay.d, lay.chunk
        tot = xs[0]
        for x in xs[1:]:
            tot = ev.add(tot, x)
        s = quick_sum(ev, tot, P, duplicate=True)  # d mu in the feature slots
        xc = [ev.rescale(ev.mul_const(ev.sub(ev.mul_int(x, d), s), vec.features(d, c) * (alpha / d)))
              for c, x in enumerate(xs)]  # alpha (x - mu) on the features, 0 elsewhere; level -1
        sq = sum_of_squares(ev, xc, self.st["lazy_relin"])  # level -2
        v = self.leave(name, [quick_sum(ev, sq, P, duplicate=True)])[0]  # d alpha^2 var; level -2
        v = self.enter(name + ".rsqrt", [v])[0]
        first, rest = newton_split(newton, self.st["rsqrt_carry"])
        if self.st["rsqrt_carry"] and (rest or carry_whole(ln, self.st["rsqrt_carry_whole"])):
            # ours: (y, t = -u y^2 / 2) across the refreshes (refimpl.nexus.rsqrt_carry)
            _check_range(lo, hi, newton)
            y, t = carry.steps(ev, *carry.start(ev, v, lo, hi, 1.0 / d), first)
            y, t = self.leave(name + ".rsqrt", [ev.drop_level(y, t.level), t])
            if rest:
                y, t = self.enter(name + ".newton", [y, t])
                y, t = carry.steps(ev, y, t, rest)
                y, t = self.leave(name + ".newton", [ev.drop_level(y, t.level), t])
            y, t = self.enter(name + ".gold", [y, t])
            h2 = self.leave(name + ".gold", [carry.steps(ev, y, t, GOLDSCHMIDT, last=True)[0]])[0]
        else:
            y, u, w = _rsqrt_newton(ev, v, lo, hi, newton, 1.0 / d, steps=first)
            y = self.leave(name + ".rsqrt", [y])[0]
            if rest:  # (y, -u/2) across a possible refresh; u = -2 (-u/2) costs no level
                y, w = self.enter(name + ".newton", [y, ev.drop_level(w, y.level)])
                y = self.leave(name + ".newton", [_newton_steps(ev, y, w, rest)])[0]
                u = ev.mul_int(w, -2)
            y, u = self.enter(name + ".gold", [y, ev.drop_level(u, y.level)])
            h2 = self.leave(name + ".gold", [_rsqrt_goldschmidt(ev, y, u)])[0]
        self.enter(name + ".out", [])
        outs = []
        for c, u_ in enumerate(xc):
            xg = ev.rescale(ev.mul_const(u_, vec.features(d, c, gamma)))  # gamma alpha (x - mu); level -2
            outs.append(ev.add_const(multiply_lower(ev, xg, h2), vec.features(d, c, beta)))
        return self.leave(name + ".out", outs)

    def gelu_masked(self, ct: Ciphertext, c: int) -> Ciphertext:
        """The 4-piece GELU (NEXUS §3.3, refimpl.nexus.gelu) with the feature mask folded into the
        scale-aligning products (GELU(0) = 0.0085 must not leak into the zero half of the windows)."""
        m = self.vec.features(self.lay.intermediate, c) / self.st["act_div"]  # output / M (W_2 x M)
        return self.gelu_split(ct, [m])[0]

    def gelu_split(self, ct: Ciphertext, masks: list) -> list[Ciphertext]:
        """The 4-piece GELU times each slot vector of `masks` (folded into the scale-aligning products), one
        output per mask; the three products of an output summed before relinearizing (ours). Level -18."""
        ev = self.ev
        s, lvl = ct.scale, ct.level - (GELU_LEVELS - 1)
        q_lvl = float(ev.params.q[lvl])
        c = self.st["gelu_prescale"]
        bits, pp, qq = segments_and_pieces(ev, ct, *gelu_valid_range(c), c, q_lvl, self.st["lazy_relin"])  # -17, -3, -4
        ind = [ev.sub(bits[0], bits[1]), ev.sub(bits[1], bits[2]), ev.add_const(bits[2], 0.5)]
        ups = [ev.drop_level(v, lvl + 1) for v in (pp, qq, ct)]
        outs = []
        for m in masks:
            total = None
            for up, b in zip(ups, ind):
                mv = with_scale(ev.rescale(ev.mul_const(up, m, scale=s * float(ev.params.q[lvl + 1]) / up.scale)), s)
                term = ev.multiply(mv, b, relinearize=False)
                total = term if total is None else ev.add(total, term)
            outs.append(with_scale(ev.rescale(ev.relinearize(total)), s))  # level -18
        return outs
