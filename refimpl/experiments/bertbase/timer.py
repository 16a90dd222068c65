"""BERT-base at n = 128: one timed instance of each block kind at its planned level (BlockTimer), and
the GELU error probe. See the package docstring (refimpl.experiments.bertbase) for the scaling.
"""

from __future__ import annotations

import gc
import math
import os
import time

import numpy as np

from ...bert import functional as F
from ...ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from ...ckks.bootstrap.oracle import OracleBootstrapper
from ...ckks.keys import EvaluationKeys, galois_element
from ...cli.progress import Bars
from ...measure import peak_rss_mib
from ...nexus import bert as nb
from ...ring.sampling import RandomSource
from .plan import BERT_BASE, N_TOKENS, blocks, config, shipped_ranges, synthetic_model, widest_ranges

def _now() -> np.ndarray:
    """(wall, process CPU) seconds; the CPU time counts every thread of this process: on a loaded machine it
    is what the work took, the wall time what it took here."""
    return np.array([time.perf_counter(), time.process_time()])


class TimedForward(nb.Forward):
    """The forward's kernels, with the refreshes the plan puts inside a block timed apart."""

    refresh_s = 0.0

    def refresh(self, ct, bound, precise=False):
        t = _now()
        out = super().refresh(ct, bound, precise)
        self.refresh_s += _now() - t
        return out


class _LazyKeys(dict):
    """Galois keys by element; a key the block's list missed is generated on use and recorded."""

    def __init__(self, make, keys):
        super().__init__(keys)
        self.make, self.missed = make, []

    def get(self, k, default=None):
        if k not in self:
            self.missed.append(k)
            self[k] = self.make(k)
        return self[k]


class BlockTimer:
    """One instance of each block kind on real ciphertexts, at the levels of the plan (see the module docstring).

    params, rc: a bootstrapping parameter set (the plan's top level = rc's output level); model: a
    NexusModel whose config has the block sizes; n tokens (all real); shifts: the key shifts of Q K^T
    and P V to run (default all n_pad); limb_s, boot_s: time the blocks of the time-weighted plan (blocks())."""

    def __init__(self, params, rc, model: nb.NexusModel, n: int, *, shifts=None, seed: int = 0, bootstrap_level=None,
                 limb_s: dict[str, float] | None = None, boot_s: float | None = None):
        self.params, self.model, self.n = params, model, n
        self.info = blocks(model, n, (params, rc) if bootstrap_level is None else params,
                           bootstrap_level=bootstrap_level, limb_s=limb_s, boot_s=boot_s)
        self.lay, self.rows = self.info["layout"], self.info["rows"]
        if not self.lay.head_rows:
            raise ValueError(f"BlockTimer times the head_rows layout (attention rows longer than a head); rows of "
                             f"{self.lay.n_pad} keys fit a head of {self.lay.head_dim} slots: use refimpl.nexus.bert's forward")
        self.top = self.info["top"]
        self.index = {r["block"]: j for j, r in enumerate(self.rows)}
        lay = self.lay
        self.shifts = list(range(lay.n_pad)) if shifts is None else sorted(shifts)
        if not self.shifts or min(self.shifts) < 0 or max(self.shifts) >= lay.n_pad:
            raise ValueError(f"key shifts must lie in [0, {lay.n_pad}), got {shifts}")
        self.kg = KeyGenerator(params, RandomSource.insecure_seeded(seed + 1))
        self.sk = self.kg.secret_key()
        full = tuple(range(len(params.q) + len(params.p)))
        self.relin = self.kg.switching_key(self.sk, params.ctx.mul(self.sk.s_ntt, self.sk.s_ntt, full), self.top)
        self.enc, self.D = Encoder(params), Decryptor(self.sk)
        self.E = Encryptor(self.kg.public_key(self.sk), RandomSource.insecure_seeded(seed + 2))
        self.oracle = OracleBootstrapper(self.sk, output_level=self.top, rng=RandomSource.insecure_seeded(seed + 3))
        self.rng = np.random.default_rng(seed + 4)
        self.mask = np.ones(n)
        self.p = f"L{self.info['layer']}."

    # -- helpers
    def forward(self, steps, level: int) -> TimedForward:
        """A forward whose evaluator holds the relinearization key and the Galois keys of `steps` at `level`."""
        elts = sorted({galois_element(self.params, r) for r in steps if r % self.params.slots})
        made = {}
        with Bars() as bars:  # minutes at N = 2^16: a bar on stderr, on a terminal only
            for k in elts:
                bars("Galois keys", len(made), len(elts))
                made[k] = self.kg.galois_key(self.sk, k, level)
            bars("Galois keys", len(elts), len(elts))
        keys = _LazyKeys(lambda k: self.kg.galois_key(self.sk, k, self.top), made)
        ev = Evaluator(self.params, EvaluationKeys(relin=self.relin, galois=keys))
        return TimedForward(ev, self.oracle, self.model, self.lay, self.mask, self.rows, self.info["pieces"], None)

    def row(self, piece: str) -> dict:
        return self.rows[self.index[self.p + piece] if not piece == "head" else self.index["head"]]

    def before(self, piece: str) -> int:
        """The level the stream has when it reaches `piece` (the previous piece's exit level)."""
        j = self.index[self.p + piece] if piece != "head" else self.index["head"]
        return self.rows[j - 1]["level_out"] if j else self.top

    def encrypt(self, v: np.ndarray, level: int):
        return self.E.encrypt(self.enc.encode(v, level=level))

    def decrypt(self, ct) -> np.ndarray:
        return self.enc.decode(self.D.decrypt(ct)).real

    def _at(self, fw, piece: str):
        fw.i = self.index[self.p + piece] if piece != "head" else self.index["head"]
        fw.refresh_s = 0.0

    def _result(self, kind, instance, wall_s, fw, count, err, ref_max, note="", layer_s=None):
        """instance_s = the instance's wall time minus the oracle refreshes inside it; seconds = per layer
        (instance_s x count, or layer_s when the scaling is not one product)."""
        missed = len(fw.ev.keys.galois.missed)
        inst = np.asarray(wall_s - fw.refresh_s, dtype=float) * np.ones(2)  # (wall, CPU)
        lay_s = inst * count if layer_s is None else np.asarray(layer_s, dtype=float) * np.ones(2)
        return {"kind": kind, "instance": instance, "instance_s": round(float(inst[0]), 3),
                "instance_cpu_s": round(float(inst[1]), 3), "count_per_layer": count,
                "seconds": round(float(lay_s[0]), 3), "cpu_seconds": round(float(lay_s[1]), 3),
                "refreshes_inside_excluded_s": round(float(np.asarray(fw.refresh_s).ravel()[0]), 3),
                "max_err": float(err),
                "max_abs_reference": float(ref_max), "note": note + (f"; {missed} Galois keys generated during the "
                                                                    f"timing (time inflated)" if missed else "")}

    # -- linear layers
    def linear(self, piece: str, kind: str, c_in: int, c_out: int, calls: int = 1) -> dict:
        """One P x P block of the ct-pt product (Forward.linear, 1 chunk -> 1 chunk) at the planned level,
        split by separate timings of its hoisted baby steps (per input chunk) and its P/g - 1 giant-step
        rotations (per output chunk: the inner sums over input chunks are rotated once); a call of
        c_in -> c_out chunks costs c_in T_baby + c_out T_giant + c_in c_out (T_block - T_baby - T_giant), with
        T_baby and T_giant scaled per rotation to the call's own g (nb.bsgs_baby: c_in g' baby rotations,
        c_out (P/g' - 1) giant ones)."""
        lay = self.lay
        P, g = lay.chunk, lay.baby
        level = self.before(piece)
        steps = sorted(nb.linear_steps(P, g))
        fw = self.forward(steps, self.row(piece)["level_in"])
        self._at(fw, piece)
        x = self.rng.normal(0, 1, (lay.n, P))
        W, b = self.rng.normal(0, 1 / math.sqrt(P), (P, P)), self.rng.normal(0, 0.1, P)
        (ct,) = fw.enter(self.p + piece, [self.encrypt(nb.pack(x, lay)[0], level)])
        fw.refresh_s = 0.0  # the planned refresh at entry is charged as a bootstrap, not timed here
        ev = fw.ev
        t = _now()
        ev.rotate_hoisted(ev.add(ct, ev.rotate(ct, -P)), list(range(g)))  # the baby steps of one input chunk
        t_baby = _now() - t
        t = _now()
        for gb in range(1, P // g):
            ev.rotate(ct, gb * g)  # the giant steps of one output chunk (at the input level, before the rescale)
        t_giant = _now() - t
        t = _now()
        (y,) = fw.linear([ct], W, b)
        t_block = _now() - t
        ref = x @ W.T + b
        err = np.max(np.abs(nb.unpack([self.decrypt(y)], lay, P) - ref))
        t_diag = np.maximum(t_block - t_baby - t_giant, 0.0)  # encode, multiply the P diagonals, sums, rescale, bias
        gc = nb.bsgs_baby(P, c_in, c_out)  # the call's baby steps: per-rotation times scaled to them
        t_baby, t_giant = t_baby * (gc / g), t_giant * ((P // gc - 1) / max(P // g - 1, 1))
        per_call = c_in * t_baby + c_out * t_giant + c_in * c_out * t_diag
        r = self._result(kind, f"1 -> 1 chunk of {P} features ({P} diagonals, baby and giant steps), "
                               f"level {ct.level}",
                         t_block, fw, {"calls": calls, "baby_steps": calls * c_in, "giant_steps": calls * c_out,
                                       "blocks": calls * c_in * c_out},
                         err, np.max(np.abs(ref)),
                         f"{calls} x ({c_in} x baby {t_baby[0]:.2f} s + {c_out} x giant {t_giant[0]:.2f} s + "
                         f"{c_in} x {c_out} x diagonals {t_diag[0]:.2f} s)",
                         layer_s=calls * per_call)
        r.update(t_baby=round(float(t_baby[0]), 3), t_giant=round(float(t_giant[0]), 3),
                 t_diagonals=round(float(t_diag[0]), 3), scaled=True)
        return r

    # -- attention
    def _scores_ref(self, q, k, scale):
        """[heads of chunk 0, n, n] = Q_h K_h^T scale from the chunk's [n, P] features."""
        dh, per = self.lay.head_dim, len(nb.SlotVectors(self.lay, self.mask).heads(0))
        return np.stack([q[:, h * dh:(h + 1) * dh] @ k[:, h * dh:(h + 1) * dh].T * scale for h in range(per)])

    def _rows(self, s: np.ndarray, shifts) -> np.ndarray:
        """One head's rows in the head_rows layout: slot t w + r = s[t, (t + r) mod n_pad] for r in shifts."""
        lay = self.lay
        v = np.zeros((lay.slots // lay.window, lay.window))
        sp = np.zeros((lay.n, lay.n_pad))
        sp[:, : lay.n] = s
        for r in shifts:
            v[: lay.n, r] = sp[np.arange(lay.n), (np.arange(lay.n) + r) % lay.n_pad]
        return v.ravel()

    def qk(self) -> dict:
        """Q K^T of chunk 0 (its heads) over the timer's key shifts (Forward.head_scores)."""
        lay = self.lay
        P, w, dh, n_pad = lay.chunk, lay.window, lay.head_dim, lay.n_pad
        per = P // dh
        steps = [r * w for r in self.shifts] + [1 << k for k in range(dh.bit_length() - 1)] + \
                [hl * dh - r for hl in range(per) for r in self.shifts] + [-n_pad * w]
        level = self.before("qk")
        fw = self.forward(steps, level)
        self._at(fw, "qk")
        fw.enter(self.p + "qk", [])
        q, k = self.rng.normal(0, 1, (lay.n, P)), self.rng.normal(0, 1, (lay.n, P))
        qc, kc = (self.encrypt(nb.pack(a, lay)[0], level) for a in (q, k))
        t = _now()
        S = fw.head_scores(qc, kc, 0, 1 / math.sqrt(dh), 0.0, shifts=self.shifts)
        secs = _now() - t
        fw.leave(self.p + "qk", fw.to_plan(S))  # a plan for the lazy head pairs (chain.qk_levels) gives qk more
        ref = self._scores_ref(q, k, 1 / math.sqrt(dh))
        err = max(np.max(np.abs(self.decrypt(s) - self._rows(ref[h], self.shifts))) for h, s in enumerate(S))
        frac = n_pad / len(self.shifts)
        return self._result("Q K^T", f"chunk 0 ({per} heads) over {len(self.shifts)} of {n_pad} key shifts, "
                                     f"level {level}",
                            secs, fw, lay.chunks(lay.d) * frac, err, np.max(np.abs(ref)),
                            f"x {lay.chunks(lay.d)} chunks x {n_pad}/{len(self.shifts)} shifts") | {"scaled": True}

    def softmax(self) -> dict:
        """Softmax over the rows of one head's score ciphertext (Forward.softmax_pieces: QuickMax
        rounds, exp, QuickSum, Goldschmidt, product), refreshes as planned (oracle, time excluded)."""
        lay, st = self.lay, self.model.settings()
        n_pad, B = lay.n_pad, st["B"]
        folds = [1 << k for k in range(n_pad.bit_length() - 1)]
        fw = self.forward([-n_pad, *folds, *(-r for r in folds)], self.top)
        self._at(fw, "softmax.round0")
        heads = 2 if lay.pair_rows else 1  # pair_rows: two heads' rows per ciphertext (refimpl.nexus.bert.packing)
        s = [self.rng.uniform(-B / 4, B / 4, (lay.n, lay.n)) for _ in range(heads)]
        rows = [np.roll(self._rows(sh, range(n_pad)), h * n_pad) for h, sh in enumerate(s)]
        ct = self.encrypt(sum(rows) / st["score_unit"], self.before("softmax.round0"))  # as Q K^T leaves them
        t = _now()
        (out,) = fw.softmax_pieces(self.info["layer"], [ct])
        secs = _now() - t
        keys = np.ones(n_pad) * np.r_[np.ones(lay.n), np.zeros(n_pad - lay.n)]
        ref = sum(np.roll(self._rows(nb.softmax_model(sh[None], keys, n_pad, B, st["exp_r"], paired=lay.pair_rows)[0], range(n_pad)), h * n_pad)
                  for h, sh in enumerate(s))
        err = np.max(np.abs(self.decrypt(out) - ref))
        return self._result("Softmax", f"1 score ciphertext ({heads} head(s), {lay.n} rows of {n_pad} keys each)", secs,
                            fw, lay.score_cts, err, 1.0, f"x {lay.score_cts} score ciphertexts") | {"scaled": True}

    def quad2(self) -> dict:
        """2Quad-freeDiv's square ((s + c)/sqrt(f))^2 on one head's score ciphertext (f(n) folded into Q K^T's mask)."""
        lay = self.lay
        fw = self.forward([], self.top)
        self._at(fw, "2quad")
        s = self.rng.uniform(-2, 2, (lay.n, lay.n))
        v = self._rows(s, range(lay.n_pad))
        (ct,) = fw.enter(self.p + "2quad", [self.encrypt(v, self.before("2quad"))])
        fw.refresh_s = 0.0  # a refresh at entry is charged as a bootstrap
        t = _now()
        out = fw.ev.rescale(fw.ev.square(ct))
        secs = _now() - t
        fw.leave(self.p + "2quad", [out])
        err = np.max(np.abs(self.decrypt(out) - v * v))
        return self._result("2Quad-freeDiv", "1 score ciphertext (square)", secs, fw, lay.score_cts, err,
                            np.max(v * v), f"x {lay.score_cts} score ciphertexts") | {"scaled": True}

    def pv(self) -> dict:
        """P V of chunk 0 (its heads' probabilities times V) over the timer's key shifts (Forward.pv)."""
        lay = self.lay
        P, w, dh, n_pad = lay.chunk, lay.window, lay.head_dim, lay.n_pad
        per = P // dh
        steps = [r * w for r in self.shifts] + [-(1 << k) for k in range(dh.bit_length() - 1)] + \
                [r + o - hl * dh for hl in range(per) for r in self.shifts for o in (0, n_pad)] + [-n_pad * w]
        fw = self.forward(steps, max(self.row("qkv")["level_out"], self.row("pv.mask")["level_in"]))  # V, P's columns
        self._at(fw, "pv.mask")
        probs = [self.rng.uniform(0, 1, (lay.n, lay.n)) for _ in range(per)]
        V = self.rng.normal(0, 1, (lay.n, P))
        lv = self.before("pv.mask")
        pc = [self._rows(pr, range(n_pad)) for pr in probs]
        if lay.pair_rows:  # two heads per ciphertext (refimpl.nexus.bert.packing)
            pc = [pc[k] + (np.roll(pc[k + 1], n_pad) if k + 1 < len(pc) else 0) for k in range(0, len(pc), 2)]
        pc = [self.encrypt(v, lv) for v in pc]
        vc = self.encrypt(nb.pack(V, lay)[0], self.row("qkv")["level_out"])
        t = _now()
        (out,) = fw.pv(self.info["layer"], pc, [vc], shifts=self.shifts)
        secs = _now() - t
        ref = np.zeros((lay.n, P))
        idx = np.arange(lay.n)
        for h, pr in enumerate(probs):
            for r in self.shifts:
                j = (idx + r) % n_pad
                ok = j < lay.n
                ref[ok, h * dh:(h + 1) * dh] += pr[idx[ok], j[ok]][:, None] * V[j[ok], h * dh:(h + 1) * dh]
        err = np.max(np.abs(nb.unpack([self.decrypt(out)], lay, P) - ref))
        frac = n_pad / len(self.shifts)
        return self._result("P V", f"chunk 0 ({per} heads) over {len(self.shifts)} of {n_pad} key shifts",
                            secs, fw, lay.chunks(lay.d) * frac, err, np.max(np.abs(ref)),
                            f"x {lay.chunks(lay.d)} chunks x {n_pad}/{len(self.shifts)} shifts") | {"scaled": True}

    # -- LayerNorm, activations, head
    def layernorm(self, which: str) -> dict:
        """residual + LayerNorm over n x d (the whole block: join, sums, 1/sqrt, gamma, beta; Forward.layernorm)."""
        lay = self.lay
        P, d = lay.chunk, lay.d
        name = self.p + which
        alpha, lo, hi, newton = self.model.settings()["ln"][name]
        fw = self.forward([-P, *(1 << k for k in range(P.bit_length() - 1))], self.row(which)["level_in"])
        self._at(fw, which)
        var = np.exp(self.rng.uniform(math.log(2 * lo), math.log(0.5 * hi), lay.n)) / alpha**2  # alpha^2 var: [lo, hi]
        s = self.rng.normal(0, 1, (lay.n, d))
        s = (s - s.mean(axis=1, keepdims=True)) / s.std(axis=1, keepdims=True) * np.sqrt(var)[:, None] \
            + self.rng.normal(0, 1, (lay.n, 1))  # the sum x + residual: exactly this variance per token
        xb = self.rng.normal(0, 1, (lay.n, d)) * np.sqrt(var / 2)[:, None]
        xa = s - xb
        gamma, beta = self.rng.uniform(0.5, 1.5, d), self.rng.normal(0, 0.1, d)
        prev = self.before(which)
        resid = self.row("qkv" if which == "ln1" else "ffn1")["level_in"]
        A = [self.encrypt(v, prev) for v in nb.pack(xa, lay)]
        Bc = [self.encrypt(v, resid) for v in nb.pack(xb, lay)]
        t = _now()
        s1 = fw.enter(name, [fw.join(u, v) for u, v in zip(A, Bc)])
        out = fw.layernorm(name, s1, gamma, beta, (alpha, lo, hi, newton))
        secs = _now() - t
        ref = nb.layernorm_model(xa + xb, gamma, beta, alpha, lo, hi, newton)
        err = np.max(np.abs(nb.unpack([self.decrypt(c) for c in out], lay, d) - ref))
        kind = "residual + LayerNorm 1" if which == "ln1" else "residual + LayerNorm 2"
        return self._result(kind, f"the whole block: {lay.n} x {d} in {len(A)} ciphertexts", secs, fw, 1, err,
                            np.max(np.abs(ref))) | {"scaled": False}

    def activation(self) -> dict:
        """GELU (4-piece, Forward.gelu_pair: two FFN chunks in one ciphertext) or Quad (Forward.quad) on one full
        FFN ciphertext."""
        lay, st, cfg = self.lay, self.model.settings(), self.model.config
        which = "quad" if cfg.activation == "quad" else "gelu"
        fw = self.forward([lay.chunk] if which == "gelu" else [], self.top)  # the second chunk back to its slots
        self._at(fw, which)
        M = st["act_div"]
        ci = lay.chunks(lay.intermediate)
        if which == "gelu":
            lo, hi = nb.gelu_valid_range(st["gelu_prescale"])
            u = self.rng.uniform(lo, hi, (lay.n, 2 * lay.chunk))
            v0, v1 = nb.pack(u, lay)
            vec, width, cts = v0 + np.roll(v1, lay.chunk), 2 * lay.chunk, -(-ci // 2)
        else:
            u = self.rng.uniform(-3, 3, (lay.n, lay.chunk))
            vec, width, cts = nb.pack(u, lay)[0], lay.chunk, ci
        (ct,) = fw.enter(self.p + which, [self.encrypt(vec, self.before(which))])
        fw.refresh_s = 0.0  # a refresh at entry is charged as a bootstrap
        t = _now()
        out = fw.gelu_pair(ct, 0) if which == "gelu" else [fw.quad(ct, 0)]
        secs = _now() - t
        fw.leave(self.p + which, out)
        if which == "gelu":
            ref = nb.gelu_model(u, st["gelu_prescale"]) / M
        else:
            ref = u * u + F.QUAD[1] / (nb.QUAD_ROOT * math.sqrt(M)) * u + F.QUAD[0] / M
        err = np.max(np.abs(nb.unpack([self.decrypt(o) for o in out], lay, width) - ref))
        return self._result("GELU" if which == "gelu" else "Quad", f"1 full ciphertext ({lay.n} x {width} values)",
                            secs, fw, cts, err, np.max(np.abs(ref)), f"x {cts} ciphertexts") | {"scaled": True}

    def head(self) -> dict:
        """The [CLS] classifier (Forward.head) on the hidden stream: once per model."""
        lay = self.lay
        P, w = lay.chunk, lay.window
        fw = self.forward([*(1 << k for k in range(P.bit_length() - 1)),
                           *(-l * w for l in range(1, lay.num_labels))], self.row("head")["level_in"])
        fw.i = self.index["head"]
        x = self.rng.normal(0, 1, (lay.n, lay.d))
        xs = fw.enter("head", [self.encrypt(v, self.before("head")) for v in nb.pack(x, lay)])
        fw.refresh_s = 0.0  # a refresh at entry is charged as a bootstrap
        t = _now()
        z = fw.head(xs)
        secs = _now() - t
        ref = self.model.w64["classifier.weight"] @ x[0] + self.model.w64["classifier.bias"]
        err = np.max(np.abs(nb.unpack_output([self.decrypt(z)], lay, lay.num_labels) - ref))
        return self._result("head", "the [CLS] classifier on the hidden stream", secs, fw, 1, err,
                            np.max(np.abs(ref))) | {"scaled": False, "per_model": True}

    def run(self, on_block=None, only=None) -> list[dict]:
        """Every block kind of the model, in layer order; on_block(rows so far) after each (write-as-you-go)."""
        lay, cfg = self.lay, self.model.config
        ch, ci = lay.chunks(lay.d), lay.chunks(lay.intermediate)
        jobs = [("QKV", lambda: self.linear("qkv", "QKV", ch, ch, calls=3)), ("Q K^T", self.qk)]
        jobs.append(("Softmax", self.softmax) if cfg.attention == "softmax" else ("2Quad-freeDiv", self.quad2))
        jobs += [("P V", self.pv), ("output projection", lambda: self.linear("out", "output projection", ch, ch)),
                 ("residual + LayerNorm 1", lambda: self.layernorm("ln1")),
                 ("FFN1", lambda: self.linear("ffn1", "FFN1", ch, ci)),
                 ("GELU" if cfg.activation != "quad" else "Quad", self.activation),
                 ("FFN2", lambda: self.linear("ffn2", "FFN2", ci, ch)),
                 ("residual + LayerNorm 2", lambda: self.layernorm("ln2")), ("head", self.head)]
        out = []
        for kind, job in jobs:
            if only is not None and kind not in only:
                continue
            r = job()
            b = next((b for b in self.info["layer_blocks"] if b["kind"] == kind), None)
            if b is not None:
                r.update(levels=b["levels"], ciphertexts_in=b["ciphertexts_in"], level_in=b["level_in"],
                         ciphertexts_refreshed_per_layer=b["ciphertexts_refreshed"])
            r["peak_rss_gib"] = round(peak_rss_mib() / 1024, 2)
            r["load_average"] = os.getloadavg()
            out.append(r)
            gc.collect()
            if on_block is not None:
                on_block(out)
        return out


def gelu_probe(params, rc, n: int = N_TOKENS, seed: int = 0) -> dict:
    """The 4-piece GELU (Forward.gelu_masked) on one ciphertext of inputs uniform over the valid range of
    each Sgn prescale (16: [-13, 12], 32: [-29, 28]): error against gelu_model in GELU units, by |x|."""
    out = {"command": "refimpl experiment bertbase --gelu-probe", "rows": []}
    base = widest_ranges(shipped_ranges("softmax-gelu"), BERT_BASE["num_hidden_layers"])
    for prescale in nb.GELU_PRESCALES:
        lo, hi = nb.gelu_valid_range(prescale)
        m = synthetic_model(config("softmax-gelu"), dict(base, act=(lo, hi)))
        st = m.settings()
        t = BlockTimer(params, rc, m, n, seed=seed)
        fw = t.forward([], t.top)
        t._at(fw, "gelu")
        u = t.rng.uniform(lo, hi, (t.lay.n, t.lay.chunk))
        y = fw.gelu_masked(t.encrypt(nb.pack(u, t.lay)[0], t.row("gelu")["level_in"]), 0)
        e = np.abs(nb.unpack([t.decrypt(y)], t.lay, t.lay.chunk) * st["act_div"] - nb.gelu_model(u, prescale))
        ax = np.abs(u)
        out["rows"].append({"prescale": prescale, "range": [lo, hi], "act_div": st["act_div"],
                            "max_err": float(e.max()), "mean_err": float(e.mean()), "x_at_max": float(u.ravel()[e.argmax()]),
                            "max_err_abs_x_le_8": float(e[ax <= 8].max()), "max_err_abs_x_le_13": float(e[ax <= 13].max())})
        del t, fw
        gc.collect()
    return out
