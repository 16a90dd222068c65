"""Encrypted BERT under NEXUS (refimpl.nexus.bert): layout, plan, plaintext reference, and the
encrypted forward with the real Bootstrapper on an insecure toy ring (N = 2^10, 19 levels
after bootstrapping, dense secret with an h = 32 encapsulation).

Oracles: refimpl.bert.model.forward (the numpy BERT) for the exact reference; the float64
model of the same approximations (plaintext_reference(approximate=True)) for the encrypted
logits. The placement program's brute-force check: tests/ckks/test_placement.py.
"""

import numpy as np
import pytest

from refimpl.bert.config import BertConfig
from refimpl.bert.model import forward
from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap.bootstrapper import Bootstrapper, bootstrap_parameters
from refimpl.nexus import bert as nb
from refimpl.nexus.bert import chain
from refimpl.nexus.counting import CountingBootstrapper
from refimpl.ring.sampling import RandomSource

from .helpers import tiny_bert as tiny

IDS = np.array([3, 7, 11, 19, 23, 2])
MASK = np.array([1, 1, 1, 1, 1, 0])  # the last token is padding: masked as a key


class Setup:
    """Keys for the forward's rotations plus the bootstrapper's Galois elements, and a real Bootstrapper."""

    def __init__(self, cfg, n, levels_after=19):
        self.p, rc = bootstrap_parameters(1024, levels_after=levels_after, encapsulation_h=32, num_p=3, insecure=True)
        kg = KeyGenerator(self.p, RandomSource.insecure_seeded(3))
        self.sk = kg.secret_key()
        probe = Bootstrapper(Evaluator(self.p), rc)
        self.ev = Evaluator(self.p, kg.evaluation_keys(self.sk, rotations=nb.rotation_steps(cfg, n, self.p.slots),
                                                       elements=probe.galois_elements()))
        self.bts = Bootstrapper(self.ev, rc, encapsulation=kg.encapsulation_keys(self.sk, kg.secret_key(hamming_weight=32)))
        self.enc = Encoder(self.p)
        self.E, self.D = Encryptor(kg.public_key(self.sk), RandomSource.insecure_seeded(4)), Decryptor(self.sk)

    def inputs(self, model, ids, mask):
        """The client's side: embed, pack, encrypt at the bootstrap level."""
        lay = nb.input_layout(model.config, len(ids), self.p.slots)
        x = nb.client_embed(model.config, model.params, ids, mask)
        return [self.E.encrypt(self.enc.encode(v, level=self.bts.output_level)) for v in nb.pack_input(x, lay)], lay

    def decrypt(self, cts):
        return [self.enc.decode(self.D.decrypt(c)).real for c in cts]


# ------------------------------------------------------------------ layout and client side
def test_pack_layout_roundtrip():
    """NEXUS-BERT-LAYOUT: slot t w + j of chunk c holds x[t, c P + j]; the second half of each window is zero."""
    cfg = BertConfig(hidden_size=384, num_attention_heads=12, intermediate_size=1536, num_hidden_layers=1)
    lay = nb.input_layout(cfg, 10, 4096)
    assert (lay.n_pad, lay.chunk, lay.window) == (16, 128, 256)
    x = np.random.default_rng(0).normal(size=(10, 384))
    vs = nb.pack_input(x, lay)
    assert len(vs) == 3
    np.testing.assert_array_equal(nb.unpack(vs, lay, 384), x)
    for v in vs:
        w = v.reshape(-1, 256)
        assert not w[:, 128:].any() and not w[10:].any()
    assert vs[1][3 * 256 + 5] == x[3, 128 + 5]


def test_layout_errors():
    cfg = BertConfig(hidden_size=32, num_attention_heads=2, intermediate_size=64, num_hidden_layers=1)
    with pytest.raises(ValueError, match="use at most 8 tokens"):
        nb.input_layout(cfg, 9, 512)  # Softmax rows of 16 keys need 32 slots per head of 16
    with pytest.raises(ValueError, match="head needs 16"):
        nb.input_layout(cfg, 8, 64)
    with pytest.raises(ValueError, match="attention supports"):
        nb.input_layout(cfg.replace(attention="2relu"), 4, 512)
    lay = nb.input_layout(cfg, 4, 512)
    with pytest.raises(ValueError, match="shape"):
        nb.pack_input(np.zeros((5, 32)), lay)


@pytest.mark.parametrize("attention,activation", [("softmax", "gelu"), ("2quad-freediv", "quad")])
def test_reference_exact_equals_numpy_bert(attention, activation):
    """NEXUS-BERT-REF: the exact plaintext reference is refimpl.bert.model.forward (same logits, same hidden
    states); the approximate one differs only by the approximations (GELU 4-piece, exp, 1/sqrt)."""
    cfg, params = tiny(attention, activation, layers=2)
    model = nb.NexusModel(cfg, params)
    ex = nb.plaintext_reference(model, IDS, MASK, approximate=False)
    fw = forward(params, cfg, IDS[None], attention_mask=MASK[None])
    np.testing.assert_allclose(ex["logits"], fw.logits[0], atol=1e-12)
    for a, b in zip(ex["hidden"], fw.hidden_states):
        np.testing.assert_allclose(a, b[0], atol=1e-11)
    ap = nb.plaintext_reference(model, IDS, MASK, approximate=True)
    gap = np.max(np.abs(ap["logits"] - ex["logits"]))
    assert gap < 0.05 and (gap > 0 if attention == "softmax" else gap < 1e-5)


def test_client_embed_errors():
    cfg, params = tiny()
    with pytest.raises(ValueError, match="token ids"):
        nb.client_embed(cfg, params, [1, 99])
    with pytest.raises(ValueError, match="max_position"):
        nb.client_embed(cfg, params, np.ones(17, dtype=int))


# ------------------------------------------------------------------ plan
def test_plan_levels_and_counts():
    """NEXUS-BERT-PLAN: Softmax + GELU needs a refresh per QuickMax round (17 levels each: the scores arrive
    divided by 2B, so Sgn needs no normalisation; 18 on the previous path); 2Quad-freeDiv + Quad needs neither Sgn
    nor QuickMax nor the inverse."""
    rows = {}
    for att, act in (("softmax", "gelu"), ("2quad-freediv", "quad")):
        cfg, params = tiny(att, act)
        rows[att] = nb.plan(nb.NexusModel(cfg, params), 6, (bootstrap_parameters(1024, levels_after=19, encapsulation_h=32,
                                                                                   num_p=3, insecure=True)))
        for r in rows[att]:
            assert r["level_out"] == r["level_in"] - r["cost"] >= 0
    sm, qd = rows["softmax"], rows["2quad-freediv"]
    assert [r["bootstrap"] for r in sm if "round" in r["block"]] == [True, True, True]
    assert sum(r["cost"] for r in sm) - sum(r["cost"] for r in qd) == 128 - 45
    # 7: FFN2's two GELU chunks refreshed as one complex ciphertext (refimpl.nexus.bert.linear_pairs; 8 without)
    assert sum(r["bootstraps"] for r in sm) == 7 and sum(r["bootstraps"] for r in qd) == 2
    assert "L0.ffn1" in nb.plan_table(sm)


# ------------------------------------------------------------------ ranges
def test_ranges_checked():
    """NEXUS-BERT-RANGE: calibration refuses GELU inputs outside [-13, 12]; check_ranges names the block."""
    cfg, params = tiny()
    big = dict(params)
    big["encoder.layer.0.intermediate.dense.weight"] = params["encoder.layer.0.intermediate.dense.weight"] * 12
    with pytest.raises(ValueError, match="GELU inputs"):
        nb.NexusModel(cfg, big).get_ranges()
    model = nb.NexusModel(cfg, params)
    model.ranges = nb.calibrate(model, [(IDS, MASK)])
    nb.check_ranges(model, nb.plaintext_reference(model, IDS, MASK, approximate=True))
    hot = dict(params)
    hot["encoder.layer.0.attention.self.query.weight"] = params["encoder.layer.0.attention.self.query.weight"] * 8
    other = nb.NexusModel(cfg, hot, ranges=model.ranges)
    with pytest.raises(ValueError, match="attention scores"):
        nb.check_ranges(other, nb.plaintext_reference(other, IDS, MASK, approximate=False))


# ------------------------------------------------------------------ encrypted forward, real bootstrapping
@pytest.fixture(scope="module")
def softmax_setup():
    cfg, params = tiny("softmax", "gelu")
    return nb.NexusModel(cfg, params), Setup(cfg, len(IDS))


def test_encrypted_forward_softmax_gelu(softmax_setup):
    """NEXUS-BERT-E2E, NEXUS-BERT-PACKING: Softmax + GELU layer with real bootstrapping: logits within 0.05 of the
    float64 model of the same approximations (measured ~1e-4), the planned ciphertexts refreshed at the planned
    levels, two per bootstrap where they pair (the keys hold the conjugation: refimpl.nexus.bert.packing); FFN2's input
    refreshed as one complex chunk pair (refimpl.nexus.bert.linear_pairs)."""
    model, s = softmax_setup
    cts, lay = s.inputs(model, IDS, MASK)
    bts, trace = CountingBootstrapper(s.bts), []
    got = nb.unpack_output(s.decrypt(nb.encrypted_forward(s.ev, bts, model, cts, len(IDS), MASK, trace=trace)), lay, 2)
    calls = bts.calls
    ref = nb.plaintext_reference(model, IDS, MASK, approximate=True)
    assert np.max(np.abs(got - ref["logits"])) < 0.05
    assert np.argmax(got) == np.argmax(ref["logits"])
    rows = nb.plan(model, len(IDS), s.bts)
    assert sum(r["bootstraps"] for r in rows) == 7  # ciphertexts refreshed (FFN2's input: one complex chunk pair)
    assert [(t["block"], t["level_in"], t["level_out"]) for t in trace] == \
        [(r["block"], r["level_in"], r["level_out"]) for r in rows]
    assert all(r["bootstraps"] / 2 <= t["bootstraps"] <= r["bootstraps"] for t, r in zip(trace, rows))
    assert calls == sum(t["bootstraps"] for t in trace) == 7  # one ciphertext at each refresh point


def test_encrypted_forward_2quad_quad_argmax(softmax_setup):
    """NEXUS-BERT-E2E, NEXUS-BERT-ARGMAX: the 2Quad-freeDiv + Quad student (no Sgn, no max, no division)
    with real bootstrapping, ending in the encrypted Argmax (one-hot within 0.01); same keys (same shapes)."""
    cfg, params = tiny("2quad-freediv", "quad")
    model = nb.NexusModel(cfg, params)
    s = softmax_setup[1]
    cts, lay = s.inputs(model, IDS, MASK)
    bts, trace = CountingBootstrapper(s.bts), []
    out = nb.encrypted_forward(s.ev, bts, model, cts, len(IDS), MASK, trace=trace, argmax=True)
    calls = bts.calls
    ref = nb.plaintext_reference(model, IDS, MASK, approximate=True)
    sel = nb.unpack_argmax(s.decrypt(out), lay, 2)
    np.testing.assert_allclose(sel, nb.argmax_reference(ref["logits"], 2), atol=0.01)
    assert np.argmax(sel) == np.argmax(ref["logits"])
    assert calls == sum(t["bootstraps"] for t in trace)
    assert not any("softmax" in t["block"] or "gelu" in t["block"] for t in trace)


def test_encrypted_forward_input_errors(softmax_setup):
    model, s = softmax_setup
    lay = nb.input_layout(model.config, 6, s.p.slots)
    ct = s.E.encrypt(s.enc.encode(nb.pack_input(np.zeros((6, 32)), lay)[0], level=s.bts.output_level))
    with pytest.raises(ValueError, match="mask of length"):
        nb.encrypted_forward(s.ev, s.bts, model, [ct], 6, MASK[:5])
    with pytest.raises(ValueError, match="expected 1 input"):
        nb.encrypted_forward(s.ev, s.bts, model, [ct, ct], 6, MASK)


def _noisy_refresh_run(monkeypatch, block_suffix: str, levels: range, options: dict | None = None):
    """The tiny student on the first toy ring (levels after bootstrapping in `levels`) whose plan
    refreshes at a block ending in block_suffix, through an oracle bootstrapper that adds 2^-20
    to every refreshed slot. Returns (model, plan rows, [(block, bound) refreshed], logits error
    against the float64 model of the same approximations)."""
    from refimpl.ckks.bootstrap.oracle import OracleBootstrapper

    cfg, params = tiny("2quad-freediv", "quad")
    model = nb.NexusModel(cfg, params, options=options or {})
    for levels_after in levels:
        p, rc = bootstrap_parameters(1024, levels_after=levels_after, encapsulation_h=32, num_p=3, insecure=True)
        try:
            rows = nb.plan(model, len(IDS), (p, rc))
        except ValueError:  # too few levels for a LayerNorm piece
            continue
        if any(r["bootstrap"] and r["block"].endswith(block_suffix) for r in rows):
            break
    else:
        pytest.fail(f"no plan refreshes at a {block_suffix} block")
    kg = KeyGenerator(p, RandomSource.insecure_seeded(5))
    sk = kg.secret_key()
    ev = Evaluator(p, kg.evaluation_keys(sk, rotations=nb.rotation_steps(cfg, len(IDS), p.slots)))
    enc = Encoder(p)

    class NoisyOracle(OracleBootstrapper):
        def bootstrap(self, ct):
            return ev.add_const(super().bootstrap(ct), 2.0**-20)

    bts = NoisyOracle(sk, output_level=p.L - rc.depth, rng=RandomSource.insecure_seeded(6))
    seen = []
    refresh = nb.Forward.refresh

    def recording(self, ct, bound, precise=False):
        seen.append((self.rows[self.i]["block"], bound))
        return refresh(self, ct, bound, precise)

    monkeypatch.setattr(nb.Forward, "refresh", recording)
    lay = nb.input_layout(cfg, len(IDS), p.slots)
    x = nb.client_embed(cfg, model.params, IDS, MASK)
    cts = [Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(7)).encrypt(enc.encode(v, level=bts.output_level))
           for v in nb.pack_input(x, lay)]
    (z,) = nb.encrypted_forward(ev, bts, model, cts, len(IDS), MASK)
    logits = nb.unpack_output([enc.decode(Decryptor(sk).decrypt(z)).real], lay, cfg.num_labels)
    ref = nb.plaintext_reference(model, IDS, MASK, approximate=True)["logits"]
    return model, rows, seen, float(np.max(np.abs(logits - ref)))


def test_layernorm_refresh_scales_y_and_u_by_their_own_bounds(monkeypatch):
    """NEXUS-BERT-PLAN: a refresh inside LayerNorm (before Goldschmidt) scales y by its bound
    1.5 / sqrt(lo) and u <= hi by hi: with y's bound, u's absolute bootstrap error would be
    that bound times the bootstrap's (30 % of u = lo at 20-bit bootstrapping, 8e-2 on the
    shipped student's logits at N = 2^16). Checked with an oracle bootstrapper that adds
    2^-20 to every refreshed slot: the logits stay within 5e-3 of the float64 model."""
    model, _, seen, err = _noisy_refresh_run(monkeypatch, ".gold", range(8, 20))
    gold = [(b, bound) for b, bound in seen if b.endswith(".gold")]
    assert gold and len(gold) % 2 == 0
    for name, _ in gold:
        _, lo, hi, _ = model.settings()["ln"][name[: -len(".gold")]]
        assert [bd for b, bd in gold if b == name] == [max(1.0, 1.5 / np.sqrt(lo)), hi]
    assert err < 5e-3


@pytest.mark.parametrize("carried", [True, False])
def test_newton_steps_split_across_a_refresh(monkeypatch, carried):
    """NEXUS-BERT-PLAN, NEXUS-LN-CARRY: more Newton steps than one piece holds (a wide variance range) run as
    two pieces with a possible refresh between them: (y, t = -u y^2 / 2) by the bounds 1.05 / sqrt(lo) and 1/2
    (refimpl.nexus.rsqrt_carry, the default), or the previous (y, -u/2) by 1.5 / sqrt(lo) and hi / 2; the logits
    stay within 5e-3 of the float64 model (same approximations) with an oracle bootstrapper adding 2^-20 to
    every refreshed slot."""
    monkeypatch.setattr(chain, "NEWTON_PER_PIECE", 2)  # tiny's 4 Newton steps become 1 + 3 (carried) or 2 + 2
    assert nb.newton_split(4) == (2, 2) and nb.newton_split(2) == (2, 0) and nb.newton_split(4, True) == (1, 3)
    model, rows, seen, err = _noisy_refresh_run(monkeypatch, ".newton", range(6, 20), {"rsqrt_carry": carried})
    assert [r["cost"] for r in rows if r["block"] == "L0.ln1.newton"] == [6 if carried else 4]
    newton = [(b, bound) for b, bound in seen if b.endswith(".newton")]
    assert newton
    for name, _ in newton:
        _, lo, hi, _ = model.settings()["ln"][name[: -len(".newton")]]
        expected = [1.05 / np.sqrt(lo), 0.5] if carried else [max(1.0, 1.5 / np.sqrt(lo)), hi / 2]
        assert [bd for b, bd in newton if b == name] == expected
    assert err < 5e-3
