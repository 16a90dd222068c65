"""Weights encoded once (refimpl.nexus.bert.weights_store): the store holds exactly the plaintexts the
forward encodes, at the plan's levels; a forward with the store gives the same ciphertexts as one
without; a store of other parameters, another model, another layout, another format version or
with a changed file is refused. With every token window active a diagonal's plaintext lies in
Z[X^(N/2w)]: the store keeps 2w coefficients and its expansion is Encoder.encode's plaintext.

Oracle: the forward without a store (same keys, same oracle-bootstrapper randomness: equal
ciphertexts, bit for bit). Small insecure ring (N = 2^10), oracle bootstrapping.
"""

import json

import numpy as np
import pytest

from refimpl.bert.config import BertConfig
from refimpl.bert.model import init_params
from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters
from refimpl.ckks.bootstrap.oracle import OracleBootstrapper
from refimpl.nexus import bert as nb
from refimpl.nexus.bert import weights_store as ws
from refimpl.ring.sampling import RandomSource

from .helpers import tiny_bert

IDS = np.array([3, 7, 11, 19, 23, 2])
MASK = np.array([1, 1, 1, 1, 1, 0])
LINEARS = ("query", "key", "value", "out", "ffn1.pairs", "ffn2.pairs")  # the FFN on chunk pairs (linear_pairs)


def tiny(attention="2quad-freediv", activation="quad", layers=2, seed=1):
    """The tiny BERT of the NEXUS tests (helpers.tiny_bert), with this file's defaults."""
    return tiny_bert(attention, activation, layers, seed)


class Run:
    """Keys, oracle bootstrapping and the client's inputs for the tiny model on N = 2^10."""

    def __init__(self, model, ids=IDS, mask=MASK):
        cfg = model.config
        self.model, self.ids, self.mask = model, ids, mask
        self.p, rc = bootstrap_parameters(1024, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)
        kg = KeyGenerator(self.p, RandomSource.insecure_seeded(5))
        self.sk = kg.secret_key()
        self.ev = Evaluator(self.p, kg.evaluation_keys(self.sk, rotations=nb.rotation_steps(cfg, len(ids), self.p.slots),
                                                       conjugate=True))  # the FFN on chunk pairs conjugates
        self.top = self.p.L - rc.depth
        self.enc = Encoder(self.p)
        self.lay = nb.input_layout(cfg, len(ids), self.p.slots)
        x = nb.client_embed(cfg, model.params, ids, mask)
        E = Encryptor(kg.public_key(self.sk), RandomSource.insecure_seeded(7))
        self.cts = [E.encrypt(self.enc.encode(v, level=self.top)) for v in nb.pack_input(x, self.lay)]

    def forward(self, **kw):
        bts = OracleBootstrapper(self.sk, output_level=self.top, rng=RandomSource.insecure_seeded(6))  # the same noise every run
        return nb.encrypted_forward(self.ev, bts, self.model, self.cts, len(self.ids), self.mask, **kw)

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
        piece = {"query": "qkv", "key": "qkv", "value": "qkv", "out": "out", "ffn1.pairs": "ffn1", "ffn2.pairs": "ffn2"}
        assert sorted(n for n, _ in rec) == sorted(f"L{i}.{w}" for i in range(2) for w in LINEARS)
        for (name, level), entries in rec.items():
            i, w = name[1:].split(".", 1)
            assert level == rows[f"L{i}.{piece[w]}"]["level_in"]
            cin = -(-lay.chunks(64) // 2) if w == "ffn2.pairs" else lay.chunks(32)  # FFN chunk pairs in, out
            cout = -(-lay.chunks(64) // 2) if w == "ffn1.pairs" else lay.chunks(32)
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
    for version in (1, ws.VERSION + 1):  # 1: the residues of the first format, no longer read
        m["version"] = version
        (copy / ws.MANIFEST).write_text(json.dumps(m))
        with pytest.raises(ws.StoreError, match=f"version {version}, this reader needs .* version {ws.VERSION}"):
            ws.WeightStore.open(copy, run.p, run.model)
    with pytest.raises(ws.StoreError, match="not a weight store"):
        ws.WeightStore.open(tmp_path, run.p, run.model)


IDS8 = np.array([3, 7, 11, 19, 23, 2, 5, 9])  # 8 tokens: every token window of N = 2^10 active
MASK8 = np.array([1, 1, 1, 1, 1, 1, 1, 0])


@pytest.fixture(scope="module")
def full_run():
    cfg, params = tiny(layers=1)
    return Run(nb.NexusModel(cfg, params), IDS8, MASK8)


def test_full_windows_make_sparse_plaintexts(full_run):
    """NEXUS-WEIGHTS-SPARSE: with every token window active, each diagonal's encoded plaintext (Encoder.encode,
    brought back to its coefficients) is zero outside the multiples of N/2w; the store keeps only those
    (2w per diagonal) and its expansion equals a fresh encoding bit for bit."""
    run = full_run
    p, lay = run.p, run.lay
    assert lay.n * lay.window == p.slots  # the windows are all active
    s = p.N // (2 * lay.window)
    assert s > 1
    lay_rec, rec = ws.record(run.model, p, len(IDS8), run.top, run.top)
    checked = 0
    for (name, level), entries in rec.items():
        basis = p.q_basis(level)
        for _, scale, values in entries[:: max(1, len(entries) // 7)]:
            pt = run.enc.encode(values(), level=level, scale=scale)
            coeff = p.ctx.intt(pt.poly, basis)
            off = np.ones(p.N, dtype=bool)
            off[::s] = False
            assert not coeff[:, off].any()  # zero residues: zero coefficients outside Z[X^s]
            c = ws.integer_coefficients(p, values(), scale)
            assert ws.stride_of(c) == s
            np.testing.assert_array_equal(ws.expand(c[::s].astype(np.int64), s, level, p), pt.poly)
            checked += 1
    assert checked > 20


def test_sparse_store_gives_the_same_ciphertexts(full_run, tmp_path):
    """NEXUS-WEIGHTS-SPARSE: the store of the 8-token forward keeps 2w coefficients per diagonal (8 bytes each),
    every file at stride N/2w; the forward with it returns the same ciphertexts as without, nothing encoded."""
    run = full_run
    m = ws.precompute(run.model, run.p, len(IDS8), tmp_path, input_level=run.top, bootstrap_level=run.top)
    w = run.lay.window
    assert {f["stride"] for f in m["files"].values()} == {run.p.N // (2 * w)}
    count = sum(f["count"] for f in m["files"].values())
    assert sum(np.load(tmp_path / f).nbytes for f in m["files"]) == count * 2 * w * 8
    store = ws.WeightStore.open(tmp_path, run.p, run.model)
    plain, stored = run.forward(), run.forward(weights=store)
    assert store.misses == 0 and store.hits == count
    for a, b in zip(plain[0].c, stored[0].c):
        np.testing.assert_array_equal(a, b)


def test_head_rows_layout_is_recorded():
    """NEXUS-WEIGHTS-STORE: the BERT-base-like layout (two heads per score ciphertext, the attention on head pairs)
    records its Q, K and V projections with complex outputs (refimpl.nexus.bert.qkv_packed) and every window-periodic
    diagonal at stride N/2w (N = 2^12)."""
    p, rc = bootstrap_parameters(4096, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)
    cfg = BertConfig(vocab_size=50, hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128,
                     max_position_embeddings=64, attention="2quad-freediv", activation="quad")
    model = nb.NexusModel(cfg, init_params(cfg, np.random.default_rng(0), dtype=np.float64))
    top = p.L - rc.depth
    lay, rec = ws.record(model, p, 32, top, top, head_rows=True)
    assert lay.head_rows and lay.n * lay.window == p.slots
    names = {name for name, _ in rec}
    assert {f"L0.{w}.packed" for w in ("query", "key", "value")} <= names  # qkv_packed
    assert {"L0.out.pairs", "L0.ffn1.pairs", "L0.ffn2.pairs"} <= names  # on chunk pairs (linear_pairs)
    for (name, level), entries in rec.items():
        _, scale, values = entries[-1]
        assert ws.stride_of(ws.integer_coefficients(p, values(), scale)) == p.N // (2 * lay.window)


def test_stride_of():
    """NEXUS-WEIGHTS-SPARSE: the largest power-of-two stride holding every nonzero coefficient."""
    c = np.zeros(64)
    assert ws.stride_of(c) == 32
    c[[0, 16, 48]] = 1
    assert ws.stride_of(c) == 16
    c[8] = 1
    assert ws.stride_of(c) == 8
    c[3] = -2
    assert ws.stride_of(c) == 1


def test_precompute_command_refuses_a_non_bert_model(tmp_path, capsys):
    """NEXUS-WEIGHTS-STORE: `refimpl nexus precompute` is registered; the protocol's toy model has no weights to store."""
    from refimpl.cli import main

    assert main(["nexus", "precompute", "--model", "toy", "--params", "toy-2^10", "--n", "4",
                 "--out", str(tmp_path / "s")]) == 2
    assert "BERT models only" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()
