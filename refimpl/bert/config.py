"""BertConfig: the architecture, attention variant, activation and head of a model.

The defaults are all-MiniLM-L6-v2 (DESIGN.md section 6) with softmax attention, exact GELU
and a [CLS] classifier head.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from refimpl.bert.functional import FREEDIV, QUAD_C, VARIANTS

CONFIG_ACTIVATIONS = ("gelu", "gelu_poly4", "quad", "relu")
POOLINGS = ("cls", "mean")
HF_KEYS = ("model_type", "id2label", "label2id")  # Hugging Face config.json keys our format also carries


def labels_from_json(text: str, num_labels: int) -> tuple[str, ...]:
    """The class names of a config.json (its id2label), else Hugging Face's LABEL_0, LABEL_1, ..."""
    id2label = json.loads(text).get("id2label") or {}
    return tuple(str(id2label.get(str(i), f"LABEL_{i}")) for i in range(num_labels))


@dataclass(frozen=True)
class BertConfig:
    """Architecture and variant of a BERT encoder with a classification/regression head (BERT; MPCFormer)."""

    vocab_size: int = 30522  # bert-base-uncased WordPiece vocabulary
    hidden_size: int = 384  # MiniLM-L6
    num_hidden_layers: int = 6  # MiniLM-L6
    num_attention_heads: int = 12  # head dim 32
    intermediate_size: int = 1536  # 4 x hidden
    max_position_embeddings: int = 512  # BERT
    type_vocab_size: int = 2  # sentence A / B
    layer_norm_eps: float = 1e-12  # BERT's LayerNorm epsilon
    pad_token_id: int = 0  # [PAD]
    attention: str = "softmax"  # one of functional.VARIANTS
    activation: str = "gelu"  # gelu (exact erf), gelu_poly4 (NEXUS), quad (MPCFormer), relu
    quad_c: float = QUAD_C  # c of 2Quad, (s + c)^2; spec freediv.quad_c
    freediv_a: float | None = None  # f(n) = a n^b; None: the paper's fit from refimpl/constants.toml
    freediv_b: float | None = None
    pooling: str = "cls"  # [CLS] hidden state or masked mean, no tanh pooler (DESIGN.md section 6)
    num_labels: int = 2  # classes; 1 means a regressor (STS-B)

    def __post_init__(self) -> None:
        """Validate once (STYLE.md section 5): a wrong name or shape fails here, not deep inside."""
        if self.attention not in VARIANTS:
            raise ValueError(f"attention {self.attention!r} is not one of {VARIANTS}")
        if self.activation not in CONFIG_ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not one of {CONFIG_ACTIVATIONS}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling {self.pooling!r} is not one of {POOLINGS}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not a multiple of num_attention_heads "
                f"{self.num_attention_heads}"
            )
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size", "num_labels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def head_dim(self) -> int:
        """d_head = hidden / heads (MiniLM: 32)."""
        return self.hidden_size // self.num_attention_heads

    @property
    def freediv(self) -> tuple[float, float] | None:
        """(a, b) of f(n) = a n^b for the freeDiv variants, else None (freeDiv)."""
        if self.attention not in FREEDIV:
            return None
        a0, b0 = FREEDIV[self.attention]
        return (a0 if self.freediv_a is None else self.freediv_a,
                b0 if self.freediv_b is None else self.freediv_b)

    def replace(self, **changes: Any) -> BertConfig:
        """A new config with `changes` (the student: the teacher's config with variants swapped)."""
        return dataclasses.replace(self, **changes)

    def to_json(self, labels: tuple[str, ...] | None = None) -> str:
        """Our JSON config (saved beside model.safetensors); freeDiv a, b written out when used.

        Also Hugging Face's `model_type` and, given the class names, `id2label` / `label2id`
        (read back by labels_from_json; from_json ignores them)."""
        d = dataclasses.asdict(self)
        if self.freediv is not None:
            d["freediv_a"], d["freediv_b"] = self.freediv
        hf: dict[str, Any] = {"model_type": "bert"}
        if labels is not None:
            if len(labels) != self.num_labels:
                raise ValueError(f"{len(labels)} labels for num_labels = {self.num_labels}")
            hf["id2label"] = {str(i): name for i, name in enumerate(labels)}
            hf["label2id"] = {name: i for i, name in enumerate(labels)}
        return json.dumps({"format": "refimpl-bert", **hf, **d}, indent=2)

    @classmethod
    def from_json(cls, text: str) -> BertConfig:
        """Inverse of to_json; also accepts a Hugging Face BertModel config.json (HF names)."""
        d = json.loads(text)
        if d.pop("format", None) == "refimpl-bert":
            for key in HF_KEYS:  # Hugging Face's names beside ours (older files lack them)
                d.pop(key, None)
            share = d.pop("softmax_share", 0.0)  # a training setting (ours.softmax_share), not the model's
            if share:
                raise ValueError(f"config.json holds softmax_share = {share}, a distillation-time attention blend "
                                 "(ours): a saved model runs its attention variant alone")
            return cls(**d)
        return cls.from_hf(d)

    @classmethod
    def from_hf(cls, hf: dict[str, Any], **overrides: Any) -> BertConfig:
        """From a Hugging Face BERT config.json dict (exact GELU only: hidden_act must be 'gelu')."""
        if hf.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"hidden_act {hf['hidden_act']!r}: only the exact 'gelu' is supported")
        if hf.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("only absolute position embeddings are supported")
        keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "intermediate_size", "max_position_embeddings", "type_vocab_size",
                "layer_norm_eps", "pad_token_id")
        return cls(**{k: hf[k] for k in keys if k in hf}, **overrides)
