"""NEXUS-SEC-ARGMAX: the protocol's output is the Argmax selection vector (NEXUS §3.4): the client
learns the label and nothing more of the model's output; the logits only when the client asks
for them (reveal_logits) from a server that allows it.

Settings: the toy stand-in on toy-2^10-deep (insecure ring, real bootstrapping); oracle: the
float64 model of the same circuit (ToyModel.plain_logits)."""

import numpy as np
import pytest

from refimpl.nexus.protocol.client import Client
from refimpl.nexus.protocol.server import Server
from refimpl.nexus.protocol.transport import LocalTransport
from refimpl.nexus.protocol.wire import ProtocolError

MODEL, PARAMS = "toy", "toy-2^10-deep"
SENTENCE = "a gripping , moving and beautifully acted film"  # logits -0.87, 0.16: a clear winner


def test_default_output_is_the_argmax_selection_vector():
    server = Server(MODEL, PARAMS)
    client = Client(LocalTransport(server.session()), MODEL, PARAMS, seed=21)
    r = client.classify(SENTENCE)
    x, mask = client.model.embed(SENTENCE)
    plain = client.model.plain_logits(x, mask)
    assert r["output"] == "argmax" and r["logits"] is None
    want = np.zeros(2)
    want[int(np.argmax(plain))] = 1.0
    np.testing.assert_allclose(r["selection"], want, atol=0.05)  # one-hot: the label, not the logits
    assert r["label"] == client.model.labels[int(np.argmax(plain))]
    assert [b["block"] for b in r["trace"]][-1] == "argmax"

    asks = Client(LocalTransport(server.session()), MODEL, PARAMS, seed=22, reveal_logits=True)
    with pytest.raises(ProtocolError, match="--reveal-logits"):
        asks.classify(SENTENCE)
