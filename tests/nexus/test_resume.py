"""A forward that survives restarts (refimpl.nexus.bert.checkpoint): a run killed after its first
layer's checkpoint, resumed by another process, gives the same decrypted logits as an
uninterrupted run, computing only the layers after the checkpoint.

The child process (`python -m tests.nexus.test_resume DIR`) runs the 2-layer tiny student on
N = 2^10 with checkpoints and stops after layer 0's checkpoint until the test kills it (SIGKILL).
Refreshes go through an oracle whose randomness is drawn from the ciphertext it refreshes, so
the same ciphertext is refreshed to the same ciphertext in any process: the resumed logits equal
the uninterrupted ones exactly.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from refimpl.ckks.bootstrap.oracle import OracleBootstrapper
from refimpl.nexus import bert as nb
from refimpl.nexus.bert import checkpoint as ckp
from refimpl.ring.sampling import RandomSource

from .test_weights_store import IDS, MASK, Run, tiny

ROOT = Path(__file__).resolve().parents[2]


class SeededOracle:
    """Oracle refresh with randomness seeded by the refreshed ciphertext (the same result in every process)."""

    def __init__(self, sk, output_level):
        self.sk, self.output_level = sk, output_level

    def bootstrap(self, ct):
        seed = int.from_bytes(hashlib.sha256(ct.c[0].tobytes()).digest()[:8], "little")
        return OracleBootstrapper(self.sk, output_level=self.output_level, rng=RandomSource(seed)).bootstrap(ct)


def setup():
    cfg, params = tiny(layers=2)
    run = Run(nb.NexusModel(cfg, params))
    return run, SeededOracle(run.sk, run.top)


def child(root: str) -> None:
    """Run with checkpoints; after layer 0's checkpoint, wait to be killed."""
    run, bts = setup()

    class Stop(ckp.Checkpoint):
        def save(self, i, chunks):
            super().save(i, chunks)
            if i == 0:
                print("layer 0 saved", flush=True)
                time.sleep(600)

    ckp.Checkpoint = Stop  # resumable_forward builds its Checkpoint through this name
    ckp.resumable_forward(run.ev, bts, run.model, run.cts, len(IDS), MASK, root)


@pytest.fixture(scope="module")
def resumed(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "tests.nexus.test_resume", str(root)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "layer 0 saved", proc.stderr.read()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    manifest = json.loads((root / ckp.MANIFEST).read_text())
    manifest["present"] = all((root / name).exists() for name in manifest["files"])
    run, bts = setup()
    trace = []
    out = ckp.resumable_forward(run.ev, bts, run.model, run.cts, len(IDS), MASK, root, trace=trace)
    return run, bts, root, manifest, trace, run.logits(out)


def test_killed_run_resumes_to_the_same_logits(resumed):
    """NEXUS-RESUME: killed after layer 0's checkpoint, resumed in this process: layer 1 and the head only,
    the same logits as an uninterrupted run, within 0.05 of the float64 model."""
    run, bts, root, manifest, trace, logits = resumed
    assert manifest["layers_done"] == 1 and manifest["present"] and len(manifest["files"]) == len(run.cts)
    assert {r["block"].split(".")[0] for r in trace} == {"L1", "head"}
    whole = run.logits(nb.encrypted_forward(run.ev, bts, run.model, run.cts, len(IDS), MASK))
    np.testing.assert_array_equal(logits, whole)
    ref = nb.plaintext_reference(run.model, IDS, MASK, approximate=True)["logits"]
    assert np.max(np.abs(logits - ref)) < 0.05
    done = json.loads((root / ckp.MANIFEST).read_text())
    assert done["layers_done"] == 2 and all(name.startswith("L1.") for name in done["files"])


def test_checkpoint_of_another_query_or_damaged_is_refused(resumed, tmp_path):
    """NEXUS-RESUME: a directory holding another query's checkpoint, or a changed chunk file: CheckpointError."""
    run, bts, root, *_ = resumed
    with pytest.raises(ckp.CheckpointError, match="another query"):
        ckp.resumable_forward(run.ev, bts, run.model, run.cts, len(IDS), np.ones(len(IDS)), root)
    m = json.loads((root / ckp.MANIFEST).read_text())
    victim = root / next(iter(m["files"]))
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 1
    victim.write_bytes(bytes(raw))
    with pytest.raises(ckp.CheckpointError, match="SHA-256"):
        ckp.resumable_forward(run.ev, bts, run.model, run.cts, len(IDS), MASK, root)


if __name__ == "__main__":
    child(sys.argv[1])
