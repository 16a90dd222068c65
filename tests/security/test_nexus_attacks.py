"""Attacks on the NEXUS server, kept as tests (ours): each fails against the default server and
succeeds against a deliberately weakened one (so that the test can fail).

- idle client: a first client connects and sends nothing; a second client is answered
  (weakened: one_at_a_time=True, the old loop that serves one connection at a time forever);
- key poisoning: a second client uploads a relinearization key under the victim's id; the
  server refuses it (weakened: insecure_no_auth=True, ids unchecked: the victim's next logits
  come back wrong without any error);
- limits: a HELLO with a huge n and a frame longer than the parameters allow are refused
  before anything is built or read; the key cache evicts least recently used clients.
Settings: the toy model on toy-2^10-deep (insecure ring, fast), loopback TCP without TLS (the
frames' MAC is what binds keys; TLS is tested in tests/nexus/test_nexus_protocol.py).
"""

import os
import socket
import struct
import threading
from dataclasses import replace

import numpy as np
import pytest

from refimpl.nexus.protocol.client import Client
from refimpl.nexus.protocol.keycache import ClientKeys, KeyCache
from refimpl.nexus.protocol.listener import serve
from refimpl.nexus.protocol.server import Server
from refimpl.nexus.protocol.transport import LocalTransport, TcpTransport
from refimpl.nexus.protocol.wire import (
    SECRET_BYTES, ProtocolError, client_id_of, decode_message, encode_message, seal, session_key,
)
from refimpl.ckks import serialize as ser
from refimpl.ckks.keys import KeyGenerator
from refimpl.ring.sampling import RandomSource

MODEL, PARAMS = "toy", "toy-2^10-deep"
SENTENCE = "a gripping , moving and beautifully acted film"


@pytest.fixture(scope="module")
def server():
    return Server(MODEL, PARAMS, reveal_logits=True)


class Running:
    """`serve` in a thread on a free loopback port, stopped on exit."""

    def __init__(self, server, **kw):
        self.server, self.kw, self.stop, self.port = server, kw, threading.Event(), None

    def __enter__(self):
        ready = threading.Event()

        def on_ready(port):
            self.port = port
            ready.set()

        self.thread = threading.Thread(target=serve, args=(self.server, "127.0.0.1", 0), daemon=True,
                                       kwargs=dict(out=open(os.devnull, "w"), ready=on_ready, stop=self.stop, **self.kw))
        self.thread.start()
        assert ready.wait(30)
        return self

    def __exit__(self, *exc):
        self.stop.set()


def _second_client_answered(server, **serve_kw) -> bool:
    """A first client connects and sits idle; does a second client get its SETUP?"""
    with Running(server, **serve_kw) as run:
        idle = socket.create_connection(("127.0.0.1", run.port))
        try:
            t = TcpTransport.connect("127.0.0.1", run.port, timeout=5.0)
            try:
                c = Client(t, MODEL, PARAMS, seed=3)
                n = c.model.n
                t.send(encode_message("hello", {"model": MODEL, "params": PARAMS, "n": n, "mask": [1] * n,
                                                 "client_secret": c.secret.hex()}))
                try:
                    kind, _, _ = decode_message(t.recv(), "setup")
                    return kind == "setup"
                except ProtocolError:  # timed out: the server is stuck on the idle client
                    return False
            finally:
                t.close()
        finally:
            idle.close()


def test_idle_client_does_not_block_another(server):
    """NEXUS-SEC-IDLE: the default server answers a second client while a first one sits idle;
    the weakened one-at-a-time server does not (the attack works there)."""
    assert _second_client_answered(server)
    assert not _second_client_answered(server, one_at_a_time=True)


def test_idle_client_times_out(server):
    """A connection that sends nothing is dropped after the receive timeout."""
    with Running(server, timeout=0.5) as run:
        s = socket.create_connection(("127.0.0.1", run.port))
        s.settimeout(10)
        data = s.recv(1 << 16)  # the server's error frame, then the close
        while (more := s.recv(1 << 16)):
            data += more
        s.close()
    (n,) = struct.unpack_from("<Q", data)
    with pytest.raises(ProtocolError, match="no data from the peer within 0.5 s"):
        decode_message(data[8:8 + n], "setup")


def _poison(server, victim: Client) -> bytes:
    """An attacker with its own session uploads a relinearization key (of its own secret) under
    the victim's id; returns the server's reply (None: accepted). The key carries the victim's key
    id: a key id names a key, it authenticates nothing (anyone who saw a blob of the victim's has it)."""
    kg = KeyGenerator(server.params, RandomSource.insecure_seeded(99), expand_keys=False)
    bad = ser.serialize_switching_key(replace(kg.relin_key(kg.secret_key()), key_id=victim.pk.key_id))
    s = server.session()
    secret = os.urandom(SECRET_BYTES)
    n = victim.model.n
    reply = s.handle(encode_message("hello", {"model": MODEL, "params": PARAMS, "n": n, "mask": [1] * n,
                                              "client_secret": secret.hex(), "client_id": client_id_of(secret)}))
    kind, setup, _ = decode_message(reply)
    if kind == "setup" and "nonce" in setup:  # authenticated session: the attacker's own id
        frame = seal(encode_message("key", {"client_id": victim.client_id, "role": "relin"}, [bad]),
                     session_key(secret, bytes.fromhex(setup["nonce"])), 0)
    else:
        frame = encode_message("key", {"client_id": victim.client_id, "role": "relin"}, [bad])
    return s.handle(frame)


def test_key_poisoning_is_refused():
    """NEXUS-SEC-POISON: a key upload under another client's id is refused and the victim's keys
    stay; against the weakened server (ids unchecked) the same upload is accepted and the victim's
    next answer is wrong, with no error."""
    server = Server(MODEL, PARAMS, reveal_logits=True)
    victim = Client(LocalTransport(server.session()), MODEL, PARAMS, seed=5, reveal_logits=True)
    first = victim.classify(SENTENCE)
    relin = server.clients[victim.client_id].relin
    reply = _poison(server, victim)
    with pytest.raises(ProtocolError, match="AuthenticationError: .*claims client"):
        decode_message(reply, "setup")
    assert server.clients[victim.client_id].relin is relin

    weak = Server(MODEL, PARAMS, reveal_logits=True, insecure_no_auth=True)
    victim = Client(LocalTransport(weak.session()), MODEL, PARAMS, seed=5, reveal_logits=True)
    before = victim.classify(SENTENCE)
    np.testing.assert_allclose(before["logits"], first["logits"], atol=2e-3)  # the weakened server works
    assert _poison(weak, victim) is None  # accepted
    after = victim.classify(SENTENCE)
    assert np.max(np.abs(np.asarray(after["logits"]) - before["logits"])) > 1.0  # the attack works there


def test_forged_or_replayed_frames_are_refused(server):
    """Frames after the HELLO without a valid tag (forged, or replayed with an old sequence number) are refused."""
    s = server.session()
    secret = os.urandom(SECRET_BYTES)
    setup = decode_message(s.handle(encode_message("hello", {"model": MODEL, "params": PARAMS, "n": 8, "mask": [1] * 8,
                                                             "client_secret": secret.hex()})), "setup")[1]
    key = session_key(secret, bytes.fromhex(setup["nonce"]))
    done = encode_message("keys_done", {})
    assert s.handle(seal(done, key, 0)) is None  # accepted
    for frame in (seal(done, key, 0), seal(done, os.urandom(32), 1), done):  # replay, wrong key, no tag
        with pytest.raises(ProtocolError, match="AuthenticationError"):
            decode_message(s.handle(frame), "setup")
    bad_id = server.session()
    with pytest.raises(ProtocolError, match="AuthenticationError: the HELLO.s client id is not the hash of its secret"):
        decode_message(bad_id.handle(encode_message("hello", {"model": MODEL, "params": PARAMS, "n": 8, "mask": [1] * 8,
                                                              "client_secret": secret.hex(), "client_id": "victim"})),
                       "setup")


def test_limits_from_the_parameters(server):
    """A HELLO with a huge n is refused before anything is built; the frame limit is the
    parameters' largest frame (megabytes here, not 64 GiB); a longer length prefix is refused
    before the frame is read."""
    s = server.session()
    reply = s.handle(encode_message("hello", {"model": MODEL, "params": PARAMS, "n": 10**9, "mask": [],
                                              "client_secret": os.urandom(SECRET_BYTES).hex()}))
    with pytest.raises(ProtocolError, match=r"n must be an integer token count in \[1, 8\]"):
        decode_message(reply, "setup")
    assert len(reply) < 1000
    assert 1 << 20 < server.frame_limit < 1 << 24
    with Running(server) as run:
        c = socket.create_connection(("127.0.0.1", run.port))
        c.sendall(struct.pack("<Q", server.frame_limit + 1))
        c.settimeout(10)
        data = c.recv(1 << 16)
        c.close()
    (n,) = struct.unpack_from("<Q", data)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        decode_message(data[8:8 + n], "setup")


def test_key_cache_evicts_least_recently_used():
    """The cache holds at most `limit` bytes: a new client's key evicts the oldest other client;
    one client's keys alone above the limit are refused."""
    cache = KeyCache(100)
    a, b, c = cache.get("a"), cache.get("b"), cache.get("c")
    cache.charge("a", a, "relin", 40)
    cache.charge("b", b, "relin", 40)
    cache.get("a")  # a used again: b is now the oldest
    cache.charge("c", c, "relin", 40)
    assert "b" not in cache and "a" in cache and "c" in cache and cache.total == 80
    with pytest.raises(ProtocolError, match="above the server's key cache"):
        cache.charge("c", c, "galois:3", 61)
    assert isinstance(cache.get("d"), ClientKeys)
    cache.max_clients = 3
    cache.get("e")  # a fourth entry: the least recently used one (a) goes
    assert "a" not in cache and len(cache) == 3 and cache.total == 40


def test_client_key_bound_covers_the_keys_held(server):
    """The per-client memory bound the server prints covers what one client's keys really hold."""
    c = Client(LocalTransport(server.session()), MODEL, PARAMS, seed=8, reveal_logits=True)
    c.classify(SENTENCE)
    held = server.clients[c.client_id].held_bytes
    assert 0.9 * server.client_key_bound <= held <= server.client_key_bound


def test_sessions_beyond_the_limit_are_refused(server):
    """With --max-sessions 1, a second connection while the first is open gets a 'server busy' error."""
    with Running(server, max_sessions=1) as run:
        first = socket.create_connection(("127.0.0.1", run.port))
        try:
            second = socket.create_connection(("127.0.0.1", run.port))
            second.settimeout(10)
            data = b""
            while (chunk := second.recv(1 << 16)):
                data += chunk
            second.close()
        finally:
            first.close()
    (n,) = struct.unpack_from("<Q", data)
    with pytest.raises(ProtocolError, match="server busy: 1 sessions already open"):
        decode_message(data[8:8 + n], "setup")
