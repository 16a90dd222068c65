"""What TLS costs the ABY3 parties: bytes on the wire and wall time, TLS against plain TCP.

Three parties in three OS processes on 127.0.0.1 (`refimpl aby3 party`), one secure
classification each, once over TLS (certificates from `refimpl aby3 keys`) and once over
plain TCP (`--insecure-no-tls`, the comparison only). Per run: the protocol's counted bytes
(payload), framing, the session setup (PRSS key exchange, token count), and what really
crossed the sockets; the TLS overhead is raw bytes minus everything the application wrote,
the TLS handshake part given apart. Wall time is the slowest party's query time.

Run: refimpl bench aby3-tls [--model tiny|NAME] [--json FILE]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from ..aby3.tcp import free_local_ports
from .common import Report

PARTY = "import sys; from refimpl.cli import main; sys.exit(main())"


def run_three(model: str, keys_dir: str | None, timeout: float = 600.0) -> list[dict]:
    """The three parties' JSON rows of one classification (keys_dir None: plain TCP)."""
    peers = ",".join(f"127.0.0.1:{p}" for p in free_local_ports(3))
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


def main(quick: bool = False, json_path: str | None = None, threads: str | None = None, model: str = "tiny") -> int:
    """`refimpl bench aby3-tls`: one classification over TLS and one over plain TCP (quick, threads: unused)."""
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

