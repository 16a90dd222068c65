"""P V with every rotated ciphertext full: the skewed values of two hidden chunks (four heads at BERT-base size) per
ciphertext (ours).

refimpl.nexus.bert.attention_pairs computes O = P V as sum_{j < R} Re(Rot(Pd_c, j) Rot(H, j w)) (R = n_pad / 2 key
shifts, the complex halves carrying shifts j and j + R), H the skewed values of a head pair at offsets 0 and n_pad of
each window. H spans dh slots per head, so half of its window is empty, and its R - 1 rotations (the bulk of the
block) serve two heads. Here H holds the skewed values of two whole hidden chunks, chunk 2q at offset 0 and chunk
2q + 1 at offset P of the window (w = 2P): every slot of H is used and each of its R - 1 rotations serves 2P / dh
heads. The probabilities Pd_c of head h are anchored at its offset o_h = (c mod 2) P + hl dh; they span dh + R - 1
slots (past the next head's), so each rotated H is multiplied by a 0/1 mask of head h's slots (a plaintext
product, no key switch: the level it takes is on V's side, which arrives from QKV far above the probabilities; the
plan's pv.mul joins V three levels below QKV's input instead of two). The heads of an output chunk then share the
relinearizations and giant steps (their products land at o_h - (c mod 2) P = hl dh, the chunk's own slots).

Key switches per two hidden chunks at BERT-base size (n = 128, dh = 64, P = 128): 14 (token rotations of V, 7 per
chunk) + 15 (the skew, 7 + 8 giant steps) + 1 (the imaginary half) + 6 (the probabilities of two score ciphertexts
moved to the heads' offsets, 3 each) + 28 (baby steps of Pd, 7 per head) + 63 (rotations of H) + 16
(relinearizations, 8 per chunk) + 15 (giant steps) + 2 (conjugations: the real part) = 160, 480 per layer against
attention_pairs' 804. Levels and scales are those of attention_pairs' P V, which stays as the oracle.

THOR (Moon, Yoo, Jiang, Kim; ePrint 2024/1881) reaches 268 key switches for P V with a diagonal-major encoding of all
heads (tokens inside the head index, the 128 diagonals across ciphertext blocks), Softmax's output copied per
diagonal (counted in its Softmax) and the whole model in that layout; refimpl's token-major forward would have to
convert Q, K, V and the context into and out of it (a transposition per ciphertext). The complex halves of the
key shifts are THOR's idea (attention_pairs); the chunk-filled H and the masks are ours.
"""

from __future__ import annotations

import numpy as np

from ...ckks import Ciphertext
from .attention import baby
from .attention_pairs import pair_probs
from .layout import Layout, pair_attention_applies, quad_offset


def applies(lay: Layout) -> bool:
    """The head-pair layouts of attention_pairs whose token window is two hidden chunks (w = 2P, always) holding
    whole heads (refimpl.nexus.bert.layout.pair_attention_applies)."""
    return pair_attention_applies(lay)


def head_slots(lay: Layout, o: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(slots, t, u): slot (t w + o + u) mod N/2 for the active tokens t < n and u < width (a span may run into the
    next window)."""
    t, u = np.meshgrid(np.arange(lay.n), np.arange(width), indexing="ij")
    return (t * lay.window + o + u) % lay.slots, t, u


def quad_probs(ev, pc: Ciphertext, lay: Layout, key: np.ndarray, k: int) -> list[Ciphertext]:
    """Score ciphertext k (packing.pair_rows: head 2k at offset 0, head 2k + 1 at n_pad) as one complex ciphertext per
    head h, anchored at the head's offset o_h = quad_offset(h): Pd_c[t, o_h + u] = (P[t, (t + u) mod n_pad] +
    i P[t, (t + u + R) mod n_pad]) / 2 for u < dh + R - 1, key mask `key` applied, rows t >= n cleared. The rotations
    src - o_h and src - o_h +- R of the score ciphertext, shared by its heads (3 at BERT-base size), 1 level."""
    n_pad, dh, S = lay.n_pad, lay.head_dim, lay.slots
    R = n_pad // 2
    heads = [h for h in (2 * k, 2 * k + 1) if h < lay.heads]
    shifts = {(h % 2) * n_pad - quad_offset(lay, h) for h in heads}
    rots = {d + e for d in shifts for e in (0, R, -R)}
    rot = ev.rotate_hoisted(pc, sorted(rots))  # keyed by the step; 0 is pc itself
    out = []
    for h in heads:
        d = (h % 2) * n_pad - quad_offset(lay, h)
        slots, t, u = head_slots(lay, quad_offset(lay, h), dh + R - 1)
        re, lo, hi = np.zeros(S), np.zeros(S), np.zeros(S)
        re[slots] = 0.5 * key[(t + u) % n_pad]
        im = 0.5 * key[(t + u + R) % n_pad]
        lo[slots] = im * (u < R)  # entry u + R of the row
        hi[slots] = im * (u >= R)  # entry u + R - n_pad (the row read cyclically)
        z = ev.add(ev.mul_const(rot[d], re), ev.add(ev.mul_const(rot[d + R], 1j * lo), ev.mul_const(rot[d - R], 1j * hi)))
        out.append(ev.rescale(z))
    return out


def head_probs(ev, probs: list[Ciphertext], lay: Layout, key: np.ndarray, quads: bool) -> list[Ciphertext]:
    """The complex probabilities of every head from the score ciphertexts (packing.pair_rows), one per head: at the
    heads' offsets of this module (`quad_probs`), or at the pair's offsets of attention_pairs (`pair_probs`)."""
    if quads:
        return [d for k, pc in enumerate(probs) for d in quad_probs(ev, pc, lay, key, k)]
    return [d for k, pc in enumerate(probs) for d in pair_probs(ev, pc, lay, key, 2 * k + 1 < lay.heads)]


def skewed_chunk(ev, vb: dict, lay: Layout, to: int, unit: float = 1.0) -> Ciphertext:
    """G[t, to + x] = V[(t + x mod dh) mod n_pad, c P + x] for x < P (every head of chunk c skewed at once), from
    vb = chunk c's hoisted token rotations b w, b < baby(dh); ceil(dh / g) giant steps (one fewer when to = 0);
    unit: a factor on the masks. 1 level (l -> l-1, scale kept)."""
    w, dh, P, S = lay.window, lay.head_dim, lay.chunk, lay.slots
    g = baby(dh)
    pos = np.arange(S) % w
    G = None
    for a in range(-(-dh // g)):
        s = a * g * w - to  # tokens on by a g, the chunk to offset `to`
        inner = None
        for b in range(g):
            p = a * g + b
            if p >= dh:
                break
            target = unit * ((pos >= to) & (pos < to + P) & ((pos - to) % dh == p))
            t = ev.mul_const(vb[b * w], np.roll(target, s))
            inner = t if inner is None else ev.add(inner, t)
        inner = ev.rotate(inner, s) if s % S else inner
        G = inner if G is None else ev.add(G, inner)
    return ev.rescale(G)


def skewed_pair(ev, V: list[Ciphertext], lay: Layout, q: int, unit: float = 1.0) -> Ciphertext:
    """G = skewed_chunk(V[q]) + skewed_chunk(V[q + 1]) moved by P (chunk q + 1 if there is one), each chunk's token
    rotations hoisted; unit: a factor on the masks. 1 level."""
    w, P = lay.window, lay.chunk
    G = None
    for c, to in ((q, 0), (q + 1, P)):
        if c < len(V):
            vb = ev.rotate_hoisted(V[c], [b * w for b in range(baby(lay.head_dim))])
            gc = skewed_chunk(ev, vb, lay, to, unit)
            G = gc if G is None else ev.add(G, gc)
    return G


def imaginary_shift(ev, G: Ciphertext, lay: Layout) -> Ciphertext:
    """H = G - i Rot(G, R w): G[t] - i G[t + R], the key shifts j + R in the imaginary half (1 rotation)."""
    return ev.sub(G, ev.mul_monomial(ev.rotate(G, (lay.n_pad // 2) * lay.window), ev.params.N // 2))


def shares_probs(lay: Layout) -> bool:
    """Whether the probabilities of head hl of chunk 2q (offset hl dh) and of chunk 2q + 1 (offset P + hl dh) fit in one
    ciphertext: each spans dh + R - 1 slots, so dh + R - 1 <= P keeps them apart in every window (`pv_quads`' shared)."""
    return lay.head_dim + lay.n_pad // 2 - 1 <= lay.chunk


def _chunk_pairs(ev, pds, V, lay: Layout, Hs):
    """Per pair of hidden chunks: (its chunks, their heads by chunk, its H); H made from V if Hs is None."""
    per = lay.chunk // lay.head_dim
    nc = lay.chunks(lay.d) if V is None else len(V)
    if Hs is None:
        Hs = [imaginary_shift(ev, skewed_pair(ev, V, lay, q), lay) for q in range(0, nc, 2)]
    for q in range(0, nc, 2):
        chunks = [c for c in (q, q + 1) if c < nc]
        yield chunks, {c: [h for h in range(c * per, (c + 1) * per) if h < len(pds)] for c in chunks}, Hs[q // 2]


def _prob_baby_steps(ev, pds, heads: dict, per: int, lvl: int, g: int, shared: bool) -> dict:
    """Per head, the g baby steps (hoisted rotations 0..g-1) of its probabilities at `lvl`; shared: the heads at the same
    local index of the pair's chunks summed into one ciphertext first (their slots do not meet), one set of steps."""
    by_slot: dict = {}  # local head index -> the pair's heads there (one per chunk); shared: one ciphertext
    for c in heads:
        for h in heads[c]:
            by_slot.setdefault(h % per if shared else h, []).append(h)
    pb_of = {}
    for hs in by_slot.values():
        pd = ev.drop_level(pds[hs[0]], lvl)
        for h in hs[1:]:
            pd = ev.add(pd, ev.drop_level(pds[h], lvl))
        steps = ev.rotate_hoisted(pd, list(range(g)))
        pb_of.update({h: steps for h in hs})
    return pb_of


def pv_quads(ev, pds: list[Ciphertext], V: list[Ciphertext], lay: Layout,
             Hs: list[Ciphertext] | None = None, shared: bool = False, lazy_rescale: bool = False) -> list[Ciphertext]:
    """O = P V, two hidden chunks per rotated ciphertext (see the module docstring). pds: quad_probs' ciphertexts,
    one per head; V: the token-major chunks at QKV's output level. Per chunk pair q: H = G - i Rot(G, R w), G =
    skewed_chunk(2q) + skewed_chunk(2q + 1) moved by P; its rotations Rot(H, j w - g a) (j = g a + b < R, g =
    baby(R)) shared by the pair's heads. Output chunk c: sum_a Rot(X_a, g a + (c mod 2) P), X_a = sum over c's heads
    h and b of Rot(Pd_h, b) x (Rot(H, j w - g a) x head h's slots moved by g a), relinearized once; then the real
    part (1 conjugation). Hs: the chunk pairs' H if already made (refimpl.nexus.bert.attention_packed).
    Level: min(pd level, V level - 2) - 1. V may be None when Hs is given (the layout's chunks). shared (ours, where
    `shares_probs`): the probabilities of head hl of both chunks of a pair added into one ciphertext (offsets hl dh
    and P + hl dh, apart in every window) and their baby steps rotated once for both: head h's mask on Rot(H) reads
    only its own span of it (7 key switches per two heads fewer at BERT-base, 42 per layer). lazy_rescale (ours):
    `pv_lazy`'s products, rescaled once per output chunk (the probabilities one level higher for the same output
    level and scale). Output: the token-major chunks."""
    if lazy_rescale:
        return pv_lazy(ev, pds, V, lay, Hs, shared)
    w, n_pad, dh, P, S = lay.window, lay.n_pad, lay.head_dim, lay.chunk, lay.slots
    R, per = n_pad // 2, P // dh
    g = baby(R)
    pos = np.arange(S) % w
    q_ = ev.params.q
    outs = []
    for chunks, heads, H in _chunk_pairs(ev, pds, V, lay, Hs):
        lvl = min(H.level - 1, *(pds[h].level for c in chunks for h in heads[c]))
        H = ev.drop_level(H, lvl + 1)
        hr = ev.rotate_hoisted(H, sorted({j * w - g * (j // g) for j in range(R)}))
        pb_of = _prob_baby_steps(ev, pds, heads, per, lvl, g, shared and shares_probs(lay))
        for c in chunks:
            pbs = {h: pb_of[h] for h in heads[c]}
            Y = None
            for a in range(-(-R // g)):
                X = None
                for h in heads[c]:
                    m = (((pos - quad_offset(lay, h) - g * a) % w) < dh).astype(np.float64)  # head h's slots, moved
                    m = ev.encoder.encode(m, level=lvl + 1, scale=float(q_[lvl + 1]))  # encoded once per giant step
                    for b in range(g):
                        j = a * g + b
                        if j >= R:
                            break
                        hm = ev.rescale(ev.mul_plain(hr[j * w - g * a], m))
                        term = ev.multiply(pbs[h][b], hm, relinearize=False)
                        X = term if X is None else ev.add(X, term)
                X = ev.relinearize(X)
                sh = g * a + (c % 2) * P  # the giant step, and the chunk's heads back to its slots
                X = ev.rotate(X, sh) if sh % S else X
                Y = X if Y is None else ev.add(Y, X)
            y = ev.rescale(Y)
            outs.append(ev.add(y, ev.conjugate(y)))  # 2 Re: the halves were halved in quad_probs
    return outs


def pv_lazy(ev, pds: list[Ciphertext], V: list[Ciphertext], lay: Layout,
            Hs: list[Ciphertext] | None = None, shared: bool = False) -> list[Ciphertext]:
    """`pv_quads` with lazy rescaling (ours; the products of one output chunk summed before one rescale, as lazy
    relinearization sums them before one key switch).

    pv_quads masks every rotated H by head h's slots and rescales it (one rescale per head and inner index j: 768
    per BERT-base layer) so that it meets the probabilities one level lower. The mask is slotwise, so it may sit on
    the other factor: for output chunk c and inner index j = g a + b,
        sum_h Rot(Pd_h, b) x (Rot(H, j w - g a) x m_ha) = Rot(H, j w - g a) x sum_h (Rot(Pd_h, b) x m_ha),
    the heads' masked probabilities summed first (Evaluator.mul_plain_sum, not rescaled: scale s_P q_L), one product
    with the rotated H per (c, j) instead of one per head, and the chunk's sum relinearized per giant step and
    rescaled twice at the end (q_L: the masks', q_(L-1): the product's). The output is at pv_quads' level and scale
    when the probabilities arrive one level higher (L = min(pd level, H level); output L - 2, scale
    s_P s_H / q_(L-1)); H is not masked, so it may be one level lower than in pv_quads (V two levels below QKV's
    input instead of three). Per BERT-base layer: rescales 12 (+ the probabilities' 12) instead of 768 + 6,
    ciphertext products 384 instead of 768, the same masks, key switches and relinearizations (these one level
    higher). The masks' rounding happens once per chunk instead of on every product."""
    w, n_pad, dh, P, S = lay.window, lay.n_pad, lay.head_dim, lay.chunk, lay.slots
    R, per = n_pad // 2, P // dh
    g = baby(R)
    pos = np.arange(S) % w
    q_ = ev.params.q
    outs = []
    for chunks, heads, H in _chunk_pairs(ev, pds, V, lay, Hs):
        lvl = min(H.level, *(pds[h].level for c in chunks for h in heads[c]))
        H = ev.drop_level(H, lvl)
        hr = ev.rotate_hoisted(H, sorted({j * w - g * (j // g) for j in range(R)}))
        pb_of = _prob_baby_steps(ev, pds, heads, per, lvl, g, shared and shares_probs(lay))
        for c in chunks:
            Y = None
            for a in range(-(-R // g)):
                ms = [ev.encoder.encode((((pos - quad_offset(lay, h) - g * a) % w) < dh).astype(np.float64),
                                        level=lvl, scale=float(q_[lvl])) for h in heads[c]]  # once per giant step
                X = None
                for b in range(g):
                    j = a * g + b
                    if j >= R:
                        break
                    pm = ev.mul_plain_sum([pb_of[h][b] for h in heads[c]], ms)  # the heads' masked probabilities
                    term = ev.multiply(hr[j * w - g * a], pm, relinearize=False)
                    X = term if X is None else ev.add(X, term)
                X = ev.relinearize(X)
                sh = g * a + (c % 2) * P
                X = ev.rotate(X, sh) if sh % S else X
                Y = X if Y is None else ev.add(Y, X)
            y = ev.rescale(ev.rescale(Y))
            outs.append(ev.add(y, ev.conjugate(y)))
    return outs
