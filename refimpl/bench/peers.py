"""Peer CKKS libraries, each in its own virtual environment, driven by standalone scripts.

A benchmark compares refimpl with mature libraries in the same run (DESIGN.md section 7).
Each peer lives in its own venv under ``~/.cache/refimpl/peers/<name>`` (or
``$REFIMPL_PEER_DIR/<name>``), so its pins never constrain refimpl's. The measurements run
as ``refimpl/bench/peer_scripts/<script>.py`` under the peer's interpreter: the config goes
in as JSON on stdin and one JSON document comes back on stdout. A peer that cannot be had
(no interpreter, pip failed, import failed, script crashed) is reported as
``{"peer": name, "missing": reason}``; nothing here raises for a missing peer.

Standard library only: this module runs inside refimpl and must not pull in the peers.

Command line: ``python -m refimpl.bench.peers [NAME ...]`` creates (or finds) the venvs and
prints one line per peer.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SCRIPTS = Path(__file__).parent / "peer_scripts"
PIP_TIMEOUT_S = 1800.0  # the three wheels are 10-200 MB each; a slow mirror needs minutes
IMPORT_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Peer:
    """How to get one peer: the Python it needs, what to pip install, what must import."""

    python: str  # "major.minor" of the interpreter the wheel is built for
    packages: tuple[str, ...]
    module: str  # imported once after install to prove the venv works
    note: str


PEERS: dict[str, Peer] = {
    "openfhe": Peer(
        python="3.10",
        packages=("openfhe==1.6.1.0.22.4", "numpy<2.3"),
        module="openfhe",
        note="OpenFHE v1.6.1; the wheel ships a CPython 3.10 extension only (pyenv's 3.10 here)",
    ),
    "seal": Peer(
        python="3.11",
        packages=("tenseal==0.3.18", "numpy<2.3"),
        module="tenseal.sealapi",
        note="Microsoft SEAL as bundled by TenSEAL 0.3.18, driven through tenseal.sealapi",
    ),
    "spu": Peer(
        python="3.11",
        packages=("spu==0.9.5",),
        module="spu.libspu",
        note="SecretFlow SPU 0.9.5 (ABY3, FM64); pins Python < 3.12 and numpy < 2",
    ),
    "desilo": Peer(
        python="3.11",
        packages=("desilofhe==2.0.0", "numpy<2.3"),
        module="desilofhe",
        note="DESILO FHE 2.0.0, CPU build (closed-source binary)",
    ),
}


def peer_dir(name: str) -> Path:
    """Where the venv of peer `name` lives: $REFIMPL_PEER_DIR/<name> or ~/.cache/refimpl/peers/<name>."""
    root = os.environ.get("REFIMPL_PEER_DIR") or Path.home() / ".cache" / "refimpl" / "peers"
    return Path(root) / name


def find_interpreter(version: str) -> Path | None:
    """A working Python `version` ("3.10"): this one, pyenv's, or pythonX.Y on PATH."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return Path(sys.executable)
    pyenv_root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    installed = sorted(
        pyenv_root.glob(f"versions/{version}.*/bin/python"),
        key=lambda p: [int(x) if x.isdigit() else 0 for x in p.parent.parent.name.split(".")],
    )
    on_path = shutil.which(f"python{version}")
    for candidate in [*reversed(installed), *([Path(on_path)] if on_path else [])]:
        ok, _ = _run([str(candidate), "-c", f"import sys; assert sys.version.startswith('{version}.')"],
                     IMPORT_TIMEOUT_S)
        if ok:  # a pyenv shim for a version not selected exists on PATH but fails to run
            return candidate
    return None


def _last_line(text: str) -> str:
    """The last non-empty line of `text` (where tools put the error), or '(no output)'."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "(no output)"


def _run(cmd: list[str], timeout: float) -> tuple[bool, str]:
    """Run `cmd`; returns (ok, last line of stderr or of stdout when it failed)."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    return r.returncode == 0, "" if r.returncode == 0 else _last_line(r.stderr or r.stdout)


def _stamp(peer: Peer) -> str:
    """What the venv was built from; a change of pins rebuilds it."""
    return json.dumps({"python": peer.python, "packages": list(peer.packages)})


_checked: dict[str, Path] = {}  # peers whose venv imported fine in this process


def peer_python(name: str, create: bool = True) -> tuple[Path | None, str]:
    """Find or create the venv of peer `name`; returns (its python, "") or (None, one-line reason)."""
    peer = PEERS.get(name)
    if peer is None:
        return None, f"unknown peer {name!r} (known: {', '.join(PEERS)})"
    venv = peer_dir(name)
    python = venv / "bin" / "python"
    stamp_file = venv / ".refimpl-peer.json"
    if _checked.get(name) == python:
        return python, ""
    if python.exists() and stamp_file.exists() and stamp_file.read_text() == _stamp(peer):
        ok, err = _run([str(python), "-c", f"import {peer.module}"], IMPORT_TIMEOUT_S)
        if not ok:
            return None, f"{name}: import {peer.module} failed: {err} (remove {venv} to rebuild)"
        _checked[name] = python
        return python, ""
    if not create:
        return None, f"{name}: no venv at {venv} (create it with: python -m refimpl.bench.peers {name})"
    base = find_interpreter(peer.python)
    if base is None:
        return None, f"{name}: needs Python {peer.python}, not found (PATH, pyenv)"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two benchmarks creating the same venv wait for each other
        if stamp_file.exists() and stamp_file.read_text() == _stamp(peer):
            return peer_python(name, create=False)  # the other process finished it meanwhile
        print(f"refimpl: creating the {name} peer venv at {venv} "
              f"(Python {peer.python}; pip install {' '.join(peer.packages)})", file=sys.stderr)
        ok, err = _run([str(base), "-m", "venv", "--clear", str(venv)], IMPORT_TIMEOUT_S)
        if not ok:
            return None, f"{name}: python{peer.python} -m venv failed: {err}"
        ok, err = _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *peer.packages], PIP_TIMEOUT_S)
        if not ok:
            return None, f"{name}: pip install {' '.join(peer.packages)} failed: {err}"
        ok, err = _run([str(python), "-c", f"import {peer.module}"], IMPORT_TIMEOUT_S)
        if not ok:
            return None, f"{name}: import {peer.module} failed after install: {err}"
        stamp_file.write_text(_stamp(peer))
    return python, ""


def run_peer(name: str, script: str | Path, config: dict, timeout: float, *,
             python: str | Path | None = None, create: bool = True) -> dict:
    """Run peer script `script` with `config` as JSON on stdin; returns its JSON or {"peer", "missing"}.

    `script` is a name in peer_scripts/ ("ckks_openfhe") or a path to a script file.
    `python` overrides the peer's venv interpreter (tests use the current one).
    OMP_NUM_THREADS is set to config["threads"] when that is given, else unset (library default).
    The script runs isolated (python -I): it sees neither PYTHONPATH nor refimpl.
    """
    def missing(reason: str) -> dict:
        return {"peer": name, "missing": reason}

    if python is None:
        python, reason = peer_python(name, create=create)
        if python is None:
            return missing(reason)
    path = Path(script) if os.sep in str(script) or str(script).endswith(".py") else SCRIPTS / f"{script}.py"
    if not path.is_file():
        return missing(f"no peer script {path}")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if config.get("threads"):
        env["OMP_NUM_THREADS"] = str(config["threads"])
    else:
        env.pop("OMP_NUM_THREADS", None)
    try:
        r = subprocess.run([str(python), "-I", str(path)], input=json.dumps(config),
                           capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return missing(f"{path.name} timed out after {timeout:g} s")
    except OSError as e:
        return missing(f"could not start {python}: {e}")
    if r.returncode != 0:
        return missing(f"{path.name} exited with code {r.returncode}: {_last_line(r.stderr or r.stdout)}")
    out = r.stdout.strip()
    lines = out.splitlines()
    for text in [*lines[-1:], out]:  # libraries may print chatter first: try the last line, then all
        try:
            doc = json.loads(text)
            break
        except json.JSONDecodeError as e:
            error = e
    else:
        return missing(f"{path.name} printed no valid JSON ({error}); output began {out[:80]!r}")
    if not isinstance(doc, dict):
        return missing(f"{path.name} printed JSON {type(doc).__name__}, expected an object")
    doc.setdefault("peer", name)
    return doc


def main(argv: list[str] | None = None) -> int:
    """Create or find the named peers' venvs (all by default); print one line each."""
    names = argv if argv else list(PEERS)
    failed = 0
    for name in names:
        python, reason = peer_python(name)
        print(f"{name}: {python}" if python else f"{name}: missing: {reason}")
        failed += python is None
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
