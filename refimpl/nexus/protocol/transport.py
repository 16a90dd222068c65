"""How frames travel between the NEXUS client and server, and how their bytes are counted.

`LocalTransport` hands frames to a server session in the same process (tests, the demo,
refimpl.reproduce.nexus); `TcpTransport` sends them over a socket (TLS on the command line),
each behind a u64 length, with a receive timeout (fail fast: DEFAULT_TIMEOUT seconds) and a
frame limit (the parameter set's largest legitimate frame, wire.frame_limit); both are ours.
`Ledger` counts bandwidth from the frames actually sent (TCP length prefixes included), by
direction and purpose (NEXUS §6 reports bandwidth; the accounting is refimpl's).
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field

from .wire import MAX_FRAME, ProtocolError

TCP_PREFIX_BYTES = 8  # the u64 length before each frame on TCP
DEFAULT_TIMEOUT = 30.0  # seconds a receive waits (the server's progress frames keep a long query alive)


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
    """Frames over a (TLS) socket, each behind a u64 length (counted as part of the bytes); every
    receive times out after `timeout` seconds and refuses frames longer than `max_frame`."""

    prefix_bytes = TCP_PREFIX_BYTES

    def __init__(self, sock: socket.socket, timeout: float | None = DEFAULT_TIMEOUT, max_frame: int = MAX_FRAME):
        """timeout None: wait forever (only the weakened server of the attack tests does)."""
        self.sock, self.timeout, self.max_frame = sock, timeout, int(max_frame)
        self.sock.settimeout(self.timeout)
        self.send_lock = threading.Lock()  # the server's progress frames and its replies share the socket

    @classmethod
    def connect(cls, host: str, port: int, timeout: float = DEFAULT_TIMEOUT, tls: ssl.SSLContext | None = None,
                server_hostname: str | None = None, max_frame: int = MAX_FRAME) -> "TcpTransport":
        """A client connection (TLS when `tls` is given); ProtocolError if the server is not
        reachable, or not the one the certificate names, within `timeout` seconds."""
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except OverflowError:
            raise ProtocolError(f"port {port} is out of range (0-65535)") from None
        except OSError as e:
            raise ProtocolError(f"cannot reach a server at {host}:{port} ({e.strerror or e})") from None
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=server_hostname or host)
            except (ssl.SSLError, OSError) as e:
                sock.close()
                raise ProtocolError(f"TLS with {host}:{port} failed ({e}): is it a refimpl NEXUS server with "
                                    "the certificate given by --server-cert?") from None
        return cls(sock, timeout, max_frame)

    def send(self, frame: bytes) -> int:
        try:
            with self.send_lock:
                self.sock.sendall(struct.pack("<Q", len(frame)) + frame)
        except socket.timeout:
            raise ProtocolError(f"the peer did not take a frame within {self.timeout:g} s") from None
        except OSError as e:
            raise ProtocolError(f"connection lost while sending ({e.strerror or e})") from None
        return len(frame) + TCP_PREFIX_BYTES

    def _exactly(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 22))
            except socket.timeout:
                raise ProtocolError(f"no data from the peer within {self.timeout:g} s (timed out; "
                                    "lengthen with --timeout)") from None
            except OSError as e:
                raise ProtocolError(f"connection lost ({e.strerror or e})") from None
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
        if n > self.max_frame:
            raise ProtocolError(f"frame length {n} exceeds the limit {self.max_frame} of these parameters")
        data = self._exactly(n)
        if data is None:
            raise ProtocolError("connection closed before the frame")
        return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
