"""Weights encoded once (refimpl.nexus.bert.weights_store): the store holds exactly the plaintexts the
forward encodes, at the plan's levels; a forward with the store gives the same ciphertexts as one
without; a store of other parameters, another model, another layout, another format version or
with a changed file is refused.

Oracle: the forward without a store (same keys, same oracle-bootstrapper randomness: equal
ciphertexts, bit for bit). Small insecure ring (N = 2^10), oracle bootstrapping.
"""

import json

import numpy as np
import pytest

from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters
from refimpl.ckks.bootstrap.oracle import OracleBootstrapper
from refimpl.nexus import bert as nb
from refimpl.nexus.bert import weights_store as ws
from refimpl.ring.sampling import RandomSource

from .helpers import tiny_bert

IDS = np.array([3, 7, 11, 19, 23, 2])
MASK = np.array([1, 1, 1, 1, 1, 0])
LINEARS = ("query", "key", "value", "out", "ffn1", "ffn2")


def tiny(attention="2quad-freediv", activation="quad", layers=2, seed=1):
    """The tiny BERT of the NEXUS tests (helpers.tiny_bert), with this file's defaults."""
    return tiny_bert(attention, activation, layers, seed)


class Run:
    """Keys, oracle bootstrapping and the client's inputs for the tiny model on N = 2^10."""

    def __init__(self, model):
        cfg = model.config
        self.model = model
        self.p, rc = bootstrap_parameters(1024, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)
        kg = KeyGenerator(self.p, RandomSource.insecure_seeded(5))
        self.sk = kg.secret_key()
        self.ev = Evaluator(self.p, kg.evaluation_keys(self.sk, rotations=nb.rotation_steps(cfg, len(IDS), self.p.slots)))
        self.top = self.p.L - rc.depth
        self.enc = Encoder(self.p)
        self.lay = nb.input_layout(cfg, len(IDS), self.p.slots)
        x = nb.client_embed(cfg, model.params, IDS, MASK)
        E = Encryptor(kg.public_key(self.sk), RandomSource.insecure_seeded(7))
        self.cts = [E.encrypt(self.enc.encode(v, level=self.top)) for v in nb.pack_input(x, self.lay)]

    def forward(self, **kw):
        bts = OracleBootstrapper(self.sk, output_level=self.top, rng=RandomSource.insecure_seeded(6))  # the same noise every run
        return nb.encrypted_forward(self.ev, bts, self.model, self.cts, len(IDS), MASK, **kw)

    def logits(self, out):
        return nb.unpack_output([self.enc.decode(Decryptor(self.sk).decrypt(out[0])).real], self.lay, 2)


@pytest.fixture(scope="module")
def run():
    cfg, params = tiny(layers=1)
    return Run(nb.NexusModel(cfg, params))


@pytest.fixture(scope="module")
def store_dir(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("weights")
    ws.precompute(run.model, run.p, len(IDS), out, input_level=run.top, bootstrap_level=run.top)
    return out


def test_recorded_plaintexts_are_the_plans(run):
    """NEXUS-WEIGHTS-STORE: every linear layer's nonzero diagonals, each at the level its piece enters
    in the bootstrapping plan, for both model kinds."""
    for att, act in (("2quad-freediv", "quad"), ("softmax", "gelu")):
        cfg, params = tiny(att, act)
        model = nb.NexusModel(cfg, params)
        lay, rec = ws.record(model, run.p, len(IDS), run.top, run.top)
        rows = {r["block"]: r for r in nb.plan(model, len(IDS), run.p, bootstrap_level=run.top)}
        piece = {"query": "qkv", "key": "qkv", "value": "qkv", "out": "out", "ffn1": "ffn1", "ffn2": "ffn2"}
        assert sorted(n for n, _ in rec) == sorted(f"L{i}.{w}" for i in range(2) for w in LINEARS)
        for (name, level), entries in rec.items():
            i, w = name[1:].split(".")
            assert level == rows[f"L{i}.{piece[w]}"]["level_in"]
            cin = lay.chunks(64 if w == "ffn2" else 32)
            cout = lay.chunks(64 if w == "ffn1" else 32)
            assert len(entries) <= cin * cout * lay.chunk and len(entries) > cin * cout * lay.chunk // 2
            assert len({k for k, _, _ in entries}) == len(entries)


def test_store_gives_the_same_ciphertexts(run, store_dir):
    """NEXUS-WEIGHTS-STORE: the forward with the store attached returns the same ciphertexts as without
    (every plaintext from the store, none encoded), and the same logits."""
    store = ws.WeightStore.open(store_dir, run.p, run.model)
    plain = run.forward()
    stored = run.forward(weights=store)
    assert store.misses == 0 and store.hits == sum(f["count"] for f in store.manifest["files"].values())
    for a, b in zip(plain[0].c, stored[0].c):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(run.logits(plain), run.logits(stored))
    files = list(store_dir.glob("*.npy"))
    assert len(files) == len(LINEARS) and store.nbytes == sum(f.stat().st_size for f in files)


def test_store_refused_when_it_does_not_match(run, store_dir, tmp_path):
    """NEXUS-WEIGHTS-STORE: other parameters, another model (or ranges), another layout, another format
    version or a changed file: one StoreError saying which."""
    other_p, _ = bootstrap_parameters(2048, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)
    with pytest.raises(ws.StoreError, match="other parameters"):
        ws.WeightStore.open(store_dir, other_p, run.model)
    cfg, params = tiny(layers=1, seed=2)
    with pytest.raises(ws.StoreError, match="another model"):
        ws.WeightStore.open(store_dir, run.p, nb.NexusModel(cfg, params))
    store = ws.WeightStore.open(store_dir, run.p, run.model, verify=False)
    with pytest.raises(ws.StoreError, match="layout"):
        nb.encrypted_forward(run.ev, None, run.model, run.cts, 5, MASK[:5], weights=store)
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in store_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    victim = sorted(copy.glob("*.npy"))[0]
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 1
    victim.write_bytes(bytes(raw))
    with pytest.raises(ws.StoreError, match="SHA-256"):
        ws.WeightStore.open(copy, run.p, run.model)
    m = json.loads((copy / ws.MANIFEST).read_text())
    m["version"] = ws.VERSION + 1
    (copy / ws.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ws.StoreError, match="version"):
        ws.WeightStore.open(copy, run.p, run.model)
    with pytest.raises(ws.StoreError, match="not a weight store"):
        ws.WeightStore.open(tmp_path, run.p, run.model)


def test_precompute_command_refuses_a_non_bert_model(tmp_path, capsys):
    """NEXUS-WEIGHTS-STORE: `refimpl nexus precompute` is registered; the protocol's toy model has no weights to store."""
    from refimpl.cli import main

    assert main(["nexus", "precompute", "--model", "toy", "--params", "toy-2^10", "--n", "4",
                 "--out", str(tmp_path / "s")]) == 2
    assert "BERT models only" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
