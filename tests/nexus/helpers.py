"""Small insecure parameter sets and keys for the NEXUS tests (N = 2^10 .. 2^12)."""

import numpy as np

from refimpl.bert.config import BertConfig
from refimpl.bert.model import init_params
from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator, Parameters
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters
from refimpl.ckks.bootstrap.oracle import OracleBootstrapper
from refimpl.nexus import bert as nb
from refimpl.nexus.bert import weights_store as ws
from refimpl.nexus.counting import CountingEvaluator
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


def small_forward(attention, activation, options: dict, layers: int = 1, store=None, intermediate: int = 64) -> dict:
    """The small encrypted forward of `tiny_bert` (N = 2^10, P = 32, oracle bootstrapping, fixed seeds, n = 6 with one
    padded token) with the NexusModel `options`: a dict of the logits, the float64 model's, the trace, the store,
    the output ciphertext, the model, the layout, the parameters, the bootstrap level and the mask."""
    p, rc = bootstrap_parameters(1024, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)
    cfg, params = tiny_bert(attention, activation, layers, intermediate=intermediate)
    model = nb.NexusModel(cfg, params, options=options)
    rng = np.random.default_rng(2)
    n = 6
    ids, mask = rng.integers(1, 50, n), np.r_[np.ones(n - 1), np.zeros(1)]
    lay = nb.input_layout(cfg, n, p.slots)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(3))
    sk = kg.secret_key()
    ev = CountingEvaluator(Evaluator(p, kg.evaluation_keys(sk, rotations=nb.rotation_steps(cfg, n, p.slots),
                                                           conjugate=True)))
    top = p.L - rc.depth
    bts = OracleBootstrapper(sk, output_level=top, rng=RandomSource.insecure_seeded(5))
    enc = Encoder(p)
    E = Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(4))
    cts = [E.encrypt(enc.encode(v, level=top)) for v in nb.pack_input(nb.client_embed(cfg, params, ids, mask), lay)]
    if store is not None:
        ws.precompute(model, p, n, store, input_level=top, bootstrap_level=top)
        store = ws.WeightStore.open(store, p, model)
    trace: list = []
    (z,) = nb.encrypted_forward(ev, bts, model, cts, n, mask, trace=trace, weights=store)
    logits = nb.unpack_output([enc.decode(Decryptor(sk).decrypt(z)).real], lay, cfg.num_labels)
    ref = nb.plaintext_reference(model, ids, mask, approximate=True)["logits"]
    return {"logits": logits, "ref": ref, "trace": trace, "store": store, "out": z, "model": model, "lay": lay,
            "params": p, "top": top, "mask": mask}
