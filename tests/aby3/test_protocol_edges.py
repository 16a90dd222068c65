"""Edges of the ABY3 arithmetic layer that the protocol tests do not reach (ABY3-PRSS-1, ABY3-COST-PIN).

Written for the mutants of `python tests/mutation.py run aby3` that survived (docs/testing.md):
the per-protocol scope names that the cost breakdowns report, the public-coin key derived
from the parties' contributions, the fixed-point format, the operand checks and the forms of
public constants. Every expected value is computed independently (hashlib, Python integers
mod 2^64, float64).
"""

import hashlib
import re

import numpy as np
import pytest

from refimpl.aby3 import arith
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


def test_fixed_point_format_checks_and_range():
    """ABY3 §5 fixed point over Z_2^64: only k = 64; f in [1, 30]; |x| 2^f < 2^62 at encoding (max_abs =
    2^(62 - f)), the boundary itself refused with the range in the message; encode rounds to the
    nearest integer (ties to even) mod 2^64 and decode inverts it, at f or at explicit scale bits."""
    from refimpl.aby3.fixed import Fxp

    with pytest.raises(ValueError, match="only the ring Z_2\\^64 is implemented, got k = 32"):
        Fxp(k=32)
    for f in (0, 31, -1):
        with pytest.raises(ValueError, match=f"fraction bits f = {f} must be in \\[1, 30\\]"):
            Fxp(f=f)
    assert Fxp(f=1).f == 1 and Fxp(f=30).f == 30
    F = Fxp()
    assert F.f == 18 and F.k == 64 and F.max_abs == 2.0**44 and Fxp(f=10).max_abs == 2.0**52
    got = F.encode(np.array([1.0, -1.0, 0.5, 3 * 2.0**-19, 2.0**-19, 0.0]))
    assert got.dtype == np.uint64
    assert [int(v) for v in got] == [2**18, 2**64 - 2**18, 2**17, 2, 0, 0]  # 1.5 -> 2, 0.5 -> 0 (even)
    assert [int(v) for v in F.encode(np.array([3.0, -2.0]), scale_bits=0)] == [3, 2**64 - 2]
    assert F.encode(np.zeros(0)).size == 0
    edge = (2.0**62 - 2.0**10) / 2.0**18  # |x| 2^f just below 2^62 (a float64 step there is 2^10)
    assert int(F.encode(np.array([edge]))[0]) == 2**62 - 2**10
    assert int(F.encode(np.array([-edge]))[0]) == 2**64 - 2**62 + 2**10
    for bad in (2.0**44, -(2.0**44)):
        with pytest.raises(ValueError, match=r"value 1\.75922e\+13 outside the fixed-point range \|x\| < 2\^44 "
                                             r"\(k = 64, 18 fraction bits\)"):
            F.encode(np.array([0.0, bad]))
    with pytest.raises(ValueError, match=r"\|x\| < 2\^52 \(k = 64, 10 fraction bits\)"):
        F.encode(np.array([2.0**52]), scale_bits=10)
    with pytest.raises(ValueError, match="cannot encode NaN or infinity"):
        F.encode(np.array([1.0, np.inf]))
    v = np.array([2**18, 2**64 - 3 * 2**17, 5], dtype=np.uint64)
    assert F.decode(v).tolist() == [1.0, -1.5, 5 * 2.0**-18]
    assert F.decode(v, scale_bits=1).tolist() == [2.0**17, -3 * 2.0**16, 2.5]
    assert F.decode([2**64 - 1]).tolist() == [-(2.0**-18)]


def test_local_ops_results_belong_to_the_run_and_compose():
    """ABY3-LIN-1: the result of every local operation carries the run's session (so it combines with the
    run's other shares, and a share from another run is refused), and the values are exact:
    checked by adding x to each result and revealing (ring arithmetic mod 2^64 on the encodings)."""
    from refimpl.aby3.fixed import Fxp

    F = Fxp()
    x = np.array([1.5, -2.0, 3.25, 0.0])
    ops = {
        "neg": (lambda p, a: arith.neg(p, a), -x),
        "sub": (lambda p, a: arith.sub(p, a, a), 0 * x),
        "add_public": (lambda p, a: arith.add_public(p, a, 0.5), x + 0.5),
        "add_raw": (lambda p, a: arith.add_raw(p, a, F.encode(np.full(4, 2.0))), x + 2.0),
        "mul_int": (lambda p, a: arith.mul_int(p, a, -3), -3 * x),
        "lshift": (lambda p, a: arith.lshift(p, a, 2), 4 * x),
        "mul_public": (lambda p, a: arith.mul_public(p, a, 0.25), 0.25 * x),  # one truncation: <= 1 ulp
    }
    for name, (fn, want) in ops.items():
        out, _, _ = run(lambda p, a, fn=fn: arith.add(p, fn(p, a), a), x)
        assert np.max(np.abs(out - (want + x))) <= (2.0**-F.f if name == "mul_public" else 0.0), name
    out, _, _ = run(lambda p, a: arith.add(p, arith.sum_axis(p, a.reshape(2, 2), keepdims=True),
                                         arith.sum_axis(p, a.reshape(2, 2), axis=-1, keepdims=True)), x)
    assert out.tolist() == [[2 * (x[0] + x[1])], [2 * (x[2] + x[3])]]


def test_matmul_refuses_shares_of_another_run_and_mismatched_shapes():
    """ABY3-SHARE-3: matmul (like mul) refuses a share from another protocol run on either side, and shapes
    whose inner or batch dimensions differ, naming both shapes."""
    from refimpl.aby3.party import simulate
    from refimpl.aby3.shares import share_input

    def share(p, shape):
        return share_input(p, 0, np.ones(shape) if p.id == 0 else None)

    stale = simulate(lambda p: share(p, (2, 2))).outputs
    for side in (0, 1):
        def mixed(p, side=side):
            fresh = share(p, (2, 2))
            x, y = (stale[p.id], fresh) if side == 0 else (fresh, stale[p.id])
            return arith.matmul(p, x, y)

        with pytest.raises(ValueError, match="different protocol runs"):
            simulate(mixed)
    for xs, ys in (((2, 3), (4, 2)), ((2, 2, 3), (3, 3, 2))):
        with pytest.raises(ValueError, match=f"matmul shapes do not match: {re.escape(str(xs))} @ {re.escape(str(ys))}"):
            simulate(lambda p, xs=xs, ys=ys: arith.matmul(p, share(p, xs), share(p, ys)))


def test_fresh_keys_are_four_independent_os_keys():
    """ABY3-PRSS-1: the simulator's secure setup draws k_0, k_1, k_2 and k_pub: four distinct 32-byte keys,
    new on every call."""
    from refimpl.aby3.prss import fresh_keys

    k, k2 = fresh_keys(), fresh_keys()
    assert len(k) == 4 and all(isinstance(x, bytes) and len(x) == 32 for x in k)
    assert len(set(k) | set(k2)) == 8


def test_mul_public_takes_any_real_constant():
    """ABY3-LIN-1: mul_public's constants are public reals in any numeric form (float, int, an exact
    fractions.Fraction): each is read as float64, and the product is within one ulp."""
    from fractions import Fraction

    x = np.array([1.5, -2.0, 3.25])
    for c in (Fraction(1, 4), [Fraction(3, 8), Fraction(-1, 2), Fraction(5, 4)], 3, np.float32(0.75)):
        out, _, _ = run(lambda p, a, c=c: arith.mul_public(p, a, c), x)
        want = x * np.array(c, dtype=np.float64)
        assert np.max(np.abs(out - want)) <= 2.0**-18, c


def test_truncate_refuses_a_share_of_another_run_and_integer_constants_need_no_truncation():
    """ABY3-SHARE-3, ABY3-TRUNC-2: truncate refuses a share from another protocol run; mul_public by an
    integer is exact and local (t = 0: no truncation, nothing sent)."""
    from refimpl.aby3.party import simulate
    from refimpl.aby3.shares import share_input

    stale = simulate(lambda p: share_input(p, 0, np.ones(2) if p.id == 0 else None)).outputs
    with pytest.raises(ValueError, match="different protocol runs"):
        simulate(lambda p: arith.truncate(p, stale[p.id]))
    x = np.array([1.5, -2.0, 3.25])
    out, _, cost = run(lambda p, a: arith.mul_public(p, a, np.array([3.0, -2.0, 0.0])), x)
    assert np.array_equal(out, x * np.array([3.0, -2.0, 0.0])) and cost["bytes"] == 0 and cost["rounds"] == 0


def test_add_and_sub_check_both_operands():
    """ABY3-SHARE-3: add and sub refuse a share from another run on either side, and operands of different
    shapes (no implicit broadcasting), naming the shapes."""
    from refimpl.aby3.party import simulate
    from refimpl.aby3.shares import share_input

    def share(p, n):
        return share_input(p, 0, np.ones(n) if p.id == 0 else None)

    stale = simulate(lambda p: share(p, 2)).outputs
    for op in (arith.add, arith.sub):
        for side in (0, 1):
            def mixed(p, op=op, side=side):
                fresh = share(p, 2)
                return op(p, stale[p.id], fresh) if side == 0 else op(p, fresh, stale[p.id])

            with pytest.raises(ValueError, match="different protocol runs"):
                simulate(mixed)
        with pytest.raises(ValueError, match=re.escape("shares of different shapes [(2,), (3,)] (broadcast explicitly)")):
            simulate(lambda p, op=op: op(p, share(p, 2), share(p, 3)))


def test_mul_int_takes_integral_floats_and_refuses_fractions():
    """ABY3-LIN-1: mul_int by public integers given as ints, unsigned ints or integral floats (negative
    ones too) is the exact product; a non-integral float is refused with a pointer to mul_public."""
    x = np.array([1.5, -2.0, 3.25])
    for c in (np.array([2.0, -3.0, 0.0]), np.array([2, -3, 0]), np.array([2, 3, 0], dtype=np.uint8), -4.0):
        out, _, cost = run(lambda p, a, c=c: arith.mul_int(p, a, c), x)
        assert np.array_equal(out, x * np.asarray(c, dtype=np.float64)) and cost["bytes"] == 0, c
    with pytest.raises(ValueError, match="^mul_int needs integer constants; use mul_public for reals$"):
        run(lambda p, a: arith.mul_int(p, a, np.array([2.0, 0.5, 1.0])), x)
