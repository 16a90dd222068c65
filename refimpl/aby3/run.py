"""One call to run a secure computation on three simulated parties: the result and its byte/round report (ours).

    from refimpl.aby3 import run, arith
    product, report = run(arith.fxp_matmul, A, B)     # party 0 owns A, party 1 owns B
    print(report)                                     # bytes, rounds, sends, per protocol

`fn(party, *shares)` is any protocol of refimpl.aby3 written from one party's point of view
(arith.fxp_matmul, nonlinear.relu, a whole model, ...) returning an arithmetic sharing (or a
tuple of them). Input i is secret-shared by party i mod 3 (ABY3 §5, input sharing), the
output is opened to every party, and the report counts the three phases apart. It is
refimpl.aby3.party.simulate underneath (three threads over an in-memory transport that
counts every message); keys come from the OS unless `insecure_seed` is given (tests only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from refimpl.aby3.party import simulate
from refimpl.aby3.shares import AShare, reveal, share_input

PHASES = ("share_input", "reveal")  # the scopes of input sharing and output opening


@dataclass(frozen=True)
class Report:
    """What a run cost on the wire: bytes (all parties), rounds (critical path), sends (max per party)."""

    bytes: int
    rounds: int
    sends: int
    wall_s: float
    scopes: dict[str, dict] = field(default_factory=dict)  # protocol scope -> {bytes, rounds, sends}

    @property
    def compute(self) -> dict:
        """The computation alone: the totals less input sharing and output opening."""
        out = {"bytes": self.bytes, "rounds": self.rounds}
        for ph in PHASES:
            st = self.scopes.get(ph, {"bytes": 0, "rounds": 0})
            out["bytes"] -= st["bytes"]
            out["rounds"] -= st["rounds"]
        return out

    def as_dict(self) -> dict:
        return {"bytes": self.bytes, "rounds": self.rounds, "sends": self.sends, "wall_s": self.wall_s,
                "compute": self.compute, "scopes": self.scopes}

    def __str__(self) -> str:
        c = self.compute
        top = ", ".join(f"{k} {v['bytes']} B / {v['rounds']} rounds" for k, v in self.scopes.items() if "/" not in k)
        return (f"{self.bytes} bytes, {self.rounds} rounds, {self.sends} sends per party in all; "
                f"computation {c['bytes']} bytes, {c['rounds']} rounds ({top})")


def run(fn: Callable[..., Any], *inputs, insecure_seed: int | None = None, owners: tuple[int, ...] | None = None,
        raw: bool = False) -> tuple[Any, Report]:
    """(the opened result of fn(party, *shared inputs), the Report) on three simulated parties.

    owners: the party that owns each input (default: input i -> party i mod 3). raw: inputs and
    output as uint64 ring elements instead of fixed-point floats."""
    if not callable(fn):
        raise TypeError(f"fn must be a protocol fn(party, *shares) of refimpl.aby3, got {type(fn).__name__}")
    owners = tuple(i % 3 for i in range(len(inputs))) if owners is None else tuple(owners)
    if len(owners) != len(inputs):
        raise ValueError(f"{len(inputs)} inputs but {len(owners)} owners")
    if any(o not in (0, 1, 2) for o in owners):
        raise ValueError(f"owners must be parties 0, 1 or 2, got {owners}")
    arrays = [np.asarray(x) for x in inputs]
    for i, a in enumerate(arrays):
        kinds = "biu" if raw else "biuf"  # raw: ring elements, so no fractions to drop silently
        if a.dtype.kind not in kinds:
            expected = "integer ring elements (raw=True)" if raw else "real numbers"
            raise ValueError(f"input {i} must hold {expected}, got dtype {a.dtype}")
    arrays = [a if raw else a.astype(np.float64) for a in arrays]

    def program(p):
        shares = [share_input(p, o, arrays[i] if p.id == o else None, raw=raw) for i, o in enumerate(owners)]
        out = fn(p, *shares)
        if isinstance(out, AShare):
            return reveal(p, out, raw=raw)
        if not (isinstance(out, tuple) and out and all(isinstance(o, AShare) for o in out)):
            raise TypeError(f"fn must return an AShare or a tuple of AShares (refimpl.aby3.shares), got "
                            f"{type(out).__name__}: convert boolean shares back with boolean.b2a")
        return tuple(reveal(p, o, raw=raw) for o in out)

    res = simulate(program, insecure_seed=insecure_seed)
    names = sorted({k for net in res.nets for k in net.scopes})
    report = Report(res.bytes_total, res.rounds, res.max_sends, res.wall_s, {k: res.scope(k) for k in names})
    return res.outputs[0], report


__all__ = ["Report", "run"]
