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


def test_party_main_three_processes():
    """ABY3-NET-3: `party_main` as three OS processes (what `refimpl aby3 party` runs) agree."""
    import json
    import subprocess
    import sys

    peers = ",".join(f"127.0.0.1:{p}" for p in _free_ports(3))
    code = ("import sys; from refimpl.aby3.tcp import party_main; "
            "sys.exit(party_main(int(sys.argv[1]), sys.argv[2].split(','), n=8, d=16, heads=2))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(i), peers], stdout=subprocess.PIPE, text=True)
             for i in range(3)]
    outs = [json.loads(p.communicate(timeout=120)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len({o["output_sum"] for o in outs}) == 1
    assert len({o["rounds"] for o in outs}) <= 2 and all(o["bytes_sent"] > 0 for o in outs)
