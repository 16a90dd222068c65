"""One party of the three, and the in-process simulator that runs all three in threads.

Every protocol in refimpl.aby3 is written from one party's point of view (SPMD, as in SPU):
`mul(p, x, y)` runs on party p with p's two shares only, and all three parties call it.
`simulate(program)` starts three threads, each running `program(party)` with its own
network end and PRSS keys, and returns the three results and the networks (counts, views).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from refimpl.aby3.fixed import Fxp
from refimpl.aby3.network import InMemoryTransport, Network, N_PARTIES
from refimpl.aby3.prss import PRSS, setup_keys


@dataclass
class Party:
    """Party `id`: its network end, its PRSS keys, the fixed-point format and a session tag."""

    id: int
    net: Network
    prss: PRSS
    fxp: Fxp = field(default_factory=Fxp)
    session: int = 0  # shares carry it; mixing shares of two runs is an error
    rng: np.random.Generator = field(default_factory=np.random.default_rng)  # private coins

    def private(self, shape) -> np.ndarray:
        """Uniform uint64 words known to this party only."""
        n = int(np.prod(shape, dtype=np.int64))
        return self.rng.bit_generator.random_raw(n).astype(np.uint64, copy=False).reshape(shape)

    @property
    def next(self) -> int:
        return (self.id + 1) % N_PARTIES

    @property
    def prev(self) -> int:
        return (self.id - 1) % N_PARTIES


@dataclass
class RunResult:
    """What `simulate` returns: per-party outputs, networks and the wall time."""

    outputs: list
    nets: list[Network]
    wall_s: float

    @property
    def bytes_total(self) -> int:
        """Bytes sent, summed over the three parties."""
        return sum(n.bytes_sent for n in self.nets)

    @property
    def rounds(self) -> int:
        """Communication rounds on the critical path."""
        return max(n.clock for n in self.nets)

    @property
    def max_sends(self) -> int:
        """Largest per-party count of send calls (SPU's "send actions")."""
        return max(n.sends for n in self.nets)

    def scope(self, name: str) -> dict:
        """Bytes (all parties), rounds (max) and sends (max) attributed to scope `name`."""
        st = [n.scopes.get(name) for n in self.nets]
        st = [s for s in st if s is not None]
        return {
            "bytes": sum(s.bytes_sent for s in st),
            "rounds": max((s.rounds for s in st), default=0),
            "sends": max((s.sends for s in st), default=0),
        }


def make_party(i: int, transport, *, seed: int, fxp: Fxp | None = None, session: int = 0,
               record_views: bool = False) -> Party:
    """Party i on `transport`, with its two PRSS keys and the public key derived from `seed`."""
    keys = setup_keys(seed)
    return Party(i, Network(i, transport, record_views), PRSS(i, keys[i], keys[(i + 1) % 3], keys[3]),
                 fxp or Fxp(), session, np.random.default_rng([seed, 1000 + i]))


_session_counter = [0]
_session_lock = threading.Lock()


def simulate(
    program: Callable[[Party], Any],
    *,
    seed: int = 0,
    fxp: Fxp | None = None,
    record_views: bool = False,
    transport: InMemoryTransport | None = None,
) -> RunResult:
    """Run `program(party)` on three parties in three threads over an in-memory transport.

    Each thread sees only its own Party (id, network end, two PRSS keys). If one party
    raises, the others are aborted and the first exception is re-raised here.
    """
    fxp = fxp or Fxp()
    transport = transport or InMemoryTransport()
    with _session_lock:
        _session_counter[0] += 1
        session = _session_counter[0]
    parties = [make_party(i, transport, seed=seed, fxp=fxp, session=session, record_views=record_views)
               for i in range(N_PARTIES)]
    outputs: list = [None] * N_PARTIES
    errors: list = []

    def run(i: int) -> None:
        try:
            outputs[i] = program(parties[i])
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller
            errors.append((i, e))
            transport.abort.set()

    threads = [threading.Thread(target=run, args=(i,), name=f"aby3-party-{i}") for i in range(N_PARTIES)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        errors.sort(key=lambda e: type(e[1]).__name__ == "ProtocolError")  # the root cause first
        raise errors[0][1]
    return RunResult(outputs, [p.net for p in parties], wall)
