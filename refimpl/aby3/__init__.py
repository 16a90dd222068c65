"""ABY3: three-party replicated secret sharing over Z_2^64 (Mohassel and Rindal, CCS 2018).

Every protocol is written from one party's point of view and run by all three
(`refimpl.aby3.party.simulate` runs them in threads over an in-memory transport that
counts bytes, rounds and sends, and records each party's view). Layers, bottom up:
fixed (fixed point) -> network, prss -> party -> shares -> ot -> arith -> boolean ->
nonlinear -> attention. spec/aby3.md lists the protocols with IDs and costs.
"""

from refimpl.aby3.run import Report, run  # the one-call runner (ours)

__all__ = ["Report", "run"]
