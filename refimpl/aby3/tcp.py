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


def party_main(party_id: int, peers: list[str], *, seed: int = 0, n: int = 16, d: int = 64, heads: int = 4,
               attention: str = "2quad-freediv", act: str = "quad") -> int:
    """`refimpl aby3 party --id I --peers host:port,host:port,host:port`: one party of a demo.

    Party 0 owns a random input [n, d], party 1 the random weights of one encoder layer;
    the three processes run the layer and open the result to all. Prints one JSON line
    with this party's bytes, sends, rounds, wall time and the output's checksum.
    """
    import json as _json
    import time as _time

    from refimpl.aby3.encoder import LAYER_KEYS, encoder_layer
    from refimpl.aby3.shares import reveal, share_input

    addrs = []
    for a in peers:
        host, port = a.rsplit(":", 1)
        addrs.append((host, int(port)))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = {}
    for k in LAYER_KEYS:
        ff = 4 * d
        shape = (ff, d) if k.startswith("intermediate") else (d, ff) if k.startswith("output.dense") else (d, d)
        if "LayerNorm" in k:
            w[k] = np.ones(d) if k.endswith("weight") else np.zeros(d)
        else:
            w[k] = rng.normal(size=shape) / np.sqrt(shape[1]) if k.endswith("weight") else np.zeros(shape[0])

    def program(p):
        xs = share_input(p, 0, x if p.id == 0 else None)
        ws = {k: share_input(p, 1, w[k] if p.id == 1 else None) for k in LAYER_KEYS}
        t0 = _time.perf_counter()
        y = encoder_layer(p, xs, ws, np.ones(n), heads=heads, attention=attention, act=act)
        return reveal(p, y), _time.perf_counter() - t0

    (y, wall), net = run_party(party_id, addrs, program, seed=seed)
    print(_json.dumps({"party": party_id, "attention": attention, "activation": act, "n": n, "d": d,
                       "bytes_sent": net.bytes_sent, "sends": net.sends, "rounds": net.clock,
                       "wall_s": round(wall, 4), "output_sum": float(np.sum(y))}))
    return 0


def main(argv: list[str]) -> int:
    """`refimpl aby3 party --id I --peers H:P,H:P,H:P`: one party as its own OS process."""
    import argparse

    ap = argparse.ArgumentParser(prog="refimpl aby3")
    sub = ap.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("party", help="run one party of a demo encoder layer")
    pp.add_argument("--id", type=int, required=True)
    pp.add_argument("--peers", required=True, help="host:port,host:port,host:port for parties 0, 1, 2")
    pp.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    return party_main(args.id, args.peers.split(","), seed=args.seed) or 0
