"""The skews of K and V on two operands packed as one complex ciphertext (refimpl.nexus.bert.attention_packed, ours)
against the unpacked paths (the oracle: the model option kv_complex off) and numpy on real N = 2^11 rings; the
packing/splitting identity as a property; the key switches at BERT-base size on the DryEvaluator; the two-layer
forward against the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refimpl.ckks import Parameters
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters, bootstrap_preset
from refimpl.ckks.keys import conjugation_element
from refimpl.experiments import bertbase as bb
from refimpl.experiments.bertbase import counts as bc
from refimpl.nexus import bert as nb
from refimpl.nexus.bert import attention_packed as apk
from refimpl.nexus.bert import attention_pairs as ap
from refimpl.nexus.bert import attention_quads as aq
from refimpl.nexus.bert.keyset import forward_key_levels
from refimpl.nexus.bert.packing import unpack_complex
from refimpl.nexus.counting import CountingEvaluator, DryEvaluator

from .helpers import Kit
from .test_bertbase_attention import (
    assert_no_worse,
    assert_pv_output,
    forward_errors,
    forward_of,
    pair_kit,
    pv_inputs,
    ranges,
)
from .test_bertbase_attention_quads import PV_ROWS

CHAIN_STEPS = (1, 5, -3, 64, -200)


@pytest.fixture(scope="module")
def chain_kit():
    p = Parameters.create(N=2048, levels=4, dnum=2, insecure=True)
    return Kit(p, rotations=CHAIN_STEPS, elements=[conjugation_element(p)])


@given(seed=st.integers(0, 2**32 - 1), chain=st.lists(st.sampled_from(CHAIN_STEPS), min_size=1, max_size=3))
@settings(max_examples=8, deadline=None)
def test_a_packed_chain_splits_into_the_two_chains(chain_kit, seed, chain):
    """NEXUS-BERT-KV-COMPLEX: for real x1, x2 and any chain of rotations and real-mask products (each mask's product
    rescaled, the first mask halved), running the chain once on x1 + i x2 (attention_packed.pack) and splitting with
    one conjugation (packing.unpack_complex) gives the chain of x1 and the chain of x2 (numpy) within CKKS noise."""
    kit, rng = chain_kit, np.random.default_rng(seed)
    S = kit.p.slots
    x = rng.normal(0, 1, (2, S))
    masks = [rng.uniform(-1, 1, S) for _ in chain]
    z = apk.pack(kit.ev, kit.encrypt(x[0], level=3), kit.encrypt(x[1], level=3))
    want = x.copy()
    for k, (r, m) in enumerate(zip(chain, masks)):
        z = kit.ev.rotate(z, r)
        z = kit.ev.rescale(kit.ev.mul_const(z, m * (0.5 if k == 0 else 1.0)))
        want = np.roll(want, -r, axis=1) * m
    for ct, ref in zip(unpack_complex(kit.ev, z, 1, 1), want):
        got = kit.enc.decode(kit.D.decrypt(ct))
        np.testing.assert_allclose(got.real, ref, atol=1e-4)
        assert np.max(np.abs(got.imag)) < 1e-4  # the other operand's part is gone


def test_pack_refuses_different_levels(chain_kit):
    """NEXUS-BERT-KV-COMPLEX: the two operands of a packing share a level and a scale."""
    kit = chain_kit
    with pytest.raises(ValueError, match="one level and scale"):
        apk.pack(kit.ev, kit.encrypt(np.ones(4), level=3), kit.encrypt(np.ones(4), level=2))


def small_attention(heads, n=14):
    cfg = bb.config("softmax-gelu", layers=1, hidden_size=8 * heads, num_attention_heads=heads, intermediate_size=64)
    p = Parameters.create(N=2048, levels=5, dnum=2, insecure=True)
    mask = np.r_[np.ones(n - 2), np.zeros(2)]
    kit = pair_kit(cfg, n, p)
    ev = CountingEvaluator(kit.ev)
    fw, lay = forward_of(cfg, ev, n, mask)
    return kit, ev, fw, lay, mask


@pytest.mark.parametrize("heads", [6, 8])
def test_packed_skewed_keys_equal_the_pairs_own(heads):
    """NEXUS-BERT-KV-COMPLEX: packed_skewed_keys decrypts, per head pair, to skewed_keys_pair (the oracle: its complex
    halves, the keys t + r and t + r + R) and to numpy, at the same level and scale, with fewer key switches; the
    scores from it equal pair_scores' own (N = 2^11, heads of 8: 3 pairs (one without a partner) or 4; n = 14 of
    n_pad = 16, two padded keys)."""
    kit, ev, fw, lay, _ = small_attention(heads)
    assert ap.applies(lay) and fw.pairs()
    w, n_pad, dh = lay.window, lay.n_pad, lay.head_dim
    R, key = n_pad // 2, fw.vec.key
    rng = np.random.default_rng(heads)
    K, Q = rng.normal(0, 1, (2, lay.heads // 2, lay.slots // w, w))
    kps = [kit.encrypt(k.ravel(), level=4) for k in K]
    old = [ap.skewed_keys_pair(ev, kp, lay, key) for kp in kps]
    ks_old = ev.counts["key_switches"]
    ev.reset()
    new = apk.packed_skewed_keys(ev, kps, lay, key)
    assert ev.counts["key_switches"] < ks_old and ev.counts["conjugations"] == heads // 4
    t = np.arange(lay.slots // w)[:, None]
    for k, (a, b) in enumerate(zip(new, old)):
        assert (a.level, a.scale) == (b.level, b.scale)
        got = kit.enc.decode(kit.D.decrypt(a)).reshape(-1, w)
        np.testing.assert_allclose(got, kit.enc.decode(kit.D.decrypt(b)).reshape(-1, w), atol=1e-4)
        for o in (0, n_pad):  # numpy: E[t, o + p] = K[t + p, o + p] key[t + p] + i K[t + p + R, o + p] key[t + p + R]
            for pp in range(R + dh - 1):
                lo, hi = (t[:, 0] + pp) % n_pad, (t[:, 0] + pp + R) % n_pad
                want = K[k][lo, o + pp] * key[lo] + 1j * K[k][hi, o + pp] * key[hi]
                np.testing.assert_allclose(got[:, o + pp], want, atol=1e-4)
        assert np.max(np.abs(got[:, R + dh - 1:n_pad])) < 1e-4 and np.max(np.abs(got[:, n_pad + R + dh - 1:])) < 1e-4
    qp = kit.encrypt(Q[0].ravel(), level=4)
    s_new = ap.pair_scores(ev, qp, kps[0], lay, key, 0.3, E=new[0])
    s_old = ap.pair_scores(ev, qp, kps[0], lay, key, 0.3)
    assert (s_new.level, s_new.scale) == (s_old.level, s_old.scale)
    np.testing.assert_allclose(kit.decrypt(s_new), kit.decrypt(s_old), atol=1e-4)
    assert np.max(np.abs(kit.decrypt(s_old))) > 0.1  # scores that could differ


@pytest.mark.parametrize("heads", [12, 16])
def test_pv_with_packed_values_equals_the_oracle_and_numpy(heads):
    """NEXUS-BERT-KV-COMPLEX: Forward.pv with kv_complex (the default) decrypts to the chunk-pair P V without it (the
    oracle) and to numpy within CKKS noise, at the same level and scale, zero outside the chunks' slots, with fewer
    key switches (N = 2^11, heads of 8, 4 per chunk: 3 chunks (chunk pairs 0-1 and 2 packed) or 4 (0-1 and 2-3))."""
    kit, ev, fw, lay, mask = small_attention(heads)
    n = 14
    assert aq.applies(lay) and lay.chunks(lay.d) == heads // 4
    Pm, V, paired, vc = pv_inputs(kit, lay, n, mask, heads)
    outs = {}
    for packed in (False, True):
        fw.rows, fw.i, fw.st = PV_ROWS, 0, {**fw.st, "kv_complex": packed, "pv_lazy": False}
        ev.reset()
        outs[packed] = (fw.pv(0, paired, vc), ev.counts["key_switches"], ev.counts["conjugations"])
    (old, ks_old, cj_old), (new, ks, cj) = outs[False], outs[True]
    assert_pv_output(kit, lay, n, new, old, Pm, V)
    assert ks < ks_old and cj == cj_old + 1


def test_packed_skews_key_switches_at_bert_base():
    """NEXUS-BERT-KV-COMPLEX: BERT-base (n = 128, dh = 64, N = 2^16) on the DryEvaluator: the skewed keys of the 6
    head pairs in 3 x (22 + 1 + 2) = 75 key switches (132 unpacked), 3 conjugations; the H of the 3 chunk pairs in
    (14 + 15 + 1 + 2) + 30 = 62 (90 unpacked), 1 conjugation; the levels of the unpacked paths."""
    p, _ = bootstrap_preset(bb.PRESET)
    cfg = bb.config("softmax-gelu", layers=1)
    ev = DryEvaluator(p)
    fw, lay = forward_of(cfg, ev, 128, np.ones(128))
    kps = [ev.fresh(10) for _ in range(lay.heads // 2)]
    old = [ap.skewed_keys_pair(ev, kp, lay, fw.vec.key) for kp in kps]
    assert ev.counts["key_switches"] == 132
    ev.counts.clear()
    new = apk.packed_skewed_keys(ev, kps, lay, fw.vec.key)
    assert (ev.counts["key_switches"], ev.counts["conjugations"]) == (75, 3)
    assert [e.level for e in new] == [e.level for e in old] == [9] * 6
    V = [ev.fresh(10) for _ in range(lay.chunks(lay.d))]
    ev.counts.clear()
    old = [aq.imaginary_shift(ev, aq.skewed_pair(ev, V, lay, q), lay) for q in range(0, len(V), 2)]
    assert ev.counts["key_switches"] == 90
    ev.counts.clear()
    new = apk.packed_skewed_values(ev, V, lay)
    assert (ev.counts["key_switches"], ev.counts["conjugations"]) == (62, 1)
    assert [h.level for h in new] == [h.level for h in old] == [9] * 3


@pytest.mark.parametrize("attention,heads", [("softmax", 4), ("2quad-freediv", 6)])
def test_forward_with_packed_skews_no_worse_than_the_oracle(attention, heads):
    """NEXUS-BERT-KV-COMPLEX: the whole forward (2 layers, heads of 8, n = 14 of 16, N = 2^11, oracle refreshes) with
    kv_complex and without (the oracle): the same logits within CKKS noise, and per-layer and logit errors against
    the float64 model no worse than the oracle's (within a factor 1.5 plus 1e-5), with fewer key switches. Softmax
    with 4 heads (the keys of two head pairs packed), 2Quad with 6 (three head pairs, three chunks of two heads: the
    values of chunk pairs 0-1 and 2 packed too)."""
    old, new = forward_errors(attention, heads, 7, [({"kv_complex": False}, {}), ({}, {})])  # {}: kv_complex on
    assert_no_worse(new, old)
    assert new[3] < old[3]


def test_the_packed_skews_need_no_new_galois_key():
    """NEXUS-BERT-KV-COMPLEX: the dry run's key set (keyset.forward_key_levels, the keys the client makes) is the same
    with kv_complex as without it (R w and the conjugation serve the head pairs already), on a layout where both
    skews are packed (6 heads of 8, three chunks, n = 14 of 16, N = 2^11)."""
    p, _, keys = key_sets("kv_complex")
    assert set(keys[True]) == set(keys[False]) and conjugation_element(p) in keys[True]


def key_sets(option: str):
    """(params, config, {False: keys, True: keys}): keyset.forward_key_levels of the student's dry run with the model
    option off and on (6 heads of 8, three chunks, n = 14 of 16, N = 2^11)."""
    p, rc = bootstrap_parameters(1024, levels_after=19, encapsulation_h=32, num_p=3, insecure=True)
    top = p.L - rc.depth
    cfg = bb.config("2quad-freediv-quad", layers=1, hidden_size=48, num_attention_heads=6, intermediate_size=64)
    mask = np.r_[np.ones(12), np.zeros(2)]
    keys = {}
    for on in (False, True):
        model = nb.NexusModel(cfg, bc.random_weights(cfg), ranges=ranges(1), options={option: on})
        keys[on] = forward_key_levels(model, 14, p, top, top, attention_mask=mask, head_rows=True)
    return p, cfg, keys
