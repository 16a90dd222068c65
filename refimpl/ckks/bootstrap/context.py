"""A CKKS context with a bootstrapper and exactly its keys (ours: the facade of refimpl.ckks.context, bootstrapping side).

    ctx = bootstrapping_context("toy-2^10-deep")        # INSECURE toy ring: tests and examples
    fresh = ctx.bootstrap(ctx.evaluator.drop_level(ctx.encrypt(x), 0))

The client lists the Galois elements the bootstrapper declares (a Bootstrapper without keys
only lists them) and the level each serves, makes those keys plus the encapsulation keys when
the preset encapsulates a sparse secret around ModRaise, and hands the server a Bootstrapper
over them. Ciphertexts are then encrypted at the bootstrapper's output level by default.
"""

from __future__ import annotations

from typing import Iterable

from ...progress import Progress
from ..context import Context
from ..evaluator import Evaluator
from .bootstrapper import BootstrapConfig, Bootstrapper, bootstrap_preset


def bootstrapping_context(preset: str = "toy-2^10-deep", rotations: Iterable[int] = (), *, insecure_seed: int | None = None,
                          config: BootstrapConfig = BootstrapConfig(),
                          progress: Progress | None = None) -> Context:
    """A Context on the bootstrapping preset `preset` (BOOTSTRAP_PRESETS) with its bootstrapper's keys and `rotations`."""
    params, resolved = bootstrap_preset(preset, config)
    probe = Bootstrapper(Evaluator(params), resolved)  # no keys: it only lists what it needs
    ctx = Context.create(params, rotations, insecure_seed=insecure_seed, elements=probe.galois_elements(),
                         element_levels=probe.galois_levels(), encapsulation_h=resolved.encapsulation_h,
                         progress=progress)
    ctx.bootstrapper = Bootstrapper(ctx.evaluator, resolved, encapsulation=ctx.encapsulation)
    return ctx


__all__ = ["bootstrapping_context"]
