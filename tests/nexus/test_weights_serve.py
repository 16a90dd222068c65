"""The NEXUS server with a weight store (`refimpl nexus serve --weights DIR`, Server.use_weights):
a query over the protocol's real frames gives the same result with and without the store, the
diagonals taken from it; a store made for another model, other parameters, another format version
or another layout is refused when the server opens it, with one error naming what differs.

Settings: a tiny BERT (1 layer, hidden 32, 2 heads, FFN 64; 2Quad-freeDiv + Quad) saved as a model
directory, 8 tokens (every token window active: the store keeps 2w coefficients per diagonal), on
the insecure deep toy ring toy-2^10-deep with real bootstrapping. Oracle: the same query without
the store (same client seed: the same keys and ciphertexts, so the same result bit for bit).
"""

import json

import numpy as np
import pytest

from refimpl.bert import weights
from refimpl.bert.config import BertConfig
from refimpl.bert.model import init_params
from refimpl.cli import main as cli_main
from refimpl.nexus.bert import weights_store as ws
from refimpl.nexus.protocol.client import Client
from refimpl.nexus.protocol.models import NexusBert
from refimpl.nexus.protocol.server import Server
from refimpl.nexus.protocol.transport import LocalTransport

PARAMS = "toy-2^10-deep"
WORDS = ("good", "bad", "film", "plot", "acted", "dull")
SENTENCE = "good film , dull plot acted"  # [CLS] + 6 + [SEP] = 8 tokens: every window of N = 2^10 active


def tiny_dir(path, seed=1):
    """A model directory (config.json, model.safetensors, vocab.txt) of a tiny BERT classifier."""
    cfg = BertConfig(vocab_size=16, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=16, num_labels=2, attention="2quad-freediv", activation="quad")
    rng = np.random.default_rng(seed)
    params = init_params(cfg, rng, dtype=np.float32)
    weights.save(path, cfg, params)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ",", *WORDS]
    (path / "vocab.txt").write_text("\n".join(vocab + [f"[unused{i}]" for i in range(16 - len(vocab))]) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The model directory, a store for it at n = 8, and one query's results without and with the store."""
    root = tmp_path_factory.mktemp("weights_serve")
    model_dir = tiny_dir(root / "tiny")
    store = root / "store"
    assert cli_main(["nexus", "precompute", "--model", model_dir, "--params", PARAMS, "--n", "8",
                     "--out", str(store)]) == 0
    results = {}
    for which in ("without", "with"):
        server = Server(model_dir, PARAMS, reveal_logits=True)
        if which == "with":
            server.use_weights(store)
        client = Client(LocalTransport(server.session()), model_dir, PARAMS, seed=5, reveal_logits=True)
        results[which] = (client.classify(SENTENCE), server)
    return model_dir, store, results


def test_serve_with_the_store_gives_the_same_result(served):
    """NEXUS-WEIGHTS-SERVE: the same logits bit for bit with and without the store; every diagonal from it."""
    model_dir, store, results = served
    (plain, _), (stored, server) = results["without"], results["with"]
    assert NexusBert.from_dir(model_dir).encode(SENTENCE)[0].size == 8
    assert stored["logits"] == plain["logits"] and stored["label"] == plain["label"]
    count = sum(f["count"] for f in json.loads((store / ws.MANIFEST).read_text())["files"].values())
    assert server.weights.hits == count > 0 and server.weights.misses == 0
    assert all(f["stride"] == 8 for f in server.weights.manifest["files"].values())  # N / 2w = 1024 / 128


def test_serve_refuses_a_foreign_store(served, tmp_path, capsys):
    """NEXUS-WEIGHTS-SERVE: another model, other parameters, another version, another layout: refused
    when the server opens the store (Server.use_weights, and `nexus serve --weights` exits 2 before listening)."""
    model_dir, store, _ = served
    other = tiny_dir(tmp_path / "other", seed=2)
    with pytest.raises(ws.StoreError, match="another model"):
        Server(other, PARAMS).use_weights(store)
    with pytest.raises(ws.StoreError, match="other parameters"):
        Server(model_dir, "toy-2^10-dense").use_weights(store)
    copy = tmp_path / "copy"
    copy.mkdir()
    for f in store.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    m = json.loads((copy / ws.MANIFEST).read_text())
    m["layout"]["n"] = 7
    (copy / ws.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ws.StoreError, match="layout"):
        Server(model_dir, PARAMS).use_weights(copy)
    m["version"] = 1
    (copy / ws.MANIFEST).write_text(json.dumps(m))
    with pytest.raises(ws.StoreError, match="version 1"):
        Server(model_dir, PARAMS).use_weights(copy)
    with pytest.raises(ws.StoreError, match="BERT models only"):
        Server("toy", PARAMS).use_weights(store)
    capsys.readouterr()
    assert cli_main(["nexus", "serve", "--model", other, "--params", PARAMS, "--insecure-no-tls",
                     "--weights", str(store)]) == 2
    err = capsys.readouterr().err
    assert "another model" in err and "Traceback" not in err
