"""CKKS bootstrapping (ModRaise-first): mod_raise, coeffs_to_slots, eval_mod, slots_to_coeffs.

`OracleBootstrapper` (decrypt and re-encrypt) sits behind the same interface for fast tests of
higher layers only; benchmarks, the demo and client/server runs never use it.
"""

from .context import bootstrapping_context
from .oracle import OracleBootstrapper

__all__ = ["OracleBootstrapper", "bootstrapping_context"]
