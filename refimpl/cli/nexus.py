"""`refimpl nexus {serve,query,calibrate}`: the NEXUS client and server as two processes, and the
model owner's value ranges.

serve      a server (refimpl.nexus.protocol.server) on a TCP port, one connection at a time
query      a client (refimpl.nexus.protocol.client): encrypted queries, labels and bytes printed
calibrate  the model owner's ranges from plaintext sentences, saved beside the model
           (RANGES_FILE, read by serve and the demo); `calibrate` is also what `refimpl ship` calls
precompute the model's plaintext diagonals encoded once for a parameter set and a token count
           (refimpl.nexus.bert.weights_store), written to a store directory
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from refimpl.cli.common import add_yes, confirm

DEFAULT_MODEL = "sst2-small-softmax-gelu"
DEFAULT_PARAMS = "128-2^16-dense"
# Help texts name library constants without importing the library (it takes seconds): the names of
# refimpl.ckks.bootstrap.bootstrapper.BOOTSTRAP_PRESETS, refimpl.nexus.protocol.models.RANGES_FILE,
# CALIBRATION_SENTENCES and CALIBRATION_TOKENS; tests/nexus/test_nexus_protocol.py checks they agree.
PRESET_NAMES = ("128-2^16", "128-2^16-dense", "128-2^16-dense19", "toy-2^10-dense", "toy-2^10-deep", "toy-2^10",
                "toy-2^12", "toy-2^13")
RANGES_FILE = "nexus_ranges.json"
CALIBRATION_SENTENCES, CALIBRATION_TOKENS = 200, 16


def tsv_sentences(path) -> list[str]:
    """The first column of a GLUE single-sentence TSV (header skipped): calibration text."""
    with open(path) as f:
        return [ln.split("\t")[0] for ln in f.read().splitlines()[1:]]


def calibrate(model_dir, tsv_path, out=None) -> int:
    """The model owner's ranges of a model (a shipped name or a model directory) from the sentences
    of an SST-2 TSV, written to `out` (default: RANGES_FILE in the model's directory). Exit code."""
    from refimpl.bert import shipped  # lazy: keeps `refimpl --help` instant
    from refimpl.nexus.protocol import models

    model = models.load_model(model_dir)
    if not hasattr(model, "calibrate"):
        print("refimpl nexus calibrate: applies to BERT models only", file=sys.stderr)
        return 2
    k = model.calibrate(tsv_sentences(tsv_path))
    if out:
        out = Path(out)
    elif os.path.isdir(model_dir):
        out = Path(model_dir) / models.RANGES_FILE
    else:
        out = shipped.model_dir(model_dir) / models.RANGES_FILE
    model.save_ranges(out, f"the first {k} sentences of at most {models.CALIBRATION_TOKENS} tokens of "
                           f"{Path(tsv_path).parent.name}/{Path(tsv_path).name}, "
                           f"refimpl.nexus.bert.calibrate with its margins")
    print(f"{out}: ranges of {model_dir} from {k} sentences of {tsv_path}")
    return 0


def run_calibrate(args: argparse.Namespace) -> int:
    return calibrate(args.model, args.calibrate_tsv, args.out)


def _resolve(args: argparse.Namespace):
    """The parameter set of --params, INSECURE printed first when it is; None (after an error) if unknown."""
    from refimpl.nexus.protocol.wire import ProtocolError, resolve_params  # lazy: keeps `refimpl --help` instant

    try:
        params, _ = resolve_params(args.params)
    except ProtocolError as e:
        print(f"refimpl nexus: {e}", file=sys.stderr)
        return None
    if params.security_bits < 128:
        print(f"INSECURE parameters ({args.params}): {params.security_note}", flush=True)
    return params


HEAVY = ("a BERT model at N = 2^16 needs about 10 GB of evaluation keys per client and over an hour per "
         "query on one machine; `--params toy-2^10-deep --model toy` runs in a minute")


def _heavy(args: argparse.Namespace, params) -> bool:
    """True when the run is hours long and tens of GB (a BERT at N = 2^16) and the user did not confirm it."""
    return params.N >= 2**16 and args.model != "toy" and not confirm(args, HEAVY)


def run_serve(args: argparse.Namespace) -> int:
    from refimpl.nexus.protocol.server import Server, serve  # lazy: keeps `refimpl --help` instant

    params = _resolve(args)
    if params is None:
        return 2
    if _heavy(args, params):
        return 1
    server = Server(args.model, args.params, args.record_dir, log=lambda m: print(m, flush=True), expand=args.expand)
    if args.calibrate_tsv:
        if not hasattr(server.model, "calibrate"):
            print("refimpl nexus serve: --calibrate-tsv applies to BERT models only", file=sys.stderr)
            return 2
        k = server.model.calibrate(tsv_sentences(args.calibrate_tsv))
        print(f"calibrated the ranges on {k} sentences of {args.calibrate_tsv}", flush=True)
    print(f"model {args.model}, parameters {args.params}: {params.security_note}", flush=True)
    serve(server, args.host, args.port, args.max_connections)
    return 0


def run_query(args: argparse.Namespace) -> int:
    from refimpl.nexus.protocol.client import Client  # lazy: keeps `refimpl --help` instant
    from refimpl.nexus.protocol.transport import TcpTransport
    from refimpl.nexus.protocol.wire import ProtocolError, json_default

    params = _resolve(args)
    if params is None:
        return 2
    if _heavy(args, params):
        return 1
    try:
        t = TcpTransport.connect(args.host, args.port)
    except OSError as e:
        print(f"refimpl nexus query: cannot reach a server at {args.host}:{args.port} ({e})", file=sys.stderr)
        return 1
    client = Client(t, args.model, args.params, compress=not args.no_compress, seed=args.seed)
    results = []
    try:
        for sentence in args.sentence:
            r = client.classify(sentence)
            results.append(r)
            b = r["bytes"]
            print(f"{r['label']}\t{json.dumps([round(v, 4) for v in r['logits']])}\t{sentence}", flush=True)
            print(f"  bytes: keys {b['keys']:,} (once per client), query {b['query']:,} "
                  f"(compressed {b['query_compressed']:,} / slot-packed {b['query_uncompressed']:,}), "
                  f"result {b['result']:,}; {r['bootstraps']} bootstraps, {r['seconds']['total']:.1f} s", flush=True)
    except ProtocolError as e:
        print(f"refimpl nexus query: {e}", file=sys.stderr)
        return 1
    finally:
        t.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=json_default)
    return 0


def run_precompute(args: argparse.Namespace) -> int:
    """The weight store of --model for --params and --n tokens under --out (refimpl.nexus.bert.weights_store)."""
    from refimpl.measure import peak_rss_mib  # lazy: keeps `refimpl --help` instant
    from refimpl.nexus.bert.weights_store import precompute
    from refimpl.nexus.protocol import models
    from refimpl.nexus.protocol.wire import ProtocolError, resolve_params

    try:
        params, rc = resolve_params(args.params)
    except ProtocolError as e:
        print(f"refimpl nexus precompute: {e}", file=sys.stderr)
        return 2
    model = models.load_model(args.model)
    if not hasattr(model, "model"):
        print("refimpl nexus precompute: applies to BERT models only", file=sys.stderr)
        return 2
    top = params.L - rc.depth  # the server's queries arrive at the bootstrap level
    t0 = time.perf_counter()
    m = precompute(model.model, params, args.n, args.out, input_level=top, bootstrap_level=top,
                   head_rows=args.head_rows, log=(lambda s: print(s, flush=True)) if args.verbose else None)
    count = sum(f["count"] for f in m["files"].values())
    print(f"{args.out}: {count:,} plaintexts of {args.model} for {args.params}, n = {args.n}, in {len(m['files'])} "
          f"files, {m['total_bytes'] / 2**20:,.1f} MiB; {time.perf_counter() - t0:.1f} s, "
          f"peak RSS {peak_rss_mib():,.0f} MiB", flush=True)
    return 0


def register(sub) -> None:
    nx = sub.add_parser("nexus", help="NEXUS client and server as two processes: serve, query; calibrate",
                        description="NEXUS client and server as two processes")
    cmds = nx.add_subparsers(dest="cmd", required=True)
    funcs = {"serve": run_serve, "query": run_query, "calibrate": run_calibrate, "precompute": run_precompute}
    for name, func in funcs.items():
        a = cmds.add_parser(name)
        if name not in ("calibrate", "precompute"):
            a.add_argument("--port", type=int, required=(name == "query"), default=0)
            a.add_argument("--host", default="127.0.0.1")
            add_yes(a)
        if name != "calibrate":
            a.add_argument("--params", default=DEFAULT_PARAMS,
                           help=f"bootstrapping preset ({', '.join(PRESET_NAMES)}) or deep-2^K-L")
        a.add_argument("--model", default=DEFAULT_MODEL, help="a shipped model name, or 'toy' (protocol stand-in)")
        a.set_defaults(func=func)
    s, q, c, pc = cmds.choices["serve"], cmds.choices["query"], cmds.choices["calibrate"], cmds.choices["precompute"]
    pc.add_argument("--out", required=True, help="the store directory (manifest.json and one .npy per weight and level)")
    pc.add_argument("--n", type=int, required=True, help="tokens per query (the layout and the plan depend on it)")
    pc.add_argument("--head-rows", action="store_true", help="the layout with one score ciphertext per head (long rows)")
    pc.add_argument("--verbose", action="store_true", help="print every file written")
    c.add_argument("--calibrate-tsv", required=True, help="SST-2 TSV (e.g. glue/SST-2/train.tsv): the ranges of the "
                   f"first {CALIBRATION_SENTENCES} sentences of at most {CALIBRATION_TOKENS} tokens, with margins")
    c.add_argument("--out", help=f"default: {RANGES_FILE} in the shipped model's directory (read by serve and the demo)")
    s.add_argument("--record-dir", help="write every received frame here (what the server sees)")
    s.add_argument("--max-connections", type=int, default=0, help="exit after this many connections (0: never)")
    s.add_argument("--expand", choices=("bootstrap", "direct"), default="bootstrap",
                   help="compressed input: at level 1 then bootstrapped (default), or one level above the input level")
    s.add_argument("--calibrate-tsv", help=f"calibrate the value ranges on the first {CALIBRATION_SENTENCES} short "
                   f"sentences of this SST-2 TSV (e.g. glue/SST-2/train.tsv); default: the model's {RANGES_FILE} "
                   "(`refimpl nexus calibrate`), else refimpl.nexus.bert's own calibration on random tokens")
    q.add_argument("--sentence", action="append", required=True, help="repeat for several sentences")
    q.add_argument("--no-compress", action="store_true", help="send slot-packed ciphertexts instead of compressed ones")
    q.add_argument("--seed", type=int, default=None, help="key and encryption randomness (default: OS entropy)")
    q.add_argument("--json", help="write the results here")
