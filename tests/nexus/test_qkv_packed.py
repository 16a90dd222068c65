"""QKV with complex outputs (refimpl.nexus.bert.qkv_packed, ours) against the previous path (the oracle: the model option
qkv_complex off: pair_projections, the real value chunks, attention_packed's packings) and numpy on real N = 2^11
rings; the grouping of heads and chunks as a property; the key switches at BERT-base size on the DryEvaluator; the
two-layer forward against the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refimpl.ckks import Parameters
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_preset
from refimpl.ckks.keys import conjugation_element, galois_element
from refimpl.experiments import bertbase as bb
from refimpl.nexus import bert as nb
from refimpl.nexus.bert import attention_packed as apk
from refimpl.nexus.bert import attention_pairs as ap
from refimpl.nexus.bert import qkv_packed as qp
from refimpl.nexus.bert.layout import (
    bsgs_baby,
    packed_qkv_outputs,
    pair_groups,
    value_outputs,
)
from refimpl.nexus.counting import CountingEvaluator, DryEvaluator

from .test_attention_packed import key_sets
from .test_bertbase_attention import (
    assert_no_worse,
    forward_errors,
    forward_of,
    pair_kit,
)


@given(heads=st.integers(1, 24), chunks=st.integers(1, 12))
@settings(max_examples=60, deadline=None)
def test_every_head_and_chunk_has_one_place(heads, chunks):
    """NEXUS-BERT-QKV-COMPLEX: the groups of head pairs cover every pair once, two by two (a last one alone); the value
    ciphertexts carry every chunk once, chunk a + 2 in the imaginary part of chunk a's (two chunk pairs per skew);
    packed_qkv_outputs counts the output blocks of projection_blocks and value_outputs."""
    pairs = -(-heads // 2)
    groups = pair_groups(pairs)
    assert [k for g in groups for k in g] == list(range(pairs)) and all(len(g) == 2 for g in groups[:-1])
    outs = value_outputs(chunks)
    seen = [a for a, _ in outs] + [b for _, b in outs if b is not None]
    assert sorted(seen) == list(range(chunks)) and all(b is None or b == a + 2 for a, b in outs)
    lay = type("L", (), {"heads": heads, "chunk": 4, "head_dim": 2, "n_pad": 4})()
    W = np.arange(heads * 2 * 3, dtype=float).reshape(heads * 2, 3)
    rows = qp.projection_blocks(W, np.ones(heads * 2), lay, split=True)[0].shape[0] // lay.chunk
    assert packed_qkv_outputs(heads, chunks) == 2 * rows + len(outs)


def qkv_inputs(heads, seed, n=14):
    """A Forward on N = 2^11 (heads of 8, n = 14 of 16) with the layer's input chunks at level 4 and random Q, K, V
    weights (float64 x, W, b kept for numpy)."""
    cfg = bb.config("softmax-gelu", layers=1, hidden_size=8 * heads, num_attention_heads=heads, intermediate_size=64)
    p = Parameters.create(N=2048, levels=5, dnum=2, insecure=True)
    kit = pair_kit(cfg, n, p)
    ev = CountingEvaluator(kit.ev)
    fw, lay = forward_of(cfg, ev, n, np.r_[np.ones(n - 2), np.zeros(2)])
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, lay.d))
    Wb = [(rng.normal(0, 0.3, (lay.d, lay.d)), rng.normal(0, 0.3, lay.d)) for _ in range(3)]
    return kit, ev, fw, lay, x, Wb, [kit.encrypt(v, level=4) for v in nb.pack(x, lay)]


def assert_same(kit, new, old):
    """Ciphertexts decrypting to the same complex slots within CKKS noise, at the same levels and scales."""
    assert [(c.level, c.scale) for c in new] == [(c.level, c.scale) for c in old]
    for a, b in zip(new, old):
        za, zb = (kit.enc.decode(kit.D.decrypt(c)) for c in (a, b))
        np.testing.assert_allclose(za, zb, atol=1e-4)


@given(seed=st.integers(0, 2**16), heads=st.sampled_from([4, 6, 12]))
@settings(max_examples=3, deadline=None)
def test_packed_qkv_equals_the_previous_path_and_numpy(seed, heads):
    """NEXUS-BERT-QKV-COMPLEX: packed_projections (split: Q) decrypts to pair_projections' head pairs and to numpy
    (head 2k's features on the first n_pad slots of each window, head 2k + 1's on the next n_pad), without split (K) to
    attention_packed.packed_keys of them; packed_value_chunks to packed_values of the real chunks; the same levels and
    scales, fewer key switches (N = 2^11, heads of 8: 2 pairs, 3 (one alone) or 6; 1, 2 or 3 chunks)."""
    kit, ev, fw, lay, x, Wb, xs = qkv_inputs(heads, seed)
    (Wq, bq), (Wk, bk), (Wv, bv) = Wb
    cd = lay.chunks(lay.d)
    ev.reset()
    babies = fw.baby_steps(xs, 2 * lay.heads + cd)
    old_q = ap.pair_projections(fw, xs, Wq, bq, None, babies)
    old_k = apk.packed_keys(ev, ap.pair_projections(fw, xs, Wk, bk, None, babies))
    old_v = apk.packed_values(ev, fw.linear(xs, Wv, bv, None, babies))
    ks_old = ev.counts["key_switches"]
    ev.reset()
    babies = fw.baby_steps(xs, packed_qkv_outputs(lay.heads, cd))
    new_q = qp.packed_projections(fw, xs, Wq, bq, None, babies, split=True)
    new_k = qp.packed_projections(fw, xs, Wk, bk, None, babies, split=False)
    new_v = qp.packed_value_chunks(fw, xs, Wv, bv, None, babies)
    assert ev.counts["key_switches"] < ks_old
    for new, old in ((new_q, old_q), (new_k, old_k), (new_v, old_v)):
        assert_same(kit, new, old)
    w, n_pad, dh, n = lay.window, lay.n_pad, lay.head_dim, lay.n
    Q = x @ Wq.T + bq
    for k, ct in enumerate(new_q):
        got = kit.decrypt(ct).reshape(-1, w)
        for h, o in ((2 * k, 0), (2 * k + 1, n_pad)):
            want = Q[:, h * dh + np.arange(n_pad) % dh] if h < lay.heads else np.zeros((n, n_pad))
            np.testing.assert_allclose(got[:n, o:o + n_pad], want, atol=1e-4)
        assert np.max(np.abs(got[n:])) < 1e-4


def test_packed_qkv_key_switches_at_bert_base():
    """NEXUS-BERT-QKV-COMPLEX: BERT-base (n = 128, d = 768, 12 heads, N = 2^16) on the DryEvaluator: 16 output
    ciphertexts, g = 16: 6 x 16 baby steps + 16 x 7 giant steps + 6 rotations (odd heads) + 3 conjugations (Q split)
    = 217 key switches (294 with pair_projections and g = 32); outputs at the level of the previous path."""
    p, _ = bootstrap_preset(bb.PRESET)
    cfg = bb.config("softmax-gelu", layers=1)
    ev = DryEvaluator(p)
    fw, lay = forward_of(cfg, ev, 128, np.ones(128))
    cd = lay.chunks(lay.d)
    assert packed_qkv_outputs(lay.heads, cd) == 16 and bsgs_baby(lay.chunk, cd, 16) == 16
    W, b = np.ones((lay.d, lay.d)), np.ones(lay.d)
    xs = [ev.fresh(10) for _ in range(cd)]
    babies = fw.baby_steps(xs, 16)
    out = [qp.packed_projections(fw, xs, W, b, None, babies, True), qp.packed_projections(fw, xs, W, b, None, babies, False),
           qp.packed_value_chunks(fw, xs, W, b, None, babies)]
    assert (ev.counts["key_switches"], ev.counts["conjugations"]) == (217, 3)
    assert [len(o) for o in out] == [6, 3, 4] and {c.level for o in out for c in o} == {9}


@pytest.mark.parametrize("attention,heads", [("softmax", 4), ("2quad-freediv", 6)])
def test_forward_with_packed_qkv_no_worse_than_the_oracle(attention, heads):
    """NEXUS-BERT-QKV-COMPLEX: the whole forward (2 layers, heads of 8, n = 14 of 16, N = 2^11, oracle refreshes) with
    qkv_complex and without (the oracle): the same logits within CKKS noise, per-layer and logit errors against the
    float64 model no worse than the oracle's (within a factor 1.5 plus 1e-5), fewer key switches. Softmax with 4 heads
    (two pairs, one chunk), 2Quad with 6 (a pair alone; three chunks, chunk 1 alone)."""
    old, new = forward_errors(attention, heads, 7, [({"qkv_complex": False}, {}), ({}, {})])
    assert_no_worse(new, old)
    assert new[3] < old[3]


def test_packed_qkv_keys_are_the_clients():
    """NEXUS-BERT-QKV-COMPLEX: every Galois key the dry run uses with qkv_complex (keyset.forward_key_levels) is in the
    client's list (layout.rotation_steps with its QKV shape, and the conjugation), and the packed QKV takes no key
    the previous path did not (6 heads of 8, three chunks, n = 14 of 16, N = 2^11)."""
    p, cfg, keys = key_sets("qkv_complex")
    client = {galois_element(p, r) for r in nb.rotation_steps(cfg, 14, p.slots, head_rows=True)}
    assert set(keys[True]) <= client | {conjugation_element(p)}
    assert set(keys[True]) <= set(keys[False])
