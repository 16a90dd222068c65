"""The Galois keys of the forward from its dry run (refimpl.nexus.bert.keyset), keys read on use from disk
within a memory bound (refimpl.ckks.keystore), and the layer-by-layer real run (refimpl experiment
bertbase-run) killed and resumed at a tiny size.

The child process (`python -m tests.nexus.test_bertbase_run WORK JSON`) runs the command on a 2-layer
student of hidden size 32 on N = 2^10 with the real bootstrapper and waits after layer 0's record until
the test kills it (SIGKILL); the same command then finishes the run in this process.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from refimpl.bert.config import BertConfig
from refimpl.bert.model import init_params
from refimpl.ckks import Decryptor, Encoder, Encryptor, EvaluationKeys, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters
from refimpl.ckks.bootstrap.oracle import OracleBootstrapper
from refimpl.ckks.errors import MissingKeyError
from refimpl.ckks.keys import galois_element
from refimpl.ckks.keystore import KeyStore
from refimpl.cli import main as cli_main
from refimpl.experiments import bertbase as bb
from refimpl.experiments.bertbase import counts as bc
from refimpl.experiments.bertbase import realrun
from refimpl.nexus import bert as nb
from refimpl.nexus.bert.keyset import forward_key_levels, merged
from refimpl.nexus.bert.weights_store import WeightStore, precompute
from refimpl.nexus.protocol import Server
from refimpl.nexus.protocol.models import NexusBert
from refimpl.ring.sampling import RandomSource

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--model", "student", "--preset", "toy-2^10-deep", "--n", "16", "--layers", "2", "--hidden", "32", "--heads",
        "4", "--intermediate", "128"]


@pytest.fixture(scope="module")
def ring():
    return bootstrap_parameters(1024, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)


def test_forward_runs_on_exactly_the_dry_runs_keys(ring):
    """NEXUS-BERT-KEYSET: the keys of the dry run, each at its level, and no other, carry the real forward (a
    missing or too-low key would raise); rotation_steps lists keys it never uses, and they are not made."""
    p, rc = ring
    top = p.L - rc.depth
    cfg = bb.config("2quad-freediv-quad", layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=128)
    model = nb.NexusModel(cfg, bc.random_weights(cfg, embeddings=True, std=0.02), ranges=bb.widest_ranges(
        bb.shipped_ranges("2quad-freediv-quad"), 1))
    n = 16
    levels = forward_key_levels(model, n, p, top, top, head_rows=True)
    listed = {galois_element(p, r) for r in nb.rotation_steps(cfg, n, p.slots, head_rows=True) if r % p.slots}
    assert listed - set(levels), "rotation_steps lists keys the forward does not use"
    assert max(levels.values()) <= top and min(levels.values()) < top  # keys at the levels they serve
    kg = KeyGenerator(p, RandomSource.insecure_seeded(3))
    sk = kg.secret_key()
    ev = Evaluator(p, kg.evaluation_keys(sk, elements=list(levels), levels=levels))
    assert set(ev.keys.galois) == set(levels)
    assert not (listed - set(levels)) & set(ev.keys.galois)
    assert all(ev.keys.galois[k].level == lv for k, lv in levels.items())
    ids = np.random.default_rng(2).integers(1, cfg.vocab_size, n)
    mask = np.ones(n)
    lay = nb.input_layout(cfg, n, p.slots, head_rows=True)
    enc, E = Encoder(p), Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(4))
    cts = [E.encrypt(enc.encode(v, level=top)) for v in nb.pack_input(nb.client_embed(cfg, model.params, ids, mask), lay)]
    bts = OracleBootstrapper(sk, output_level=top, rng=RandomSource.insecure_seeded(5))
    (z,) = nb.encrypted_forward(ev, bts, model, cts, n, mask, head_rows=True)
    logits = nb.unpack_output([enc.decode(Decryptor(sk).decrypt(z)).real], lay, cfg.num_labels)
    ref = nb.plaintext_reference(model, ids, mask, approximate=True)["logits"]
    assert np.max(np.abs(logits - ref)) < 1e-3
    assert merged(levels, {1: 0, next(iter(levels)): top + 1})[next(iter(levels))] == top + 1


def test_store_releases_a_finished_layers_pages(ring, tmp_path):
    """NEXUS-BERT-RUN: WeightStore.release drops the pages of one layer's files from the process (a long run's
    resident size holds only the layers it works on); a plaintext read again after it is the same."""
    p, rc = ring
    top = p.L - rc.depth
    cfg = bb.config("2quad-freediv-quad", layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=128)
    model = nb.NexusModel(cfg, bc.random_weights(cfg, std=0.02), ranges=bb.widest_ranges(
        bb.shipped_ranges("2quad-freediv-quad"), 2))
    precompute(model, p, 16, tmp_path, input_level=top, bootstrap_level=top, head_rows=True)
    store = WeightStore.open(tmp_path, p, model)
    key = next(k for k in store.index if k[0].startswith("L0."))
    before = store.plaintext(key[:-1], key[-1]).poly.copy()
    n0 = sum(f.startswith("L0.") for f in store.arrays)
    assert 0 < n0 < len(store.arrays) and store.release("L0.") == n0
    assert np.array_equal(store.plaintext(key[:-1], key[-1]).poly, before)


def test_server_asks_for_the_forwards_keys_only():
    """NEXUS-BERT-KEYSET: the server's SETUP asks a BERT client for the dry run's keys at their levels (beside
    bootstrapping's), not for every step rotation_steps lists at the bootstrapping output level."""
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=16, attention="2quad-freediv", activation="quad", num_labels=2)
    model = NexusBert("tiny", cfg, init_params(cfg, np.random.default_rng(0)), lambda s: (np.arange(1, 9), np.ones(8)))
    server = Server(model, "toy-2^10-deep")
    p, top = server.params, server.output_level
    need = server.needed_levels(8, compress=False, argmax=True)
    assert need == merged(server.boot_levels, forward_key_levels(model.model, 8, p, top, top, argmax=True))
    listed = {galois_element(p, r) for r in model.rotation_steps(8, p.slots) if r % p.slots}
    assert listed - set(need)
    assert any(lv < top for k, lv in need.items() if k not in server.boot_levels)


def test_key_store_reads_on_use_within_its_bound(ring, tmp_path):
    """NEXUS-BERT-KEYSET: keys written one file each come back equal (b + seeds), at most `limit` bytes held
    (least recently used dropped), the store's key id is its secret's, and an absent key is a MissingKeyError."""
    p, _ = ring
    kg = KeyGenerator(p, RandomSource.insecure_seeded(8), expand_keys=False)
    sk = kg.secret_key()
    keys = {galois_element(p, r): kg.galois_key(sk, galois_element(p, r), level=lv) for r, lv in ((1, 5), (2, 5), (4, 5))}
    for k, key in keys.items():
        KeyStore.write(tmp_path, k, key)
    one = max(key.nbytes for key in keys.values())
    store = KeyStore(tmp_path, p, limit_bytes=2 * one)
    assert sorted(store) == sorted(keys) and store.key_id == sk.key_id
    for k in [*keys, *keys]:
        got = store[k]
        assert got.level == keys[k].level and got.a_seeds == keys[k].a_seeds and not got.expand
        assert all(np.array_equal(x, y) for x, y in zip(got.b, keys[k].b))
        assert store.held_bytes <= 2 * one
    assert store.loads > len(keys) and store.peak_bytes <= 2 * one  # 3 keys through room for 2: some read again
    ev = Evaluator(p, EvaluationKeys(relin=kg.relin_key(sk), galois=store))
    ct = Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(9)).encrypt(Encoder(p).encode(np.arange(4.0), level=3))
    assert np.allclose(Encoder(p).decode(Decryptor(sk).decrypt(ev.rotate(ct, 1))).real[:3], [1, 2, 3], atol=1e-3)
    with pytest.raises(MissingKeyError):
        ev.rotate(ct, 3)


def child(work: str, out: str) -> None:
    """The command; after layer 0's record, wait to be killed."""
    def hold(i):
        if i == 0:
            print("layer 0 recorded", flush=True)
            time.sleep(600)

    realrun.after_record = hold
    cli_main(["experiment", "bertbase-run", *TINY, "--work", work, "--json", out])


def test_a_layer_beyond_the_tolerance_stops_the_run():
    """NEXUS-BERT-RUN: a layer whose decrypted output is farther from the float64 model than the tolerance raises
    (the command logs it and exits 1) instead of feeding the next layer; within it, nothing happens."""
    realrun.check_layer({"layer": 3, "max_abs_err_vs_model": 0.04}, 0.05)
    with pytest.raises(realrun.LayerCheckFailed, match="layer 3: decrypted output 1.41 from the float64 model"):
        realrun.check_layer({"layer": 3, "max_abs_err_vs_model": 1.41}, 0.05)
    with pytest.raises(realrun.LayerCheckFailed):
        realrun.check_layer({"layer": 0, "max_abs_err_vs_model": float("nan")}, 0.05)


@pytest.mark.slow
def test_real_run_killed_and_resumed(tmp_path):
    """NEXUS-BERT-RUN: the command at a tiny size, killed (SIGKILL) after layer 0's record and run again: the
    second process makes no keys and no store, computes only layer 1 and the head, and every layer's decrypted
    output is within 1e-2 of the float64 model of that layer."""
    work, out = tmp_path / "work", tmp_path / "run.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "tests.nexus.test_bertbase_run", str(work), str(out)], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.strip() == "layer 0 recorded":
                break
        else:
            pytest.fail(proc.stderr.read())
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    first = json.loads(out.read_text())
    assert [r["layer"] for r in first["layers"]] == [0] and "head" not in first
    secret = (work / "keys" / "secret.npy").stat().st_mtime_ns
    assert cli_main(["experiment", "bertbase-run", *TINY, "--work", str(work), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert [r["layer"] for r in res["layers"]] == [0, 1] and res["head"]
    assert res["layers"][0]["pid"] != res["layers"][1]["pid"] == os.getpid()
    assert len(res["sessions"]) == 2 and not res["sessions"][1]["store_precomputed_now"]
    assert (work / "keys" / "secret.npy").stat().st_mtime_ns == secret
    assert all(r["max_abs_err_vs_model"] < 1e-2 for r in res["layers"])
    assert all(r["bootstraps"] > 0 and r["key_switches"] > 0 for r in res["layers"])
    assert res["head"]["max_abs_err_vs_model"] < 1e-2
    assert sorted(int(k) for k in json.loads((work / "keys" / "keyset.json").read_text())["all"]) == \
        sorted(int(p.stem[1:]) for p in (work / "keys" / "galois").glob("g*.mkey"))
    assert "| 1 |" in realrun.table(res) and res["derived_cpu_s"] is None  # no derived time at this size
    base = realrun.derived_seconds("2quad-freediv-quad", "128-2^16-dense19", 128, 12, {})
    assert len(base["per_layer"]) == 12 and base["per_layer"][1] > 0
    assert f"| 1 | 9 | 9 | {base['per_layer'][1]:,.0f} |" in realrun.table(
        {"derived_cpu_s": base, "layers": [{"layer": 1, "wall_s": 9, "cpu_s": 9}]})


if __name__ == "__main__":
    child(sys.argv[1], sys.argv[2])
