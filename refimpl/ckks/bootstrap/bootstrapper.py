"""The CKKS bootstrapper (full-slot packing): ScaleDown -> ModRaise -> CoeffsToSlots -> EvalMod
-> SlotsToCoeffs.

Levels, top down: CoeffsToSlots takes `level_budget[0]` levels, EvalMod the depth of its
Chebyshev cosine plus r double-angle steps, SlotsToCoeffs `level_budget[1]`; the output lands at
`output_level` with scale Delta. Scales are chosen, not assumed: the ModRaise output is read at
scale K q_0 (its slots are then t / (K q_0)), CoeffsToSlots ends at the scale of the prime
EvalMod squares by (so the Chebyshev powers keep their scale), EvalMod's factor
q_0 / (2 pi Delta) is a change of scale, and the last SlotsToCoeffs matrix is encoded so that
the result has scale Delta exactly.

Reference: Cheon, Han, Kim, Kim, Song, EUROCRYPT 2018; Bossuat, Mouchet, Troncoso-Pastoriza,
Hubaux, EUROCRYPT 2021 (ModRaise-first, scale management); OpenFHE ckksrns-fhe.cpp (level
budget, K = 28, degree 44, r = 3 for h = 192).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import erfc, sqrt

import numpy as np

from ...progress import Progress, or_silent
from ...ring.primes import ntt_primes
from ..ciphertext import Ciphertext
from ..errors import ParameterError
from ..keys import conjugation_element, galois_element
from ..params import Parameters, choose_digits
from ..polyeval import poly_depth
from .dft import EncodedDiagonals, apply_linear, decode_stages, encode_stages, encoding_scale, group, rotations_needed
from .eval_mod import EvalModConfig, cosine_coefficients, eval_mod, eval_mod_scale, k_from_hamming_weight
from .mod_raise import mod_raise, scale_down


PRE_SHIFT = 20  # bits by which ModRaise's output is scaled up before CoeffsToSlots


@dataclass(frozen=True)
class BootstrapConfig:
    """Knobs of the bootstrapping circuit (defaults: OpenFHE's for h = 192, level budget 3/3)."""

    level_budget: tuple[int, int] = (3, 3)  # (CoeffsToSlots, SlotsToCoeffs) levels
    K: int | None = None  # None: from the secret's Hamming weight (failure <= 2^log2_failure)
    degree: int | None = None  # Chebyshev degree of the cosine; None: smallest with error <= 2^-45
    double_angle: int | None = None  # None: the r in {2, 3, 4} of least depth, then least error
    log2_failure: float = -25.0  # probability that some |I_k| >= K in one bootstrap

    def resolve(self, N: int, h: int) -> "ResolvedConfig":
        K, fail = (self.K, None) if self.K else k_from_hamming_weight(h, N, self.log2_failure)
        if fail is None:
            fail = _failure(K, h, N)
        if self.double_angle is not None:
            r = self.double_angle
            degree = self.degree or _degree_for(K, r)
        else:
            r, degree = _choose_double_angle(K, self.degree)
        return ResolvedConfig(self.level_budget, EvalModConfig(K, degree, r), fail)


@dataclass(frozen=True)
class ResolvedConfig:
    level_budget: tuple[int, int]
    eval_mod: EvalModConfig
    log2_failure: float
    encapsulation_h: int | None = None  # sparse ephemeral secret of this weight around ModRaise

    @property
    def depth(self) -> int:
        return self.level_budget[0] + self.eval_mod.depth + self.level_budget[1]


def _failure(K: int, h: int, N: int) -> float:
    sd = sqrt((h + 1) / 12)
    return float(np.log2(max(N * erfc((K - 0.5) / (sd * sqrt(2))), 1e-300)))


def _degree_for(K: int, r: int, log2_err: float = -45.0, log2_err_level_saving: float = -42.0) -> int:
    """Smallest degree whose Chebyshev cosine interpolant errs by at most 2^log2_err, or the
    largest degree of one level less (2^(k-1) - 1) if it errs by at most 2^log2_err_level_saving.

    Each double-angle step multiplies the error by up to 4 (d(2c^2 - 1) = 4c dc), and the
    output reads the sine at q_0 / (2 pi Delta) times its size: 2^-45 (near the float64 floor
    of the interpolation) keeps the approximation below the noise; a level is worth 2^3 more."""
    d = 8
    while d < 255 and cosine_coefficients(K, d, r)[1] > 2.0**log2_err:
        d += 1
    cand = (1 << (poly_depth(d) - 1)) - 1
    if cand >= 8 and cosine_coefficients(K, cand, r)[1] <= 2.0**log2_err_level_saving:
        return cand
    return d


def _choose_double_angle(K: int, degree: int | None) -> tuple[int, int]:
    """(r, degree) of least EvalMod depth; ties go to the least amplified error err * 4^r
    (each double angle multiplies the cosine's error by up to 4)."""
    best = None
    for r in (2, 3, 4):
        d = degree or _degree_for(K, r)
        err = cosine_coefficients(K, d, r)[1]
        key = (poly_depth(d) + r, err * 4.0**r)
        if best is None or key < best[0]:
            best = (key, r, d)
    return best[1], best[2]


def bootstrap_parameters(
    N: int,
    levels_after: int,
    h: int = 192,
    config: BootstrapConfig = BootstrapConfig(),
    log_q0: int = 52,
    log_qi: int = 40,
    log_boot: int = 60,
    log_evalmod: int | None = None,
    log_s2c: int = 50,
    log_p: int = 61,
    num_p: int | None = None,
    ks_slack_bits: int = 40,
    encapsulation_h: int | None = None,
    insecure: bool = False,
) -> tuple[Parameters, ResolvedConfig]:
    """A chain for bootstrapping: q_0 | levels_after x log_qi | SlotsToCoeffs x log_s2c |
    EvalMod x log_evalmod | CoeffsToSlots x log_boot; sparse secret of weight h.

    q_0 / Delta sets the trade-off of EvalMod: its error is multiplied by q_0 / (2 pi Delta)
    (smaller is better), while sin(2 pi eps) / (2 pi) ~ eps needs eps = Delta m_k / q_0 small
    (relative error (2 pi eps)^2 / 6 on coefficient m_k). Uniform random slots have small
    coefficients (~ slots / sqrt(N/2)), so on them a smaller q_0 looks better (N = 2^14, dense
    secret: q_0 = 2^48 -> 25.5 mean bits, 2^52 -> 23.0); but a constant vector puts its whole
    value into one coefficient, and there 2^48 falls to 13.7 bits while 2^52 keeps 22.1.
    log_q0 = 52 is the robust choice (tests: CKKS-BOOT-Q0)."""
    if encapsulation_h:  # dense main secret (HE-standard bound); K from the ephemeral weight
        rc = config.resolve(N, encapsulation_h)
        rc = ResolvedConfig(rc.level_budget, rc.eval_mod, rc.log2_failure, encapsulation_h)
    else:
        rc = config.resolve(N, h)
    c2s, s2c = rc.level_budget
    em = rc.eval_mod.depth
    counts = [(log_q0, 1), (log_qi, levels_after), (log_s2c, s2c), (log_evalmod or log_boot, em), (log_boot, c2s)]
    taken: list[int] = []
    num_p = num_p or 2
    p = ntt_primes(log_p, N, num_p)
    taken += p
    chain = []
    for bits, count in counts:
        if count:
            new = ntt_primes(bits, N, count, exclude=tuple(taken))
            chain += new
            taken += new
    # key-switching noise in CoeffsToSlots is amplified by K q0 / Delta (~2^25) in EvalMod:
    # keep every digit at least 2^ks_slack_bits below P
    digits = choose_digits(tuple(chain), _prod(p), slack_bits=ks_slack_bits)
    params = Parameters(
        N=N, q=tuple(chain), p=tuple(p), scale=2.0**log_qi, digits=digits,
        secret="ternary" if encapsulation_h else "sparse", h=None if encapsulation_h else h,
        insecure=insecure, name=f"boot-2^{N.bit_length() - 1}",
    )
    return params, rc


def _prod(xs):
    out = 1
    for x in xs:
        out *= x
    return out


BOOTSTRAP_PRESETS = {
    # 128-bit by Lattigo's estimate for h = 192 (log2 PQ <= 1546, refimpl/constants.toml); keys kept
    # as b plus seeds (KeyGenerator(expand_keys=False)) to fit the memory of one machine
    "128-2^16": dict(N=2**16, levels_after=11, h=192, log_s2c=40, num_p=3, ks_slack_bits=20),
    # dense main secret (HE standard: log2 PQ <= 1761) with an h = 32 secret only around
    # ModRaise (sparse-secret encapsulation): K = 13 instead of 30. Measured: 18 levels after,
    # 20.0 mean bits; with 35-bit SlotsToCoeffs primes 19 levels fit (log2 PQ = 1760): 20.1 mean
    # bits since SlotsToCoeffs spreads its scale drop (19.7 before; results/ckks/bootstrap_128-2^16-dense19.json)
    "128-2^16-dense": dict(N=2**16, levels_after=18, encapsulation_h=32, log_s2c=40, num_p=3, ks_slack_bits=20),
    "128-2^16-dense19": dict(N=2**16, levels_after=19, encapsulation_h=32, log_s2c=35, num_p=3, ks_slack_bits=20),
    "toy-2^10-dense": dict(N=2**10, levels_after=3, encapsulation_h=32, num_p=3, insecure=True),
    "toy-2^10-deep": dict(N=2**10, levels_after=18, encapsulation_h=32, num_p=3, insecure=True),  # NEXUS blocks, fast
    # 128-2^16-dense19's chain and encapsulation on an insecure N = 2^13 ring: BERT-base widths at n = 16 tokens
    "toy-2^13-dense19": dict(N=2**13, levels_after=19, encapsulation_h=32, log_s2c=35, num_p=3, ks_slack_bits=20,
                             insecure=True),
    # toy rings (insecure) for tests and the demo
    "toy-2^10": dict(N=2**10, levels_after=3, h=64, num_p=3, insecure=True),
    "toy-2^12": dict(N=2**12, levels_after=3, h=192, num_p=3, insecure=True),
    "toy-2^13": dict(N=2**13, levels_after=6, h=192, num_p=3, insecure=True),
}


def bootstrap_preset(name: str, config: BootstrapConfig = BootstrapConfig()) -> tuple[Parameters, ResolvedConfig]:
    """A named bootstrapping parameter set (see BOOTSTRAP_PRESETS)."""
    if name not in BOOTSTRAP_PRESETS:
        raise ParameterError(f"unknown bootstrapping preset {name!r}; known: {', '.join(BOOTSTRAP_PRESETS)}")
    return bootstrap_parameters(config=config, **BOOTSTRAP_PRESETS[name])


class Bootstrapper:
    """Refreshes a ciphertext's levels without the secret key (it holds only evaluation keys)."""

    STAGES = ("ModRaise", "CoeffsToSlots", "EvalMod", "SlotsToCoeffs")

    def __init__(self, ev, config: ResolvedConfig, slots: int | None = None, encapsulation=None,
                 progress: Progress | None = None, cache_diagonals: bool = True):
        """encapsulation: (key s -> s' at level 0, key s' -> s) from KeyGenerator.encapsulation_keys,
        required when the configuration encapsulates (dense main secret); progress: refimpl.progress's
        callback, called at each stage boundary of every bootstrap ("bootstrap: <stage>", done, 4);
        cache_diagonals: keep the encoded diagonals of CoeffsToSlots and SlotsToCoeffs across
        bootstraps (see precompute; False encodes them in every bootstrap, one at a time, for
        machines short of memory)."""
        self.encapsulation = encapsulation
        self.progress = progress
        self.ev = ev
        self.params: Parameters = ev.params
        self.config = config
        p = self.params
        n = p.slots if slots is None else int(slots)
        if n < 2 or n & (n - 1) or n > p.slots:
            raise ParameterError(f"slots must be a power of two in [2, N/2 = {p.slots}], got {slots}")
        self.slots = n  # sparse packing when n < N/2: the slot vector repeats with period n
        c2s, s2c = config.level_budget
        if config.depth > p.L:
            raise ParameterError(f"bootstrapping needs {config.depth} levels, the chain has {p.L}")
        self.c2s = group(encode_stages(n), c2s, n, mirror=(c2s == s2c))
        self.s2c = group(decode_stages(n), s2c, n)
        self.input_level = 0
        self.output_level = p.L - config.depth
        self.output_scale = p.scale
        self.calls = 0
        self.cache_diagonals = cache_diagonals
        self.diagonals: dict[tuple, EncodedDiagonals] = {}  # (stage, group, level, encoding scale) -> kept
        self.encoded_in_bootstrap = 0  # matrices encoded while bootstrapping (not found in the cache)
        self.planned = self._planned_matrices()

    # -- the encoded diagonals, kept (ours; OpenFHE's EvalBootstrapSetup precomputes them likewise)
    def _schedule(self, in_scale: float, out_scale: float, level: int, groups: int) -> list[tuple[int, float, float]]:
        """(level, encoding scale, output scale) of each group of a linear stage from in_scale to
        out_scale: the scale moves by the same factor in every group (coeffs_to_slots, slots_to_coeffs)."""
        ratio = (out_scale / in_scale) ** (1.0 / groups)
        s, out = in_scale, []
        for i in range(groups):
            target = out_scale if i == groups - 1 else s * ratio
            out.append((level - i, encoding_scale(s, target, float(self.params.q[level - i])), target))
            s = target
        return out

    def _raised_scale(self) -> float:
        """The scale ModRaise's output is read at: its slots are then t / (K q_0)."""
        p = self.params
        return float(self.config.eval_mod.K) * p.q[0] * (p.slots // self.slots) * 2.0**PRE_SHIFT

    def _eval_mod_in_scale(self) -> float:
        """CoeffsToSlots ends at q/2 with q the prime EvalMod squares by; Re and Im come out at q."""
        return float(self.params.q[self.params.L - self.config.level_budget[0]]) / 2

    def _planned_matrices(self) -> dict[tuple, dict]:
        """Every (stage, group, level, encoding scale) a bootstrap of a ciphertext at scale Delta
        uses, with its matrix. CoeffsToSlots' scales are fixed by the chain; SlotsToCoeffs' follow
        the input's scale (EvalMod's output reads the message at a scale proportional to it), so
        they are planned for Delta and any other input scale encodes its SlotsToCoeffs afresh."""
        p, cfg = self.params, self.config
        em_level = p.L - cfg.level_budget[0]
        out: dict[tuple, dict] = {}
        c2s = self._schedule(self._raised_scale(), self._eval_mod_in_scale(), p.L, len(self.c2s))
        w_scale = eval_mod_scale(p, em_level, 2 * self._eval_mod_in_scale(), cfg.eval_mod, p.q[0], p.scale)
        s2c = self._schedule(w_scale, self.output_scale, self.output_level + len(self.s2c), len(self.s2c))
        for stage, mats, sched in (("C2S", self.c2s, c2s), ("S2C", self.s2c, s2c)):
            for i, (d, (level, enc_scale, _)) in enumerate(zip(mats, sched)):
                out[(stage, i, level, enc_scale)] = d
        return out

    def _encoded(self, stage: str, i: int, d: dict):
        """apply_linear's `encoded`: the kept diagonals if planned (encoded now if not yet), else lazily."""
        def get(level: int, enc_scale: float) -> EncodedDiagonals:
            key = (stage, i, level, enc_scale)
            hit = self.diagonals.get(key)
            if hit is None:
                keep = self.cache_diagonals and key in self.planned
                hit = EncodedDiagonals(self.ev, d, self.slots, level, enc_scale, lazy=not keep)
                if keep:
                    self.diagonals[key] = hit
                self.encoded_in_bootstrap += 1
            return hit
        return get

    def precompute(self) -> int:
        """Encode every planned diagonal now (setup, outside the bootstraps; a no-op without the
        cache): returns the bytes they take (over Q_l P, NTT form, at each group's level)."""
        if self.cache_diagonals:
            for (stage, i, level, enc_scale), d in self.planned.items():
                key = (stage, i, level, enc_scale)
                if key not in self.diagonals:
                    self.diagonals[key] = EncodedDiagonals(self.ev, d, self.slots, level, enc_scale)
        return self.diagonal_bytes

    @property
    def diagonal_bytes(self) -> int:
        return sum(e.nbytes for e in self.diagonals.values())

    # -- what a client must generate keys for
    def rotations(self) -> list[int]:
        n = self.slots
        rs: set[int] = set(self._sub_sum_rotations())
        for d in self.c2s + self.s2c:
            rs |= rotations_needed(d, n)
        return sorted(rs)

    def _sub_sum_rotations(self) -> list[int]:
        """n 2^i for i < log2(N / 2n): the rotations of the sparse-packing trace."""
        out, r = [], self.slots
        while r < self.params.slots:
            out.append(r)
            r *= 2
        return out

    def sub_sum(self, ct: Ciphertext) -> Ciphertext:
        """Sparse packing: sum_j rot(ct, j n) for j < N/2n (log2(N/2n) rotations, 0 levels).

        ModRaise leaves q0 I outside the subring Z[X^(N/2n)] that holds the message; this trace
        keeps the subring part times N/2n and cancels the rest (Cheon et al. 2018, SubSum)."""
        for r in self._sub_sum_rotations():
            ct = self.ev.add(ct, self.ev.rotate(ct, r))
        return ct

    def galois_elements(self) -> list[int]:
        p = self.params
        return sorted({galois_element(p, r) for r in self.rotations()} | {conjugation_element(p)})

    def galois_levels(self) -> dict[int, int]:
        """Element -> the highest level bootstrapping applies it at: SubSum and CoeffsToSlots at
        the top (group i at L - i), the conjugation after CoeffsToSlots, SlotsToCoeffs group i
        at output_level + s2c - i. A key need not cover more (KeyGenerator.galois_key(level=))."""
        p, n = self.params, self.slots
        out: dict[int, int] = {}

        def use(r_or_k, level, element=False):
            k = r_or_k if element else galois_element(p, r_or_k)
            out[k] = max(out.get(k, -1), level)

        for r in self._sub_sum_rotations():
            use(r, p.L)
        for i, d in enumerate(self.c2s):
            for r in rotations_needed(d, n):
                use(r, p.L - i)
        use(conjugation_element(p), p.L - len(self.c2s), element=True)
        for i, d in enumerate(self.s2c):
            for r in rotations_needed(d, n):
                use(r, self.output_level + len(self.s2c) - i)
        assert sorted(out) == self.galois_elements()
        return out

    # -- the stages
    def coeffs_to_slots(self, ct: Ciphertext, out_scale: float) -> Ciphertext:
        """Slots of t -> bit-reversed w_k = t_k + i t_(k+n); c2s levels.

        The scale moves from ct.scale to out_scale by the same factor in every group, so that
        every diagonal is encoded at about q_l (out_scale / ct.scale)^(1/groups), never at a
        small scale that would round its entries coarsely."""
        sched = self._schedule(ct.scale, out_scale, ct.level, len(self.c2s))
        for i, (d, (_, _, target)) in enumerate(zip(self.c2s, sched)):
            ct = apply_linear(self.ev, ct, d, out_scale=target, period=self.slots, encoded=self._encoded("C2S", i, d))
        return ct

    def slots_to_coeffs(self, ct: Ciphertext) -> Ciphertext:
        """Bit-reversed slots -> coefficients; s2c levels, ending at scale Delta exactly.

        EvalMod leaves the scale at about q / (q_0 / (2 pi Delta)), some 2^10 above Delta: the
        drop is spread evenly over the groups (as in coeffs_to_slots), so that no diagonal is
        encoded at a scale 2^10 below its prime (measured at N = 2^14 with 35-bit primes:
        21.3 -> 23.0 mean bits)."""
        sched = self._schedule(ct.scale, self.output_scale, ct.level, len(self.s2c))
        for i, (d, (_, _, target)) in enumerate(zip(self.s2c, sched)):
            ct = apply_linear(self.ev, ct, d, out_scale=target, period=self.slots, encoded=self._encoded("S2C", i, d))
        return ct

    def bootstrap(self, ct: Ciphertext) -> Ciphertext:
        """A new ciphertext of the same slots at `output_level` and scale Delta (ct is not modified)."""
        ev, p, cfg = self.ev, self.params, self.config
        self.calls += 1
        say, stages = or_silent(self.progress), self.STAGES
        say(f"bootstrap: {stages[0]}", 0, len(stages))
        delta_in = ct.scale
        low = scale_down(ev, ct)  # level -> 0
        q0 = p.q[0]
        if cfg.encapsulation_h:
            if self.encapsulation is None:
                raise ParameterError("this bootstrapping configuration needs the encapsulation keys (KeyGenerator.encapsulation_keys)")
            low = ev.switch_key(low, self.encapsulation[0])  # under the sparse s' at level 0: small I
        raised = mod_raise(low, p)  # decrypts to t = Delta m + e + q0 I over Q_L
        # scale the integers up by 2^PRE_SHIFT (free at the top level, where Q is huge): the
        # rounding noise of what follows (the switch back to s, CoeffsToSlots) shrinks by as
        # much relative to t, and EvalMod amplifies it by K q0 / Delta
        raised = ev.mul_int(raised, 1 << PRE_SHIFT)
        if cfg.encapsulation_h:
            raised = ev.switch_key(raised, self.encapsulation[1])  # back under s, at level L
        raised = self.sub_sum(raised)  # sparse packing: the subring part times N/2n
        raised = Ciphertext(raised.c, raised.level, self._raised_scale(), p)  # slots: t / (K q0)
        say(f"bootstrap: {stages[1]}", 1, len(stages))
        u = self.coeffs_to_slots(raised, out_scale=self._eval_mod_in_scale())
        conj = ev.conjugate(u)
        re = ev.add(u, conj)  # 2 Re(u) at scale q/2  ->  Re(u) at scale q
        im = ev.negate(ev.mul_monomial(ev.sub(u, conj), p.N // 2))  # -i (u - conj u) = 2 Im(u)
        re = Ciphertext(re.c, re.level, 2 * u.scale, p)
        im = Ciphertext(im.c, im.level, 2 * u.scale, p)
        say(f"bootstrap: {stages[2]}", 2, len(stages))
        v_re = eval_mod(ev, re, cfg.eval_mod, q0, delta_in)
        v_im = eval_mod(ev, im, cfg.eval_mod, q0, delta_in)
        w = ev.add(v_re, ev.mul_monomial(v_im, p.N // 2))  # v_re + i v_im
        say(f"bootstrap: {stages[3]}", 3, len(stages))
        out = self.slots_to_coeffs(w)
        say("bootstrap", len(stages), len(stages))
        return out

    def describe(self) -> str:
        cfg = self.config
        return (
            f"bootstrap: K = {cfg.eval_mod.K}, cosine degree {cfg.eval_mod.degree}, r = {cfg.eval_mod.double_angle}, "
            f"levels C2S {cfg.level_budget[0]} + EvalMod {cfg.eval_mod.depth} + S2C {cfg.level_budget[1]} = {cfg.depth}; "
            f"output level {self.output_level} of {self.params.L}; failure probability 2^{cfg.log2_failure:.0f}; "
            f"{len(self.galois_elements())} Galois keys; log2(PQ) = {self.params.log_qp:.0f}"
            + (f"; sparse-secret encapsulation h = {cfg.encapsulation_h}" if cfg.encapsulation_h else "")
        )
