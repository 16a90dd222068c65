"""What TLS costs the ABY3 parties: bytes on the wire and wall time, TLS against plain TCP.

Three parties in three OS processes on 127.0.0.1 (`refimpl aby3 party`), one secure
classification each, once over TLS (certificates from `refimpl aby3 keys`) and once over
plain TCP (`--insecure-no-tls`, the comparison only). Per run: the protocol's counted bytes
(payload), framing, the session setup (PRSS key exchange, token count), and what really
crossed the sockets; the TLS overhead is raw bytes minus everything the application wrote,
the TLS handshake part given apart. Wall time is the slowest party's query time.

Run: python -m refimpl.bench.aby3_tls [--model tiny|NAME] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile

from .common import Report

PARTY = "import sys; from refimpl.cli import main; sys.exit(main())"


def _ports(k: int) -> list[int]:
    socks = [socket.socket() for _ in range(k)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def run_three(model: str, keys_dir: str | None, timeout: float = 600.0) -> list[dict]:
    """The three parties' JSON rows of one classification (keys_dir None: plain TCP)."""
    peers = ",".join(f"127.0.0.1:{p}" for p in _ports(3))
    extra = ["--keys", keys_dir] if keys_dir else ["--insecure-no-tls"]
    procs = [subprocess.Popen([sys.executable, "-c", PARTY, "aby3", "party", "--id", str(i), "--peers", peers,
                               "--model", model, "--timeout", "120", *extra],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    rows = []
    for p in procs:
        out, err = p.communicate(timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError(f"party failed: {err.strip()}")
        rows.append(json.loads(out.strip().splitlines()[-1]))
    return rows


def summarize(rows: list[dict]) -> dict:
    w = [r["wire"] for r in rows]
    app = sum(x["payload_sent"] + x["frame_sent"] + x["handshake"] + x["setup_sent"] for x in w)
    raw = sum(x["raw_sent"] for x in w)
    return {"payload_bytes": sum(x["payload_sent"] for x in w), "framing_bytes": sum(x["frame_sent"] for x in w),
            "setup_bytes": sum(x["setup_sent"] for x in w), "raw_bytes": raw, "tls_overhead_bytes": raw - app,
            "tls_handshake_bytes": sum(x["tls_handshake"] for x in w) // 2,  # both ends count each handshake
            "query_s": max(r["query_s"] for r in rows), "rounds": max(r["rounds"] for r in rows)}


def main(model: str = "tiny", json_path: str | None = None) -> int:
    rep = Report("aby3_tls", json_path)
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([sys.executable, "-c", PARTY, "aby3", "keys", "--out", d], check=True, capture_output=True)
        tls, plain = summarize(run_three(model, d)), summarize(run_three(model, None))
    row = {"model": model, "tls": tls, "plain_tcp": plain,
           "tls_overhead_fraction_of_payload": round(tls["tls_overhead_bytes"] / tls["payload_bytes"], 4),
           "same_payload": tls["payload_bytes"] == plain["payload_bytes"]}
    rep.emit(row)
    rep.close()
    return 0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(prog="python -m refimpl.bench.aby3_tls", description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny", help="tiny or a shipped model name")
    ap.add_argument("--json", default=None, help="also write one JSON document to this file")
    a = ap.parse_args()
    raise SystemExit(main(a.model, a.json))
