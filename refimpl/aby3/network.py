"""The network between the three parties: exact byte/round/send accounting and recorded views.

Every message is a numpy array that really passes through a transport. Per party the
`Network` counts the bytes of the arrays carried, messages, and a round clock: each
message carries its sender's clock, and a receiver sets clock = max(clock, stamp + 1), so
the final clock is the number of communication rounds on the critical path (local work
costs none). `sends` counts send calls per party, which is what SPU's "send actions" count
(a party that sends to both others in one round makes 2 sends, 1 round).

Per-protocol breakdown: `with net.scope("mul"):` attributes what happens inside to
"mul" (nested scopes join with "/"). With record_views=True every received array is kept:
a party's view is exactly the list of arrays it received, in order.

Transports are injectable: `InMemoryTransport` (queues, for the simulator); a TCP
transport implements the same two methods, send(to, message) and recv(frm, timeout).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

N_PARTIES = 3
RECV_TIMEOUT_S = 600.0  # a party that waits this long assumes a peer died


class ProtocolError(RuntimeError):
    """Messages out of step (a protocol mismatch between parties) or a dead peer."""


class InMemoryTransport:
    """Three parties in one process: one FIFO queue per ordered pair (i -> j)."""

    def __init__(self, n: int = N_PARTIES) -> None:
        self.n = n
        self.queues = {(i, j): queue.SimpleQueue() for i in range(n) for j in range(n) if i != j}
        self.abort = threading.Event()  # set when a party fails, so the others stop waiting

    def send(self, frm: int, to: int, message: tuple) -> None:
        self.queues[(frm, to)].put(message)

    def recv(self, frm: int, to: int, timeout: float = RECV_TIMEOUT_S) -> tuple:
        q = self.queues[(frm, to)]
        waited = 0.0
        while True:
            try:
                return q.get(timeout=0.05)
            except queue.Empty:
                waited += 0.05
                if self.abort.is_set():
                    raise ProtocolError(f"party {to}: aborted while waiting for party {frm}") from None
                if waited >= timeout:
                    raise ProtocolError(f"party {to}: no message from party {frm} after {timeout} s") from None


@dataclass
class ScopeStats:
    """Counts attributed to one protocol scope, for one party."""

    bytes_sent: int = 0
    bytes_recv: int = 0
    sends: int = 0
    rounds: int = 0  # rounds inside the scope (its own clock: starts at 0 on entry), summed over calls
    calls: int = 0
    seconds: float = 0.0  # this party's wall time inside the scope (waiting included), summed over calls


@dataclass
class Network:
    """One party's end of the network: counts what it sends and receives, records its view."""

    party: int
    transport: InMemoryTransport
    record_views: bool = False
    bytes_sent: int = 0
    bytes_recv: int = 0
    sends: int = 0
    clock: int = 0  # rounds on the critical path as seen by this party
    view: list = field(default_factory=list)  # (scope, sender, array) for each received message
    scopes: dict = field(default_factory=lambda: defaultdict(ScopeStats))
    _stack: list = field(default_factory=list)
    _clocks: list = field(default_factory=list)  # round clock of each open scope

    # ---- sending and receiving ----------------------------------------------------------
    def send(self, to: int, arr: np.ndarray) -> None:
        """Send one array to party `to`; counts arr.nbytes."""
        if to == self.party or not 0 <= to < N_PARTIES:
            raise ValueError(f"party {self.party} cannot send to party {to}")
        arr = np.ascontiguousarray(arr)
        self.transport.send(self.party, to, ((self.clock, *self._clocks), self._tag(), arr))
        self.bytes_sent += arr.nbytes
        self.sends += 1
        for s in self._active():
            s.bytes_sent += arr.nbytes
            s.sends += 1

    def recv(self, frm: int) -> np.ndarray:
        """Receive the next array from party `frm`; advances the round clock."""
        if frm == self.party or not 0 <= frm < N_PARTIES:
            raise ValueError(f"party {self.party} cannot receive from party {frm}")
        stamps, tag, arr = self.transport.recv(frm, self.party)
        if tag != self._tag():
            raise ProtocolError(
                f"party {self.party} in '{self._tag()}' got a message of '{tag}' from party {frm}: "
                "the parties are not running the same protocol step"
            )
        self.clock = max(self.clock, stamps[0] + 1)
        for lvl, st in enumerate(stamps[1:]):  # each scope has its own clock, started at 0
            self._clocks[lvl] = max(self._clocks[lvl], st + 1)
        self.bytes_recv += arr.nbytes
        for s in self._active():
            s.bytes_recv += arr.nbytes
        if self.record_views:
            self.view.append((self._tag(), frm, arr.copy()))
        return arr

    # ---- per-protocol breakdown ----------------------------------------------------------
    def _tag(self) -> str:
        return "/".join(self._stack)

    def _active(self) -> list[ScopeStats]:
        return [self.scopes["/".join(self._stack[: i + 1])] for i in range(len(self._stack))]

    @contextmanager
    def scope(self, name: str):
        """Attribute the messages sent inside to `name` (nested scopes join with '/')."""
        self._stack.append(name)
        self._clocks.append(0)
        st = self.scopes[self._tag()]
        st.calls += 1
        t0 = time.perf_counter()
        try:
            yield
        finally:
            st.seconds += time.perf_counter() - t0
            st.rounds += self._clocks.pop()  # rounds of this call, all parties' messages counted
            self._stack.pop()


@dataclass(frozen=True)
class LinkModel:
    """A network to turn counts into time: t = compute + rounds RTT + max party bytes / bandwidth."""

    name: str
    bandwidth_bit_s: float
    rtt_s: float

    def estimate(self, compute_s: float, rounds: int, max_party_bytes: int) -> float:
        return compute_s + rounds * self.rtt_s + 8.0 * max_party_bytes / self.bandwidth_bit_s


LAN = LinkModel("LAN", 10e9, 0.1e-3)  # 10 Gbit/s, 0.1 ms RTT (our network model)
WAN = LinkModel("WAN", 100e6, 40e-3)  # 100 Mbit/s, 40 ms RTT (our network model)
