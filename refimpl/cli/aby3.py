"""`refimpl aby3 {keys,party}`: the ABY3 parties as separate processes over TLS."""

from __future__ import annotations

import argparse
import json
import sys

from refimpl.cli.common import add_json, write_json

DEFAULT_TIMEOUT_S = 30.0  # fail fast: seconds without a byte from a peer (lengthen with --timeout)


def keys(args: argparse.Namespace) -> int:
    from refimpl.aby3.tls import make_keys  # lazy: keeps `refimpl --help` instant

    try:
        files = make_keys(args.out, days=args.days)
    except OSError as e:
        print(f"refimpl aby3 keys: cannot write to {args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(args.out), "files": [f.name for f in files],
                      "give_party_i": ["ca.pem", "party{i}.pem", "party{i}.key"]}))
    return 0


def _peers(text: str) -> list[tuple[str, int]]:
    peers = text.split(",")
    if len(peers) != 3:
        raise ValueError(f"--peers needs three host:port entries (parties 0, 1, 2), got {len(peers)}")
    addrs = []
    for a in peers:
        host, sep, port = a.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"bad peer address {a!r}: expected host:port with a port in 1..65535")
        addrs.append((host, int(port)))
    return addrs


def party(args: argparse.Namespace) -> int:
    import numpy as np  # lazy: keeps `refimpl --help` instant

    from refimpl.aby3.model import trim_padding
    from refimpl.aby3.network import ProtocolError
    from refimpl.aby3.tcp import classify_as_party, tiny_model
    from refimpl.aby3.tls import TLSConfig

    me = args.id
    who = f"refimpl aby3 party {me}"
    try:
        addrs = _peers(args.peers)
        if args.sentence is not None and me != 0:
            raise ValueError("only the client (party 0) takes --sentence; the servers learn the token count from it")
        if args.timeout <= 0:
            raise ValueError(f"--timeout must be positive, got {args.timeout}")
        if args.insecure_no_tls:
            tls = None
        elif args.keys is None:
            raise ValueError("--keys DIR is required (make it with `refimpl aby3 keys --out DIR`), "
                             "or --insecure-no-tls for a test on one machine")
        else:
            tls = TLSConfig.from_dir(args.keys, me)
        if args.model == "tiny":
            cfg, params, ids, _ = tiny_model(args.model_seed, args.attention, args.activation)
        else:
            from refimpl.bert import shipped

            if not shipped.available(args.model):
                raise ValueError(f"shipped model {args.model!r} is not available")
            m = shipped.load(args.model)
            cfg, params = m.config, {k: np.asarray(v, dtype=np.float64) for k, v in m.params.items()}
            ids = None
            if me == 0:
                if args.sentence is not None and not args.sentence.strip():
                    raise ValueError("--sentence is empty")
                ids, _ = trim_padding(*shipped.encode(m, args.sentence or "a gripping, funny and moving film ."))
    except ValueError as e:
        print(f"{who}: {e}", file=sys.stderr)
        return 2
    try:
        row = classify_as_party(me, addrs, cfg, params if me == 1 else None, ids if me == 0 else None,
                                tls=tls, insecure_plaintext=tls is None, insecure_seed=args.insecure_seed,
                                timeout=args.timeout, connect_timeout=args.timeout)
    except ProtocolError as e:
        print(f"{who}: protocol failed: {e}", file=sys.stderr)
        return 1
    except ValueError as e:  # e.g. unreadable TLS files
        print(f"{who}: {e}", file=sys.stderr)
        return 2
    row["model"] = args.model
    print(json.dumps(row), flush=True)
    write_json(args.json, row)
    return 0


def register(sub) -> None:
    g = sub.add_parser("aby3", help="ABY3 parties as separate processes over TLS: keys, party",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    gs = g.add_subparsers(dest="aby3_command", required=True)
    k = gs.add_parser("keys", help="make a CA and one TLS certificate + key per party",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    k.add_argument("--out", required=True, help="directory for ca.pem, party{0,1,2}.pem and party{0,1,2}.key")
    k.add_argument("--days", type=int, default=365, help="validity of the certificates")
    k.set_defaults(func=keys)
    p = gs.add_parser("party", help="run one party of a secure classification",
                      formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--id", type=int, required=True, choices=(0, 1, 2), help="0: client (tokens), 1: model owner, 2: helper")
    p.add_argument("--peers", required=True, help="host:port,host:port,host:port for parties 0, 1, 2")
    p.add_argument("--keys", default=None, help="directory made by `refimpl aby3 keys` (ca.pem, party{id}.pem/.key)")
    p.add_argument("--model", default="tiny", help="tiny (random 2-layer demo model) or a shipped model name")
    p.add_argument("--model-seed", type=int, default=0, help="seed of the public tiny demo model (not a secret)")
    p.add_argument("--sentence", default=None, help="the client's sentence (party 0 only; shipped models)")
    p.add_argument("--attention", default="2quad-freediv", help="attention variant of the tiny model")
    p.add_argument("--activation", default="quad", help="activation of the tiny model")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                   help="seconds without a byte from a peer (and to connect) before giving up")
    p.add_argument("--insecure-seed", type=int, default=None,
                   help="INSECURE: derive every PRSS key and private coin from this seed (reproducible tests only)")
    p.add_argument("--insecure-no-tls", action="store_true",
                   help="INSECURE: plain TCP, anyone on the wire reads the shares (tests only)")
    add_json(p, help="also write the party's result row as JSON to this file")
    p.set_defaults(func=party)
