"""The same protocol code over TLS sockets, one OS process per party (ABY3-NET-3, ABY3-NET-4, ABY3-NET-5, ABY3-TLS-1)."""

import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from refimpl.aby3 import arith, nonlinear as NL
from refimpl.aby3.model import classify_program
from refimpl.aby3.network import ProtocolError
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import reveal, share_input
from refimpl.aby3.tcp import free_local_ports, run_party, tiny_model
from refimpl.aby3.tls import TLSChannel, TLSConfig, make_keys, party_name
from refimpl.bert.model import forward

PARTY = "import sys; from refimpl.cli import main; sys.exit(main())"


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("aby3keys")
    out = subprocess.run([sys.executable, "-c", PARTY, "aby3", "keys", "--out", str(d)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(out.stdout)["files"]) == sorted(
        ["ca.pem"] + [f"party{i}.{e}" for i in range(3) for e in ("pem", "key")])
    assert (d / "party0.key").stat().st_mode & 0o077 == 0  # private keys readable by the owner only
    assert not (d / "ca.key").exists()  # nobody can issue a fourth certificate
    return d


def _start(i, peers, keys_dir, *extra):
    return subprocess.Popen([sys.executable, "-c", PARTY, "aby3", "party", "--id", str(i), "--peers", peers,
                             "--keys", str(keys_dir), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _three(addrs, program, **kw):
    results = [None] * 3

    def go(i):
        try:
            results[i] = run_party(i, addrs, program, **{k: (v(i) if callable(v) else v) for k, v in kw.items()})
        except Exception as e:  # noqa: BLE001 - reported by the caller
            results[i] = e

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


X = np.linspace(-3, 3, 50)


def _program(p):
    a = share_input(p, 0, X if p.id == 0 else None)
    y = NL.relu(p, arith.fxp_mul(p, a, a))
    return reveal(p, arith.sub(p, y, a))


def test_tcp_matches_in_memory(keys_dir):
    """ABY3-NET-3, ABY3-TLS-1: fxp_mul + ReLU over TLS give the in-memory result, bytes and rounds:
    bit for bit with the same (insecure, test-only) seed; with keys exchanged at setup (OS
    randomness) the same counts and a result within the fixed-point error. The TLS bytes (records,
    handshake) are counted apart from the payload and framing."""
    tls = lambda i: TLSConfig.from_dir(keys_dir, i)  # noqa: E731
    seeded = _three([("127.0.0.1", q) for q in free_local_ports(3)], _program, tls=tls, insecure_seed=5)
    secure = _three([("127.0.0.1", q) for q in free_local_ports(3)], _program, tls=tls)
    mem = simulate(_program, insecure_seed=5)
    for i in range(3):
        for res in (seeded, secure):
            out, net = res[i]
            assert net.bytes_sent == mem.nets[i].bytes_sent and net.clock == mem.nets[i].clock
            w = net.transport.wire()
            assert w["payload_sent"] == net.bytes_sent and w["payload_recv"] == net.bytes_recv
            assert w["tls"] and w["tls_handshake"] > 0 and w["tls_overhead_sent"] > 0
            assert w["raw_sent"] == w["payload_sent"] + w["frame_sent"] + w["handshake"] + w["setup_sent"] + w["tls_overhead_sent"]
        assert np.array_equal(seeded[i][0], mem.outputs[i])
        assert secure[i][1].transport.wire()["setup_sent"] == 96  # k_i + c_i to party i-1, c_i to party i+1
    assert not np.array_equal(secure[0][0], seeded[0][0])  # other keys: other roundings
    for res in (seeded, secure):
        assert np.max(np.abs(res[0][0] - (X * X - X))) < 3e-5  # input encoding + one truncation


def test_plain_tcp_needs_the_insecure_name():
    """ABY3-TLS-1: a transport without certificates is refused unless insecure_plaintext=True."""
    from refimpl.aby3.tcp import TCPTransport

    with pytest.raises(ValueError, match="insecure_plaintext"):
        TCPTransport(0, [("127.0.0.1", q) for q in free_local_ports(3)])


def test_a_peer_without_a_certificate_is_refused(keys_dir, tmp_path):
    """ABY3-TLS-1: a party 2 with a certificate of another `keys` run (or none) fails the TLS
    handshake: the honest parties stop with a clear error, nothing is opened."""
    other = tmp_path / "other"
    make_keys(other)
    addrs = [("127.0.0.1", q) for q in free_local_ports(3)]
    res = _three(addrs, _program, tls=lambda i: TLSConfig.from_dir(other if i == 2 else keys_dir, i), timeout=5,
                 connect_timeout=5)
    assert all(isinstance(r, ProtocolError) for r in res), res
    assert any("TLS handshake" in str(r) for r in res), res


def test_three_processes_secure_inference_equals_in_process(keys_dir):
    """ABY3-NET-5, ABY3-TLS-1: `refimpl aby3 party` as three OS processes over TLS classifies the
    tiny model's sequence (the servers get only its token count): party 0's logits equal the
    in-process engine's bit for bit (same test-only seed), only party 0 prints logits, each
    party's counted bytes and rounds equal the in-process ones, the payload that crossed the
    sockets equals the counted bytes (sent = received over the three), framing and TLS reported apart."""
    seed = 4
    peers = ",".join(f"127.0.0.1:{p}" for p in free_local_ports(3))
    procs = [_start(i, peers, keys_dir, "--insecure-seed", str(seed), "--model-seed", str(seed), "--timeout", "60")
             for i in range(3)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    cfg, params, ids, mask = tiny_model(seed)
    mem = simulate(classify_program(cfg, params, ids, mask), insecure_seed=seed)
    assert outs[0]["logits"] == [float(v) for v in mem.outputs[0][0]]
    assert "logits" not in outs[1] and "logits" not in outs[2]
    ref = forward(params, cfg, ids[None], attention_mask=mask[None]).logits[0]
    assert np.max(np.abs(np.array(outs[0]["logits"]) - ref)) < 1e-2
    for i, o in enumerate(outs):
        assert o["bytes_sent"] == mem.nets[i].bytes_sent and o["rounds"] == mem.nets[i].clock
        assert o["wire"]["payload_sent"] == o["bytes_sent"] and o["wire"]["payload_recv"] == o["bytes_recv"]
        assert o["wire"]["frame_sent"] > 0  # framing: counted apart, never in bytes_sent
        assert o["wire"]["tls"] and o["wire"]["tls_overhead_sent"] > 0 and o["n"] == ids.size
    assert sum(o["wire"]["payload_sent"] for o in outs) == sum(o["wire"]["payload_recv"] for o in outs)
    assert sum(o["wire"]["frame_sent"] for o in outs) == sum(o["wire"]["frame_recv"] for o in outs)


def _fake_party2(peers, behaviour, done, keys_dir):
    """Party 2 played by the test (certified: it holds party 2's certificate): connects to parties
    0 and 1 over TLS, says its id, runs the key exchange, then misbehaves."""
    addrs = [(h, int(p)) for h, p in (a.rsplit(":", 1) for a in peers.split(","))]
    socks = []
    tls = TLSConfig.from_dir(keys_dir, 2)
    for j in (0, 1):
        deadline = time.monotonic() + 60
        while True:
            try:
                raw = socket.create_connection(addrs[j], timeout=60)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        s = TLSChannel(raw, tls.context(server=False), server_side=False, server_hostname=party_name(j))
        s.handshake()
        s.sendall(bytes([2]))
        if behaviour != "disconnect":
            s.sendall(bytes(64 if j == 1 else 32))  # key exchange: k_2 + c_2 to party 1, c_2 to party 0
        socks.append(s)

    def drain(s):  # read what the honest party sends, so that closing does not reset the connection
        try:
            while s.recv(1 << 16):
                pass
        except (OSError, ValueError):
            pass

    if behaviour == "garbage":  # written before the drain threads start: one thread per TLS object
        for s in socks:
            s.sendall(b"\x00\x00\x00\x05{oops")
    elif behaviour == "short":  # a valid header announcing 800 bytes, 16 of them, then end of stream
        head = json.dumps({"stamps": [0, 0, 0], "tag": "setup/share_input", "dtype": "<u8", "shape": [100]}).encode()
        for s in socks:
            s.sendall(len(head).to_bytes(4, "big") + head + (800).to_bytes(4, "big") + b"\x01" * 16)
            s.sock.shutdown(socket.SHUT_WR)
    if behaviour != "disconnect":
        for s in socks:
            threading.Thread(target=drain, args=(s,), daemon=True).start()
    if behaviour != "disconnect":
        done.wait(60)  # until both honest parties have stopped (silent: they time out after 2 s)
    for s in socks:
        s.close()


@pytest.mark.parametrize("behaviour,message", [
    ("disconnect", "party 2 closed the connection"),
    ("garbage", "malformed message from party 2"),
    ("short", "party 2 closed the connection in the middle of a frame"),
    ("silent", "no data from party 2 for 2.0 s"),
])
def test_misbehaving_party_makes_the_others_fail_fast(behaviour, message, keys_dir):
    """ABY3-NET-4: a party that disconnects, sends a malformed or a short frame, or stays silent
    (timeout 2 s) makes both honest parties stop with a clear error naming it: exit code 1,
    the reason on stderr, no logits printed (nothing is opened)."""
    peers = ",".join(f"127.0.0.1:{p}" for p in free_local_ports(3))
    procs = [_start(i, peers, keys_dir, "--timeout", "2") for i in range(2)]
    done = threading.Event()
    fake = threading.Thread(target=_fake_party2, args=(peers, behaviour, done, keys_dir))
    fake.start()
    errs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=120)  # a hang guard, not a timing assertion
            assert p.returncode == 1 and out.strip() == ""
            errs.append(err)
    finally:
        done.set()
        fake.join(30)
    assert any(message in e for e in errs), errs
    assert all("protocol failed" in e for e in errs), errs


@pytest.mark.parametrize("case", ["no-keys", "bad-port", "bad-keys", "sentence-on-server", "port-in-use", "short-peers"])
def test_party_cli_user_errors_end_in_one_line(case, tmp_path):
    """ABY3-TLS-1: user errors of `refimpl aby3 party` end in one clear line and a non-zero exit,
    never a traceback: no key directory, a port out of range, unreadable TLS files, a sentence
    given to a server, a port already in use, two peers instead of three."""
    busy = socket.create_server(("127.0.0.1", 0))
    peers = ",".join(f"127.0.0.1:{p}" for p in free_local_ports(3))
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("ca.pem", "party0.pem", "party0.key"):
        (bad / name).write_text("not a certificate\n")
    args = {"no-keys": ["--id", "0", "--peers", peers],
            "bad-port": ["--id", "0", "--peers", peers.rsplit(",", 1)[0] + ",127.0.0.1:99999", "--insecure-no-tls"],
            "bad-keys": ["--id", "0", "--peers", peers, "--keys", str(bad)],
            "sentence-on-server": ["--id", "1", "--peers", peers, "--insecure-no-tls", "--sentence", "hi"],
            "port-in-use": ["--id", "0", "--peers", f"127.0.0.1:{busy.getsockname()[1]}," + peers.split(",", 1)[1],
                            "--insecure-no-tls"],
            "short-peers": ["--id", "0", "--peers", "127.0.0.1:1,127.0.0.1:2", "--insecure-no-tls"]}[case]
    try:
        out = subprocess.run([sys.executable, "-c", PARTY, "aby3", "party", *args], capture_output=True, text=True,
                             timeout=120)
    finally:
        busy.close()
    assert out.returncode in (1, 2) and "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and out.stderr.startswith("refimpl aby3 party")
