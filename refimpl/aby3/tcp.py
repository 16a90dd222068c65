"""TCP transport: each party in its own process, the protocol code unchanged.

Party i listens on addrs[i], connects to every party j < i and accepts every j > i. A
message is a length-prefixed JSON header (round stamps, scope tag, dtype, shape) followed
by the array's raw bytes; the Network counts only the array bytes (the header is framing,
as SPU's link layer has its own). PRSS keys: `run_party` derives them from a seed all
parties are given, which is a demo setup; a deployment would run the key exchange of
refimpl.aby3.prss (party i sends k_i to party i-1 once, over a private channel).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time

import numpy as np

from refimpl.aby3.network import ProtocolError, RECV_TIMEOUT_S
from refimpl.aby3.party import make_party

_LEN = struct.Struct("!I")


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ProtocolError("peer closed the connection")
        buf += chunk
    return bytes(buf)


class TCPTransport:
    """Party `me`'s sockets to the other two parties (same interface as InMemoryTransport)."""

    def __init__(self, me: int, addrs: list[tuple[str, int]], connect_timeout: float = 30.0) -> None:
        if len(addrs) != 3 or not 0 <= me < 3:
            raise ValueError("need three (host, port) addresses and a party id in {0, 1, 2}")
        self.me = me
        self.abort = threading.Event()
        self.socks: dict[int, socket.socket] = {}
        server = socket.create_server(addrs[me], reuse_port=False)
        server.settimeout(connect_timeout)
        try:
            for j in range(me):  # connect to lower ids (they are listening), say who we are
                deadline = time.monotonic() + connect_timeout
                while True:
                    try:
                        s = socket.create_connection(addrs[j], timeout=connect_timeout)
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.05)
                s.sendall(bytes([me]))
                self.socks[j] = s
            while len(self.socks) < 2:  # accept the higher ids
                s, _ = server.accept()
                self.socks[_recv_exact(s, 1)[0]] = s
        finally:
            server.close()
        for s in self.socks.values():
            s.settimeout(RECV_TIMEOUT_S)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, frm: int, to: int, message: tuple) -> None:
        stamps, tag, arr = message
        head = json.dumps({"stamps": list(stamps), "tag": tag, "dtype": arr.dtype.str, "shape": arr.shape}).encode()
        self.socks[to].sendall(_LEN.pack(len(head)) + head + _LEN.pack(arr.nbytes) + arr.tobytes())

    def recv(self, frm: int, to: int, timeout: float = RECV_TIMEOUT_S) -> tuple:
        s = self.socks[frm]
        head = json.loads(_recv_exact(s, _LEN.unpack(_recv_exact(s, 4))[0]))
        data = _recv_exact(s, _LEN.unpack(_recv_exact(s, 4))[0])
        arr = np.frombuffer(data, dtype=np.dtype(head["dtype"])).reshape(head["shape"])
        return tuple(head["stamps"]), head["tag"], arr

    def close(self) -> None:
        for s in self.socks.values():
            s.close()


def run_party(me: int, addrs: list[tuple[str, int]], program, *, seed: int = 0):
    """Run `program(party)` as party `me` over TCP; returns (output, network)."""
    transport = TCPTransport(me, addrs)
    try:
        p = make_party(me, transport, seed=seed, session=1)
        return program(p), p.net
    finally:
        transport.close()
