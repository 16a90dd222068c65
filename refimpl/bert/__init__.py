"""The plaintext BERT: config, numpy forward and manual backward, weights, tokenizer, GLUE data."""

from refimpl.bert.pretrained import Classifier, load_model  # the facade (ours)

__all__ = ["Classifier", "load_model"]
