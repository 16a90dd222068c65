"""TCP transport: each party in its own process, the protocol code unchanged (ABY3 §2: three servers).

Party i listens on addrs[i], connects to every party j < i and accepts every j > i. Every link
is TLS 1.3 with mutual certificate authentication (refimpl.aby3.tls, ours): the connecting
party checks that the listener is party j, the listener reads the connecting party's id from
its certificate (and the id byte the peer then sends must agree). A message is a frame

    [4 B header length][JSON header: round stamps, scope tag, dtype, shape][4 B data length][data]

and the Network counts only the data (the arrays' bytes), as SPU's counts exclude its
link layer's framing; the transport counts both, and the channel counts the bytes that really
crossed the socket (TLS records and handshake), so the TLS overhead is reported apart.

Session setup (ABY3 §2.2, `exchange_keys`): party i samples its PRSS key k_i from the OS and
sends it to party i-1, and sends a 32-byte contribution to the public coins to both others;
these setup bytes are counted apart too. `run_party(..., insecure_seed=s)` skips the exchange
and derives every key from s: INSECURE (whoever knows s holds all three keys), tests only.

Failures end the run fast with a ProtocolError naming the peer: a closed connection
(also in the middle of a frame), a malformed frame (bad lengths, bad JSON, a dtype other
than unsigned integers, data that does not fit the shape), a failed TLS handshake, or no byte
for `timeout` seconds. A party that fails closes its sockets, so the others see the closed
connection at once rather than waiting out their timeouts; nothing is opened to anyone after
an error.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
import time

import numpy as np

from refimpl.aby3.model import classify_program
from refimpl.aby3.network import ProtocolError
from refimpl.aby3.party import make_party
from refimpl.aby3.prss import public_key_from, setup_keys
from refimpl.aby3.tls import PlainChannel, TLSChannel, TLSConfig, party_name
from refimpl.bert.config import BertConfig
from refimpl.bert.model import init_params
from refimpl.csprng import KEY_BYTES, os_key

_LEN = struct.Struct("!I")
MAX_HEADER = 1 << 16  # a header is a few hundred bytes; anything longer is malformed
WIRE_DTYPES = ("|u1", "<u2", "<u4", "<u8")  # what the protocols send: packed unsigned words only
TIMEOUT_S = 30.0  # default seconds without a byte before a party gives up (fail fast; lengthen with --timeout)
CONNECT_TIMEOUT_S = 30.0


class TCPTransport:
    """Party `me`'s channels to the other two parties (same interface as InMemoryTransport).

    `tls`: party me's certificates (TLSConfig). Without it the links are plain TCP, which only
    `insecure_plaintext=True` allows (INSECURE: the eavesdropper test's weakened configuration).
    Counters: payload_sent / payload_recv (array data), frame_sent / frame_recv (length prefixes
    and JSON headers), handshake (id bytes), setup_sent / setup_recv (PRSS key exchange, public token count);
    `wire()` adds raw_sent / raw_recv, what crossed the sockets (TLS records and handshake included).
    """

    def __init__(self, me: int, addrs: list[tuple[str, int]], *, tls: TLSConfig | None = None,
                 insecure_plaintext: bool = False, connect_timeout: float = CONNECT_TIMEOUT_S,
                 timeout: float = TIMEOUT_S) -> None:
        if len(addrs) != 3 or not 0 <= me < 3:
            raise ValueError("need three (host, port) addresses and a party id in {0, 1, 2}")
        if tls is None and not insecure_plaintext:
            raise ValueError("the parties' links need TLS certificates (refimpl aby3 keys --out DIR); plain TCP "
                             "only with insecure_plaintext=True")
        if tls is not None and tls.me != me:
            raise ValueError(f"TLS material of party {tls.me} given to party {me}")
        self.me = me
        self.tls = tls
        self.contexts = {side: tls.context(server=side) for side in (True, False)} if tls else {}  # bad files: fail now
        self.timeout = timeout
        self.abort = threading.Event()
        self.socks: dict = {}
        self.payload_sent = self.frame_sent = self.payload_recv = self.frame_recv = self.handshake = 0
        self.setup_sent = self.setup_recv = 0
        try:
            server = socket.create_server(addrs[me], reuse_port=False)
        except OSError as e:
            raise ProtocolError(f"party {me}: cannot listen on {addrs[me][0]}:{addrs[me][1]} ({e.strerror or e})") from None
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
                s = self._secure(s, j, connect_timeout, server_side=False)
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
                s = self._secure(s, None, connect_timeout, server_side=True)
                who = self._read(s, 1, "?")[0]
                certified = s.peer_party()
                if who <= me or who > 2 or who in self.socks or (tls is not None and certified != who):
                    s.close()
                    named = "" if tls is None else f" (its certificate names party {certified})"
                    raise ProtocolError(f"party {me}: a peer introduced itself as party {who}{named}; expected one of "
                                        f"{sorted(set(range(me + 1, 3)) - set(self.socks))}")
                self.socks[who] = s
        except BaseException:
            self.close()
            raise
        finally:
            server.close()
        for s in self.socks.values():
            s.settimeout(timeout)

    def _secure(self, s: socket.socket, peer: int | None, timeout: float, *, server_side: bool):
        """The raw socket as a channel: TLS (handshake done, peer verified) or, if allowed, plain."""
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(timeout)
        if self.tls is None:
            return PlainChannel(s)
        ch = TLSChannel(s, self.contexts[server_side], server_side=server_side,
                        server_hostname=None if server_side else party_name(peer))
        try:
            ch.handshake()
        except (ssl.SSLError, ssl.CertificateError, OSError) as e:
            s.close()
            who = f"party {peer}" if peer is not None else "a connecting peer"
            raise ProtocolError(f"party {self.me}: TLS handshake with {who} failed ({e}): are all parties' "
                                "certificates from the same `refimpl aby3 keys` run?") from None
        return ch

    # ---- session setup (not counted by the Network) ------------------------------------------
    def send_setup(self, to: int, data: bytes) -> None:
        try:
            self.socks[to].sendall(data)
        except OSError as e:
            raise ProtocolError(f"party {self.me}: party {to} closed the connection during setup ({e})") from None
        self.setup_sent += len(data)

    def recv_setup(self, frm: int, n: int) -> bytes:
        data = self._read(self.socks[frm], n, frm)
        self.setup_recv += n
        return data

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
        """Bytes of this party's links: payload, framing, setup, and the raw socket bytes (TLS included)."""
        raw_sent = sum(s.raw_sent for s in self.socks.values())
        raw_recv = sum(s.raw_recv for s in self.socks.values())
        app_sent = self.payload_sent + self.frame_sent + self.handshake + self.setup_sent
        return {"payload_sent": self.payload_sent, "frame_sent": self.frame_sent, "payload_recv": self.payload_recv,
                "frame_recv": self.frame_recv, "handshake": self.handshake, "setup_sent": self.setup_sent,
                "setup_recv": self.setup_recv,
                "raw_sent": raw_sent, "raw_recv": raw_recv, "tls": self.tls is not None,
                "tls_overhead_sent": raw_sent - app_sent,
                "tls_handshake": sum(getattr(s, "handshake_bytes", 0) for s in self.socks.values())}

    def close(self) -> None:
        for s in self.socks.values():
            s.close()


def exchange_keys(transport: TCPTransport) -> list:
    """ABY3 §2.2 setup, once per session: party i samples k_i and a public-coin contribution c_i
    from the OS, sends k_i + c_i to party i-1 and c_i to party i+1; returns [k_0, k_1, k_2, k_pub]
    with None for the key this party must never hold; k_pub = H(c_0, c_1, c_2)."""
    me = transport.me
    prev, nxt = (me - 1) % 3, (me + 1) % 3
    k, c = os_key(), os_key()
    transport.send_setup(prev, k + c)
    transport.send_setup(nxt, c)
    got = transport.recv_setup(nxt, 2 * KEY_BYTES)
    c_prev = transport.recv_setup(prev, KEY_BYTES)
    keys: list = [None, None, None]
    keys[me], keys[nxt] = k, got[:KEY_BYTES]
    contrib = {me: c, nxt: got[KEY_BYTES:], prev: c_prev}
    return keys + [public_key_from([contrib[j] for j in range(3)])]


def run_party(me: int, addrs: list[tuple[str, int]], program, *, tls: TLSConfig | None = None,
              insecure_plaintext: bool = False, insecure_seed: int | None = None, timeout: float = TIMEOUT_S,
              connect_timeout: float = CONNECT_TIMEOUT_S, before=None):
    """Run `program(party)` as party `me` over TCP; returns (output, network). network.transport
    is the TCPTransport (its `wire()` counters). PRSS keys from `exchange_keys` (OS randomness),
    or INSECURE from `insecure_seed`. `before(transport)`, if given, runs after the keys (e.g. the
    client telling the servers the token count) and its result is passed as program(party, it).
    The sockets are closed on return and on error."""
    transport = TCPTransport(me, addrs, tls=tls, insecure_plaintext=insecure_plaintext, timeout=timeout,
                             connect_timeout=connect_timeout)
    try:
        if insecure_seed is None:
            p = make_party(me, transport, keys=exchange_keys(transport), session=1)
        else:
            p = make_party(me, transport, insecure_seed=insecure_seed, keys=setup_keys(insecure_seed), session=1)
        if before is None:
            return program(p), p.net
        return program(p, before(transport)), p.net
    finally:
        transport.close()


def send_token_count(transport: TCPTransport, n: int | None) -> int:
    """The client (party 0) tells the servers the public token count; every party returns it."""
    if transport.me == 0:
        for j in (1, 2):
            transport.send_setup(j, _LEN.pack(int(n)))
        return int(n)
    (got,) = _LEN.unpack(transport.recv_setup(0, 4))
    if not 0 < got <= 1 << 16:
        raise ProtocolError(f"party {transport.me}: the client announced {got} tokens")
    return got


def classify_as_party(me: int, addrs: list[tuple[str, int]], cfg: BertConfig, params: dict | None,
                      ids: np.ndarray | None, **run) -> dict:
    """Party `me` of a secure classification over TCP: party 1 passes the weights, party 0 the
    token ids (it tells the servers their public count, so no server needs the sentence); the
    others pass None. Returns this party's counts (bytes, sends, rounds), its wire bytes (payload,
    framing, setup, TLS) and, at party 0 only, the logits. `run`: run_party's options."""
    if (me == 1) != (params is not None) or (me == 0) != (ids is not None):
        raise ValueError("party 1 alone passes the weights, party 0 alone the token ids")

    seen = {}

    def prog(p, n):
        seen["n"] = n
        mask = np.ones(n, dtype=np.int64)
        return classify_program(cfg, params, None if ids is None else np.asarray(ids)[:n], mask)(p)

    (logits, query_s), net = run_party(me, addrs, prog, before=lambda t: send_token_count(t, None if ids is None else len(ids)),
                                       **run)
    row = {"party": me, "attention": cfg.attention, "activation": cfg.activation,
           "n": seen["n"],
           "bytes_sent": net.bytes_sent, "bytes_recv": net.bytes_recv, "sends": net.sends, "rounds": net.clock,
           "query_s": round(query_s, 4), "query_bytes_sent": net.scopes["query"].bytes_sent,
           "wire": net.transport.wire()}
    if logits is not None:
        row["logits"] = [float(v) for v in logits]
    return row


def tiny_model(seed: int = 0, attention: str = "2quad-freediv", act: str = "quad", n: int = 10):
    """A small random BERT classifier (2 layers, hidden 32) and a sequence: (config, params, ids, mask).

    Every process can build the same public demo model from the seed; only party 1 uses params, party 0 ids.
    """
    cfg = BertConfig(vocab_size=40, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     max_position_embeddings=max(16, n), attention=attention, activation=act, num_labels=2)
    rng = np.random.default_rng(seed)
    params = {k: (v * 10 if not k.endswith("LayerNorm.weight") else v)
              for k, v in init_params(cfg, rng, np.float64).items()}  # N(0, 0.2^2): non-trivial activations
    ids = rng.integers(1, cfg.vocab_size, n)
    return cfg, params, ids, np.ones(n, dtype=np.int64)




def free_local_ports(k: int = 3) -> list[int]:
    """k TCP ports on 127.0.0.1 that were free a moment ago: addresses for the three parties on one machine
    (tests, the TLS benchmark). Ours; a port can be taken again before a party binds it."""
    socks = [socket.socket() for _ in range(k)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports
