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
from refimpl.aby3.prss import PRSS, fresh_keys, setup_keys
from refimpl.csprng import Stream, insecure_key, os_key


@dataclass
class Party:
    """Party `id`: its network end, its PRSS keys, the fixed-point format and a session tag."""

    id: int
    net: Network
    prss: PRSS
    fxp: Fxp = field(default_factory=Fxp)
    session: int = 0  # shares carry it; mixing shares of two runs is an error
    rng: Stream = field(default_factory=lambda: Stream(os_key()))  # private coins (OS-keyed, key erasure)

    def private(self, shape) -> np.ndarray:
        """Uniform uint64 words known to this party only."""
        n = int(np.prod(shape, dtype=np.int64))
        return self.rng.words(n).reshape(shape)

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


def make_party(i: int, transport, *, keys: list | None = None, insecure_seed: int | None = None,
               fxp: Fxp | None = None, session: int = 0, record_views: bool = False) -> Party:
    """Party i on `transport` with PRSS keys `keys` = [k_0, k_1, k_2, k_pub] (it keeps k_i, k_{i+1}
    and k_pub) and private coins from the OS. INSECURE with `insecure_seed`: keys and private
    coins derived from that seed (reproducible tests only)."""
    if insecure_seed is not None:
        keys = setup_keys(insecure_seed) if keys is None else keys
        rng = Stream(insecure_key(insecure_seed, f"aby3 private {i}"))
    else:
        if keys is None:
            raise ValueError("make_party needs the PRSS keys (or an explicit insecure_seed)")
        rng = Stream(os_key())
    own = {i: keys[i], (i + 1) % 3: keys[(i + 1) % 3]}
    return Party(i, Network(i, transport, record_views), PRSS(i, own[i], own[(i + 1) % 3], keys[3]),
                 fxp or Fxp(), session, rng)


_session_counter = [0]
_session_lock = threading.Lock()


def simulate(
    program: Callable[[Party], Any],
    *,
    insecure_seed: int | None = None,
    seed: int | None = None,
    fxp: Fxp | None = None,
    record_views: bool = False,
    transport: InMemoryTransport | None = None,
) -> RunResult:
    """Run `program(party)` on three parties in three threads over an in-memory transport.

    Each thread sees only its own Party (id, network end, two PRSS keys). If one party
    raises, the others are aborted and the first exception is re-raised here. Keys and private
    coins come from the OS; `insecure_seed` makes the run reproducible (tests and examples only).
    """
    if seed is not None:  # transition: the old name, until its callers move
        insecure_seed = seed
    fxp = fxp or Fxp()
    transport = transport or InMemoryTransport()
    with _session_lock:
        _session_counter[0] += 1
        session = _session_counter[0]
    keys = fresh_keys() if insecure_seed is None else setup_keys(insecure_seed)
    parties = [make_party(i, transport, keys=keys, insecure_seed=insecure_seed, fxp=fxp, session=session,
                          record_views=record_views) for i in range(N_PARTIES)]
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
