"""Small insecure parameter sets and keys for the NEXUS tests (N = 2^10 .. 2^12)."""

import numpy as np

from refimpl.bert.config import BertConfig
from refimpl.bert.model import init_params
from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters
from refimpl.ring.sampling import RandomSource


class Kit:
    """One parameter set with keys (only the Galois elements asked for) and helpers."""

    def __init__(self, params: Parameters, rotations=(), elements=(), seed=1):
        self.p = params
        self.kg = KeyGenerator(params, RandomSource.insecure_seeded(seed))
        self.sk = self.kg.secret_key()
        self.pk = self.kg.public_key(self.sk)
        self.ek = self.kg.evaluation_keys(self.sk, rotations=rotations, elements=elements)
        self.enc = Encoder(params)
        self.E = Encryptor(self.pk, RandomSource.insecure_seeded(seed + 1))
        self.D = Decryptor(self.sk)
        self.ev = Evaluator(params, self.ek)
        self.rng = np.random.default_rng(seed)

    def encrypt(self, z, **kw):
        return self.E.encrypt(self.enc.encode(z, **kw))

    def decrypt(self, ct):
        """Real parts of the slots."""
        return self.enc.decode(self.D.decrypt(ct)).real


def bits(err) -> float:
    """Precision in bits: -log2 of the max absolute error."""
    return float(-np.log2(np.max(np.abs(err)) + 1e-300))


def tiny_bert(attention="softmax", activation="gelu", layers=1, seed=1, intermediate=64):
    """A tiny BERT (config, float64 parameters): hidden 32, 2 heads of 16, intermediate 64 (or `intermediate`);
    weights N(0, 0.2^2) so that activations are O(1)."""
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=intermediate, max_position_embeddings=16, attention=attention, activation=activation)
    rng = np.random.default_rng(seed)
    params = init_params(cfg, rng, dtype=np.float64)
    for k in params:
        if "LayerNorm" in k or "embeddings" in k:
            continue
        params[k] = params[k] * 10 if k.endswith("weight") else rng.normal(0, 0.1, params[k].shape)
    return cfg, params
