"""`refimpl reproduce nexus`: NEXUS bandwidth and time, measured through the real protocol.

1. Measured: each model runs in process through refimpl.nexus.protocol (Client and Server
   exchange the same frames as over TCP; a LocalTransport skips only the socket), with real
   bootstrapping: client-to-server bytes (keys once per client; the query compressed, and
   slot-packed for comparison), server-to-client bytes (dropped to level 0, and at the level
   the forward left), time per block (the forward's trace), end to end, bootstraps, peak RSS.
2. Extrapolated: BERT-base at n = 128 (768 features) on the 128-bit bootstrapping set, from
   the serialized sizes (`ciphertext_nbytes` etc., tested equal to real bytes), printed beside
   the paper's 164 MB (refimpl/constants.toml [nexus.published]).
3. `refimpl reproduce nexus-bertbase`: BERT-base at n = 128 on the 128-bit set (refimpl.experiments.bertbase): the level
   placement's bootstraps per layer, one timed instance of each block kind, derived layer and
   model time beside the paper's; `nexus-bertbase --table FILE` prints the table of a stored run,
   `nexus-bertbase --merge A B --json OUT` joins runs of disjoint models (one process per model),
   `nexus-bertbase --weigh-by FILE` times the time-weighted plan (ours) with FILE's seconds per limb.

The first output line says INSECURE when an insecure ring is used.

Reference: NEXUS §6 (Zhang et al., NDSS 2025): BERT-base 37.3 s on an A100, 164 MB.
"""

from __future__ import annotations

import json
import platform
import time
from collections import Counter

import numpy as np

from ..bert import shipped
from ..bert.config import BertConfig
from ..ckks.bootstrap.bootstrapper import Bootstrapper
from ..ckks.evaluator import Evaluator
from ..ckks.keys import galois_element
from ..cli.common import add_json
from ..cli.experiments import bertbase_arguments
from ..cli.nexus import tsv_sentences
from ..cli.progress import Bars
from ..constants import C
from ..experiments.bertbase import run as bertbase_run
from ..measure import peak_rss_mib
from ..nexus import protocol as P
from ..nexus.bert.layout import rotation_steps
from ..nexus.compression import subs_elements
from ..nexus.matmul import chunk_counts
from ..progress import or_silent

PUBLISHED = C["nexus"]["published"]
SECURE_PARAMS = "128-2^16-dense"
QUICK_PARAMS = "toy-2^10-deep"
QUICK_MODELS = ("toy",)  # the protocol's stand-in model: one affine layer, GELU, a classifier, Argmax
QUICK_OMITS = (  # said in the output of --quick
    "quick mode omits: the shipped BERT models, whose encrypted forward takes minutes per sentence "
    "(`--quick --models sst2-small-2quad-freediv-quad` runs one on the toy ring; without --quick: 3 sentences x "
    "2 models), the 128-bit ring for the measured rows (toy-2^10-deep is insecure; the BERT-base extrapolation "
    "below is for the 128-bit set either way) and the sentences after the first"
)
SENTENCES = (  # short (at most 8 tokens with [CLS] and [SEP]): the encrypted BERT's cost grows with n_pad
    "a gorgeous , witty movie .",
    "the plot is dull .",
    "an often funny comedy .",
)
BERT_BASE = dict(n=128, d=768, layers=12, heads=12, num_labels=2)
MB = 1e6


def _peak_rss_gib() -> float:
    return peak_rss_mib() / 1024


def available_models() -> list[str]:
    """The shipped models when they exist, else the toy."""
    names = [n for n in shipped.NAMES if shipped.available(n)]
    return names or ["toy"]


def measure(model: str, params: str, sentences, seed: int = 1, calibration=None, progress=None) -> dict:
    """Run the protocol in process on `sentences`: bytes, seconds, blocks, bootstraps, logits.
    calibration: plaintext sentences for the server's range calibration (BERT models);
    progress: refimpl.progress's callback (the sentences, and the client's keys, the server's
    forward and each bootstrap)."""
    say = or_silent(progress)
    t0 = time.perf_counter()
    server = P.Server(model, params, reveal_logits=True, progress=progress)  # a harness: it compares the logits
    if calibration and hasattr(server.model, "calibrate"):
        server.model.calibrate(calibration)
    setup_s = time.perf_counter() - t0
    client = P.Client(P.LocalTransport(server.session()), model, params, compress=True, seed=seed, reveal_logits=True,
                      progress=progress)
    runs = []
    for i, s in enumerate(sentences):
        say(f"{model}: sentence {i + 1}", i, len(sentences))
        runs.append(client.classify(s))
    say(model, len(sentences), len(sentences))
    out = {"model": model, "params": params, "server_setup_s": round(setup_s, 2), "queries": runs,
           "peak_rss_gib": round(_peak_rss_gib(), 2)}
    for r in runs:
        ref = server.model.reference_logits(r["sentence"])  # the server's calibrated approximations
        r["logits_model"], r["logits_exact"] = ref["model"].tolist(), ref["exact"].tolist()
        r["max_err_vs_model"] = float(np.max(np.abs(np.asarray(r["logits"]) - ref["model"])))
        r["max_err_vs_exact"] = float(np.max(np.abs(np.asarray(r["logits"]) - ref["exact"])))
        r["agrees_with_model"] = bool(np.argmax(r["logits"]) == np.argmax(ref["model"]))
        r["range_error"] = ref.get("range_error")  # None: inside the ranges bert.check_ranges compares
    out["ranges"] = getattr(server.model, "ranges_source", None)
    out["max_logit_error_vs_float64_model"] = max(r["max_err_vs_model"] for r in runs)
    out["max_logit_error_vs_exact_model"] = max(r["max_err_vs_exact"] for r in runs)
    out["agreement_with_model"] = f"{sum(r['agrees_with_model'] for r in runs)}/{len(runs)}"
    return out


def extrapolate(params_name: str = SECURE_PARAMS) -> dict:
    """Bytes of BERT-base at n = 128 on `params_name` from the serialized-size formulas.

    Client to server: the 128 x 768 input compressed (ceil(n d / N) ciphertexts at level 1, or
    one level above the bootstrapping output level), or slot-packed densely (ceil(n d / (N/2))
    ciphertexts at the output level);
    server to client: one ciphertext of logits at level 0. Keys: public, relinearization, two
    encapsulation keys and one Galois key per element: the bootstrapper's, the Subs elements of
    decompression, and the model's rotations (refimpl.nexus.bert.rotation_steps for the BERT-base
    configuration at n = 128 in the head_rows layout that refimpl.experiments.bertbase times; if that
    fails, the rotations by +-2^i that compose any rotation: an estimate, said so in the output). `small_model_keys`: the same key count for the shipped
    small models' architecture (hidden 384, 12 heads, 2 layers) at n = 8 and 16, exact."""
    p, rc = P.resolve_params(params_name)
    n, d = BERT_BASE["n"], BERT_BASE["d"]
    out_level = p.L - rc.depth
    boot_levels = Bootstrapper(Evaluator(p), rc).galois_levels()
    boot = set(boot_levels)
    subs = set(subs_elements(p.N, max(chunk_counts(n * d, p.N))))
    source = "estimate: rotations by +-2^i, i < log2(N/2)"
    model_rot = {galois_element(p, s * (1 << i)) for i in range(p.slots.bit_length() - 1) for s in (1, -1)}
    try:
        cfg = BertConfig(hidden_size=d, num_hidden_layers=BERT_BASE["layers"], num_attention_heads=BERT_BASE["heads"],
                         intermediate_size=4 * d, num_labels=BERT_BASE["num_labels"])
        model_rot = {galois_element(p, r) for r in rotation_steps(cfg, n, p.slots, head_rows=True) if r % p.slots}
        source = "refimpl.nexus.bert.rotation_steps(BERT-base, n = 128, head_rows: one score ciphertext per head)"
    except ValueError as e:  # the encrypted BERT's layout does not take BERT-base at n = 128
        source += f" (refimpl.nexus.bert.rotation_steps refuses BERT-base at n = 128: {e})"
    elements = boot | subs | model_rot
    swk = P.switching_key_nbytes(p)
    levels = P.key_levels(boot_levels, model_rot, subs, out_level, compressed_level=1)
    keys = keys_nbytes(p, levels)
    comp = len(chunk_counts(n * d, p.N)) * P.ciphertext_nbytes(p, 1)  # expand="bootstrap" (default)
    comp_direct = len(chunk_counts(n * d, p.N)) * P.ciphertext_nbytes(p, out_level + 1)
    packed = -(-n * d // p.slots) * P.ciphertext_nbytes(p, out_level)
    result = P.ciphertext_nbytes(p, 0)
    small = small_model_keys(p, boot_levels, out_level)
    return {
        "small_model_keys": small,
        "params": params_name, "security": p.security_note, "N": p.N, "L": p.L, "dnum": p.dnum,
        "log_qp": round(p.log_qp, 1), "bootstrap_output_level": out_level, "n": n, "d": d,
        "galois_keys": len(elements), "galois_keys_bootstrap": len(boot), "galois_keys_subs": len(subs),
        "galois_keys_model": len(model_rot), "model_rotations_source": source,
        "switching_key_bytes": swk, "switching_key_bytes_at_output_level": P.switching_key_nbytes(p, out_level),
        "galois_keys_by_level": {str(lv): c for lv, c in sorted(Counter(levels.values()).items())},
        "keys_bytes": keys, "keys_bytes_all_full": P.public_key_nbytes(p) + (3 + len(elements)) * swk,
        "query_compressed_bytes": comp, "query_compressed_direct_bytes": comp_direct,
        "query_slot_packed_bytes": packed, "result_bytes": result,
        "online_bytes_compressed": comp + result, "online_bytes_slot_packed": packed + result,
        "paper_total_bytes": PUBLISHED["bert_base_bandwidth_mb"] * MB,
    }


def keys_nbytes(p, levels: dict[int, int]) -> int:
    """Public key, relinearization and encapsulation-up keys (top level), encapsulation-down key
    (level 0), and one Galois key per element at its level."""
    return (P.public_key_nbytes(p) + 2 * P.switching_key_nbytes(p) + P.switching_key_nbytes(p, 0)
            + sum(P.switching_key_nbytes(p, lv) for lv in levels.values()))


def small_model_keys(p, boot_levels: dict, out_level: int) -> list[dict]:
    """Galois keys (count, bytes) the encrypted small models need on parameters p, per variant and n."""
    out = []
    for att, act in (("softmax", "gelu"), ("2quad-freediv", "quad")):
        cfg = BertConfig(hidden_size=384, num_hidden_layers=2, num_attention_heads=12, intermediate_size=1536,
                         attention=att, activation=act)
        for n in (8, 16):
            rot = {galois_element(p, r) for r in rotation_steps(cfg, n, p.slots) if r % p.slots}
            subs = set(subs_elements(p.N, max(chunk_counts(n * 384, p.N))))
            levels = P.key_levels(boot_levels, rot, subs, out_level, compressed_level=1)
            out.append({"attention": att, "n": n, "galois_keys": len(levels), "model_rotations": len(rot),
                        "keys_bytes": keys_nbytes(p, levels)})
    return out


def short_sentences(model: str, tsv: str, k: int, max_tokens: int) -> list[str]:
    """The first k sentences of an SST-2 TSV with at most max_tokens tokens ([CLS] and [SEP] included)."""
    encode = P.load_model(model).encode
    out = []
    with open(tsv) as f:
        for line in f.read().splitlines()[1:]:
            text = line.split("\t")[0]
            if len(encode(text)[0]) <= max_tokens:
                out.append(text)
            if len(out) == k:
                return out
    raise ValueError(f"{tsv} has only {len(out)} sentences of at most {max_tokens} tokens, {k} asked for")


def _fmt_mb(b) -> str:
    return f"{b / MB:,.2f} MB" if b >= 1e5 else f"{b / 1e3:,.1f} kB"


def render(doc: dict) -> list[str]:
    lines = []
    for m in doc["measured"]:
        q0 = m["queries"][0]
        b = q0["bytes"]
        lines += [
            f"## {m['model']} on {m['params']} ({q0['security']}), n = {q0['n']} tokens, {len(m['queries'])} sentence(s)",
            "",
            "| direction | bytes |",
            "|---|---|",
            f"| keys, client -> server (once per client) | {_fmt_mb(b['keys'])} |",
            f"| query, client -> server, compressed (sent) | {_fmt_mb(b['query_compressed'])} ({b['query_cts_compressed']} ct) |",
            f"| query, client -> server, slot-packed (not sent) | {_fmt_mb(b['query_uncompressed'])} ({b['query_cts_uncompressed']} ct) |",
            f"| result, server -> client, level 0 (sent) | {_fmt_mb(b['result'])} |",
            f"| result at the level the forward left (not sent) | {_fmt_mb(b['result_at_computed_level'])} |",
            "",
            "| block | level in -> out | seconds |",
            "|---|---|---|",
        ]
        lines += [f"| {t['block']} | {t['level_in']} -> {t['level_out']} | {t['seconds']:.2f} |" for t in q0["trace"]]
        secs = [r["seconds"]["total"] for r in m["queries"]]
        s = q0["seconds"]
        lines += [
            "",
            f"end to end {np.median(secs):.1f} s median over {len(secs)} (first query: keygen {s['keygen']:.1f} s, "
            f"encrypt {s['encrypt']:.2f} s, server expand {s['server_expand']:.1f} s, forward {s['server_forward']:.1f} s, "
            f"decrypt {s['decrypt']:.2f} s); {q0['bootstraps']} bootstraps per query; peak RSS {m['peak_rss_gib']} GiB",
        ]
        lines.append(f"max logit error vs the float64 model of the same approximations: "
                     f"{m['max_logit_error_vs_float64_model']:.2e}; vs the exact model: {m['max_logit_error_vs_exact_model']:.2e}; "
                     f"predictions equal to the float64 model: {m['agreement_with_model']}")
        lines += [f"  {r['label']:9s} {np.round(r['logits'], 4).tolist()}  {r['sentence']}" for r in m["queries"]]
        lines.append("")
    e = doc["extrapolated"]
    lines += [
        f"## BERT-base, n = {e['n']}, on {e['params']} ({e['security']}), from serialized sizes",
        "",
        "| item | refimpl | paper (NEXUS, NDSS 2025) |",
        "|---|---|---|",
        f"| query compressed ({e['d']} x {e['n']} values), level 1, bootstrapped by the server | {_fmt_mb(e['query_compressed_bytes'])} | |",
        f"| query compressed, one level above the input level (--expand direct) | {_fmt_mb(e['query_compressed_direct_bytes'])} | |",
        f"| query slot-packed | {_fmt_mb(e['query_slot_packed_bytes'])} | |",
        f"| result (1 ct, level 0) | {_fmt_mb(e['result_bytes'])} | |",
        f"| online total (compressed) | {_fmt_mb(e['online_bytes_compressed'])} | {_fmt_mb(e['paper_total_bytes'])} total |",
        f"| keys, once per client ({e['galois_keys']} Galois keys, each over Q_level P for the highest level it is "
        f"applied at: {_fmt_mb(e['switching_key_bytes'])} at the top, {_fmt_mb(e['switching_key_bytes_at_output_level'])} "
        f"at the model's levels) | {_fmt_mb(e['keys_bytes'])} | not reported |",
        "",
        f"Galois keys: bootstrapping {e['galois_keys_bootstrap']}, decompression {e['galois_keys_subs']}, "
        f"model {e['galois_keys_model']} ({e['model_rotations_source']}); N = {e['N']}, log2 PQ = {e['log_qp']}, "
        f"dnum = {e['dnum']}, input at level {e['bootstrap_output_level']}.",
    ]
    if e.get("small_model_keys"):
        lines += ["", f"Keys of the small models (hidden 384, 12 heads) on {e['params']}, from refimpl.nexus.bert.rotation_steps:",
                  "", "| attention | n | Galois keys (model rotations) | key bytes |", "|---|---|---|---|"]
        lines += [f"| {k['attention']} | {k['n']} | {k['galois_keys']} ({k['model_rotations']}) | {_fmt_mb(k['keys_bytes'])} |"
                  for k in e["small_model_keys"]]
    return lines


def add_bertbase_arguments(bp) -> None:
    """The options of `refimpl reproduce nexus-bertbase` (those of `refimpl experiment bertbase`)."""
    bertbase_arguments(bp)


def run_bertbase(args) -> int:
    """`refimpl reproduce nexus-bertbase`: BERT-base at n = 128: plan, timed blocks, derived time (refimpl.experiments.bertbase)."""
    prog = "refimpl reproduce nexus-bertbase"
    rest = args.argv[2:]
    return bertbase_run.command(args, prog + " " + " ".join(rest), prog=prog)


def add_arguments(ap) -> None:
    """The options of `refimpl reproduce nexus`."""
    ap.add_argument("--quick", action="store_true",
                    help=f"about a minute: the protocol's stand-in model on the insecure {QUICK_PARAMS}, one sentence")
    ap.add_argument("--params", help=f"bootstrapping preset (default {SECURE_PARAMS}, --quick: {QUICK_PARAMS})")
    ap.add_argument("--models", help="comma-separated model names (default: the shipped models, else 'toy'; "
                                     "--quick: 'toy')")
    ap.add_argument("--sentences", type=int, default=None, help="sentences per model (default 3, --quick 1)")
    ap.add_argument("--no-run", action="store_true", help="only the extrapolated bandwidth (no encryption)")
    ap.add_argument("--calibrate-tsv", help="SST-2 TSV whose short sentences calibrate the BERT models' ranges")
    ap.add_argument("--sentences-tsv", help="take the sentences from this SST-2 TSV (e.g. dev.tsv): the first K of at "
                                            "most --max-tokens tokens (default: built-in short sentences)")
    ap.add_argument("--max-tokens", type=int, default=8, help="with --sentences-tsv (default 8: n_pad = 8)")
    add_json(ap, help="also write the document as JSON to this file")


def run(args) -> int:
    """`refimpl reproduce nexus`."""
    argv = args.argv[2:]  # the command line after `refimpl reproduce nexus`, for the record
    params = args.params or (QUICK_PARAMS if args.quick else SECURE_PARAMS)
    p, _ = P.resolve_params(params)
    if p.security_bits < 128 and not args.no_run:
        print(f"INSECURE ring for the measured rows ({params}: {p.security_note}); the extrapolation uses {SECURE_PARAMS}",
              flush=True)
    models = args.models.split(",") if args.models else (list(QUICK_MODELS) if args.quick else available_models())
    k = args.sentences or (1 if args.quick else 3)
    if args.quick and not args.no_run:
        print(QUICK_OMITS, flush=True)
    doc = {"command": "refimpl reproduce nexus " + " ".join(argv), "machine": platform.processor() or platform.machine(),
           "quick": bool(args.quick), "measured": [], "extrapolated": extrapolate(SECURE_PARAMS)}
    if not args.no_run:
        with Bars() as bars:  # on stderr, on a terminal only
            for j, m in enumerate(models):
                bars(f"reproduce nexus: {m}", j, len(models))
                cal = None
                if args.calibrate_tsv:
                    cal = tsv_sentences(args.calibrate_tsv)
                sentences = SENTENCES[:k] if not args.sentences_tsv else short_sentences(m, args.sentences_tsv, k, args.max_tokens)
                doc["measured"].append(measure(m, params, sentences, calibration=cal, progress=bars))
                if args.json:  # after each model: long runs keep what they measured
                    with open(args.json, "w") as f:
                        json.dump(doc, f, indent=1, default=P.json_default)
            bars("reproduce nexus", len(models), len(models))
    doc["peak_rss_gib"] = round(_peak_rss_gib(), 2)
    print("\n".join(render(doc)), flush=True)
    if args.quick and not args.no_run:
        print(QUICK_OMITS, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, default=P.json_default)
    return 0
