"""The plaintext BERT: config, numpy forward and manual backward, weights, tokenizer, GLUE data.

    config, functional, layers, model   the architecture, the float64 definitions of every
                                        attention variant and activation, the layers, the model
    weights, tokenizer, glue, shipped   checkpoints, WordPiece, GLUE readers, the shipped models
    pretrained                          ours: load_model, a classifier ready for a sentence
    train, optim                        fine-tuning (AdamW)
    distill                             MPCFormer's two-stage distillation; ours.py our additions
    freediv                             freeDiv's attention denominator f(n) = a n^b

Start with model (the forward), or load_model to run one.
"""

from refimpl.bert.pretrained import Classifier, load_model  # the facade (ours)

__all__ = ["Classifier", "load_model"]
