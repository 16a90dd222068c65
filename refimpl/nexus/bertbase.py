"""BERT-base at n = 128 under NEXUS: blocks, levels, counts, bootstrap plan, timed instances, derived time.

BERT-base (12 layers, d = 768, 12 heads of 64, FFN 3072) at n = 128 tokens on N = 2^16
(`128-2^16-dense19`: 19 levels after bootstrapping) in refimpl's layout (nexus/bert.py with
head_rows: a row of 128 keys, 256 slots with Softmax's duplication, does not fit a head's 64
slots, so each head's scores get a ciphertext of their own; P = 128 features per chunk, 2 heads
per chunk, windows of 256 slots, 128 token windows = all 32768 slots):
hidden stream 6 ciphertexts, FFN stream 24, score stream 12.

1. Blocks: the pieces of nexus/bert._pieces (the same level costs and widths the forward
   checks), grouped into the issue's blocks; bootstraps placed by nexus/bert.place (the DP):
   the fewest ciphertexts refreshed, or with `--weigh-by FILE` (ours) the least derived time,
   each piece's seconds per limb taken from FILE's timed run of the fewest-refreshes plan.
2. Timing: one instance of each block kind on real ciphertexts with the forward's own kernels
   (_Forward.linear, head_scores, softmax_pieces, pv, layernorm, gelu_masked, quad, head), at the
   level the plan gives the block; refreshes inside a block go through an OracleBootstrapper
   (decrypt and re-encrypt, its time excluded) and are charged at the measured bootstrap time.
   Instances smaller than the block are scaled by an exact count of the work:
     linear (ct-pt, BSGS diagonals): one P x P block (1 input chunk -> 1 output chunk, 128
       diagonals), and apart its hoisted baby steps (once per input chunk) and its 7 giant-step
       rotations (once per output chunk); c_in -> c_out chunks cost
       c_in T_baby + c_out T_giant + c_in c_out (T_block - T_baby - T_giant);
     Q K^T and P V: one chunk (2 heads) over s of the 128 key shifts (every shift does the same
       work: 1 ct-ct product, a QuickSum, masks and rotations), times 6 chunks x 128 / s;
     Softmax, 2Quad, GELU, Quad: one ciphertext, times the stream's ciphertexts;
     LayerNorm: the whole block (6 ciphertexts, 128 x 768); the head: once per model.
   layer time = sum(block time x count) + refreshed ciphertexts x bootstrap time;
   model time = the 12 layers of the plan + head.
3. Ranges (Softmax bound B, LayerNorm variance ranges, GELU prescale, activation divisor) are not
   BERT-base's own (refimpl holds no BERT-base checkpoint): each layer gets the widest of the
   shipped small model's calibrated ranges (its NexusModel.get_ranges on synthetic text).

Every instance records its wall and process CPU seconds and the load average (the machine is
shared: on a quiet machine CPU ~ 2 x wall with two numba threads, under load CPU ~ wall), its
decrypted error against numpy float64, and the peak RSS. `--gelu-probe` measures the 4-piece
GELU's error by Sgn prescale on one ciphertext.

`python -m refimpl.nexus.bertbase [--json results/nexus_bertbase_128.json]`.

Reference: NEXUS (Zhang et al., NDSS 2025) §3-4; BERT (Devlin et al. 2019) base size;
freeDiv (Liu Weixin et al. 2024) 2Quad-freeDiv; MPCFormer (Quad).
"""

from __future__ import annotations

import gc
import json
import math
import os
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..bert import functional as F
from ..bert.config import BertConfig
from . import bert as nb

PRESET = "128-2^16-dense19"
N_TOKENS = 128
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
MODELS = {  # name -> (attention, activation, the shipped small model whose ranges are borrowed)
    "softmax-gelu": ("softmax", "gelu", "sst2-small-softmax-gelu"),
    "2quad-freediv-quad": ("2quad-freediv", "quad", "sst2-small-2quad-freediv-quad"),
}
KEY_SHIFTS = 4  # Q K^T and P V are timed over this many of the n_pad key shifts (their Galois keys: ~80 MB each)
BOOTSTRAP_JSON = "results/bootstrap_128-2^16-dense19.json"
QUIET_BOOTSTRAP_S = 72.4  # the same bootstrap on a quiet machine: results/bootstrap_128-2^16-dense19_quiet.json
# (2026-12-04; 56.2 s before SlotsToCoeffs spread its scale drop; README "Bootstrapping")
LAYER = 1  # the layer whose planned levels the timed instances use (layer 0 starts at the client's level)

# block kinds of the issue, keyed by the piece name inside a layer ("L{i}." stripped)
KINDS = (("qkv", "QKV"), ("qk", "Q K^T"), ("softmax.", "Softmax"), ("2quad", "2Quad-freeDiv"), ("pv.", "P V"),
         ("out", "output projection"), ("ln1", "residual + LayerNorm 1"), ("ffn1", "FFN1"), ("gelu", "GELU"),
         ("quad", "Quad"), ("ffn2", "FFN2"), ("ln2", "residual + LayerNorm 2"))


def kind_of(piece: str) -> str:
    """The issue's block kind of a piece name ("L3.softmax.round2" -> "Softmax"; "head" -> "head")."""
    local = piece.split(".", 1)[1] if piece.startswith("L") and "." in piece else piece
    for prefix, kind in KINDS:
        if local == prefix or (prefix.endswith(".") and local.startswith(prefix)) or local.startswith(prefix + "."):
            return kind
    if local == "head":
        return "head"
    raise ValueError(f"piece {piece!r} belongs to no block kind")


# ============================================================================ model and plan
def config(model: str, layers: int = 12, **size) -> BertConfig:
    """BERT-base (or `size` overrides, for tests) with the model's attention and activation."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {sorted(MODELS)}")
    att, act, _ = MODELS[model]
    kw = dict(BERT_BASE, num_hidden_layers=layers)
    kw.update(size)
    return BertConfig(attention=att, activation=act, **kw)


def widest_ranges(ranges: dict, layers: int) -> dict:
    """Ranges for `layers` layers: per block kind the widest over the source's layers (NexusModel.get_ranges format)."""
    src_layers = sorted({int(k.split(".")[0][1:]) for k in (*ranges["absmax"], *ranges["var"]) if k[0] == "L"})
    absmax, var = {}, {}
    for suffix in {k.split(".", 1)[1] for k in ranges["absmax"]}:
        v = max(ranges["absmax"].get(f"L{i}.{suffix}", 0.0) for i in src_layers)
        absmax.update({f"L{i}.{suffix}": v for i in range(layers + 1)})
    for suffix in {k.split(".", 1)[1] for k in ranges["var"]}:
        lo = min(ranges["var"][f"L{i}.{suffix}"][0] for i in src_layers if f"L{i}.{suffix}" in ranges["var"])
        hi = max(ranges["var"][f"L{i}.{suffix}"][1] for i in src_layers if f"L{i}.{suffix}" in ranges["var"])
        var.update({f"L{i}.{suffix}": (lo, hi) for i in range(layers)})
    return {"score_bound": ranges["score_bound"], "var": var, "act": tuple(ranges["act"]), "absmax": absmax}


def shipped_ranges(model: str) -> dict:
    """The calibrated ranges of the shipped small model of this kind (synthetic calibration text)."""
    from ..bert import weights
    from ..bert.shipped import model_dir

    cfg, prm = weights.load(model_dir(MODELS[model][2]), dtype=np.float32)
    return nb.NexusModel(cfg, prm).get_ranges()


def synthetic_model(cfg: BertConfig, ranges: dict, seed: int = 0) -> nb.NexusModel:
    """A NexusModel with the given ranges and only a random classifier (the plan needs no weights;
    the timed kernels take random weights of the right shapes)."""
    rng = np.random.default_rng(seed)
    params = {"classifier.weight": rng.normal(0, 0.05, (cfg.num_labels, cfg.hidden_size)),
              "classifier.bias": rng.normal(0, 0.05, cfg.num_labels)}
    return nb.NexusModel(cfg, params, ranges=ranges)


def layout(cfg: BertConfig, n: int, slots: int) -> nb.Layout:
    return nb.input_layout(cfg, n, slots, head_rows=True)


def blocks(model: nb.NexusModel, n: int, params, *, bootstrap_level: int | None = None,
           limb_s: dict[str, float] | None = None, boot_s: float | None = None) -> dict:
    """The plan (nexus/bert.place over nexus/bert._pieces) and, per block kind of one layer, its
    pieces, levels consumed, ciphertexts entering, and per layer the bootstrap points and
    ciphertexts refreshed.

    Returns {"layout", "rows" (the whole plan), "layer_blocks" (layer LAYER, or 0 for one-layer
    models), "per_layer": [{"layer", "bootstrap_points", "ciphertexts_refreshed"}], "head": ...,
    "total": {...}}. limb_s, boot_s: a time-weighted placement (nexus/bert.place; see limb_seconds)."""
    p, top = nb.bootstrap_level_of(params, bootstrap_level)
    lay = layout(model.config, n, p.slots)
    pieces = nb._pieces(model, lay)
    rows = nb.place(pieces, top, top, limb_s=limb_s, boot_s=boot_s)
    L = model.config.num_hidden_layers
    ch, ci, sw = lay.chunks(lay.d), lay.chunks(lay.intermediate), lay.score_cts
    entering = {"QKV": ch, "Q K^T": 2 * ch, "Softmax": sw, "2Quad-freeDiv": sw, "P V": sw + ch, "output projection": ch,
                "residual + LayerNorm 1": 2 * ch, "FFN1": ch, "GELU": ci, "Quad": ci, "FFN2": ci,
                "residual + LayerNorm 2": 2 * ch, "head": ch}
    layer = LAYER if L > LAYER else 0
    out = []
    for r in rows:
        if not r["block"].startswith(f"L{layer}."):
            continue
        k = kind_of(r["block"])
        if not out or out[-1]["kind"] != k:
            out.append({"kind": k, "pieces": [], "levels": 0, "ciphertexts_in": entering[k],
                        "level_in": r["level_in"], "bootstrap_points": 0, "ciphertexts_refreshed": 0})
        b = out[-1]
        b["pieces"].append(r["block"].split(".", 1)[1])
        b["levels"] += r["cost"]
        b["bootstrap_points"] += int(r["bootstrap"])
        b["ciphertexts_refreshed"] += r["bootstraps"]
        b["level_out"] = r["level_out"]
    per_layer = []
    for i in range(L):
        rs = [r for r in rows if r["block"].startswith(f"L{i}.")]
        per_layer.append({"layer": i, "bootstrap_points": sum(r["bootstrap"] for r in rs),
                          "ciphertexts_refreshed": sum(r["bootstraps"] for r in rs),
                          "levels": sum(r["cost"] for r in rs)})
    head = [r for r in rows if r["block"] == "head"][0]
    return {"layout": lay, "rows": rows, "pieces": pieces, "layer": layer, "layer_blocks": out, "per_layer": per_layer,
            "head": {"bootstrap_points": int(head["bootstrap"]), "ciphertexts_refreshed": head["bootstraps"],
                     "levels": head["cost"]},
            "total": {"bootstrap_points": sum(r["bootstrap"] for r in rows),
                      "ciphertexts_refreshed": sum(r["bootstraps"] for r in rows),
                      "levels": sum(r["cost"] for r in rows)},
            "top": top}


def limb_seconds(info: dict, timed: list[dict]) -> dict[str, float]:
    """Seconds per limb of every piece, from timed blocks of the plan `info` (blocks()): a kind's
    seconds per layer T spread over its pieces in proportion to the limbs they run at (level + 1),
    T / sum(level_in + 1) for each piece of the kind in every layer (the head: its own row).
    The time-weighted placement's model: a piece's time is proportional to the limbs of its level.
    Within a kind of several pieces (LayerNorm, Softmax, P V) every piece gets the same seconds per
    limb, whatever its width and depth: a first-order split (only their sum is measured)."""
    per = {r["kind"]: r["seconds"] for r in timed}
    layer = [r for r in info["rows"] if r["block"].startswith(f"L{info['layer']}.") or r["block"] == "head"]
    limbs: dict[str, int] = {}
    for r in layer:
        k = kind_of(r["block"])
        limbs[k] = limbs.get(k, 0) + r["level_in"] + 1
    out = {}
    for r in info["rows"]:
        k = kind_of(r["block"])
        if k in per:
            out[r["block"]] = per[k] / limbs[k]
    return out


# ============================================================================ timing
def _now() -> np.ndarray:
    """(wall, process CPU) seconds; the CPU time counts every thread of this process: on a loaded machine it
    is what the work took, the wall time what it took here."""
    return np.array([time.perf_counter(), time.process_time()])


class _TimedForward(nb._Forward):
    """The forward's kernels, with the refreshes the plan puts inside a block timed apart."""

    refresh_s = 0.0

    def refresh(self, ct, bound):
        t = _now()
        out = super().refresh(ct, bound)
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
        from ..ckks import Decryptor, Encoder, Encryptor, KeyGenerator
        from ..ckks.bootstrap.oracle import OracleBootstrapper
        from ..ring.sampling import RandomSource

        self.params, self.model, self.n = params, model, n
        self.info = blocks(model, n, (params, rc) if bootstrap_level is None else params,
                           bootstrap_level=bootstrap_level, limb_s=limb_s, boot_s=boot_s)
        self.lay, self.rows = self.info["layout"], self.info["rows"]
        if not self.lay.head_rows:
            raise ValueError(f"BlockTimer times the head_rows layout (attention rows longer than a head); rows of "
                             f"{self.lay.n_pad} keys fit a head of {self.lay.head_dim} slots: use nexus/bert's forward")
        self.top = self.info["top"]
        self.index = {r["block"]: j for j, r in enumerate(self.rows)}
        lay = self.lay
        self.shifts = list(range(lay.n_pad)) if shifts is None else sorted(shifts)
        if not self.shifts or min(self.shifts) < 0 or max(self.shifts) >= lay.n_pad:
            raise ValueError(f"key shifts must lie in [0, {lay.n_pad}), got {shifts}")
        self.kg = KeyGenerator(params, RandomSource(seed + 1))
        self.sk = self.kg.secret_key()
        full = tuple(range(len(params.q) + len(params.p)))
        self.relin = self.kg.switching_key(self.sk, params.ctx.mul(self.sk.s_ntt, self.sk.s_ntt, full), self.top)
        self.enc, self.D = Encoder(params), Decryptor(self.sk)
        self.E = Encryptor(self.kg.public_key(self.sk), RandomSource(seed + 2))
        self.oracle = OracleBootstrapper(self.sk, output_level=self.top, rng=RandomSource(seed + 3))
        self.rng = np.random.default_rng(seed + 4)
        self.mask = np.ones(n)
        self.p = f"L{self.info['layer']}."

    # -- helpers
    def forward(self, steps, level: int) -> _TimedForward:
        """A forward whose evaluator holds the relinearization key and the Galois keys of `steps` at `level`."""
        from ..ckks import Evaluator
        from ..ckks.keys import EvaluationKeys, galois_element

        elts = {galois_element(self.params, r) for r in steps if r % self.params.slots}
        keys = _LazyKeys(lambda k: self.kg.galois_key(self.sk, k, self.top),
                         {k: self.kg.galois_key(self.sk, k, level) for k in sorted(elts)})
        ev = Evaluator(self.params, EvaluationKeys(relin=self.relin, galois=keys))
        return _TimedForward(ev, self.oracle, self.model, self.lay, self.mask, self.rows, self.info["pieces"], None)

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
        """One P x P block of the ct-pt product (_Forward.linear, 1 chunk -> 1 chunk) at the planned level,
        split by separate timings of its hoisted baby steps (per input chunk) and its P/g - 1 giant-step
        rotations (per output chunk: the inner sums over input chunks are rotated once); a call of
        c_in -> c_out chunks costs c_in T_baby + c_out T_giant + c_in c_out (T_block - T_baby - T_giant)."""
        lay = self.lay
        P, g = lay.chunk, lay.baby
        level = self.before(piece)
        steps = [-P, *range(1, g), *(g * b for b in range(1, P // g))]
        fw = self.forward(steps, self.row(piece)["level_in"])
        self._at(fw, piece)
        x = self.rng.normal(0, 1, (lay.n, P))
        W, b = self.rng.normal(0, 1 / math.sqrt(P), (P, P)), self.rng.normal(0, 0.1, P)
        (ct,) = fw.enter(self.p + piece, [self.encrypt(nb._pack(x, lay)[0], level)])
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
        err = np.max(np.abs(nb._unpack([self.decrypt(y)], lay, P) - ref))
        t_diag = np.maximum(t_block - t_baby - t_giant, 0.0)  # encode, multiply the P diagonals, sums, rescale, bias
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
        dh, per = self.lay.head_dim, len(nb._Vectors(self.lay, self.mask).heads(0))
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
        """Q K^T of chunk 0 (its heads) over the timer's key shifts (_Forward.head_scores)."""
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
        qc, kc = (self.encrypt(nb._pack(a, lay)[0], level) for a in (q, k))
        t = _now()
        S = fw.head_scores(qc, kc, 0, 1 / math.sqrt(dh), 0.0, shifts=self.shifts)
        secs = _now() - t
        fw.leave(self.p + "qk", S)
        ref = self._scores_ref(q, k, 1 / math.sqrt(dh))
        err = max(np.max(np.abs(self.decrypt(s) - self._rows(ref[h], self.shifts))) for h, s in enumerate(S))
        frac = n_pad / len(self.shifts)
        return self._result("Q K^T", f"chunk 0 ({per} heads) over {len(self.shifts)} of {n_pad} key shifts, "
                                     f"level {level}",
                            secs, fw, lay.chunks(lay.d) * frac, err, np.max(np.abs(ref)),
                            f"x {lay.chunks(lay.d)} chunks x {n_pad}/{len(self.shifts)} shifts") | {"scaled": True}

    def softmax(self) -> dict:
        """Softmax over the rows of one head's score ciphertext (_Forward.softmax_pieces: QuickMax
        rounds, exp, QuickSum, Goldschmidt, product), refreshes as planned (oracle, time excluded)."""
        lay, st = self.lay, self.model.settings()
        n_pad, B = lay.n_pad, st["B"]
        fw = self.forward([-n_pad, *(1 << k for k in range(n_pad.bit_length() - 1))], self.top)
        self._at(fw, "softmax.round0")
        s = self.rng.uniform(-B / 4, B / 4, (lay.n, lay.n))
        ct = self.encrypt(self._rows(s, range(n_pad)), self.before("softmax.round0"))
        t = _now()
        (out,) = fw.softmax_pieces(self.info["layer"], [ct])
        secs = _now() - t
        ref = nb._softmax_model(s[None], np.ones(n_pad) * np.r_[np.ones(lay.n), np.zeros(n_pad - lay.n)], n_pad, B,
                                st["exp_r"])[0]
        err = np.max(np.abs(self.decrypt(out) - self._rows(ref, range(n_pad))))
        return self._result("Softmax", f"1 head ciphertext ({lay.n} rows of {n_pad} keys)", secs, fw, lay.score_cts,
                            err, 1.0, f"x {lay.score_cts} heads") | {"scaled": True}

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
        return self._result("2Quad-freeDiv", "1 head ciphertext (square)", secs, fw, lay.score_cts, err,
                            np.max(v * v), f"x {lay.score_cts} heads") | {"scaled": True}

    def pv(self) -> dict:
        """P V of chunk 0 (its heads' probabilities times V) over the timer's key shifts (_Forward.pv)."""
        lay = self.lay
        P, w, dh, n_pad = lay.chunk, lay.window, lay.head_dim, lay.n_pad
        per = P // dh
        steps = [r * w for r in self.shifts] + [-(1 << k) for k in range(dh.bit_length() - 1)] + \
                [r - hl * dh for hl in range(per) for r in self.shifts] + [-n_pad * w]
        fw = self.forward(steps, max(self.row("qkv")["level_out"], self.row("pv.mask")["level_in"]))  # V, P's columns
        self._at(fw, "pv.mask")
        probs = [self.rng.uniform(0, 1, (lay.n, lay.n)) for _ in range(per)]
        V = self.rng.normal(0, 1, (lay.n, P))
        lv = self.before("pv.mask")
        pc = [self.encrypt(self._rows(pr, range(n_pad)), lv) for pr in probs]
        vc = self.encrypt(nb._pack(V, lay)[0], self.row("qkv")["level_out"])
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
        err = np.max(np.abs(nb._unpack([self.decrypt(out)], lay, P) - ref))
        frac = n_pad / len(self.shifts)
        return self._result("P V", f"chunk 0 ({per} heads) over {len(self.shifts)} of {n_pad} key shifts",
                            secs, fw, lay.chunks(lay.d) * frac, err, np.max(np.abs(ref)),
                            f"x {lay.chunks(lay.d)} chunks x {n_pad}/{len(self.shifts)} shifts") | {"scaled": True}

    # -- LayerNorm, activations, head
    def layernorm(self, which: str) -> dict:
        """residual + LayerNorm over n x d (the whole block: join, sums, 1/sqrt, gamma, beta; _Forward.layernorm)."""
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
        A = [self.encrypt(v, prev) for v in nb._pack(xa, lay)]
        Bc = [self.encrypt(v, resid) for v in nb._pack(xb, lay)]
        t = _now()
        s1 = fw.enter(name, [fw.join(u, v) for u, v in zip(A, Bc)])
        out = fw.layernorm(name, s1, gamma, beta, (alpha, lo, hi, newton))
        secs = _now() - t
        ref = nb._ln_model(xa + xb, gamma, beta, alpha, lo, hi, newton)
        err = np.max(np.abs(nb._unpack([self.decrypt(c) for c in out], lay, d) - ref))
        kind = "residual + LayerNorm 1" if which == "ln1" else "residual + LayerNorm 2"
        return self._result(kind, f"the whole block: {lay.n} x {d} in {len(A)} ciphertexts", secs, fw, 1, err,
                            np.max(np.abs(ref))) | {"scaled": False}

    def activation(self) -> dict:
        """GELU (4-piece, _Forward.gelu_masked) or Quad (_Forward.quad) on one full FFN ciphertext."""
        lay, st, cfg = self.lay, self.model.settings(), self.model.config
        which = "quad" if cfg.activation == "quad" else "gelu"
        fw = self.forward([], self.top)
        self._at(fw, which)
        M = st["act_div"]
        if which == "gelu":
            lo, hi = nb.gelu_valid_range(st["gelu_prescale"])
            u = self.rng.uniform(lo, hi, (lay.n, lay.chunk))
        else:
            u = self.rng.uniform(-3, 3, (lay.n, lay.chunk))
        (ct,) = fw.enter(self.p + which, [self.encrypt(nb._pack(u, lay)[0], self.before(which))])
        fw.refresh_s = 0.0  # a refresh at entry is charged as a bootstrap
        t = _now()
        out = fw.gelu_masked(ct, 0) if which == "gelu" else fw.quad(ct, 0)
        secs = _now() - t
        fw.leave(self.p + which, [out])
        if which == "gelu":
            ref = nb.gelu_model(u, st["gelu_prescale"]) / M
        else:
            ref = u * u + F.QUAD[1] / (nb.QUAD_ROOT * math.sqrt(M)) * u + F.QUAD[0] / M
        err = np.max(np.abs(nb._unpack([self.decrypt(out)], lay, lay.chunk) - ref))
        ci = lay.chunks(lay.intermediate)
        return self._result("GELU" if which == "gelu" else "Quad", f"1 full ciphertext ({lay.n} x {lay.chunk} values)",
                            secs, fw, ci, err, np.max(np.abs(ref)), f"x {ci} ciphertexts") | {"scaled": True}

    def head(self) -> dict:
        """The [CLS] classifier (_Forward.head) on the hidden stream: once per model."""
        lay = self.lay
        P, w = lay.chunk, lay.window
        fw = self.forward([*(1 << k for k in range(P.bit_length() - 1)),
                           *(-l * w for l in range(1, lay.num_labels))], self.row("head")["level_in"])
        fw.i = self.index["head"]
        x = self.rng.normal(0, 1, (lay.n, lay.d))
        xs = fw.enter("head", [self.encrypt(v, self.before("head")) for v in nb._pack(x, lay)])
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
            r["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
            r["load_average"] = os.getloadavg()
            out.append(r)
            gc.collect()
            if on_block is not None:
                on_block(out)
        return out


def derive(info: dict, timed: list[dict], bootstrap_s: float, layers: int) -> dict:
    """layer = sum(block time x count) + refreshed ciphertexts x bootstrap time; model = the plan's layers + head,
    every layer's blocks at the timed layer's seconds. model_by_limbs_s: every piece of every layer at its own
    level instead (limb_seconds: the timed layer's seconds per limb x the limbs the piece runs at), as layers
    differ when the plan alternates (a time-weighted plan) and layer 0 starts at the client's level."""
    per = {r["kind"]: r["seconds"] for r in timed if r["kind"] != "head"}  # per layer (scaled)
    cpu = sum(r.get("cpu_seconds", 0.0) for r in timed if r["kind"] != "head")
    compute = sum(per.values())
    boots = [pl["ciphertexts_refreshed"] for pl in info["per_layer"]]
    head = sum(r["seconds"] for r in timed if r["kind"] == "head")
    rep = info["per_layer"][info["layer"]]["ciphertexts_refreshed"]
    limb = limb_seconds(info, timed)
    return {"layer_compute_s": round(compute, 1), "layer_compute_cpu_s": round(cpu, 1), "layer_bootstraps": rep,
            "layer_s": round(compute + rep * bootstrap_s, 1),
            "model_s": round(layers * compute + sum(boots) * bootstrap_s + head
                             + info["head"]["ciphertexts_refreshed"] * bootstrap_s, 1),
            "model_bootstraps": sum(boots) + info["head"]["ciphertexts_refreshed"], "bootstrap_s": bootstrap_s,
            "model_by_limbs_s": round(sum(limb.get(r["block"], 0.0) * (r["level_in"] + 1) for r in info["rows"])
                                      + (sum(boots) + info["head"]["ciphertexts_refreshed"]) * bootstrap_s, 1),
            "complete": {"QKV", "Q K^T", "P V", "output projection", "FFN1", "FFN2"} <= set(per)}


def gelu_probe(params, rc, n: int = N_TOKENS, seed: int = 0) -> dict:
    """The 4-piece GELU (_Forward.gelu_masked) on one ciphertext of inputs uniform over the valid range of
    each Sgn prescale (16: [-13, 12], 32: [-29, 28]): error against gelu_model in GELU units, by |x|."""
    out = {"command": "python -m refimpl.nexus.bertbase --gelu-probe", "rows": []}
    base = widest_ranges(shipped_ranges("softmax-gelu"), BERT_BASE["num_hidden_layers"])
    for prescale in nb.GELU_PRESCALES:
        lo, hi = nb.gelu_valid_range(prescale)
        m = synthetic_model(config("softmax-gelu"), dict(base, act=(lo, hi)))
        st = m.settings()
        t = BlockTimer(params, rc, m, n, seed=seed)
        fw = t.forward([], t.top)
        t._at(fw, "gelu")
        u = t.rng.uniform(lo, hi, (t.lay.n, t.lay.chunk))
        y = fw.gelu_masked(t.encrypt(nb._pack(u, t.lay)[0], t.row("gelu")["level_in"]), 0)
        e = np.abs(nb._unpack([t.decrypt(y)], t.lay, t.lay.chunk) * st["act_div"] - nb.gelu_model(u, prescale))
        ax = np.abs(u)
        out["rows"].append({"prescale": prescale, "range": [lo, hi], "act_div": st["act_div"],
                            "max_err": float(e.max()), "mean_err": float(e.mean()), "x_at_max": float(u.ravel()[e.argmax()]),
                            "max_err_abs_x_le_8": float(e[ax <= 8].max()), "max_err_abs_x_le_13": float(e[ax <= 13].max())})
        del t, fw
        gc.collect()
    return out


def paper_figures() -> dict:
    """NEXUS's published BERT-base figures (refimpl/constants.toml [nexus.published])."""
    from ..constants import C

    pub = C["nexus"]["published"]
    return {"bert_base_gpu_s": pub["bert_base_gpu_seconds"], "gpu_speedup_vs_cpu": pub["gpu_speedup_vs_cpu"],
            "cpu_s_implied": round(pub["bert_base_gpu_seconds"] * pub["gpu_speedup_vs_cpu"]),
            "source": "refimpl/constants.toml [nexus.published] (NDSS 2025 abstract: A100 GPU; the CPU time is GPU x "
                      "speedup, computed and unverified in ../shared/anchors/nexus.md; the paper's bootstrapping "
                      "parameters are not 128-bit)"}


def table(res: dict) -> str:
    """One layer's blocks: ciphertexts entering, levels, ciphertexts refreshed, derived seconds, error, instance."""
    lines = [f"{'block':<24s} {'cts in':>6s} {'levels':>6s} {'boots':>5s} {'block s':>9s} {'max err':>8s}  "
             "instance timed; scaling"]
    timed = {r["kind"]: r for r in res.get("timed", [])}
    for b in res["layer_blocks"] + [dict(res["head"], kind="head", ciphertexts_in=res["layout"]["hidden_cts"])]:
        t = timed.get(b["kind"])
        lines.append(f"{b['kind']:<24s} {b['ciphertexts_in']:>6d} {b['levels']:>6d} {b['ciphertexts_refreshed']:>5d} "
                     + (f"{t['seconds']:>9.1f} {t['max_err']:>8.1e}  {t['instance']}; {t['note'] or 'not scaled'}"
                        if t else f"{'-':>9s}"))
    return "\n".join(lines)


def markdown(res: dict) -> str:
    """The README table from a stored result: blocks per layer (seconds, refreshed ciphertexts) per model,
    then layer and model time (quiet and loaded bootstraps) beside the paper's figures."""
    names = list(res["models"])
    present = {b["kind"] for m in res["models"].values() for b in m["layer_blocks"]}
    kinds = [k for _, k in KINDS if k in present]
    head = " | ".join(f"{n}{' (time-weighted plan)' if m.get('placement', {}).get('weighed_by') else ''} s (boots)"
                      for n, m in res["models"].items())
    lines = [f"| block (one layer) | {head} |", "|---|" + "---:|" * len(names)]
    for k in kinds:
        cells = []
        for m in res["models"].values():
            b = next((b for b in m["layer_blocks"] if b["kind"] == k), None)
            t = next((r for r in m.get("timed", []) if r["kind"] == k), None)
            cells.append("-" if b is None else f"{t['seconds']:.0f} ({b['ciphertexts_refreshed']})" if t
                         else f"not timed ({b['ciphertexts_refreshed']})")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    quiet = next((m["derived_quiet_bootstrap"]["bootstrap_s"] for m in res["models"].values()
                  if "derived_quiet_bootstrap" in m), QUIET_BOOTSTRAP_S)
    rows = (("levels used (12 layers + head)", lambda m, d, q: f"{m['total']['levels']}"),
            ("ciphertexts bootstrapped per layer", lambda m, d, q: f"{q['layer_bootstraps']}"),
            ("ciphertexts bootstrapped, model", lambda m, d, q: f"{q['model_bootstraps']} at {m['total']['bootstrap_points']} points"),
            ("layer blocks (wall s)", lambda m, d, q: f"{q['layer_compute_s']:.0f}"),
            ("layer blocks (process CPU s, both cores)", lambda m, d, q: f"{q['layer_compute_cpu_s']:.0f}"),
            (f"model, bootstrap {quiet} s (quiet)", lambda m, d, q: f"{q['model_s']:.0f} s = {q['model_s'] / 3600:.1f} h"),
            (f"model, bootstrap {quiet} s, each layer at its own levels", lambda m, d, q: "-" if "model_by_limbs_s" not in q
             else f"{q['model_by_limbs_s']:.0f} s = {q['model_by_limbs_s'] / 3600:.1f} h"),
            ("model, bootstrap as measured under load", lambda m, d, q: "-" if d is None else
             f"{d['model_s']:.0f} s = {d['model_s'] / 3600:.1f} h ({d['bootstrap_s']:.0f} s each)"))
    for label, f in rows:
        cells = [f(m, m.get("derived"), m["derived_quiet_bootstrap"]) if "derived_quiet_bootstrap" in m else "-"
                 for m in res["models"].values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    pp = res["paper"]
    lines.append(f"| paper (NEXUS, Softmax + GELU) | {pp['bert_base_gpu_s']} s on an A100 GPU; about {pp['cpu_s_implied']} s "
                 f"on a CPU (GPU x {pp['gpu_speedup_vs_cpu']}, implied) |" + " |" * (len(names) - 1))
    return "\n".join(lines)


def merge(docs: list[dict], names: list[str]) -> dict:
    """One result from runs of disjoint models (e.g. one process per model, side by side on two cores).

    The runs must share the preset, n and BERT config; each model keeps its own run's command, load
    averages and peak RSS under "run"."""
    if len(docs) < 2:
        raise ValueError(f"merge needs at least two results, got {len(docs)}")
    same = ("preset", "N", "n", "config")
    out: dict = {}
    for doc, name in zip(docs, names):
        if "models" not in doc or "paper" not in doc:
            raise ValueError(f"{name}: expected a result of refimpl.nexus.bertbase (keys 'models' and 'paper'), "
                             f"got {sorted(doc)}")
        if not out:
            out = {k: v for k, v in doc.items() if k not in ("models", "command", "load_average_start",
                                                                "load_average_end", "peak_rss_gib")}
            out["models"], out["commands"], out["peak_rss_gib"] = {}, [], 0.0
        for k in same:
            if doc.get(k) != out.get(k):
                raise ValueError(f"{name}: {k} = {doc.get(k)!r}, expected {out.get(k)!r} as in {names[0]}")
        for model, m in doc["models"].items():
            if model in out["models"]:
                raise ValueError(f"{name}: model {model!r} is already in an earlier result")
            run = {k: doc.get(k) for k in ("command", "load_average_start", "load_average_end", "peak_rss_gib")}
            out["models"][model] = {**m, "run": run}
        out["commands"].append(doc["command"])
        out["peak_rss_gib"] = max(out["peak_rss_gib"], doc.get("peak_rss_gib") or 0.0)
    out["command"] = " ; ".join(out["commands"])
    return out


def main(argv: list[str] | None = None, prog: str = "python -m refimpl.nexus.bertbase") -> int:
    """python -m refimpl.nexus.bertbase [--models A,B] [--json FILE] [--plan-only] [--shifts 8] [--table FILE]
    [--merge FILE FILE ... --json OUT]."""
    import argparse
    import sys

    from ..ckks.bootstrap.bootstrapper import bootstrap_preset

    ap = argparse.ArgumentParser(prog=prog, description=main.__doc__)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--preset", default=PRESET)
    ap.add_argument("--n", type=int, default=N_TOKENS)
    ap.add_argument("--shifts", type=int, default=KEY_SHIFTS, help="key shifts of Q K^T and P V timed (of n_pad)")
    ap.add_argument("--json")
    ap.add_argument("--plan-only", action="store_true")
    ap.add_argument("--only", help="comma-separated block kinds to time")
    ap.add_argument("--gelu-probe", action="store_true",
                    help="only: GELU's error against its float64 model by input, both Sgn prescales (merged into --json)")
    ap.add_argument("--weigh-by", metavar="FILE",
                    help="time-weighted placement (ours): seconds per limb of each block from FILE's timed run of the "
                         "same model and plan, refreshes at --boot-s seconds")
    ap.add_argument("--boot-s", type=float, default=QUIET_BOOTSTRAP_S,
                    help=f"with --weigh-by: seconds per refreshed ciphertext on this machine (default {QUIET_BOOTSTRAP_S}, "
                         "the quiet measurement)")
    ap.add_argument("--table", metavar="FILE", help="only: print the README table of a stored result (no run)")
    ap.add_argument("--merge", nargs="+", metavar="FILE",
                    help="only: join results of disjoint models (one process per model) into --json (no run)")
    a = ap.parse_args(argv)
    if a.merge:
        if not a.json:
            raise ValueError("--merge writes the joined result to --json FILE; give --json")
        res = merge([json.loads(Path(f).read_text()) for f in a.merge], a.merge)
        Path(a.json).write_text(json.dumps(res, indent=1, default=str) + "\n")
        print(f"{a.json}: models {', '.join(res['models'])} from {len(a.merge)} runs")
        return 0
    if a.table:
        res = json.loads(Path(a.table).read_text())
        if "models" not in res or "paper" not in res:
            raise ValueError(f"{a.table}: expected a result of {prog} (keys 'models' and 'paper'), got {sorted(res)}")
        print(f"{res['security']}; {res['command']}\n")
        print(markdown(res))
        return 0
    if a.gelu_probe:
        params, rc = bootstrap_preset(a.preset)
        probe = gelu_probe(params, rc)
        print(json.dumps(probe, indent=1))
        if a.json:
            old = json.loads(Path(a.json).read_text()) if Path(a.json).exists() else {}
            old["gelu_probe"] = probe
            Path(a.json).write_text(json.dumps(old, indent=1, default=str) + "\n")
        return 0
    params, rc = bootstrap_preset(a.preset)
    sec = "INSECURE toy ring" if params.insecure else "128-bit"
    print(f"{sec} ({params.security_note}); times are DERIVED: one instance per block kind, scaled by exact counts, "
          f"bootstraps at the measured time of {BOOTSTRAP_JSON}", flush=True)
    boot = json.loads(Path(BOOTSTRAP_JSON).read_text()) if Path(BOOTSTRAP_JSON).exists() else {}
    res: dict = {"command": prog + " " + " ".join(argv if argv is not None else sys.argv[1:]),
                 "security": f"{sec}: {params.security_note}", "derived": True, "preset": a.preset, "N": params.N,
                 "slots": params.slots, "log_qp": round(params.log_qp), "levels_after_bootstrap": params.L - rc.depth,
                 "n": a.n, "config": BERT_BASE, "models": {},
                 "bootstrap": {"source": BOOTSTRAP_JSON, "median_s": boot.get("median_s"), "note": boot.get("note")},
                 "paper": paper_figures()}

    def write():
        res["peak_rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
        res["load_average_end"] = os.getloadavg()
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=1, default=str) + "\n")

    res["load_average_start"] = os.getloadavg()
    weights: dict = {}
    weigh_by = json.loads(Path(a.weigh_by).read_text()) if a.weigh_by else None
    for name in a.models.split(","):
        cfg = config(name)
        model = synthetic_model(cfg, widest_ranges(shipped_ranges(name), cfg.num_hidden_layers))
        info = blocks(model, a.n, (params, rc))
        placement = {"objective": "fewest ciphertexts refreshed, then fewest refresh points (NEXUS)"}
        if weigh_by is not None:
            old = weigh_by.get("models", {}).get(name)
            if old is None or not old.get("timed"):
                raise ValueError(f"--weigh-by {a.weigh_by}: no timed run of {name} in it "
                                 f"(models: {sorted(weigh_by.get('models', {}))})")
            missing = sorted(({b["kind"] for b in info["layer_blocks"]} | {"head"}) - {r["kind"] for r in old["timed"]})
            if missing:
                raise ValueError(f"--weigh-by {a.weigh_by}: its {name} run timed no {missing} (a run with --only or "
                                 f"cut short): every block kind needs its seconds")
            if old["per_layer"] != info["per_layer"] or weigh_by.get("n") != a.n or weigh_by.get("preset") != a.preset:
                raise ValueError(f"--weigh-by {a.weigh_by}: its {name} run has another plan, n or preset than this one "
                                 f"(expected the fewest-refreshes plan of n = {a.n} at {a.preset})")
            limb = limb_seconds(info, old["timed"])
            weights[name] = dict(limb_s=limb, boot_s=a.boot_s)
            info = blocks(model, a.n, (params, rc), **weights[name])
            layer = [r for r in info["rows"] if r["block"].startswith(f"L{info['layer']}.")]
            placement = {"objective": "least derived time (ours): refreshed ciphertexts x boot_s + seconds per limb x "
                                      "limbs per piece", "weighed_by": a.weigh_by, "boot_s": a.boot_s,
                         "predicted_layer_compute_s": round(sum(limb.get(r["block"], 0.0) * (r["level_in"] + 1)
                                                                for r in layer), 1)}
        lay = info["layout"]
        m = {"ranges_from": MODELS[name][2] + " (widest over its layers, every layer)", "settings": model.settings(),
             "layout": {"chunk": lay.chunk, "window": lay.window, "hidden_cts": lay.chunks(lay.d),
                        "ffn_cts": lay.chunks(lay.intermediate), "score_cts": lay.score_cts, "head_rows": lay.head_rows},
             "layer_blocks": info["layer_blocks"], "layer_shown": info["layer"], "per_layer": info["per_layer"],
             "head": info["head"], "total": info["total"], "plan_table": nb.plan_table(info["rows"]).splitlines()[-1],
             "placement": placement}
        res["models"][name] = m
        print(f"\n{name}: per layer bootstraps {[p['ciphertexts_refreshed'] for p in info['per_layer']]}, total "
              f"{info['total']['ciphertexts_refreshed']} ciphertexts at {info['total']['bootstrap_points']} points, "
              f"{info['total']['levels']} levels", flush=True)
        write()
    if not a.plan_only:
        for name in a.models.split(","):
            m = res["models"][name]
            cfg = config(name)
            model = synthetic_model(cfg, widest_ranges(shipped_ranges(name), cfg.num_hidden_layers))
            step = max(1, a.n // a.shifts) if a.n >= a.shifts else 1
            shifts = [step // 2 + step * k for k in range(a.shifts)]
            timer = BlockTimer(params, rc, model, a.n, shifts=shifts, **weights.get(name, {}))
            only = set(a.only.split(",")) if a.only else None

            def on_block(rows, m=m, timer=timer):
                m["timed"] = rows
                if boot.get("median_s"):
                    m["derived"] = derive(timer.info, rows, boot["median_s"], cfg.num_hidden_layers)
                m["derived_quiet_bootstrap"] = derive(timer.info, rows, QUIET_BOOTSTRAP_S, cfg.num_hidden_layers)
                write()
                print(json.dumps({k: rows[-1][k] for k in ("kind", "seconds", "max_err", "peak_rss_gib")}), flush=True)

            timer.run(on_block=on_block, only=only)
            del timer
            gc.collect()
            print(table(m), flush=True)
            if "derived" in m:
                d, pp = m["derived"], res["paper"]
                print(f"{name}: layer {d['layer_s']:.0f} s ({d['layer_compute_s']:.0f} s blocks + {d['layer_bootstraps']} "
                      f"bootstraps x {d['bootstrap_s']:.0f} s); 12 layers + head {d['model_s']:.0f} s = "
                      f"{d['model_s'] / 3600:.1f} h ({d['model_bootstraps']} bootstraps); paper: {pp['bert_base_gpu_s']} s "
                      f"on a GPU, about {pp['cpu_s_implied']} s on a CPU (implied, unverified)", flush=True)
    write()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
