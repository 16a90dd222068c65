"""The same protocol code over TCP sockets (ABY3-NET-3): equal results and byte counts."""

import socket
import threading

import numpy as np

from refimpl.aby3 import arith, nonlinear as NL
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import reveal, share_input
from refimpl.aby3.tcp import run_party


def _free_ports(k):
    socks = [socket.socket() for _ in range(k)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_tcp_matches_in_memory():
    """ABY3-NET-3: fxp_mul + ReLU over TCP give the in-memory result, bytes and rounds."""
    x = np.linspace(-3, 3, 50)

    def program(p):
        a = share_input(p, 0, x if p.id == 0 else None)
        y = NL.relu(p, arith.fxp_mul(p, a, a))
        return reveal(p, arith.sub(p, y, a))

    addrs = [("127.0.0.1", port) for port in _free_ports(3)]
    results = [None] * 3
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, run_party(i, addrs, program, seed=5)))
               for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    mem = simulate(program, seed=5)
    for i in range(3):
        out, net = results[i]
        assert np.array_equal(out, mem.outputs[i])
        assert net.bytes_sent == mem.nets[i].bytes_sent and net.clock == mem.nets[i].clock
    assert np.max(np.abs(results[0][0] - (x * x - x))) < 3e-5  # input encoding + one truncation
