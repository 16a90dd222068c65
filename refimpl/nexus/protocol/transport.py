"""How frames travel between the NEXUS client and server, and how their bytes are counted.

`LocalTransport` hands frames to a server session in the same process (tests, the demo,
refimpl.reproduce.nexus); `TcpTransport` sends them over a socket, each behind a u64 length.
`Ledger` counts bandwidth from the frames actually sent (TCP length prefixes included), by
direction and purpose (NEXUS §6 reports bandwidth; the accounting is refimpl's).
"""

from __future__ import annotations

import socket
import struct
from collections import Counter
from dataclasses import dataclass, field

from .wire import MAX_FRAME, ProtocolError

TCP_PREFIX_BYTES = 8  # the u64 length before each frame on TCP


@dataclass
class Ledger:
    """Bytes by direction and purpose, counted from the frames actually sent (TCP prefixes included)."""

    sent: Counter = field(default_factory=Counter)
    received: Counter = field(default_factory=Counter)

    def count(self, direction: str, kind: str, nbytes: int) -> None:
        purpose = {"key": "keys", "keys_done": "keys", "query": "query", "result": "result"}.get(kind, "control")
        (self.sent if direction == "sent" else self.received)[purpose] += nbytes


class LocalTransport:
    """Client end of an in-process connection: frames go through the server session's `handle`."""

    prefix_bytes = 0

    def __init__(self, session):
        """session: a refimpl.nexus.protocol.server.ServerSession (anything with handle(frame) -> reply | None)."""
        self.session, self.inbox = session, []

    def send(self, frame: bytes) -> int:
        reply = self.session.handle(bytes(frame))
        if reply is not None:
            self.inbox.append(reply)
        return len(frame)

    def recv(self) -> bytes:
        if not self.inbox:
            raise ProtocolError("no reply from the server")
        return self.inbox.pop(0)

    def close(self) -> None:
        pass


class TcpTransport:
    """Frames over a TCP socket, each behind a u64 length (counted as part of the bytes)."""

    prefix_bytes = TCP_PREFIX_BYTES

    def __init__(self, sock: socket.socket):
        self.sock = sock

    @classmethod
    def connect(cls, host: str, port: int, timeout: float = 3600.0) -> "TcpTransport":
        sock = socket.create_connection((host, port), timeout=timeout)
        return cls(sock)

    def send(self, frame: bytes) -> int:
        self.sock.sendall(struct.pack("<Q", len(frame)) + frame)
        return len(frame) + TCP_PREFIX_BYTES

    def _exactly(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 22))
            if not chunk:
                if buf:
                    raise ProtocolError(f"connection closed inside a frame ({len(buf)} of {n} bytes)")
                return None
            buf += chunk
        return bytes(buf)

    def recv(self) -> bytes | None:
        """The next frame, or None when the peer closed the connection between frames."""
        head = self._exactly(TCP_PREFIX_BYTES)
        if head is None:
            return None
        (n,) = struct.unpack("<Q", head)
        if n > MAX_FRAME:
            raise ProtocolError(f"frame length {n} exceeds the limit {MAX_FRAME}")
        data = self._exactly(n)
        if data is None:
            raise ProtocolError("connection closed before the frame")
        return data

    def close(self) -> None:
        self.sock.close()
