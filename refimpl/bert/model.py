"""The numpy BERT: forward and manual backward of the whole model (picoGPT style).

Parameters are one flat dict keyed by the checkpoint's names without the `bert.` prefix
(`embeddings.word_embeddings.weight`, `encoder.layer.0.attention.self.query.weight`, ...)
plus `classifier.weight` [num_labels, d] and `classifier.bias` for the head. The dtype of
the parameters is the compute dtype: float32 by default, float64 for gradient checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from refimpl.bert import layers as L
from refimpl.bert.config import BertConfig

Params = dict[str, np.ndarray]


def param_shapes(config: BertConfig, *, head: bool = True) -> dict[str, tuple[int, ...]]:
    """Every parameter name and shape of `config` (checkpoint names, linear weights [out, in])."""
    d, i = config.hidden_size, config.intermediate_size
    shapes: dict[str, tuple[int, ...]] = {
        "embeddings.word_embeddings.weight": (config.vocab_size, d),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, d),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, d),
        "embeddings.LayerNorm.weight": (d,),
        "embeddings.LayerNorm.bias": (d,),
    }
    for layer in range(config.num_hidden_layers):
        p = f"encoder.layer.{layer}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            shapes[p + name + ".weight"] = (d, d)
            shapes[p + name + ".bias"] = (d,)
        shapes[p + "intermediate.dense.weight"] = (i, d)
        shapes[p + "intermediate.dense.bias"] = (i,)
        shapes[p + "output.dense.weight"] = (d, i)
        shapes[p + "output.dense.bias"] = (d,)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[p + name + ".weight"] = (d,)
            shapes[p + name + ".bias"] = (d,)
    if head:
        shapes["classifier.weight"] = (config.num_labels, d)
        shapes["classifier.bias"] = (config.num_labels,)
    return shapes


def init_params(config: BertConfig, rng: np.random.Generator, dtype: Any = np.float32, *, head: bool = True) -> Params:
    """Random BERT initialisation: weights N(0, 0.02^2), biases 0, LayerNorm gamma 1 (BERT)."""
    params = {}
    for name, shape in param_shapes(config, head=head).items():
        if "LayerNorm.weight" in name:
            params[name] = np.ones(shape, dtype)
        elif name.endswith(".bias"):
            params[name] = np.zeros(shape, dtype)
        else:
            params[name] = rng.normal(0.0, 0.02, size=shape).astype(dtype)
    return params


def check_params(config: BertConfig, params: Params, *, head: bool | None = None) -> None:
    """Raise naming the first tensor that is missing or whose shape does not fit `config`."""
    if head is None:
        head = "classifier.weight" in params
    for name, shape in param_shapes(config, head=head).items():
        if name not in params:
            raise KeyError(f"parameter {name!r} is missing (expected shape {shape})")
        if tuple(params[name].shape) != shape:
            raise ValueError(
                f"parameter {name!r} has shape {tuple(params[name].shape)} but the config needs {shape}"
            )


def sub_params(params: Params, prefix: str) -> Params:
    """The tensors under `prefix`, with the prefix stripped (checkpoint names stay readable)."""
    return {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}


@dataclass
class ForwardResult:
    """What forward returns: every hidden state, score and probability matrix, pooled output, logits."""

    hidden_states: list[np.ndarray]  # num_layers + 1 entries [B, n, d]: embeddings output first
    attention_scores: list[np.ndarray]  # per layer [B, h, n, n], Q K^T / sqrt(dh) before the variant
    attention_probs: list[np.ndarray]  # per layer [B, h, n, n]
    pooled: np.ndarray  # [B, d]
    logits: np.ndarray | None  # [B, num_labels], None without a classifier
    cache: dict[str, Any] = field(repr=False, default_factory=dict)


def forward(
    params: Params,
    config: BertConfig,
    input_ids: np.ndarray,
    token_type_ids: np.ndarray | None = None,
    attention_mask: np.ndarray | None = None,
    *,
    dropout: float = 0.0,
    rng: np.random.Generator | None = None,
    softmax_share: float = 0.0,
) -> ForwardResult:
    """BERT encoder (post-LN) + pooling + linear head (BERT; DESIGN.md section 6).

    input_ids, token_type_ids, attention_mask: [B, n] ints (mask 1 = real token).
    dropout > 0 (training, with rng): BERT's dropout on the embeddings output, attention
    probabilities, both sublayer outputs before their residual, and the pooled output.
    softmax_share w > 0 (ours, distillation only: ours.softmax_share): every layer's attention is
    w softmax + (1 - w) the config's variant; 0, every saved or deployed model, is the variant alone.
    """
    if not 0.0 <= softmax_share <= 1.0:
        raise ValueError(f"softmax_share is the softmax weight of annealed attention, in [0, 1]; got {softmax_share}")
    input_ids = np.asarray(input_ids)
    bsz, n = input_ids.shape
    if n > config.max_position_embeddings:
        raise ValueError(f"sequence length {n} exceeds max_position_embeddings {config.max_position_embeddings}")
    types = np.zeros_like(input_ids) if token_type_ids is None else np.asarray(token_type_ids)
    mask = np.ones_like(input_ids) if attention_mask is None else np.asarray(attention_mask)
    dtype = params["embeddings.word_embeddings.weight"].dtype
    maskf = mask.astype(dtype)  # [B, n]

    drop = None
    if dropout > 0.0:
        if rng is None:
            raise ValueError("dropout > 0 needs an rng (a seeded numpy Generator)")
        drop = L.Dropout(dropout, rng)
    x, emb_cache = L.embeddings_forward(input_ids, types, sub_params(params, "embeddings."), config.layer_norm_eps)
    emb_mask = None if drop is None else drop.mask(x.shape, x.dtype)
    if emb_mask is not None:
        x = x * emb_mask
    hidden, scores, probs, layer_caches = [x], [], [], []
    for layer in range(config.num_hidden_layers):
        w = sub_params(params, f"encoder.layer.{layer}.")
        a, attn_cache = L.attention_forward(x, maskf, w, config, drop, softmax_share)  # [B, n, d]
        x, ffn_cache = L.ffn_forward(a, w, config, drop)  # [B, n, d]
        hidden.append(x)
        scores.append(attn_cache["scores"])
        probs.append(attn_cache["probs"])
        layer_caches.append((attn_cache, ffn_cache))
    pooled = L.pool(x, maskf, config.pooling)  # [B, d]
    pool_mask = None if drop is None else drop.mask(pooled.shape, pooled.dtype)
    head_in = pooled if pool_mask is None else pooled * pool_mask
    logits = None
    if "classifier.weight" in params:
        logits = L.linear(head_in, params["classifier.weight"], params["classifier.bias"])  # [B, labels]
    cache = {"emb": emb_cache, "layers": layer_caches, "mask": maskf, "pooled": pooled, "head_in": head_in,
             "emb_mask": emb_mask, "pool_mask": pool_mask}
    return ForwardResult(hidden, scores, probs, pooled, logits, cache)


def layer_forward(w: Params, config: BertConfig, x: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """One encoder layer (attention block, then FFN block) on hidden states x [B, n, d]; mask [B, n] 0/1 (BERT).

    w: the layer's parameters without the "encoder.layer.<i>." prefix (attention.self.query.weight, ...).
    The layer forward() runs for each of its layers, offered alone for references of one layer.
    """
    maskf = np.asarray(attention_mask).astype(x.dtype)
    a, _ = L.attention_forward(x, maskf, w, config)
    y, _ = L.ffn_forward(a, w, config)
    return y


def backward(
    params: Params,
    config: BertConfig,
    result: ForwardResult,
    d_logits: np.ndarray | None = None,
    *,
    d_pooled: np.ndarray | None = None,
    d_hidden_states: list[np.ndarray | None] | None = None,
    d_attention_scores: list[np.ndarray | None] | None = None,
) -> Params:
    """Gradients of every parameter from gradients of the outputs (manual reverse mode).

    d_logits [B, labels]; d_pooled [B, d]; d_hidden_states: num_layers + 1 entries (or None);
    d_attention_scores: num_layers entries (or None), the terms of distillation stage 1.
    Returns a dict with the same names as `params` (zeros where no gradient flows).
    """
    cache = result.cache
    last = result.hidden_states[-1]
    dtype = last.dtype
    grads: Params = {}
    dpooled = np.zeros_like(result.pooled) if d_pooled is None else d_pooled.astype(dtype, copy=False)
    if d_logits is not None:
        dp, grads["classifier.weight"], grads["classifier.bias"] = L.linear_backward(
            d_logits.astype(dtype, copy=False), cache.get("head_in", result.pooled), params["classifier.weight"])
        if cache.get("pool_mask") is not None:
            dp = dp * cache["pool_mask"]
        dpooled = dpooled + dp
    elif "classifier.weight" in params:
        grads["classifier.weight"] = np.zeros_like(params["classifier.weight"])
        grads["classifier.bias"] = np.zeros_like(params["classifier.bias"])
    dx = L.pool_backward(dpooled, last.shape, cache["mask"], config.pooling)  # [B, n, d]
    dh = d_hidden_states or [None] * (config.num_hidden_layers + 1)
    ds = d_attention_scores or [None] * config.num_hidden_layers
    for layer in reversed(range(config.num_hidden_layers)):
        if dh[layer + 1] is not None:
            dx = dx + dh[layer + 1]
        attn_cache, ffn_cache = cache["layers"][layer]
        da, g_ffn = L.ffn_backward(dx, ffn_cache)
        dx, g_attn = L.attention_backward(da, attn_cache, ds[layer])
        p = f"encoder.layer.{layer}."
        grads.update({p + k: v for k, v in (g_ffn | g_attn).items()})
    if dh[0] is not None:
        dx = dx + dh[0]
    if cache.get("emb_mask") is not None:
        dx = dx * cache["emb_mask"]
    grads.update({"embeddings." + k: v for k, v in L.embeddings_backward(dx, cache["emb"]).items()})
    return grads
