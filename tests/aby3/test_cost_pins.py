"""Exact communication of every ABY3 protocol and of an encoder layer of each variant (ABY3-COST-PIN).

What a protocol sends is part of its definition: a change that sends one more byte or
takes one more round than before must be seen. Each protocol runs on fixed small inputs;
the bytes (all three parties), rounds (critical path) and sends (largest per-party count)
of its scope are compared with the values written here. Where the module docstrings state
a per-element cost (mul 24 B, truncate 26 B, fxp_mul 42 B, A2B 296 B, ...), the pin is that
cost times the element count. A change that is meant must update the pin and say why.

A BERT-base layer of each variant is pinned against the committed speed table
(slow: it runs eight full-size layers).
"""

import json
from pathlib import Path

import numpy as np
import pytest

from refimpl.aby3 import arith, attention as AT, boolean as B, nonlinear as NL
from refimpl.aby3.encoder import LAYER_KEYS, encoder_layer
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import reveal, share_input

from .helpers import run

ROOT = Path(__file__).resolve().parents[2]
rng = np.random.default_rng(0)
X = rng.uniform(-3, 3, (4, 8))  # 32 elements
Y = rng.uniform(-3, 3, (4, 8))
POS = rng.uniform(0.5, 100, (4, 8))  # reciprocal / rsqrt need 2^-f <= x < 2^20
NEG = rng.uniform(-10, 0, (4, 8))  # exp_neg needs x <= 0
M = rng.uniform(-1, 1, (8, 4))  # matmul: [4, 8] @ [8, 4] -> 16 outputs
S = rng.uniform(-4, 4, (2, 4, 4))  # scores: 2 heads, 4 queries, 4 keys
MASK = np.broadcast_to(np.array([1.0, 1.0, 1.0, 0.0]), (2, 4))  # one padded key
E = X.size

# name -> (program, inputs, (bytes, rounds, sends))
PINS = {
    "mul": (lambda p, x, y: arith.mul(p, x, y), (X, Y), (24 * E, 1, 1)),
    "matmul": (lambda p, x, y: arith.matmul(p, x, y), (X, M), (24 * 16, 1, 1)),
    "truncate_share": (lambda p, x: arith.truncate_share(p, x, 18), (X,), (8 * E, 1, 1)),
    "truncate": (lambda p, x: arith.truncate(p, x), (X,), (26 * E, 1, 3)),
    "fxp_mul": (lambda p, x, y: arith.fxp_mul(p, x, y), (X, Y), (42 * E, 2, 3)),
    "fxp_matmul": (lambda p, x, y: arith.fxp_matmul(p, x, y), (X, M), (42 * 16, 2, 3)),
    "mul_public": (lambda p, x: arith.mul_public(p, x, 0.3), (X,), (26 * E, 1, 3)),
    "a2b": (lambda p, x: B.a2b(p, x), (X,), (296 * E, 8, 8)),
    "msb": (lambda p, x: B.msb(p, x), (X,), (2524, 8, 8)),
    "b2a(a2b)": (lambda p, x: B.b2a(p, B.a2b(p, x)), (X,), ((296 + 312) * E, 16, 16)),
    "inject(msb)": (lambda p, x, y: B.inject(p, B.msb(p, x), y), (X, Y), (2524 + 72 * E, 10, 10)),
    "and(a2b, a2b)": (lambda p, x, y: B.and_(p, B.a2b(p, x), B.a2b(p, y)), (X, Y), (19712, 16, 17)),
    "relu": (lambda p, x: NL.relu(p, x), (X,), (2524 + 72 * E, 10, 10)),
    "maximum": (lambda p, x, y: NL.maximum(p, x, y), (X, Y), (2524 + 72 * E, 10, 10)),
    "max_last_axis": (lambda p, x: NL.max_last_axis(p, x), (X,), (4226, 28, 30)),
    "quad": (lambda p, x: NL.quad(p, x), (X,), (42 * E, 2, 3)),
    "poly": (lambda p, x: NL.poly(p, x, (0.5, -0.25, 0.125, 0.0625)), (X,), (2 * 42 * E, 4, 6)),
    "exp_neg": (lambda p, x: NL.exp_neg(p, x), (NEG,), (17308, 26, 34)),
    "reciprocal": (lambda p, x: NL.reciprocal(p, x), (POS,), (110656, 28, 34)),
    "rsqrt": (lambda p, x: NL.rsqrt(p, x), (POS,), (200128, 34, 43)),
    "gelu_poly4": (lambda p, x: NL.gelu_poly4(p, x), (X,), (20628, 16, 19)),
    "gelu_erf": (lambda p, x: NL.gelu_erf(p, x), (X,), (16760, 18, 22)),
    "gelu_erf_as": (lambda p, x: NL.gelu_erf_as(p, x), (X,), (133368, 54, 70)),
    "layer_norm": (lambda p, x: AT.layer_norm(p, x, np.ones(8), np.zeros(8)), (X,), (26784, 39, 55)),
    "attn_softmax": (lambda p, s: AT.attention_probs(p, s, MASK, "softmax"), (S,), (50081, 73, 91)),
    "attn_2quad": (lambda p, s: AT.attention_probs(p, s, MASK, "2quad"), (S,), (30496, 31, 40)),
    "attn_2relu": (lambda p, s: AT.attention_probs(p, s, MASK, "2relu"), (S,), (33980, 39, 47)),
    "attn_scaling": (lambda p, s: AT.attention_probs(p, s, MASK, "scaling"), (S,), (26 * S.size, 1, 3)),
    "attn_softmax-freediv": (lambda p, s: AT.attention_probs(p, s, MASK, "softmax-freediv"), (S,), (21761, 45, 57)),
    "attn_2quad-freediv": (lambda p, s: AT.attention_probs(p, s, MASK, "2quad-freediv"), (S,), (1920, 2, 3)),
}


@pytest.mark.parametrize("name", sorted(PINS))
def test_protocol_cost_is_pinned(name):
    """ABY3-COST-PIN: bytes, rounds and sends of every protocol equal the pinned values."""
    fn, inputs, (nbytes, rounds, sends) = PINS[name]
    _, _, cost = run(fn, *inputs)
    assert (cost["bytes"], cost["rounds"], cost["sends"]) == (nbytes, rounds, sends)


def test_costs_do_not_depend_on_the_data():
    """ABY3-COST-PIN: the counts are a function of the shapes only (other inputs, other seed)."""
    other = np.random.default_rng(7)
    for name in ("reciprocal", "rsqrt", "exp_neg", "attn_softmax", "layer_norm", "gelu_erf_as"):
        fn, inputs, pinned = PINS[name]
        moved = tuple(v * other.uniform(0.5, 1.0, v.shape) for v in inputs)  # same signs and ranges
        _, _, cost = run(fn, *moved, seed=3)
        assert (cost["bytes"], cost["rounds"], cost["sends"]) == pinned, name


# encoder layer [n, d] = [4, 16], 2 heads, FFN 32: (attention, activation) -> (bytes, rounds, sends)
LAYER_PINS = {
    ("softmax", "gelu"): (201985, 187, 253),
    ("softmax", "gelu_poly4"): (217457, 185, 250),
    ("softmax", "gelu_as"): (668417, 223, 301),
    ("2quad", "quad"): (120736, 131, 183),
    ("2relu", "relu"): (138156, 145, 197),
    ("scaling", "quad"): (90544, 101, 146),
    ("softmax-freediv", "quad"): (112001, 144, 200),
    ("2quad-freediv", "quad"): (92160, 102, 146),
}


def _layer_weights(gen, d, ff):
    """Random BERT-layer weights of the shapes LAYER_KEYS expects (values do not change the counts)."""
    shapes = {
        "attention.self.query.weight": (d, d), "attention.self.query.bias": (d,),
        "attention.self.key.weight": (d, d), "attention.self.key.bias": (d,),
        "attention.self.value.weight": (d, d), "attention.self.value.bias": (d,),
        "attention.output.dense.weight": (d, d), "attention.output.dense.bias": (d,),
        "attention.output.LayerNorm.weight": (d,), "attention.output.LayerNorm.bias": (d,),
        "intermediate.dense.weight": (ff, d), "intermediate.dense.bias": (ff,),
        "output.dense.weight": (d, ff), "output.dense.bias": (d,),
        "output.LayerNorm.weight": (d,), "output.LayerNorm.bias": (d,),
    }
    assert set(shapes) == set(LAYER_KEYS)
    w = {k: gen.normal(0, 0.1, s) for k, s in shapes.items()}
    for k in ("attention.output.LayerNorm.weight", "output.LayerNorm.weight"):
        w[k] = 1.0 + w[k]
    return w


@pytest.mark.parametrize("attention,act", sorted(LAYER_PINS))
def test_encoder_layer_cost_is_pinned(attention, act):
    """ABY3-COST-PIN: one encoder layer of each (attention, activation) pair sends exactly the pinned counts."""
    n, d, h, ff = 4, 16, 2, 32
    w = _layer_weights(np.random.default_rng(0), d, ff)
    x = np.random.default_rng(1).normal(size=(n, d))

    def prog(p):
        xs = share_input(p, 0, x if p.id == 0 else None)
        ws = {k: share_input(p, 1, w[k] if p.id == 1 else None) for k in LAYER_KEYS}
        with p.net.scope("op"):
            y = encoder_layer(p, xs, ws, np.ones(n), heads=h, attention=attention, act=act)
        return reveal(p, y)

    cost = simulate(prog).scope("op")
    assert (cost["bytes"], cost["rounds"], cost["sends"]) == LAYER_PINS[(attention, act)]


SPEED_TABLE = ROOT / "results" / "aby3" / "aby3_speed_quiet.json"  # the newest committed BERT-base speed table


@pytest.mark.slow
def test_bert_base_layer_costs_match_the_committed_speed_table():
    """ABY3-COST-PIN: a BERT-base layer of every pair sends what the committed speed table records."""
    from refimpl.reproduce.speed import SIZES, measure_layer  # lazy: the slow test alone needs the runner

    doc = json.loads(SPEED_TABLE.read_text())
    rows = doc["sizes"]["bert-base"]["rows"]
    assert len(rows) == len(LAYER_PINS)
    for r in rows:
        got = measure_layer(SIZES["bert-base"], r["attention"], r["activation"], reps=1)
        want = r["layer"]
        assert {k: got[k] for k in ("bytes", "rounds", "sends")} == {k: want[k] for k in ("bytes", "rounds", "sends")}, \
            (r["attention"], r["activation"])
