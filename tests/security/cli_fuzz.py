"""Malformed command-line inputs (ours): each case is a `refimpl` invocation that must end in one
clear error line and a non-zero exit code, never a traceback, a hang or a silent success.

`run_case` runs one case in process (refimpl.cli.main) with a time limit and classifies it:
clean (exit != 0, an error line, no traceback), traceback, hang, or silent (exit 0 on bad input).
Used by tests/security/test_cli_fuzz.py and tests/security/fuzz_table.py.
"""

from __future__ import annotations

import contextlib
import io
import socket
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from refimpl import spec
from refimpl.cli import main

HANG_S = 60.0  # a case still running after this is a hang


@dataclass
class Case:
    name: str
    argv: Callable[[Path], list[str]]  # tmp dir -> argv (may create files)
    category: str = "CLI inputs"


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def _glue(tmp: Path, train: str, dev: str | None = None) -> str:
    _write(tmp / "glue" / "SST-2" / "train.tsv", train)
    _write(tmp / "glue" / "SST-2" / "dev.tsv", train if dev is None else dev)
    return str(tmp / "glue")


def _model_dir(tmp: Path, config: str | None = None, weights: bytes | None = None) -> str:
    src = Path(__file__).resolve().parents[2] / "refimpl" / "models" / "sst2-small-softmax-gelu"
    d = tmp / "model"
    d.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file():
            (d / f.name).write_bytes(f.read_bytes())
    if config is not None:
        (d / "config.json").write_text(config)
    if weights is not None:
        (d / "model.safetensors").write_bytes(weights)
    return str(d)


def _busy_port(tmp: Path) -> int:
    """A port some other socket listens on (kept open for the session)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    _OPEN.append(s)
    return s.getsockname()[1]


def _silent_server(tmp: Path) -> int:
    """A TCP server that accepts and never answers (a stuck server)."""
    return _busy_port(tmp)


def _peers(tmp: Path, taken: int | None = None) -> str:
    """host:port of three parties on loopback; party `taken`'s port already has a listener."""
    ports = [_busy_port(tmp) if i == taken else _free_port(tmp) for i in range(3)]
    return ",".join(f"127.0.0.1:{p}" for p in ports)


def _free_port(tmp: Path) -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


_OPEN: list[socket.socket] = []
TOY = ["--model", "toy", "--params", "toy-2^10-deep"]
LABEL_X = "sentence\tlabel\na fine film\tx\n"
EMPTY = ""
HEADER_ONLY = "sentence\tlabel\n"
GOOD = "sentence\tlabel\na fine film\t1\na dull film\t0\n"

CASES = [
    # nexus
    Case("nexus query: port out of range", lambda t: ["nexus", "query", "--port", "70000", "--sentence", "x"]),
    Case("nexus query: negative port", lambda t: ["nexus", "query", "--port", "-1", "--sentence", "x"]),
    Case("nexus query: port not a number", lambda t: ["nexus", "query", "--port", "http", "--sentence", "x"]),
    Case("nexus serve: port out of range", lambda t: ["nexus", "serve", "--port", "65536", "--insecure-no-tls"] + TOY),
    Case("nexus serve: port in use", lambda t: ["nexus", "serve", "--port", str(_busy_port(t)), "--insecure-no-tls"] + TOY),
    Case("nexus serve: no TLS material", lambda t: ["nexus", "serve"] + TOY),
    Case("nexus serve: empty TLS dir", lambda t: ["nexus", "serve", "--tls-dir", str(t)] + TOY),
    Case("nexus serve: unknown model dir", lambda t: ["nexus", "serve", "--insecure-no-tls", "--model", str(t / "nope"),
                                                       "--params", "toy-2^10-deep"]),
    Case("nexus serve: timeout 0", lambda t: ["nexus", "serve", "--timeout", "0", "--insecure-no-tls"] + TOY),
    Case("nexus query: unknown parameter set", lambda t: ["nexus", "query", "--port", "1", "--sentence", "x",
                                                          "--params", "nonsense", "--insecure-no-tls"]),
    Case("nexus query: empty sentence", lambda t: ["nexus", "query", "--port", "1", "--sentence", "", "--insecure-no-tls"] + TOY),
    Case("nexus query: certificate not PEM", lambda t: ["nexus", "query", "--port", "1", "--sentence", "x", "--server-cert",
                                                        str(_write(t / "bad.pem", "not a certificate"))] + TOY),
    Case("nexus query: nobody listening", lambda t: ["nexus", "query", "--port", str(_free_port(t)), "--sentence", "x",
                                                     "--insecure-no-tls"] + TOY),
    Case("nexus query: stuck server, --timeout 1", lambda t: ["nexus", "query", "--port", str(_silent_server(t)),
                                                              "--sentence", "x", "--insecure-no-tls", "--timeout", "1"] + TOY),
    Case("nexus query: no certificate", lambda t: ["nexus", "query", "--port", "1", "--sentence", "x"] + TOY),
    Case("nexus calibrate: toy model", lambda t: ["nexus", "calibrate", "--model", "toy", "--calibrate-tsv",
                                                  str(_write(t / "c.tsv", GOOD))]),
    Case("nexus calibrate: empty TSV", lambda t: ["nexus", "calibrate", "--model", _model_dir(t), "--calibrate-tsv",
                                                  str(_write(t / "c.tsv", EMPTY)), "--out", str(t / "r.json")]),
    Case("nexus calibrate: missing TSV", lambda t: ["nexus", "calibrate", "--model", _model_dir(t), "--calibrate-tsv",
                                                    str(t / "none.tsv"), "--out", str(t / "r.json")]),
    # aby3
    Case("aby3 party: a second party with the same id (its port taken)",
         lambda t: ["aby3", "party", "--id", "1", "--peers", _peers(t, taken=1), "--insecure-no-tls", "--timeout", "2"]),
    Case("aby3 party: peers never connect, --timeout 1",
         lambda t: ["aby3", "party", "--id", "0", "--peers", _peers(t), "--insecure-no-tls", "--timeout", "1"]),
    Case("aby3 party: two peers only", lambda t: ["aby3", "party", "--id", "0", "--peers", "a:1,b:2", "--insecure-no-tls"]),
    Case("aby3 party: port out of range", lambda t: ["aby3", "party", "--id", "0", "--peers", "a:1,b:2,c:70000",
                                                     "--insecure-no-tls"]),
    Case("aby3 party: id 3", lambda t: ["aby3", "party", "--id", "3", "--peers", "a:1,b:2,c:3"]),
    Case("aby3 party: missing TLS keys", lambda t: ["aby3", "party", "--id", "0", "--peers", _peers(t), "--keys", str(t / "none")]),
    Case("aby3 party: empty sentence", lambda t: ["aby3", "party", "--id", "0", "--peers", _peers(t), "--insecure-no-tls",
                                                  "--model", "sst2-small-softmax-gelu", "--sentence", ""]),
    # demo
    Case("demo: empty sentence", lambda t: ["demo", "--quick", "--sentence", ""]),
    Case("demo: blank sentence", lambda t: ["demo", "--quick", "--sentence", "   "]),
    # train / eval / distill / fit-freediv
    Case("train: missing GLUE dir", lambda t: ["train", "--glue-dir", str(t / "none"), "--epochs", "1"]),
    Case("train: TSV label x", lambda t: ["train", "--glue-dir", _glue(t, LABEL_X), "--model", _model_dir(t), "--epochs", "1",
                                          "--out", str(t / "o")]),
    Case("train: empty TSV", lambda t: ["train", "--glue-dir", _glue(t, EMPTY), "--model", _model_dir(t), "--epochs", "1",
                                        "--out", str(t / "o")]),
    Case("train: header-only TSV", lambda t: ["train", "--glue-dir", _glue(t, HEADER_ONLY), "--model", _model_dir(t),
                                              "--epochs", "1", "--out", str(t / "o")]),
    Case("eval: broken config.json", lambda t: ["eval", _model_dir(t, config="{not json"), "--glue-dir", _glue(t, GOOD)]),
    Case("eval: config.json not an object", lambda t: ["eval", _model_dir(t, config="[1, 2]"), "--glue-dir", _glue(t, GOOD)]),
    Case("eval: corrupt safetensors", lambda t: ["eval", _model_dir(t, weights=b"\x10\x00\x00\x00\x00\x00\x00\x00{bad"),
                                                 "--glue-dir", _glue(t, GOOD)]),
    Case("eval: truncated safetensors", lambda t: ["eval", _model_dir(t, weights=b"\x00\x01"), "--glue-dir", _glue(t, GOOD)]),
    Case("eval: missing model dir", lambda t: ["eval", str(t / "none"), "--glue-dir", _glue(t, GOOD)]),
    Case("eval: TSV label x", lambda t: ["eval", _model_dir(t), "--glue-dir", _glue(t, GOOD, LABEL_X)]),
    Case("eval: TSV not UTF-8", lambda t: ["eval", _model_dir(t), "--glue-dir", _glue(t, GOOD, "sentence\tlabel\n\xff\xfe\t1\n")
                                           if False else _glue_bytes(t)]),
    Case("distill: missing teacher", lambda t: ["distill", "--teacher", str(t / "none"), "--glue-dir", _glue(t, GOOD)]),
    Case("fit-freediv: missing GLUE dir", lambda t: ["fit-freediv", "--glue-dir", str(t / "none")]),
    Case("fit-freediv: the former LABEL=MODEL:KIND syntax", lambda t: ["fit-freediv", "--glue-dir", _glue(t, GOOD),
                                                                      "--model", "t=sst2-small-softmax-gelu:softmax"]),
    Case("fit-freediv: more labels than models", lambda t: ["fit-freediv", "--glue-dir", _glue(t, GOOD), "--model",
                                                           "sst2-small-2quad-freediv-quad", "--label", "a", "--label", "b"]),
    Case("fit-freediv: too few sentence lengths", lambda t: ["fit-freediv", "--glue-dir", _glue(t, GOOD), "--model",
                                                            "sst2-small-2quad-freediv-quad"]),
    Case("eval: --json names a directory", lambda t: ["eval", "sst2-small-2quad-freediv-quad", "--glue-dir", _glue(t, GOOD),
                                                     "--json", str(t)]),
    # reproduce, spec, experiment, bench
    Case("reproduce: unknown table", lambda t: ["reproduce", "nonsense"]),
    Case("reproduce nexus: unknown parameter set", lambda t: ["reproduce", "nexus", "--quick", "--params", "nonsense"]),
    Case("reproduce nexus: unknown model", lambda t: ["reproduce", "nexus", "--quick", "--models", "nonsense"]),
    Case("reproduce agreement: missing GLUE dir", lambda t: ["reproduce", "agreement", "--glue-dir", str(t / "none")]),
    Case("reproduce accuracy: --quad-init on a GELU row", lambda t: ["reproduce", "accuracy", "--row", "teacher",
                                                                     "--quad-init", "5", "--glue-dir", _glue(t, GOOD)]),
    Case("reproduce results-index: --json names a directory", lambda t: ["reproduce", "results-index", "--check",
                                                                         "--json", str(t)]),
    Case("spec: missing repository", lambda t: ["spec", "--repo", str(t / "none")]),
    Case("experiment: noise-probe, missing GLUE dir", lambda t: ["experiment", "noise-probe", "sst2-small-softmax-gelu",
                                                                 "a film", "30", "--glue-dir", str(t / "none")]),
    Case("experiment: nexus-bert, missing model", lambda t: ["experiment", "nexus-bert", "--model", str(t / "none"),
                                                             "--glue-dir", _glue(t, GOOD)]),
    Case("bench: unknown target", lambda t: ["bench", "nonsense"]),
]


def _glue_bytes(t: Path) -> list[str]:
    _write(t / "glue" / "SST-2" / "dev.tsv", b"sentence\tlabel\n\xff\xfe film\t1\n")
    return [_model_dir(t), "--glue-dir", str(t / "glue")]


CASES[[c.name for c in CASES].index("eval: TSV not UTF-8")] = Case("eval: TSV not UTF-8", lambda t: ["eval"] + _glue_bytes(t))


def run_case(case: Case, tmp: Path, hang_s: float = HANG_S) -> dict:
    """{name, category, outcome: clean|traceback|hang|silent, code, message}."""
    tmp.mkdir(parents=True, exist_ok=True)
    argv = case.argv(tmp)
    box: dict = {}
    out, err = io.StringIO(), io.StringIO()

    def target():
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                box["code"] = main(argv)
        except SystemExit as e:  # argparse: usage and one error line, exit 2; SystemExit("message"): exit 1
            box["code"] = e.code if isinstance(e.code, int) else 1
            if isinstance(e.code, str):
                err.write(e.code + "\n")  # what the interpreter prints for it
        except BaseException:  # noqa: BLE001 -- what we classify
            box["traceback"] = traceback.format_exc()

    root = spec.WHERE.root  # `refimpl spec --repo DIR` sets it for the process: restored after the case
    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(hang_s)
    spec.WHERE.root = root
    if th.is_alive():
        outcome, msg = "hang", f"still running after {hang_s:g} s"
    elif "traceback" in box:
        outcome, msg = "traceback", box["traceback"].strip().splitlines()[-1]
    elif box.get("code", 0) == 0:
        outcome, msg = "silent", "exit code 0 on bad input"
    else:
        lines = [ln for ln in err.getvalue().splitlines() if ln.strip()]
        msg = lines[-1] if lines else ""
        ok = bool(lines) and "Traceback" not in err.getvalue()
        outcome = "clean" if ok else "traceback"
    return {"name": case.name, "category": case.category, "outcome": outcome, "code": box.get("code"), "message": msg}
