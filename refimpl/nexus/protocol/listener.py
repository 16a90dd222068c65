"""The NEXUS server on TCP (ours): one thread per connection, TLS, timeouts, progress frames.

`serve` accepts connections and runs a refimpl.nexus.protocol.server.ServerSession on each in
its own thread, so that an idle or slow client never blocks another; the NEXUS paper
describes a single client and leaves the deployment open.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
import threading

from .transport import DEFAULT_TIMEOUT, TcpTransport
from .wire import ProtocolError, encode_message

DEFAULT_SESSIONS = 8  # connections served at once; more are refused, idle ones time out
HEARTBEAT_S = 2.0  # seconds between progress frames while a query is evaluated


def serve(server, host: str, port: int, max_connections: int = 0, out=sys.stdout,
          tls: ssl.SSLContext | None = None, max_sessions: int = DEFAULT_SESSIONS, timeout: float = DEFAULT_TIMEOUT,
          heartbeat: float = HEARTBEAT_S, one_at_a_time: bool = False, ready=None, stop: threading.Event | None = None) -> None:
    """Accept connections (TLS when `tls` is given) until max_connections (0: never stop) or
    `stop` is set, each in its own thread running a ServerSession (ours, the NEXUS paper
    describes one client): up to max_sessions at once (more are refused with an error
    message), every receive timed out after `timeout` seconds, frames above the parameter
    set's limit refused, a progress frame every `heartbeat` seconds while a query is evaluated
    (so the client's own timeout stays short). A broken connection is reported on `out` and
    dropped. one_at_a_time=True is the weakened configuration of the attack tests (the old
    server: one connection at a time, no receive timeout). ready(port) is called once listening."""
    try:
        lsock = socket.create_server((host, port))
    except OverflowError:
        raise ProtocolError(f"port {port} is out of range (0-65535)") from None
    except OSError as e:
        raise ProtocolError(f"cannot listen on {host}:{port} ({e.strerror or e})") from None
    slots = threading.BoundedSemaphore(max_sessions)
    threads = []
    with lsock:
        lsock.settimeout(0.5)  # to notice `stop`
        print(f"TLS 1.3: {'on' if tls else 'OFF (insecure)'}", file=out, flush=True)
        print(f"listening on {host}:{lsock.getsockname()[1]}", file=out, flush=True)
        if ready:
            ready(lsock.getsockname()[1])
        served = 0
        while (not max_connections or served < max_connections) and not (stop and stop.is_set()):
            try:
                conn, addr = lsock.accept()
            except socket.timeout:
                continue
            served += 1
            if one_at_a_time:  # INSECURE weakened configuration: the old blocking loop
                _connection(server, conn, addr, out, tls, None, heartbeat, None)
                continue
            if not slots.acquire(blocking=False):
                _refuse(conn, f"server busy: {max_sessions} sessions already open (--max-sessions)", out)
                continue
            th = threading.Thread(target=_connection, args=(server, conn, addr, out, tls, timeout, heartbeat, slots),
                                  daemon=True)
            th.start()
            threads = [t for t in threads if t.is_alive()] + [th]
        for th in threads:
            th.join()


def _refuse(conn, message: str, out) -> None:
    try:
        conn.settimeout(1.0)
        conn.sendall(_prefixed(encode_message("error", {"error": message})))
    except OSError:
        pass
    finally:
        conn.close()
    print(f"refused a connection: {message}", file=out, flush=True)


def _prefixed(frame: bytes) -> bytes:
    return struct.pack("<Q", len(frame)) + frame


def _connection(server, conn, addr, out, tls, timeout, heartbeat, slots) -> None:
    """One connection: TLS handshake, then frames -> session -> replies, with progress frames
    while a reply is computed."""
    try:
        if tls is not None:
            conn.settimeout(timeout)
            conn = tls.wrap_socket(conn, server_side=True)
        t = TcpTransport(conn, timeout=timeout, max_frame=server.frame_limit)
        session = server.session()
        try:
            while not session.closed and (frame := t.recv()) is not None:
                done = threading.Event()
                beat = threading.Thread(target=_beat, args=(t, done, heartbeat), daemon=True)
                beat.start()
                try:
                    reply = session.handle(frame)
                finally:
                    done.set()
                    beat.join()
                if reply is not None:
                    t.send(reply)
        except ProtocolError as e:
            try:
                t.send(encode_message("error", {"error": f"ProtocolError: {e}"}))
            except (ProtocolError, OSError):
                pass
            raise
        finally:
            t.close()
    except (ProtocolError, OSError, ssl.SSLError) as e:
        print(f"connection from {addr[0]} dropped: {e}", file=out, flush=True)
        conn.close()
    finally:
        if slots is not None:
            slots.release()


def _beat(t: TcpTransport, done: threading.Event, every: float) -> None:
    """Progress frames every `every` seconds until `done` (keeps the client's receive timeout short)."""
    while not done.wait(every):
        try:
            t.send(encode_message("progress", {}))
        except (ProtocolError, OSError):
            return
