"""The skews of Q K^T's keys and of P V's values run once for two operands, packed as the real and imaginary halves of
the slots (ours).

Rotations and products with REAL plaintexts act on the real and imaginary parts of the slots alike, and i is the
monomial X^(N/2), which commutes with both. A chain of rotations and real-mask products applied identically to two
real ciphertexts x_1, x_2 therefore runs once on z = x_1 + i x_2 (no key switch, no level), and one conjugation
splits its result: x_1' = z + conj z, x_2' = i (conj z - z) (refimpl.nexus.bert.packing.unpack_complex; the chain's
masks carry the 1/2).

- Q K^T (refimpl.nexus.bert.attention_pairs): the skewed keys of a head pair are E = E_lo + i E_hi, E_lo[t, o + p]
  = K_h[(t + p) mod n_pad, p mod dh] (the keys t + r) and E_hi the keys t + r + R, written today into the
  imaginary half by complex masks, which would mix with the packing. But E_hi[t, p] = E_lo[(t + R) mod n_pad, p] =
  Rot(E_lo, R w)[t, p]: the token windows wrap over n_pad tokens (n_pad w = N/2 on every head-pair layout) and the
  key mask key[(t + p) mod n_pad] moves with the key, so this holds for any n <= n_pad. Two head pairs' keys
  K_a + i K_b take the real skew (BSGS over the n_pad token shifts, real masks), one conjugation splits it, and one
  rotation per pair makes its E: 22 + 1 + 2 = 25 key switches per two head pairs instead of 2 x 22 at BERT-base
  (n = 128, dh = 64): 3 x 25 = 75 per layer instead of 132 (-57).
- P V (refimpl.nexus.bert.attention_quads): the token rotations and the skew of the values of two chunk pairs q, q'
  (V_c + i V_c' per chunk of the pair: 14 + 15 key switches) run once, one conjugation splits the skews G_q, G_q',
  and each takes its imaginary shift H = G - i Rot(G, R w): 14 + 15 + 1 + 2 = 32 key switches per two chunk pairs
  instead of 2 x 30. BERT-base has 3 chunk pairs (two packed, one alone): 32 + 30 = 62 instead of 90 (-28).

Levels and scales are those of the unpacked paths (the packing and the split take no level), which stay the
oracle (the model option kv_complex off). Needs the conjugation key, which the head pairs use already, and no new
rotation (R w is the head pairs' own).
"""

from __future__ import annotations

import numpy as np

from ...ckks import Ciphertext
from .attention_pairs import pair_scores, skewed_keys_pair
from .attention_quads import imaginary_shift, skewed_pair
from .layout import Layout, pair_groups, value_outputs
from .packing import unpack_complex


def pack(ev, a: Ciphertext, b: Ciphertext) -> Ciphertext:
    """a + i b (a multiplication by the monomial X^(N/2), no key switch, no level); a and b at the same level and
    scale."""
    if (a.level, a.scale) != (b.level, b.scale):
        raise ValueError(f"packing needs one level and scale: {(a.level, a.scale)} and {(b.level, b.scale)}")
    return ev.add(a, ev.mul_monomial(b, ev.params.N // 2))


def packed_keys(ev, kps: list[Ciphertext]) -> list[Ciphertext]:
    """The head pairs' keys (kps: pair_projections(K)) as packed_skewed_keys skews them: K_k + i K_k+1 per group of
    layout.pair_groups, a last pair alone (refimpl.nexus.bert.qkv_packed emits them so from QKV)."""
    return [pack(ev, kps[g[0]], kps[g[1]]) if len(g) == 2 else kps[g[0]] for g in pair_groups(len(kps))]


def skews_of_packed_keys(ev, zs: list[Ciphertext], pairs: int, lay: Layout, key: np.ndarray) -> list[Ciphertext]:
    """The skewed keys of every head pair from the packed keys zs (`packed_keys`, one per group of
    layout.pair_groups(pairs)): the real skew E_lo of K_a + i K_b with the masks halved, split by one conjugation,
    then E = E_lo + i Rot(E_lo, R w) per pair; a pair alone takes skewed_keys_pair itself. 1 level."""
    N2, Rw = ev.params.N // 2, (lay.n_pad // 2) * lay.window
    out = []
    for z, g in zip(zs, pair_groups(pairs)):
        if len(g) == 1:
            out.append(skewed_keys_pair(ev, z, lay, key))
            continue
        z = skewed_keys_pair(ev, z, lay, key, imag=0.0, unit=0.5)
        out += [ev.add(lo, ev.mul_monomial(ev.rotate(lo, Rw), N2)) for lo in unpack_complex(ev, z, 1, 1)]
    return out


def packed_skewed_keys(ev, kps: list[Ciphertext], lay: Layout, key: np.ndarray) -> list[Ciphertext]:
    """attention_pairs.skewed_keys_pair of every head pair's keys (kps: pair_projections(K)), two pairs per skew
    (`packed_keys`, `skews_of_packed_keys`). 1 level, as skewed_keys_pair."""
    return skews_of_packed_keys(ev, packed_keys(ev, kps), len(kps), lay, key)


def scores_of_pairs(ev, qps: list[Ciphertext], kps: list[Ciphertext], lay: Layout, key: np.ndarray, scale: float,
                    shift: np.ndarray | None, packed: bool, keys_packed: bool = False,
                    lazy_rescale: bool = False) -> list[Ciphertext]:
    """attention_pairs.pair_scores of every head pair, on the skewed keys of packed_skewed_keys (packed) or on each
    pair's own skewed_keys_pair (packed False: the oracle). keys_packed: kps holds `packed_keys`' ciphertexts
    already (refimpl.nexus.bert.qkv_packed; then packed is implied). lazy_rescale: pair_scores' (one level more)."""
    if keys_packed:
        Es = skews_of_packed_keys(ev, kps, len(qps), lay, key)
        kps = [z for z, g in zip(kps, pair_groups(len(qps))) for _ in g]  # each pair's level and scale
    else:
        Es = packed_skewed_keys(ev, kps, lay, key) if packed else [None] * len(kps)
    return [pair_scores(ev, qp, kp, lay, key, scale, shift, E, lazy_rescale) for qp, kp, E in zip(qps, kps, Es)]


def packed_values(ev, V: list[Ciphertext]) -> list[Ciphertext]:
    """The value chunks as packed_skewed_values skews them (layout.value_outputs: V_a + i V_b, or V_a alone)."""
    return [pack(ev, V[a], V[b]) if b is not None else V[a] for a, b in value_outputs(len(V))]


def skews_of_packed_values(ev, vz: list[Ciphertext], lay: Layout, chunks: int | None = None) -> list[Ciphertext]:
    """attention_quads' H of every chunk pair from the packed value ciphertexts vz (`packed_values`): per two chunk
    pairs skewed_pair with the masks halved, split by one conjugation, then each pair's imaginary_shift; a last
    chunk pair alone: skewed_pair and imaginary_shift; chunks: the value chunks (default the layout's). 1 level."""
    outs = value_outputs(lay.chunks(lay.d) if chunks is None else chunks)
    if len(vz) != len(outs):
        raise ValueError(f"{len(vz)} value ciphertexts, the layout packs {len(outs)}")
    out, i = [], 0
    while i < len(outs):
        n = 2 if i + 1 < len(outs) and outs[i + 1][0] == outs[i][0] + 1 else 1  # the ciphertexts of one skew
        group = vz[i:i + n]
        if outs[i][1] is not None:
            out += [imaginary_shift(ev, G, lay) for G in unpack_complex(ev, skewed_pair(ev, group, lay, 0, 0.5), 1, 1)]
        else:
            out.append(imaginary_shift(ev, skewed_pair(ev, group, lay, 0), lay))
        i += n
    return out


def packed_skewed_values(ev, V: list[Ciphertext], lay: Layout) -> list[Ciphertext]:
    """attention_quads' H of every chunk pair (chunks 2q, 2q + 1), two chunk pairs q, q' per skew (`packed_values`,
    `skews_of_packed_values`). 1 level."""
    return skews_of_packed_values(ev, packed_values(ev, V), lay, len(V))
