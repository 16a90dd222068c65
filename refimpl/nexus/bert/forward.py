"""The server's encrypted BERT forward: every piece of the chain on CKKS ciphertexts, with bootstrapping.

`encrypted_forward` places the bootstraps (`chain.pieces_of`, `placement.place`) and runs
`Forward`, which computes each piece with the NEXUS blocks in the layout of refimpl.nexus.bert.layout
and checks the level after every piece against the plan (see the package docstring for the
kernels: BSGS diagonals, batched Q K^T and P V, Softmax, LayerNorm, GELU, Quad, head, Argmax).

Reference: NEXUS (Zhang et al., NDSS 2025) §3-4, Alg. 1, 7; Halevi and Shoup 2014 (diagonal
method); freeDiv (Liu Weixin et al. 2024) 2Quad-freeDiv; MPCFormer (Quad).
"""

from __future__ import annotations

import math
import time

import numpy as np

from ...ckks import Ciphertext
from ...ckks.bootstrap.placement import place
from ..folding import duplicate_rows, max_pair, quick_sum
from ..levels import align, with_scale
from ..sign import sgn
from .attention import applies as diagonal_applies, head_projections, head_scores_diagonal, pv_diagonal
from .attention_packed import packed_skewed_values, scores_of_pairs, skews_of_packed_values
from .attention_pairs import applies as pairs_apply, pair_projections, pv_pairs
from .attention_quads import applies as quads_apply, head_probs, pv_quads
from .chain import pieces_of, pv_join
from .layout import LOGIT_BOUND, Layout, SlotVectors, bsgs_baby, input_layout, packed_qkv_outputs
from .linear_pairs import FFN, applies as linear_pairs_apply, split_outputs
from .nonlinear import Nonlinear
from .packing import can_conjugate, pair_rows, paired_vector, unpair_rows
from .paired import Paired
from .qkv_packed import packed_projections, packed_value_chunks
from .ranges import NexusModel


class Forward(Nonlinear, Paired, FFN):
    """Runs the pieces of `pieces_of` on ciphertexts, following the plan (checks every level).

    ev: the Evaluator (with the rotation keys of `rotation_steps`); bts: anything with
    .bootstrap(ct) and .output_level; model: the NexusModel; lay: its Layout; mask: the public
    attention mask [n]; rows: the plan (`place` on `pieces`); trace: None or a list that
    receives one dict per piece. `run` computes the whole model. The kernels (`linear`,
    `scores`, `head_scores`, `softmax_pieces`, `pv`, `layernorm`, `gelu_masked`, `quad`, `head`,
    `argmax`) and the plan bookkeeping (`enter`, `leave`, `refresh`) are public so that a
    timing study (refimpl.experiments.bertbase) can run single blocks at their planned levels
    and replace `refresh`; `taps` (None or a dict) receives each layer's output chunks.
    Softmax, LayerNorm, GELU and the refreshes are mixed in: the paper's from
    refimpl.nexus.bert.nonlinear (`Nonlinear`), the paired ones (ours) from refimpl.nexus.bert.paired; the FFN
    (`ffn`, `quad`) from refimpl.nexus.bert.linear_pairs (`FFN`: on complex-packed chunk pairs, ours, or chunk by chunk).

    Hooks (ours): `weights` (None, or a store with .plaintext(key, level) -> Plaintext or None, e.g.
    refimpl.nexus.bert.weights_store.WeightStore) gives the linear layers' encoded diagonals by
    (weight name, diagonal, level) instead of encoding them every query (`plaintext`); `on_layer`
    (None or a callable (i, chunks)) is called after each encoder layer (checkpoints,
    refimpl.nexus.bert.checkpoint); `run(..., start=k)` resumes at layer k.
    """

    def __init__(self, ev, bts, model: NexusModel, lay: Layout, mask, rows, pieces, trace):
        self.ev, self.bts, self.model, self.lay = ev, bts, model, lay
        self.vec = SlotVectors(lay, mask)
        self.rows, self.pieces = rows, {p.name: p for p in pieces}
        self.i, self.trace, self.t0 = 0, trace, 0.0
        self.n_real = float(np.sum(mask))
        self.taps = None
        self.diagonal_attention = True  # False: head_scores and the per-shift pv (the oracles of refimpl.nexus.bert.attention)
        self.pair_attention = True  # False: the per-head diagonal products (the oracle of refimpl.nexus.bert.attention_pairs)
        self.st = model.settings()
        self.weights = None  # hook (ours): precomputed plaintexts, see `plaintext`
        self.on_layer = None  # hook (ours): called with (i, output chunks) after layer i
        self.complex_refresh = can_conjugate(ev)  # ours: two ciphertexts per bootstrap (refresh_all)
        self.progress = None  # hook (ours): refimpl.progress's callback, once per piece of the plan
        self.counts0 = dict(getattr(ev, "counts", {}))  # a counting evaluator: each piece's counts in the trace

    def plaintext(self, key: tuple, level: int, scale: float, values):
        """The plaintext of slot vector values() at (level, scale): from the weight store when one is
        attached and holds `key` = (weight name, diagonal...) at this level, else encoded now (ours)."""
        if self.weights is not None and key[0] is not None:
            pt = self.weights.plaintext(key, level)
            if pt is not None:
                return pt
        return self.ev.encoder.encode(values(), level=level, scale=scale)

    # -- plan bookkeeping
    def enter(self, name: str, cts: list[Ciphertext]) -> list[Ciphertext]:
        """Start piece `name` (the next row of the plan): refresh `cts` if the plan says so; check their level."""
        row = self.rows[self.i]
        if row["block"] != name:
            raise RuntimeError(f"internal: the forward reached {name}, the plan expects {row['block']}")
        self.t0 = time.perf_counter()
        self.boots = 0
        if row["bootstrap"]:
            pc = self.pieces[name]
            cts = self.refresh_all(cts, pc.bounds or (pc.bound,) * len(cts), pairable=not self.complex_stream(name),
                                   precise=pc.precise)
        if any(ct.level != row["level_in"] for ct in cts):
            raise RuntimeError(f"internal: {name} entered at level {[c.level for c in cts]}, planned {row['level_in']}")
        return cts

    def leave(self, name: str, cts: list[Ciphertext], level_in: int | None = None) -> list[Ciphertext]:
        """End piece `name`: check the level the plan expects, record the trace row, move to the next row."""
        row = self.rows[self.i]
        if any(ct.level != row["level_out"] for ct in cts):
            raise RuntimeError(f"internal: {name} left at level {[c.level for c in cts]}, planned {row['level_out']}")
        if self.trace is not None:
            self.trace.append({"block": name, "seconds": time.perf_counter() - self.t0, "level_in": row["level_in"],
                               "level_out": row["level_out"], "bootstraps": self.boots, "ciphertexts": len(cts)})
            if hasattr(self.ev, "counts"):
                self.trace[-1]["counts"] = {k: v - self.counts0.get(k, 0) for k, v in self.ev.counts.items()
                                            if v != self.counts0.get(k, 0)}
        # the next piece counts from here: work on its inputs before its `enter` (a sum in the argument list) is its own
        self.counts0 = dict(getattr(self.ev, "counts", {}))
        self.i += 1
        if self.progress is not None:  # pieces done, and the one that runs next
            following = self.rows[self.i]["block"] if self.i < len(self.rows) else "done"
            self.progress(f"encrypted forward: {following}", self.i, len(self.rows))
        return cts

    def to_plan(self, cts: list[Ciphertext]) -> list[Ciphertext]:
        """cts dropped to the level the current piece leaves at: a path that spends fewer levels than the plan gives
        its piece (the lazy attention's plan, chain.qk_levels and pv_mul_levels, run without the head pairs)."""
        out = self.rows[self.i]["level_out"]
        return [self.ev.drop_level(c, out) if c.level > out else c for c in cts]

    def join(self, a: Ciphertext, b: Ciphertext, subtract: bool = False) -> Ciphertext:
        """a +- b at the lower level; equal levels spend one level to match the scales (as placement.simulate)."""
        ev = self.ev
        if a.level > b.level:
            a = align(ev, a, b.level, b.scale)
        elif b.level > a.level:
            b = align(ev, b, a.level, a.scale)
        else:
            a = align(ev, a, a.level - 1, ev.params.scale)
            b = align(ev, b, b.level - 1, ev.params.scale)
        return ev.sub(a, b) if subtract else ev.add(a, b)

    # -- linear layers
    def baby_steps(self, xs: list[Ciphertext], outputs: int | None = None) -> list[dict]:
        """The hoisted baby steps of `linear` for input chunks xs: x + RotR(x, P) (each window cyclic), rotated
        by 0 .. g-1, g = bsgs_baby(P, len(xs), outputs) (the g of the product they serve; outputs: the output
        chunks of every product sharing them, default len(xs)). Computed once and shared by every product of
        the same input (Q, K and V)."""
        P = self.lay.chunk
        g = bsgs_baby(P, len(xs), len(xs) if outputs is None else outputs)
        return [self.ev.rotate_hoisted(self.ev.add(x, self.ev.rotate(x, -P)), list(range(g))) for x in xs]

    def linear(self, xs: list[Ciphertext], W: np.ndarray, b: np.ndarray, name: str | None = None,
               babies: list | None = None) -> list[Ciphertext]:
        """x W^T + b per token window: the diagonal method of Halevi and Shoup (2014) with baby-step giant-step
        on P x P blocks, 1 level (not NEXUS §3.1.1's broadcast product, which `refimpl.nexus.matmul` holds).

        y_oc = sum_gb Rot(sum_ic sum_i Rot(d_{oc,ic,gb g+i}, -gb g) x Rot(x_ic, i), gb g): the g baby steps of
        each input chunk (`baby_steps`) are shared by every output chunk, the P/g - 1 giant steps of an output
        chunk by its input chunks; the bias is added once per output chunk, after the rescale. g is chosen per
        product (`bsgs_baby`, ours: the fewest key switches for its input and output chunk counts), or is the g
        of the shared `babies`. The giant steps of an output chunk are key-switched into Q_l P, summed there and
        brought down once (`Evaluator.rotate_sum`: the giant-step half of double hoisting, Bossuat et al. 2021
        section 4.3), where the evaluator has it. The inner sum of a giant step is one `Evaluator.mul_plain_sum`
        (ours: fused products and additions, bit for bit the chain of mul_plain and add).

        name: the weight's name (e.g. "L0.attention.self.query"): the plaintext of diagonal k of block
        (oc, ic), pre-rotated by its giant step (k // g) g, is `plaintext((name, oc, ic, k, g), ...)`, from the
        weight store when one is attached. babies: `baby_steps(xs, outputs)` when several products share the
        input (computed here otherwise). W and b may be complex: complex diagonals and bias on the same baby steps
        (refimpl.nexus.bert.linear_pairs, ours: two output chunks per ciphertext, or complex-packed inputs)."""
        ev, lay, vec = self.ev, self.lay, self.vec
        P = lay.chunk
        out_f, in_f = W.shape
        cin, cout = lay.chunks(in_f), lay.chunks(out_f)
        Wp = np.zeros((cout * P, cin * P), dtype=W.dtype)  # complex W: refimpl.nexus.bert.linear_pairs
        Wp[:out_f, :in_f] = W
        level = xs[0].level
        q = float(ev.params.q[level])
        babies = self.baby_steps(xs, cout) if babies is None else babies
        g = len(babies[0])
        rotate_sum = getattr(ev, "rotate_sum", None)  # giant steps over Q_l P, one ModDown (without it: one each)
        outs = []
        for oc in range(cout):
            diags = [vec.diagonals(Wp[oc * P:(oc + 1) * P, ic * P:(ic + 1) * P]) for ic in range(cin)]
            total, giants = None, []
            for gb in range(P // g):
                terms = [(ic, i) for ic in range(cin) for i in range(g) if diags[ic][gb * g + i].any()]
                if not terms:
                    continue
                pts = (self.plaintext((name, oc, ic, gb * g + i, g), level, q,
                                      lambda dk=diags[ic][gb * g + i], gb=gb: np.roll(vec.tile(dk), gb * g))
                       for ic, i in terms)  # made as the sum takes them (a store's expansions: a batch at a time)
                inner = ev.mul_plain_sum([babies[ic][i] for ic, i in terms], pts)  # scale x q, one fused pass
                if rotate_sum is not None:
                    giants.append((inner, gb * g))
                    continue
                inner = ev.rotate(inner, gb * g) if gb else inner  # giant step
                total = inner if total is None else ev.add(total, inner)
            if giants:
                total = rotate_sum(giants)  # the giant steps
            if total is None:  # an all-zero block row: a zero ciphertext at the right level
                total = ev.mul_int(babies[0][0], 0)
                total = Ciphertext(total.c, total.level, xs[0].scale * q, total.params)
            y = with_scale(ev.rescale(total), xs[0].scale)  # level l -> l-1
            outs.append(ev.add_const(y, vec.features(out_f, oc, b)))
        return outs

    # -- attention
    def pairs(self) -> bool:
        """Q K^T and P V on head pairs (refimpl.nexus.bert.attention_pairs, ours): where the layout allows, the
        diagonal attention is on, and the evaluator can conjugate."""
        return (self.diagonal_attention and self.pair_attention and diagonal_applies(self.lay) and pairs_apply(self.lay)
                and can_conjugate(self.ev))

    def qkv_packed(self) -> bool:
        """QKV emits the packed operands of the attention (refimpl.nexus.bert.qkv_packed, ours; the model option
        qkv_complex): with head pairs, P V on chunk pairs and the packed skews (kv_complex)."""
        return (self.pairs() and self.st["qkv_complex"] and self.st["kv_complex"] and self.st["pv_quads"]
                and quads_apply(self.lay))

    def scores(self, q: Ciphertext, k: Ciphertext, c: int, scale: float, shift: float) -> Ciphertext:
        """Rows of S = Q K^T scale (+ shift on real rows) for chunk c (NEXUS §3.1.2, batched over key shifts)."""
        ev, lay, vec = self.ev, self.lay, self.vec
        w, n_pad, dh = lay.window, lay.n_pad, lay.head_dim
        kd = k if n_pad * w == lay.slots else ev.add(k, ev.rotate(k, -n_pad * w))  # keys cyclic over n_pad
        krot = ev.rotate_hoisted(kd, [r * w for r in range(n_pad)])
        acc = None
        for r in range(n_pad):
            u = ev.rescale(ev.multiply(q, krot[r * w]))  # slot t w + f: Q[t, f] K[t + r, f]; level -1
            u = quick_sum(ev, u, dh)  # slot t w + hl dh: S[h, t, t + r] / scale
            u = ev.rescale(ev.mul_const(u, vec.row_starts(c, r, scale)))  # keep row starts, x key mask; level -2
            u = ev.rotate(u, -r) if r else u  # entry r of the row
            acc = u if acc is None else ev.add(acc, u)
        if shift:
            acc = ev.add_const(acc, vec.key_rows(c, shift))
        return acc

    def head_scores(self, q: Ciphertext, k: Ciphertext, c: int, scale: float, shift: float,
                    shifts=None) -> list[Ciphertext]:
        """head_rows: the rows of S for each head of chunk c in a ciphertext of its own, entry r of row
        (t, h) at slot t w + r (as `scores`, each head's row start moved from t w + hl dh to t w + r).
        shifts: the key shifts r to compute (default all n_pad; a subset times a fraction of the work)."""
        ev, lay, vec = self.ev, self.lay, self.vec
        w, n_pad, dh = lay.window, lay.n_pad, lay.head_dim
        rs = list(range(n_pad) if shifts is None else shifts)
        kd = k if n_pad * w == lay.slots else ev.add(k, ev.rotate(k, -n_pad * w))  # keys cyclic over n_pad
        krot = ev.rotate_hoisted(kd, [r * w for r in rs])
        heads = vec.heads(c)
        acc = [None] * len(heads)
        for r in rs:
            u = ev.rescale(ev.multiply(q, krot[r * w]))  # slot t w + f: Q[t, f] K[t + r, f]; level -1
            u = quick_sum(ev, u, dh)  # slot t w + hl dh: S[h, t, t + r] / scale
            for j, hl in enumerate(heads):
                m = ev.rescale(ev.mul_const(u, vec.row_starts(c, r, scale, only=hl)))  # head hl's row starts; level -2
                m = ev.rotate(m, hl * dh - r) if hl * dh != r else m  # entry r of the row, from the window start
                acc[j] = m if acc[j] is None else ev.add(acc[j], m)
        if shift:
            acc = [ev.add_const(a, vec.key_rows(c, shift)) for a in acc]
        return acc

    def pv(self, i: int, probs: list[Ciphertext], V: list[Ciphertext], shifts=None, lazy: bool = True,
           packed: bool = False) -> list[Ciphertext]:
        """O = P V (NEXUS §3.1.4): per key shift r, mask column r, move it to the head's first slot,
        broadcast over dh slots, times RotL(V, r w). With head_rows, probs holds one ciphertext per
        head and the columns of a chunk's heads are moved to their heads' slots and added.
        shifts: the key shifts r (default all n_pad; a subset times a fraction of the work).
        lazy (ours): the n_pad products of a chunk are summed as degree-2 ciphertexts and relinearized
        once (lazy=False: each product relinearized, the previous path, kept as the oracle). packed (ours): V holds
        attention_packed.packed_values' ciphertexts (refimpl.nexus.bert.qkv_packed; only where `qkv_packed`)."""
        ev, lay, vec, p = self.ev, self.lay, self.vec, f"L{i}."
        w, n_pad, dh = lay.window, lay.n_pad, lay.head_dim
        probs = self.enter(p + "pv.mask", probs)
        quads = shifts is None and self.pairs() and self.st["pv_quads"] and quads_apply(lay)
        own = (2 if self.st["pv_lazy"] else 3) if quads else 2 if shifts is None and self.diagonal_attention and diagonal_applies(lay) else 1
        V = [ev.drop_level(vc, vc.level - pv_join(self.st, lay) + own) for vc in V]  # V where the plan has it
        if shifts is None and self.pairs():  # attention_pairs: two heads per rotation; attention_quads: chunk pairs
            pds = self.leave(p + "pv.mask", head_probs(ev, probs, lay, vec.key, quads))
            self.enter(p + "pv.mul", [])
            if packed:  # refimpl.nexus.bert.qkv_packed: V packed by QKV
                Hs, V = skews_of_packed_values(ev, V, lay), None
            else:  # attention_packed
                Hs = packed_skewed_values(ev, V, lay) if quads and self.st["kv_complex"] else None
            return self.leave(p + "pv.mul", pv_quads(ev, pds, V, lay, Hs, self.st["pv_shared"], self.st["pv_lazy"])
                              if quads else self.to_plan(pv_pairs(ev, pds, V, lay)))
        if shifts is None and self.diagonal_attention and diagonal_applies(lay):  # refimpl.nexus.bert.attention
            if lay.pair_rows:  # the two heads of each ciphertext apart (refimpl.nexus.bert.packing)
                masked = [m for k, pc in enumerate(probs)
                          for m in unpair_rows(ev, pc, vec.key_rows(0), n_pad, 2 * k + 1 < lay.heads)]
            else:
                masked = [ev.rescale(ev.mul_const(pc, vec.key_rows(0))) for pc in probs]
            masked = self.leave(p + "pv.mask", masked)
            self.enter(p + "pv.mul", [])
            return self.leave(p + "pv.mul", self.to_plan(pv_diagonal(ev, masked, V, lay)))
        rs = list(range(n_pad) if shifts is None else shifts)
        pos = np.arange(lay.slots) % lay.row_segment  # position inside the row's segment
        cols = []
        # (ciphertext, offset of the row): with pair_rows head h is the second row of probs[h // 2] when h is odd
        src = ([(probs[h // 2], (h % 2) * n_pad) for h in range(min(lay.heads, 2 * len(probs)))] if lay.pair_rows
               else [(pc, 0) for pc in probs])
        offs = [off for _, off in src]
        for c, (pc, off) in enumerate(src):
            km = vec.key_rows(c)
            cols.append({r: ev.rescale(ev.mul_const(pc, np.roll(km * (pos == r), off)))  # column r; level -1
                         for r in rs})
        self.leave(p + "pv.mask", [cl[rs[0]] for cl in cols])
        self.enter(p + "pv.mul", [])
        outs = []
        for c, vc in enumerate(V):
            vd = vc if n_pad * w == lay.slots else ev.add(vc, ev.rotate(vc, -n_pad * w))
            vrot = ev.rotate_hoisted(vd, [r * w for r in rs])
            acc = None
            for r in rs:
                if lay.head_rows:  # head hl's column: from slot t w + r to t w + hl dh
                    per = lay.chunk // dh
                    b = None
                    for hl in self.vec.heads(c):
                        col = cols[c * per + hl][r]
                        sh = r + offs[c * per + hl] - hl * dh
                        col = ev.rotate(col, sh) if sh else col
                        b = col if b is None else ev.add(b, col)
                else:
                    b = ev.rotate(cols[c][r], r) if r else cols[c][r]  # P[h, t, t + r] at slot t w + hl dh
                for k in range(dh.bit_length() - 1):
                    b = ev.add(b, ev.rotate(b, -(1 << k)))  # broadcast over the head's dh slots
                lvl = min(b.level, vrot[r * w].level)
                term = ev.multiply(ev.drop_level(b, lvl), ev.drop_level(vrot[r * w], lvl), relinearize=not lazy)
                acc = term if acc is None else ev.add(acc, term)
            outs.append(ev.rescale(ev.relinearize(acc) if lazy else acc))  # level -1
        return self.leave(p + "pv.mul", self.to_plan(outs))

    # -- head
    def head(self, xs: list[Ciphertext]) -> Ciphertext:
        """logit l = W_C[l] . x[CLS] + b_C[l] in slot l w (1 level; [CLS] head, no tanh pooler)."""
        ev, lay = self.ev, self.lay
        P, w = lay.chunk, lay.window
        Wc, bc = self.model.w64["classifier.weight"], self.model.w64["classifier.bias"]
        acc = None
        for l in range(lay.num_labels):
            y = None
            for c, x in enumerate(xs):
                v = np.zeros(lay.slots)
                seg = Wc[l, c * P:(c + 1) * P]
                v[:seg.size] = seg  # window 0 = token 0 = [CLS]
                t = ev.mul_const(x, v)
                y = t if y is None else ev.add(y, t)
            y = ev.rescale(y)
            y = ev.rotate(y, -l * w) if l else y
            acc = y if acc is None else ev.add(acc, y)
        z = quick_sum(ev, acc, P)  # slot l w: the dot product
        bias = np.zeros(lay.slots)
        bias[np.arange(lay.num_labels) * w] = bc
        return ev.add_const(z, bias)

    def argmax(self, z: Ciphertext) -> Ciphertext:
        """1 + Sgn((x - QuickMax(x)) / 2B) over the logits (NEXUS §3.4), logits compacted into slots 0 .. L-1."""
        ev, lay = self.ev, self.lay
        w, Lp, B = lay.window, lay.label_pad, LOGIT_BOUND
        z = self.enter("argmax.compact", [z])[0]
        acc = None
        for l in range(lay.num_labels):
            e = np.zeros(lay.slots)
            e[l * w] = 1.0
            t = ev.rescale(ev.mul_const(z, e))
            t = ev.rotate(t, l * w - l) if l else t
            acc = t if acc is None else ev.add(acc, t)
        z = self.leave("argmax.compact", [acc])[0]
        z = self.enter("argmax.round0", [z])[0]
        rows = (np.arange(lay.slots) % (2 * Lp) < Lp).astype(np.float64)
        km = np.zeros(lay.slots)
        km[: lay.num_labels] = 1.0
        xa = ev.add_const(z, -B * (rows - km))
        s = duplicate_rows(ev, xa, Lp)
        for k in range(Lp.bit_length() - 1):
            if k:
                s = self.enter(f"argmax.round{k}", [s])[0]
            s = self.leave(f"argmax.round{k}", [max_pair(ev, s, ev.rotate(s, 1 << k), B)])[0]
        d = self.enter("argmax.sgn", [self.join(xa, s, subtract=True)])[0]
        return self.leave("argmax.sgn", [ev.add_const(sgn(ev, d, bound=2 * B), 1.0)])[0]

    # -- the whole model
    def run(self, cts: list[Ciphertext], argmax: bool, start: int = 0) -> list[Ciphertext]:
        """Every encoder layer, the head and optionally Argmax on the input chunks `cts`.

        start: resume at layer `start` with `cts` = the output chunks of layer start - 1 (ours)."""
        ev, lay, model, cfg = self.ev, self.lay, self.model, self.model.config
        dh = lay.head_dim
        x = cts
        if start:
            first = f"L{start}.qkv" if start < cfg.num_hidden_layers else "head"
            self.i = next(j for j, r in enumerate(self.rows) if r["block"] == first)
        for i in range(start, cfg.num_hidden_layers):
            w, p = model.layer(i), f"L{i}."
            ln1, ln2 = self.st["ln"][p + "ln1"], self.st["ln"][p + "ln2"]
            x = self.enter(p + "qkv", x)
            diagonal, pairs, packed = self.diagonal_attention and diagonal_applies(lay), self.pairs(), self.qkv_packed()
            cd = lay.chunks(lay.d)  # Q and K one ciphertext per head (head_projections, pair_projections) or per chunk
            outputs = packed_qkv_outputs(lay.heads, cd) if packed else (2 * lay.heads if diagonal else 2 * cd) + cd
            babies = self.baby_steps(x, outputs)  # shared by Q, K and V
            Wq, bq = w["attention.self.query.weight"], w["attention.self.query.bias"]
            Wk, bk = w["attention.self.key.weight"], w["attention.self.key.bias"]
            Wv, bv = w["attention.self.value.weight"], w["attention.self.value.bias"]
            if packed:  # refimpl.nexus.bert.qkv_packed: Q split into head pairs, K and V packed for attention_packed
                Q = packed_projections(self, x, Wq, bq, p + "query", babies, split=True)
                K = packed_projections(self, x, Wk, bk, p + "key", babies, split=False)
                V = self.leave(p + "qkv", packed_value_chunks(self, x, Wv, bv, p + "value", babies))
            else:
                project = ((lambda *a: pair_projections(self, *a)) if pairs else
                           (lambda *a: head_projections(self, *a)) if diagonal else self.linear)
                Q = project(x, Wq, bq, p + "query", babies)
                K = project(x, Wk, bk, p + "key", babies)
                V = self.leave(p + "qkv", self.linear(x, Wv, bv, p + "value", babies))
            self.enter(p + "qk", [])
            if cfg.attention == "softmax":  # the scores divided by score_unit (ranges.NexusModel.settings)
                scale, shift = 1.0 / (math.sqrt(dh) * self.st["score_unit"]), 0.0
            else:  # (s + c)^2 / f(n) = ((s + c) / sqrt(f))^2: f folded into the score mask
                a, b = cfg.freediv
                root = math.sqrt(a * self.n_real**b)
                scale, shift = 1.0 / (math.sqrt(dh) * root), cfg.quad_c / root
            if pairs:  # refimpl.nexus.bert.attention_pairs: two heads per ciphertext, out in pair_rows' layout
                add = paired_vector(self.vec.key_rows(0, shift), lay.n_pad) if shift else None
                S = scores_of_pairs(ev, Q, K, lay, self.vec.key, scale, add, self.st["kv_complex"], packed,
                                    self.st["qk_lazy"])  # attention_packed
            elif diagonal:  # refimpl.nexus.bert.attention: the feature sum as ciphertext additions
                rows, add = self.vec.key_rows(0, scale), (self.vec.key_rows(0, shift) if shift else None)
                S = [head_scores_diagonal(ev, qh, kh, lay, rows, add) for qh, kh in zip(Q, K)]
            elif lay.head_rows:
                S = [s for c, (qc, kc) in enumerate(zip(Q, K)) for s in self.head_scores(qc, kc, c, scale, shift)]
            if lay.head_rows:  # pair_rows: two heads per score ciphertext (refimpl.nexus.bert.packing)
                S = pair_rows(ev, S, lay.n_pad) if lay.pair_rows and not pairs else S
                S = self.leave(p + "qk", S if pairs else self.to_plan(S))
            else:
                S = self.leave(p + "qk", [self.scores(qc, kc, c, scale, shift) for c, (qc, kc) in enumerate(zip(Q, K))])
            if cfg.attention == "softmax":
                probs = self.softmax_pieces(i, S)
            else:
                S = self.enter(p + "2quad", S)
                probs = self.leave(p + "2quad", [ev.rescale(ev.square(sc)) for sc in S])
            ctx = self.pv(i, probs, V, packed=packed)
            ctx = self.enter(p + "out", ctx)
            pairs_out = lay.chunks(lay.d) > 1 and linear_pairs_apply(self.st, ev, "out_complex")  # two chunks or more
            out = (lambda *a: split_outputs(self, *a)) if pairs_out else self.linear
            o = self.leave(p + "out", out(ctx, w["attention.output.dense.weight"], w["attention.output.dense.bias"], p + "out"))
            s1 = self.enter(p + "ln1", [self.join(a, b) for a, b in zip(o, x)])
            h1 = self.layernorm(p + "ln1", s1, w["attention.output.LayerNorm.weight"],
                                w["attention.output.LayerNorm.bias"], ln1)
            h1 = self.enter(p + "ffn1", h1)
            f = self.ffn(p, h1, w)  # FFN1, activation, FFN2 (refimpl.nexus.bert.linear_pairs)
            s2 = self.enter(p + "ln2", [self.join(a, b) for a, b in zip(f, h1)])
            x = self.layernorm(p + "ln2", s2, w["output.LayerNorm.weight"], w["output.LayerNorm.bias"], ln2)
            if self.taps is not None:
                self.taps[f"L{i}"] = x
            if self.on_layer is not None:
                self.on_layer(i, x)
        x = self.enter("head", x)
        z = self.leave("head", [self.head(x)])[0]
        return [self.argmax(z)] if argmax else [z]


def encrypted_forward(ev, bootstrapper, model: NexusModel, cts: list[Ciphertext], n: int, attention_mask, *,
                      trace: list | None = None, argmax: bool = False, taps: dict | None = None,
                      head_rows: bool = False, weights=None, on_layer=None, start: int = 0,
                      input_level: int | None = None, diagonal_attention: bool = True, pair_attention: bool = True,
                      complex_refresh: bool | None = None, progress=None) -> list[Ciphertext]:
    """The server's computation (NEXUS §3-4): every encoder layer, the [CLS] head, optionally Argmax.

    cts: pack_input's chunks, encrypted at one level (the plan starts there); n tokens;
    attention_mask [n] 0/1 (public). Bootstraps where `plan` puts them (bootstrapper: anything
    with .bootstrap(ct) and .output_level). trace (a list) receives one dict per piece: block,
    seconds, level in/out, bootstraps, ciphertexts; taps (a dict) receives each layer's output
    chunks as "L{i}" (for per-layer error checks by a key holder). Returns [logits ct] (slot l w = logit l,
    see unpack_output) or, with argmax=True, [selection ct] (slots 0 .. L-1, unpack_argmax).
    head_rows: input_layout's option for attention rows longer than a head (one score ciphertext per head);
    diagonal_attention: with head_rows, Q K^T and P V by refimpl.nexus.bert.attention where it applies
    (False: head_scores and the per-shift pv); pair_attention (ours): with it, two heads per rotation
    (refimpl.nexus.bert.attention_pairs) where the layout allows and the evaluator can conjugate (False: one head each).
    complex_refresh (ours): two ciphertexts per bootstrap as real and imaginary halves (refimpl.nexus.bert.packing);
    None: where the evaluator can conjugate (it holds the conjugation key, as with a real bootstrapper's keys).
    Hooks (ours, see Forward): weights (a weight store: precomputed diagonals; its .check(params,
    model, layout) runs first), on_layer (called with
    (i, chunks) after layer i: checkpoints), start (resume at this layer; cts = layer start - 1's output)
    and input_level (the level of the client's ciphertexts, where the plan starts; default cts' level),
    progress (refimpl.progress's callback: "encrypted forward: <piece>", pieces done, pieces)."""
    mask = np.asarray(attention_mask, dtype=np.float64).reshape(-1)
    if mask.size != n:
        raise ValueError(f"attention mask of length {mask.size} for n = {n} tokens")
    if not set(np.unique(mask)) <= {0.0, 1.0} or mask.sum() < 1:
        raise ValueError("the attention mask must be 0/1 with at least one real token")
    lay = input_layout(model.config, n, ev.params.slots, head_rows=head_rows)
    if len(cts) != lay.chunks(lay.d):
        raise ValueError(f"expected {lay.chunks(lay.d)} input ciphertexts (chunks of {lay.chunk} features), got {len(cts)}")
    if len({c.level for c in cts}) != 1:
        raise ValueError(f"input ciphertexts at different levels {[c.level for c in cts]}")
    if weights is not None:
        weights.check(ev.params, model, lay)  # a store made for other parameters, model or layout: an error
    pieces = pieces_of(model, lay, argmax)
    rows = place(pieces, cts[0].level if input_level is None else input_level, bootstrapper.output_level)
    fw = Forward(ev, bootstrapper, model, lay, mask, rows, pieces, trace)
    fw.taps, fw.weights, fw.on_layer, fw.progress = taps, weights, on_layer, progress
    fw.diagonal_attention, fw.pair_attention = diagonal_attention, pair_attention
    if complex_refresh is not None:
        fw.complex_refresh = complex_refresh
    if progress is not None:
        progress(f"encrypted forward: {rows[0]['block']}", 0, len(rows))
    return fw.run(list(cts), argmax, start=start)
