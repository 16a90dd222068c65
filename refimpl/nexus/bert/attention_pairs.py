"""Two heads per rotation in the attention's diagonal products (ours): Q K^T and P V on head pairs, with the
real and imaginary halves of the slots carrying two halves of the inner work.

refimpl.nexus.bert.attention turns the inner sums of Q K^T (over a head's dh features) and of P V (over its
n_pad keys) into ciphertext additions: the diagonal method of Halevi and Shoup (2014) run over the inner index,
with baby-step giant-step, one ciphertext per head. Its cost is one rotation of the skewed operand per inner
index and head (63 for Q K^T, 127 for P V at BERT-base size), and a rotation costs the same whatever it carries.
Here one rotation serves two heads and, through the complex slots, twice the inner work:

- the two heads of a pair sit in the two halves of each token window, at offsets 0 and n_pad (the layout of
  refimpl.nexus.bert.packing.pair_rows, which Softmax reads), so each skewed operand holds both;
- the slots' imaginary half carries a second half of the range, as THOR (Moon, Yoo, Jiang, Kim; ePrint 2024/1881)
  packs two diagonals per complex slot. Q K^T: the keys t + r with r < R = n_pad / 2 in the real half, t + r + R
  in the imaginary half, so the skewed keys span R + dh - 1 slots instead of n_pad + dh - 1 and both heads fit in
  a window; the multiplier (the head's query features) is real and the same for both halves, so the product
  keeps them apart. P V: the key shifts j and j + R in the two halves of both operands, with the values'
  conjugate, Re(Pd_c conj(G_c)) = Pd[j] G[j] + Pd[j + R] G[j + R]: R inner indices instead of n_pad.

The layout and the complex halves of the inner index (and the whole of this module) are ours; THOR's public code
(Desilo/THOR) uses a diagonal-major encoding of all heads instead, which refimpl's token-major forward would
have to convert into and out of. Needs the conjugation key (one conjugation per score pair and per output chunk).
Key switches per head pair at BERT-base size (n = 128, dh = 64): Q K^T 22 (skewed keys, BSGS over n_pad shifts)
+ 7 (baby steps of Q) + 63 (rotations of the skewed keys) + 8 (relinearizations) + 7 (giant steps) + 2 (halves
apart: a conjugation, a rotation) = 109; P V 7 + 15 (skewed values of the two heads) + 1 (the imaginary half)
+ 2 (probabilities into halves) + 14 (baby steps, one set per head) + 63 (rotations of the values) + 16 + 15
(relinearizations and giant steps, per head) + 1 (conjugation: the real part) = 134. The levels, scales and
outputs are those of the per-head path (same plan), which stays as the oracle.
"""

from __future__ import annotations

import numpy as np

from ...ckks import Ciphertext
from .attention import (
    baby,
    feature_products,
    key_products,
    skewed_values,
    token_shift_sum,
)
from .layout import Layout, pair_attention_applies


def applies(lay: Layout) -> bool:
    """Head pairs apply on pair_rows layouts whose n_pad token windows fill the slots with dh <= n_pad / 2 + 1
    (refimpl.nexus.bert.layout.pair_attention_applies)."""
    return pair_attention_applies(lay)


def halves(ev, z: Ciphertext, R: int) -> Ciphertext:
    """Re z + RotR(Im z, R): the imaginary half moved behind the real one (1 conjugation, 1 rotation, no level;
    z carries the values halved)."""
    conj = ev.conjugate(z)
    re = ev.add(z, conj)
    im = ev.mul_monomial(ev.sub(conj, z), ev.params.N // 2)  # i (conj z - z) = 2 Im z
    return ev.add(re, ev.rotate(im, -R))


# ------------------------------------------------------------------ Q and K: two heads per ciphertext
def head_block(W: np.ndarray, b: np.ndarray, lay: Layout, h: int) -> tuple[np.ndarray, np.ndarray]:
    """(W', b'): P output features, head h's rows of (W, b) repeated over the first n_pad, zero past them (the
    output block of `pair_projections`)."""
    o = np.arange(lay.chunk)
    on = (o < lay.n_pad).astype(np.float64)
    rows = h * lay.head_dim + o % lay.head_dim
    return W[rows] * on[:, None], b[rows] * on


def pair_projections(fw, xs: list[Ciphertext], W: np.ndarray, b: np.ndarray, name: str | None,
                     babies) -> list[Ciphertext]:
    """x W^T + b as one ciphertext per head pair: head 2k's features repeated over slots [0, n_pad) of each window,
    head 2k + 1's over [n_pad, 2 n_pad). `fw.linear` (Halevi-Shoup BSGS, baby steps `babies` shared) with the head's
    rows of W repeated over the first n_pad outputs (name "{name}.pairhead{h}" in the weight store), then
    y_2k + RotR(y_2k+1, n_pad). 1 level."""
    ev, n_pad = fw.ev, fw.lay.n_pad
    ys = []
    for h in range(fw.lay.heads):
        (y,) = fw.linear(xs, *head_block(W, b, fw.lay, h), None if name is None else f"{name}.pairhead{h}", babies)
        ys.append(y)
    return [ys[k] if k + 1 == len(ys) else ev.add(ys[k], ev.rotate(ys[k + 1], -n_pad)) for k in range(0, len(ys), 2)]


def regions(lay: Layout, width: int) -> np.ndarray:
    """1 on the first `width` slots of both head regions (offsets 0 and n_pad) of every window."""
    pos = np.arange(lay.slots) % lay.window
    return ((pos % lay.n_pad < width) & (pos < 2 * lay.n_pad)).astype(np.float64)


def skewed_keys_pair(ev, kp: Ciphertext, lay: Layout, key: np.ndarray, imag: complex = 1j,
                     unit: float = 1.0) -> Ciphertext:
    """E[t, o + p] = K_h[(t + p) mod n_pad, p mod dh] + i K_h[(t + p + R) mod n_pad, p mod dh] for p < R + dh - 1,
    the pair's heads h at o = 0 and o = n_pad, each key times its mask `key` [n_pad]. From kp = pair_projections(K).
    E = sum_s Rot(kp, s w) x (complex one-hot of the positions whose key is t + s), baby-step giant-step over the
    n_pad shifts s. imag = 0: the real half alone (real masks: refimpl.nexus.bert.attention_packed runs it on two
    pairs' keys at once); unit: a factor on the masks. 1 level (l -> l-1, scale kept)."""
    w, n_pad, dh, S = lay.window, lay.n_pad, lay.head_dim, lay.slots
    R = n_pad // 2
    pos, tok = np.arange(S) % w, np.arange(S) // w
    p = pos % n_pad
    inside = regions(lay, R + dh - 1)
    return ev.rescale(token_shift_sum(ev, kp, lay, n_pad, lambda s: unit * inside * key[(tok + s) % n_pad]
                                      * ((p == s) + imag * ((p + R) % n_pad == s))))


def pair_scores(ev, qp: Ciphertext, kp: Ciphertext, lay: Layout, key: np.ndarray, scale: float,
                shift: np.ndarray | None = None, E: Ciphertext | None = None, lazy_rescale: bool = False) -> Ciphertext:
    """The rows of S for a head pair in the layout of packing.pair_rows: slot t w + r = S_2k[t, (t + r) mod n_pad]
    x scale, slot t w + n_pad + r the same for head 2k + 1, zero elsewhere (key mask `key` applied), + shift.

    Z = sum_j Rot(A_0, j) Rot(E, j - j w) (E = skewed_keys_pair; A_0 = qp; j < dh, baby-step giant-step with the
    row mask on the baby steps), complex: Re Z holds the rows' first R = n_pad / 2 entries, Im Z the others, which
    `halves` moves behind them. E: the skewed keys if already made (refimpl.nexus.bert.attention_packed). Level
    l -> l-2, the scale of the per-head path; lazy_rescale (ours): the row mask once on the sum
    (attention.feature_products_lazy), l -> l-3."""
    w, n_pad, S = lay.window, lay.n_pad, lay.slots
    if qp.level != kp.level:
        raise ValueError(f"Q at level {qp.level}, K at level {kp.level}")
    R = n_pad // 2
    rows = regions(lay, R) * (np.arange(S) // w < lay.n) * (0.5 * scale)  # halved: `halves` doubles
    E = skewed_keys_pair(ev, kp, lay, key) if E is None else E  # level l-1
    Z = feature_products(ev, qp, E, lay, rows, qp.scale * kp.scale / float(ev.params.q[qp.level]),
                         lazy_rescale)  # level l-2 (lazy: l-3)
    out = halves(ev, Z, R)
    return ev.add_const(out, shift) if shift is not None else out


# ------------------------------------------------------------------ P V on head pairs
def pair_probs(ev, pc: Ciphertext, lay: Layout, key: np.ndarray, two: bool) -> list[Ciphertext]:
    """The probabilities of a score pair (packing.pair_rows layout) as one complex ciphertext per head:
    Pd_c[t, o + u] = (P[t, (t + u) mod n_pad] + i P[t, (t + u + R) mod n_pad]) / 2 for u < dh + R - 1 (the head's
    region o), key mask `key` applied, rows t >= n cleared. 2 rotations (shared by the two heads), 1 level."""
    w, n_pad, dh, S = lay.window, lay.n_pad, lay.head_dim, lay.slots
    R = n_pad // 2
    pos, tok = np.arange(S) % w, np.arange(S) // w
    u = pos % n_pad
    live = tok < lay.n
    up, down = ev.rotate(pc, R), ev.rotate(pc, -R)
    out = []
    for o in ((0, n_pad) if two else (0,)):
        inside = live & (pos >= o) & (pos < o + dh + R - 1)
        re = 0.5 * inside * key[(tok + u) % n_pad]
        im = 0.5 * inside * key[(tok + u + R) % n_pad]
        z = ev.add(ev.mul_const(pc, re), ev.add(ev.mul_const(up, 1j * im * (u < R)), ev.mul_const(down, 1j * im * (u >= R))))
        out.append(ev.rescale(z))
    return out


def skewed_values_pair(ev, V: list[Ciphertext], lay: Layout, heads: tuple, vbs: dict) -> Ciphertext:
    """H[t, o + p] = G[t, p] - i G[t + R, p], G[t, p] = V[(t + p) mod n_pad, h dh + p] (p < dh) for the pair's heads
    h at o = 0 and o = n_pad (attention.skewed_values moved to the region; vbs: each chunk's hoisted token
    rotations). 1 level, 1 rotation for the imaginary half."""
    per = lay.chunk // lay.head_dim
    G = None
    for h, o in zip(heads, (0, lay.n_pad)):
        c = h // per
        gh = skewed_values(ev, V[c], lay, h % per, vbs[c], to=o)
        G = gh if G is None else ev.add(G, gh)
    shifted = ev.mul_monomial(ev.rotate(G, (lay.n_pad // 2) * lay.window), ev.params.N // 2)  # i G[t + R]
    return ev.sub(G, shifted)


def pv_pairs(ev, pds: list[Ciphertext], V: list[Ciphertext], lay: Layout) -> list[Ciphertext]:
    """O = P V for head pairs: O[t, h dh + p] = Re sum_{j < R} Rot(Pd_c, j)[t, o + p] Rot(H, j w)[t, o + p]
    (pds: pair_probs' ciphertexts, head h's at region o; H = skewed_values_pair, shared by the two heads: its R
    rotations serve both). j = g a + b: sum_a Rot(sum_b Rot(Pd_c, b) Rot(H, j w - g a), g a + o - hl dh), the g
    products of a giant step summed before relinearizing, one sum per head (the giant step also moves the head to
    its slots in the output chunk); then each chunk's real part (1 conjugation). H is zero outside the heads'
    features, so the products need no output mask. 1 level (Pd's level -> -1). Output: the token-major chunks."""
    w, n_pad, dh = lay.window, lay.n_pad, lay.head_dim
    R, per = n_pad // 2, lay.chunk // dh
    g = baby(R)
    vbs = {c: ev.rotate_hoisted(vc, [b * w for b in range(baby(dh))]) for c, vc in enumerate(V)}
    acc: list = [None] * len(V)
    for k in range(0, len(pds), 2):
        heads = tuple(range(k, min(k + 2, len(pds))))
        H = skewed_values_pair(ev, V, lay, heads, vbs)
        lvl = min(H.level, *(pds[h].level for h in heads))
        H = ev.drop_level(H, lvl)
        hr = ev.rotate_hoisted(H, sorted({j * w - g * (j // g) for j in range(R)}))
        for h, o in zip(heads, (0, n_pad)):
            pb = ev.rotate_hoisted(ev.drop_level(pds[h], lvl), list(range(g)))
            c, hl = h // per, h % per
            Y = key_products(ev, pb, hr, R, lay, o - hl * dh)  # the giant steps also move the head to its slots
            acc[c] = Y if acc[c] is None else ev.add(acc[c], Y)
    outs = []
    for y in acc:
        y = ev.rescale(y)
        outs.append(ev.add(y, ev.conjugate(y)))  # 2 Re: the halves were halved in pair_probs
    return outs
