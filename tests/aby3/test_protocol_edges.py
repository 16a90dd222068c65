"""Edges of the ABY3 arithmetic layer that the protocol tests do not reach (ABY3-PRSS-1, ABY3-COST-PIN).

Written for the mutants of `python tests/mutation.py run aby3` that survived (docs/testing.md):
the per-protocol scope names that the cost breakdowns report, the public-coin key derived
from the parties' contributions, and the ring helpers for signed values and public constants.
Every expected value is computed independently (hashlib, Python integers mod 2^64).
"""

import hashlib

import numpy as np

from refimpl.aby3 import arith
from refimpl.aby3.fixed import U64, public_int, to_signed
from refimpl.aby3.prss import public_key_from

from .helpers import run

rng = np.random.default_rng(11)
X = rng.uniform(-3, 3, (2, 4))
Y = rng.uniform(-3, 3, (2, 4))
M = rng.uniform(-1, 1, (4, 3))


def test_protocols_report_their_cost_under_their_own_name():
    """ABY3-COST-PIN: each protocol's messages are attributed to a scope named after it (the names the
    cost breakdowns print), nested under the caller's scope."""
    cases = {
        "mul": (lambda p, x, y: arith.mul(p, x, y), (X, Y), ["op/mul"]),
        "matmul": (lambda p, x, y: arith.matmul(p, x, y), (X, M), ["op/matmul"]),
        "truncate_share": (lambda p, x: arith.truncate_share(p, x, 18), (X,), ["op/truncate_share"]),
        "truncate": (lambda p, x: arith.truncate(p, x), (X,), ["op/truncate"]),
        "fxp_mul": (lambda p, x, y: arith.fxp_mul(p, x, y), (X, Y), ["op/fxp_mul", "op/fxp_mul/trunc3"]),
        "fxp_matmul": (lambda p, x, y: arith.fxp_matmul(p, x, y), (X, M), ["op/fxp_matmul", "op/fxp_matmul/trunc3"]),
        "mul_public": (lambda p, x: arith.mul_public(p, x, 0.3), (X,), ["op/truncate"]),
    }
    for name, (fn, inputs, scopes) in cases.items():
        _, res, op = run(fn, *inputs)
        assert op["bytes"] > 0, name
        for sc in scopes:
            assert res.scope(sc)["bytes"] == op["bytes"], (name, sc)
        names = set().union(*(n.scopes for n in res.nets))
        assert {s for s in names if s.startswith("op/")} == set(scopes), name


def test_public_key_is_the_hash_of_the_contributions_in_order():
    """ABY3-PRSS-1: k_pub = SHA-256("refimpl aby3 public coins|" c_0 c_1 c_2); the order of the
    contributions matters and every contribution changes the key."""
    c = [bytes([i]) * 32 for i in (1, 2, 3)]
    want = hashlib.sha256(b"refimpl aby3 public coins|" + c[0] + c[1] + c[2]).digest()
    assert public_key_from(c) == want and len(want) == 32
    assert public_key_from([c[1], c[0], c[2]]) != want
    assert public_key_from([c[0], c[1], bytes(32)]) != want


def test_ring_helpers_for_signed_values_and_public_constants():
    """Two's complement over Z_2^64: to_signed reads v >= 2^63 as v - 2^64; public_int maps any Python
    integer to its residue mod 2^64."""
    v = np.array([0, 5, 2**63 - 1, 2**63, 2**64 - 1], dtype=np.uint64)
    s = to_signed(v)
    assert s.dtype == np.int64
    assert s.tolist() == [0, 5, 2**63 - 1, -(2**63), -1]
    assert to_signed([3]).tolist() == [3]
    for c in (0, 1, -1, -(2**63), 2**64 + 7, 12345678901234567890):
        r = public_int(c)
        assert isinstance(r, np.uint64) and int(r) == c % 2**64
