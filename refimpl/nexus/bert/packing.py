"""Packings that save key switches and bootstraps in the encrypted BERT (ours).

1. Two ciphertexts per bootstrap (`pack_complex`, `unpack_complex`): the slots of a and b become the
   real and imaginary halves of one ciphertext, z = a / (2 M_a) + i b / (2 M_b) (i = X^(N/2), free), which
   one bootstrap refreshes: bootstrapping works on the coefficients and refreshes complex slots (its
   EvalMod runs on both halves of CoeffsToSlots' output in any case). One conjugation splits them again:
   a = M_a (z + conj z), b = M_b (-i) (z - conj z). The 1/(2M) before the bootstrap (one constant product,
   one level) keeps |z| within EvalMod's accurate range as the forward's single refresh does with 1/M; the
   factors M after it are integer products (no level). So a refresh point of w ciphertexts costs
   ceil(w / 2) bootstraps and floor(w / 2) conjugations instead of w bootstraps. THOR (Moon et al., ePrint
   2024/1881) packs the real and imaginary halves likewise. Only bootstraps may use it: a polynomial of
   a + i b is not p(a) + i p(b).

2. Two heads' score rows per ciphertext (`pair_rows`, `spread`): with rows of n_pad keys and token windows
   of w >= 2 n_pad slots, head 2k's row (t, .) sits at slots t w .. t w + n_pad - 1 and head 2k + 1's right
   behind it, so Softmax (and 2Quad) run on half as many ciphertexts. Softmax then folds without NEXUS's
   row duplication (Alg. 7's pre-step, which needs the zeros behind a row): the QuickMax and QuickSum folds
   leave the row's maximum and sum in the row's first slot (a non-cyclic fold reads only the row there,
   log2(n_pad) rounds as before), and `spread` copies that slot over the row (one mask product, log2(n_pad)
   rotations). Every other slot holds a maximum or a sum over n_pad neighbouring slots, within the same
   bounds as the row's, so no approximation leaves its range.

3. Two FFN chunks per GELU ciphertext (`pair_chunks`): the token-major chunks use the first P slots of each
   window of 2P (refimpl.nexus.bert.layout); chunk 2k + 1 moved behind chunk 2k halves the ciphertexts the
   4-piece GELU runs on; the GELU's final mask products write the two chunks apart again (Forward.gelu_pair).
"""

from __future__ import annotations

import numpy as np

from ...ckks import Ciphertext
from ...ckks.keys import conjugation_element
from ..levels import with_scale


# ------------------------------------------------------------------ 1. two ciphertexts per bootstrap
def pack_complex(ev, a: Ciphertext, b: Ciphertext, fa: float, fb: float) -> Ciphertext:
    """fa a + i fb b at one level below the lower of a and b, scale a.scale (two constant products, no key switch)."""
    lvl = min(a.level, b.level)
    a, b = ev.drop_level(a, lvl), ev.drop_level(b, lvl)
    q = float(ev.params.q[lvl])
    x = ev.rescale(ev.mul_const(a, fa))
    y = with_scale(ev.rescale(ev.mul_const(b, fb, scale=a.scale * q / b.scale)), x.scale)
    return ev.add(x, ev.mul_monomial(y, ev.params.N // 2))  # X^(N/2) is i in every slot


def unpack_complex(ev, z: Ciphertext, ma: int, mb: int) -> tuple[Ciphertext, Ciphertext]:
    """(ma (z + conj z), mb (-i) (z - conj z)) = (2 ma Re z, 2 mb Im z): one conjugation, no level."""
    conj = ev.conjugate(z)
    re = ev.add(z, conj)
    im = ev.negate(ev.mul_monomial(ev.sub(z, conj), ev.params.N // 2))
    return ev.mul_int(re, int(ma)), ev.mul_int(im, int(mb))


def can_conjugate(ev) -> bool:
    """True when `ev` can conjugate: it holds the conjugation key, or it has no keys at all (a counting
    evaluator such as refimpl.nexus.counting.DryEvaluator, which counts the design)."""
    keys = getattr(ev, "keys", None)
    if keys is None:
        return True
    return conjugation_element(ev.params) in getattr(keys, "galois", {})


# ------------------------------------------------------------------ 2. two heads per score ciphertext
def pair_rows(ev, heads: list[Ciphertext], n_pad: int) -> list[Ciphertext]:
    """[S_0, S_1, S_2, ...] (one head each, zero past the row) -> [S_0 + RotR(S_1, n_pad), ...]: 1 rotation per pair."""
    out = []
    for k in range(0, len(heads), 2):
        a = heads[k]
        out.append(a if k + 1 == len(heads) else ev.add(a, ev.rotate(heads[k + 1], -n_pad)))
    return out


def paired_vector(v: np.ndarray, n_pad: int) -> np.ndarray:
    """A row vector on the first n_pad slots of each window, repeated on the next n_pad (the second head)."""
    return v + np.roll(v, n_pad)


def starts(lay, n_pad: int) -> np.ndarray:
    """1 at the first slot of both rows (t w and t w + n_pad) of every active token window t < n."""
    v = np.zeros((lay.slots // lay.window, lay.window))
    v[: lay.n, 0] = 1.0
    v[: lay.n, n_pad] = 1.0
    return v.ravel()


def spread(ev, ct: Ciphertext, first: np.ndarray, n: int, offset: int = 0) -> Ciphertext:
    """The value in each row's first slot copied over the row's n slots: ct x `first` (the 0/1 row starts), then
    s <- s + RotR(s, 2^k), k < log2(n). 1 level, log2(n) rotations. offset: the value sits `offset` slots behind
    the row's first slot (a ciphertext of `pack_maxima`): masked there and moved to the start (1 rotation more)."""
    s = ev.rescale(ev.mul_const(ct, np.roll(first, offset)))
    if offset:
        s = ev.rotate(s, offset)
    k = 1
    while k < n:
        s = ev.add(s, ev.rotate(s, -k))
        k *= 2
    return s


def spread_block(offsets) -> int:
    """The block of `spread_many`: the smallest power of two above every offset."""
    return 1 << max(offsets).bit_length()


def spread_levels(offsets) -> int:
    """Levels of spreading the values at `offsets` of one ciphertext: 1 (`spread`) for one, 2 (`spread_many`) else."""
    return 1 if len(offsets) == 1 else 2


def spread_coarse(ev, ct: Ciphertext, n: int, block: int) -> Ciphertext:
    """s <- s + RotR(s, k), k = block, 2 block, ... < n: a value at a row's slot o < block copied to o + m block,
    m < n / block (no level; the first half of `spread_many`, on a ciphertext zero outside those values)."""
    k = block
    while k < n:
        ct = ev.add(ct, ev.rotate(ct, -k))
        k *= 2
    return ct


def spread_many(ev, ct: Ciphertext, first: np.ndarray, n: int, offsets, coarse: bool = True) -> list[Ciphertext]:
    """`spread` of several values of one ciphertext, each `offset` slots behind its row's first slot (ours): the
    coarse copies shared, RotR by block, 2 block, ... < n (block = `spread_block`, after one mask of all offsets),
    then per value its 0/1 mask at o + m block and the fine copies: s <- s + Rot(s, 2^i), i < log2(block), to the
    left where bit i of o is set, else to the right, which fill o - o .. o - o + block - 1, the block itself (no
    rotation to the row start). log2(n / block) + len(offsets) log2(block) rotations instead of
    sum (log2(n) + [o > 0]) (6 offsets of rows of 128: 22 instead of 47); 2 levels. coarse=False: ct had the mask
    and `spread_coarse` already (1 level)."""
    offsets = list(offsets)
    block = spread_block(offsets)
    if coarse:
        keep = sum(np.roll(first, o) for o in offsets)
        ct = spread_coarse(ev, ev.rescale(ev.mul_const(ct, keep)), n, block)
    out = []
    for o in offsets:
        t = ev.rescale(ev.mul_const(ct, sum(np.roll(first, o + m * block) for m in range(n // block))))
        k = 1
        while k < block:  # RotL(k) where o has bit k (the copies move down towards the block start), else RotR(k)
            t = ev.add(t, ev.rotate(t, k if o & k else -k))
            k *= 2
        out.append(t)
    return out


def unpair_rows(ev, pc: Ciphertext, mask: np.ndarray, n_pad: int, two: bool) -> list[Ciphertext]:
    """The two heads of a paired ciphertext apart, each masked by `mask` (a row vector on the first n_pad slots)
    at the start of its window: 1 level, 1 rotation for the second head."""
    a = ev.rescale(ev.mul_const(pc, mask))
    if not two:
        return [a]
    b = ev.rescale(ev.mul_const(pc, np.roll(mask, n_pad)))
    return [a, ev.rotate(b, n_pad)]


def quickmax_widths(count: int, rounds: int) -> list[int]:
    """Ciphertexts entering each of the `rounds` QuickMax rounds when `pack_maxima` packs them two into one after
    every round but the last while more than one is left: e.g. 6 score ciphertexts, 7 rounds: [6, 3, 2, 1, 1, 1, 1]."""
    out = []
    for k in range(rounds):
        out.append(count)
        if k < rounds - 1:
            count = -(-count // 2)
    return out


def packed_fold(ev, cts: list[Ciphertext], lay, n_pad: int, widths: list[int], op=None):
    """The folds s <- op(s, RotL(s, 2^k)), k < log2(n_pad), of several ciphertexts with `pack_maxima` after round k
    wherever widths[k + 1] < widths[k] (`quickmax_widths`, the plan's; op default: addition, the row sums). Returns
    (ciphertexts, members) as pack_maxima: the result for score ciphertext j in the first slot of each row of its
    ciphertext, `offset` slots behind (ours: the paired Softmax's row sums, Paired.softmax_paired; QuickMax runs
    the same schedule with its max_pair, one piece per round)."""
    op = ev.add if op is None else op
    s, held = list(cts), [[(j, 0)] for j in range(len(cts))]
    rounds = n_pad.bit_length() - 1
    for k in range(rounds):
        s = [op(c, ev.rotate(c, 1 << k)) for c in s]
        if k + 1 < rounds and widths[k + 1] < widths[k]:
            s, held = pack_maxima(ev, s, held, 2 << k, lay, n_pad)
    return s, held


def maxima_widths(settings: dict, lay) -> list[int]:
    """Ciphertexts entering each QuickMax round of the paired Softmax: `quickmax_widths` with the setting
    softmax_pack, else the score ciphertexts in every round."""
    rounds = lay.n_pad.bit_length() - 1
    return quickmax_widths(lay.score_cts, rounds) if settings["softmax_pack"] else [lay.score_cts] * rounds


def spread_shared(settings: dict, lay) -> bool:
    """Whether the paired Softmax's maxima spread with `spread_many` (2 levels; ours): the setting spread_shared is on
    and the packed QuickMax leaves several maxima in a ciphertext (the plan's rule, refimpl.nexus.bert.chain)."""
    widths = maxima_widths(settings, lay)
    return bool(settings["spread_shared"]) and bool(widths) and lay.score_cts > widths[-1]


def offset_mask(lay, n_pad: int, stride: int, offsets) -> np.ndarray:
    """1 at the slots offset + m stride (m < n_pad / stride, offset in `offsets`) of both rows of every active
    token window t < n: where a QuickMax round with maxima every `stride` slots keeps the ones it still needs."""
    v = np.zeros((lay.slots // lay.window, lay.window))
    for start in (0, n_pad):
        for o in offsets:
            v[: lay.n, start + o: start + n_pad: stride] = 1.0
    return v.ravel()


def pack_maxima(ev, cts: list[Ciphertext], members: list[list[tuple[int, int]]], stride: int, lay, n_pad: int):
    """After the QuickMax round whose maxima lie every `stride` slots of each row (round k: stride 2^(k+1)), two
    ciphertexts into one: the needed slots of each kept by a 0/1 mask (1 level), the second moved `stride / 2`
    slots behind the first (1 rotation), into slots the first no longer needs. The later rounds' folds read,
    from every kept slot, only slots a multiple of `stride` away, so the first kept slot of each packed row still
    folds to its row's maximum (offset o: at the row start + o); every slot stays within the row values' bound
    (a maximum, or 0). The same values as without the packing, in other slots (ours). members[j]: the (score ciphertext,
    offset) pairs that ciphertext j holds (start: [[(i, 0)] for each i]). Returns (packed, members)."""
    out, held = [], []
    for j in range(0, len(cts), 2):
        group = list(members[j])
        a = ev.rescale(ev.mul_const(cts[j], offset_mask(lay, n_pad, stride, [o for _, o in group])))
        if j + 1 < len(cts):
            b = ev.rescale(ev.mul_const(cts[j + 1], offset_mask(lay, n_pad, stride, [o for _, o in members[j + 1]])))
            a = ev.add(a, ev.rotate(b, -(stride // 2)))
            group += [(i, o + stride // 2) for i, o in members[j + 1]]
        out.append(a)
        held.append(group)
    return out, held


def pack_first(ev, cts: list[Ciphertext], first: np.ndarray) -> Ciphertext:
    """The values in each row's first slot (0/1 `first`: the row starts) of ciphertexts 0 .. m-1 in one, ciphertext
    j's at offset j behind the row start (m <= the row length): 1 level, m - 1 rotations. `spread(..., offset=j)`
    takes ciphertext j's back over its rows (ours: the paired Softmax's row sums, one inverse for all)."""
    out = None
    for j, ct in enumerate(cts):
        t = ev.rescale(ev.mul_const(ct, first))
        t = ev.rotate(t, -j) if j else t
        out = t if out is None else ev.add(out, t)
    return out


# ------------------------------------------------------------------ 3. two FFN chunks per GELU ciphertext
def packed_sums(settings: dict, lay) -> bool:
    """Whether the paired Softmax packs its row sums into one ciphertext (`pack_first`): the setting softmax_pack is
    on, rows are paired, there are several score ciphertexts and their offsets fit in a row."""
    return bool(settings["softmax_pack"]) and lay.pair_rows and 1 < lay.score_cts <= lay.n_pad


def sums_folded_packed(settings: dict, lay) -> bool:
    """Whether the packed row sums (`packed_sums`) fold packed (`packed_fold`, ours): the setting sums_pack is on and
    the packing leaves one ciphertext after the last round."""
    rounds = lay.n_pad.bit_length() - 1
    return packed_sums(settings, lay) and bool(settings["sums_pack"]) and quickmax_widths(lay.score_cts, rounds)[-1] == 1


def sum_levels(settings: dict, lay) -> int:
    """Levels of the paired Softmax's piece softmax.sum: `pack_first` 1, or with `sums_folded_packed` one per packing
    and one for the mask before the shared spread's coarse copies (spread_shared)."""
    if not sums_folded_packed(settings, lay):
        return 1
    widths = quickmax_widths(lay.score_cts, lay.n_pad.bit_length() - 1)
    return sum(b < a for a, b in zip(widths, widths[1:])) + int(bool(settings["spread_shared"]))


def joint_gelu(settings: dict, lay) -> bool:
    """Whether the GELU's paired FFN chunks stay in one ciphertext through the refresh before FFN2
    (Forward.gelu_joint, gelu_unpair): the setting gelu_pair_refresh is on and there are at least two pairs
    (ceil(pairs / 2) bootstraps instead of one per two chunks; a single pair costs one bootstrap either way, and
    the split a level)."""
    return bool(settings["gelu_pair_refresh"]) and lay.chunks(lay.intermediate) > 2


def pair_chunks(ev, chunks: list[Ciphertext], P: int) -> list[Ciphertext]:
    """[c_0, c_1, ...] (first P slots of each window) -> [c_0 + RotR(c_1, P), ...]: 1 rotation per pair."""
    return pair_rows(ev, chunks, P)


__all__ = ["pack_complex", "unpack_complex", "can_conjugate", "pair_rows", "paired_vector", "starts",
           "spread", "unpair_rows", "quickmax_widths", "offset_mask", "pack_maxima", "pack_first", "packed_sums", "joint_gelu", "pair_chunks"]
