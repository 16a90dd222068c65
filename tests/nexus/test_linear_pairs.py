"""The FFN on complex-packed chunk pairs (refimpl.nexus.bert.linear_pairs, ours): the packing identities of the
linear layer on random matrices (a property test), FFN1 with complex outputs, Quad on the packed pair and FFN2
with complex inputs on a real ring (N = 2^11) against numpy with their key switches, the whole small forward of
both models against the real path (the model option ffn_complex False, the oracle) and the float64 model, and a
weight store of the complex diagonals rebuilt bit for bit."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refimpl.bert import functional as F
from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters
from refimpl.ckks.keys import conjugation_element
from refimpl.nexus import bert as nb
from refimpl.nexus.bert import linear_pairs as lp
from refimpl.nexus.bert.keyset import forward_key_levels
from refimpl.nexus.counting import CountingEvaluator, DryBootstrapper, DryEvaluator
from refimpl.ring.sampling import RandomSource

from .helpers import small_forward, tiny_bert


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 4), st.integers(1, 5), st.integers(1, 5), st.sampled_from([2, 4, 8]), st.integers(0, 2**31))
def test_packing_identities_on_random_matrices(n, cin, cout, P, seed):
    """NEXUS-BERT-FFN-PAIRS: for random x, W, b (any chunk counts, odd ones included): x W'^T + b' of pack_outputs is
    factor (y_2k + i y_2k+1) per output chunk pair (y = x W^T + b), and for the packed inputs z = a_2k + i a_2k+1,
    2 Re(z W'^T + b') of pack_inputs is a W^T + b."""
    rng = np.random.default_rng(seed)
    fin, fout = cin * P - (cin > 1), cout * P - (cout > 1)  # ragged last chunks
    x, W, b = rng.normal(size=(n, fin)), rng.normal(size=(fout, fin)), rng.normal(size=fout)
    Wc, bc = lp.pack_outputs(W, b, P, 0.5)
    y = np.pad(x @ W.T + b, ((0, 0), (0, -(-cout // 2) * 2 * P - fout))).reshape(n, -1, 2, P)
    np.testing.assert_allclose((x @ Wc.T + bc).reshape(n, -1, P), 0.5 * (y[:, :, 0] + 1j * y[:, :, 1]), atol=1e-12)
    a = np.pad(x, ((0, 0), (0, -(-cin // 2) * 2 * P - fin))).reshape(n, -1, 2, P)
    z = (a[:, :, 0] + 1j * a[:, :, 1]).reshape(n, -1)
    Wi, bi = lp.pack_inputs(W, b, P)
    np.testing.assert_allclose(2 * (z @ Wi.T + bi).real, x @ W.T + b, atol=1e-12)


@pytest.fixture(scope="module")
def setting():
    p, _ = bootstrap_parameters(2048, levels_after=4, encapsulation_h=32, num_p=3, insecure=True)
    cfg, params = tiny_bert("2quad-freediv", "quad", 1)
    model = nb.NexusModel(cfg, params, ranges={"score_bound": 8.0, "var": {}, "act": (-4.0, 4.0), "absmax": {}})
    n = 6
    lay = nb.input_layout(cfg, n, p.slots)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    sk = kg.secret_key()
    ev = Evaluator(p, kg.evaluation_keys(sk, rotations=nb.rotation_steps(cfg, n, p.slots), conjugate=True))
    E = Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(2))
    return p, model, lay, ev, E, Encoder(p), Decryptor(sk)


def test_ffn_pairs_on_a_real_ring(setting):
    """NEXUS-BERT-FFN-PAIRS: on N = 2^11 (P = 32, hidden 32 -> intermediate 64 -> 32): FFN1 with complex outputs
    decrypts to (y_0 + i y_1) / 2 within 1e-4 with cin g + 1 x (P / g - 1) rotations (half the giant steps of the
    real path's 2 output chunks); Quad on the pair to Quad(y_0) / M + i Quad(y_1) / M with one conjugation and one
    relinearization, one level; FFN2 with complex inputs, then y + conj y, to the real product within 1e-4 with one
    conjugation per output chunk."""
    p, model, lay, ev0, E, enc, D = setting
    P, M = lay.chunk, 4.0
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (lay.n, 32))
    W1, b1 = rng.normal(0, 0.3, (64, 32)), rng.normal(0, 0.1, 64)
    W2, b2 = rng.normal(0, 0.3, (32, 64)), rng.normal(0, 0.1, 32)
    cts = [E.encrypt(enc.encode(v, level=4)) for v in nb.pack(x, lay)]
    ev = CountingEvaluator(ev0)
    fw = nb.Forward(ev, None, model, lay, np.ones(lay.n), [], [], None)

    def slots(ct):
        return enc.decode(D.decrypt(ct)).reshape(-1, lay.window)[: lay.n, :P]

    r = nb.QUAD_ROOT / np.sqrt(M)  # Quad's sqrt(0.125) / sqrt(M) folded into W_1 (Forward.quad)
    (z,) = fw.linear(cts, *lp.pack_outputs(W1 * r, b1 * r, P, 0.5), "w1")
    y = x @ W1.T + b1
    assert np.max(np.abs(slots(z) - 0.5 * r * (y[:, :P] + 1j * y[:, P:]))) < 1e-4
    g = nb.bsgs_baby(P, 1, 1)
    assert ev.counts["rotations"] == g + (P // g - 1) and ev.counts["conjugations"] == 0
    ev.reset()
    fw.st = {**fw.st, "act_div": M}
    q = fw.quad(z, 0, packed=True)
    quad = (F.QUAD[2] * y**2 + F.QUAD[1] * y + F.QUAD[0]) / M
    assert q.level == z.level - 1
    assert ev.counts["conjugations"] == 1 and ev.counts["relinearizations"] == 1 and ev.counts["key_switches"] == 2
    assert np.max(np.abs(slots(q) - (quad[:, :P] + 1j * quad[:, P:]))) < 1e-4
    ev.reset()
    (w,) = lp.real_parts(ev, fw.linear([q], *lp.pack_inputs(W2, b2, P), "w2"))
    want = quad @ W2.T + b2
    assert np.max(np.abs(slots(w) - want)) < 1e-4 and np.max(np.abs(slots(w).imag)) < 1e-4
    g2 = nb.bsgs_baby(P, 1, 1)
    assert ev.counts["conjugations"] == 1 and ev.counts["rotations"] == g2 + (P // g2 - 1)


def test_output_projection_split_outputs(setting):
    """NEXUS-BERT-FFN-PAIRS: the output projection's two chunks per ciphertext (`split_outputs`): 2 -> 2 chunks
    (hidden 64 on P = 32) decrypt to numpy's x W^T + b within 1e-4, real and apart, with 2 g + (P/g - 1) rotations
    for the one packed output and one conjugation, fewer key switches than the real 2 -> 2 product's 2 g' + 2 (P/g' - 1)."""
    p, model, lay, ev0, E, enc, D = setting
    P = lay.chunk
    rng = np.random.default_rng(4)
    x = rng.normal(0, 1, (lay.n, 2 * P))
    W, b = rng.normal(0, 0.2, (2 * P, 2 * P)), rng.normal(0, 0.1, 2 * P)
    cts = [E.encrypt(enc.encode(v, level=3)) for v in nb.pack(x, lay)]
    ev = CountingEvaluator(ev0)
    fw = nb.Forward(ev, None, model, lay, np.ones(lay.n), [], [], None)
    ys = lp.split_outputs(fw, cts, W, b, "o")
    got = [enc.decode(D.decrypt(y)) for y in ys]
    assert len(ys) == 2 and ys[0].level == cts[0].level - 1
    assert np.max(np.abs(nb.unpack([v.real for v in got], lay, 2 * P) - (x @ W.T + b))) < 1e-4
    assert max(np.max(np.abs(v.imag)) for v in got) < 1e-4
    g = nb.bsgs_baby(P, 2, 1)
    assert ev.counts["rotations"] == 2 * g + (P // g - 1) and ev.counts["conjugations"] == 1
    g1 = nb.bsgs_baby(P, 2, 2)
    assert ev.counts["key_switches"] == 2 * g + (P // g - 1) + 1 < 2 * g1 + 2 * (P // g1 - 1)  # the real product's


def small_run(attention, activation, option, store=None, intermediate=64):
    """The small forward (N = 2^10, P = 32, oracle bootstrapping with a fixed seed) with the FFN on chunk pairs on or
    off: a dict of the logits, the float64 model's, the trace, the store, the output ciphertext, the model..."""
    return small_forward(attention, activation, {"ffn_complex": option}, store=store, intermediate=intermediate)


@pytest.mark.parametrize("attention,activation,intermediate", [("2quad-freediv", "quad", 96), ("softmax", "gelu", 64)])
def test_forward_with_ffn_pairs_equals_the_real_path(attention, activation, intermediate):
    """NEXUS-BERT-FFN-PAIRS: the small forward of both models (the student: Quad on the pairs, 3 FFN chunks so the
    last pair holds one; Softmax + GELU: FFN1's pairs moved to window halves for the GELU and its chunks packed into
    FFN2's inputs) decrypts to the logits of the real path within 1e-3 and of the float64 model within 1e-3, at the
    same levels, with fewer key switches in FFN1 + activation + FFN2."""
    a, b = (small_run(attention, activation, option, intermediate=intermediate) for option in (True, False))
    new, ref, trace, old, old_trace = a["logits"], a["ref"], a["trace"], b["logits"], b["trace"]
    np.testing.assert_allclose(new, old, atol=1e-3)
    np.testing.assert_allclose(new, ref, atol=1e-3)
    assert [(r["block"], r["level_in"], r["level_out"]) for r in trace] == \
        [(r["block"], r["level_in"], r["level_out"]) for r in old_trace]

    def ffn(tr):
        return sum(r["counts"].get("key_switches", 0) for r in tr if ".ffn" in r["block"] or ".quad" in r["block"]
                   or ".gelu" in r["block"])
    assert ffn(trace) < ffn(old_trace)
    assert sum(r["counts"].get("conjugations", 0) for r in trace if ".ffn2" in r["block"]) > 0
    # the client's key set (the dry run's) holds the conjugation key at the level FFN2's real part needs it
    p = a["params"]
    levels = forward_key_levels(a["model"], a["lay"].n, p, a["top"], a["top"], attention_mask=a["mask"])
    ffn2 = next(r for r in trace if r["block"] == "L0.ffn2")
    assert levels[conjugation_element(p)] >= ffn2["level_out"]


def test_store_rebuilds_the_complex_diagonals(tmp_path):
    """NEXUS-WEIGHTS-STORE, NEXUS-BERT-FFN-PAIRS: a weight store of the student with the FFN on pairs holds the
    complex diagonals under their own names (L0.ffn1.pairs, L0.ffn2.pairs), each expanded bit for bit to
    Encoder.encode's plaintext, and the forward with it returns the same ciphertext as without."""
    plain = small_run("2quad-freediv", "quad", True)["out"]
    run = small_run("2quad-freediv", "quad", True, store=tmp_path / "w")
    store, stored, model, lay = run["store"], run["out"], run["model"], run["lay"]
    names = {f["name"] for f in store.manifest["files"].values()}
    assert {"L0.ffn1.pairs", "L0.ffn2.pairs"} <= names and not {"L0.ffn1", "L0.ffn2"} & names
    assert store.misses == 0 and store.hits > 0
    for a, b in zip(plain.c, stored.c):
        np.testing.assert_array_equal(a, b)
    p, vec = store.params, nb.SlotVectors(lay, np.ones(lay.n))
    r = nb.QUAD_ROOT / np.sqrt(model.settings()["act_div"])  # as the forward folds it (FFN.ffn)
    Wc, _ = lp.pack_outputs(model.layer(0)["intermediate.dense.weight"] * r, np.zeros(64), lay.chunk, 0.5)
    f = next(f for f in store.manifest["files"].values() if f["name"] == "L0.ffn1.pairs")
    (oc, ic, k, g) = f["keys"][5]
    d = vec.diagonals(Wc[oc * lay.chunk:(oc + 1) * lay.chunk, ic * lay.chunk:(ic + 1) * lay.chunk])[k]
    assert np.iscomplexobj(d) and np.any(d.imag)
    pt = store.plaintext(("L0.ffn1.pairs", oc, ic, k, g), f["level"])
    want = Encoder(p).encode(np.roll(vec.tile(d), (k // g) * g), level=f["level"], scale=f["scale"])
    np.testing.assert_array_equal(pt.poly, want.poly)


def test_complex_streams_are_refreshed_one_each(setting):
    """NEXUS-BERT-FFN-PAIRS: Quad's and FFN2's inputs hold complex pairs, so a refresh before them does not pack two
    ciphertexts into one bootstrap (a + i b of complex a, b would mix them): one bootstrap each there, two
    ciphertexts per bootstrap elsewhere; the real path (option off) pairs them everywhere."""
    p, model, lay, *_ = setting
    for option, want in ((True, 4), (False, 2)):
        m = nb.NexusModel(model.config, model.params, ranges=model.get_ranges(), options={"ffn_complex": option})
        ev = DryEvaluator(p)
        fw = nb.Forward(ev, DryBootstrapper(p, 3), m, lay, np.ones(lay.n), [], [], None)
        assert [fw.complex_stream(f"L0.{k}") for k in ("ffn1", "quad", "ffn2", "ln2")] == [False, option, option, False]
        fw.boots = 0
        fw.refresh_all([ev.fresh(2) for _ in range(4)], [1.0] * 4, pairable=not fw.complex_stream("L0.ffn2"))
        assert fw.boots == want
