"""Classify a sentence with a shipped model (refimpl.bert.load_model: weights, tokenizer, labels).

Run: python examples/classify_sentence.py [--fast] [SENTENCE]   (fast either way)
"""
import sys
from refimpl.bert import load_model

model = load_model("sst2-small-softmax-gelu")  # a shipped name or a model directory
sentence = next((a for a in sys.argv[1:] if not a.startswith("--")), "a gorgeous, witty, seductive movie")
label, probs = model(sentence)
print(f"{sentence!r}: {label} (p = {probs.max():.3f}; labels {model.labels})")
