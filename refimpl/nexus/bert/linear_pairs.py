"""The FFN on complex-packed chunk pairs (ours): FFN1 with complex outputs, Quad on the packed pair, FFN2 with
complex inputs, to halve the giant steps of FFN1 and the baby steps of FFN2.

CKKS slots are complex. A rotation and a product by a (complex) plaintext act on the real and imaginary parts
alike, and the product by i is the free monomial X^(N/2) (refimpl.nexus.bert.packing). refimpl's linear layers
(`Forward.linear`: Halevi and Shoup's diagonal method with baby-step giant-step on P x P blocks) spend per input
chunk g key switches (x + RotR(x, P) and g - 1 baby steps) and per output chunk P/g - 1 giant steps. On chunk
pairs:

- FFN1 with complex OUTPUTS (`pack_outputs`): output chunks 2k and 2k + 1 as one ciphertext y_2k + i y_2k+1,
  the product by the complex diagonals d_2k + i d_2k+1 (bias b_2k + i b_2k+1) of the same real baby steps:
  x W^T + b with W's row blocks paired into one complex block. Half the output ciphertexts, half the giant
  steps: BERT-base 6 x 16 + 12 x 7 = 180 key switches instead of 6 x 16 + 24 x 7 = 264.
- Quad on the packed pair (`packed_quad`): with z = (u_a + i u_b) / 2 (the 1/2 folded into FFN1),
  u_a^2 + i u_b^2 = (1 - i)(z z + conj z conj z) + 2 (1 + i) z conj z: three tensor products summed before one
  relinearization, one conjugation; the factors 1 +- i are monomial sums (no level), the linear and constant
  terms of Quad are added packed. 2 key switches per pair, as the two relinearizations of today's two chunks.
- FFN2 with complex INPUTS (`pack_inputs`): with z = a + i b, Re(e z) = d_a a + d_b b for e = d_a - i d_b, so
  the product by the complex block W_a - i W_b (W's column blocks paired, halved) of the packed inputs, plus
  its conjugate (`real_parts`, one conjugation per output chunk), is x W^T + b. The baby steps of 12 complex
  inputs instead of 24 real ones: BERT-base 12 x 8 + 6 x 15 + 6 = 192 instead of 24 x 8 + 6 x 15 = 282.

- The attention's output projection with complex outputs, split after it (`split_outputs`, the model option
  out_complex): its 6 -> 6 chunks as 3 output ciphertexts, g = 8: 6 x 8 + 3 x 15 + 3 conjugations = 96 key
  switches instead of 138; the residual and LayerNorm 1 read the real chunks as before.

The same values as the real path (the oracle: the model options ffn_complex and out_complex False), up to CKKS
noise. The output
of FFN1 cannot be made window-cyclic for free (diagonals tiled over both halves of the window): slot P + o
would read slots P + o + k, k < P, which reach into the next token's window; so FFN2 keeps its x + RotR(x, P).

The Softmax + GELU model (ours too): the GELU runs on two FFN chunks per ciphertext in the two halves of each
window (refimpl.nexus.bert.packing.pair_chunks). FFN1's complex output moved to halves (`to_halves`: one
conjugation, one rotation per pair, instead of pair_chunks' one rotation) and the GELU's split chunks packed
back into complex inputs of FFN2 (free) save 84 - 12 and 90 key switches per BERT-base layer there as well.
Needs the conjugation key (refimpl.nexus.bert.packing.can_conjugate). The complex diagonals are named
"L{i}.ffn1.pairs" and "L{i}.ffn2.pairs" in a weight store (refimpl.nexus.bert.weights_store), apart from the real
path's "L{i}.ffn1" and "L{i}.ffn2": a forward that takes the other path never receives them.
"""

from __future__ import annotations

import math

import numpy as np

from ...bert import functional as F
from ...ckks import Ciphertext
from ..levels import times_at
from .attention_pairs import halves
from .layout import QUAD_ROOT
from .packing import can_conjugate, joint_gelu, pair_chunks, unpack_complex


def applies(settings: dict, ev, option: str = "ffn_complex") -> bool:
    """The FFN on chunk pairs (or, option "out_complex", the output projection's `split_outputs`): the model option
    is on and the evaluator can conjugate."""
    return bool(settings[option]) and can_conjugate(ev)


def pair_blocks(A: np.ndarray, P: int, axis: int, sign: float) -> np.ndarray:
    """Blocks of P along `axis` paired: block 2k + sign i block 2k+1 (a last block alone: itself), complex.
    axis 0 on a weight's rows (its outputs), 1 on its columns (its inputs); a vector along axis 0."""
    A = np.asarray(A, dtype=np.float64)
    n = A.shape[axis]
    blocks = -(-n // P)
    pad = [(0, 0)] * A.ndim
    pad[axis] = (0, (blocks + blocks % 2) * P - n)
    A = np.pad(A, pad)
    A = np.moveaxis(A.reshape(A.shape[:axis] + (-1, 2, P) + A.shape[axis + 1:]), axis + 1, 0)
    out = A[0] + sign * 1j * A[1]
    return out.reshape(out.shape[:axis] + (-1,) + out.shape[axis + 2:])


def pack_outputs(W: np.ndarray, b: np.ndarray, P: int, factor: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(W', b') with x W'^T + b' = factor (y_2k + i y_2k+1) per output chunk pair, y = x W^T + b: the rows of W
    paired in blocks of P (FFN1 with complex outputs)."""
    return factor * pair_blocks(W, P, 0, 1.0), factor * pair_blocks(b, P, 0, 1.0)


def pack_inputs(W: np.ndarray, b: np.ndarray, P: int) -> tuple[np.ndarray, np.ndarray]:
    """(W', b') with w = z W'^T + b' for z = a_2k + i a_2k+1 (the input chunk pairs): w + conj w = a W^T + b
    (`real_parts`). W' = (W_2k - i W_2k+1) / 2 over the column blocks, b' = b / 2 (FFN2 with complex inputs)."""
    return 0.5 * pair_blocks(W, P, 1, -1.0), 0.5 * np.asarray(b, dtype=np.float64)


def split_outputs(fw, xs: list[Ciphertext], W: np.ndarray, b: np.ndarray, name: str | None) -> list[Ciphertext]:
    """x W^T + b chunk by chunk, computed two output chunks per ciphertext (`pack_outputs`, half the giant steps) and
    split after it (packing.unpack_complex: one conjugation per pair, no level): the output projection's 6 -> 6
    chunks at BERT-base as 6 x 8 + 3 x 15 + 3 = 96 key switches instead of 6 x 16 + 6 x 7 = 138 (ours).
    fw: the Forward (its `linear`); the complex diagonals are named "{name}.pairs" in a weight store."""
    cout = fw.lay.chunks(W.shape[0])
    zs = fw.linear(xs, *pack_outputs(W, b, fw.lay.chunk, 0.5), None if name is None else f"{name}.pairs")
    return [y for z in zs for y in unpack_complex(fw.ev, z, 1, 1)][:cout]


def real_parts(ev, ys: list[Ciphertext]) -> list[Ciphertext]:
    """y + conj y = 2 Re y per ciphertext: one conjugation each, no level."""
    return [ev.add(y, ev.conjugate(y)) for y in ys]


def pack_pair(ev, a: Ciphertext, b: Ciphertext | None = None) -> Ciphertext:
    """a + i b (b None: a alone), no key switch, no level (i = X^(N/2))."""
    return a if b is None else ev.add(a, ev.mul_monomial(b, ev.params.N // 2))


def to_halves(ev, z: Ciphertext, P: int) -> Ciphertext:
    """Re z + RotR(Im z, P) from z = (a + i b) / 2: chunk a in the first half of each window, b in the second
    (packing.pair_chunks' layout): one conjugation, one rotation, no level."""
    return halves(ev, z, P)


def packed_quad(ev, z: Ciphertext, const: np.ndarray, M: float) -> Ciphertext:
    """Quad / M on the packed pair z = (u_a + i u_b) / 2 (u = r x / sqrt(M) as `Forward.quad`): the packed
    u_a^2 + i u_b^2 + (0.25 / (r sqrt M)) (u_a + i u_b) + const (0.5 / M) with const the pair's 0/1 feature
    masks (complex): 1 level, one conjugation and one relinearization (three tensor products summed first)."""
    zc = ev.conjugate(z)
    i = ev.params.N // 2
    s = ev.add(ev.multiply(z, z, relinearize=False), ev.multiply(zc, zc, relinearize=False))
    t = ev.multiply(z, zc, relinearize=False)
    sq = ev.add(ev.sub(s, ev.mul_monomial(s, i)), ev.mul_int(ev.add(t, ev.mul_monomial(t, i)), 2))
    sq = ev.rescale(ev.relinearize(sq))  # level -1: u_a^2 + i u_b^2
    lin = times_at(ev, z, 2 * F.QUAD[1] / (QUAD_ROOT * math.sqrt(M)), sq.level, sq.scale)  # z = (u_a + i u_b) / 2
    return ev.add_const(ev.add(sq, lin), const * (F.QUAD[0] / M))


class FFN:
    """The forward's FFN as a mixin of refimpl.nexus.bert.forward.Forward: FFN1, the activation (Quad, or the 4-piece
    GELU on two chunks per ciphertext with the methods of refimpl.nexus.bert.paired.Paired), FFN2; on complex-packed
    chunk pairs (ours, this module) where `applies`, else chunk by chunk (the oracle)."""

    def ffn(self, p: str, h1: list[Ciphertext], w: dict) -> list[Ciphertext]:
        """act(h1 W_1^T + b_1) W_2^T + b_2 for layer prefix p ("L3."), from the entered piece ffn1 to the end of ffn2.
        The activation's output is carried divided by M = act_div (refresh at level 0 safe), undone by W_2 x M;
        Quad's sqrt(0.125) / sqrt(M) is folded into W_1 (`quad`)."""
        ev, lay, cfg, M = self.ev, self.lay, self.model.config, self.st["act_div"]
        P, quad, packed = lay.chunk, cfg.activation == "quad", applies(self.st, self.ev)
        W1, b1 = w["intermediate.dense.weight"], w["intermediate.dense.bias"]
        if quad:
            W1, b1 = W1 * (QUAD_ROOT / math.sqrt(M)), b1 * (QUAD_ROOT / math.sqrt(M))
        if packed:  # (y_2k + i y_2k+1) / 2; for the GELU in the window halves (packing.pair_chunks' layout)
            u = self.linear(h1, *pack_outputs(W1, b1, P, 0.5), p + "ffn1.pairs")
            u = u if quad else [to_halves(ev, z, P) for z in u]
        else:
            u = self.linear(h1, W1, b1, p + "ffn1")
            u = u if quad else pair_chunks(ev, u, P)  # two chunks per GELU ciphertext (refimpl.nexus.bert.packing)
        u = self.leave(p + "ffn1", u)
        act = p + ("quad" if quad else "gelu")
        u = self.enter(act, u)
        if quad:
            a = self.leave(act, [self.quad(uc, c, packed) for c, uc in enumerate(u)])
        elif joint_gelu(self.st, lay):  # the pairs refreshed as one ciphertext, split after (Paired)
            a = self.leave(act, [self.gelu_joint(uc, 2 * k) for k, uc in enumerate(u)])
            a = self.enter(p + "gelu.unpair", a)
            a = self.leave(p + "gelu.unpair", self.gelu_unpair(a))
        else:
            a = self.leave(act, [o for k, uc in enumerate(u) for o in self.gelu_pair(uc, 2 * k)])
        if packed and not quad:  # the GELU's chunks 2k, 2k + 1 as FFN2's complex inputs
            a = [pack_pair(ev, *a[j:j + 2]) for j in range(0, len(a), 2)]
        a = self.enter(p + "ffn2", a)
        W2, b2 = w["output.dense.weight"] * M, w["output.dense.bias"]
        if packed:
            return self.leave(p + "ffn2", real_parts(ev, self.linear(a, *pack_inputs(W2, b2, P), p + "ffn2.pairs")))
        return self.leave(p + "ffn2", self.linear(a, W2, b2, p + "ffn2"))

    def complex_stream(self, name: str) -> bool:
        """Whether the inputs of piece `name` hold complex-packed chunk pairs (a refresh before it: one each)."""
        return applies(self.st, self.ev) and name.rsplit(".", 1)[-1] in ("quad", "ffn2")

    def quad(self, u: Ciphertext, c: int, packed: bool = False) -> Ciphertext:
        """Quad(z) / M = u^2 + (0.25 / (r sqrt M)) u + 0.5 / M with u = r z / sqrt(M), r = sqrt(0.125) and
        1/sqrt(M) folded into W_1 (M = act_div, undone by W_2 x M): 1 level (MPCFormer's Quad). packed (ours):
        u = (u_2c + i u_2c+1) / 2, FFN chunks 2c and 2c + 1 (`packed_quad`)."""
        ev, M, I = self.ev, self.st["act_div"], self.lay.intermediate
        if packed:
            return packed_quad(ev, u, self.vec.features(I, 2 * c) + 1j * self.vec.features(I, 2 * c + 1), M)
        sq = ev.rescale(ev.square(u))  # level -1
        lin = times_at(ev, u, F.QUAD[1] / (QUAD_ROOT * math.sqrt(M)), sq.level, sq.scale)
        return ev.add_const(ev.add(sq, lin), self.vec.features(I, c) * (F.QUAD[0] / M))


__all__ = ["applies", "pair_blocks", "pack_outputs", "pack_inputs", "split_outputs", "real_parts", "pack_pair", "to_halves",
           "packed_quad", "FFN"]
