"""The paired blocks of the encrypted forward (ours), as methods of `Forward` (a mixin).

`Paired` runs the packings of refimpl.nexus.bert.packing inside the forward: the refreshes of a refresh
point two ciphertexts per bootstrap (`refresh_all`, `refresh_pair`), Softmax on two heads' rows per
ciphertext without the row duplication (`softmax_paired`), and the 4-piece GELU on two FFN chunks per
ciphertext (`gelu_pair`). They use the plan bookkeeping of refimpl.nexus.bert.forward.Forward and the
paper's blocks of refimpl.nexus.bert.nonlinear (`refresh`, `gelu_split`), which Forward mixes in too.

Reference (of the blocks paired): NEXUS (Zhang et al., NDSS 2025) Alg. 1 (Softmax), §3.3 (GELU);
THOR (Moon et al., ePrint 2024/1881) packs real and imaginary halves into one bootstrap likewise.
"""

from __future__ import annotations

import math

import numpy as np

from ...ckks import Ciphertext
from ...ckks.bootstrap.placement import UNSCALED_BOOT_BOUND
from ..folding import max_pair, quick_sum
from ..levels import multiply_lower, with_scale
from ..softmax import exp, goldschmidt_iterations, inverse
from .packing import (pack_complex, pack_first, pack_maxima, packed_fold, packed_sums, paired_vector, quickmax_widths,
                      spread, spread_block, spread_coarse, spread_many, spread_shared, starts, sums_folded_packed,
                      unpack_complex)


class Paired:
    """Two ciphertexts per bootstrap, two heads per score ciphertext, two FFN chunks per GELU ciphertext (ours)."""

    def refresh_all(self, cts: list[Ciphertext], bounds, pairable: bool = True, precise: bool = False) -> list[Ciphertext]:
        """Refresh every ciphertext of a refresh point; with `complex_refresh` (ours, refimpl.nexus.bert.packing)
        two at a time as the real and imaginary halves of one bootstrap, else one bootstrap each. A ciphertext at
        level 0 (no level for the scaling) is paired only if |values| <= UNSCALED_BOOT_BOUND / 2 (the sum a + i b
        stays within the placement's unscaled bound; a coarse refresh of larger values is left single, as
        planned). pairable=False: the ciphertexts hold complex slots already (refimpl.nexus.bert.linear_pairs), each
        refreshed alone. precise: each alone by `refresh`'s two bootstraps (META-BTS). Counts self.boots."""
        bounds = list(bounds)
        if len(bounds) != len(cts):
            raise ValueError(f"internal: {len(cts)} ciphertexts, {len(bounds)} bounds")
        out: list = [None] * len(cts)
        ok = [i for i, ct in enumerate(cts) if ct.level >= 1 or bounds[i] <= UNSCALED_BOOT_BOUND / 2]
        for a, b in zip(ok[0::2], ok[1::2]) if self.complex_refresh and pairable and not precise else ():
            pair = self.refresh_pair(cts[a], cts[b], bounds[a], bounds[b])
            if pair is not None:
                out[a], out[b] = pair
                self.boots += 1
        for i, ct in enumerate(cts):
            if out[i] is None:
                out[i] = self.refresh(ct, bounds[i], precise)
                self.boots += 1 + int(precise and ct.level >= 1 and bounds[i] > 1.0)  # refresh: META-BTS
        return out

    def refresh_pair(self, a: Ciphertext, b: Ciphertext, bound_a: float, bound_b: float):
        """Two ciphertexts refreshed by one bootstrap (ours, refimpl.nexus.bert.packing): a / 2M_a + i b / 2M_b (real parts if M_a != M_b), or at
        level 0 a + i b with the scale declared doubled (the bootstrap then returns (a + i b) / 2). None: not
        pairable (at level 0 with different scales)."""
        ev = self.ev
        if min(a.level, b.level) >= 1:
            ma, mb = (int(2.0 ** max(0, math.ceil(math.log2(max(v, 1.0))))) for v in (bound_a, bound_b))
            # unequal bounds: the real parts a + conj a, b + conj b go in. An imaginary part of a (a single
            # bootstrap's noise, grown by Newton steps) lands in b's slots scaled by mb / ma: far above b's values
            # when they sit low in their bound (LayerNorm's -u/2 beside y ~ 1/sqrt(u); 1.4 off at N = 2^16).
            # 2 conjugations, no level. Equal bounds (two ciphertexts of one stream) pass each other only their
            # own noise's size, as before.
            f = 0.5
            if ma != mb:
                a, b, f = ev.add(a, ev.conjugate(a)), ev.add(b, ev.conjugate(b)), 0.25
            z = self.bts.bootstrap(pack_complex(ev, a, b, f / ma, f / mb))
            return unpack_complex(ev, z, ma, mb)
        a, b = ev.drop_level(a, 0), ev.drop_level(b, 0)
        if abs(a.scale - b.scale) > 1e-9 * a.scale:
            return None
        z = ev.add(a, with_scale(ev.mul_monomial(b, ev.params.N // 2), a.scale))
        z = self.bts.bootstrap(Ciphertext(z.c, z.level, 2 * z.scale, z.params))
        return unpack_complex(ev, z, 1, 1)

    def softmax_paired(self, i: int, S: list[Ciphertext]) -> list[Ciphertext]:
        """NEXUS Alg. 1 on two heads' rows per ciphertext (ours, refimpl.nexus.bert.packing): QuickMax's and
        QuickSum's folds without the row duplication leave the maximum and the sum in each row's first slot;
        `spread` copies them over the row (1 level each: the piece softmax.spread, and the inverse's first).
        With the setting softmax_pack (ours, default) the running maxima are packed two ciphertexts into one after
        each round but the last (`packing.pack_maxima`, 1 level): the rounds run on 6, 3, 2, 1, ... ciphertexts
        instead of 6 each (BERT-base); and the row sums of all score ciphertexts go into one (`packing.pack_first`,
        the piece softmax.sum, 1 level) for one refresh and one inverse, spread back from their offsets after it.
        With the setting spread_shared (ours, default) the values of one ciphertext share their spread's coarse
        copies (`packing.spread_many`: the maxima's spread 2 levels, the sums' coarse copies before the inverse).
        With the setting sums_pack (ours, default) the row sums' folds are packed as QuickMax's are
        (`packing.packed_fold`) instead of folding every ciphertext and packing the sums after (`pack_first`).
        The same values in other slots."""
        ev, lay, vec, p = self.ev, self.lay, self.vec, f"L{i}."
        u, n_pad = self.st["score_unit"], lay.n_pad  # the scores arrive divided by u (u = 2B, or 1)
        B = self.st["B"] / u
        rows = paired_vector(vec.row_mask(), n_pad)
        km = paired_vector(vec.key_rows(0), n_pad)
        first = starts(lay, n_pad)
        x = self.enter(p + "softmax.round0", S)
        s = [ev.add_const(xc, -B * (rows - km)) for xc in x]  # padded keys -> -B
        held = [[(j, 0)] for j in range(len(s))]  # score ciphertext j's maxima: in s[c] at offset o, (j, o) in held[c]
        rounds = n_pad.bit_length() - 1
        widths = quickmax_widths(lay.score_cts, rounds) if self.st["softmax_pack"] else [lay.score_cts] * rounds
        for k in range(rounds):
            if k:
                s = self.enter(p + f"softmax.round{k}", s)
            s = [max_pair(ev, sc, ev.rotate(sc, 1 << k), B, lazy=self.st["lazy_relin"]) for sc in s]
            if k + 1 < rounds and widths[k + 1] < widths[k]:  # two into one, as the plan (packing.pack_maxima)
                s, held = pack_maxima(ev, s, held, 2 << k, lay, n_pad)
            s = self.leave(p + f"softmax.round{k}", s)
        where = sorted((j, c, o) for c, group in enumerate(held) for j, o in group)
        s = self.enter(p + "softmax.spread", s)
        if spread_shared(self.st, lay):  # several maxima per ciphertext: shared coarse copies (the plan's rule)
            got = {}
            for c, group in enumerate(held):
                for (j, _), mj in zip(group, spread_many(ev, s[c], first, n_pad, [o for _, o in group])):
                    got[j] = mj
            m = self.leave(p + "softmax.spread", [got[j] for j, _, _ in where])
        else:
            m = self.leave(p + "softmax.spread", [spread(ev, s[c], first, n_pad, offset=o) for _, c, o in where])
        d = self.enter(p + "softmax.exp", [self.join(xc, mc, subtract=True) for xc, mc in zip(x, m)])
        e = self.leave(p + "softmax.exp", [exp(ev, dc, lo=-2 * B, mask=km, r=self.st["exp_r"], unit=u) for dc in d])
        k_inv = goldschmidt_iterations(0.5, float(n_pad))
        if packed_sums(self.st, lay):  # the row sums of all score ciphertexts in one, one inverse (packing.pack_first)
            shared = self.st["spread_shared"]  # the coarse copies of the spread before the inverse (packing.spread_many)
            if sums_folded_packed(self.st, lay):  # the folds packed as QuickMax's (packing.packed_fold)
                ((packed,), (group,)) = packed_fold(ev, self.enter(p + "softmax.sum", e), lay, n_pad,
                                                   quickmax_widths(lay.score_cts, rounds))
                offsets = [o for _, o in sorted(group)]  # score ciphertext j's sums at offsets[j]
                if shared:  # zeros outside the sums for the coarse copies: one mask
                    packed = ev.rescale(ev.mul_const(packed, sum(np.roll(first, o) for o in offsets)))
            else:
                ssum = self.enter(p + "softmax.sum", [quick_sum(ev, ec, n_pad) for ec in e])  # the sum in the first slot
                packed, offsets = pack_first(ev, ssum, first), list(range(len(e)))
            if shared:
                packed = spread_coarse(ev, packed, n_pad, spread_block(offsets))
            ssum = self.enter(p + "softmax.inverse", self.leave(p + "softmax.sum", [packed]))
            y = inverse(ev, ssum[0], 0.5, float(n_pad), k_inv)
            if shared:
                inv = self.leave(p + "softmax.inverse", spread_many(ev, y, first, n_pad, offsets, coarse=False))
            else:
                inv = self.leave(p + "softmax.inverse", [spread(ev, y, first, n_pad, offset=o) for o in offsets])
        else:
            ssum = self.enter(p + "softmax.inverse", [quick_sum(ev, ec, n_pad) for ec in e])  # the sum in the first slot
            inv = self.leave(p + "softmax.inverse", [inverse(ev, spread(ev, sc, first, n_pad), 0.5, float(n_pad), k_inv)
                                                     for sc in ssum])
        self.enter(p + "softmax.normalize", [])
        return self.leave(p + "softmax.normalize", [multiply_lower(ev, ec, ic) for ec, ic in zip(e, inv)])

    def gelu_pair(self, ct: Ciphertext, c: int) -> list[Ciphertext]:
        """GELU of FFN chunks c and c + 1 paired in one ciphertext (ours, refimpl.nexus.bert.packing.pair_chunks:
        chunk c + 1 in the second half of each window): the segment bits and the pieces once, the final mask
        products twice, so the two chunks come out apart; the second moved back to the window start."""
        lay, M = self.lay, self.st["act_div"]
        lo = self.vec.features(lay.intermediate, c) / M
        if (c + 1) * lay.chunk >= lay.intermediate:  # a last chunk alone
            return self.gelu_split(ct, [lo])
        hi = np.roll(self.vec.features(lay.intermediate, c + 1), lay.chunk) / M
        a, b = self.gelu_split(ct, [lo, hi])
        return [a, self.ev.rotate(b, lay.chunk)]

    def gelu_joint(self, ct: Ciphertext, c: int) -> Ciphertext:
        """GELU of FFN chunks c and c + 1 paired in one ciphertext, left paired (ours): one mask (both chunks'
        features, / M) in the scale-aligning products, so one output and one relinearization per pair; the pair
        goes through the refresh before FFN2 as one ciphertext and `gelu_unpair` splits it after."""
        lay, M = self.lay, self.st["act_div"]
        m = self.vec.features(lay.intermediate, c) / M
        if (c + 1) * lay.chunk < lay.intermediate:
            m = m + np.roll(self.vec.features(lay.intermediate, c + 1), lay.chunk) / M
        return self.gelu_split(ct, [m])[0]

    def gelu_unpair(self, pairs: list[Ciphertext]) -> list[Ciphertext]:
        """The FFN chunks of `gelu_joint`'s outputs apart, chunk 2k + 1 moved back to its window's start (ours):
        two 0/1 mask products (1 level) and one rotation per pair."""
        ev, lay, P = self.ev, self.lay, self.lay.chunk
        out = []
        for k, pc in enumerate(pairs):
            out.append(ev.rescale(ev.mul_const(pc, self.vec.features(lay.intermediate, 2 * k))))
            if (2 * k + 1) * P < lay.intermediate:
                hi = np.roll(self.vec.features(lay.intermediate, 2 * k + 1), P)
                out.append(ev.rotate(ev.rescale(ev.mul_const(pc, hi)), P))
        return out
