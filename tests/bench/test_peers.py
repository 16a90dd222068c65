"""refimpl.bench.peers: venv discovery, the config/JSON round trip, and failures reported as "missing".

The fast tests never install a peer: they use fake peer scripts run by the current
interpreter. The slow ones create the real venvs (network or pip cache needed).
"""

import ast
import json
import sys
from pathlib import Path

import pytest

from refimpl.bench import peers

CONFIG = {"N": 8192, "log_q0": 60, "log_qi": 40, "levels": 2, "dnum": None, "reps": 2,
          "threads": 1, "security": "128"}


def fake_script(tmp_path: Path, body: str) -> Path:
    """Write a standalone peer script whose main code is `body`."""
    path = tmp_path / "fake_peer.py"
    path.write_text("import json, os, sys\n" + body)
    return path


@pytest.fixture(autouse=True)
def peer_dir(tmp_path, monkeypatch):
    """Every test gets an empty peer directory, never the user's cache."""
    monkeypatch.setenv("REFIMPL_PEER_DIR", str(tmp_path / "peers"))
    return tmp_path / "peers"


def test_fake_peer_round_trips_the_config(tmp_path):
    script = fake_script(tmp_path, "cfg = json.load(sys.stdin)\n"
                         "print(json.dumps({'config': cfg, 'omp': os.environ.get('OMP_NUM_THREADS')}))\n")
    out = peers.run_peer("fake", script, CONFIG, timeout=60, python=sys.executable)
    assert out["config"] == CONFIG
    assert out["peer"] == "fake"
    assert out["omp"] == "1"  # config["threads"] = 1 sets OMP_NUM_THREADS


def test_default_threads_unset_omp(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    script = fake_script(tmp_path, "print(json.dumps({'omp': os.environ.get('OMP_NUM_THREADS')}))\n")
    out = peers.run_peer("fake", script, dict(CONFIG, threads=None), timeout=60, python=sys.executable)
    assert out["omp"] is None


def test_library_chatter_before_the_document_is_ignored(tmp_path):
    script = fake_script(tmp_path, "print('warning: something')\nprint(json.dumps({'ok': 1}))\n")
    assert peers.run_peer("fake", script, CONFIG, timeout=60, python=sys.executable)["ok"] == 1


def test_malformed_output_is_missing_with_the_parse_error(tmp_path):
    script = fake_script(tmp_path, "print('{not json')\n")
    out = peers.run_peer("fake", script, CONFIG, timeout=60, python=sys.executable)
    assert set(out) == {"peer", "missing"}
    assert "no valid JSON" in out["missing"] and "{not json" in out["missing"]


def test_non_object_output_is_missing(tmp_path):
    script = fake_script(tmp_path, "print('[1, 2]')\n")
    assert "expected an object" in peers.run_peer("fake", script, CONFIG, 60, python=sys.executable)["missing"]


def test_crashing_script_is_missing_with_its_last_error_line(tmp_path):
    script = fake_script(tmp_path, "raise SystemExit('OpenFHE refused the parameters')\n")
    out = peers.run_peer("fake", script, CONFIG, timeout=60, python=sys.executable)
    assert "exited with code 1" in out["missing"] and "refused the parameters" in out["missing"]


def test_timeout_is_missing(tmp_path):
    script = fake_script(tmp_path, "import time\ntime.sleep(30)\n")
    out = peers.run_peer("fake", script, CONFIG, timeout=0.5, python=sys.executable)
    assert "timed out" in out["missing"]


def test_unknown_peer_is_missing():
    out = peers.run_peer("no-such-peer", "ckks_openfhe", CONFIG, timeout=5)
    assert out["peer"] == "no-such-peer" and "unknown peer" in out["missing"]


def test_peer_without_venv_is_missing_when_not_creating(peer_dir):
    out = peers.run_peer("openfhe", "ckks_openfhe", CONFIG, timeout=5, create=False)
    assert out["peer"] == "openfhe" and str(peer_dir / "openfhe") in out["missing"]


def test_peer_whose_python_is_not_installed_is_missing(monkeypatch, capsys):
    monkeypatch.setitem(peers.PEERS, "ghost", peers.Peer("2.1", ("ghost==1",), "ghost", "never there"))
    python, reason = peers.peer_python("ghost")
    assert python is None and "Python 2.1" in reason
    assert peers.run_peer("ghost", "ckks_openfhe", CONFIG, timeout=5) == {"peer": "ghost", "missing": reason}


def test_unknown_script_is_missing():
    out = peers.run_peer("fake", "no_such_script", CONFIG, timeout=5, python=sys.executable)
    assert "no peer script" in out["missing"]


def test_peer_scripts_never_import_refimpl():
    """The scripts run under the peers' interpreters, which do not have refimpl installed."""
    scripts = sorted(peers.SCRIPTS.glob("*.py"))
    assert {"ckks_openfhe.py", "ckks_seal.py", "ckks_desilo.py", "boot_openfhe.py"} <= {p.name for p in scripts}
    for path in scripts:
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "refimpl" for n in names), path.name


def test_peers_table_names_a_python_and_pins():
    for name, peer in peers.PEERS.items():
        assert peer.python in ("3.10", "3.11"), name
        assert any("==" in pkg for pkg in peer.packages), name


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in sorted(peers.PEERS) if (peers.SCRIPTS / f"ckks_{n}.py").exists()])
def test_real_peer_runs_at_n_2_13(name, monkeypatch):
    """Creates the real venv (cached under ~/.cache/refimpl/peers) and runs the CKKS script once (the CKKS peers:
    the MPC peer has no CKKS script)."""
    monkeypatch.delenv("REFIMPL_PEER_DIR")
    out = peers.run_peer(name, f"ckks_{name}", CONFIG, timeout=900)
    assert "missing" not in out, out
    assert out["N"] == 8192 and out["max_err_log2"] < -15
    assert {"encode+encrypt", "add", "pt-ct mul", "mul+relin", "rotate", "decrypt+decode"} <= set(out["ops"])
    assert all(v > 0 for v in out["sizes"].values())
    json.dumps(out)
