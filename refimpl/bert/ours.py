"""Our additions to MPCFormer's distillation (ours: in neither MPCFormer nor freeDiv).

Each is reached from refimpl.bert.distill only through an explicit option (`refimpl distill`,
`refimpl reproduce accuracy`); the paper's method runs without any of them.

- quad_init (option quad_init_rows): refits each FFN unit so that its Quad computes the
  least-squares quadratic closest to the teacher's GELU on the task's tokens. Swapping GELU for
  Quad on the teacher's weights as they are collapses every token of a sentence onto one
  direction (MiniLM, STS-B dev: mean token cosine 0.87 after layer 1, 0.998 at the last layer,
  teacher 0.16 / 0.80), since Quad(x) = 0.125 x^2 + 0.25 x + 0.5 is far above GELU for the
  mostly negative pre-activations; one short distillation epoch does not undo that.
- score_scale_fit / scale_queries (option score_scales): per head, the query scale alpha whose
  variant rows of alpha s lie closest to the teacher's softmax rows.
- attention_distance (option stage1_target "probs"): replaces the score MSE of every layer by
  the squared distance between the student's attention probabilities and the teacher's (summed over
  the real keys, averaged over the real query rows of every head). Pinning a 2Quad student's scores
  to the teacher's weighs a key by (s + c)^2: a score far below -c gets the weight of a high one,
  where the teacher's exp(s) gives it almost none; matching the probabilities lets Q and K move off
  the teacher's scores.
- swap_pairs, replace_tokens, neighbour_candidates (options stage1_inputs / stage2_inputs):
  augmented distillation inputs (the pairs swapped; token-replaced copies, TinyBERT-like).
- softmax_share (option anneal_epochs): runs the student's attention in stage 1 as
  w softmax + (1 - w) its variant, w falling linearly from 1 to 0 over that many epochs, so the student leaves the teacher's kernel step by step instead of at once;
  the circuit it ends with, and every saved or evaluated model, is the variant alone.
  The share is a training setting: it is passed to model.forward(softmax_share=...) step by
  step and is never part of a BertConfig, so a saved or deployed model has none.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from refimpl.bert import functional as F
from refimpl.bert import glue
from refimpl.bert.config import BertConfig
from refimpl.bert.model import Params, forward
from refimpl.bert.tokenizer import pad

QUAD_INIT_MIN_CURVATURE = 0.02  # floor on |A|: keeps s = sqrt(8 |A|) >= 0.4 and the shift t bounded
SCORE_SCALES = 2.0 ** (np.arange(-4, 17) / 4)  # score_scale_fit's grid: 0.5 .. 16, 21 steps of 2^(1/4)


def gelu_moments(config: BertConfig, params: Params, ids: list[list[int]], types: list[list[int]], *,
                 pad_id: int = 0, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Per layer and FFN unit, over real tokens: sums of x^k (k <= 4) and GELU(x) x^k (k <= 2), x the pre-activation.

    Returns (mx [L, 5, I], mg [L, 3, I]) in float64; config must use GELU.
    """
    if config.activation != "gelu":
        raise ValueError(f"the moments are those of a GELU model, got activation {config.activation!r}")
    layers, width = config.num_hidden_layers, config.intermediate_size
    mx, mg = np.zeros((layers, 5, width)), np.zeros((layers, 3, width))
    lengths = [len(r) for r in ids]
    for index in glue.bucket_batches(lengths, batch_size):
        b = pad([ids[i] for i in index], [types[i] for i in index], pad_id)
        res = forward(params, config, b.input_ids, b.token_type_ids, b.attention_mask)
        real = b.attention_mask.astype(bool)  # [B, n]
        for layer, (_, ffn_cache) in enumerate(res.cache["layers"]):
            x = ffn_cache["pre"][real].astype(np.float64)  # [tokens, I]
            g = F.gelu_erf(x)
            xk = np.ones_like(x)
            for k in range(5):  # x^k by repeated products (no x**k)
                mx[layer, k] += xk.sum(axis=0)
                if k < 3:
                    mg[layer, k] += (g * xk).sum(axis=0)
                xk = xk * x
    return mx, mg


def fit_quadratics(mx: np.ndarray, mg: np.ndarray, min_curvature: float = QUAD_INIT_MIN_CURVATURE
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, C) [L, I] minimising sum (A x^2 + B x + C - GELU(x))^2 per unit, from gelu_moments (normal equations).

    |A| is floored at min_curvature (sign kept; B and C refitted with A fixed), so that the
    quadratic is a rescaled, shifted Quad with bounded coefficients (see quad_init).
    """
    h = np.stack([np.stack([mx[:, a + c] for c in range(3)], axis=-1) for a in range(3)], axis=-2)  # [L, I, 3, 3]
    h = h + 1e-9 * mx[:, 0, :, None, None] * np.eye(3)  # a unit with one distinct value stays solvable
    r = np.stack([mg[:, a] for a in range(3)], axis=-1)  # [L, I, 3]
    c, b, a = np.moveaxis(np.linalg.solve(h, r[..., None])[..., 0], -1, 0)  # each [L, I]
    low = np.abs(a) < min_curvature
    a = np.where(low, np.where(a < 0, -min_curvature, min_curvature), a)
    r2 = r[..., :2] - a[..., None] * h[..., :2, 2]  # move the fixed A x^2 term to the right-hand side
    c2, b2 = np.moveaxis(np.linalg.solve(h[..., :2, :2], r2[..., None])[..., 0], -1, 0)
    return a, np.where(low, b2, b), np.where(low, c2, c)


def quad_init(config: BertConfig, params: Params, ids: list[list[int]], types: list[list[int]], *,
              pad_id: int = 0, min_curvature: float = QUAD_INIT_MIN_CURVATURE) -> Params:
    """The GELU model refitted so that each Quad unit computes the least-squares quadratic of its GELU unit (ours).

    Per layer and FFN unit j, over the real tokens of `ids` run through the GELU model:
    GELU(x_j) ~ A x_j^2 + B x_j + C (fit_quadratics). As Quad(y) = 0.125 (y + 1)^2 + 0.375,
        A x^2 + B x + C = u Quad(s x + t) + v,  u = sign A, s = sqrt(8 |A|),
        t = 4 B / (u s) - 1,  v = C - u (0.125 (t + 1)^2 + 0.375),
    so row j of the intermediate weight and its bias are scaled by s (bias + t), column j of
    the output weight by u, and W_2 v joins the output bias. The attention is left as it is.
    Returns new parameters (float32 as the input) for config.replace(activation="quad").
    """
    mx, mg = gelu_moments(config, params, ids, types, pad_id=pad_id)
    a, b, c = fit_quadratics(mx, mg, min_curvature)
    u = np.where(a < 0, -1.0, 1.0)
    s = np.sqrt(8.0 * np.abs(a))  # [L, I]
    t = 4.0 * b / (u * s) - 1.0
    v = c - u * (0.125 * (t + 1.0) * (t + 1.0) + 0.375)
    out = {k: w.copy() for k, w in params.items()}
    for layer in range(config.num_hidden_layers):
        p = f"encoder.layer.{layer}."
        dtype = params[p + "output.dense.weight"].dtype
        w1 = params[p + "intermediate.dense.weight"].astype(np.float64)  # [I, d]
        b1 = params[p + "intermediate.dense.bias"].astype(np.float64)  # [I]
        w2 = params[p + "output.dense.weight"].astype(np.float64)  # [d, I]
        out[p + "intermediate.dense.weight"] = (s[layer][:, None] * w1).astype(dtype)
        out[p + "intermediate.dense.bias"] = (s[layer] * b1 + t[layer]).astype(dtype)
        out[p + "output.dense.weight"] = (w2 * u[layer]).astype(dtype)
        out[p + "output.dense.bias"] = (params[p + "output.dense.bias"] + w2 @ v[layer]).astype(dtype)
    return out


def score_scale_fit(config: BertConfig, params: Params, ids: list[list[int]], types: list[list[int]], variant: str,
                    *, pad_id: int = 0, batch_size: int = 32, grid: np.ndarray = SCORE_SCALES) -> np.ndarray:
    """Per layer and head, the alpha of `grid` whose `variant` rows of alpha s lie closest to softmax(s) (ours).

    s: the softmax model's own scores on the real tokens of `ids`; closeness: attention_distance
    summed over its real query rows. (s + c)^2 weighs scores far more evenly than exp(s); a head
    whose queries are scaled by alpha > 1 gets sharper, until the scores below -c / alpha (which
    2Quad weighs like high ones) cost more than the sharpening gains. A per-head shift c would add
    nothing: (alpha s + c)^2 = alpha^2 (s + c / alpha)^2. Returns alpha [L, h].
    """
    if config.attention != "softmax":
        raise ValueError(f"the scales are fitted to a softmax model's probabilities, "
                         f"got attention {config.attention!r}")
    grid = np.asarray(grid, np.float64)
    dist = np.zeros((config.num_hidden_layers, config.num_attention_heads, len(grid)))
    for index in glue.bucket_batches([len(r) for r in ids], batch_size):
        b = pad([ids[i] for i in index], [types[i] for i in index], pad_id)
        res = forward(params, config, b.input_ids, b.token_type_ids, b.attention_mask)
        m = b.attention_mask.astype(np.float64)  # [B, n]
        real = m[:, None, :]  # [B, 1, n]: the key mask of attention_probs, and the real query rows
        for layer in range(config.num_hidden_layers):
            s = res.attention_scores[layer].astype(np.float64)  # [B, h, n, n]
            p = res.attention_probs[layer].astype(np.float64)
            for g, alpha in enumerate(grid):
                q = F.attention_probs(alpha * s, real, variant)
                dist[layer, :, g] += (((q - p) ** 2).sum(axis=-1) * real).sum(axis=(0, 2))
    return grid[dist.argmin(axis=-1)]


def scale_queries(config: BertConfig, params: Params, alpha: np.ndarray) -> Params:
    """Each head's query weights and bias times alpha [L, h]: scores alpha s, the circuit unchanged (ours)."""
    alpha = np.asarray(alpha, np.float64)
    if alpha.shape != (config.num_hidden_layers, config.num_attention_heads):
        raise ValueError(f"alpha of shape {alpha.shape}, expected (layers, heads) = "
                         f"{(config.num_hidden_layers, config.num_attention_heads)}")
    out = dict(params)
    for layer in range(config.num_hidden_layers):
        factor = np.repeat(alpha[layer], config.head_dim)  # [d]: query output j belongs to head j // head_dim
        for name in ("weight", "bias"):
            key = f"encoder.layer.{layer}.attention.self.query.{name}"
            w = params[key]
            out[key] = (w * (factor[:, None] if w.ndim == 2 else factor)).astype(w.dtype)
    return out


def swap_pairs(examples: glue.Examples) -> glue.Examples:
    """The examples followed by each pair in the other order (b, a): stage-1 inputs of a pair task (ours)."""
    if examples.text_b is None:
        raise ValueError(f"{examples.task.name} has single sentences: there is no pair to swap")
    return glue.Examples(examples.task, examples.text_a + examples.text_b, examples.text_b + examples.text_a,
                         np.concatenate([examples.labels, examples.labels]))


def replace_tokens(ids: list[list[int]], types: list[list[int]], *, copies: int, rate: float, seed: int,
                   keep: Sequence[int], candidates: np.ndarray | None = None) -> tuple[list[list[int]], list[list[int]]]:
    """The rows followed by `copies` noisy copies of them: distillation inputs off the training rows (ours).

    In each copy, every token not in `keep` (the special tokens) is replaced with probability
    `rate` by a token drawn from the rows' own unigram distribution (so a replacement is a
    word piece of the task, as often as the task uses it), or, given `candidates` [vocabulary, K]
    (neighbour_candidates), by a uniform draw from the token's own K candidates. The type ids
    are those of the row. A stand-in for TinyBERT's augmentation, which needs a
    masked-language-model head.
    """
    if copies < 1 or not 0.0 < rate <= 1.0:
        raise ValueError(f"replace_tokens needs copies >= 1 and 0 < rate <= 1, got copies={copies}, rate={rate}")
    if len(ids) != len(types) or any(len(a) != len(b) for a, b in zip(ids, types)):
        raise ValueError("replace_tokens: token and type rows differ in number or length")
    lengths = np.array([len(r) for r in ids])
    flat = np.concatenate([np.asarray(r, np.int64) for r in ids])
    free = ~np.isin(flat, np.asarray(keep, np.int64))
    counts = np.bincount(flat[free])
    if counts.sum() == 0:
        raise ValueError("replace_tokens: the rows hold no replaceable token")
    if candidates is not None and (candidates.ndim != 2 or candidates.shape[0] <= flat.max() or candidates.shape[1] < 1):
        raise ValueError(f"replace_tokens: candidates must be [vocabulary > {flat.max()}, K >= 1], got {candidates.shape}")
    rng = np.random.default_rng([seed, 4321])
    splits = np.cumsum(lengths)[:-1]
    out_ids, out_types = [list(r) for r in ids], [list(r) for r in types]
    for _ in range(copies):
        hit = free & (rng.random(flat.size) < rate)
        noisy = flat.copy()
        if candidates is None:
            noisy[hit] = rng.choice(counts.size, size=int(hit.sum()), p=counts / counts.sum())
        else:
            noisy[hit] = candidates[flat[hit], rng.integers(0, candidates.shape[1], int(hit.sum()))]
        out_ids += [r.tolist() for r in np.split(noisy, splits)]
        out_types += [list(r) for r in types]
    return out_ids, out_types


def neighbour_candidates(embeddings: np.ndarray, pieces: Sequence[str], *, k: int, keep: Sequence[int],
                         block: int = 2048) -> np.ndarray:
    """[V, k]: each token's k nearest pieces by cosine of the word embeddings (TinyBERT Alg. 1's candidates, ours).

    TinyBERT draws a replacement for a word among its K = 15 nearest words (GloVe) or its
    masked-LM predictions; we have neither, so a word piece's candidates are its k nearest
    pieces in the teacher's own input embedding (MiniLM's RTE teacher: 'killed' -> killing, kill,
    murdered, kills, died, ...). A candidate is never a token of `keep` (the specials) nor the token
    itself, and is a continuation piece ('##...') exactly when the token is one, so a
    replaced word still reads as a sequence of words. Rows of `keep` list the token itself.
    """
    V = embeddings.shape[0]
    if len(pieces) != V:
        raise ValueError(f"neighbour_candidates: {len(pieces)} pieces for {V} embedding rows")
    if not 1 <= k < V - len(keep):
        raise ValueError(f"neighbour_candidates needs 1 <= k < {V - len(keep)} (the non-special tokens), got {k}")
    unit = embeddings.astype(np.float32) / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    cont = np.array([p.startswith("##") for p in pieces])
    special = np.zeros(V, bool)
    special[np.asarray(keep, np.int64)] = True
    out = np.repeat(np.arange(V)[:, None], k, axis=1)
    for lo in range(0, V, block):
        rows = np.arange(lo, min(lo + block, V))
        sim = unit[rows] @ unit.T  # [block, V]
        sim[:, special] = -np.inf
        sim[cont[rows][:, None] != cont[None, :]] = -np.inf
        sim[np.arange(rows.size), rows] = -np.inf
        top = np.argpartition(-sim, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1)
        best = np.take_along_axis(top, order, axis=1)
        ok = np.isfinite(np.take_along_axis(sim, best, axis=1))  # too few pieces of the same kind: the token itself
        out[rows] = np.where(ok & ~special[rows][:, None], best, rows[:, None])
    return out


def attention_distance(p: np.ndarray, q: np.ndarray, m_pair: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean over real query rows (every head) of sum_k (p - q)^2 over real keys, and its gradient in p (ours).

    p, q [B, h, n, n]; m_pair [B, 1, n, n] 0/1 (real query x real key). A row's distance lies in
    [0, 2] for two distributions, the scale of the hidden-state MSEs it sits beside.
    """
    w = np.broadcast_to(m_pair, p.shape)
    rows = float(w.max(axis=-1).sum())  # real (batch, head, query) rows
    if rows <= 0:
        raise ValueError("attention_distance with no real query row")
    diff = (p - q) * w
    return float((diff * diff).sum()) / rows, (2.0 / rows) * diff


def softmax_share(step: int, anneal_steps: int) -> float:
    """Softmax's weight in the student's attention at stage-1 step `step` (ours): 1 at step 0, linearly down to 0 at anneal_steps, 0 after."""
    if anneal_steps <= 0:
        return 0.0
    return max(0.0, 1.0 - step / anneal_steps)
