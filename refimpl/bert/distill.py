"""Two-stage distillation of an MPC-friendly student from its teacher (the command: `refimpl distill`).

MPCFormer (Li et al., ICLR 2023, §3.2), as DESIGN.md section 6 fixes it:
- the student starts from the teacher's weights with attention and activation swapped (and,
  for a smaller student, a stated layer map: student layer i <- teacher layer map[i]);
- stage 1: MSE on the pre-softmax attention scores of every layer + MSE on every hidden
  state (embedding output included), weighted 1:1; student layer i is matched to teacher
  layer map[i] (hidden state i + 1 to teacher hidden state map[i] + 1; hidden state 0 to 0);
  lr 5e-5 constant;
- stage 2: soft cross-entropy at T = 1 on the logits (STS-B: MSE to the gold labels),
  lr 1e-5, 10 % warmup then linear decay.
The MSEs average over real tokens only (real query x real key for the scores): the scores of
padded positions are not part of any sentence.

Optional, ours (not in MPCFormer): stage1_target "probs" replaces the score MSE of every layer by
the squared distance between the student's attention probabilities and the teacher's (summed over
the real keys, averaged over the real query rows of every head). Pinning a 2Quad student's scores
to the teacher's weighs a key by (s + c)^2: a score far below -c gets the weight of a high one,
where the teacher's exp(s) gives it almost none; matching the probabilities lets Q and K move off
the teacher's scores.

Optional, ours (not in MPCFormer): quad_init refits each FFN unit so that its Quad computes the
least-squares quadratic closest to the teacher's GELU on the task's tokens. Swapping GELU for
Quad on the teacher's weights as they are collapses every token of a sentence onto one
direction (MiniLM, STS-B dev: mean token cosine 0.87 after layer 1, 0.998 at the last layer,
teacher 0.16 / 0.80), since Quad(x) = 0.125 x^2 + 0.25 x + 0.5 is far above GELU for the
mostly negative pre-activations; one short distillation epoch does not undo that.

Optional, ours (not in MPCFormer): anneal_epochs runs the student's attention in stage 1 as
w softmax + (1 - w) its variant, w falling linearly from 1 to 0 over that many epochs
(softmax_share), so the student leaves the teacher's kernel step by step instead of at once;
the circuit it ends with, and every saved or evaluated model, is the variant alone.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from refimpl.bert import functional as F
from refimpl.bert import glue
from refimpl.bert import layers as L
from refimpl.bert import train as T
from refimpl.bert.config import BertConfig
from refimpl.bert.model import ForwardResult, Params, backward, forward
from refimpl.bert.tokenizer import Batch, pad

STAGE1_LR = 5e-5  # MPCFormer's stage-1 learning rate (constant)
STAGE2_LR = 1e-5  # MPCFormer's stage-2 peak learning rate (10 % warmup, linear decay)
QUAD_INIT_MIN_CURVATURE = 0.02  # floor on |A|: keeps s = sqrt(8 |A|) >= 0.4 and the shift t bounded
SCORE_SCALES = 2.0 ** (np.arange(-4, 17) / 4)  # score_scale_fit's grid: 0.5 .. 16, 21 steps of 2^(1/4)
STAGE1_TARGETS = {"scores": "pre-softmax attention scores (MPCFormer)",
                  "probs": "attention probabilities (ours)",
                  "hidden": "no attention term: hidden states only (ours)"}


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


def stage1_terms(
    student: ForwardResult, teacher: ForwardResult, mask: np.ndarray, layer_map: Sequence[int],
    *, target: str = "scores", config: BertConfig | None = None, score_scales: np.ndarray | None = None,
) -> tuple[float, list[np.ndarray], list[np.ndarray | None]]:
    """Loss = sum_l MSE(scores_l) + sum_i MSE(hidden_i) and the gradients on the student's scores and hidden states (MPCFormer stage 1).

    mask [B, n] 0/1; layer_map[i] = teacher layer of student layer i. target "probs" (ours; needs
    the student's config): sum_l attention_distance(probs_l) in place of the score MSEs, its
    gradient taken back to the scores through the student's attention variant. target "hidden"
    (ours): the hidden-state MSEs alone, the scores left free (a 2Quad row of the teacher's scores
    is far from its softmax row, so pinning them need not help). score_scales
    [teacher layers, h] (ours, a start from scale_queries): the score target of teacher layer t, head
    j is alpha[t, j] times the teacher's score, the scale the student starts from.
    Returns (loss, d_hidden_states [L+1], d_attention_scores [L]).
    """
    if target not in STAGE1_TARGETS:
        raise ValueError(f"unknown stage-1 target {target!r}; expected one of {sorted(STAGE1_TARGETS)}")
    if target == "probs" and config is None:
        raise ValueError("stage-1 target 'probs' takes the probabilities back to the scores: give the student's config")
    dtype = student.hidden_states[0].dtype
    m = mask.astype(dtype)
    m_tok = m[:, :, None]  # [B, n, 1]
    m_pair = (m[:, :, None] * m[:, None, :])[:, None]  # [B, 1, n, n] real query x real key
    hidden_pairs = [(0, 0)] + [(i + 1, t + 1) for i, t in enumerate(layer_map)]
    loss = 0.0
    d_hidden: list[np.ndarray] = []
    for i, t in hidden_pairs:
        li, di = T.mse(student.hidden_states[i], teacher.hidden_states[t].astype(dtype, copy=False), m_tok)
        loss += li
        d_hidden.append(di.astype(dtype, copy=False))
    d_scores: list[np.ndarray | None] = []
    for i, t in enumerate(layer_map):
        if target == "hidden":
            d_scores.append(None)
            continue
        if target == "scores":
            goal = teacher.attention_scores[t]
            if score_scales is not None:
                goal = goal * np.asarray(score_scales[t])[None, :, None, None]
            li, di = T.mse(student.attention_scores[i], goal.astype(dtype, copy=False), m_pair)
        else:
            goal = teacher.attention_probs[t].astype(dtype, copy=False)
            li, dp = attention_distance(student.attention_probs[i], goal, m_pair)
            di = L.attention_probs_backward(dp, student.attention_probs[i], student.attention_scores[i], m[:, None, :],
                                            config.attention, c=config.quad_c, ab=config.freediv)
        loss += li
        d_scores.append(di.astype(dtype, copy=False))
    return loss, d_hidden, d_scores


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


def _student_rng(dropout: float, seed: int, step: int) -> np.random.Generator | None:
    """The student's dropout masks of one step: a function of (seed, step), so a resumed run is identical."""
    return np.random.default_rng([seed, 11, step]) if dropout > 0 else None


def softmax_share(step: int, anneal_steps: int) -> float:
    """Softmax's weight in the student's attention at stage-1 step `step` (ours): 1 at step 0, linearly down to 0 at anneal_steps, 0 after."""
    if anneal_steps <= 0:
        return 0.0
    return max(0.0, 1.0 - step / anneal_steps)


def stage1_loss(config: BertConfig, teacher_config: BertConfig, teacher_params: Params,
                layer_map: Sequence[int], target: str = "scores", score_scales: np.ndarray | None = None,
                dropout: float = 0.0, seed: int = 0, anneal_steps: int = 0) -> T.LossFn:
    """Stage 1 loss function for train(): teacher forward, student forward, MSEs, student backward.

    dropout > 0: BERT's training dropout on the student only, as MPCFormer's task_distill trains
    the student in train mode against the teacher in eval mode. anneal_steps > 0 (ours): the
    student's attention at step t is softmax_share(t) softmax + (1 - softmax_share(t)) its variant,
    so it leaves the teacher's kernel gradually (layers.annealed_probs)."""

    def loss_fn(params: Params, batch: Batch, labels: np.ndarray, index: np.ndarray, step: int) -> tuple[float, Params]:
        args = (batch.input_ids, batch.token_type_ids, batch.attention_mask)
        cfg = config if anneal_steps <= 0 else config.replace(softmax_share=softmax_share(step, anneal_steps))
        t = forward(teacher_params, teacher_config, *args)
        s = forward(params, cfg, *args, dropout=dropout, rng=_student_rng(dropout, seed, step))
        loss, dh, ds = stage1_terms(s, t, batch.attention_mask, layer_map, target=target, config=cfg,
                                    score_scales=score_scales)
        return loss, backward(params, cfg, s, None, d_hidden_states=dh, d_attention_scores=ds)

    return loss_fn


def stage2_loss(config: BertConfig, task: glue.Task, teacher_logits: np.ndarray, temperature: float = 1.0,
                dropout: float = 0.0, seed: int = 0) -> T.LossFn:
    """Stage 2 loss for train(): soft CE to the teacher's logits (precomputed per example); STS-B: MSE to gold.

    dropout > 0: on the student, as in stage 1 (the teacher's logits are computed without it)."""

    def loss_fn(params: Params, batch: Batch, labels: np.ndarray, index: np.ndarray, step: int) -> tuple[float, Params]:
        s = forward(params, config, batch.input_ids, batch.token_type_ids, batch.attention_mask,
                    dropout=dropout, rng=_student_rng(dropout, seed, step))
        if task.labels is None:
            loss, d = T.task_loss(task, s.logits, labels)
        else:
            loss, d = T.soft_cross_entropy(s.logits, teacher_logits[index].astype(s.logits.dtype), temperature)
        return loss, backward(params, config, s, d)

    return loss_fn


def distill(
    teacher_config: BertConfig,
    teacher_params: Params,
    student_config: BertConfig,
    layer_map: Sequence[int],
    task: glue.Task,
    ids: list[list[int]],
    types: list[list[int]],
    labels: np.ndarray,
    stage1: T.Schedule | None,
    stage2: T.Schedule | None,
    *,
    pad_id: int = 0,
    run_dir: str | Path | None = None,
    student_params: Params | None = None,
    quad_init_rows: int = 0,
    stage1_inputs: tuple[list[list[int]], list[list[int]]] | None = None,
    stage2_inputs: tuple[list[list[int]], list[list[int]]] | None = None,
    stage1_target: str = "scores",
    score_scales: np.ndarray | None = None,
    anneal_epochs: float = 0.0,
    log=None,
) -> Params:
    """Both stages; the student starts from the teacher's layers by layer_map unless student_params is given.

    quad_init_rows > 0 (a GELU teacher, a Quad student): the start is quad_init of the teacher,
    fitted on that many training rows (a fixed random subset). stage1_inputs: the (token ids,
    type ids) stage 1 runs on instead of (ids, types), e.g. with swap_pairs or replace_tokens;
    quad_init uses (ids, types). stage2_inputs (classification tasks only: stage 2 then fits the
    teacher's logits on them, reading no label): the rows stage 2 runs on instead of (ids, types).
    stage1_target: "scores" (MPCFormer) or "probs" (ours), see stage1_terms. score_scales [L, h]
    (ours): the start's queries scaled per head (scale_queries, after quad_init), e.g. score_scale_fit's;
    the score target of stage 1 is scaled alike. Each stage's schedule.dropout applies to the student
    (0 by default; MPCFormer trains the student with BERT's 0.1). anneal_epochs > 0 (ours): over
    stage 1's first anneal_epochs epochs the student's attention slides from softmax to its
    variant (softmax_share); the rest of stage 1 and all of stage 2 run the variant alone.
    """
    if stage1_target not in STAGE1_TARGETS:
        raise ValueError(f"unknown stage-1 target {stage1_target!r}; expected one of {sorted(STAGE1_TARGETS)}")
    if anneal_epochs:
        if stage1 is None or not 0.0 < anneal_epochs <= stage1.epochs:
            raise ValueError(f"anneal_epochs anneals the attention within stage 1: give 0 < anneal_epochs <= the "
                             f"stage-1 epochs ({None if stage1 is None else stage1.epochs}), got {anneal_epochs}")
        if student_config.attention == "softmax":
            raise ValueError("anneal_epochs slides the attention from softmax to the student's variant; "
                             "this student's attention is softmax already")
        if stage1_target == "probs":
            raise ValueError("stage-1 target 'probs' takes the probabilities back through the variant alone; "
                             "it does not combine with anneal_epochs")
    if student_params is None:
        source = teacher_params
        if quad_init_rows > 0:
            if teacher_config.activation != "gelu" or student_config.activation != "quad":
                raise ValueError(f"quad_init maps GELU to Quad, got {teacher_config.activation!r} -> "
                                 f"{student_config.activation!r}")
            rows = T.subset_index(len(ids), quad_init_rows, 0)
            source = quad_init(teacher_config, teacher_params, [ids[i] for i in rows], [types[i] for i in rows],
                               pad_id=pad_id)
        if score_scales is not None:
            source = scale_queries(teacher_config, source, score_scales)
        _, student_params = T.select_layers(teacher_config, source, layer_map)
    if student_config.num_hidden_layers != len(layer_map):
        raise ValueError(f"student has {student_config.num_hidden_layers} layers, layer map {list(layer_map)}")
    dir1, dir2 = stage_dirs(run_dir, stage1, stage2)
    params = student_params
    if stage1 is not None and dir1 is not None and not dir1.exists():
        _continue_shorter_stage1(dir1, stage1, log)
    if stage1 is not None:
        ids1, types1 = (ids, types) if stage1_inputs is None else stage1_inputs
        if len(ids1) != len(types1):
            raise ValueError(f"stage1_inputs: {len(ids1)} token rows but {len(types1)} type rows")
        labels1 = labels if stage1_inputs is None else np.zeros(len(ids1), labels.dtype)  # stage 1 reads no label
        anneal_steps = int(round(anneal_epochs * T.total_steps(len(ids1), replace(stage1, epochs=1.0))))
        loss1 = stage1_loss(student_config, teacher_config, teacher_params, layer_map, stage1_target, score_scales,
                            dropout=stage1.dropout, seed=stage1.seed, anneal_steps=anneal_steps)
        params = T.train(params, ids1, types1, labels1, loss1, stage1, pad_id=pad_id, run_dir=dir1,
                         desc="distill stage 1", log=log)
    if stage2 is not None:
        ids2, types2, labels2 = ids, types, labels
        if stage2_inputs is not None:
            if task.labels is None:
                raise ValueError(f"stage 2 of {task.name} fits the gold scores: it runs on the labelled rows only")
            ids2, types2 = stage2_inputs
            if len(ids2) != len(types2):
                raise ValueError(f"stage2_inputs: {len(ids2)} token rows but {len(types2)} type rows")
            labels2 = np.zeros(len(ids2), labels.dtype)  # soft CE to the teacher's logits reads no label
        teacher_logits = T.predict(teacher_params, teacher_config, ids2, types2, pad_id=pad_id, progress="teacher logits")
        loss2 = stage2_loss(student_config, task, teacher_logits, dropout=stage2.dropout, seed=stage2.seed)
        params = T.train(params, ids2, types2, labels2, loss2,
                         stage2, pad_id=pad_id, run_dir=dir2, desc="distill stage 2", log=log)
    return params


def _continue_shorter_stage1(dir1: Path, stage1: T.Schedule, log=None) -> None:
    """Start a longer stage 1 from the longest shorter one of the same run (a copy of its checkpoint).

    Stage 1 runs at a constant rate, so its first steps do not depend on the epochs
    (train.continues); the shorter run and the stage 2 runs under it stay as they are.
    """
    best, best_epochs = None, 0.0
    for d in dir1.parent.glob(f"stage1-e*-lr{stage1.lr:g}"):  # _tag's form: same rate, any epochs
        state = d / T.STATE
        if not state.exists():
            continue
        stored = json.loads(state.read_text())["schedule"]
        if stored["epochs"] < stage1.epochs and stored["epochs"] > best_epochs and T.continues(stored, stage1):
            best, best_epochs = d, stored["epochs"]
    if best is None:
        return
    dir1.mkdir(parents=True)
    for name in (T.CHECKPOINT, T.STATE):
        shutil.copyfile(best / name, dir1 / name)
    if log:
        log(f"stage 1: continuing the {best_epochs:g}-epoch run {best.name}")


def stage_dirs(run_dir: str | Path | None, stage1: T.Schedule | None, stage2: T.Schedule | None
               ) -> tuple[Path | None, Path | None]:
    """Checkpoint directories of both stages: run/stage1-e<epochs>-lr<lr>/stage2-e<epochs>-lr<lr>.

    Stage 2 lives under the stage 1 it continues, so a finished stage 1 is reused by every
    stage 2 recipe tried on it, and a stage 2 is never resumed on top of another stage 1.
    """
    if run_dir is None:
        return None, None
    dir1 = Path(run_dir) / f"stage1-{_tag(stage1)}" if stage1 is not None else Path(run_dir)
    return dir1, None if stage2 is None else dir1 / f"stage2-{_tag(stage2)}"


def _tag(s: T.Schedule) -> str:
    """A stage's directory tag: its epochs and rate (the rest of the schedule is checked on resume)."""
    return f"e{s.epochs:g}-lr{s.lr:g}"
