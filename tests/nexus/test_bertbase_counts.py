"""Counts per block (key switches, bootstraps, plaintext products and encodings) of the encrypted BERT forward:
the no-arithmetic DryEvaluator against a CountingEvaluator on the real evaluator (a real small layer), pinned
counts of the design at a small size and at BERT-base size, and the lazily relinearized P V and the shared QKV
baby steps against the previous path (the oracle)."""

from __future__ import annotations

import numpy as np
import pytest

from refimpl.bert.config import BertConfig
from refimpl.bert.model import init_params
from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters, bootstrap_preset
from refimpl.ckks.bootstrap.oracle import OracleBootstrapper
from refimpl.experiments import bertbase as bb
from refimpl.experiments.bertbase import counts as bc
from refimpl.nexus import bert as nb
from refimpl.nexus.bert import attention as at
from refimpl.nexus.counting import CountingBootstrapper, CountingEvaluator, DryBootstrapper, DryEvaluator
from refimpl.ring.sampling import RandomSource


def ranges(layers, bound=8.0):
    """Hand-set ranges (NexusModel.get_ranges format), as tests/nexus/test_bertbase.py."""
    return {"score_bound": bound, "var": {f"L{i}.ln{j}": (0.5, 4.0) for i in range(layers) for j in (1, 2)},
            "act": (-6.0, 6.0), "absmax": {}}


@pytest.fixture(scope="module")
def ring():
    return bootstrap_parameters(1024, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)


def small_model(attention, activation, seed=1):
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=64,
                     max_position_embeddings=16, attention=attention, activation=activation)
    rng = np.random.default_rng(seed)
    params = init_params(cfg, rng, dtype=np.float64)
    for k in params:
        if "LayerNorm" not in k and "embeddings" not in k:
            params[k] = params[k] * 10 if k.endswith("weight") else rng.normal(0, 0.1, params[k].shape)
    return cfg, params, nb.NexusModel(cfg, params)


def real_run(ring, attention, activation, diagonal=True):
    """The small head_rows forward on the real evaluator behind a CountingEvaluator: (logits, trace, ev, bts)."""
    p, rc = ring
    cfg, params, model = small_model(attention, activation)
    n = 12 if attention == "softmax" else 16
    rng = np.random.default_rng(2)
    ids, mask = rng.integers(1, 50, n), np.r_[np.ones(n - 2), np.zeros(2)]
    lay = nb.input_layout(cfg, n, p.slots, head_rows=True)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(3))
    sk = kg.secret_key()
    ev = CountingEvaluator(Evaluator(p, kg.evaluation_keys(sk, rotations=nb.rotation_steps(cfg, n, p.slots,
                                                                                            head_rows=True),
                                                                  conjugate=True)))
    bts = CountingBootstrapper(OracleBootstrapper(sk, output_level=p.L - rc.depth, rng=RandomSource.insecure_seeded(5)))
    enc, E, D = Encoder(p), Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(4)), Decryptor(sk)
    x = nb.client_embed(cfg, params, ids, mask)
    cts = [E.encrypt(enc.encode(v, level=bts.output_level)) for v in nb.pack_input(x, lay)]
    ev.reset()
    trace: list = []
    (z,) = nb.encrypted_forward(ev, bts, model, cts, n, mask, trace=trace, head_rows=True, diagonal_attention=diagonal)
    logits = nb.unpack_output([enc.decode(D.decrypt(z)).real], lay, cfg.num_labels)
    return logits, trace, ev, bts, (model, ids, mask, n)


_RUNS: dict = {}


def shared_run(ring, attention, activation):
    """real_run of the default design, computed once per module (read only; the patched runs call real_run)."""
    if (attention, activation) not in _RUNS:
        _RUNS[attention, activation] = real_run(ring, attention, activation)
    return _RUNS[attention, activation]


def dry_run(ring, model, n, mask):
    p, rc = ring
    ev, bts = DryEvaluator(p), DryBootstrapper(p, p.L - rc.depth)
    lay = nb.input_layout(model.config, n, p.slots, head_rows=True)
    trace: list = []
    nb.encrypted_forward(ev, bts, model, [ev.fresh(bts.output_level) for _ in range(lay.chunks(lay.d))], n, mask,
                         trace=trace, head_rows=True)
    return trace, ev, bts


@pytest.mark.parametrize("attention,activation", [("softmax", "gelu"), ("2quad-freediv", "quad")])
def test_dry_counts_equal_the_real_evaluators_counts(ring, attention, activation):
    """NEXUS-BERT-COUNTS: per piece of a real small layer (N = 2^11), the DryEvaluator counts exactly what a
    CountingEvaluator counts on the real evaluator (key switches, rotations, relinearizations, products,
    encodings, rescales) and the same refreshes; the real logits equal the float64 model."""
    logits, trace, ev, bts, (model, ids, mask, n) = shared_run(ring, attention, activation)
    ref = nb.plaintext_reference(model, ids, mask, approximate=True)
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-3)
    dtrace, dev, dbts = dry_run(ring, model, n, mask)
    assert [r["block"] for r in dtrace] == [r["block"] for r in trace]
    keys = ("key_switches", "rotations", "relinearizations", "ct_mults", "pt_mults", "encodes", "rescales",
            "conjugations")
    for real, dry in zip(trace, dtrace):
        assert {k: real["counts"].get(k, 0) for k in keys} == {k: dry["counts"].get(k, 0) for k in keys}, real["block"]
        assert real["bootstraps"] == dry["bootstraps"] and (real["level_in"], real["level_out"]) == \
            (dry["level_in"], dry["level_out"])
    assert dbts.calls == bts.calls > 0
    assert ev.counts["key_switches"] == dev.counts["key_switches"] > 0


def test_lazy_pv_and_shared_baby_steps_match_the_previous_path(ring, monkeypatch):
    """NEXUS-BERT-COUNTS: the previous path (head_scores, the per-shift P V with each product relinearized, baby
    steps per projection) against (a) the same with P V summing degree-2 products and Q, K, V sharing their baby
    steps: n_pad - 1 fewer relinearizations per hidden chunk, 2 g fewer rotations per input chunk; (b) the
    diagonal attention (refimpl.nexus.bert.attention): fewer key switches in Q K^T and P V. All decrypt to the
    same logits within CKKS noise."""
    new, trace, _, _, (model, ids, mask, n) = real_run(ring, "softmax", "gelu", diagonal=False)
    diag, dtrace, _, _, _ = shared_run(ring, "softmax", "gelu")
    pv_new = nb.Forward.pv
    monkeypatch.setattr(nb.Forward, "pv", lambda self, *a, **k: pv_new(self, *a, **{**k, "lazy": False}))
    linear, baby_steps = nb.Forward.linear, nb.Forward.baby_steps
    monkeypatch.setattr(nb.Forward, "baby_steps", lambda self, xs, outputs=None: None)  # none shared: each its own
    monkeypatch.setattr(nb.Forward, "linear", lambda self, xs, W, b, name=None, babies=None: linear(
        self, xs, W, b, name, baby_steps(self, xs, -(-W.shape[0] // self.lay.chunk))))
    old, old_trace, _, _, _ = real_run(ring, "softmax", "gelu", diagonal=False)
    np.testing.assert_allclose(new, old, atol=1e-4)
    lay = nb.input_layout(model.config, n, ring[0].slots, head_rows=True)
    ks = {r["block"]: r["counts"].get("key_switches", 0) for r in trace}
    ks_old = {r["block"]: r["counts"].get("key_switches", 0) for r in old_trace}
    cin, P = lay.chunks(lay.d), lay.chunk
    assert ks_old["L0.pv.mul"] - ks["L0.pv.mul"] == cin * (lay.n_pad - 1)
    g1, g3 = nb.bsgs_baby(P, cin, cin), nb.bsgs_baby(P, cin, 3 * cin)  # per projection, shared by the three
    # per projection RotR(x, P) and g - 1 baby steps per input chunk, P/g - 1 giant steps per output chunk
    assert ks_old["L0.qkv"] == 3 * (cin * g1 + cin * (P // g1 - 1)) and ks["L0.qkv"] == cin * g3 + 3 * cin * (P // g3 - 1)
    assert ks_old["L0.qkv"] > ks["L0.qkv"]
    np.testing.assert_allclose(diag, old, atol=1e-4)
    ks_diag = {r["block"]: r["counts"].get("key_switches", 0) for r in dtrace}
    assert ks_diag["L0.qk"] < ks["L0.qk"] and ks_diag["L0.pv.mul"] < ks["L0.pv.mul"]


# key switches per block of the design (the blocks this counter's kernels own; Softmax, GELU and LayerNorm
# are pinned by their own modules' tests and checked against the real evaluator above)
PINNED = {
    "small": {"QKV": 25, "Q K^T": 39, "P V": 38, "output projection": 12, "FFN1": 20, "Quad": 8, "FFN2": 24},
    "base": {"QKV": 217, "Q K^T": 597, "P V": 410, "output projection": 96, "FFN1": 180, "Quad": 24, "FFN2": 192},
}
PT_PRODUCTS = {"small": {"QKV": 192, "FFN1": 128, "FFN2": 128}, "base": {"QKV": 12288, "FFN1": 9216, "FFN2": 9216}}


@pytest.mark.parametrize("size", ["small", "base"])
def test_counts_of_the_design_are_pinned(ring, size):
    """NEXUS-BERT-COUNTS: key switches and plaintext products per block of one layer, counted on the DryEvaluator
    (small: d = 32, 4 heads, FFN 128, n = 16 on N = 2^11; base: BERT-base, n = 128 on 128-2^16-dense19). BERT-base,
    linear layers with g baby steps per product (nb.bsgs_baby): QKV with complex outputs (refimpl.nexus.bert.qkv_packed:
    Q and K 6 each, two head pairs per output pair, V 4) 6 x 16 baby steps (shared) + 16 x 7 giant steps + 6 odd-head
    rotations + 3 conjugations (Q split) = 217 (small 2 x 8 + 6 + 2 + 1 = 25; 294 real: 6 x 32 + (12 + 12 + 6) x 3 +
    12 pair fills, Q and K one ciphertext per head pair, refimpl.nexus.bert.attention_pairs; 306 with one per head,
    330 with g = 16); on complex-packed chunk pairs (refimpl.nexus.bert.linear_pairs): the
    output projection 6 x 8 + 3 x 15 + 3 conjugations = 96 (6 x 16 + 6 x 7 = 138 real; small 2 x 4 + 3 + 1 = 12, 14),
    FFN1 6 x 16 + 12 x 7 = 180 (6 x 16 + 24 x 7 = 264 real), Quad 12 conjugations + 12 relinearizations = 24 (24
    relinearizations real), FFN2 12 x 8 + 6 x 15 + 6 conjugations = 192 (24 x 8 + 6 x 15 = 282 real, 426 with
    g = 16); Q K^T 6 pairs x 109 - 3 x 19 = 597 (attention_pairs.pair_scores, the skewed keys of two pairs at once:
    attention_packed.packed_skewed_keys; 654 unpacked), P V 6 x 3 + 3 chunk pairs x 154 - 28 - 6 x 7 = 410
    (attention_quads.quad_probs, pv_quads with the probabilities of a head of both chunks in one ciphertext: 7 baby
    steps per two heads, 452 with 7 per head; the values of chunk pairs 0 and 1 skewed at once:
    attention_packed.packed_skewed_values; 480 unpacked, 804 with head pairs, 2,040 with one head per ciphertext).
    Small: Q K^T 42 - 3 (two pairs' skewed keys at once), P V 44 - 2 x 3 (shared probabilities)."""
    prm = ring if size == "small" else bootstrap_preset(bb.PRESET)
    kw = dict(hidden_size=32, num_attention_heads=4, intermediate_size=128) if size == "small" else {}
    cfg = bb.config("2quad-freediv-quad", layers=1, **kw)
    model = nb.NexusModel(cfg, bc.random_weights(cfg), ranges=ranges(1))
    p, top = nb.bootstrap_level_of(prm, None)
    res = bc.count(model, 16 if size == "small" else 128, p, top)
    blocks = res["per_layer"][0]
    assert {k: blocks[k]["key_switches"] for k in PINNED[size]} == PINNED[size]
    assert {k: blocks[k]["pt_mults"] for k in PT_PRODUCTS[size]} == PT_PRODUCTS[size]
    lay = nb.input_layout(cfg, 16 if size == "small" else 128, p.slots, head_rows=True)
    R = lay.n_pad // 2  # key shifts per complex half (attention_quads.pv_quads)
    assert blocks["P V"]["relinearizations"] == lay.chunks(lay.d) * R // at.baby(R)  # one per giant step and chunk
    cp = -(-lay.chunks(lay.intermediate) // 2)  # FFN chunk pairs: one conjugation per Quad pair and FFN2 output
    assert (blocks["Quad"]["conjugations"], blocks["FFN2"]["conjugations"]) == (cp, lay.chunks(lay.d))
    layer = blocks["layer"]
    assert layer["key_switches"] == sum(b["key_switches"] for k, b in blocks.items() if k != "layer")
    assert layer["bootstraps"] == res["total"]["bootstraps"] - res["head"]["bootstraps"]
    if size == "base":  # the eager products' rescales (lazy rescaling: test_lazy_attention_counts_are_pinned)
        assert (blocks["Q K^T"]["rescales"], blocks["P V"]["rescales"]) == (393, 790)
    text = bc.counts_table("2quad-freediv-quad", res, 0)
    assert "| P V | " + f"{PINNED[size]['P V']:,}" in text


# Softmax + GELU per BERT-base layer (refimpl.nexus.bert.packing, .paired): two heads per score ciphertext, two FFN
# chunks per GELU ciphertext, two ciphertexts per bootstrap; the scores divided by 2B, the running maxima and the row
# sums packed, the GELU pairs refreshed as one ciphertext
PINNED_SOFTMAX_GELU = {"QKV": 217, "Q K^T": 597, "Softmax": 412, "P V": 410, "output projection": 96, "FFN1": 207,
                       "GELU": 570, "FFN2": 192, "residual + LayerNorm 1": 44, "residual + LayerNorm 2": 50,
                       "layer": 2795}
BOOTSTRAPS_SOFTMAX_GELU = {"Softmax": 12, "FFN1": 3, "GELU": 6, "FFN2": 0, "residual + LayerNorm 2": 2, "layer": 26}


def test_softmax_gelu_counts_are_pinned():
    """NEXUS-BERT-COUNTS, NEXUS-BERT-REFRESHES: Softmax + GELU at BERT-base (n = 128, 128-2^16-dense19, the shipped
    model's widest ranges): Softmax's 7 QuickMax rounds (17 levels, + 1 where they pack) on 6, 3, 2, 1, 1, 1, 1 score
    ciphertexts, the spread of the packed maxima, exp on 6, the row sums packed into 1 for the inverse: 412 key switches
    (439 with QuickSum on each score ciphertext, 489 with one spread per value too, 549 with every product
    relinearized too, 1,242 before the score prescaling; 2,292 before the packings), 12 bootstraps (30; 108):
    3 + 2 + 1 + 4 + 1 + 1, 5 conjugations; with lazy relinearization (ours, refimpl.ckks.polyeval) each QuickMax
    round's Sgn takes 16 relinearizations instead of 20, the spreads of the 6 maxima and the 6 row sums share their
    coarse copies (packing.spread_many: 22 rotations each instead of 47), and the row sums fold packed as the maxima
    do (packing.packed_fold: 15 + 5 rotations and a mask instead of 6 x 7 + 5); GELU on 12 ciphertexts (12 x 46 relinearizations:
    36 in the three Sgn tails, 9 for the five polynomials of x sharing their powers, 1 for the three final products;
    58 eager; + 12 rotations to split the pairs after their refresh, 6 bootstraps of the 12 pairs at level 0, 6
    conjugations): 570 (714 eager); the LayerNorms 44 and 50 (48 before LayerNorm 2's pair refresh took the real parts
    of y and -u/2, 2 conjugations; 50, 54: the six chunks' squares summed before one
    relinearization, and Goldschmidt's unread last x not computed); the FFN on complex-packed chunk pairs (refimpl.nexus.bert.linear_pairs):
    FFN1 6 x 16 + 12 x 7 + 12 x 2 (the pairs to window halves) + 3 (the split refreshes of its input) = 207 (279 real),
    FFN2 12 x 8 + 6 x 15 + 6 = 192 (282), refreshing nothing, the output projection 96 (138); QKV 217 (294 without its
    complex outputs, refimpl.nexus.bert.qkv_packed), Q K^T 597, P V 410 (452 with per-head probabilities); 2,795 key
    switches (2,870 with one spread per value and QuickSum on each score ciphertext, 2,989 with the real QKV and
    per-head probabilities too, 3,205 eager too, 3,409 real) and 26 bootstraps per layer (25 before LayerNorm 2's 1/sqrt
    was carried whole, refimpl.nexus.bert.chain.carry_whole: its variance refreshed too; 49; 146 before the
    packings)."""
    params, rc = bootstrap_preset(bb.PRESET)
    cfg = bb.config("softmax-gelu", layers=2)
    model = bb.synthetic_model(cfg, bb.widest_ranges(bb.shipped_ranges("softmax-gelu"), 2))
    p, top = nb.bootstrap_level_of((params, rc), None)
    res = bc.count(bc.counting_model(model), 128, p, top)
    blocks = res["per_layer"][1]
    assert {k: blocks[k]["key_switches"] for k in PINNED_SOFTMAX_GELU} == PINNED_SOFTMAX_GELU
    assert {k: blocks[k]["bootstraps"] for k in BOOTSTRAPS_SOFTMAX_GELU} == BOOTSTRAPS_SOFTMAX_GELU
    assert blocks["Softmax"]["conjugations"] == 5 and blocks["GELU"]["relinearizations"] == 12 * 46



def test_lazy_attention_counts_are_pinned():
    """NEXUS-BERT-QK-LAZY, NEXUS-BERT-PV-LAZY: BERT-base (n = 128, 128-2^16-dense19, one student layer) with the options
    qk_lazy and pv_lazy: the same key switches in Q K^T and P V as the eager products; Q K^T 15 rescales (393 eager)
    and 390 plaintext products (768), P V 28 rescales (790) and 384 ciphertext products (768)."""
    cfg = bb.config("2quad-freediv-quad", layers=1)
    model = nb.NexusModel(cfg, bc.random_weights(cfg), ranges=ranges(1), options={"qk_lazy": True, "pv_lazy": True})
    p, top = nb.bootstrap_level_of(bootstrap_preset(bb.PRESET), None)
    blocks = bc.count(model, 128, p, top)["per_layer"][0]
    assert {k: blocks[k]["key_switches"] for k in ("Q K^T", "P V")} == {k: PINNED["base"][k] for k in ("Q K^T", "P V")}
    assert (blocks["Q K^T"]["rescales"], blocks["P V"]["rescales"]) == (15, 28)
    assert (blocks["Q K^T"]["pt_mults"], blocks["Q K^T"]["ct_mults"], blocks["P V"]["ct_mults"]) == (390, 384, 384)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["2quad-freediv-quad", "softmax-gelu"])
def test_lazy_attention_bootstraps(name):
    """NEXUS-BERT-QK-LAZY, NEXUS-BERT-PV-LAZY: the plan's two more levels with qk_lazy and pv_lazy (BERT-base, the
    shipped models' widest ranges, the second layer): the student one bootstrap more (8 against 7), Softmax + GELU
    none (26), the same key switches per layer."""
    params, rc = bootstrap_preset(bb.PRESET)
    cfg = bb.config(name, layers=2)
    p, top = nb.bootstrap_level_of((params, rc), None)
    per = {}
    for lazy in (False, True):
        model = bb.synthetic_model(cfg, bb.widest_ranges(bb.shipped_ranges(name), 2),
                                   options={"qk_lazy": lazy, "pv_lazy": lazy})
        per[lazy] = bc.count(bc.counting_model(model), 128, p, top)["per_layer"][1]["layer"]
    assert (per[False]["bootstraps"], per[True]["bootstraps"]) == ((26, 26) if name == "softmax-gelu" else (7, 8))
    assert per[False]["key_switches"] == per[True]["key_switches"]
