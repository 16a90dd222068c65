"""SIMD ciphertext compression and decompression (NEXUS Alg. 5).

Compression (client): n <= N real values go straight into the coefficients of one plaintext,
    p(X) = a_0 + a_1 X + ... + a_(n-1) X^(n-1),
which is encrypted once: one ciphertext carries N values (twice the N/2 slots).

Decompression (server): the expansion tree. A node at depth i holds (up to the factor 2^i)
the sub-polynomial of the coefficients j = base (mod 2^i), moved down to the multiples of 2^i:
    u_i(X) = 2^i sum_t a_(base + t 2^i) X^(t 2^i).
With k_i = N/2^i + 1, Subs(u, k_i): X^(t 2^i) -> X^(t 2^i (N/2^i + 1)) = (-1)^t X^(t 2^i), so
    even child  u + Subs(u, k_i)             = 2 (terms with t even)            (base)
    odd child  (u - Subs(u, k_i)) X^(-2^i)   = 2 (terms with t odd) X^(-2^i)    (base + 2^i)
(the official code writes the odd child as u X^(-2^i) + Subs(u, k_i) X^(-2^i k_i), the same
polynomial since X^(-2^i k_i) = -X^(-2^i)). After log2(n) levels leaf j holds n a_j in its
constant coefficient and zeros elsewhere: a constant polynomial, i.e. a_j broadcast in every
slot (NEXUS Theorem 1). One Subs per inner node: n - 1 Subs per compressed ciphertext (the
paper's "2N' Subs" bound, against N' log N' for extracting each value separately).
If only the first n < N coefficients are used, log2(n) levels suffice (the other coefficients
are zero): n - 1 Subs.

Factor n: each level doubles the message, and refimpl doubles the recorded scale with it
(metadata only, exact): a leaf at scale n Delta decodes to a_j itself. No level is consumed.

Memory: `decompress` walks the tree depth first and hands each leaf to a consumer at once, so
at most 2 log2(n) + 1 ciphertexts are alive (the path from the root and the
odd siblings waiting on it), even at N = 2^16.

Where it runs: compression on the party that owns the values (the client for its input, the
server for its weights in the Alg. 6 precomputation); decompression on the other party, which
needs the owner's Galois keys for the elements N/2^i + 1, i < log2(n).

Input expansion (server, `expand_input`): the n x d input arrives compressed in ceil(n d / N)
ciphertexts; each leaf (x[t, j] broadcast) is multiplied by the 0/1 mask of the slots where
the model's slot layout puts x[t, j] (`placement`) and the products are summed per layout
ciphertext: one level, no rotation. The "bootstrap" variant (masks carry 1/B, each sum is
bootstrapped, then multiplied by the integer B, so that the client sends two limbs only) is
refimpl's own addition, marked where it is applied.

Reference: NEXUS Alg. 5 and Theorem 1 (Zhang et al., NDSS 2025); official code
src/matrix_mul.cpp (expansion loop); SealPIR's query expansion (Angel et al., S&P 2018).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Callable, Protocol

import numpy as np

from ..ckks import Ciphertext, Encoder, Encryptor
from .levels import with_scale


def subs_elements(N: int, n: int) -> list[int]:
    """The Galois elements of the tree, k_i = N/2^i + 1 for i < log2(n) (NEXUS Alg. 5)."""
    _check_count(N, n)
    return [N // (1 << i) + 1 for i in range(n.bit_length() - 1)]


def _check_count(N: int, n: int) -> None:
    if n < 1 or n & (n - 1) or n > N:
        raise ValueError(f"the number of packed values must be a power of two in [1, N = {N}], got {n}")


def compress(encoder: Encoder, encryptor: Encryptor, values, level: int | None = None,
             scale: float | None = None) -> Ciphertext:
    """E(sum_j a_j X^j): up to N values in the coefficients of one ciphertext (NEXUS Alg. 5, client)."""
    return encryptor.encrypt(encoder.encode_coeffs(values, level=level, scale=scale))


def compress_many(encoder: Encoder, encryptor: Encryptor, values, level: int | None = None,
                  scale: float | None = None) -> list[Ciphertext]:
    """A flat vector of any length as ceil(len/N) compressed ciphertexts (value t in ct t // N, coefficient t % N)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    N = encoder.params.N
    return [compress(encoder, encryptor, v[i: i + N], level, scale) for i in range(0, max(v.size, 1), N)]


class TreeOps(Protocol):
    """What the expansion tree needs: ciphertexts (Evaluator) or plaintext polynomials (PlainRing)."""

    params: object  # with .N

    def add(self, a, b): ...
    def sub(self, a, b): ...
    def subs(self, a, k: int): ...
    def mul_monomial(self, a, j: int): ...


def decompress(ev: TreeOps, ct, consumer: Callable[[int, object], None], n: int | None = None) -> int:
    """Expand one compressed ciphertext; consumer(j, leaf_j) for every j < n (NEXUS Alg. 5).

    Leaves arrive depth first, i.e. in bit-reversed order of j (0, n/2, n/4, 3n/4, ...).

    leaf_j = Enc(a_j in every slot) at ct's level and scale n * ct.scale (the factor n folded
    into the scale). Depth first: at most 2 log2(n) + 1 ciphertexts alive. Returns the number of
    Subs performed, n - 1. Runs on the party that receives the compressed ciphertext."""
    N = ev.params.N
    n = N if n is None else n
    _check_count(N, n)
    log_n = n.bit_length() - 1
    subs_done = 0

    def walk(u, depth: int, base: int) -> None:
        nonlocal subs_done
        if depth == log_n:
            consumer(base, u)
            return
        k = N // (1 << depth) + 1
        t = ev.subs(u, k)  # X^(t 2^i) -> (-1)^t X^(t 2^i)
        subs_done += 1
        even = _double_scale(ev.add(u, t))  # level unchanged, scale x2 (message x2)
        odd = _double_scale(ev.mul_monomial(ev.sub(u, t), -(1 << depth)))
        del u, t  # only the path from the root stays alive
        walk(even, depth + 1, base)
        walk(odd, depth + 1, base + (1 << depth))

    walk(ct, 0, 0)
    return subs_done


def decompress_all(ev: TreeOps, ct, n: int | None = None) -> list:
    """All n leaves of `decompress` in a list (small n only: this keeps n ciphertexts alive)."""
    leaves: dict = {}
    decompress(ev, ct, leaves.__setitem__, n)
    return [leaves[j] for j in range(len(leaves))]


def _double_scale(x):
    """The message doubled: record scale 2s on a ciphertext (exact metadata); plaintext models pass through."""
    if isinstance(x, Ciphertext):
        return Ciphertext(x.c, x.level, 2.0 * x.scale, x.params)
    return x


class PlainRing:
    """The oracle of the tree: exact integer polynomials in Z[X]/(X^N + 1) (int64 numpy vectors).

    Implements the TreeOps of `decompress` on plaintext coefficients, so the tree can be checked
    bit for bit before anything is encrypted: leaf j must equal n a_j X^0."""

    def __init__(self, N: int):
        self.N = N
        self.params = SimpleNamespace(N=N)

    def add(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def sub(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a - b

    def subs(self, a: np.ndarray, k: int) -> np.ndarray:
        """a(X^k): coefficient i moves to i k mod 2N, negated past N (X^N = -1)."""
        N = self.N
        e = (np.arange(N, dtype=np.int64) * k) % (2 * N)
        out = np.empty_like(a)
        out[e % N] = np.where(e >= N, -a, a)
        return out

    def mul_monomial(self, a: np.ndarray, j: int) -> np.ndarray:
        """a X^j: a negacyclic shift by j."""
        N = self.N
        j %= 2 * N
        sign = -1 if j >= N else 1
        j %= N
        out = np.roll(a, j) * sign
        out[:j] *= -1  # coefficients that wrapped past X^N
        return out


# ----------------------------------------------------------------------------- input expansion
class PlacementError(ValueError):
    """The model's slot layout is not a placement of values, or a compressed input misses part of it."""


def placement(pack: Callable[[np.ndarray], list], n: int, d: int, slots: int) -> list[list[tuple[int, np.ndarray]]]:
    """For each value x[t, j] (index t d + j): the (ciphertext, 0/1 slot mask) pairs where pack puts it
    (NEXUS Alg. 5, server side: where each decompressed broadcast goes).

    pack(x [n, d]) -> the layout's slot vectors. Found by packing the value ids 1..n d and
    checked on a random x: pack must only place values (copies allowed), which is what lets
    the server rebuild the layout from broadcasts; PlacementError otherwise."""
    ids = np.arange(1, n * d + 1, dtype=np.float64).reshape(n, d)
    packed = pack(ids)
    where: list[list] = [[] for _ in range(n * d)]
    for k, v in enumerate(packed):
        v = np.asarray(v).real
        for i in np.unique(v[v != 0]):
            if i != round(i) or not 1 <= i <= n * d:
                raise PlacementError("pack_input is not a placement of values: use --no-compress")
            where[int(i) - 1].append((k, (v == i).astype(np.float64)))
    x = np.random.default_rng(0).normal(size=(n, d))
    rebuilt = [np.zeros(slots) for _ in packed]
    for i, places in enumerate(where):
        for k, m in places:
            rebuilt[k][: m.size] += x.flat[i] * m
    for k, v in enumerate(pack(x)):
        if not np.allclose(rebuilt[k][: len(v)], np.asarray(v).real):
            raise PlacementError("pack_input is not a placement of values: use --no-compress")
    return where


def expand_input(ev, cts: list[Ciphertext], chunks: list[int], where, num_outputs: int, bound: int = 1,
                 bootstrapper=None) -> list[Ciphertext]:
    """Compressed input -> the slot layout (NEXUS Alg. 5 and the expansion of its broadcasts, server).

    cts[c] holds values c N .. c N + chunks[c] - 1 in its coefficients (all at one level l);
    `decompress` turns each into broadcasts, each broadcast x_i times the masks where[i]
    (`placement`) is added to its layout ciphertext: num_outputs ciphertexts at level l - 1 and
    scale Delta (one level, no rotation). bound B > 1 with a bootstrapper is refimpl's
    "bootstrap" variant: the masks carry 1/B, each output is bootstrapped and multiplied by the
    integer B (no level), so that x / B fits the bootstrapper's input range."""
    p = ev.params
    enc = Encoder(p)
    acc: dict[int, Ciphertext] = {}
    for c, (ct, size) in enumerate(zip(cts, chunks)):
        lvl = ct.level

        def consume(j, leaf, base=c * p.N, lvl=lvl):
            if base + j >= len(where):
                return
            for k, m in where[base + j]:
                scale = p.scale * float(p.q[lvl]) / leaf.scale  # after rescale: exactly Delta
                term = ev.mul_plain(leaf, enc.encode(m / bound, level=lvl, scale=scale))
                term = Ciphertext(term.c, lvl, p.scale * float(p.q[lvl]), p)
                acc[k] = term if k not in acc else ev.add(acc[k], term)
        decompress(ev, ct, consume, size)
    missing = [k for k in range(num_outputs) if k not in acc]
    if missing:
        raise PlacementError(f"no input value lands in ciphertexts {missing} of the layout")
    out = [with_scale(ev.rescale(acc[k]), p.scale) for k in range(num_outputs)]  # level l -> l-1, scale Delta
    if bootstrapper is not None:  # refimpl's "bootstrap" variant: x / B at level 0 -> x at the output level
        out = [ev.mul_int(bootstrapper.bootstrap(c), bound) for c in out]
    return out
