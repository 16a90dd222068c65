"""Matrix products: ct-pt on decompressed inputs, the Alg. 6 protocol, and ct-ct products.

1. `matmul_compressed` (the official code's MatMul, NEXUS §3.1.1 + §4):
       (A B)[:, i] = sum_j A[:, j] * bcast(B[j, i])
   A [m, n] plaintext (column j is one plaintext of m slots), B [n, k] encrypted and
   compressed row-major (value j k + i in coefficient (j k + i) mod N of ciphertext
   (j k + i) // N). Each decompressed leaf bcast(B[j, i]) is consumed at once: n k plaintext
   products, no rotation, one rescale. Output: k ciphertexts, column i of A B in slots 0..m-1.
   The plaintext operand fixes the output layout (slot s of output i is sum_j A[s, j] B[j, i]),
   so the first layer can emit whatever layout the next block wants.
2. Alg. 6 (`alg6_*`): the same kernel run by the client on the server's encrypted weights in
   a precomputation, then an online phase in which the server computes in the clear.
3. ct-ct products for attention (`qk_scores`, `scores_times_v`): see their docstrings.

Reference: NEXUS §3.1.1, §3.1.2, §4.1 and Alg. 6 (Zhang et al., NDSS 2025); official code
src/matrix_mul.cpp.
"""

from __future__ import annotations

import numpy as np

from ..ckks import Ciphertext, Encoder, Encryptor, Evaluator, SecretKey
from ..ring.sampling import RandomSource
from .compression import compress, decompress
from .folding import quick_sum


# ------------------------------------------------------------------ packing of B
def chunk_counts(total: int, N: int) -> list[int]:
    """Tree sizes of ceil(total / N) compressed ciphertexts: N, ..., N, then the next power of two of the rest."""
    full, rest = divmod(total, N)
    return [N] * full + ([1 << (rest - 1).bit_length()] if rest else [])


def compress_matrix(encoder: Encoder, encryptor: Encryptor, B: np.ndarray, level: int | None = None,
                    scale: float | None = None) -> list[Ciphertext]:
    """B [n, k] row-major into ceil(n k / N) compressed ciphertexts (NEXUS Alg. 5, run by B's owner).

    A last, partial ciphertext with n' values (n' the next power of two) is encoded at scale
    Delta N / n', so that its leaves, scaled by n' in the tree, land at N Delta like the others."""
    p = encoder.params
    flat = np.asarray(B, dtype=np.float64).ravel()
    scale = p.scale if scale is None else float(scale)
    out = []
    for c, n in enumerate(chunk_counts(flat.size, p.N)):
        out.append(compress(encoder, encryptor, flat[c * p.N:(c + 1) * p.N], level, scale * p.N / n))
    return out


def subs_elements_for(N: int, total: int) -> list[int]:
    """The Galois elements the decompressing party needs for `total` packed values."""
    n = min(N, 1 << max(total - 1, 0).bit_length())
    return [N // (1 << i) + 1 for i in range(n.bit_length() - 1)]


# ------------------------------------------------------------------ 1. ct-pt product
def matmul_compressed(ev: Evaluator, A: np.ndarray, compressed: list[Ciphertext], k: int,
                      pt_scale: float | None = None) -> list[Ciphertext]:
    """A B with A [m, n] plaintext and B [n, k] compressed (NEXUS §3.1.1, §4; official MatMul).

    (A B)[:, i] = sum_j A[:, j] * bcast(B[j, i]): n k plaintext products, 0 rotations, one
    rescale (level l -> l-1, scale N Delta_B Delta_A / q_l), N - 1 Subs per full compressed
    ciphertext. Memory: the n encoded columns of A, k accumulators and the tree's O(log N) path.
    Runs on the party that holds A in the clear (Alg. 6: the client holding U; the official
    test: the server's plaintext input times the compressed encrypted matrix)."""
    A = np.asarray(A, dtype=np.float64)
    m, n = A.shape
    N = ev.params.N
    counts = chunk_counts(n * k, N)
    if len(compressed) != len(counts):
        raise ValueError(f"B [{n}, {k}] needs {len(counts)} compressed ciphertexts, got {len(compressed)}")
    level = compressed[0].level
    cols = [ev.encoder.encode(A[:, j], level=level, scale=pt_scale) for j in range(n)]  # n plaintexts
    acc: list = [None] * k

    for c, (ct, count) in enumerate(zip(compressed, counts)):
        def consume(j, leaf, base=c * N):
            t = base + j
            if t >= n * k:
                return  # padding of the last ciphertext
            row, col = divmod(t, k)
            term = ev.mul_plain(leaf, cols[row])  # bcast(B[row, col]) * A[:, row], scale x Delta_A
            acc[col] = term if acc[col] is None else ev.add(acc[col], term)

        decompress(ev, ct, consume, count)
    return [ev.rescale(a) for a in acc]  # level l -> l-1


# ------------------------------------------------------------------ 2. Alg. 6
def add_key_layer(ct: Ciphertext, sk_c: SecretKey, rng: RandomSource) -> Ciphertext:
    """Enc_S(v) -> Enc_C(Enc_S(v)) = (c_0 - c_1 s_C + e', c_1): the same mask c_1 under s_S + s_C (NEXUS §4.1).

    Run by the client in the Alg. 6 precomputation."""
    p = ct.params
    ctx, basis = p.ctx, p.q_basis(ct.level)
    e = ctx.ntt(ctx.from_int(rng.gaussian(p.N, p.sigma), basis), basis)
    c0 = ctx.add(ctx.sub(ct.c[0], ctx.mul(ct.c[1], sk_c.s_ntt[: ct.level + 1], basis), basis), e, basis)
    return Ciphertext((c0, ct.c[1]), ct.level, ct.scale, p)


def strip_key_layer(ct: Ciphertext, sk_s: SecretKey) -> Ciphertext:
    """Enc_C(Enc_S(v)) -> Enc_C(v) = (c_0 + c_1 s_S, c_1) (NEXUS §4.1). Run by the server."""
    p = ct.params
    ctx, basis = p.ctx, p.q_basis(ct.level)
    c0 = ctx.add(ct.c[0], ctx.mul(ct.c[1], sk_s.s_ntt[: ct.level + 1], basis), basis)
    return Ciphertext((c0, ct.c[1]), ct.level, ct.scale, p)


def alg6_client_precompute(ev_s: Evaluator, compressed_w: list[Ciphertext], k: int, U: np.ndarray,
                           encryptor_s: Encryptor, sk_c: SecretKey, rng: RandomSource) -> list[Ciphertext]:
    """Client, precomputation of NEXUS Alg. 6: Enc_C(Enc_S(v_j)), v_j = (U W)[:, j], for j < k.

    ev_s evaluates with the server's Subs keys (sent with its compressed weights), U [t m, n]
    is the client's random mask. Steps: decompress Enc_S(W) and multiply by U
    (`matmul_compressed`); re-randomise each result with a fresh Enc_S(0) (refimpl's addition:
    decompression is deterministic, so the server knows every leaf's c_1; the k masks
    c_1(v_j) = sum_i u_i c_1(leaf_ij) are, at each NTT point, k linear equations in the n
    unknown u_i, which give U away when k >= n; the final rescale only adds rounding noise to
    them, which is no security argument); add the client's key layer. Sent to the server."""
    out = []
    for v in matmul_compressed(ev_s, U, compressed_w, k):
        zero = encryptor_s.encrypt(ev_s.encoder.encode(np.zeros(1), level=v.level, scale=v.scale))
        out.append(add_key_layer(ev_s.add(v, zero), sk_c, rng))
    return out


def alg6_server_strip(layered: list[Ciphertext], sk_s: SecretKey) -> list[Ciphertext]:
    """Server, precomputation of NEXUS Alg. 6: strip its own layer, keeping Enc_C(v_j)."""
    return [strip_key_layer(ct, sk_s) for ct in layered]


def alg6_client_online(A_prime: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Client, online phase of NEXUS Alg. 6: the message A' - U, sent in the clear (U is a one-time mask)."""
    return np.asarray(A_prime, dtype=np.float64) - U


def alg6_server_online(ev: Evaluator, masked: np.ndarray, W: np.ndarray, enc_v: list[Ciphertext]) -> list[Ciphertext]:
    """Server, online phase of NEXUS Alg. 6: Enc_C(q'_j) = ((A' - U) W)[:, j] + Enc_C(v_j), 0 levels.

    The product (A' - U) W is computed in the clear (float64); k plaintext additions."""
    Y = np.asarray(masked, dtype=np.float64) @ np.asarray(W, dtype=np.float64)  # [t m, k]
    return [ev.add_plain(v, ev.encoder.encode(Y[:, j], level=v.level, scale=v.scale)) for j, v in enumerate(enc_v)]


# ------------------------------------------------------------------ 3. ct-ct products
def layout_row_replicated(Q: np.ndarray, i: int, slots: int) -> np.ndarray:
    """Slots of Qrep_i: slot j d + c = Q[i, c] for every block j < n (row i repeated n times)."""
    n, d = Q.shape
    out = np.zeros(slots)
    out[: n * d] = np.tile(Q[i], n)
    return out


def layout_row_major(K: np.ndarray, slots: int) -> np.ndarray:
    """Slots of K_flat: slot j d + c = K[j, c]."""
    out = np.zeros(slots)
    out[: K.size] = np.asarray(K).ravel()
    return out


def layout_block_broadcast(V: np.ndarray, c: int, slots: int) -> np.ndarray:
    """Slots of Vb_c: slot j d + i = V[j, c] for every i < d (V's column c, each entry over its block)."""
    n, d = V.shape
    out = np.zeros(slots)
    out[: n * d] = np.repeat(V[:, c], d)
    return out


def layout_interleaved(S: np.ndarray, group: int, d: int, slots: int) -> np.ndarray:
    """Slots of score ciphertext g: slot j d + r = S[g d + r, j] for r < d (rows at stride d)."""
    n = S.shape[1]
    block = np.zeros((n, d))
    rows = S[group * d: (group + 1) * d]  # [<= d, n]
    block[:, : rows.shape[0]] = rows.T
    out = np.zeros(slots)
    out[: n * d] = block.ravel()
    return out


def qk_scores(ev: Evaluator, q_rep: list[Ciphertext], k_flat: Ciphertext, n: int, d: int) -> list[Ciphertext]:
    """S = Q K^T in the interleaved layout (NEXUS §3.1.2, batched over the keys).

    For each query row i: u = Qrep_i * K_flat (slot j d + c = Q[i, c] K[j, c]); QuickSum over
    each block of d (log2 d rotations) puts S[i, j] in slot j d; the one-hot mask of the
    slots j d keeps it; RotR by i mod d moves it to slot j d + (i mod d), and d rows share one
    ciphertext. Cost: n products, n (log2 d + 1) rotations, n masks, 2 levels
    (l -> l-2, scale that of a product of the inputs). The paper's unbatched form (one inner
    product per pair (i, j), QuickSum, then one-hot combination) needs n^2 products and
    n^2 log2 d rotations. Output: ceil(n / d) ciphertexts, `layout_interleaved`."""
    if n * d > ev.params.slots:
        raise ValueError(f"n d = {n * d} exceeds the {ev.params.slots} slots")
    mask = np.zeros(ev.params.slots)
    mask[: n * d: d] = 1.0  # one-hot at slot j d of every block
    groups: list = [None] * (-(-n // d))
    for i, q in enumerate(q_rep):
        u = ev.rescale(ev.multiply(q, k_flat))  # level l -> l-1
        u = quick_sum(ev, u, d)  # slot j d: S[i, j] (other slots: partial sums)
        u = ev.rescale(ev.mul_const(u, mask))  # level -> l-2, keep slots j d
        u = ev.rotate(u, -(i % d)) if i % d else u  # RotR by i mod d
        g = i // d
        groups[g] = u if groups[g] is None else ev.add(groups[g], u)
    return groups


def qk_scores_pairwise(ev: Evaluator, q_rows: list[Ciphertext], k_rows: list[Ciphertext], n: int, d: int) -> list[Ciphertext]:
    """S = Q K^T, the paper's unbatched form (NEXUS §3.1.2): the obvious alternative to `qk_scores`.

    Row i: for each key j, Enc(q_i) * Enc(k_j) (rows in slots [0, d), zeros up to 2d), QuickSum
    with duplication (log2 d + 1 rotations) puts q_i . k_j in slots [0, d); the one-hot b_j
    keeps slot j; the n terms add up to row i of S in slots [0, n). Cost: n^2 products,
    n^2 (log2 d + 1) rotations, n^2 masks, 2 levels; output n ciphertexts."""
    out = []
    for q in q_rows:
        acc = None
        for j, k in enumerate(k_rows):
            u = quick_sum(ev, ev.rescale(ev.multiply(q, k)), d, duplicate=True)  # q_i . k_j in slots [0, d)
            b = np.zeros(ev.params.slots)
            b[j] = 1.0
            u = ev.rescale(ev.mul_const(u, b))  # keep slot j
            acc = u if acc is None else ev.add(acc, u)
        out.append(acc)
    return out


def scores_times_v(ev: Evaluator, p_groups: list[Ciphertext], v_cols: list[Ciphertext], n: int, d: int) -> list[list[Ciphertext]]:
    """O = P V from interleaved P and block-broadcast V columns (NEXUS §3.1.4).

    For group g and column c: P_g * Vb_c (slot j d + r = P[g d + r, j] V[j, c]), then a
    strided QuickSum over the n blocks (step d, log2 n rotations) leaves O[g d + r, c] in slot
    r of every block. Cost per group: d products, d log2(n) rotations, 1 level. The windows
    are cyclic because the n blocks fill the n d slots: requires n d = N/2 (else duplicate).
    Output [group][c]: O[g d + r, c] in slot r."""
    if n * d != ev.params.slots:
        raise ValueError(f"scores_times_v folds cyclically over n d = {n * d} slots: needs n d = N/2 = {ev.params.slots}")
    out = []
    for pg in p_groups:
        out.append([quick_sum(ev, ev.rescale(ev.multiply(pg, vc)), n, step=d) for vc in v_cols])  # level -> l-1
    return out
