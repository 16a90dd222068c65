"""CKKS bootstrapping (ModRaise-first): mod_raise, coeffs_to_slots, eval_mod, slots_to_coeffs.

`OracleBootstrapper` (decrypt and re-encrypt) sits behind the same interface for fast tests of
higher layers only; benchmarks, the demo and client/server runs never use it.

    bootstrapper  the pipeline, its parameters and presets (start here)
    mod_raise     ScaleDown and ModRaise
    dft           CoeffsToSlots and SlotsToCoeffs as homomorphic linear maps
    eval_mod      the homomorphic reduction modulo q_0
    placement     where to bootstrap on a chain of pieces (our dynamic program; the greedy plan)
    context       ours: a refimpl.ckks Context with a bootstrapper and exactly its keys
    oracle        the test stand-in above
"""

from .context import bootstrapping_context
from .oracle import OracleBootstrapper

__all__ = ["OracleBootstrapper", "bootstrapping_context"]
