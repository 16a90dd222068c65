"""Which keys a NEXUS block needs, and a context that makes them (ours: a facade over the blocks).

Running one block on a ciphertext takes a few details that are not the paper's: the rotations
of its folds (Alg. 7: steps 2^i, i < log2(n), plus -n when rows are duplicated into windows of
w >= 2n slots), the bootstrapper's own Galois and encapsulation keys, and encrypting at the
bootstrapper's output level. `keys_for` states the first; `BlockContext` makes all of them on
a bootstrapping preset (refimpl.ckks.bootstrap.bootstrapper.BOOTSTRAP_PRESETS) and runs the block:

    ctx = BlockContext.create("softmax", n=4, window=8, bootstrap="toy-2^10-deep")   # insecure toy ring
    y = ctx.decrypt(ctx.run(ctx.encrypt(x), bound=0.5))

Blocks: softmax (NEXUS §3.1.3, Alg. 1), argmax (§3.4), gelu (§3.3), layernorm (§3.2).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np

from ..ckks import Ciphertext
from ..ckks.bootstrap.bootstrapper import BOOTSTRAP_PRESETS
from ..ckks.bootstrap.context import bootstrapping_context
from ..ckks.context import Context
from ..progress import Progress
from .argmax import argmax
from .folding import fold_rotations
from .gelu import gelu
from .layernorm import layernorm
from .softmax import softmax, window_layout

BLOCKS = ("softmax", "argmax", "gelu", "layernorm")
FOLDING = ("softmax", "argmax", "layernorm")  # the blocks that fold rows (QuickMax / QuickSum)
REFRESHING = ("softmax", "argmax")  # the blocks that call the bootstrapper between their steps


@dataclass(frozen=True)
class KeyNeeds:
    """What a client must give the server for one block (ours)."""

    block: str
    rotations: tuple[int, ...]  # rotation steps (slot j <- slot j + step)
    bootstrapping: bool  # the bootstrapper's keys too (Galois elements, encapsulation keys)


def _count(value, what: str) -> int:
    """An integer argument (n, window), refused with its name when it is not one."""
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{what} must be an integer, got {value!r}") from None


def keys_for(block: str, n: int = 1, window: int | None = None) -> KeyNeeds:
    """The keys `block` needs on rows of n slots in windows of `window` slots (default: n).

    Folding blocks rotate by 2^i, i < log2(n) (NEXUS Alg. 7), and by -n when window >= 2n (row
    duplication, refimpl.nexus.folding.duplicate_rows); GELU rotates nothing. n and window are powers
    of two (the folds halve a row; windows tile the slots); anything else is refused."""
    if block not in BLOCKS:
        raise ValueError(f"unknown NEXUS block {block!r}; known: {', '.join(BLOCKS)}")
    if block not in FOLDING:
        return KeyNeeds(block, (), block in REFRESHING)
    n = _count(n, "n")
    rotations = list(fold_rotations(n))  # refuses an n that is not a power of two
    window = n if window is None else _count(window, "window")
    if window < 1 or window & (window - 1):
        raise ValueError(f"window must be a power of two, got {window} (windows tile the slots)")
    if window != n and window < 2 * n:
        raise ValueError(f"a window of {window} slots cannot hold a row of {n} and its duplicate: "
                         f"use window = n (one row fills every slot) or >= {2 * n}")
    if window != n:
        rotations.append(-n)
    return KeyNeeds(block, tuple(rotations), block in REFRESHING)


class BlockContext:
    """A CKKS context (refimpl.ckks.context.Context) with the keys of one NEXUS block, and the block (ours)."""

    def __init__(self, block: str, n: int, window: int | None, ckks: Context):
        self.block, self.n, self.window, self.ckks = block, n, window, ckks

    @classmethod
    def create(cls, block: str, n: int = 1, window: int | None = None, bootstrap: str = "toy-2^10-deep",
               insecure_seed: int | None = None, progress: Progress | None = None) -> "BlockContext":
        """Keys for `block` on the bootstrapping preset `bootstrap` (its toy rings are insecure: tests and examples)."""
        needs = keys_for(block, n, window)
        if block in FOLDING and bootstrap in BOOTSTRAP_PRESETS:  # refuse a layout before making its keys
            slots = BOOTSTRAP_PRESETS[bootstrap]["N"] // 2
            w, _ = window_layout(slots, n, window)
            if slots % w:
                raise ValueError(f"windows of {w} slots do not tile the {slots} slots of {bootstrap!r}: "
                                 f"use a power of two <= {slots}")
        return cls(block, n, window, bootstrapping_context(bootstrap, needs.rotations, insecure_seed=insecure_seed, progress=progress))

    @property
    def slots(self) -> int:
        return self.ckks.slots

    def encrypt(self, values) -> Ciphertext:
        """Encrypt at the bootstrapper's output level (the level the blocks start from)."""
        return self.ckks.encrypt(values)

    def decrypt(self, ct: Ciphertext) -> np.ndarray:
        return self.ckks.decrypt(ct)

    def run(self, ct: Ciphertext, **kwargs) -> Ciphertext:
        """The block on `ct`; kwargs are the block's own (softmax/argmax: bound; layernorm: F, gamma, beta)."""
        ev, bts = self.ckks.evaluator, self.ckks.bootstrapper
        if self.block == "softmax":
            return softmax(ev, ct, self.n, kwargs.pop("bound", 0.5), window=self.window, bootstrapper=bts, **kwargs)
        if self.block == "argmax":
            return argmax(ev, ct, self.n, window=self.window, bootstrapper=bts, **kwargs)
        if self.block == "gelu":
            return gelu(ev, ct, **kwargs)
        return layernorm(ev, ct, n=self.n, window=self.window, **kwargs)


__all__ = ["BLOCKS", "BlockContext", "KeyNeeds", "keys_for"]
