"""ABY3: three-party replicated secret sharing over Z_2^64 (Mohassel and Rindal, CCS 2018).

Every protocol is written from one party's point of view and run by all three
(`refimpl.aby3.party.simulate` runs them in threads over an in-memory transport that
counts bytes, rounds and sends, and records each party's view). Layers, bottom up:
fixed (fixed point) -> network, prss -> party -> shares -> ot -> arith -> boolean ->
nonlinear -> attention -> encoder -> model (the whole BERT classifier; freeDiv on ABY3).
kernels holds the uint64 matrix products; tcp and tls (ours) run the parties as processes over
TLS; run (ours) is the one-call runner. Start with shares and arith (ABY3 §2.2, §5.1), or with
`run` to try a protocol. spec/aby3.md lists the protocols with IDs and costs.
"""

from refimpl.aby3.run import Report, run  # the one-call runner (ours)

__all__ = ["Report", "run"]
