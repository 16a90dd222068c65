"""Operation counters: an evaluator proxy that counts what a NEXUS block asks of CKKS.

The spec (spec/nexus.md) states each block's contract in rotations, Subs, products, rescales
and bootstraps; tests check the contract by running the block on a `CountingEvaluator`, never
by reading the source. Only the calls a block makes count (the proxy sits in front of the
evaluator, so e.g. the automorphism inside `rotate` is not counted twice).
"""

from __future__ import annotations

from collections import Counter

import numpy as np


class CountingEvaluator:
    """Wraps an Evaluator; `counts[name]` is how often the block called `name`.

    Derived counts: counts["rotations"] (rotate + each non-trivial hoisted rotation),
    counts["subs"], counts["ct_mults"] (multiply + square), counts["pt_mults"]
    (mul_plain + non-scalar mul_const)."""

    _ALIASES = {"rotate": "rotations", "subs": "subs", "multiply": "ct_mults", "square": "ct_mults",
                "mul_plain": "pt_mults", "rescale": "rescales", "conjugate": "conjugations"}

    def __init__(self, ev):
        self._ev = ev
        self.counts: Counter = Counter()

    def __getattr__(self, name):
        attr = getattr(self._ev, name)
        if not callable(attr):
            return attr

        def counted(*args, **kwargs):
            self.counts[name] += 1
            alias = self._ALIASES.get(name)
            if alias and alias != name:
                self.counts[alias] += 1
            if name == "mul_const" and len(args) > 1 and np.ndim(args[1]) > 0:
                self.counts["pt_mults"] += 1  # a slot vector: a plaintext product
            if name == "rotate_hoisted":
                self.counts["rotations"] += sum(1 for r in args[1] if r % self._ev.params.slots)
            return attr(*args, **kwargs)

        return counted

    def reset(self) -> None:
        self.counts.clear()


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
