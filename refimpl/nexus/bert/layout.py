"""The slot layout of the encrypted BERT: token-major windows, packing, rotations, plaintext vectors.

A matrix [n, F] is cut into chunks of P features; chunk c is one ciphertext whose slot t w + j
holds X[t, c P + j], window w = 2P, for the n tokens t < n_pad (see the package docstring).
The client embeds and packs (`client_embed`, `pack_input`); `rotation_steps` lists the Galois
keys the forward needs; `SlotVectors` builds the masks and diagonals the forward multiplies by.

Reference: NEXUS (Zhang et al., NDSS 2025) §3 (packing, row duplication of Alg. 7), §4 (system
model: the client holds the embedding table); Halevi and Shoup 2014 (diagonal method).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...bert import functional as F
from ...bert.config import BertConfig

LOGIT_BOUND = 8.0  # Argmax: logits assumed in [-8, 8]
QUAD_ROOT = math.sqrt(F.QUAD[2])  # sqrt(0.125), folded into W_1 for the one-level Quad


def pow2(x: int) -> int:
    """The smallest power of two >= x (1 for x <= 1)."""
    return 1 << max(int(x) - 1, 0).bit_length()


@dataclass(frozen=True)
class Layout:
    """Token-major windows: slot t w + j of chunk c holds X[t, c P + j], w = 2P, t < n_pad."""

    n: int  # tokens (active windows)
    n_pad: int  # rows of attention: the power of two >= n
    chunk: int  # P features per ciphertext
    slots: int
    d: int
    heads: int
    head_dim: int
    intermediate: int
    num_labels: int
    head_rows: bool = False  # one score ciphertext per head, rows at the start of each window (n > dh / 2)

    @property
    def window(self) -> int:
        return 2 * self.chunk

    @property
    def pair_rows(self) -> bool:
        """Two heads' rows of n_pad keys per token window (head_rows with w >= 2 n_pad; ours,
        refimpl.nexus.bert.packing): Softmax folds without the row duplication."""
        return self.head_rows and 2 * self.n_pad <= self.window

    @property
    def score_cts(self) -> int:
        """Ciphertexts of the score stream S (and P): one per chunk, one per head with head_rows, one per two
        heads with pair_rows."""
        if self.head_rows:
            return -(-self.heads // 2) if self.pair_rows else self.heads
        return self.chunks(self.d)

    @property
    def row_segment(self) -> int:
        """Slots of the segment a score row starts in: the head's dh slots, or the whole window with head_rows."""
        return self.window if self.head_rows else self.head_dim

    @property
    def baby(self) -> int:
        """g = 2^ceil(log2(P)/2): baby steps of the BSGS diagonal method."""
        return 1 << -(-(self.chunk.bit_length() - 1) // 2)

    def chunks(self, features: int) -> int:
        return -(-features // self.chunk)

    def linear_shapes(self) -> set[tuple[int, int]]:
        """(input chunks, output chunks) of every `Forward.linear` call sharing one set of baby steps: QKV (Q, K
        and V one ciphertext per chunk, or Q and K one per head for refimpl.nexus.bert.attention), the output
        projection, FFN1, FFN2, and FFN1, FFN2 and the output projection on complex-packed chunk pairs
        (refimpl.nexus.bert.linear_pairs), and QKV with complex outputs (refimpl.nexus.bert.qkv_packed)."""
        cd, ci, cp = self.chunks(self.d), self.chunks(self.intermediate), -(-self.chunks(self.intermediate) // 2)
        return {(cd, 3 * cd), (cd, 2 * self.heads + cd), (cd, cd), (cd, ci), (ci, cd), (cd, cp), (cp, cd),
                (cd, -(-cd // 2)), (cd, packed_qkv_outputs(self.heads, cd))}

    @property
    def label_pad(self) -> int:
        return max(2, pow2(self.num_labels))


def bsgs_baby(P: int, inputs: int, outputs: int) -> int:
    """Baby steps g of the diagonal method (Halevi and Shoup 2014) with baby-step giant-step for a product of
    `inputs` -> `outputs` chunks of P x P blocks, chosen per product (ours): the power of two g <= P minimising
    its key switches

        inputs x g  +  outputs x (P / g - 1)

    (per input chunk x + RotR(x, P) and g - 1 hoisted baby steps, shared by every output chunk; per output chunk
    P / g - 1 giant steps, shared by its input chunks). The continuous minimum is at g = sqrt(P outputs /
    inputs); ties go to the g nearest sqrt(P) (`Layout.baby`, the single g used before), then to the smaller
    (fewer baby-step ciphertexts held). BERT-base (P = 128): FFN2 (24 -> 6) g = 8, 282 rotations (426 with
    g = 16); QKV with Q and K per head (6 -> 30) g = 32, 282 (306); FFN1 (6 -> 24) and the output projection
    (6 -> 6) keep g = 16 (264, 138: their optimum)."""
    if P & (P - 1) or inputs < 1 or outputs < 1:
        raise ValueError(f"BSGS over P = {P} (a power of two) for {inputs} -> {outputs} chunks")
    home = (P.bit_length() - 1 + 1) // 2
    return min((1 << e for e in range(P.bit_length())),
               key=lambda g: (inputs * g + outputs * (P // g - 1), abs(g.bit_length() - 1 - home), g))


def pair_groups(pairs: int) -> list[tuple[int, ...]]:
    """The head pairs two by two, (k, k + 1) for even k, a last pair alone (refimpl.nexus.bert.attention_packed packs
    each group's keys as one complex ciphertext; ours)."""
    return [tuple(range(k, min(k + 2, pairs))) for k in range(0, pairs, 2)]


def value_outputs(chunks: int) -> list[tuple[int, int | None]]:
    """The value chunks as attention_packed skews them (ours): per two chunk pairs (a, a + 1) and (b, b + 1), b = a + 2,
    the ciphertexts V_a+e + i V_b+e (e = 0, 1; V_a+e alone when b + e is past the end); a last chunk pair alone.
    (real chunk, imaginary chunk or None) per ciphertext."""
    firsts = list(range(0, chunks, 2))
    out: list[tuple[int, int | None]] = []
    for a, b in zip(firsts[0::2], firsts[1::2]):
        out += [(a + e, b + e if b + e < chunks else None) for e in (0, 1) if a + e < chunks]
    if len(firsts) % 2:
        out += [(c, None) for c in (firsts[-1], firsts[-1] + 1) if c < chunks]
    return out


def packed_qkv_outputs(heads: int, chunks: int) -> int:
    """Output ciphertexts of QKV with complex outputs (refimpl.nexus.bert.qkv_packed, ours): per group of two head
    pairs of Q and of K two (the even heads, the odd heads; one when the group has a single head), and the value
    ciphertexts of `value_outputs`."""
    groups = pair_groups(-(-heads // 2))
    qk = sum(1 + (2 * g[0] + 1 < heads) for g in groups)
    return 2 * qk + len(value_outputs(chunks))


def linear_steps(P: int, g: int) -> set[int]:
    """The rotations of `Forward.linear` with g baby steps: RotR(x, P), the baby steps 1 .. g-1, the giant steps."""
    return {-P} | set(range(1, g)) | {g * b for b in range(1, P // g)}


def input_layout(config: BertConfig, n: int, slots: int, *, head_rows: bool = False) -> Layout:
    """The packing of [n, d] (and of every activation) for N/2 = `slots` (NEXUS §3, token-major windows).

    head_rows=True: the attention rows of n_pad keys (2 n_pad with Softmax's duplication) may be
    longer than a head's dh slots; the scores of each head then get their own ciphertext, row
    (t, h) in the window of token t from its first slot (needs the window 2P >= the row). Used for
    BERT-base at n = 128 (refimpl.experiments.bertbase); the default keeps rows inside the head's segment."""
    d, h, dh = config.hidden_size, config.num_attention_heads, config.head_dim
    if n < 1:
        raise ValueError(f"need at least one token, got n = {n}")
    if dh & (dh - 1):
        raise ValueError(f"head dimension {dh} is not a power of two: heads cannot align with the chunks")
    n_pad = max(2, pow2(n))
    rows = 2 * n_pad if config.attention == "softmax" else n_pad
    if rows > dh and not head_rows:
        raise ValueError(
            f"{n} tokens: attention rows of {n_pad} keys need {rows} slots per head (Softmax duplicates the row), "
            f"the head dimension is {dh}: use at most {dh // (2 if config.attention == 'softmax' else 1)} tokens")
    if config.attention not in ("softmax", "2quad-freediv"):
        raise ValueError(f"encrypted attention supports 'softmax' and '2quad-freediv', not {config.attention!r}")
    if config.activation not in ("gelu", "gelu_poly4", "quad"):
        raise ValueError(f"encrypted FFN supports GELU (4-piece) and Quad, not {config.activation!r}")
    if config.pooling != "cls":
        raise ValueError("the encrypted head reads the [CLS] token (pooling 'cls')")
    P = min(pow2(d), slots // (2 * n_pad))
    if P < dh:
        raise ValueError(f"{slots} slots hold {n_pad} token windows of only {2 * P} slots; a head needs {dh}: "
                         f"use a larger ring or fewer tokens")
    if head_rows and rows > 2 * P:
        raise ValueError(f"{n} tokens: attention rows need {rows} slots, the token windows of {slots} slots have "
                         f"{2 * P}: use a larger ring or fewer tokens")
    return Layout(n, n_pad, P, slots, d, h, dh, config.intermediate_size, config.num_labels, head_rows and rows > dh)


def pack_input(x: np.ndarray, layout: Layout) -> list[np.ndarray]:
    """[n, d] -> one slot vector per chunk of P features (slot t w + j = x[t, c P + j]); what the client encrypts."""
    x = np.asarray(x, dtype=np.float64)
    if x.shape != (layout.n, layout.d):
        raise ValueError(f"input of shape {x.shape}, the layout is for [{layout.n}, {layout.d}]")
    return pack(x, layout)


def pack(x: np.ndarray, lay: Layout) -> list[np.ndarray]:
    """[n, F] (any F) -> the chunk slot vectors of `lay` (pack_input without the shape check)."""
    n, F_ = x.shape
    P, w = lay.chunk, lay.window
    out = []
    for c in range(lay.chunks(F_)):
        v = np.zeros((lay.slots // w, w))
        part = x[:, c * P:(c + 1) * P]
        v[:n, :part.shape[1]] = part
        out.append(v.ravel())
    return out


def unpack(vectors, lay: Layout, F_: int) -> np.ndarray:
    """Inverse of pack: [n, F] from the chunk slot vectors."""
    P, w = lay.chunk, lay.window
    cols = [np.asarray(v).real.reshape(-1, w)[: lay.n, :P] for v in vectors]
    return np.concatenate(cols, axis=1)[:, :F_]


def unpack_output(vectors, layout: Layout, num_labels: int) -> np.ndarray:
    """Logits from the decrypted output: slot l w of the first vector holds logit l."""
    v = np.asarray(vectors[0]).real
    return np.array([v[l * layout.window] for l in range(num_labels)])


def unpack_argmax(vectors, layout: Layout, num_labels: int) -> np.ndarray:
    """The Argmax selection vector (about 1 at the winner, 0 elsewhere): slots 0 .. num_labels - 1."""
    return np.asarray(vectors[0]).real[:num_labels]




def rotation_steps(config: BertConfig, n: int, slots: int, *, head_rows: bool = False) -> list[int]:
    """Every rotation the encrypted forward uses (the client generates these Galois keys; the
    bootstrapper's own come from Bootstrapper.galois_elements)."""
    lay = input_layout(config, n, slots, head_rows=head_rows)
    P, w, dh, n_pad, Lp = lay.chunk, lay.window, lay.head_dim, lay.n_pad, lay.label_pad
    rs = {P}  # GELU's chunk pairs
    for cin, cout in lay.linear_shapes():  # the linear layers, g per product (bsgs_baby)
        rs |= linear_steps(P, bsgs_baby(P, cin, cout))
    rs |= {r * w for r in range(1, n_pad)} | {-r for r in range(1, n_pad)} | {r for r in range(1, n_pad)}
    rs |= {1 << k for k in range(dh.bit_length() - 1)} | {-(1 << k) for k in range(dh.bit_length() - 1)}
    if lay.head_rows:  # scores to / columns from the window start, heads hl of a chunk
        rs |= {hl * dh - r for hl in range(P // dh) for r in range(n_pad)} | {r - hl * dh for hl in range(P // dh)
                                                                                  for r in range(n_pad)}
    if lay.pair_rows:  # refimpl.nexus.bert.packing: the second head of a score ciphertext, to and from its slots
        rs |= {-n_pad, n_pad} | {r + n_pad - hl * dh for hl in range(P // dh) for r in range(n_pad)}
    if n_pad * w < slots:
        rs.add(-n_pad * w)  # token duplication of K and V
    rs |= {-n_pad} | {1 << k for k in range(n_pad.bit_length() - 1)}  # Softmax rows
    rs |= {1 << k for k in range(P.bit_length() - 1)}  # LayerNorm and head sums
    rs |= {-l * w for l in range(1, lay.num_labels)} | {l * w - l for l in range(1, lay.num_labels)}
    rs |= {-Lp} | {1 << k for k in range(Lp.bit_length() - 1)}  # Argmax
    if lay.head_rows and n_pad * w == slots:  # refimpl.nexus.bert.attention (its diagonal_steps, kept here: no cycle)
        gk, gq = 1 << -(-(n_pad - 1).bit_length() // 2), 1 << -(-(dh - 1).bit_length() // 2)
        rs |= {b * w for b in range(gk)} | {a * gk * w for a in range(-(-n_pad // gk))} | set(range(gq))
        rs |= {(j % gq) - j * w for j in range(dh)} | {gq * a for a in range(dh // gq)}
        rs |= {-n_pad} | set(range(gk)) | {j * w - gk * (j // gk) for j in range(n_pad)} | {gk * a for a in range(n_pad // gk)}
        rs |= {a * gq * w + hl * dh for a in range(-(-dh // gq)) for hl in range(P // dh)} | {-hl * dh for hl in range(P // dh)}
    if pair_attention_applies(lay):
        rs |= pair_attention_steps(lay) | quad_attention_steps(lay)
    return sorted(r for r in rs if r % slots)


def pair_attention_applies(lay: Layout) -> bool:
    """Head pairs in Q K^T and P V (refimpl.nexus.bert.attention_pairs, ours): pair_rows layouts whose n_pad token
    windows fill the slots, heads aligned with the chunks, dh <= n_pad / 2 + 1 (the skewed operands of a head span
    n_pad / 2 + dh - 1 slots of its half window)."""
    return (lay.pair_rows and lay.n_pad * lay.window == lay.slots and lay.chunk % lay.head_dim == 0
            and lay.n_pad >= 4 and 2 * lay.head_dim <= lay.n_pad + 2)


def pair_attention_steps(lay: Layout) -> set[int]:
    """The rotations of refimpl.nexus.bert.attention_pairs (kept here: that module imports this one)."""
    w, n_pad, dh, P = lay.window, lay.n_pad, lay.head_dim, lay.chunk
    R = n_pad // 2

    def baby(n):
        return 1 << -(-(max(n, 2) - 1).bit_length() // 2)

    gk, gq, gr, gv, per = baby(n_pad), baby(dh), baby(R), baby(dh), P // dh
    rs = {-n_pad, -R, R, R * w}  # pairs of projections, halves apart, probabilities into halves, imaginary values
    rs |= {b * w for b in range(gk)} | {a * gk * w for a in range(-(-n_pad // gk))}  # skewed keys
    rs |= set(range(gq)) | {(j % gq) - j * w for j in range(dh)} | {gq * a for a in range(-(-dh // gq))}  # Q K^T
    rs |= {b * w for b in range(gv)} | {a * gv * w + hl * dh - o for a in range(-(-dh // gv)) for hl in range(per)
                                        for o in (0, n_pad)}  # skewed values
    rs |= set(range(gr)) | {j * w - gr * (j // gr) for j in range(R)}  # P V
    rs |= {gr * a + o - hl * dh for a in range(-(-R // gr)) for o in (0, n_pad) for hl in range(per)}
    return {r for r in rs if r % lay.slots}


def quad_offset(lay: Layout, h: int) -> int:
    """The offset of head h in a window of refimpl.nexus.bert.attention_quads: its chunk c's half (c mod 2) P, then
    its place hl dh in the chunk."""
    per = lay.chunk // lay.head_dim
    return ((h // per) % 2) * lay.chunk + (h % per) * lay.head_dim


def quad_attention_steps(lay: Layout) -> set[int]:
    """The rotations of refimpl.nexus.bert.attention_quads (kept here: that module imports this one)."""
    w, n_pad, dh, P = lay.window, lay.n_pad, lay.head_dim, lay.chunk
    R = n_pad // 2
    gv, gr = 1 << -(-(max(dh, 2) - 1).bit_length() // 2), 1 << -(-(max(R, 2) - 1).bit_length() // 2)
    rs = {b * w for b in range(gv)} | {a * gv * w - to for a in range(-(-dh // gv)) for to in (0, P)} | {R * w}
    rs |= {(h % 2) * n_pad - quad_offset(lay, h) + e for h in range(lay.heads) for e in (0, R, -R)}  # probabilities
    rs |= {j * w - gr * (j // gr) for j in range(R)} | set(range(gr)) | {gr * a + to for a in range(-(-R // gr))
                                                                         for to in (0, P)}
    return {r for r in rs if r % lay.slots}


def client_embed(config: BertConfig, params: dict, input_ids, attention_mask=None) -> np.ndarray:
    """[n, d] float64: LayerNorm(word[ids] + position[0..n-1] + type[0]), computed by the client.

    The client holds the embedding table (NEXUS §4, as in its system model): a lookup on
    encrypted token ids would need a one-hot vector times a 30522-row table per token, and the
    table is not secret in the setting of a public pretrained model, while the token ids are.
    The embedding LayerNorm runs in the clear for the same reason (it sees only the client's
    data). attention_mask is public (n and the mask are known to the server)."""
    ids = np.asarray(input_ids).reshape(-1)
    if ids.size > config.max_position_embeddings:
        raise ValueError(f"{ids.size} tokens exceed max_position_embeddings {config.max_position_embeddings}")
    if ids.min() < 0 or ids.max() >= config.vocab_size:
        raise ValueError(f"token ids must lie in [0, {config.vocab_size}), got [{ids.min()}, {ids.max()}]")
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items() if k.startswith("embeddings.")}
    e = (p["embeddings.word_embeddings.weight"][ids] + p["embeddings.position_embeddings.weight"][: ids.size]
         + p["embeddings.token_type_embeddings.weight"][0])  # [n, d]
    return F.layer_norm(e, p["embeddings.LayerNorm.weight"], p["embeddings.LayerNorm.bias"], config.layer_norm_eps)




class SlotVectors:
    """The plaintext slot vectors of one layout and attention mask: masks, diagonals, biases
    (float64; the forward encodes them on use)."""

    def __init__(self, lay: Layout, mask: np.ndarray):
        self.lay = lay
        S, w, n = lay.slots, lay.window, lay.n
        self.key = np.zeros(lay.n_pad)
        self.key[:n] = mask  # keys >= n are padding
        self.rows = S // w

    def features(self, F_: int, c: int, values=None) -> np.ndarray:
        """Chunk c of a per-feature vector (or 1) on the active windows' first P slots."""
        lay = self.lay
        P = lay.chunk
        kind = complex if np.iscomplexobj(values) else np.float64  # complex: refimpl.nexus.bert.linear_pairs
        v = np.zeros((self.rows, lay.window), dtype=kind)
        part = np.ones(P) if values is None else np.zeros(P, dtype=kind)
        if values is not None:
            seg = np.asarray(values, dtype=kind)[c * P:(c + 1) * P]
            part[:seg.size] = seg
        else:
            part[max(0, F_ - c * P):] = 0.0
        v[: lay.n, :P] = part
        return v.ravel()

    def heads(self, c: int) -> list[int]:
        """Local indices of the real heads in chunk c."""
        lay = self.lay
        per = lay.chunk // lay.head_dim
        return [hl for hl in range(per) if c * per + hl < lay.heads]

    def row_starts(self, c: int, r: int, scale: float, only: int | None = None) -> np.ndarray:
        """scale x key mask of key (t + r) mod n_pad at slot t w + hl dh (row starts of the real heads;
        only: of local head `only` alone)."""
        lay = self.lay
        v = np.zeros((self.rows, lay.window))
        keys = self.key[(np.arange(lay.n) + r) % lay.n_pad]  # [n]
        for hl in self.heads(c):
            if only is None or hl == only:
                v[: lay.n, hl * lay.head_dim] = scale * keys
        return v.ravel()

    def key_rows(self, c: int, scale: float = 1.0) -> np.ndarray:
        """Slot t w + hl dh + r = scale x key mask of key (t + r) mod n_pad (rows of the real heads of
        chunk c); with head_rows, score ciphertext c (head c) from slot t w."""
        lay = self.lay
        v = np.zeros((self.rows, lay.window))
        km = self.key[(np.arange(lay.n)[:, None] + np.arange(lay.n_pad)[None, :]) % lay.n_pad]  # [n, n_pad]
        for hl in ((0,) if lay.head_rows else self.heads(c)):
            v[: lay.n, hl * lay.head_dim: hl * lay.head_dim + lay.n_pad] = scale * km
        return v.ravel()

    def row_mask(self) -> np.ndarray:
        """1 on the first n_pad slots of every row segment (dh slots, or the window with head_rows)."""
        return (np.arange(self.lay.slots) % self.lay.row_segment < self.lay.n_pad).astype(np.float64)

    def diagonals(self, block: np.ndarray):
        """Generalised diagonals of a P x P block: D[k, o] = block[o, (o + k) mod P]."""
        P = self.lay.chunk
        o = np.arange(P)
        return block[o[None, :], (o[None, :] + np.arange(P)[:, None]) % P]  # [P, P]

    def tile(self, row: np.ndarray) -> np.ndarray:
        """A [P] vector (real or complex) on the first P slots of every active window."""
        lay = self.lay
        v = np.zeros((self.rows, lay.window), dtype=np.result_type(row, np.float64))
        v[: lay.n, :lay.chunk] = row
        return v.ravel()

