"""Malformed NEXUS frames and blobs (ours): every one must end in a clean error message from the
server, never an exception escaping the session, a server-side bug report or a hang.

Cases, deterministic (a seeded generator picks the mutated bytes; nothing secret):
  wire frames    truncations, bit flips (with and without a fixed CRC), oversized and
                 inconsistent length fields, unknown and server-only message types,
                 missing or forged tags after the HELLO
  headers        wrong types and values in every field a client sends (n, mask, compress,
                 output, model, params, client_secret, client_id, role, element)
  blobs          ciphertexts and keys of another parameter set or of another secret key, the wrong kind for the role,
                 truncated or corrupted blobs, queries of the wrong shape or level
  TCP            length prefixes above the limit, truncated frames, idle connections,
                 garbage instead of a TLS/TCP frame; the server must keep serving
`run_wire_cases()` -> rows {category, name, outcome}; outcome: clean, traceback (an exception
out of the session, or the server's "server error" branch, i.e. a bug), hang, silent (accepted).
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import zlib

import numpy as np

from refimpl.ckks import Encoder, Encryptor
from refimpl.ckks import serialize as ser
from refimpl.ckks.keys import KeyGenerator
from refimpl.nexus.protocol.listener import serve
from refimpl.nexus.protocol.server import Server
from refimpl.nexus.protocol.wire import (
    FRAME_HEAD, SECRET_BYTES, ProtocolError, decode_message, encode_message, resolve_params, seal, session_key,
)
from refimpl.ring.sampling import RandomSource

MODEL, PARAMS, OTHER = "toy", "toy-2^10-deep", "toy-2^10"
HANG_S = 60.0


def _hello(secret: bytes, **over) -> dict:
    h = {"model": MODEL, "params": PARAMS, "n": 8, "mask": [1] * 8, "compress": True, "client_secret": secret.hex()}
    h.update(over)
    return {k: v for k, v in h.items() if v is not _DROP}


_DROP = object()


def _fix_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


class Material:
    """Valid blobs of the server's parameters and of another set (one key generation each)."""

    def __init__(self):
        p, _ = resolve_params(PARAMS)
        q, _ = resolve_params(OTHER)
        kg, kq = KeyGenerator(p, RandomSource.insecure_seeded(1), expand_keys=False), KeyGenerator(q, RandomSource.insecure_seeded(2), expand_keys=False)
        sk, skq = kg.secret_key(), kq.secret_key()
        pk, pkq = kg.public_key(sk), kq.public_key(skq)
        self.pk, self.pk_other = ser.serialize_public_key(pk), ser.serialize_public_key(pkq)
        self.relin, self.relin_other = ser.serialize_switching_key(kg.relin_key(sk)), ser.serialize_switching_key(kq.relin_key(skq))
        sk2 = kg.secret_key()  # another client's secret key of the same parameters
        self.relin_other_key = ser.serialize_switching_key(kg.relin_key(sk2))
        enc, encq = Encryptor(pk, RandomSource.insecure_seeded(3)), Encryptor(pkq, RandomSource.insecure_seeded(4))
        self.ct1 = ser.serialize_ciphertext(enc.encrypt(Encoder(p).encode(np.zeros(4), level=1)))
        self.ct_top = ser.serialize_ciphertext(enc.encrypt(Encoder(p).encode(np.zeros(4))))
        self.ct_other = ser.serialize_ciphertext(encq.encrypt(Encoder(q).encode(np.zeros(4), level=1)))


def session_cases(m: Material) -> list[tuple[str, str, list]]:
    """(category, name, steps): steps are ("raw", frame) or ("sealed", frame) sent in order to a
    fresh session; ("hello",) is a valid authenticated HELLO. The last step's reply is judged."""
    rng = np.random.default_rng(20261206)
    sec = os.urandom(SECRET_BYTES)
    cases = []
    hello = encode_message("hello", _hello(sec))
    key = encode_message("key", {"role": "relin"}, [m.relin])
    query = encode_message("query", {"compressed": True}, [m.ct1])
    # wire frames
    for name, f in (("hello", hello), ("key", key), ("query", query)):
        for cut in sorted({1, 4, 8, 14, 15, 18, 30, len(f) // 2, len(f) - 5, len(f) - 1}):
            step = ("raw", f[:cut]) if name == "hello" else ("sealed", f[:cut])
            cases.append(("wire frames", f"{name} truncated to {cut} bytes", [("hello",)] * (name != "hello") + [step]))
        for i in range(8):
            pos = int(rng.integers(0, len(f) - 4))
            flipped = bytearray(f)
            flipped[pos] ^= 1 << int(rng.integers(0, 8))
            step = ("raw", bytes(flipped)) if name == "hello" else ("sealed", bytes(flipped))
            cases.append(("wire frames", f"{name}: bit flip at byte {pos}", [("hello",)] * (name != "hello") + [step]))
    body = bytearray(hello[:-4])
    for name, off, fmt, val in (("header length 2^32 - 1", 7, "<I", 2**32 - 1), ("header length beyond the frame", 7, "<I", len(body)),
                                ("blob count 2^32 - 1", 11, "<I", 2**32 - 1), ("version 0", 4, "<H", 0)):
        b = bytearray(body)
        struct.pack_into(fmt, b, off, val)
        cases.append(("wire frames", f"hello: {name} (CRC fixed)", [("raw", _fix_crc(bytes(b)))]))
    kb = bytearray(key[:-4])
    hlen = struct.unpack_from("<I", kb, 7)[0]
    struct.pack_into("<Q", kb, FRAME_HEAD.size + hlen, 2**63)
    cases.append(("wire frames", "key: blob length 2^63 (CRC fixed)", [("hello",), ("sealed", _fix_crc(bytes(kb)))]))
    for t in (0, 2, 6, 7, 8, 99, 255):
        b = bytearray(body)
        b[6] = t
        cases.append(("wire frames", f"message type {t} to the server", [("raw", _fix_crc(bytes(b)))]))
    cases.append(("wire frames", "header not JSON", [("raw", _fix_crc(FRAME_HEAD.pack(b"RFNX", 1, 1, 3, 0) + b"{x]"))]))
    cases.append(("wire frames", "header a JSON list", [("raw", _fix_crc(FRAME_HEAD.pack(b"RFNX", 1, 1, 2, 0) + b"[]"))]))
    cases.append(("wire frames", "empty frame", [("raw", b"")]))
    cases.append(("wire frames", "key without a tag after the HELLO", [("hello",), ("raw", key)]))
    cases.append(("wire frames", "key with a forged tag", [("hello",), ("raw", key + os.urandom(32))]))
    cases.append(("wire frames", "key before any HELLO", [("raw", key)]))
    # headers
    for field, vals in (("n", ["8", 8.5, -1, 0, None, [], True, 10**30, 9]), ("mask", ["x", [2] * 8, [1] * 7, None, [True] * 8]),
                        ("compress", ["yes", 1, None]), ("output", ["all", 5, "logits"]), ("model", [5, "bert", None]),
                        ("params", [[], "128-2^16", "deep-2^99-1"]),
                        ("client_secret", [5, "zz", "00" * 10, None, "00" * 40]), ("client_id", [5, "someone"])):
        for v in vals:
            cases.append(("headers", f"hello: {field} = {json_short(v)}", [("raw", encode_message("hello", _hello(sec, **{field: v})))]))
    for field, vals in (("role", [5, "x", None, "secret"]), ("element", ["3", 4, -1, 10**30, None]), ("client_id", [5, "someone"])):
        for v in vals:
            h = {"role": "galois", "element": 3, field: v} if field != "role" else {"role": v}
            cases.append(("headers", f"key: {field} = {json_short(v)}", [("hello",), ("sealed", encode_message("key", h, [m.relin]))]))
    cases.append(("headers", "hello: fields missing", [("raw", encode_message("hello", {}))]))
    for v in ("zz", "00" * 32, 5):
        cases.append(("headers", f"second hello: client_secret = {json_short(v)}",
                      [("hello",), ("sealed", encode_message("hello", _hello(sec, client_secret=v)))]))
    # blobs
    blob_cases = (
        ("public key of another parameter set", "key", {"role": "public"}, [m.pk_other]),
        ("relinearization key of another parameter set", "key", {"role": "relin"}, [m.relin_other]),
        ("ciphertext where a key belongs", "key", {"role": "relin"}, [m.ct1]),
        ("public key as a Galois key", "key", {"role": "galois", "element": 3}, [m.pk]),
        ("two blobs in a key message", "key", {"role": "relin"}, [m.relin, m.relin]),
        ("no blob in a key message", "key", {"role": "relin"}, []),
        ("truncated key blob", "key", {"role": "relin"}, [m.relin[: len(m.relin) // 2]]),
        ("key blob with a flipped byte", "key", {"role": "relin"}, [m.relin[:40] + bytes([m.relin[40] ^ 1]) + m.relin[41:]]),
        ("not CKKS data", "key", {"role": "relin"}, [b"hello world"]),
        ("query ciphertext of another parameter set", "query", {}, [m.ct_other]),
        ("query ciphertext at the wrong level", "query", {}, [m.ct_top]),
        ("query with two ciphertexts", "query", {}, [m.ct1, m.ct1]),
        ("query with no ciphertext", "query", {}, []),
        ("query carrying a key", "query", {}, [m.pk]),
        ("query before the keys", "query", {}, [m.ct1]),
    )
    for name, kind, h, blobs in blob_cases:
        cases.append(("blobs", name, [("hello",), ("sealed", encode_message(kind, h, blobs))]))
    cases.append(("blobs", "relinearization key of another secret key than the public key",
                  [("hello",), ("sealed", encode_message("key", {"role": "public"}, [m.pk])),
                   ("sealed", encode_message("key", {"role": "relin"}, [m.relin_other_key]))]))
    return cases


def json_short(v) -> str:
    s = repr(v)
    return s if len(s) <= 24 else s[:21] + "..."


def judge_reply(reply) -> tuple[str, str]:
    """clean: an error message that is not the server's bug branch; silent: accepted."""
    if reply is None:
        return "silent", "no reply (accepted)"
    kind, header, _ = decode_message(reply)
    if kind != "error":
        return "silent", f"a {kind} reply"
    msg = str(header.get("error", ""))
    return ("traceback" if msg.startswith("server error") else "clean"), msg


def run_session_case(server: Server, steps) -> tuple[str, str]:
    s = server.session()
    secret, key, seq, reply = None, None, 0, None
    for step in steps:
        if step[0] == "hello":
            secret = os.urandom(SECRET_BYTES)
            setup = decode_message(s.handle(encode_message("hello", _hello(secret))), "setup")[1]
            key = session_key(secret, bytes.fromhex(setup["nonce"]))
            continue
        frame = seal(step[1], key, seq) if step[0] == "sealed" else step[1]
        seq += step[0] == "sealed"
        reply = s.handle(frame)
    return judge_reply(reply)


def tcp_cases():
    """(name, send bytes, then 'close' or 'idle'): the server must answer with an error or drop
    the connection, and then answer a valid HELLO on a new connection."""
    return [
        ("length prefix 2^64 - 1", struct.pack("<Q", 2**64 - 1), "idle"),
        ("length prefix one above the limit", None, "idle"),
        ("frame truncated, then closed", struct.pack("<Q", 1000) + b"RFNX", "close"),
        ("garbage instead of a frame", b"GET / HTTP/1.1\r\n\r\n", "idle"),
        ("TLS ClientHello to a plain server", bytes.fromhex("160301002a010000260303") + os.urandom(32), "idle"),
        ("nothing sent (idle)", b"", "idle"),
        ("one byte, then idle", b"\x01", "idle"),
    ]


def run_tcp_cases(server: Server, timeout: float = 1.0) -> list[dict]:
    rows, stop, ready = [], threading.Event(), threading.Event()
    box = {}

    def on_ready(port):
        box["port"] = port
        ready.set()

    th = threading.Thread(target=serve, args=(server, "127.0.0.1", 0), daemon=True,
                          kwargs=dict(out=open(os.devnull, "w"), ready=on_ready, stop=stop, timeout=timeout))
    th.start()
    ready.wait(30)
    port = box["port"]
    try:
        for name, data, then in tcp_cases():
            if data is None:
                data = struct.pack("<Q", server.frame_limit + 1)
            c = socket.create_connection(("127.0.0.1", port))
            c.settimeout(HANG_S)
            outcome, msg = "clean", ""
            try:
                c.sendall(data)
                if then == "close":
                    c.shutdown(socket.SHUT_WR)
                got = b""
                try:
                    while (chunk := c.recv(1 << 16)):
                        got += chunk
                except ConnectionResetError:  # the server closed with our bytes unread: dropped
                    pass
                if len(got) >= 8:
                    (n,) = struct.unpack_from("<Q", got)
                    outcome, msg = judge_reply(got[8:8 + n])
                else:
                    msg = "connection closed"
            except socket.timeout:
                outcome, msg = "hang", f"no answer or close within {HANG_S:g} s"
            finally:
                c.close()
            if outcome == "clean" and not _serves(port):
                outcome, msg = "hang", "the server stopped serving"
            rows.append({"category": "TCP", "name": name, "outcome": outcome, "message": msg})
    finally:
        stop.set()
    return rows


def _serves(port: int) -> bool:
    c = socket.create_connection(("127.0.0.1", port), timeout=HANG_S)
    try:
        f = encode_message("hello", _hello(os.urandom(SECRET_BYTES)))
        c.sendall(struct.pack("<Q", len(f)) + f)
        head = c.recv(8)
        (n,) = struct.unpack("<Q", head)
        data = b""
        while len(data) < n:
            data += c.recv(n - len(data))
        return decode_message(data, ("setup", "progress"))[0] in ("setup", "progress")
    except (OSError, ProtocolError, struct.error):
        return False
    finally:
        c.close()


def run_wire_cases(server: Server | None = None) -> list[dict]:
    server = server or Server(MODEL, PARAMS)
    m = Material()
    rows = []
    for category, name, steps in session_cases(m):
        box = {}

        def target():
            try:
                box["r"] = run_session_case(server, steps)
            except Exception as e:  # noqa: BLE001 -- an exception out of the session is what we count
                box["r"] = ("traceback", f"{type(e).__name__}: {e}")

        th = threading.Thread(target=target, daemon=True)
        th.start()
        th.join(HANG_S)
        outcome, msg = box.get("r", ("hang", f"still running after {HANG_S:g} s"))
        rows.append({"category": category, "name": name, "outcome": outcome, "message": msg})
    return rows + run_tcp_cases(server)
