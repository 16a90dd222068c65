"""TCP transport: each party in its own process, the protocol code unchanged (ABY3 §2: three servers).

Party i listens on addrs[i], connects to every party j < i (sending its id, one byte) and
accepts every j > i. A message is a frame

    [4 B header length][JSON header: round stamps, scope tag, dtype, shape][4 B data length][data]

and the Network counts only the data (the arrays' bytes), as SPU's counts exclude its
link layer's framing; the transport counts both, so that the payload that crossed the
sockets can be checked against the Network's counts and the framing reported apart.

Failures end the run fast with a ProtocolError naming the peer: a closed connection
(also in the middle of a frame), a malformed frame (bad lengths, bad JSON, a dtype other
than unsigned integers, data that does not fit the shape), or no byte for `timeout`
seconds. A party that fails closes its sockets, so the others see the closed connection
at once rather than waiting out their timeouts; nothing is opened to anyone after an error.

PRSS keys: `run_party` derives them from a seed all parties are given, which is a demo
setup; a deployment would run the key exchange of refimpl.aby3.prss (party i sends k_i to
party i-1 once, over a private channel).
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time

import numpy as np

from refimpl.aby3.network import RECV_TIMEOUT_S, ProtocolError
from refimpl.aby3.party import make_party

_LEN = struct.Struct("!I")
MAX_HEADER = 1 << 16  # a header is a few hundred bytes; anything longer is malformed
WIRE_DTYPES = ("|u1", "<u2", "<u4", "<u8")  # what the protocols send: packed unsigned words only


class TCPTransport:
    """Party `me`'s sockets to the other two parties (same interface as InMemoryTransport).

    Counters (bytes written to / read from the sockets): payload_sent / payload_recv (array
    data), frame_sent / frame_recv (length prefixes and JSON headers), handshake (id bytes).
    """

    def __init__(self, me: int, addrs: list[tuple[str, int]], *, connect_timeout: float = 30.0,
                 timeout: float = RECV_TIMEOUT_S) -> None:
        if len(addrs) != 3 or not 0 <= me < 3:
            raise ValueError("need three (host, port) addresses and a party id in {0, 1, 2}")
        self.me = me
        self.timeout = timeout
        self.abort = threading.Event()
        self.socks: dict[int, socket.socket] = {}
        self.payload_sent = self.frame_sent = self.payload_recv = self.frame_recv = self.handshake = 0
        server = socket.create_server(addrs[me], reuse_port=False)
        server.settimeout(connect_timeout)
        try:
            for j in range(me):  # connect to lower ids (they are listening), say who we are
                deadline = time.monotonic() + connect_timeout
                while True:
                    try:
                        s = socket.create_connection(addrs[j], timeout=connect_timeout)
                        break
                    except OSError as e:
                        if time.monotonic() > deadline:
                            raise ProtocolError(f"party {me}: cannot connect to party {j} at "
                                                f"{addrs[j][0]}:{addrs[j][1]} within {connect_timeout} s ({e})") from None
                        time.sleep(0.05)
                s.sendall(bytes([me]))
                self.handshake += 1
                self.socks[j] = s
            while len(self.socks) < 2:  # accept the higher ids
                try:
                    s, _ = server.accept()
                except socket.timeout:
                    missing = sorted(set(range(3)) - {me} - set(self.socks))
                    raise ProtocolError(f"party {me}: parties {missing} did not connect within {connect_timeout} s") from None
                s.settimeout(connect_timeout)
                who = self._read(s, 1, "?")[0]
                if who <= me or who > 2 or who in self.socks:
                    s.close()
                    raise ProtocolError(f"party {me}: a peer introduced itself as party {who}; expected one of "
                                        f"{sorted(set(range(me + 1, 3)) - set(self.socks))}")
                self.socks[who] = s
        except BaseException:
            self.close()
            raise
        finally:
            server.close()
        for s in self.socks.values():
            s.settimeout(timeout)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # ---- frames ---------------------------------------------------------------------------
    def _read(self, s: socket.socket, n: int, frm) -> bytes:
        """Exactly n bytes from s, or a ProtocolError saying what happened."""
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = s.recv(min(n - len(buf), 1 << 20))
            except socket.timeout:
                raise ProtocolError(f"party {self.me}: no data from party {frm} for {s.gettimeout()} s "
                                    "(peer dead or stuck)") from None
            except ConnectionError as e:  # reset: the peer closed with our data unread
                raise ProtocolError(f"party {self.me}: party {frm} closed the connection ({e})") from None
            except OSError as e:
                raise ProtocolError(f"party {self.me}: connection to party {frm} failed: {e}") from None
            if not chunk:
                where = f" in the middle of a frame ({len(buf)} of {n} bytes)" if buf else ""
                raise ProtocolError(f"party {self.me}: party {frm} closed the connection{where}")
            buf += chunk
        return bytes(buf)

    def send(self, frm: int, to: int, message: tuple) -> None:
        stamps, tag, arr = message
        head = json.dumps({"stamps": list(stamps), "tag": tag, "dtype": arr.dtype.str, "shape": arr.shape}).encode()
        frame = _LEN.pack(len(head)) + head + _LEN.pack(arr.nbytes)
        try:
            self.socks[to].sendall(frame + arr.tobytes())
        except socket.timeout:
            raise ProtocolError(f"party {self.me}: party {to} stopped reading for {self.timeout} s") from None
        except OSError as e:
            raise ProtocolError(f"party {self.me}: party {to} closed the connection (send failed: {e})") from None
        self.frame_sent += len(frame)
        self.payload_sent += arr.nbytes

    def recv(self, frm: int, to: int, timeout: float | None = None) -> tuple:
        s = self.socks[frm]
        bad = f"party {self.me}: malformed message from party {frm}"
        (hlen,) = _LEN.unpack(self._read(s, 4, frm))
        if not 0 < hlen <= MAX_HEADER:
            raise ProtocolError(f"{bad}: header length {hlen} (at most {MAX_HEADER})")
        try:
            head = json.loads(self._read(s, hlen, frm))
            stamps = tuple(int(v) for v in head["stamps"])
            tag = head["tag"]
            dtype = head["dtype"]
            shape = tuple(int(v) for v in head["shape"])
        except (ValueError, KeyError, TypeError) as e:
            raise ProtocolError(f"{bad}: unreadable header ({e.__class__.__name__}: {e})") from None
        if dtype not in WIRE_DTYPES or not isinstance(tag, str) or not stamps or min(shape, default=0) < 0:
            raise ProtocolError(f"{bad}: header {head!r} (dtype must be one of {WIRE_DTYPES})")
        (dlen,) = _LEN.unpack(self._read(s, 4, frm))
        want = np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))
        if dlen != want:
            raise ProtocolError(f"{bad}: {dlen} data bytes for dtype {dtype} and shape {shape} (expected {want})")
        data = self._read(s, dlen, frm)
        self.frame_recv += 8 + hlen
        self.payload_recv += dlen
        return stamps, tag, np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape)

    def wire(self) -> dict:
        """Bytes that crossed this party's sockets, payload and framing apart."""
        return {"payload_sent": self.payload_sent, "frame_sent": self.frame_sent, "payload_recv": self.payload_recv,
                "frame_recv": self.frame_recv, "handshake": self.handshake}

    def close(self) -> None:
        for s in self.socks.values():
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def run_party(me: int, addrs: list[tuple[str, int]], program, *, seed: int = 0, timeout: float = RECV_TIMEOUT_S):
    """Run `program(party)` as party `me` over TCP; returns (output, network). network.transport
    is the TCPTransport (its `wire()` counters). The sockets are closed on return and on error."""
    transport = TCPTransport(me, addrs, timeout=timeout)
    try:
        p = make_party(me, transport, insecure_seed=seed, session=1)
        return program(p), p.net
    finally:
        transport.close()


def tiny_model(seed: int = 0, attention: str = "2quad-freediv", act: str = "quad", n: int = 10):
    """A small random BERT classifier (2 layers, hidden 32) and a sequence: (config, params, ids, mask).

    Every process builds the same one from the seed; only party 1 uses params, party 0 ids.
    """
    from refimpl.bert.config import BertConfig
    from refimpl.bert.model import init_params

    cfg = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=max(16, n), attention=attention, activation=act, num_labels=2)
    rng = np.random.default_rng(seed)
    params = {k: (v * 10 if not k.endswith("LayerNorm.weight") else v)
              for k, v in init_params(cfg, rng, np.float64).items()}  # N(0, 0.2^2): non-trivial activations
    ids = rng.integers(1, cfg.vocab_size, n)
    return cfg, params, ids, np.ones(n, dtype=np.int64)


def _parse_peers(peers: list[str]) -> list[tuple[str, int]]:
    if len(peers) != 3:
        raise ValueError(f"--peers needs three host:port entries (parties 0, 1, 2), got {len(peers)}")
    addrs = []
    for a in peers:
        host, sep, port = a.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"bad peer address {a!r}: expected host:port")
        addrs.append((host, int(port)))
    return addrs


def party_main(party_id: int, peers: list[str], *, seed: int = 0, model: str = "tiny", sentence: str | None = None,
               attention: str = "2quad-freediv", act: str = "quad", timeout: float = RECV_TIMEOUT_S) -> int:
    """`refimpl aby3 party --id I --peers H:P,H:P,H:P [--model tiny|NAME] [--sentence TEXT]`.

    Secure classification of one sequence by three processes: party 1 shares the model's
    weights, party 0 its tokens, party 0 alone learns the logits. model "tiny": the random
    `tiny_model(seed, attention, act)`; otherwise a shipped model (refimpl.bert.shipped) and
    `sentence` (party 0 tokenizes it; the others learn only its length). Prints one JSON line
    with this party's counts (bytes, sends, rounds), wire bytes (payload and framing) and,
    at party 0, the logits. Returns 1 with a message on stderr when the protocol fails.
    """
    from refimpl.aby3.model import classify_program, trim_padding

    addrs = _parse_peers(peers)
    if model == "tiny":
        cfg, params, ids, mask = tiny_model(seed, attention, act)
    else:
        from refimpl.bert import shipped

        if not shipped.available(model):
            print(f"party {party_id}: shipped model {model!r} is not available", file=sys.stderr)
            return 2
        m = shipped.load(model)
        cfg, params = m.config, {k: np.asarray(v, dtype=np.float64) for k, v in m.params.items()}
        ids, mask = shipped.encode(m, sentence or "a gripping, funny and moving film .")
        ids, mask = trim_padding(ids, mask)
    if party_id != 0:
        ids = None  # only the client knows its tokens (the others only use the public mask)
    if party_id != 1:
        params = None  # only the model owner knows the weights
    try:
        (logits, query_s), net = run_party(party_id, addrs, classify_program(cfg, params, ids, mask), seed=seed,
                                           timeout=timeout)
    except ProtocolError as e:
        print(f"refimpl aby3 party {party_id}: protocol failed: {e}", file=sys.stderr)
        return 1
    row = {"party": party_id, "model": model, "attention": cfg.attention, "activation": cfg.activation,
           "n": int(np.asarray(mask).size), "bytes_sent": net.bytes_sent, "bytes_recv": net.bytes_recv,
           "sends": net.sends, "rounds": net.clock, "query_s": round(query_s, 4),
           "query_bytes_sent": net.scopes["query"].bytes_sent, "wire": net.transport.wire()}
    if logits is not None:
        row["logits"] = [float(v) for v in logits]
    print(json.dumps(row), flush=True)
    return 0


def main(argv: list[str]) -> int:
    """`refimpl aby3 party --id I --peers H:P,H:P,H:P`: one party as its own OS process."""
    import argparse

    ap = argparse.ArgumentParser(prog="refimpl aby3")
    sub = ap.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("party", help="run one party of a secure classification over TCP")
    pp.add_argument("--id", type=int, required=True, choices=(0, 1, 2))
    pp.add_argument("--peers", required=True, help="host:port,host:port,host:port for parties 0, 1, 2")
    pp.add_argument("--seed", type=int, default=0, help="PRSS seed shared by the parties (demo setup)")
    pp.add_argument("--model", default="tiny", help="tiny (random 2-layer model from --seed) or a shipped model name")
    pp.add_argument("--sentence", default=None, help="the client's sentence (shipped models)")
    pp.add_argument("--attention", default="2quad-freediv", help="attention variant of the tiny model")
    pp.add_argument("--activation", default="quad", help="activation of the tiny model")
    pp.add_argument("--timeout", type=float, default=RECV_TIMEOUT_S, help="seconds without data before giving up")
    args = ap.parse_args(argv)
    try:
        return party_main(args.id, args.peers.split(","), seed=args.seed, model=args.model, sentence=args.sentence,
                          attention=args.attention, act=args.activation, timeout=args.timeout)
    except ValueError as e:
        ap.error(str(e))
        return 2
