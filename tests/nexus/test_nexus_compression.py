"""NEXUS Alg. 5: compression and the decompression tree, exactly on integer polynomials, then encrypted.

Precision bound (NEXUS-ALG5-PREC): a leaf holds n a_j + e at scale n Delta, where e is the
fresh error (about 2^(log2 N + 2) per slot, doubled at each of the log2 n levels) plus one
key-switching error per level (same order, also doubled below it): |e| / (n Delta) stays within
a few bits of a fresh encryption, so we require log2(Delta) - (log2 N + 8) bits.
"""

import weakref

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from refimpl.ckks import Parameters
from refimpl.nexus.compression import (
    PlacementError, PlainRing, compress, decompress, decompress_all, placement, subs_elements,
)
from refimpl.nexus.counting import CountingEvaluator

from .helpers import Kit, bits


@given(log_n=st.integers(0, 8), log_N=st.integers(1, 8), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=40)
def test_tree_exact_on_integer_polynomials(log_n, log_N, seed):
    """NEXUS-ALG5-EXACT: leaf j of the tree over p = sum_j a_j X^j (j < n) is n a_j X^0, in order."""
    N, n = 1 << max(log_N, log_n), 1 << log_n
    a = np.random.default_rng(seed).integers(-2**20, 2**20, n)
    p = np.zeros(N, dtype=np.int64)
    p[:n] = a
    ring = PlainRing(N)
    leaves = decompress_all(ring, p, n)
    expected = np.zeros((n, N), dtype=np.int64)
    expected[:, 0] = n * a
    assert np.array_equal(np.array(leaves), expected)


def test_subs_count_and_elements_plain():
    """NEXUS-ALG5-SUBS: n - 1 Subs with k_i = N/2^i + 1 only."""
    N = 64
    ring = PlainRing(N)
    used = []
    orig = ring.subs
    ring.subs = lambda a, k: (used.append(k), orig(a, k))[1]
    assert decompress(ring, np.arange(N), lambda j, leaf: None) == N - 1
    assert len(used) == N - 1
    assert set(used) == set(subs_elements(N, N)) == {N // 2**i + 1 for i in range(6)}


def test_depth_first_memory():
    """NEXUS-ALG5-MEM: the walk keeps O(log n) nodes alive (counted by finalizers: CPython frees at refcount 0)."""
    class Node(np.ndarray):
        pass

    N = 256
    ring = PlainRing(N)
    live = [0]
    peak = [0]

    def track(x):
        x = x.view(Node)
        live[0] += 1
        weakref.finalize(x, lambda: live.__setitem__(0, live[0] - 1))
        peak[0] = max(peak[0], live[0])
        return x

    ops = PlainRing(N)
    ops.add = lambda a, b: track(ring.add(a, b))
    ops.sub = lambda a, b: track(ring.sub(a, b))
    ops.subs = lambda a, k: track(ring.subs(a, k))
    ops.mul_monomial = lambda a, j: track(ring.mul_monomial(a, j))
    decompress(ops, np.arange(N).view(Node), lambda j, leaf: None)
    assert peak[0] <= 2 * 8 + 3  # 2 log2 n + a few temporaries, not n


@pytest.fixture(scope="module")
def kit10():
    p = Parameters.create(N=1024, levels=1, log_q0=60, log_qi=40, log_p=60, num_p=1, insecure=True)
    return Kit(p, elements=subs_elements(1024, 1024))


def test_decompress_encrypted_full_tree(kit10):
    """NEXUS-ALG5-SUBS, -SCALE, -PREC: N = 2^10 values in one ciphertext, 1023 Subs, leaf j = a_j in every slot."""
    k = kit10
    N = k.p.N
    a = k.rng.uniform(-1, 1, N)
    ct = compress(k.enc, k.E, a)
    ev = CountingEvaluator(k.ev)
    got = np.empty(N)
    spread = np.empty(N)

    def consume(j, leaf):
        assert leaf.level == ct.level and leaf.scale == N * ct.scale  # no level, factor N in the scale
        z = k.decrypt(leaf)
        got[j] = z.mean()
        spread[j] = np.max(np.abs(z - a[j]))

    assert decompress(ev, ct, consume) == N - 1
    assert ev.counts["subs"] == N - 1 and ev.counts["rotations"] == 0 and ev.counts["rescales"] == 0
    assert bits(spread) >= 40 - (10 + 8)


def test_decompress_partial_tree(kit10):
    """NEXUS-ALG5-SUBS: n = 64 values in the first coefficients need log2(64) levels and 63 Subs."""
    k = kit10
    a = k.rng.uniform(-1, 1, 64)
    ev = CountingEvaluator(k.ev)
    leaves = decompress_all(ev, compress(k.enc, k.E, a), n=64)
    assert ev.counts["subs"] == 63
    z = np.array([k.decrypt(leaf) for leaf in leaves])  # [64, slots]
    assert bits(z - a[:, None]) >= 40 - (10 + 8)


@given(values=st.lists(st.floats(-1, 1), min_size=1, max_size=64))
@settings(max_examples=5)
def test_decompress_encrypted_law(kit10, values):
    """NEXUS-ALG5-EXACT (encrypted): any packed vector comes back, value j broadcast in leaf j."""
    a = np.array(values)
    n = 1 << (len(a) - 1).bit_length()
    leaves = decompress_all(kit10.ev, compress(kit10.enc, kit10.E, a), n=n)
    z = np.array([kit10.decrypt(leaf) for leaf in leaves])
    assert bits(z - np.pad(a, (0, n - len(a)))[:, None]) >= 40 - (10 + 8)


def test_placement_finds_every_copy_and_refuses_sums():
    """NEXUS-PROTO-COMP: placement maps each value x[t, j] to the 0/1 masks of the slots the layout
    puts it in (copies allowed); a layout that adds values is not a placement and is refused."""
    n, d, slots = 2, 3, 8

    def copies(x):  # ciphertext 0: x row-major; ciphertext 1: x[:, 0] twice
        return [np.concatenate([x.ravel(), [0, 0]]), np.concatenate([x[:, 0], x[:, 0], np.zeros(4)])]

    where = placement(copies, n, d, slots)
    assert len(where) == n * d
    assert [k for k, _ in where[0]] == [0, 1] and [k for k, _ in where[1]] == [0]
    np.testing.assert_array_equal(where[0][1][1], [1, 0, 1, 0, 0, 0, 0, 0])  # x[0, 0] in slots 0 and 2
    np.testing.assert_array_equal(where[3][1][1], [0, 1, 0, 1, 0, 0, 0, 0])  # x[1, 0] in slots 1 and 3
    with pytest.raises(PlacementError, match="not a placement of values"):
        placement(lambda x: [x.ravel() + np.roll(x.ravel(), 1)], n, d, slots)
