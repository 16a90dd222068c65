"""QKV emitting the packed operands of the attention directly (ours): Q, K and V with complex outputs.

refimpl.nexus.bert.attention_packed skews the keys of two head pairs, K_k + i K_k+1, and the values of two chunk pairs,
V_a + i V_b, as one complex ciphertext each; it packs them after QKV. `Forward.linear` (the diagonal method of Halevi
and Shoup 2014 with baby-step giant-step) spends P/g - 1 giant steps per output ciphertext whatever its slots carry,
and complex diagonals d_a + i d_b on the same real baby steps give y_a + i y_b in one output
(refimpl.nexus.bert.linear_pairs.pack_outputs). So QKV emits:

- K: per group of two head pairs k, k + 1 (layout.pair_groups) the packed keys K_k + i K_k+1 as two outputs (heads
  2k + i 2k+2 on the first n_pad slots of each window, attention_pairs.head_block; heads 2k+1 + i 2k+3) and one
  rotation (the odd heads to [n_pad, 2 n_pad)): 2 outputs + 1 rotation instead of 4 + 2 (pair_projections);
- Q: the same with the rows halved, split by one conjugation into the two real pairs (packing.unpack_complex; the
  scores multiply the skewed keys by real queries): 2 outputs + 1 rotation + 1 conjugation instead of 4 + 2;
- V: the ciphertexts V_a + i V_b of layout.value_outputs (4 instead of 6 at BERT-base).

BERT-base (n = 128, d = 768, 12 heads, P = 128): 16 outputs instead of 30, so g = 16 instead of 32 (layout.bsgs_baby):
6 x 16 + 16 x 7 + 6 + 3 = 217 key switches instead of 294. The same values, levels and scales as pair_projections,
the real value chunks and attention_packed's packings (the oracle: the model option qkv_complex off).
"""

from __future__ import annotations

import numpy as np

from ...ckks import Ciphertext
from .attention_pairs import head_block
from .layout import Layout, pair_groups, value_outputs
from .packing import unpack_complex


def head_groups(lay: Layout) -> list[tuple[list[int], list[int]]]:
    """Per group of two head pairs (layout.pair_groups): (the even heads 2k, 2k + 2; the odd heads 2k + 1, 2k + 3),
    the heads that exist; the first of each list is the real part of its output, the second the imaginary part."""
    out = []
    for g in pair_groups(-(-lay.heads // 2)):
        even = [2 * k for k in g]
        out.append((even, [h + 1 for h in even if h + 1 < lay.heads]))
    return out


def projection_blocks(W: np.ndarray, b: np.ndarray, lay: Layout, split: bool) -> tuple[np.ndarray, np.ndarray]:
    """(W', b') whose output chunks are, per `head_groups` entry, the even heads' block and (if any) the odd heads'
    block, each head_block(h_0) + i head_block(h_1); halved where the group holds two pairs and `split` (Q)."""
    rows, bias = [], []
    for even, odd in head_groups(lay):
        f = 0.5 if split and len(even) == 2 else 1.0
        for heads in (even, odd):
            if heads:
                blocks = [head_block(W, b, lay, h) for h in heads]
                rows.append(f * sum(c * wb[0] for c, wb in zip((1, 1j), blocks)))
                bias.append(f * sum(c * wb[1] for c, wb in zip((1, 1j), blocks)))
    return np.concatenate(rows), np.concatenate(bias)


def packed_projections(fw, xs: list[Ciphertext], W: np.ndarray, b: np.ndarray, name: str | None, babies,
                       split: bool) -> list[Ciphertext]:
    """x W^T + b per group of head pairs as attention_packed.packed_keys' ciphertexts (K_k + i K_k+1, a pair alone
    real), or with `split` (Q) as pair_projections' real ciphertexts (one conjugation per group of two pairs).
    `fw.linear` on `projection_blocks` (baby steps `babies` shared; name "{name}.packed" in a weight store), then
    the odd heads moved to [n_pad, 2 n_pad) of each window. 1 level."""
    ev, n_pad = fw.ev, fw.lay.n_pad
    ys = iter(fw.linear(xs, *projection_blocks(W, b, fw.lay, split), None if name is None else f"{name}.packed",
                        babies))
    out = []
    for even, odd in head_groups(fw.lay):
        z = next(ys)
        if odd:
            z = ev.add(z, ev.rotate(next(ys), -n_pad))
        out += list(unpack_complex(ev, z, 1, 1)) if split and len(even) == 2 else [z]
    return out


def packed_value_chunks(fw, xs: list[Ciphertext], W: np.ndarray, b: np.ndarray, name: str | None,
                        babies) -> list[Ciphertext]:
    """x W^T + b as attention_packed.packed_values' ciphertexts (layout.value_outputs: V_a + i V_b, or V_a alone),
    one output chunk each (`fw.linear`, name "{name}.packed"). 1 level."""
    P = fw.lay.chunk
    out_f = W.shape[0]
    Wp = np.zeros((fw.lay.chunks(out_f) * P, W.shape[1]))
    bp = np.zeros(fw.lay.chunks(out_f) * P)
    Wp[:out_f], bp[:out_f] = W, b
    rows = [Wp[a * P:(a + 1) * P] + (1j * Wp[c * P:(c + 1) * P] if c is not None else 0)
            for a, c in value_outputs(fw.lay.chunks(out_f))]
    bias = [bp[a * P:(a + 1) * P] + (1j * bp[c * P:(c + 1) * P] if c is not None else 0)
            for a, c in value_outputs(fw.lay.chunks(out_f))]
    return fw.linear(xs, np.concatenate(rows), np.concatenate(bias), None if name is None else f"{name}.packed",
                     babies)


__all__ = ["head_groups", "packed_projections", "packed_value_chunks", "projection_blocks"]
