"""Q K^T with the inner sum as ciphertext additions (ours): the diagonal method over a head's features,
products summed before relinearizing, for the head_rows layout of refimpl.nexus.bert.layout.

Today's `Forward.head_scores` (NEXUS §3.1.2, batched over key shifts) multiplies Q by each of the
n_pad token rotations of K and folds every product over the head's dh features with log2(dh)
rotations: per chunk and key shift about 10 key switches (BERT-base: 7,662 per layer). Here the
sum over the features is a sum of ciphertexts (the diagonal method of Halevi and Shoup 2014 run
with the feature index as the inner index; the same idea as THOR's diagonal-major attention,
Moon et al., ePrint 2024/1881, in refimpl's token-major windows):

    Z[t, r] = sum_{j < dh} A_0[t, r + j] E[t - j, r + j],   r < n_pad, t < n,
    A_0[t, p] = Q[t, h dh + p mod dh]              (the head's features, repeated over the window)
    E[t, p]   = K[(t + p) mod n_pad, h dh + p mod dh]   for p < n_pad + dh - 1 (the keys, skewed)

so that Z[t, r] = sum_f Q[t, f] K[t + r, f] = S[h, t, (t + r) mod n_pad], slot t w + r: exactly
head_scores' output. Term j is Rot(A_0, j) x Rot(E, j - j w) (a rotation by j slots and back by
j token windows); with j = g a + b (baby-step giant-step): sum_a Rot(sum_b A_{a,b} x Rot(E, b - j w), g a),
A_{a,b} = Rot(A_0, b) times the row mask moved by g a (it clears the slots past the row and carries
the key mask and 1/sqrt(dh)). Key switches per head: E from K's token rotations (BSGS over the n_pad
shifts: about 2 sqrt(n_pad)), g - 1 baby steps of A_0, dh - 1 rotations of E (hoisted), dh / g
relinearizations (the g products of a giant step summed first) and dh / g - 1 giant steps;
BERT-base: 22 + 7 + 63 + 8 + 7 = 107 per head, 1,284 per layer. 2 levels (the masks of A and E
in parallel, then the product), the output scale exactly head_scores'.

Inputs: each head's Q and K replicated over the whole window (`pack_head`; the projections can
emit it: a P x P block whose rows repeat the head's rows of W, then x + RotR(x, P)).
"""

from __future__ import annotations

import numpy as np

from ...ckks import Ciphertext
from ..levels import with_scale
from .layout import Layout


def pack_head(x: np.ndarray, lay: Layout, head: int) -> np.ndarray:
    """[n, d] -> slot t w + p = x[t, head dh + p mod dh] for every p < w, t < n (the head repeated over the window)."""
    n, dh, w = lay.n, lay.head_dim, lay.window
    v = np.zeros((lay.slots // w, w))
    v[:n] = np.asarray(x, dtype=np.float64)[:, head * dh + np.arange(w) % dh]
    return v.ravel()


def baby(n: int) -> int:
    """2^ceil(log2(n) / 2): the baby steps of a BSGS over n indices."""
    return 1 << -(-(max(n, 2) - 1).bit_length() // 2)


def token_shift_sum(ev, x: Ciphertext, lay: Layout, count: int, mask) -> Ciphertext:
    """sum_{s < count} Rot(x, s w) x mask(s) (mask(s): a slot vector in the output's frame), baby-step giant-step over
    the token shifts s (the masks pre-rotated so that the giant step moves them back). Not rescaled."""
    w = lay.window
    g = baby(count)
    xb = ev.rotate_hoisted(x, [b * w for b in range(g)])
    out = None
    for a in range(-(-count // g)):
        inner = None
        for b in range(g):
            s = a * g + b
            if s >= count:
                break
            t = ev.mul_const(xb[b * w], np.roll(mask(s), a * g * w))  # = Rot(m, -a g w) before the giant step
            inner = t if inner is None else ev.add(inner, t)
        inner = ev.rotate(inner, a * g * w) if a else inner  # giant step
        out = inner if out is None else ev.add(out, inner)
    return out


def skewed_keys(ev, kh: Ciphertext, lay: Layout) -> Ciphertext:
    """E[t, p] = K[(t + p) mod n_pad, h dh + p mod dh] at slot t w + p, p < n_pad + dh - 1, from kh = pack_head(K).

    E = sum_{s < n_pad} Rot(kh, s w) x (one-hot of positions s and s + n_pad), baby-step giant-step
    over s; 1 level (l -> l-1, scale kept)."""
    w, n_pad, dh, S = lay.window, lay.n_pad, lay.head_dim, lay.slots
    R = n_pad + dh - 1
    pos = np.arange(S) % w
    return ev.rescale(token_shift_sum(ev, kh, lay, n_pad, lambda s: (
        (pos == s) | ((pos == s + n_pad) & (s + n_pad < R))).astype(np.float64)))


def feature_products(ev, qh: Ciphertext, E: Ciphertext, lay: Layout, rows: np.ndarray, scale: float,
                     lazy_rescale: bool = False) -> Ciphertext:
    """Z = sum_{j < dh} (Rot(qh, j) x rows seen from j) Rot(E, j - j w) by baby-step giant-step over j (the row mask
    on the baby steps, the g products of a giant step summed before relinearizing); qh at level l, E at l - 1.
    Level l -> l-2, scale `scale`. lazy_rescale (ours): `feature_products_lazy`, level l -> l-3."""
    if lazy_rescale:
        return feature_products_lazy(ev, qh, E, lay, rows, scale)
    w, dh = lay.window, lay.head_dim
    lvl, q = qh.level, ev.params.q
    g = baby(dh)
    A = ev.rotate_hoisted(qh, list(range(g)))
    Erot = ev.rotate_hoisted(E, [(j % g) - j * w for j in range(dh)])
    Z = None
    for a in range(-(-dh // g)):
        X = None
        # the row's slots seen from the giant step's frame, encoded once for its g baby steps (ours: mul_const's own
        # encoding and product, bit for bit, one encoding per giant step instead of one per term)
        mask = ev.encoder.encode(np.roll(rows, g * a), level=lvl, scale=float(q[lvl - 1]))
        for b in range(g):
            j = a * g + b
            if j >= dh:
                break
            Ab = ev.rescale(ev.mul_plain(A[b], mask))  # level l-1
            term = ev.multiply(Ab, Erot[b - j * w], relinearize=False)
            X = term if X is None else ev.add(X, term)
        X = ev.relinearize(X)  # the g products of this giant step, relinearized once
        X = ev.rotate(X, g * a) if a else X
        Z = X if Z is None else ev.add(Z, X)
    return with_scale(ev.rescale(Z), scale)  # level l-2


def feature_products_lazy(ev, qh: Ciphertext, E: Ciphertext, lay: Layout, rows: np.ndarray, scale: float) -> Ciphertext:
    """`feature_products` with lazy rescaling (ours): the row mask once on the sum instead of on every baby step.

    The baby-step mask of giant step a is the row mask seen from that giant step's frame (rows moved by g a), which
    the giant step's rotation by g a moves back: sum_a Rot(sum_b (A_b x roll(rows, g a)) E_j, g a) =
    rows x sum_a Rot(sum_b A_b E_j, g a). So the products take qh's baby steps unmasked (rotated at E's level l-1,
    one level lower than feature_products'), the sum is rescaled once and masked once (its plaintext scaled so that
    the result has exactly `scale`), and rescaled again: per head pair 2 rescales, 1 plaintext product and 1 mask
    encoding instead of dh + 1, dh and dh / g (BERT-base: 384 + 6 rescales per layer -> 12), one level more.
    Level l -> l-3, scale `scale`."""
    w, dh = lay.window, lay.head_dim
    lvl, q = E.level, ev.params.q
    g = baby(dh)
    A = ev.rotate_hoisted(ev.drop_level(qh, lvl), list(range(g)))
    Erot = ev.rotate_hoisted(E, [(j % g) - j * w for j in range(dh)])
    Z = None
    for a in range(-(-dh // g)):
        X = None
        for b in range(g):
            j = a * g + b
            if j >= dh:
                break
            term = ev.multiply(A[b], Erot[b - j * w], relinearize=False)
            X = term if X is None else ev.add(X, term)
        X = ev.relinearize(X)
        X = ev.rotate(X, g * a) if a else X
        Z = X if Z is None else ev.add(Z, X)
    Z = ev.rescale(Z)  # level l-2
    mask = ev.encoder.encode(rows, level=Z.level, scale=scale * float(q[Z.level]) / Z.scale)
    return with_scale(ev.rescale(ev.mul_plain(Z, mask)), scale)  # level l-3


def head_scores_diagonal(ev, qh: Ciphertext, kh: Ciphertext, lay: Layout, rows: np.ndarray,
                         shift: np.ndarray | None = None) -> Ciphertext:
    """One head's rows of S in head_scores' layout (slot t w + r = S[t, (t + r) mod n_pad] x scale, zero past
    the row) from qh, kh = pack_head of Q and K (see the module docstring).

    rows: the row mask with the key mask and the score scale (SlotVectors.key_rows(c, scale) of head_rows);
    shift: added to the rows (2Quad's c, as key_rows(c, shift)). Level l -> l-2."""
    w, n_pad, S = lay.window, lay.n_pad, lay.slots
    if n_pad * w != S:
        raise ValueError(f"the diagonal Q K^T needs the n_pad = {n_pad} token windows of {w} slots to fill the "
                         f"{S} slots (keys cyclic over the ciphertext)")
    if qh.level != kh.level:
        raise ValueError(f"Q at level {qh.level}, K at level {kh.level}")
    E = skewed_keys(ev, kh, lay)  # level l-1, scale of kh
    Z = feature_products(ev, qh, E, lay, rows, qh.scale * kh.scale / float(ev.params.q[qh.level]))  # head_scores' scale
    return ev.add_const(Z, shift) if shift is not None else Z


def head_projections(fw, xs: list[Ciphertext], W: np.ndarray, b: np.ndarray, name: str | None,
                     babies) -> list[Ciphertext]:
    """x W^T + b as one ciphertext per head in pack_head's layout: `fw.linear` (Halevi-Shoup BSGS, the baby steps
    `babies` shared; name: the weight's, "{name}.head{h}" in the weight store) with the head's rows of W repeated
    over the P output features, then x + RotR(x, P) fills the window. 1 level; per head one more output chunk of giant steps and one rotation."""
    ev, lay = fw.ev, fw.lay
    P, dh = lay.chunk, lay.head_dim
    out = []
    for h in range(lay.heads):
        rows = h * dh + np.arange(P) % dh
        (y,) = fw.linear(xs, W[rows], b[rows], None if name is None else f"{name}.head{h}", babies)
        out.append(ev.add(y, ev.rotate(y, -P)))
    return out


def diagonal_steps(lay: Layout) -> set[int]:
    """The rotations of head_projections and head_scores_diagonal (Galois keys the client generates)."""
    w, n_pad, dh = lay.window, lay.n_pad, lay.head_dim
    gk, gq = baby(n_pad), baby(dh)
    per = lay.chunk // dh
    return ({-lay.chunk} | {b * w for b in range(gk)} | {a * gk * w for a in range(-(-n_pad // gk))}
            | set(range(gq)) | {(j % gq) - j * w for j in range(dh)} | {gq * a for a in range(dh // gq)}
            | {-n_pad} | set(range(gk)) | {j * w - gk * (j // gk) for j in range(n_pad)} | {gk * a for a in range(n_pad // gk)}
            | {a * gq * w + hl * dh for a in range(-(-dh // gq)) for hl in range(per)} | {-hl * dh for hl in range(per)})


def applies(lay: Layout) -> bool:
    """The diagonal Q K^T and P V run on head_rows layouts whose n_pad token windows fill the slots and hold a row
    of n_pad keys and the dh - 1 slots behind it (skewed_keys' n_pad + dh - 1 positions, pv_diagonal's repeated
    row); a shorter window would spill into the next token's."""
    return (lay.head_rows and lay.n_pad * lay.window == lay.slots and lay.chunk % lay.head_dim == 0
            and lay.window >= lay.n_pad + lay.head_dim - 1)


# ------------------------------------------------------------------ P V, the same transformation (ours)
def skewed_values(ev, vc: Ciphertext, lay: Layout, hl: int, vb: dict | None = None, to: int = 0) -> Ciphertext:
    """G[t, p] = V[(t + p) mod n_pad, hl dh + p] at slot t w + to + p for p < dh (0 elsewhere), from chunk vc of V in
    the token-major layout (local head hl); vb: vc's hoisted token rotations b w, b < baby(dh) (shared by the heads
    of a chunk); to: the offset in the window (refimpl.nexus.bert.attention_pairs). 1 level (l -> l-1, scale kept)."""
    w, dh, S = lay.window, lay.head_dim, lay.slots
    g = baby(dh)
    vb = ev.rotate_hoisted(vc, [b * w for b in range(g)]) if vb is None else vb
    pos = np.arange(S) % w
    G = None
    for a in range(-(-dh // g)):
        s = a * g * w + hl * dh - to  # the giant step: tokens by a g, then the head's features to slot `to`
        inner = None
        for b in range(g):
            p = a * g + b
            if p >= dh:
                break
            t = ev.mul_const(vb[b * w], np.roll((pos == to + p).astype(np.float64), s))
            inner = t if inner is None else ev.add(inner, t)
        inner = ev.rotate(inner, s) if s % S else inner
        G = inner if G is None else ev.add(G, inner)
    return ev.rescale(G)


def key_products(ev, pb: dict, gr: dict, count: int, lay: Layout, extra: int = 0) -> Ciphertext:
    """sum_a Rot(sum_b pb[b] x gr[j w - g a], g a + extra) over j = g a + b < count (g = baby(count); pb: the baby
    steps of one operand, gr: the other's rotations j w - g a), the g products of a giant step summed before
    relinearizing; `extra` moves the result further with the giant steps. Not rescaled."""
    w, S = lay.window, lay.slots
    g = baby(count)
    Y = None
    for a in range(-(-count // g)):
        X = None
        for b in range(g):
            j = a * g + b
            if j >= count:
                break
            term = ev.multiply(pb[b], gr[j * w - g * a], relinearize=False)
            X = term if X is None else ev.add(X, term)
        X = ev.relinearize(X)
        sh = g * a + extra
        X = ev.rotate(X, sh) if sh % S else X
        Y = X if Y is None else ev.add(Y, X)
    return Y


def pv_diagonal(ev, probs: list[Ciphertext], V: list[Ciphertext], lay: Layout) -> list[Ciphertext]:
    """O = P V with the key shift as the inner index (ours; the diagonal method of Halevi and Shoup over the keys).

    probs: one ciphertext per head in the score layout (slot t w + r = P[t, (t + r) mod n_pad], zero past the
    row: the key mask already applied, one level already spent as the plan's pv.mask); V: the token-major chunks.
    O[t, h dh + p] = sum_{j < n_pad} Rot(Pd, j)[t, p] Rot(G, j w)[t, p], Pd = P with its row repeated once behind
    itself, G = skewed_values; j = g a + b: sum_a Rot(sum_b Rot(Pd, b) Rot(G, j w - g a), g a), the g products of a
    giant step summed before relinearizing. G is zero past dh, so is the product: no output mask. Per head:
    1 + (g - 1) + (n_pad - 1) + n_pad / g + (n_pad / g - 1) key switches, plus skewed_values'; the heads of a
    chunk moved to their slots and added. 1 level (P's level -> -1). Output: head_rows pv's (one per chunk)."""
    w, n_pad, dh, P = lay.window, lay.n_pad, lay.head_dim, lay.chunk
    per = P // dh
    g = baby(n_pad)
    outs = []
    for c, vc in enumerate(V):
        vb = ev.rotate_hoisted(vc, [b * w for b in range(baby(dh))])
        acc = None
        for hl in range(per):
            h = c * per + hl
            if h >= len(probs):
                break
            G = skewed_values(ev, vc, lay, hl, vb)
            lvl = min(G.level, probs[h].level)
            ph, G = ev.drop_level(probs[h], lvl), ev.drop_level(G, lvl)
            pd = ev.add(ph, ev.rotate(ph, -n_pad))  # row repeated: positions p + j < n_pad + dh read cyclically
            pb = ev.rotate_hoisted(pd, list(range(g)))
            gr = ev.rotate_hoisted(G, [j * w - g * (j // g) for j in range(n_pad)])
            Y = key_products(ev, pb, gr, n_pad, lay)
            Y = ev.rotate(Y, -hl * dh) if hl else Y  # the head's features to its slots in the chunk
            acc = Y if acc is None else ev.add(acc, Y)
        outs.append(ev.rescale(acc))
    return outs
