"""The diagonal Q K^T (refimpl.nexus.bert.attention, ours) against today's head_scores (the oracle) on a real
N = 2^11 ring, and its key switches at BERT-base size on the DryEvaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from refimpl.ckks import Parameters
from refimpl.experiments import bertbase as bb
from refimpl.nexus import bert as nb
from refimpl.nexus.bert import attention as at
from refimpl.nexus.counting import CountingEvaluator, DryEvaluator

from .helpers import Kit


def ranges(layers, bound=8.0):
    return {"score_bound": bound, "var": {f"L{i}.ln{j}": (0.5, 4.0) for i in range(layers) for j in (1, 2)},
            "act": (-6.0, 6.0), "absmax": {}}


def forward_of(cfg, ev, n, mask):
    model = nb.NexusModel(cfg, {"classifier.weight": np.zeros((2, cfg.hidden_size)), "classifier.bias": np.zeros(2)},
                          ranges=ranges(1))
    lay = nb.input_layout(cfg, n, ev.params.slots, head_rows=True)
    return nb.Forward(ev, None, model, lay, mask, [], [], None), lay


@pytest.mark.parametrize("attention", ["softmax", "2quad-freediv"])
def test_diagonal_scores_equal_head_scores(attention):
    """NEXUS-BERT-QK-DIAG: per head, the diagonal Q K^T decrypts to head_scores' rows (same slots, zero past the
    row, key mask and 1/sqrt(dh) folded in, 2Quad's shift added) within CKKS noise, at the same level and scale,
    with fewer key switches (N = 2^11, 4 heads of 8, n = 14 of n_pad = 16, two padded keys)."""
    cfg = bb.config(attention.replace("softmax", "softmax-gelu").replace("2quad-freediv", "2quad-freediv-quad"),
                    layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64)
    p = Parameters.create(N=2048, levels=4, dnum=2, insecure=True)
    n = 14
    mask = np.r_[np.ones(n - 2), np.zeros(2)]
    dry, lay = forward_of(cfg, DryEvaluator(p), n, mask)
    w, n_pad, dh = lay.window, lay.n_pad, lay.head_dim
    steps = set(nb.rotation_steps(cfg, n, p.slots, head_rows=True))
    steps |= {b * w for b in range(at.baby(n_pad))} | {a * at.baby(n_pad) * w for a in range(n_pad)}
    steps |= set(range(at.baby(dh))) | {(j % at.baby(dh)) - j * w for j in range(dh)}
    steps |= {at.baby(dh) * a for a in range(dh)}
    kit = Kit(p, rotations=sorted(s for s in steps if s % p.slots))
    ev = CountingEvaluator(kit.ev)
    fw, _ = forward_of(cfg, ev, n, mask)
    rng = np.random.default_rng(0)
    Q, K = rng.normal(0, 1, (n, lay.d)), rng.normal(0, 1, (n, lay.d))
    level = 3
    qc, kc = (kit.encrypt(nb.pack(x, lay)[0], level=level) for x in (Q, K))
    if attention == "softmax":
        scale, shift = 1 / math.sqrt(dh), 0.0
    else:
        scale, shift = 0.3, 0.7
    old = fw.head_scores(qc, kc, 0, scale, shift)
    ks_old = ev.counts["key_switches"]
    ev.reset()
    vec = fw.vec
    for h in range(lay.heads):
        qh, kh = (kit.encrypt(at.pack_head(x, lay, h), level=level) for x in (Q, K))
        new = at.head_scores_diagonal(ev, qh, kh, lay, vec.key_rows(0, scale), vec.key_rows(0, shift) if shift else None)
        assert (new.level, new.scale) == (old[h].level, old[h].scale)
        got, ref = kit.decrypt(new), kit.decrypt(old[h])
        np.testing.assert_allclose(got, ref, atol=1e-4)
        s = Q[:, h * dh:(h + 1) * dh] @ K[:, h * dh:(h + 1) * dh].T * scale  # and against numpy
        t = np.arange(n)
        for r in range(n_pad):
            k = (t + r) % n_pad  # key of entry r of row t; keys >= n and masked keys give 0
            km = np.where(k < n, mask[np.minimum(k, n - 1)], 0.0)
            np.testing.assert_allclose(got[t * w + r], km * (s[t, np.minimum(k, n - 1)] + shift), atol=1e-4)
        assert np.max(np.abs(got.reshape(-1, w)[:, n_pad:])) < 1e-4  # zero past the row
    assert ev.counts["key_switches"] < ks_old


def test_diagonal_scores_key_switches_at_bert_base():
    """NEXUS-BERT-QK-DIAG: BERT-base (n = 128, dh = 64, N = 2^16) on the DryEvaluator: 107 key switches per head
    (22 for the skewed keys, 7 baby steps, 63 rotations of E, 8 relinearizations, 7 giant steps), 1,284 per
    layer against head_scores' 7,662; 2 levels."""
    from refimpl.ckks.bootstrap.bootstrapper import bootstrap_preset

    p, _ = bootstrap_preset(bb.PRESET)
    cfg = bb.config("softmax-gelu", layers=1)
    ev = DryEvaluator(p)
    fw, lay = forward_of(cfg, ev, 128, np.ones(128))
    qh, kh = ev.fresh(10), ev.fresh(10)
    out = at.head_scores_diagonal(ev, qh, kh, lay, fw.vec.key_rows(0, 0.125))
    assert out.level == 8
    c = ev.counts
    assert (c["key_switches"], c["rotations"], c["relinearizations"]) == (107, 99, 8)
    assert lay.heads * c["key_switches"] == 1284


def test_diagonal_pv_equals_pv():
    """NEXUS-BERT-PV-DIAG: P V with the key shift as the inner index decrypts to today's pv (the oracle) and to
    numpy within CKKS noise, at the same level and scale, with fewer key switches (N = 2^11, 4 heads of 8,
    n = 14 of n_pad = 16, two padded keys)."""
    cfg = bb.config("softmax-gelu", layers=1, hidden_size=32, num_attention_heads=4, intermediate_size=64)
    p = Parameters.create(N=2048, levels=4, dnum=2, insecure=True)
    n = 14
    mask = np.r_[np.ones(n - 2), np.zeros(2)]
    _, lay = forward_of(cfg, DryEvaluator(p), n, mask)
    w, n_pad, dh = lay.window, lay.n_pad, lay.head_dim
    steps = set(nb.rotation_steps(cfg, n, p.slots, head_rows=True)) | at.diagonal_steps(lay)
    kit = Kit(p, rotations=sorted(s for s in steps if s % p.slots))
    ev = CountingEvaluator(kit.ev)
    rows = [{"block": "L0.pv.mask", "bootstrap": False, "level_in": 3, "level_out": 2},
            {"block": "L0.pv.mul", "bootstrap": False, "level_in": 2, "level_out": 1}]
    fw, _ = forward_of(cfg, ev, n, mask)
    fw.rows = rows
    fw.diagonal_attention = False  # the oracle: the per-shift pv
    rng = np.random.default_rng(1)
    Pm = rng.uniform(0, 1, (lay.heads, n, n)) * mask[None, None, :]  # [head, query, key], padded keys 0
    V = rng.normal(0, 1, (n, lay.d))
    t = np.arange(n)
    probs = []
    for h in range(lay.heads):
        v = np.zeros((lay.slots // w, w))
        for r in range(n_pad):
            k = (t + r) % n_pad
            v[t, r] = np.where(k < n, Pm[h, t, np.minimum(k, n - 1)], 0.0)
        probs.append(v.ravel())
    assert lay.pair_rows  # the forward's pv reads two heads per ciphertext (refimpl.nexus.bert.packing)
    paired = [kit.encrypt(probs[h] + np.roll(probs[h + 1], n_pad), level=3) for h in range(0, lay.heads, 2)]
    probs = [kit.encrypt(v, level=3) for v in probs]
    vc = [kit.encrypt(x, level=3) for x in nb.pack(V, lay)]
    old = fw.pv(0, paired, vc)
    ks_old = ev.counts["key_switches"]
    ev.reset()
    masked = [ev.rescale(ev.mul_const(ph, fw.vec.key_rows(0))) for ph in probs]  # the plan's pv.mask piece
    new = at.pv_diagonal(ev, masked, vc, lay)
    assert [(c.level, c.scale) for c in new] == [(c.level, c.scale) for c in old]
    got = nb.unpack([kit.decrypt(c) for c in new], lay, lay.d)
    np.testing.assert_allclose(got, nb.unpack([kit.decrypt(c) for c in old], lay, lay.d), atol=1e-4)
    ref = np.concatenate([Pm[h] @ V[:, h * dh:(h + 1) * dh] for h in range(lay.heads)], axis=1)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert ev.counts["key_switches"] < ks_old
