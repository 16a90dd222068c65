"""The shipped small SST-2 models: names, directory, loading (built by `refimpl ship`, refimpl.reproduce.ship).

Two models live under refimpl/models/<name>/ (model.safetensors in float16, config.json
= BertConfig.to_json, vocab.txt of the pruned vocabulary, meta.json with the provenance):

- sst2-small-softmax-gelu: 2 layers of all-MiniLM-L6-v2 (hidden 384, 12 heads,
  intermediate 1536), Softmax + exact GELU, [CLS] linear head (no tanh pooler). What NEXUS
  runs, as in its paper.
- sst2-small-2quad-freediv-quad: its 2Quad-freeDiv + Quad student (MPCFormer two-stage
  distillation, freeDiv's f(n) = a n^b fitted on the small model). What the freeDiv paper
  runs under ABY3.

How `refimpl ship --glue-dir DIR` makes them (refimpl/reproduce/ship.py, DESIGN.md section 6; every step seeded and
checkpointed under --run-dir, so an interrupted build resumes):
1. vocabulary: the MiniLM WordPiece ids of every SST-2 train + dev sentence plus the
   specials; the embedding table keeps those rows (WordPiece is greedy longest-match, so
   these sentences tokenize to the same pieces);
2. teacher: the 6-layer MiniLM + a [CLS] head fine-tuned on a fixed SST-2 training subset
   (the default-recipe teacher row of `refimpl reproduce accuracy`, same checkpoint; its
   result goes to results/accuracy/teacher-shipped_SST-2.json, never over the table's
   teacher_SST-2.json);
3. small model: layer map student 0 <- teacher 0, student 1 <- teacher 1, head copied,
   then trained by soft cross-entropy (T = 1) on the teacher's logits (MPCFormer stage 2);
4. student: the small model's weights with 2Quad-freeDiv attention and Quad activation, a, b
   fitted by `freediv.fit` on the small model run with 2Quad, then stage 1 (score + hidden
   MSE, 1:1) and stage 2 (soft CE) from the small model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from refimpl.bert import weights
from refimpl.bert.config import BertConfig
from refimpl.bert.model import forward
from refimpl.bert.tokenizer import BertTokenizer
from refimpl.errors import UserError

NAMES = ("sst2-small-softmax-gelu", "sst2-small-2quad-freediv-quad")
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
TEACHER_RESULT = "teacher-shipped_SST-2.json"  # not teacher_SST-2.json: that is the accuracy table's teacher
TEACHER_NOTE = "the shipped models' teacher (refimpl/models/*/meta.json)"
FILES = ("model.safetensors", "config.json", "vocab.txt")
MAX_BYTES = 20 * 2**20  # the size budget: ~20 MB per model
FIXTURE_SENTENCES = (  # predictions recorded in meta.json, checked by tests/bert/test_shipped.py
    "it 's a charming and often affecting journey . ",
    "unflinchingly bleak and desperate ",
    "the acting , costumes , music , cinematography and sound are all astounding given the production 's austere locales . ",
    "a gorgeous , witty , seductive movie .",
    "the movie is a disaster from start to finish .",
)


@dataclass(frozen=True)
class ShippedModel:
    """A shipped model: config, float32 parameters, tokenizer over its pruned vocabulary, provenance."""

    name: str
    config: BertConfig
    params: dict[str, np.ndarray]
    tokenizer: BertTokenizer
    meta: dict


def model_dir(name: str) -> Path:
    """refimpl/models/<name>; the name must be one of NAMES."""
    if name not in NAMES:
        raise UserError(f"unknown shipped model {name!r}; expected one of {NAMES} (or a model directory)")
    return MODELS_DIR / name


def available(name: str) -> bool:
    """True when all files of the model are present."""
    d = model_dir(name)
    return all((d / f).exists() for f in FILES)


def resolve(model: str | Path) -> Path:
    """The directory of `model`: a shipped model's name (NAMES) or a model directory, checked to exist.

    A name that is also an existing directory is that directory. Raises FileNotFoundError with one
    clear line for a shipped model not built yet or a directory that does not exist.
    """
    path = Path(model)
    if path.is_dir():
        return path
    if str(model) in NAMES:
        d = model_dir(str(model))
        if not available(str(model)):
            raise FileNotFoundError(f"shipped model {model!r} is not built in {d}: build it with "
                                    f"`refimpl ship --glue-dir <GLUE directory holding SST-2/>`")
        return d
    raise FileNotFoundError(f"model {str(model)!r} is neither a model directory nor a shipped model {NAMES}")


def load(name: str) -> ShippedModel:
    """Read refimpl/models/<name>/{model.safetensors, config.json, vocab.txt} (weights as float32)."""
    d = model_dir(name)
    missing = [f for f in FILES if not (d / f).exists()]
    if missing:
        raise FileNotFoundError(
            f"shipped model {name!r} lacks {missing} in {d}: build it with "
            f"`refimpl ship --glue-dir <GLUE directory holding SST-2/>`")
    config, params = weights.load(d, dtype=np.float32)
    meta_path = d / "meta.json"
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    return ShippedModel(name, config, params, BertTokenizer(d / "vocab.txt"), meta)


def encode(model: ShippedModel, sentence: str, max_length: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids [n], attention_mask [n]) of [CLS] sentence [SEP], truncated to max_length, no padding."""
    if not isinstance(sentence, str):
        raise TypeError(f"sentence must be a str, got {type(sentence).__name__}")
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2 for [CLS] and [SEP], got {max_length}")
    ids, _ = model.tokenizer.encode(sentence, max_length=max_length)
    ids_arr = np.array(ids, np.int64)
    return ids_arr, np.ones_like(ids_arr)


def predict(model: ShippedModel, sentence: str) -> np.ndarray:
    """Plaintext logits [num_labels] of one sentence (refimpl.bert.model.forward)."""
    ids, mask = encode(model, sentence)
    return forward(model.params, model.config, ids[None], None, mask[None]).logits[0]
