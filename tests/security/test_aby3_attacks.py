"""Attacks on the ABY3 parties, kept as tests (SEC-ATTACK-SEED, SEC-ATTACK-WIRE).

Each attack must fail against the default configuration and succeed against a deliberately
weakened one (a seed all parties know; plain TCP), so that each test can fail.
"""

import json
import socket
import subprocess
import sys
import threading

import numpy as np

from refimpl.aby3 import arith
from refimpl.aby3.fixed import Fxp
from refimpl.aby3.model import classify_program
from refimpl.aby3.party import simulate
from refimpl.aby3.prss import setup_keys
from refimpl.aby3.shares import reveal, share_input
from refimpl.aby3.tcp import run_party, tiny_model
from refimpl.aby3.tls import TLSConfig, make_keys
from refimpl.csprng import Stream


# ---- seed reconstruction: a server rebuilds the client's tokens --------------------------------

def rebuild_tokens(view, guessed_seed: int, vocab_size: int) -> np.ndarray | None:
    """Party 2's attack: with k_1 = the key of parties 0 and 1 derived from a guessed seed, skip
    what party 1 drew from it to share the weights (the sizes party 2 itself received), draw the
    client's one-hot mask X_1 and add the X - X_1 the client sent: the one-hot X, i.e. the tokens.
    None when the result is not a one-hot matrix (the guess is wrong)."""
    k1 = Stream(setup_keys(guessed_seed)[1], erase=False)
    skip = sum(a.size for tag, frm, a in view if tag.startswith("setup") and frm == 1)
    k1.words(skip)
    (sent,) = [a for tag, frm, a in view if tag.endswith("share_tokens") and frm == 0]
    x = sent + k1.words(sent.size).reshape(sent.shape)
    if not (np.isin(x, (0, 1)).all() and (x.sum(axis=1) == 1).all()):
        return None
    return np.argmax(x, axis=1)


def test_seed_reconstruction_attack_fails_with_os_keys():
    """SEC-ATTACK-SEED: with every PRSS key derived from one seed (the former `--seed`, kept only
    as `insecure_seed`), server party 2 rebuilds the client's sentence token for token from its
    own view; with the default setup (keys from the OS, each known to two parties) the same
    attack, trying the seeds 0..31, rebuilds nothing."""
    cfg, params, ids, mask = tiny_model(3)
    weak = simulate(classify_program(cfg, params, ids, mask), insecure_seed=0, record_views=True)
    assert np.array_equal(rebuild_tokens(weak.nets[2].view, 0, cfg.vocab_size), ids)

    safe = simulate(classify_program(cfg, params, ids, mask), record_views=True)
    assert all(rebuild_tokens(safe.nets[2].view, s, cfg.vocab_size) is None for s in range(32))
    assert np.allclose(safe.outputs[0][0], weak.outputs[0][0], atol=1e-3)  # the protocol still works


def test_cli_has_no_plain_seed_option():
    """SEC-ATTACK-SEED: `refimpl aby3 party --seed` no longer exists; the seeded form is named insecure."""
    out = subprocess.run([sys.executable, "-m", "refimpl", "aby3", "party", "--id", "0", "--peers",
                          "127.0.0.1:1,127.0.0.1:2,127.0.0.1:3", "--seed", "0"], capture_output=True, text=True)
    assert out.returncode == 2 and "unrecognized arguments: --seed" in out.stderr
    helptext = subprocess.run([sys.executable, "-m", "refimpl", "aby3", "party", "--help"], capture_output=True,
                              text=True).stdout
    assert "--insecure-seed" in helptext and "INSECURE" in helptext


# ---- an eavesdropper on the loopback wire --------------------------------------------------------

class Relay:
    """A passive man in the middle: forwards each connection to party j and records every byte."""

    def __init__(self, target):
        self.target = target
        self.server = socket.create_server(("127.0.0.1", 0))
        self.addr = self.server.getsockname()
        self.captured = []  # one bytearray per direction of each connection
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                a, _ = self.server.accept()
            except OSError:
                return
            b = socket.create_connection(self.target)
            for src, dst in ((a, b), (b, a)):
                buf = bytearray()
                self.captured.append(buf)
                threading.Thread(target=self._pump, args=(src, dst, buf), daemon=True).start()

    @staticmethod
    def _pump(src, dst, buf):
        try:
            while chunk := src.recv(1 << 16):
                buf += chunk
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self.server.close()


def frames(stream: bytes):
    """Every protocol frame an eavesdropper can parse out of a captured byte stream."""
    out, i = [], stream.find(b'{"stamps"')
    while i >= 4:
        hlen = int.from_bytes(stream[i - 4 : i], "big")
        try:
            head = json.loads(stream[i : i + hlen])
            dlen = int.from_bytes(stream[i + hlen : i + hlen + 4], "big")
            data = stream[i + hlen + 4 : i + hlen + 4 + dlen]
            out.append((head["tag"], np.frombuffer(data, dtype=head["dtype"]).reshape(head["shape"])))
        except (ValueError, KeyError):
            pass
        i = stream.find(b'{"stamps"', i + 1)
    return out


X = np.linspace(-2.0, 2.0, 40)


def _square(p):
    a = share_input(p, 0, X if p.id == 0 else None)
    return reveal(p, arith.mul(p, a, a), to=0)  # x^2 at scale 2^(2f), opened to the client only


def eavesdrop(tls_dir=None):
    """Run _square on three parties whose links pass through recording relays; returns the
    client's output and what the eavesdropper recovers from the wire (None if nothing)."""
    listen = [socket.create_server(("127.0.0.1", 0)) for _ in range(3)]
    real = [s.getsockname() for s in listen]
    for s in listen:
        s.close()
    relays = [Relay(real[j]) for j in range(3)]
    results = [None] * 3

    def go(i):
        addrs = [real[j] if j == i else relays[j].addr for j in range(3)]
        tls = None if tls_dir is None else TLSConfig.from_dir(tls_dir, i)
        results[i] = run_party(i, addrs, _square, tls=tls, insecure_plaintext=tls is None, timeout=60)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for r in relays:
        r.close()
    captured = b"".join(bytes(b) for r in relays for b in r.captured)
    zs = [arr for buf in (bytes(b) for r in relays for b in r.captured) for tag, arr in frames(buf) if tag == "mul"]
    recovered = None
    if len(zs) == 3:  # the three 3-of-3 shares of x^2 that the reshare sends
        recovered = (zs[0] + zs[1] + zs[2]).view(np.int64) / float(1 << (2 * Fxp().f))
    return results[0][0], recovered, captured


def test_eavesdropper_learns_nothing_over_tls(tmp_path):
    """SEC-ATTACK-WIRE: on plain TCP (the weakened, explicitly insecure configuration) an
    eavesdropper on the loopback wire adds up the three reshare messages and reads x^2, which
    only the client should learn; over TLS it parses no frame at all and recovers nothing, and
    the captured bytes hold none of the protocol's headers. The client's result is the same."""
    out_plain, rec_plain, cap_plain = eavesdrop(None)
    assert rec_plain is not None and np.max(np.abs(rec_plain - X * X)) < 1e-4
    make_keys(tmp_path)
    out_tls, rec_tls, cap_tls = eavesdrop(tmp_path)
    assert rec_tls is None and b'"stamps"' not in cap_tls and b'"stamps"' in cap_plain
    assert len(cap_tls) > len(cap_plain) > 0
    scale = float(1 << Fxp().f)  # the opened product carries one extra 2^f (no truncation)
    assert np.max(np.abs(out_tls / scale - X * X)) < 1e-4 and np.max(np.abs(out_plain / scale - X * X)) < 1e-4
