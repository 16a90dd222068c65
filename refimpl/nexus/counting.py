"""Operation counters: an evaluator proxy that counts what a NEXUS block asks of CKKS, and (ours) an
evaluator that does no arithmetic and counts the same, for counting at BERT-base size.

The spec (spec/nexus.md) states each block's contract in rotations, Subs, products, rescales
and bootstraps; tests check the contract by running the block on a `CountingEvaluator`, never
by reading the source. Only the calls a block makes count (the proxy sits in front of the
evaluator, so e.g. the automorphism inside `rotate` is not counted twice).

Key switches (the cost that dominates at N = 2^16): every non-trivial rotation (hoisted ones one
each), relinearization (a product relinearized, or `relinearize` of a degree-2 ciphertext),
conjugation and non-trivial Subs: counts["key_switches"]. Plaintext encodings: counts["encodes"]
(the encoder's `encode`, and `mul_const` / `add_const` of a slot vector, which encode inside).
`DryEvaluator` (ours) runs a block's own code with ciphertexts that hold no polynomials: levels
and scales follow refimpl.ckks.Evaluator exactly, so the forward's plan checks still run, and its
counts equal a CountingEvaluator's on the real evaluator (checked on a real small layer). It also
tallies the operations that take time by the level they run at (`ops`, keys "op@level", `OPS`), for
a time model (refimpl.experiments.bertbase.cost).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..ckks import Ciphertext, Plaintext
from ..ckks.keys import conjugation_element, galois_element, key_digits, key_rows
from ..ckks.errors import LevelExhaustedError, LevelMismatchError, ScaleMismatchError

SCALE_RTOL = 1e-9  # as refimpl.ckks.evaluator: scales this close (relative) are equal
# DryEvaluator.ops: what costs time, by level. rotate: a rotation, conjugation or Subs with its own key
# switch (a term of rotate_sum too); modup: a rotate_hoisted call (the shared decomposition); hoisted: each
# rotation of such a call; tensor: a ct-ct product before relinearizing; relin; pt_mult: a product by an encoded
# vector; scalar: by a constant or monomial; add: additions and subtractions of every kind; rescale; encode: a
# plaintext encoded; mac: a term of a fused plaintext multiply-accumulate (Evaluator.mul_plain_sum: its product
# and its addition, timed together).
OPS = ("rotate", "modup", "hoisted", "tensor", "relin", "pt_mult", "scalar", "add", "rescale", "encode", "mac")


class CountingEvaluator:
    """Wraps an Evaluator; `counts[name]` is how often the block called `name`.

    Derived counts: counts["rotations"] (rotate + each non-trivial hoisted rotation or rotate_sum term),
    counts["subs"], counts["ct_mults"] (multiply + square), counts["pt_mults"]
    (mul_plain + non-scalar mul_const), counts["relinearizations"], counts["key_switches"] and
    counts["encodes"] (see the module docstring; the encoder is wrapped too). A mul_plain_sum of K terms counts
    as the chain it replaces: K mul_plain (pt_mults) and K - 1 add (and one mul_plain_sum)."""

    _ALIASES = {"rotate": "rotations", "subs": "subs", "multiply": "ct_mults", "square": "ct_mults",
                "mul_plain": "pt_mults", "rescale": "rescales", "conjugate": "conjugations"}

    def __init__(self, ev):
        self._ev = ev
        self.counts: Counter = Counter()

    def __getattr__(self, name):
        attr = getattr(self._ev, name)
        if name == "encoder":
            return _CountingEncoder(attr, self.counts)
        if not callable(attr):
            return attr

        def counted(*args, **kwargs):
            self.counts[name] += 1
            alias = self._ALIASES.get(name)
            if alias and alias != name:
                self.counts[alias] += 1
            self._key_switches(name, args, kwargs)
            if name in ("mul_const", "add_const") and len(args) > 1 and np.ndim(args[1]) > 0:
                self.counts["encodes"] += 1  # a slot vector, encoded inside
                if name == "mul_const":
                    self.counts["pt_mults"] += 1  # a slot vector: a plaintext product
            if name == "rotate_hoisted":
                self.counts["rotations"] += sum(1 for r in args[1] if r % self._ev.params.slots)
            if name == "rotate_sum":
                self.counts["rotations"] += sum(1 for _, r in args[0] if r % self._ev.params.slots)
            return attr(*args, **kwargs)

        return counted

    def mul_plain_sum(self, cts, pts):
        terms = [0]

        def counted(xs):
            for x in xs:
                terms[0] += 1
                yield x

        out = self._ev.mul_plain_sum(counted(cts), pts)
        chain_counts(self.counts, terms[0])
        return out

    def _key_switches(self, name: str, args, kwargs) -> None:
        p = self._ev.params
        n = 0
        if name == "multiply" and kwargs.get("relinearize", args[2] if len(args) > 2 else True):
            n = 1
            self.counts["relinearizations"] += 1
        elif name == "square" or (name == "relinearize" and args[0].size == 3):
            n = 1
            self.counts["relinearizations"] += 1
        elif name == "rotate":
            n = int(args[1] % p.slots != 0)
        elif name == "rotate_hoisted":
            n = sum(1 for r in args[1] if r % p.slots)
        elif name == "rotate_sum":
            n = sum(1 for _, r in args[0] if r % p.slots)
        elif name == "conjugate":
            n = 1
        elif name in ("subs", "apply_galois"):
            n = int(args[1] % (2 * p.N) != 1)
        self.counts["key_switches"] += n

    def reset(self) -> None:
        self.counts.clear()


class _CountingEncoder:
    """The wrapped evaluator's encoder, its `encode` calls counted into counts["encodes"]."""

    def __init__(self, enc, counts: Counter):
        self._enc, self._counts = enc, counts

    def __getattr__(self, name):
        return getattr(self._enc, name)

    def encode(self, *args, **kwargs):
        self._counts["encodes"] += 1
        return self._enc.encode(*args, **kwargs)


class CountingBootstrapper:
    """Wraps a bootstrapper and counts its calls (the real and the oracle one alike)."""

    def __init__(self, bts):
        self._bts = bts
        self.calls = 0

    def __getattr__(self, name):
        return getattr(self._bts, name)

    def bootstrap(self, ct):
        self.calls += 1
        return self._bts.bootstrap(ct)


# ------------------------------------------------------------------ ours: counting at any size, no arithmetic
class DryEncoder:
    """Ours: encodes nothing; counts `encode` calls into counts["encodes"] (and checks level and size)."""

    def __init__(self, params, counts: Counter, ops: Counter | None = None):
        self.params, self.counts, self.ops = params, counts, ops

    def encode(self, z, level: int | None = None, scale: float | None = None) -> Plaintext:
        p = self.params
        if np.size(z) > p.slots:
            raise ValueError(f"at most N/2 = {p.slots} slots, got {np.size(z)} values")
        level = p.L if level is None else level
        if not 0 <= level <= p.L:
            raise ValueError(f"level must be in [0, {p.L}], got {level}")
        self.counts["encodes"] += 1
        if self.ops is not None:
            self.ops[f"encode@{level}"] += 1
        return Plaintext(None, level, p.scale if scale is None else float(scale), p)


class DryEvaluator:
    """Ours: the Evaluator's interface with no arithmetic: levels and scales exactly as refimpl.ckks.Evaluator
    (the same checks: equal levels and scales in additions, a level to rescale), ciphertexts without
    polynomials, and every call counted as `CountingEvaluator` counts it, plus counts["relinearizations"],
    counts["encodes"] (plaintext encodings, explicit or inside mul_const / add_const of a slot vector) and
    counts["key_switches"]. Runs a block's own code at BERT-base size in seconds; the counts equal a
    CountingEvaluator's on the real evaluator (tests/nexus/test_bertbase_counts.py)."""

    def __init__(self, params):
        self.params = params
        self.counts: Counter = Counter()
        self.ops: Counter = Counter()  # "op@level" -> calls, op in OPS
        self.galois: dict[int, int] = {}  # Galois element used -> the highest level it is used at (the keys needed)
        self.encoder = DryEncoder(params, self.counts, self.ops)

    def reset(self) -> None:
        self.counts.clear()
        self.ops.clear()
        self.galois.clear()

    def _op(self, op: str, level: int, n: int = 1) -> None:
        self.ops[f"{op}@{level}"] += n

    def fresh(self, level: int, scale: float | None = None) -> Ciphertext:
        """A ciphertext (no polynomials) at `level` and `scale` (default Delta): what a client would encrypt."""
        return self._new(level, self.params.scale if scale is None else scale)

    def _new(self, level: int, scale: float, size: int = 2) -> Ciphertext:
        return Ciphertext((None,) * size, level, float(scale), self.params)

    def _pair(self, a, b, op: str, scale: bool = True) -> None:
        if a.level != b.level:
            raise LevelMismatchError(f"{op}: levels differ ({a.level} and {b.level})")
        if scale and abs(a.scale - b.scale) > SCALE_RTOL * max(a.scale, b.scale):
            raise ScaleMismatchError(f"{op}: scales differ (2^{np.log2(a.scale):.4f} and 2^{np.log2(b.scale):.4f})")

    def _count(self, name: str, *aliases: str) -> None:
        self.counts[name] += 1
        for a in aliases:
            self.counts[a] += 1

    def _key_switch(self, kind: str, n: int = 1) -> None:
        self.counts[kind] += n
        self.counts["key_switches"] += n

    # linear
    def add(self, a, b):
        self._count("add")
        self._pair(a, b, "add")
        self._op("add", a.level)
        return self._new(a.level, a.scale, max(a.size, b.size))

    def sub(self, a, b):
        self._count("sub")
        self._pair(a, b, "sub")
        self._op("add", a.level)
        return self._new(a.level, a.scale, max(a.size, b.size))

    def negate(self, a):
        self._count("negate")
        self._op("add", a.level)
        return self._new(a.level, a.scale, a.size)

    def add_plain(self, a, pt):
        self._count("add_plain")
        self._pair(a, pt, "add_plain")
        self._op("add", a.level)
        return self._new(a.level, a.scale, a.size)

    def sub_plain(self, a, pt):
        self._count("sub_plain")
        self._pair(a, pt, "sub_plain")
        self._op("add", a.level)
        return self._new(a.level, a.scale, a.size)

    def add_const(self, a, value):
        self._count("add_const")
        self._op("add", a.level)
        if np.ndim(value) > 0:
            self.counts["encodes"] += 1
            self._op("encode", a.level)
        return self._new(a.level, a.scale, a.size)

    def mul_plain(self, a, pt):
        self._count("mul_plain", "pt_mults")
        if a.level != pt.level:
            raise LevelMismatchError(f"mul_plain: levels differ ({a.level} and {pt.level})")
        self._op("pt_mult", a.level)
        return self._new(a.level, a.scale * pt.scale, a.size)

    def mul_plain_sum(self, cts, pts):
        k, first, scale = 0, None, None
        for a, pt in zip(cts, pts, strict=True):
            if a.level != pt.level or (first is not None and a.level != first.level):
                raise LevelMismatchError(f"mul_plain_sum: term {k} at levels {a.level} and {pt.level}, term 0 at "
                                         f"{first.level if first is not None else a.level}")
            if first is None:
                first, scale = a, a.scale * pt.scale
            elif abs(a.scale * pt.scale - scale) > SCALE_RTOL * scale:
                raise ScaleMismatchError(f"mul_plain_sum: the product scale of term {k} differs from term 0's")
            k += 1
        if first is None:
            raise ValueError("mul_plain_sum of no terms")
        chain_counts(self.counts, k)
        self._op("mac", first.level, k)
        return self._new(first.level, scale, first.size)

    def mul_const(self, a, value, scale: float | None = None):
        self._count("mul_const")
        if a.level < 1:
            raise LevelExhaustedError(f"mul_const (then rescale) needs a level, the ciphertext is at level {a.level}")
        if np.ndim(value) > 0:
            self.counts["pt_mults"] += 1
            self.counts["encodes"] += 1
            self._op("pt_mult", a.level)
            self._op("encode", a.level)
        else:
            self._op("scalar", a.level)
        s = float(self.params.q[a.level]) if scale is None else float(scale)
        return self._new(a.level, a.scale * s, a.size)

    def mul_int(self, a, k: int):
        self._count("mul_int")
        self._op("scalar", a.level)
        return self._new(a.level, a.scale, a.size)

    # products
    def multiply(self, a, b, relinearize: bool = True):
        self._count("multiply", "ct_mults")
        self._pair(a, b, "multiply", scale=False)
        if a.size != 2 or b.size != 2:
            raise ValueError(f"multiply expects two relinearized ciphertexts, got sizes {a.size} and {b.size}")
        self._op("tensor", a.level)
        if relinearize:
            self._key_switch("relinearizations")
            self._op("relin", a.level)
        return self._new(a.level, a.scale * b.scale, 2 if relinearize else 3)

    def square(self, a):
        self._count("square", "ct_mults")
        self._key_switch("relinearizations")
        self._op("tensor", a.level)
        self._op("relin", a.level)
        return self._new(a.level, a.scale * a.scale)

    def relinearize(self, a):
        self._count("relinearize")
        if a.size == 3:
            self._key_switch("relinearizations")
            self._op("relin", a.level)
        return self._new(a.level, a.scale)

    def rescale(self, a):
        self._count("rescale", "rescales")
        if a.level < 1:
            raise LevelExhaustedError(f"rescale needs a level, the ciphertext is at level {a.level}")
        self._op("rescale", a.level)
        return self._new(a.level - 1, a.scale / self.params.q[a.level], a.size)

    def mul_rescale(self, a, b):
        self._count("mul_rescale")
        return self.rescale(self.multiply(a, b))

    def drop_level(self, a, level: int):
        self._count("drop_level")
        if not 0 <= level <= a.level:
            raise LevelExhaustedError(f"drop_level: target level {level} must be in [0, {a.level}]")
        return self._new(level, a.scale, a.size)

    # automorphisms
    def _use(self, k: int, level: int) -> None:
        self.galois[k] = max(self.galois.get(k, -1), level)

    def _galois(self, a, trivial: bool, k: int | None = None):
        if a.size != 2:
            raise ValueError("relinearize before an automorphism")
        if not trivial:
            self._use(k, a.level)
            self.counts["key_switches"] += 1
            self._op("rotate", a.level)
        return self._new(a.level, a.scale)

    def rotate(self, a, r: int):
        self._count("rotate", "rotations")
        return self._galois(a, r % self.params.slots == 0, galois_element(self.params, r))

    def conjugate(self, a):
        self._count("conjugate", "conjugations")
        return self._galois(a, False, conjugation_element(self.params))

    def subs(self, a, k: int):
        self._count("subs")
        return self._galois(a, k % (2 * self.params.N) == 1, k % (2 * self.params.N))

    def apply_galois(self, a, k: int, what: str | None = None):
        self._count("apply_galois")
        return self._galois(a, k % (2 * self.params.N) == 1, k % (2 * self.params.N))

    def rotate_hoisted(self, a, rotations) -> dict:
        self._count("rotate_hoisted")
        if a.size != 2:
            raise ValueError("relinearize before rotating")
        out = {}
        moved = sum(1 for r in set(rotations) if r % self.params.slots)
        if moved:
            self._op("modup", a.level)
            self._op("hoisted", a.level, moved)
        for r in rotations:
            if r % self.params.slots:
                self._key_switch("rotations")
                self._use(galois_element(self.params, r), a.level)
            out[r] = a if r % self.params.slots == 0 else self._new(a.level, a.scale)
        return out

    def rotate_sum(self, terms):
        self._count("rotate_sum")
        terms = list(terms)
        a0 = terms[0][0]
        for a, r in terms:
            if a.size != 2:
                raise ValueError("relinearize before rotating")
            if (a.level, a.scale) != (a0.level, a0.scale):
                raise LevelMismatchError(f"rotate_sum: terms at {(a.level, a.scale)} and {(a0.level, a0.scale)}")
            if r % self.params.slots:
                self._key_switch("rotations")
                self._op("rotate", a.level)  # its own key switch (the ModDowns it saves are not modelled)
                self._use(galois_element(self.params, r), a.level)
        self._op("add", a0.level, len(terms) - 1)
        return self._new(a0.level, a0.scale)

    def mul_monomial(self, a, j: int):
        self._count("mul_monomial")
        self._op("scalar", a.level)
        return self._new(a.level, a.scale, a.size)


def chain_counts(counts: Counter, terms: int) -> None:
    """Ours: a mul_plain_sum of `terms` terms counted as the chain of mul_plain and add it replaces."""
    counts["mul_plain_sum"] += 1
    counts["mul_plain"] += terms
    counts["pt_mults"] += terms
    counts["add"] += terms - 1


class DryBootstrapper:
    """Ours: refreshes nothing; a ciphertext at `output_level` and the default scale, calls counted."""

    def __init__(self, params, output_level: int):
        self.params, self.output_level, self.output_scale = params, output_level, params.scale
        self.calls = 0

    def bootstrap(self, ct):
        self.calls += 1
        return Ciphertext((None, None), self.output_level, self.output_scale, self.params)


def key_bytes(params, levels: dict[int, int], with_a: bool = False) -> int:
    """Ours: bytes of the Galois keys for `levels` (element -> the highest level it serves, as
    DryEvaluator.galois), each made at that level (KeyGenerator.evaluation_keys(levels=...)): per key
    its digits x rows (Q_level P) x N words of b, twice that with the uniform halves a held expanded
    (KeyGenerator's default; expand_keys=False keeps b and the seeds of a)."""
    words = sum(key_digits(params, lvl) * len(key_rows(params, lvl)) * params.N for lvl in levels.values())
    return 8 * words * (2 if with_a else 1)
