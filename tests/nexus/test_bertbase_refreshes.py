"""The Softmax and GELU refresh savings of the encrypted BERT (ours; refimpl.nexus.bert.packing, .paired) on a real
small ring (N = 2^10, oracle refreshes) against the previous path (NexusModel options off) and the float64 model:
the scores carried divided by 2B, the running maxima packed after each QuickMax round, the paired GELU outputs
refreshed together."""

import numpy as np
import pytest

from refimpl.bert.config import BertConfig
from refimpl.bert.model import init_params
from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters
from refimpl.ckks.bootstrap.oracle import OracleBootstrapper
from refimpl.nexus import bert as nb
from refimpl.nexus.counting import CountingBootstrapper, CountingEvaluator
from refimpl.ring.sampling import RandomSource

PREVIOUS = {"score_prescale": False, "softmax_pack": False, "gelu_pair_refresh": False}


@pytest.fixture(scope="module")
def ring():
    return bootstrap_parameters(1024, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)


def model_of(options: dict, seed: int = 1) -> nb.NexusModel:
    """1 layer, hidden 32, 8 heads of 4 (4 score ciphertexts, two heads each), FFN 128 (4 chunks of 32, 2 GELU pairs)."""
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=8, intermediate_size=128,
                     max_position_embeddings=16, attention="softmax", activation="gelu")
    rng = np.random.default_rng(seed)
    params = init_params(cfg, rng, dtype=np.float64)
    for k in params:
        if "LayerNorm" not in k and "embeddings" not in k:
            params[k] = params[k] * 10 if k.endswith("weight") else rng.normal(0, 0.1, params[k].shape)
    ranges = {"score_bound": 8.0, "var": {"L0.ln1": (0.5, 4.0), "L0.ln2": (0.5, 4.0)}, "act": (-6.0, 6.0), "absmax": {}}
    return nb.NexusModel(cfg, params, ranges=ranges, options=options)


def run(ring, model):
    """The forward on the real evaluator (oracle refreshes): (logits, layer-0 output chunks decrypted, trace, bootstraps)."""
    p, rc = ring
    cfg, n = model.config, 12
    rng = np.random.default_rng(2)
    ids, mask = rng.integers(1, 50, n), np.r_[np.ones(n - 2), np.zeros(2)]
    lay = nb.input_layout(cfg, n, p.slots, head_rows=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(3))
    sk = kg.secret_key()
    ev = CountingEvaluator(Evaluator(p, kg.evaluation_keys(sk, rotations=nb.rotation_steps(cfg, n, p.slots, head_rows=True),
                                                           conjugate=True)))
    bts = CountingBootstrapper(OracleBootstrapper(sk, output_level=p.L - rc.depth, rng=RandomSource.insecure_seeded(5)))
    enc, E, D = Encoder(p), Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(4)), Decryptor(sk)
    x = nb.client_embed(cfg, model.params, ids, mask)
    cts = [E.encrypt(enc.encode(v, level=bts.output_level)) for v in nb.pack_input(x, lay)]
    trace, taps = [], {}
    (z,) = nb.encrypted_forward(ev, bts, model, cts, n, mask, trace=trace, taps=taps, head_rows=True)
    dec = lambda c: enc.decode(D.decrypt(c)).real  # noqa: E731
    logits = nb.unpack_output([dec(z)], lay, cfg.num_labels)
    layer0 = nb.unpack([dec(c) for c in taps["L0"]], lay, cfg.hidden_size)
    ref = nb.plaintext_reference(model, ids, mask, approximate=True)
    return logits, layer0, ref, trace, ev


@pytest.fixture(scope="module")
def new(ring):
    """The default design's forward, shared by the tests below (each compares it with one option off)."""
    return run(ring, model_of({}))


def test_new_refreshes_against_the_previous_path_and_the_float64_model(ring, new):
    """NEXUS-BERT-REFRESHES: with the scores divided by 2B, the packed QuickMax and the paired GELU refresh (the
    defaults) the layer's output and the logits equal the float64 model (the same approximations) as closely as
    the previous path's do (within 1e-3, and no worse than twice the previous error + 1e-5), with fewer refreshed
    ciphertexts, bootstraps and key switches in Softmax and GELU."""
    old = run(ring, model_of(PREVIOUS))
    errs = {}
    for name, (logits, layer0, ref, trace, _) in (("new", new), ("old", old)):
        errs[name] = (np.max(np.abs(logits - ref["logits"])), np.max(np.abs(layer0 - ref["hidden"][1])))
        assert errs[name][0] < 1e-3 and errs[name][1] < 1e-2, (name, errs[name])
    for k in range(2):
        assert errs["new"][k] <= 2 * errs["old"][k] + 1e-5, errs
    np.testing.assert_allclose(new[0], old[0], atol=1e-3)

    def per_kind(trace, kind):
        rows = [r for r in trace if r["block"].startswith(f"L0.{kind}")]
        return sum(r["bootstraps"] for r in rows), sum(r["counts"].get("key_switches", 0) for r in rows)

    for kind in ("softmax", "gelu"):  # GELU's refresh is the previous path's FFN2 refresh, moved: the totals below
        (b_new, ks_new), (b_old, ks_old) = per_kind(new[3], kind), per_kind(old[3], kind)
        assert ks_new < ks_old and (kind == "gelu" or b_new < b_old), (kind, ks_new, ks_old, b_new, b_old)
    nb_new = sum(r["bootstraps"] for r in new[3])
    nb_old = sum(r["bootstraps"] for r in old[3])
    assert nb_new < nb_old
    rounds = [r["ciphertexts"] for r in new[3] if r["block"].startswith("L0.softmax.round")]
    assert rounds == [2, 1, 1, 1]  # leaving each round: 4 score ciphertexts packed to 2 after round 0, to 1 after round 1


def test_shared_spreads_against_the_previous_spreads(ring, new):
    """NEXUS-SPREAD-SHARED: the paired Softmax's spreads with shared coarse copies (packing.spread_many, the default)
    against one spread per value (option spread_shared off): 4 score ciphertexts, whose maxima and row sums sit 4 per
    ciphertext, rows of 16: 2 + 4 x 2 = 10 rotations per spread instead of 4 x 4 + 3 = 19, 18 key switches fewer
    in Softmax, the same refreshes and levels out of Softmax; the logits equal within 1e-4 and the float64 model's
    within 1e-3."""
    old = run(ring, model_of({"spread_shared": False}))
    np.testing.assert_allclose(new[0], old[0], atol=1e-4)
    assert np.max(np.abs(new[0] - new[2]["logits"])) < 1e-3
    ks = [sum(r["counts"].get("key_switches", 0) for r in t[3] if ".softmax" in r["block"]) for t in (new, old)]
    assert ks[1] - ks[0] == 18
    assert sum(r["bootstraps"] for r in new[3]) == sum(r["bootstraps"] for r in old[3])
    out = [next(r["level_out"] for r in t[3] if r["block"] == "L0.softmax.normalize") for t in (new, old)]
    assert out[0] == out[1]


def test_packed_sum_folds_against_the_previous_sums(ring, new):
    """NEXUS-SUMS-PACKED: the paired Softmax's row sums folded packed (packing.packed_fold, the default) against
    QuickSum on each score ciphertext and pack_first (option sums_pack off): 4 score ciphertexts, rows of 16:
    4 + 2 + 1 + 1 + 3 = 11 rotations instead of 16 + 3 = 19, the same refreshes; the logits equal within 1e-4."""
    old = run(ring, model_of({"sums_pack": False}))
    np.testing.assert_allclose(new[0], old[0], atol=1e-4)
    ks = [sum(r["counts"].get("key_switches", 0) for r in t[3] if ".softmax" in r["block"]) for t in (new, old)]
    assert ks[1] - ks[0] == 8
    assert sum(r["bootstraps"] for r in new[3]) == sum(r["bootstraps"] for r in old[3])
