"""CoeffsToSlots and SlotsToCoeffs: the special DFT of CKKS as homomorphic linear maps.

With n = N/2 slots, slot j = m(zeta^(5^j)) = sum_(k<n) w_k zeta^(5^j k), w_k = m_k + i m_(k+n)
(because zeta^(5^j n) = i). Decoding z = V w is the "special FFT" (HEAAN's fftSpecial): a
bit-reversal followed by log2(n) butterfly stages; each stage is a matrix with three nonzero
diagonals (offsets 0 and +-len/2). SlotsToCoeffs applies the stages to a bit-reversed input
(no permutation is ever evaluated); CoeffsToSlots applies the inverse stages (each with a
factor 1/2, which makes the 1/n of the inverse) and leaves its output bit-reversed. EvalMod in
between works slot by slot, so the order does not matter.

The stages are merged into `level_budget` groups (one level each); a group with k stages has
up to 2^(k+1) - 1 diagonals, evaluated by baby-step giant-step with hoisted baby rotations:
    A x = sum_g rot( sum_b rot(a_(g n1 + b), -g n1 s) * rot(x, b s), g n1 s ).

Reference: Cheon, Han, Kim, Kim, Song, "Bootstrapping for approximate HE", EUROCRYPT 2018,
section 4; Chen, Chillotti, Song, EUROCRYPT 2019 (level-collapsed FFT, BSGS); Han and Ki 2020.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from math import isqrt

import numpy as np

from ..checks import check_product_scale
from ..ciphertext import Ciphertext

Diagonals = dict[int, np.ndarray]  # offset (mod n) -> diagonal vector a_d, (A x)[r] = sum_d a_d[r] x[r + d]


def bit_reverse(v: np.ndarray) -> np.ndarray:
    n = v.shape[-1]
    logn = n.bit_length() - 1
    idx = np.arange(n)
    rev = np.zeros(n, dtype=np.int64)
    for b in range(logn):
        rev |= ((idx >> b) & 1) << (logn - 1 - b)
    return v[..., rev]


@lru_cache(maxsize=None)
def _rot_group(n: int) -> np.ndarray:
    M = 4 * n
    g = np.ones(n, dtype=np.int64)
    for j in range(1, n):
        g[j] = g[j - 1] * 5 % M
    return g


def _xi(n: int, length: int, inverse: bool) -> np.ndarray:
    """Twiddles of the stage of block length `length`: xi_j = zeta^((5^j mod 4len) (M / 4len))."""
    M = 4 * n
    lenq = 4 * length
    r = _rot_group(n)[: length // 2] % lenq
    if inverse:
        r = (lenq - r) % lenq
    return np.exp(2j * np.pi * (r * (M // lenq)) / M)


def decode_stages(n: int) -> list[Diagonals]:
    """The butterfly stages of z = V w for bit-reversed w, in the order they apply (len = 2 .. n)."""
    stages = []
    length = 2
    while length <= n:
        h = length // 2
        xi = np.tile(_xi(n, length, False), n // length)  # per top row
        top = (np.arange(n) % length) < h
        xi_row = np.zeros(n, dtype=np.complex128)
        xi_row[top] = xi
        xi_bottom = np.zeros(n, dtype=np.complex128)
        xi_bottom[~top] = xi
        d: Diagonals = {}
        _acc(d, 0, np.where(top, 1.0, 0.0) - xi_bottom)  # top: u; bottom: -xi v
        _acc(d, h % n, xi_row)  # top rows: + xi x[r + h]
        _acc(d, (-h) % n, np.where(top, 0.0, 1.0).astype(np.complex128))  # bottom rows: + x[r - h]
        stages.append(d)
        length *= 2
    return stages


def encode_stages(n: int) -> list[Diagonals]:
    """The inverse stages (w bit-reversed from z), in the order they apply (len = n .. 2), 1/2 each."""
    stages = []
    length = n
    while length >= 2:
        h = length // 2
        xi = np.tile(_xi(n, length, True), n // length)
        top = (np.arange(n) % length) < h
        xi_bottom = np.zeros(n, dtype=np.complex128)
        xi_bottom[~top] = xi
        d: Diagonals = {}
        _acc(d, 0, 0.5 * (np.where(top, 1.0, 0.0) - xi_bottom))  # top: (u+v)/2; bottom: -(v) xi/2
        _acc(d, h % n, 0.5 * np.where(top, 1.0, 0.0).astype(np.complex128))
        _acc(d, (-h) % n, 0.5 * xi_bottom)  # bottom rows: x[r - h] xi / 2
        stages.append(d)
        length //= 2
    return stages


def _acc(d: Diagonals, k: int, v: np.ndarray) -> None:
    if np.any(v != 0):
        d[k] = d[k] + v if k in d else np.array(v, dtype=np.complex128)


def rot(v: np.ndarray, r: int) -> np.ndarray:
    """Left rotation of a slot vector: rot(v, r)[i] = v[(i + r) mod n]."""
    return np.roll(v, -r, axis=-1)


def apply_plain(d: Diagonals, x: np.ndarray) -> np.ndarray:
    """A x for A in diagonal form (numpy reference)."""
    out = np.zeros_like(x, dtype=np.complex128)
    for k, a in d.items():
        out = out + a * rot(x, k)
    return out


def compose(a: Diagonals, b: Diagonals, n: int) -> Diagonals:
    """Diagonals of A B: (A B)_d = sum_(d1 + d2 = d) a_d1 * rot(b_d2, d1)."""
    out: Diagonals = {}
    for d1, x in a.items():
        for d2, y in b.items():
            _acc(out, (d1 + d2) % n, x * rot(y, d1))
    return {k: v for k, v in out.items() if np.max(np.abs(v)) > 1e-300}


def group(stages: list[Diagonals], budget: int, n: int, mirror: bool = False) -> list[Diagonals]:
    """Merge consecutive stages into `budget` matrices (in application order).

    `mirror` reverses the group sizes: CoeffsToSlots (stages len = n .. 2) grouped with
    mirror=True has exactly the offsets of SlotsToCoeffs (len = 2 .. n) grouped without, so the
    two share every rotation key."""
    if not 1 <= budget <= len(stages):
        raise ValueError(f"level budget must be in [1, {len(stages)}] for {n} slots, got {budget}")
    sizes = [len(stages) // budget + (1 if i < len(stages) % budget else 0) for i in range(budget)]
    if mirror:
        sizes = sizes[::-1]
    out, i = [], 0
    for sz in sizes:
        m = stages[i]
        for s in stages[i + 1 : i + sz]:
            m = compose(s, m, n)  # later stage applies after
        out.append(m)
        i += sz
    return out


@dataclass(frozen=True)
class BSGSPlan:
    """How one diagonal matrix is evaluated: offsets k s split as (g n1 + b) s."""

    step: int
    n1: int
    babies: tuple[int, ...]  # rotation amounts b s
    giants: tuple[int, ...]  # rotation amounts g n1 s
    terms: tuple[tuple[int, int, int], ...]  # (offset, g, b)


def plan(d: Diagonals, n: int) -> BSGSPlan:
    """BSGS split of the offsets of d (an arithmetic progression of step s = their gcd, centred)."""
    ks = sorted(((k + n // 2) % n) - n // 2 for k in d)  # centred offsets
    step = 0
    for k in ks:
        step = np.gcd(step, abs(k))
    step = int(step) or 1
    idx = [k // step for k in ks]
    lo = min(idx)
    span = max(idx) - lo + 1
    n1 = 1 << max(0, (isqrt(span) - 1).bit_length()) if span > 1 else 1
    n1 = max(1, min(n1, span))
    terms = []
    for k, i in zip(ks, idx):
        j = i - lo
        g, b = divmod(j, n1)
        terms.append((k % n, g, b))
    babies = sorted({(b + lo) * step for _, _, b in terms})  # baby rotations include the offset lo
    giants = sorted({g * n1 * step for _, g, _ in terms})
    return BSGSPlan(step, n1, tuple(babies), tuple(giants), tuple((k, g, b) for k, g, b in terms))


def rotations_needed(d: Diagonals, n: int) -> set[int]:
    p = plan(d, n)
    return {r % n for r in p.babies + p.giants if r % n}


class EncodedDiagonals(Mapping):
    """The diagonals of one matrix, each pre-rotated for its giant step (so that the giant rotation
    puts it in place), tiled to N/2 slots (period n) and encoded over Q_l P in NTT form: offset ->
    residues. lazy=True encodes each on first access and keeps none (the memory of one diagonal at a
    time; what apply_linear does without a cache); lazy=False encodes all now and keeps them."""

    def __init__(self, ev, d: Diagonals, n: int, level: int, enc_scale: float, lazy: bool = False):
        self.ev, self.d, self.level, self.enc_scale, self.lazy = ev, d, level, enc_scale, lazy
        self.reps = ev.params.slots // n
        pl = plan(d, n)
        self.shift = {k: g * pl.n1 * pl.step for k, g, _ in pl.terms}
        self.store = {} if lazy else {k: self.encode(k) for k in self.shift}

    def encode(self, k: int) -> np.ndarray:
        diag = np.tile(rot(self.d[k], -self.shift[k]), self.reps)
        return self.ev.encoder.encode_extended(diag, self.level, self.enc_scale)

    def __getitem__(self, k: int) -> np.ndarray:
        return self.encode(k) if self.lazy else self.store[k]

    def __iter__(self):
        return iter(self.shift)

    def __len__(self) -> int:
        return len(self.shift)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.store.values())


def encoding_scale(ct_scale: float, out_scale: float | None, q_l: float) -> float:
    """The scale the diagonals are encoded at so that A x (after the rescale by q_l) has scale
    out_scale exactly (None: encode at q_l, the scale stays ct_scale)."""
    return q_l if out_scale is None else out_scale * q_l / ct_scale


def apply_linear(ev, ct: Ciphertext, d: Diagonals, out_scale: float | None = None, period: int | None = None,
                 encoded: Callable[[int, float], Mapping[int, np.ndarray]] | None = None) -> Ciphertext:
    """A x on a ciphertext: one level (diagonals encoded at q_l, or at the scale that makes the
    result's scale exactly `out_scale`).

    Double hoisting (Bossuat, Mouchet, Troncoso-Pastoriza, Hubaux, EUROCRYPT 2021, section 4.3):
    the baby rotations share one ModUp and stay in Q_l P; each giant step sums its plaintext
    products there, brings only its c_1 down for the giant rotation's ModUp, and the sum of the
    giant steps pays one ModDown. (ModDown merged with the rescale, one division by q_l P, was
    tried: its fast base conversion errs by up to |P| + 1 units where a rescale errs by 1/2, and
    it cost 0.2 bits at N = 2^13.)

    period n < N/2 (sparse packing): A acts on n slots and the slot vector repeats with period
    n; the diagonals (length n) are tiled to N/2 and a rotation by d equals one by d mod n.
    encoded(level, enc_scale): the EncodedDiagonals of d at that level and scale (a cache, ours:
    the Bootstrapper keeps them across bootstraps); None encodes each diagonal when it is used."""
    p = ct.params
    ctx = p.ctx
    n = period or p.slots
    pl = plan(d, n)
    level = ct.level
    full = p.q_basis(level) + p.p_basis
    hoisted = ev.rotate_hoisted_extended(ct, sorted({r % n for r in pl.babies}))  # over Q_l P, times P
    babies = {r: hoisted[r % n] for r in pl.babies}  # a rotation by r equals one by r mod n (period n)
    lo_step = pl.babies[0] if pl.babies else 0
    enc_scale = encoding_scale(ct.scale, out_scale, float(p.q[level]))
    check_product_scale(p, ct.scale * enc_scale, level, "CoeffsToSlots / SlotsToCoeffs")
    pts = encoded(level, enc_scale) if encoded else EncodedDiagonals(ev, d, n, level, enc_scale, lazy=True)
    by_giant: dict[int, list[tuple[int, int]]] = {}
    for k, g, b in pl.terms:
        by_giant.setdefault(g, []).append((k, b))
    acc = None
    for g, items in sorted(by_giant.items()):
        shift = g * pl.n1 * pl.step
        inner = None
        for k, b in items:
            pt = pts[k]
            x0, x1 = babies[lo_step + b * pl.step]
            if inner is None:
                inner = [ctx.mul(x0, pt, full), ctx.mul(x1, pt, full)]
            else:
                ctx.mul_acc(inner[0], x0, pt, full)
                ctx.mul_acc(inner[1], x1, pt, full)
        if shift % n:
            inner = list(ev.rotate_extended(inner[0], inner[1], level, shift % n))
        acc = inner if acc is None else [ctx.add(acc[0], inner[0], full), ctx.add(acc[1], inner[1], full)]
    out = ev.rescale(ev.mod_down_extended(acc[0], acc[1], level, ct.scale * enc_scale))  # level l -> l-1
    target = ct.scale if out_scale is None else out_scale
    return Ciphertext(out.c, out.level, target, out.params)
