"""The linear layers' baby steps chosen per product (refimpl.nexus.bert.layout.bsgs_baby, ours): Forward.linear
(Halevi-Shoup diagonals, baby-step giant-step) with the g that minimises a product's key switches decrypts to
numpy's x W^T + b and to the single-g product of before (g = Layout.baby, the babies passed in), with the rotation
count of the formula. Real insecure ring N = 2^11, P = 64."""

import numpy as np
import pytest

from refimpl.bert.config import BertConfig
from refimpl.bert.model import init_params
from refimpl.ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from refimpl.ckks.bootstrap.bootstrapper import bootstrap_parameters
from refimpl.nexus import bert as nb
from refimpl.nexus.counting import CountingEvaluator
from refimpl.ring.sampling import RandomSource


def test_bsgs_baby_minimises_the_key_switches():
    """NEXUS-BERT-LINEAR-G: the chosen g is the power of two with the fewest rotations in g (P / g - 1) per input
    (output) chunk; BERT-base (P = 128): FFN2 24 -> 6 chunks 8 (282 rotations, 426 at g = 16), QKV with Q and K
    per head 6 -> 30 32 (282, 306), FFN1 6 -> 24 and the output projection 16 (their optimum, ties kept at
    Layout.baby)."""
    def cost(P, cin, cout, g):
        return cin * g + cout * (P // g - 1)

    for P in (8, 32, 64, 128):
        for cin in (1, 2, 6, 24):
            for cout in (1, 3, 6, 30):
                g = nb.bsgs_baby(P, cin, cout)
                assert g & (g - 1) == 0 and 1 <= g <= P
                assert cost(P, cin, cout, g) == min(cost(P, cin, cout, 1 << e) for e in range(P.bit_length()))
    assert [nb.bsgs_baby(128, *s) for s in ((24, 6), (6, 30), (6, 24), (6, 6))] == [8, 32, 16, 16]
    assert [cost(128, 24, 6, g) for g in (8, 16)] == [282, 426]
    assert nb.linear_steps(128, 8) == {-128} | set(range(1, 8)) | {8 * b for b in range(1, 16)}
    with pytest.raises(ValueError):
        nb.bsgs_baby(96, 1, 1)


class WithoutRotateSum:
    """An evaluator without rotate_sum: Forward.linear rotates and brings down each giant step (the previous path)."""

    def __init__(self, ev):
        self.ev = ev

    def __getattr__(self, name):
        if name == "rotate_sum":
            raise AttributeError(name)
        return getattr(self.ev, name)


@pytest.fixture(scope="module")
def setting():
    p, _ = bootstrap_parameters(2048, levels_after=4, encapsulation_h=32, num_p=3, insecure=True)
    cfg = BertConfig(vocab_size=50, hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=256,
                     max_position_embeddings=16, attention="2quad-freediv", activation="quad")
    model = nb.NexusModel(cfg, init_params(cfg, np.random.default_rng(1), dtype=np.float64),
                          ranges={"score_bound": 8.0, "var": {}, "act": (-4.0, 4.0), "absmax": {}})
    n = 6
    lay = nb.input_layout(cfg, n, p.slots)
    kg = KeyGenerator(p, RandomSource.insecure_seeded(1))
    sk = kg.secret_key()
    steps = set(nb.rotation_steps(cfg, n, p.slots)) | nb.linear_steps(lay.chunk, lay.baby)  # and today's g
    ev = Evaluator(p, kg.evaluation_keys(sk, rotations=sorted(steps)))
    return p, model, lay, kg, sk, ev


@pytest.mark.parametrize("fin,fout", [(256, 64), (64, 256)])
def test_linear_with_its_own_g_equals_numpy_and_the_single_g(setting, fin, fout):
    """NEXUS-BERT-LINEAR-G: FFN2-shaped (4 -> 1 chunks, g = 4) and FFN1-shaped (1 -> 4, g = 16) products on a real
    ring with P = 64 (Layout.baby 8), giant steps summed over Q_l P (rotate_sum): the output equals x W^T + b within
    1e-4 and the previous product's (g = 8, a ModDown per giant step) within 1e-5; rotations cin g + cout (P/g - 1),
    fewer than with g = 8."""
    p, model, lay, kg, sk, ev0 = setting
    P = lay.chunk
    assert P == 64 and lay.baby == 8
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1, (lay.n, fin))
    W, b = rng.normal(0, 1 / np.sqrt(fin), (fout, fin)), rng.normal(0, 0.1, fout)
    enc, D = Encoder(p), Decryptor(sk)
    E = Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(2))
    cts = [E.encrypt(enc.encode(v, level=3)) for v in nb.pack(x, lay)]
    cin, cout = lay.chunks(fin), lay.chunks(fout)
    g = nb.bsgs_baby(P, cin, cout)
    assert g != lay.baby

    def run(babies_g):
        ev = CountingEvaluator(ev0 if babies_g is None else WithoutRotateSum(ev0))
        fw = nb.Forward(ev, None, model, lay, np.ones(lay.n), [], [], None)
        babies = None if babies_g is None else [  # today's: the single g of the layout
            ev.rotate_hoisted(ev.add(c, ev.rotate(c, -P)), list(range(babies_g))) for c in cts]
        ys = fw.linear(cts, W, b, "w", babies)
        return nb.unpack([enc.decode(D.decrypt(y)).real for y in ys], lay, fout), ev.counts["rotations"]

    got, rot = run(None)
    old, rot_old = run(lay.baby)
    ref = x @ W.T + b
    assert np.max(np.abs(got - ref)) < 1e-4
    assert np.max(np.abs(got - old)) < 1e-5
    assert rot == cin * g + cout * (P // g - 1) < rot_old == cin * lay.baby + cout * (P // lay.baby - 1)


def test_rotate_sum_equals_the_sum_of_rotations(setting):
    """NEXUS-BERT-LINEAR-G: Evaluator.rotate_sum (the giant steps of double hoisting: key switches summed over Q_l P,
    one ModDown) decrypts to the sum of the rotated slot vectors within 1e-5, a trivial rotation included, and counts
    its non-trivial rotations as key switches; terms at different levels are refused."""
    p, model, lay, kg, sk, ev0 = setting
    enc, D = Encoder(p), Decryptor(sk)
    E = Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(4))
    rng = np.random.default_rng(5)
    vs = [rng.normal(0, 1, p.slots) for _ in range(3)]
    cts = [E.encrypt(enc.encode(v, level=2)) for v in vs]
    shifts = [0, 8, 16]
    ev = CountingEvaluator(ev0)
    got = enc.decode(D.decrypt(ev.rotate_sum(list(zip(cts, shifts))))).real
    want = sum(np.roll(v, -r) for v, r in zip(vs, shifts))
    assert np.max(np.abs(got - want)) < 1e-5
    assert ev.counts["key_switches"] == ev.counts["rotations"] == 2
    with pytest.raises(Exception, match="rotate_sum"):
        ev0.rotate_sum([(cts[0], 8), (ev0.drop_level(cts[1], 1), 16)])
