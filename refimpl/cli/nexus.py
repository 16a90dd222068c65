"""`refimpl nexus {keys,serve,query,calibrate}`: the NEXUS client and server as two processes, and the
model owner's value ranges.

keys       the server's TLS certificate and key (refimpl.nexus.protocol.tls): server.pem goes to clients
serve      a server (refimpl.nexus.protocol.server) on a TCP port over TLS, several clients at once
query      a client (refimpl.nexus.protocol.client): encrypted queries; the label (from the Argmax
           selection vector) and bytes printed; the logits only with --reveal-logits
calibrate  the model owner's ranges from plaintext sentences, saved beside the model
           (RANGES_FILE, read by serve and the demo); `calibrate` is also what `refimpl ship` calls
precompute the model's plaintext diagonals encoded once for a parameter set and a token count
           (refimpl.nexus.bert.weights_store), written to a store directory

Defaults fail fast (receive timeouts of DEFAULT_TIMEOUT seconds, --timeout lengthens them) and
are secure: TLS unless --insecure-no-tls, the Argmax selection vector unless --reveal-logits.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from refimpl.cli.common import add_yes, confirm
from refimpl.cli.progress import Bars

DEFAULT_MODEL = "sst2-small-softmax-gelu"
DEFAULT_PARAMS = "128-2^16-dense"
# Help texts name library constants without importing the library (it takes seconds): the names of
# refimpl.ckks.bootstrap.bootstrapper.BOOTSTRAP_PRESETS, refimpl.nexus.protocol.models.RANGES_FILE,
# CALIBRATION_SENTENCES and CALIBRATION_TOKENS; tests/nexus/test_nexus_protocol.py checks they agree.
PRESET_NAMES = ("128-2^16", "128-2^16-dense", "128-2^16-dense19", "toy-2^10-dense", "toy-2^10-deep", "toy-2^13-dense19",
                "toy-2^10", "toy-2^12", "toy-2^13")
RANGES_FILE = "nexus_ranges.json"
CALIBRATION_SENTENCES, CALIBRATION_TOKENS = 200, 16
# copies of refimpl.nexus.protocol.transport.DEFAULT_TIMEOUT, listener.DEFAULT_SESSIONS and tls.CERT_FILE (tested)
DEFAULT_TIMEOUT, DEFAULT_SESSIONS, CERT_FILE = 30.0, 8, "server.pem"


def tsv_sentences(path) -> list[str]:
    """The first column of a GLUE single-sentence TSV (header skipped): calibration text."""
    from refimpl.errors import UserError  # lazy: keeps `refimpl --help` instant

    with open(path, encoding="utf-8") as f:
        out = [ln.split("\t")[0] for ln in f.read().splitlines()[1:]]
    if not any(s.strip() for s in out):
        raise UserError(f"{path}: no sentences (a GLUE TSV has a header line, then one sentence per line)")
    return out


def positive(kind):
    """An argparse type: a number > 0."""
    def parse(text):
        v = kind(text)
        if v <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v
    parse.__name__ = kind.__name__
    return parse


def port(text) -> int:
    """An argparse type: a TCP port (0: any free port, for serve)."""
    v = int(text)
    if not 0 <= v <= 65535:
        raise argparse.ArgumentTypeError(f"a port is in 0-65535, got {text}")
    return v


def run_keys(args: argparse.Namespace) -> int:
    from refimpl.nexus.protocol.tls import make_server_keys  # lazy: keeps `refimpl --help` instant

    for f in make_server_keys(args.out):
        print(f)
    print(f"give {Path(args.out) / CERT_FILE} to the clients (--server-cert); keep server.key on the server only")
    return 0


def calibrate(model_dir, tsv_path, out=None) -> int:
    """The model owner's ranges of a model (a shipped name or a model directory) from the sentences
    of an SST-2 TSV, written to `out` (default: RANGES_FILE in the model's directory). Exit code."""
    from refimpl.bert import shipped  # lazy: keeps `refimpl --help` instant
    from refimpl.nexus.protocol import models

    from refimpl.errors import UserError

    model = models.load_model(model_dir)
    if not hasattr(model, "calibrate"):
        raise UserError("nexus calibrate: applies to BERT models only")
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
    """The parameter set of --params (a UserError if unknown), INSECURE printed first when it is."""
    from refimpl.nexus.protocol.wire import resolve_params  # lazy: keeps `refimpl --help` instant

    params, _ = resolve_params(args.params)
    if params.security_bits < 128:
        print(f"INSECURE parameters ({args.params}): {params.security_note}", flush=True)
    return params


HEAVY = ("a BERT model at N = 2^16 needs about 10 GB of evaluation keys per client and over an hour per "
         "query on one machine; `--params toy-2^10-deep --model toy` runs in a minute")


def _heavy(args: argparse.Namespace, params) -> bool:
    """True when the run is hours long and tens of GB (a BERT at N = 2^16) and the user did not confirm it."""
    return params.N >= 2**16 and args.model != "toy" and not confirm(args, HEAVY)


def run_serve(args: argparse.Namespace) -> int:
    from refimpl.errors import UserError  # lazy: keeps `refimpl --help` instant
    from refimpl.nexus.protocol.listener import serve
    from refimpl.nexus.protocol.server import Server
    from refimpl.nexus.protocol.tls import server_context

    if not args.tls_dir and not args.insecure_no_tls:
        raise UserError("nexus serve: give --tls-dir DIR (made by `refimpl nexus keys --out DIR`), or "
                        "--insecure-no-tls to send client secrets and frames in the clear")
    tls = server_context(args.tls_dir) if args.tls_dir else None
    params = _resolve(args)
    if _heavy(args, params):
        return 1
    server = Server(args.model, args.params, args.record_dir, log=lambda m: print(m, flush=True), expand=args.expand,
                    key_cache_bytes=args.key_cache_bytes, reveal_logits=args.reveal_logits,
                    progress=Bars())  # the forward and each bootstrap, on stderr on a terminal
    if args.calibrate_tsv:
        if not hasattr(server.model, "calibrate"):
            raise UserError("nexus serve: --calibrate-tsv applies to BERT models only")
        k = server.model.calibrate(tsv_sentences(args.calibrate_tsv))
        print(f"calibrated the ranges on {k} sentences of {args.calibrate_tsv}", flush=True)
    if args.weights:  # after calibrating: the ranges are part of the store's model checksum
        store = server.use_weights(args.weights)
        m = store.manifest
        print(f"weight store {args.weights}: {len(store.index):,} plaintexts for n = {m['n']}, "
              f"{store.nbytes / 2**20:,.1f} MiB, checked", flush=True)
    print(f"model {args.model}, parameters {args.params}: {params.security_note}", flush=True)
    print(f"limits: frames {server.frame_limit:,} bytes, n <= {server.max_tokens}, {args.max_sessions} sessions, "
          f"receive timeout {args.timeout:g} s; key cache {server.clients.limit:,} bytes (one client's keys: "
          f"at most {server.client_key_bound:,} bytes in memory); output: "
          f"{'logits (--reveal-logits)' if args.reveal_logits else 'the Argmax selection vector'}", flush=True)
    if not tls:
        print("INSECURE: no TLS (--insecure-no-tls): client secrets and frames travel in the clear", flush=True)
    serve(server, args.host, args.port, args.max_connections, tls=tls, max_sessions=args.max_sessions,
          timeout=args.timeout)
    return 0


def run_query(args: argparse.Namespace) -> int:
    from refimpl.errors import UserError  # lazy: keeps `refimpl --help` instant
    from refimpl.nexus.protocol.client import Client
    from refimpl.nexus.protocol.tls import SERVER_NAME, client_context
    from refimpl.nexus.protocol.transport import TcpTransport
    from refimpl.nexus.protocol.wire import json_default

    if not args.server_cert and not args.insecure_no_tls:
        raise UserError("nexus query: give --server-cert FILE (the server's server.pem), or --insecure-no-tls")
    if any(not s.strip() for s in args.sentence):
        raise UserError("nexus query: --sentence is empty")
    tls = client_context(args.server_cert) if args.server_cert else None
    params = _resolve(args)
    if _heavy(args, params):
        return 1
    t = TcpTransport.connect(args.host, args.port, timeout=args.timeout, tls=tls, server_hostname=SERVER_NAME)
    results = []
    try:
        client = Client(t, args.model, args.params, compress=not args.no_compress, seed=args.seed,
                        reveal_logits=args.reveal_logits, progress=Bars())  # its keys, on stderr on a terminal
        for sentence in args.sentence:
            r = client.classify(sentence)
            results.append(r)
            b = r["bytes"]
            shown = r["logits"] if r["logits"] is not None else r["selection"]
            print(f"{r['label']}\t{r['output']} {json.dumps([round(v, 4) for v in shown])}\t{sentence}", flush=True)
            print(f"  bytes: keys {b['keys']:,} (once per client), query {b['query']:,} "
                  f"(compressed {b['query_compressed']:,} / slot-packed {b['query_uncompressed']:,}), "
                  f"result {b['result']:,}; {r['bootstraps']} bootstraps, {r['seconds']['total']:.1f} s", flush=True)
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
    nx = sub.add_parser("nexus", help="NEXUS client and server as two processes: keys, serve, query; calibrate",
                        description="NEXUS client and server as two processes")
    cmds = nx.add_subparsers(dest="cmd", required=True)
    k = cmds.add_parser("keys", help="the server's TLS certificate (server.pem, for the clients) and key")
    k.add_argument("--out", required=True, help="directory to write server.pem and server.key (mode 0600)")
    k.set_defaults(func=run_keys)
    funcs = {"serve": run_serve, "query": run_query, "calibrate": run_calibrate, "precompute": run_precompute}
    for name, func in funcs.items():
        a = cmds.add_parser(name)
        if name not in ("calibrate", "precompute"):
            a.add_argument("--port", type=port, required=(name == "query"), default=0)
            a.add_argument("--host", default="127.0.0.1")
            add_yes(a)
        if name != "calibrate":
            a.add_argument("--params", default=DEFAULT_PARAMS,
                           help=f"bootstrapping preset ({', '.join(PRESET_NAMES)}) or deep-2^K-L")
        if name in ("serve", "query"):
            a.add_argument("--timeout", type=positive(float), default=DEFAULT_TIMEOUT,
                           help="seconds a receive waits before the connection fails (fail fast; lengthen on slow links)")
            a.add_argument("--insecure-no-tls", action="store_true",
                           help="INSECURE: plain TCP, the client's secret and all frames in the clear")
            a.add_argument("--reveal-logits", action="store_true",
                           help="serve: answer clients that ask for the logits; query: ask for them. The logits "
                                "reveal the model's whole output (default: the Argmax selection vector, the label only)")
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
    s.add_argument("--tls-dir", help=f"directory with {CERT_FILE} and server.key (`refimpl nexus keys --out DIR`)")
    s.add_argument("--record-dir", help="write every received frame here (what the server sees)")
    s.add_argument("--weights", metavar="DIR", help="a weight store (`refimpl nexus precompute --out DIR`) for this "
                   "model and --params: queries of its token count take the encoded diagonals from it")
    s.add_argument("--max-connections", type=int, default=0, help="exit after this many connections (0: never)")
    s.add_argument("--max-sessions", type=positive(int), default=DEFAULT_SESSIONS,
                   help="connections served at once; more are refused (idle ones time out after --timeout)")
    s.add_argument("--key-cache-bytes", type=positive(int), default=None,
                   help="bound of the clients' keys held in memory, least recently used evicted first "
                        "(default: two clients' keys at the model's longest input; printed at start)")
    s.add_argument("--expand", choices=("bootstrap", "direct"), default="bootstrap",
                   help="compressed input: at level 1 then bootstrapped (default), or one level above the input level")
    s.add_argument("--calibrate-tsv", help=f"calibrate the value ranges on the first {CALIBRATION_SENTENCES} short "
                   f"sentences of this SST-2 TSV (e.g. glue/SST-2/train.tsv); default: the model's {RANGES_FILE} "
                   "(`refimpl nexus calibrate`), else refimpl.nexus.bert's own calibration on random tokens")
    q.add_argument("--server-cert", help=f"the server's {CERT_FILE} (TLS: the client checks the server holds its key)")
    q.add_argument("--sentence", action="append", required=True, help="repeat for several sentences")
    q.add_argument("--no-compress", action="store_true", help="send slot-packed ciphertexts instead of compressed ones")
    q.add_argument("--insecure-seed", dest="seed", type=int, default=None,
                   help="INSECURE: key and encryption randomness from this seed (tests only; default: OS entropy)")
    q.add_argument("--json", help="write the results here")
