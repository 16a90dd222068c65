"""`load_model(name_or_path)`: a BERT classifier with its tokenizer and labels, ready for a sentence (ours).

The facade in the style of Hugging Face's pipelines over refimpl.bert.{weights, model,
tokenizer, shipped}: a shipped model's name (refimpl.bert.shipped.NAMES) or a model directory
holding model.safetensors, config.json (our format, or Hugging Face's) and vocab.txt. Class
names come from config.json's `id2label` (Hugging Face's key), else LABEL_0, LABEL_1, ...

    model = load_model("sst2-small-softmax-gelu")
    model("a gorgeous, witty, seductive movie")     # ('positive', array([0.002, 0.998]))
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np

from refimpl.bert import weights
from refimpl.bert.config import BertConfig, labels_from_json
from refimpl.bert.model import check_params, forward
from refimpl.bert.shipped import resolve
from refimpl.bert.tokenizer import BertTokenizer


@dataclass(frozen=True)
class Classifier:
    """A BERT sequence classifier: config, float32 parameters, tokenizer, class names (ours)."""

    name: str
    config: BertConfig
    params: dict[str, np.ndarray]
    tokenizer: BertTokenizer
    labels: tuple[str, ...]

    def encode(self, sentence: str, max_length: int = 128) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids [n], attention_mask [n]) of [CLS] sentence [SEP], no padding."""
        if not isinstance(sentence, str):
            raise TypeError(f"sentence must be a str, got {type(sentence).__name__}")
        ids, _ = self.tokenizer.encode(sentence, max_length=max_length)
        ids_arr = np.array(ids, np.int64)
        return ids_arr, np.ones_like(ids_arr)

    def logits(self, sentence: str) -> np.ndarray:
        """Plaintext logits [num_labels] of one sentence (refimpl.bert.model.forward)."""
        ids, mask = self.encode(sentence)
        return forward(self.params, self.config, ids[None], None, mask[None]).logits[0]

    def __call__(self, sentence: str) -> tuple[str, np.ndarray]:
        """(the predicted label, the class probabilities) of one sentence."""
        z = self.logits(sentence).astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        return self.labels[int(np.argmax(p))], p


def load_model(name_or_path: str | Path) -> Classifier:
    """A shipped model by name, or a model directory (our config.json or Hugging Face's) with vocab.txt."""
    if not isinstance(name_or_path, (str, PathLike)):
        raise TypeError(f"load_model takes a shipped model's name or a model directory, got {type(name_or_path).__name__}")
    d = resolve(name_or_path)
    config, params = weights.load(d, dtype=np.float32)
    if "classifier.weight" not in params:
        raise ValueError(f"{d} holds no classification head (classifier.weight): not a sequence classifier")
    check_params(config, params, head=True)  # a config that does not fit the weights fails here, not at the first sentence
    if not (d / "vocab.txt").is_file():
        raise FileNotFoundError(f"{d} has no vocab.txt (the WordPiece vocabulary the tokenizer needs)")
    cfg_file = next((d / f for f in (weights.CONFIG_FILE, "config.json") if (d / f).exists()))
    labels = labels_from_json(cfg_file.read_text(), config.num_labels)
    return Classifier(Path(str(name_or_path)).name, config, params, BertTokenizer(d / "vocab.txt"), labels)


__all__ = ["Classifier", "load_model"]
