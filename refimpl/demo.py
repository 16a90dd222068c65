"""`refimpl demo`: the main job, end to end on embedded defaults (DESIGN.md section 2).

1. the shipped small models in plaintext: the Softmax + GELU model (NEXUS's) and its
   2Quad-freeDiv + Quad student (freeDiv's);
2. ABY3 secure inference (three parties in-process) of the student and of the Softmax + GeLU
   baseline: predictions, agreement, bytes, rounds, LAN/WAN estimates, speedup;
3. NEXUS encrypted inference (a client and a server exchanging bytes only, real bootstrapping,
   never a decrypt-and-re-encrypt oracle) of the small model and of the student;
4. a closing summary table.
`--sentence TEXT` classifies your own text instead of the built-in SST-2 sentences.
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np
from tqdm import tqdm

from refimpl.aby3.model import secure_classify
from refimpl.bert import shipped
from refimpl.cli.common import write_json
from refimpl.cli.progress import Bars, progress_enabled, width_options
from refimpl.errors import UserError
from refimpl.nexus.protocol.client import Client
from refimpl.nexus.protocol.models import load_model
from refimpl.nexus.protocol.server import Server
from refimpl.nexus.protocol.transport import LocalTransport
from refimpl.nexus.protocol.wire import resolve_params

TEACHER, STUDENT = "sst2-small-softmax-gelu", "sst2-small-2quad-freediv-quad"
# a few SST-2 dev sentences (GLUE; short ones, so the encrypted part fits the demo's time)
DEFAULT_SENTENCES = (
    "a gripping, beautifully acted film",
    "the plot is nothing but boilerplate clichés from start to finish",
    "it 's a charming and often affecting journey",
)
# NEXUS: parameter set and models of the full run (refimpl.nexus.protocol.wire.resolve_params); the
# quick run (tests) sends the protocol's small stand-in model through a toy ring instead
NEXUS_PARAMS = "deep-2^12-19"
NEXUS_QUICK = ("toy-2^10-deep", ("toy",))
NEXUS_MAX_TOKENS = 12
log = logging.getLogger("refimpl.demo")


def bar(total: int, desc: str) -> tqdm:
    """A progress bar on stderr (results stay on stdout): only on a terminal, never with `refimpl -q`."""
    return tqdm(total=total, desc=f"    {desc}", file=sys.stderr, leave=False, disable=not progress_enabled(),
                **width_options())


def _label(logits) -> str:
    return ("negative", "positive")[int(np.argmax(logits))]


def plaintext_step(sentences) -> dict | str:
    """Plaintext logits of both shipped models (refimpl.bert.model.forward, float64)."""
    missing = [m for m in (TEACHER, STUDENT) if not shipped.available(m)]
    if missing:
        return f"the shipped models {missing} are missing: rebuild them with `refimpl ship --glue-dir DIR`"
    out = {}
    with bar(2 * len(sentences), "plaintext") as b:
        for name in (TEACHER, STUDENT):
            m = shipped.load(name)
            logits = []
            for s in sentences:
                logits.append(shipped.predict(m, s))
                b.update()
            out[name] = {"model": m, "logits": logits, "dev_accuracy": m.meta.get("dev_accuracy")}
    return out


def aby3_step(models: dict, sentences, seed: int = 0) -> dict:
    """Secure inference of both models per sentence (three parties in-process, Z_2^64, f = 18)."""
    out = {}
    b = bar(2 * len(sentences), "ABY3 secure inference")
    for name in (STUDENT, TEACHER):
        m = models[name]["model"]
        rows = []
        for s, plain in zip(sentences, models[name]["logits"]):
            ids, mask = shipped.encode(m, s)
            b.set_postfix_str(name)
            r = secure_classify(m.config, m.params, ids, mask, insecure_seed=seed)
            b.update()
            r["plain"] = np.asarray(plain)
            r["agree"] = int(np.argmax(r["logits"])) == int(np.argmax(plain))
            r["max_err"] = float(np.max(np.abs(r["logits"] - plain)))
            rows.append(r)
        out[name] = rows
    b.close()
    return out


def nexus_step(sentence: str, params: str, models=(TEACHER, STUDENT)) -> dict:
    """One encrypted query per model: a NEXUS client and server in one process, bytes only
    between them (refimpl.nexus.protocol); the server holds evaluation keys only. The demo asks
    for the logits (reveal_logits) to compare them with the plaintext model; a deployment
    returns the Argmax selection vector (`refimpl nexus serve` without --reveal-logits)."""
    out = {}
    b = bar(3 * len(models), "NEXUS encrypted inference")
    inner = Bars(enabled=not b.disable, prefix="    ")  # key generation, the forward, each bootstrap
    for name in models:
        t0 = time.perf_counter()
        b.set_postfix_str(f"{name}: client keys")
        server = Server(model=name, params=params, log=log.info, reveal_logits=True,
                        progress=inner)  # its plan and timings with -v
        client = Client(LocalTransport(server.session()), model=name, params=params, seed=1, reveal_logits=True,
                        progress=inner)
        b.update()
        b.set_postfix_str(f"{name}: encrypted query (keys, forward with bootstrapping)")
        r = client.classify(sentence)
        b.update()
        b.set_postfix_str(f"{name}: plaintext reference")
        ref = load_model(name).reference_logits(sentence)
        b.update()
        r["reference"] = ref
        r["wall_s"] = time.perf_counter() - t0
        out[name] = r
    inner.close()
    b.close()
    return out


def trim_sentence(sentence: str, max_tokens: int) -> str:
    """The first words of a sentence, so that the encrypted run stays within the demo's time."""
    words = sentence.split()
    return " ".join(words[: max(1, max_tokens - 4)])


def main(sentence: str | None = None, quick: bool = False, json_path: str | None = None) -> int:
    """The demo; json_path: also write the summary (and each step's logits) as one JSON document."""
    if sentence is not None and not sentence.strip():
        raise UserError("demo: --sentence is empty; give some text, or leave the option out for the built-in sentences")
    t_start = time.perf_counter()
    sentences = [sentence] if sentence else list(DEFAULT_SENTENCES[: 1 if quick else 3])
    print("refimpl demo")
    print("=" * 78)
    summary = []

    print("[1] plaintext: the shipped small models (2 layers of MiniLM, hidden 384, SST-2)")
    plain = plaintext_step(sentences)
    if isinstance(plain, str):
        print(f"    skipped: {plain}")
        return 1
    for name in (TEACHER, STUDENT):
        acc = plain[name]["dev_accuracy"]
        print(f"    {name:<32s} SST-2 dev accuracy {100 * acc:.1f} %" if acc else f"    {name}")
    for i, s in enumerate(sentences):
        t, st = plain[TEACHER]["logits"][i], plain[STUDENT]["logits"][i]
        print(f"    {s!r}: teacher {_label(t)} {np.round(t, 2)}, student {_label(st)} {np.round(st, 2)}")

    print("[2] ABY3 secure inference: 3 parties (semi-honest, honest majority), Z_2^64, 18 fraction bits;")
    print("    the model owner shares the weights, the client its one-hot tokens; only the client sees the logits")
    sec = aby3_step(plain, sentences)
    for name in (STUDENT, TEACHER):
        rows = sec[name]
        agree = sum(r["agree"] for r in rows)
        mb = np.mean([r["bytes"] for r in rows]) / 2**20
        rounds = int(np.mean([r["rounds"] for r in rows]))
        lan, wan = np.mean([r["lan_s"] for r in rows]), np.mean([r["wan_s"] for r in rows])
        err = max(r["max_err"] for r in rows)
        print(f"    {name:<32s} agrees with plaintext {agree}/{len(rows)}, max logit error {err:.1e}")
        print(f"    {'':<32s} per sentence {mb:6.1f} MiB, {rounds} rounds, LAN {lan:.2f} s, WAN {wan:.1f} s (estimates)")
        summary.append(("ABY3", name, f"{agree}/{len(rows)}", f"{err:.1e}", f"{mb:.1f} MiB, {rounds} rounds",
                        f"LAN {lan:.2f} s / WAN {wan:.1f} s"))
    ratio = {k: np.mean([r[k] for r in sec[TEACHER]]) / np.mean([r[k] for r in sec[STUDENT]])
             for k in ("bytes", "rounds", "lan_s", "wan_s")}
    print(f"    2Quad-freeDiv + Quad against Softmax + GeLU: {ratio['bytes']:.1f}x fewer bytes, {ratio['rounds']:.1f}x "
          f"fewer rounds, {ratio['wan_s']:.1f}x faster on the WAN, {ratio['lan_s']:.2f}x on the LAN, where this")
    print("    shared machine's compute time dominates a short sentence; at BERT-base size, n = 128, see "
          "`refimpl reproduce speed` (the paper: 2.26x)")

    params, nexus_models = NEXUS_QUICK if quick else (NEXUS_PARAMS, (TEACHER, STUDENT))
    text = trim_sentence(sentences[0], NEXUS_MAX_TOKENS)
    p, _ = resolve_params(params)
    secure = not p.insecure
    print(f"[3] NEXUS encrypted inference (RNS-CKKS, real bootstrapping) on {text!r}")
    if not secure:
        print(f"    INSECURE: parameter set {params} is a small ring chosen to fit the demo's minutes on 2 cores; "
              "the 128-bit set is `refimpl nexus serve --params 128-2^16-dense19`")
    print(f"    {p.security_note}")
    if quick:
        print("    (quick run: the protocol's small stand-in model instead of the shipped BERTs)")
    enc = nexus_step(text, params, models=nexus_models)
    for name, r in enc.items():
        ref = r["reference"]
        approx, exact = np.asarray(ref["model"]), np.asarray(ref["exact"])
        err = float(np.max(np.abs(np.asarray(r["logits"]) - approx)))
        b = r["bytes"]
        agree = r["label"] == _label(approx)
        print(f"    {name:<32s} {r['label']} {np.round(r['logits'], 2)} (plaintext, same approximations: "
              f"{_label(approx)} {np.round(approx, 2)}; exact model {np.round(exact, 2)}), error {err:.1e}")
        print(f"    {'':<32s} client->server {b['query'] / 2**20:.1f} MiB (keys {b['keys'] / 2**20:.0f} MiB once), "
              f"server->client {b['result'] / 2**20:.2f} MiB; {r['bootstraps']} bootstraps; "
              f"server {r['seconds']['server_forward']:.0f} s")
        if ref.get("range_error"):
            print(f"    {'':<32s} WARNING: the sentence leaves the model's calibrated ranges ({ref['range_error']}); "
                  "the approximations, encrypted or not, may be far from the exact model")
        summary.append(("NEXUS", name, f"{int(agree)}/1", f"{err:.1e}",
                        f"{(b['query'] + b['result']) / 2**20:.1f} MiB, {r['bootstraps']} bootstraps",
                        f"{r['seconds']['total']:.0f} s ({'128-bit' if secure else 'INSECURE ring'})"))

    print("[4] summary")
    head = ("protocol", "model", "agree", "max err", "cost per query", "time")
    widths = [max(len(str(row[i])) for row in [head, *summary]) for i in range(len(head))]
    for row in [head, tuple("-" * w for w in widths), *summary]:
        print("    " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    print(f"    demo time {time.perf_counter() - t_start:.0f} s")
    write_json(json_path, {
        "sentences": sentences, "quick": quick, "nexus_params": params, "nexus_sentence": text,
        "plaintext_logits": {name: [np.asarray(v).tolist() for v in plain[name]["logits"]] for name in (TEACHER, STUDENT)},
        "aby3_logits": {name: [np.asarray(r["logits"]).tolist() for r in rows] for name, rows in sec.items()},
        "nexus_logits": {name: r["logits"] for name, r in enc.items()},
        "summary": [dict(zip(head, row)) for row in summary], "seconds": round(time.perf_counter() - t_start, 1)})
    return 0
