"""Homomorphic operations. Every operation returns a new ciphertext; inputs are never mutated.

Levels and scales are checked, never assumed: operands of add/sub must share level and scale
(the error names both and how to fix it); a product multiplies the scales; rescale divides the
scale by the dropped prime q_l exactly (level l -> l-1, scale Delta^2 / q_l). Every entry point
also refuses operands of other parameters, scales outside [floor, modulus) and constants that
leave the modulus (refimpl.ckks.checks, ours), and ciphertexts of another secret key than its
evaluation keys' or than the other operand's; results carry the key id (ours).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..ring.automorphism import automorphism_ntt
from .ciphertext import Ciphertext, Plaintext
from .checks import check_constant, check_key, check_operand, check_params, check_product_scale
from .encoder import Encoder
from .errors import LevelExhaustedError, LevelMismatchError, MissingKeyError, ScaleMismatchError
from .keys import EvaluationKeys, conjugation_element, galois_element
from .keyswitch import apply_key, key_switch, mod_up, switch_extended, times_p
from .params import Parameters

SCALE_RTOL = 1e-9  # scales closer than this (relative) count as equal: the error is below 2^-29
MAC_BATCH = 32  # terms of mul_plain_sum whose plaintexts are held at once (N = 2^16, level 19: 32 x 10.5 MB)


def _same_scale(a: float, b: float) -> bool:
    return abs(a - b) <= SCALE_RTOL * max(abs(a), abs(b))


class Evaluator:
    """Evaluates on ciphertexts of one parameter set with the given evaluation keys."""

    def __init__(self, params: Parameters, keys: EvaluationKeys | None = None):
        self.params = params
        self.keys = keys if keys is not None else EvaluationKeys()
        self.encoder = Encoder(params)
        self.ctx = params.ctx
        self.key_id = self.keys.key_id  # the secret its keys belong to (ours; None: no key carries one)

    # ------------------------------------------------------------------ checks
    def _basis(self, level: int) -> tuple[int, ...]:
        return self.params.q_basis(level)

    def _check(self, a, op: str, what: str = "ciphertext") -> None:
        check_operand(self.params, a, op, what)
        check_key(self.key_id, (a,), op, "Evaluator")

    def _check_pair(self, a, b, op: str, check_scale: bool = True) -> None:
        check_operand(self.params, a, op, "left operand")
        check_operand(self.params, b, op, "right operand")
        check_key(self.key_id, (a, b), op, "Evaluator")
        if a.level != b.level:
            raise LevelMismatchError(
                f"{op}: levels differ (left at level {a.level}, scale 2^{np.log2(a.scale):.2f}; "
                f"right at level {b.level}, scale 2^{np.log2(b.scale):.2f}): "
                f"bring the higher one down with drop_level(ct, {min(a.level, b.level)})"
            )
        if check_scale and not _same_scale(a.scale, b.scale):
            raise ScaleMismatchError(
                f"{op}: scales differ (left 2^{np.log2(a.scale):.4f} at level {a.level}, right "
                f"2^{np.log2(b.scale):.4f} at level {b.level}): multiply one by a constant that "
                "fixes its scale (mul_const with scale=...) or encode the plaintext at the other's scale"
            )

    def _key(self, *operands) -> bytes | None:
        """The key id of a result (operands already checked by check_key): the evaluator's, else an operand's."""
        return self.key_id or next((x.key_id for x in operands if getattr(x, "key_id", None) is not None), None)

    # ------------------------------------------------------------------ linear
    def add(self, a: Ciphertext, b: Ciphertext) -> Ciphertext:
        self._check_pair(a, b, "add")
        basis = self._basis(a.level)
        n = max(a.size, b.size)
        comps = []
        for i in range(n):
            if i < a.size and i < b.size:
                comps.append(self.ctx.add(a.c[i], b.c[i], basis))
            else:
                comps.append((a.c[i] if i < a.size else b.c[i]).copy())
        return Ciphertext(tuple(comps), a.level, a.scale, a.params, self._key(a, b))

    def sub(self, a: Ciphertext, b: Ciphertext) -> Ciphertext:
        return self.add(a, self.negate(b))

    def negate(self, a: Ciphertext) -> Ciphertext:
        self._check(a, "negate")
        basis = self._basis(a.level)
        return Ciphertext(tuple(self.ctx.neg(c, basis) for c in a.c), a.level, a.scale, a.params, self._key(a))

    def add_plain(self, a: Ciphertext, pt: Plaintext) -> Ciphertext:
        self._check_pair(a, pt, "add_plain")
        basis = self._basis(a.level)
        return Ciphertext((self.ctx.add(a.c[0], pt.poly, basis),) + tuple(c.copy() for c in a.c[1:]), a.level, a.scale, a.params, self._key(a))

    def sub_plain(self, a: Ciphertext, pt: Plaintext) -> Ciphertext:
        self._check_pair(a, pt, "sub_plain")
        basis = self._basis(a.level)
        return Ciphertext((self.ctx.sub(a.c[0], pt.poly, basis),) + tuple(c.copy() for c in a.c[1:]), a.level, a.scale, a.params, self._key(a))

    def add_const(self, a: Ciphertext, value) -> Ciphertext:
        """a + value in every slot (a scalar), or slotwise (a vector), at a's level and scale.

        A real scalar c is the constant polynomial round(c Delta), the same number at every NTT
        point; i is X^(N/2) (zeta^(5^j N/2) = i in every slot), so c = x + iy costs no FFT."""
        self._check(a, "add_const")
        check_constant(self.params, value, a.scale, a.level, "add_const")
        if np.ndim(value) == 0:
            return Ciphertext((self._add_scalar_poly(a.c[0], complex(value), a.scale, a.level),) + tuple(c.copy() for c in a.c[1:]),
                              a.level, a.scale, a.params, self._key(a))
        return self.add_plain(a, self.encoder.encode(value, level=a.level, scale=a.scale))

    def _add_scalar_poly(self, c0: np.ndarray, value: complex, scale: float, level: int) -> np.ndarray:
        basis = self._basis(level)
        re, im = _round_big(value.real * scale), _round_big(value.imag * scale)
        out = self.ctx.add_int(c0, re, basis) if re else c0.copy()
        if im:
            out = self.ctx.add(out, self.ctx.mul_int(self._monomial_ntt(self.params.N // 2, level), im, basis), basis)
        return out

    def mul_plain(self, a: Ciphertext, pt: Plaintext) -> Ciphertext:
        """Slotwise product; scale a.scale * pt.scale, level unchanged (rescale next)."""
        self._check_pair(a, pt, "mul_plain", check_scale=False)
        check_product_scale(self.params, a.scale * pt.scale, a.level, "mul_plain")
        basis = self._basis(a.level)
        return Ciphertext(tuple(self.ctx.mul(c, pt.poly, basis) for c in a.c), a.level, a.scale * pt.scale, a.params, self._key(a))

    def mul_plain_sum(self, cts, pts) -> Ciphertext:
        """sum_k cts[k] * pts[k] (ours: a fused plaintext multiply-accumulate), bit for bit the chain of
        mul_plain and add, in one pass per MAC_BATCH terms: products summed as 128-bit integers and reduced
        once per coefficient (refimpl.ring.rns.RNSContext.mul_sum) instead of a reduced product and an addition,
        each a full read and write of the ciphertext, per term. cts and pts may be iterables (consumed in
        step, so a weight store's plaintexts can be made as they are used); every term at one level, one
        ciphertext size and one product scale (the chain's add would refuse otherwise)."""
        op = "mul_plain_sum"
        first, acc, batch, key = None, None, [], self.key_id
        basis = None
        for k, (a, pt) in enumerate(zip(cts, pts, strict=True)):
            self._check_pair(a, pt, op, check_scale=False)
            if first is None:
                first, basis = a, self._basis(a.level)
                scale = a.scale * pt.scale
                check_product_scale(self.params, scale, a.level, op)
            else:
                check_key(self.key_id, (first, a), op, "Evaluator")
                if a.level != first.level:
                    raise LevelMismatchError(f"{op}: term {k} is at level {a.level}, term 0 at level {first.level}: "
                                             f"bring them to one level (drop_level) first")
                if a.size != first.size:
                    raise ValueError(f"{op}: term {k} has {a.size} components, term 0 {first.size}: relinearize first")
                if not _same_scale(a.scale * pt.scale, scale):
                    raise ScaleMismatchError(
                        f"{op}: the product scale of term {k} (2^{np.log2(a.scale * pt.scale):.4f}) differs from "
                        f"term 0's (2^{np.log2(scale):.4f}): the chain's add would refuse it; encode the "
                        "plaintexts at scales that give one product scale")
            key = key or a.key_id
            batch.append((a, pt))
            if len(batch) == MAC_BATCH:
                acc, batch = self.ctx.mul_sum([x.c for x, _ in batch], [y.poly for _, y in batch], basis, acc), []
        if first is None:
            raise ValueError(f"{op} of no terms")
        if batch:
            acc = self.ctx.mul_sum([x.c for x, _ in batch], [y.poly for _, y in batch], basis, acc)
        return Ciphertext(tuple(acc), first.level, scale, self.params, key)

    def mul_const(self, a: Ciphertext, value, scale: float | None = None) -> Ciphertext:
        """a times a constant (scalar) or slotwise vector, encoded at `scale`; rescale next.

        Default scale = q_l, the prime the next rescale drops, so that after rescale the scale
        is exactly a.scale again. A scalar costs one integer multiplication per limb (no FFT):
        x + iy becomes round(x s) + round(y s) X^(N/2)."""
        self._check(a, "mul_const")
        self._require_levels(a, 1, "mul_const (then rescale)")
        scale = float(self.params.q[a.level]) if scale is None else float(scale)
        check_product_scale(self.params, a.scale * scale, a.level, "mul_const")
        check_constant(self.params, value, a.scale * scale, a.level, "mul_const")
        if np.ndim(value) == 0:
            v = complex(value)
            re, im = _round_big(v.real * scale), _round_big(v.imag * scale)
            basis = self._basis(a.level)
            comps = [self.ctx.mul_int(c, re, basis) for c in a.c]
            if im:
                shifted = self.mul_monomial(a, self.params.N // 2)
                comps = [self.ctx.add(x, self.ctx.mul_int(y, im, basis), basis) for x, y in zip(comps, shifted.c)]
            return Ciphertext(tuple(comps), a.level, a.scale * scale, a.params, self._key(a))
        return self.mul_plain(a, self.encoder.encode(value, level=a.level, scale=scale))

    def mul_int(self, a: Ciphertext, k: int) -> Ciphertext:
        """a times an integer: no level, no scale change."""
        self._check(a, "mul_int")
        check_constant(self.params, int(k), a.scale, a.level, "mul_int")
        basis = self._basis(a.level)
        return Ciphertext(tuple(self.ctx.mul_int(c, int(k), basis) for c in a.c), a.level, a.scale, a.params, self._key(a))

    # ------------------------------------------------------------------ products
    def multiply(self, a: Ciphertext, b: Ciphertext, relinearize: bool = True) -> Ciphertext:
        """Tensor product (d_0, d_1, d_2) = (a_0 b_0, a_0 b_1 + a_1 b_0, a_1 b_1), then relinearize."""
        self._check_pair(a, b, "multiply", check_scale=False)
        check_product_scale(self.params, a.scale * b.scale, a.level, "multiply")
        if a.size != 2 or b.size != 2:
            raise ValueError(f"multiply expects two relinearized ciphertexts, got sizes {a.size} and {b.size}")
        ctx, basis = self.ctx, self._basis(a.level)
        d0 = ctx.mul(a.c[0], b.c[0], basis)
        d1 = ctx.mul(a.c[0], b.c[1], basis)
        ctx.mul_acc(d1, a.c[1], b.c[0], basis)
        d2 = ctx.mul(a.c[1], b.c[1], basis)
        out = Ciphertext((d0, d1, d2), a.level, a.scale * b.scale, a.params, self._key(a, b))
        return self.relinearize(out) if relinearize else out

    def square(self, a: Ciphertext) -> Ciphertext:
        return self.multiply(a, a)

    def switch_key(self, a: Ciphertext, key, c1: np.ndarray | None = None, c0: np.ndarray | None = None) -> Ciphertext:
        """(c_0, c_1) under s_from -> (c_0 + u_0, u_1) under s, with (u_0, u_1) = KeySwitch(c_1).

        c1 / c0 override the components (relinearization switches c_2 and keeps (c_0, c_1));
        the key's source secret is whatever it was generated from."""
        self._check(a, "switch_key")
        check_params(self.params, key, "switch_key", "switching key")
        c1 = a.c[1] if c1 is None else c1
        c0 = a.c[0] if c0 is None else c0
        u0, u1 = key_switch(self.params, c1, key, a.level)
        to = getattr(key, "key_id", None)  # the secret the key switches to (None: unknown)
        if to is None or to == self.key_id:
            out_key = self._key(a)
        else:  # another secret (the sparse s' of encapsulation): not tagged, so no check trips on it
            out_key = None if self.key_id is not None else to
        return Ciphertext((self.ctx.add(c0, u0, self._basis(a.level)), u1), a.level, a.scale, a.params, out_key)

    def relinearize(self, a: Ciphertext) -> Ciphertext:
        """(d_0, d_1, d_2) -> (d_0, d_1) + KeySwitch_{s^2 -> s}(d_2)."""
        self._check(a, "relinearize")
        if a.size == 2:
            return a
        if self.keys.relin is None:
            raise MissingKeyError("relinearization key not generated: KeyGenerator.evaluation_keys(sk, relin=True)")
        sw = self.switch_key(a, self.keys.relin, c1=a.c[2])  # (d_0 + u_0, u_1), u_0 + u_1 s ~ d_2 s^2
        return Ciphertext((sw.c[0], self.ctx.add(a.c[1], sw.c[1], self._basis(a.level))), a.level, a.scale, a.params, self._key(a))

    def _require_levels(self, a: Ciphertext, need: int, op: str) -> None:
        if a.level < need:
            raise LevelExhaustedError(
                f"{op} needs {need} level(s) but the ciphertext is at level {a.level} "
                f"(scale 2^{np.log2(a.scale):.1f}): bootstrap it first, or start from a higher level"
            )

    def rescale(self, a: Ciphertext) -> Ciphertext:
        """Divide by q_l: level l -> l-1, scale s -> s / q_l."""
        self._check(a, "rescale")
        self._require_levels(a, 1, "rescale")
        basis = self._basis(a.level)
        comps = tuple(self.ctx.rescale_many(a.c, basis))
        return Ciphertext(comps, a.level - 1, a.scale / self.params.q[a.level], a.params, self._key(a))

    def mul_rescale(self, a: Ciphertext, b: Ciphertext) -> Ciphertext:
        """multiply + relinearize + rescale."""
        self._require_levels(a, 1, "mul_rescale")
        return self.rescale(self.multiply(a, b))

    def drop_level(self, a: Ciphertext, level: int) -> Ciphertext:
        """Keep the limbs q_0 .. q_level (no scale change)."""
        self._check(a, "drop_level")
        if not 0 <= level <= a.level:
            raise LevelExhaustedError(f"drop_level: target level {level} must be in [0, {a.level}]")
        return Ciphertext(tuple(np.ascontiguousarray(c[: level + 1]) for c in a.c), level, a.scale, a.params, self._key(a))

    # ------------------------------------------------------------------ automorphisms
    def galois_key(self, k: int, what: str):
        key = self.keys.galois.get(k)
        if key is None:
            have = sorted(self.keys.galois)
            raise MissingKeyError(
                f"{what} needs the Galois key of element {k} (X -> X^{k}); generated elements: "
                f"{have[:12]}{'...' if len(have) > 12 else ''}. Add it to KeyGenerator.evaluation_keys"
            )
        return key

    def apply_galois(self, a: Ciphertext, k: int, what: str | None = None) -> Ciphertext:
        """sigma_k on the ciphertext: (sigma_k(c_0), sigma_k(c_1)), then switch sigma_k(s) -> s."""
        self._check(a, what or "apply_galois")
        if a.size != 2:
            raise ValueError("relinearize before an automorphism")
        k = int(k) % (2 * self.params.N)
        if k == 1:
            return a
        key = self.galois_key(k, what or f"subs({k})")
        # (sigma_k(c_0), sigma_k(c_1)) decrypts under sigma_k(s); switch back to s
        return self.switch_key(a, key, c1=automorphism_ntt(a.c[1], k), c0=automorphism_ntt(a.c[0], k))

    def rotate(self, a: Ciphertext, r: int) -> Ciphertext:
        """Slot j of the result holds slot (j + r) mod N/2 of a (left rotation; r may be negative)."""
        return self.apply_galois(a, galois_element(self.params, r), f"rotate({r})")

    def conjugate(self, a: Ciphertext) -> Ciphertext:
        return self.apply_galois(a, conjugation_element(self.params), "conjugate")

    def subs(self, a: Ciphertext, k: int) -> Ciphertext:
        """Subs(ct, k): X -> X^k for any odd k (NEXUS uses k = N/2^i + 1)."""
        return self.apply_galois(a, k, f"subs({k})")

    def rotate_hoisted(self, a: Ciphertext, rotations) -> dict[int, Ciphertext]:
        """Several rotations of one ciphertext sharing one digit decomposition (ModUp)."""
        self._check(a, "rotate_hoisted")
        if a.size != 2:
            raise ValueError("relinearize before rotating")
        exts = None
        out = {}
        basis = self._basis(a.level)
        for r in rotations:
            k = galois_element(self.params, r)
            if k == 1:
                out[r] = a
                continue
            key = self.galois_key(k, f"rotate({r})")
            if exts is None:
                exts = mod_up(self.params, a.c[1], a.level)
            u0, u1 = apply_key(self.params, exts, key, a.level, galois=k)
            out[r] = Ciphertext((self.ctx.add(automorphism_ntt(a.c[0], k), u0, basis), u1), a.level, a.scale, a.params, self._key(a))
        return out

    # ------------------------------------------------------------------ the extended basis Q_l P
    # Double hoisting (Bossuat, Mouchet, Troncoso-Pastoriza, Hubaux, EUROCRYPT 2021, section 4.3):
    # rotations left in Q_l P before their ModDown, so that sums of their plaintext products pay
    # one ModDown. A pair (x_0, x_1) over Q_l P stands for the ciphertext ModDown(x) = x / P.
    def rotate_hoisted_extended(self, a: Ciphertext, rotations) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """r -> (x_0, x_1) over Q_l P with x_0 + x_1 s ~ P rot(a, r); one ModUp for all."""
        self._check(a, "rotate_hoisted_extended")
        if a.size != 2:
            raise ValueError("relinearize before rotating")
        p, level = self.params, a.level
        full = self._basis(level) + p.p_basis
        c0p = times_p(p, a.c[0], level)
        exts, out = None, {}
        for r in rotations:
            k = galois_element(p, r)
            if k == 1:
                out[r] = (c0p, times_p(p, a.c[1], level))
                continue
            key = self.galois_key(k, f"rotate({r})")
            if exts is None:
                exts = mod_up(p, a.c[1], level)
            u0, u1 = switch_extended(p, exts, key, level, galois=k)
            out[r] = (self.ctx.add(automorphism_ntt(c0p, k), u0, full), u1)
        return out

    def rotate_extended(self, x0: np.ndarray, x1: np.ndarray, level: int, r: int) -> tuple[np.ndarray, np.ndarray]:
        """A pair over Q_l P rotated by r, left over Q_l P: only x_1 is brought down (ModDown)
        for its ModUp; x_0 is permuted where it is (the giant steps of double hoisting)."""
        p = self.params
        k = galois_element(p, r)
        key = self.galois_key(k, f"rotate({r})")
        ql = self._basis(level)
        d = self.ctx.mod_down(x1, ql, p.p_basis)
        u0, u1 = switch_extended(p, mod_up(p, d, level), key, level, galois=k)
        return self.ctx.add(automorphism_ntt(x0, k), u0, ql + p.p_basis), u1

    def mod_down_extended(self, x0: np.ndarray, x1: np.ndarray, level: int, scale: float) -> Ciphertext:
        """The ciphertext ModDown(x_0, x_1) over Q_l at `scale`."""
        u = self.ctx.mod_down_many((x0, x1), self._basis(level), self.params.p_basis)
        return Ciphertext((u[0], u[1]), level, scale, self.params, self.key_id)

    def rotate_sum(self, terms) -> Ciphertext:
        """sum of Rot(a, r) over the pairs (a, r) of `terms` (one level and scale), the key-switched rotations
        summed over Q_l P and brought down once (the giant steps of double hoisting, Bossuat et al. 2021
        section 4.3): one ModDown for all instead of one per rotation; key switches: the non-trivial rotations."""
        terms = list(terms)
        if not terms:
            raise ValueError("rotate_sum of no terms")
        a0 = terms[0][0]
        for a, _ in terms:
            self._check(a, "rotate_sum")
            if a.size != 2:
                raise ValueError("relinearize before rotating")
            if (a.level, a.scale) != (a0.level, a0.scale):
                raise LevelMismatchError(f"rotate_sum: terms at (level, scale) {(a.level, a.scale)} and "
                                         f"{(a0.level, a0.scale)}")
        level, full = a0.level, self._basis(a0.level) + self.params.p_basis
        acc, plain = None, None
        for a, r in terms:
            if galois_element(self.params, r) == 1:  # no key switch: added over Q_l after the ModDown
                plain = a if plain is None else self.add(plain, a)
                continue
            x = self.rotate_hoisted_extended(a, [r])[r]
            acc = x if acc is None else (self.ctx.add(acc[0], x[0], full), self.ctx.add(acc[1], x[1], full))
        out = None if acc is None else self.mod_down_extended(acc[0], acc[1], level, a0.scale)
        return plain if out is None else (out if plain is None else self.add(out, plain))

    # ------------------------------------------------------------------ monomials
    def mul_monomial(self, a: Ciphertext, j: int) -> Ciphertext:
        """a times X^j (j any integer; X^N = -1): exact, no level, no scale change."""
        self._check(a, "mul_monomial")
        mono = self._monomial_ntt(int(j) % (2 * self.params.N), a.level)
        basis = self._basis(a.level)
        return Ciphertext(tuple(self.ctx.mul(c, mono, basis) for c in a.c), a.level, a.scale, a.params, self._key(a))

    def _monomial_ntt(self, j: int, level: int) -> np.ndarray:
        return _monomial(self.params, j, level)


def _round_big(x: float) -> int:
    """round(x) as an exact Python integer (x may exceed 2^63)."""
    if not np.isfinite(x):
        raise ValueError(f"constant times scale is not finite: {x}")
    return int(round(x)) if abs(x) < 2.0**52 else int(x)


@lru_cache(maxsize=64)
def _monomial(params: Parameters, j: int, level: int) -> np.ndarray:
    """NTT of X^j over Q_level (j in [0, 2N))."""
    N = params.N
    coeffs = np.zeros(N, dtype=np.int64)
    coeffs[j % N] = -1 if j >= N else 1
    basis = params.q_basis(level)
    return params.ctx.ntt(params.ctx.from_int(coeffs, basis), basis)
