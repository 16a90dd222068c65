"""The NEXUS client/server protocol: one encrypted query, bytes only between the parties.

    client                                              server
    tokenize, embed (it holds the embedding table)
    HELLO {model, params, n, mask, compress}   ----->
                                               <-----   SETUP {Galois elements, input level, missing keys}
    KEY x k (public key material only)         ----->   (once per client: cached by client id)
    QUERY compressed (or slot-packed) cts      ----->   decompress, encrypted forward, bootstraps
                                               <-----   RESULT cts dropped to level 0
    decrypt, unpack logits, argmax -> label

Non-interactive (NEXUS §2): one round trip per query; the server never holds the secret key.
It receives the public key, the relinearization key, the Galois keys it asks for (the model's
rotations, the bootstrapper's, the Subs elements N/2^i + 1 of decompression) and the two
sparse-secret encapsulation keys of the bootstrapper; `SERVER_KINDS` lists the serialized kinds
it accepts, anything else is refused. n (the token count) and the attention mask are public
(the threat model of NEXUS and freeDiv).

Compression (NEXUS Alg. 5): the client puts the n x d embedded values into the coefficients
of ceil(n d / N) ciphertexts (N values each) instead of the slots of pack_input's layout
(N/2 values each at best); the server expands them into broadcasts and moves each value to
its slots with one plaintext product (one level, no rotation).

Every message is a frame (little endian):
    magic b"RFNX" | version u16 | type u8 | header length u32 | blob count u32 |
    header (UTF-8 JSON) | per blob: length u64, bytes | CRC-32 of all preceding bytes (u32)
and on TCP a u64 length before each frame. Blobs are refimpl.ckks.serialize outputs (their own
magic, version, kind, parameter fingerprint and CRC). Anything malformed raises ProtocolError.
Bandwidth is counted from these bytes (`Ledger`), TCP length prefixes included.

The module is long (about 500 lines) because the two parties, the wire format and the stand-in
model read best side by side.

Reference: NEXUS §2 (system model), §3.1 and Alg. 5 (compression), §6 (bandwidth)
(Zhang et al., NDSS 2025).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import socket
import struct
import sys
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..ckks import Ciphertext, Decryptor, Encoder, Encryptor, EvaluationKeys, Evaluator, KeyGenerator
from ..ckks import serialize as ser
from ..ckks.bootstrap.bootstrapper import BOOTSTRAP_PRESETS, Bootstrapper, bootstrap_preset
from ..ckks.keys import SwitchingKey
from ..ring.sampling import RandomSource
from .compression import decompress, subs_elements
from .levels import with_scale
from .matmul import chunk_counts


class ProtocolError(ValueError):
    """A malformed, unexpected or refused protocol message."""


MAGIC = b"RFNX"
VERSION = 1
TYPES = {"hello": 1, "setup": 2, "key": 3, "keys_done": 4, "query": 5, "result": 6, "error": 7}
_TYPE_NAMES = {v: k for k, v in TYPES.items()}
_HEAD = struct.Struct("<4sHBII")
MAX_FRAME = 1 << 36  # 64 GiB: a larger length prefix is a malformed stream
MAX_HEADER = 1 << 24
SERVER_KINDS = ("ciphertext", "public_key", "switching_key")  # what the server accepts: no secret key kind exists
RANGES_FILE = "nexus_ranges.json"  # the model owner's calibrated ranges, beside a model's weights
CALIBRATION_TOKENS, CALIBRATION_SENTENCES = 16, 200


def resolve_params(name: str):
    """(Parameters, ResolvedConfig) both parties build from a name (the primes are deterministic;
    serialized data carries a fingerprint that must match): a bootstrapping preset, or
    deep-2^K-L = N = 2^K with L levels after bootstrapping, dense secret with an h = 32
    encapsulation (insecure below N = 2^16), as refimpl.nexus.bert's experiments use."""
    if name in BOOTSTRAP_PRESETS:
        return bootstrap_preset(name)
    m = re.fullmatch(r"deep-2\^(\d+)-(\d+)", name)
    if not m or not 4 <= int(m[1]) <= 17:
        raise ProtocolError(f"unknown parameter set {name!r}; known: {', '.join(BOOTSTRAP_PRESETS)}, or deep-2^K-L")
    from ..ckks.bootstrap.bootstrapper import bootstrap_parameters

    k = int(m[1])
    return bootstrap_parameters(2**k, levels_after=int(m[2]), encapsulation_h=32, num_p=3, insecure=k < 16)


# ----------------------------------------------------------------------------- wire format
def encode_message(kind: str, header: dict, blobs: list[bytes] = ()) -> bytes:
    """One frame: magic, version, type, JSON header, length-prefixed blobs, CRC-32."""
    if kind not in TYPES:
        raise ProtocolError(f"unknown message type {kind!r}")
    h = json.dumps(header, separators=(",", ":"), default=_json_default).encode()
    body = _HEAD.pack(MAGIC, VERSION, TYPES[kind], len(h), len(blobs)) + h
    body += b"".join(struct.pack("<Q", len(b)) + bytes(b) for b in blobs)
    return body + struct.pack("<I", zlib.crc32(body))


def decode_message(data: bytes, expect: str | tuple[str, ...] | None = None) -> tuple[str, dict, list[bytes]]:
    """(type, header, blobs) of a frame; ProtocolError on anything malformed or unexpected."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEAD.size + 4:
        raise ProtocolError(f"truncated message ({len(data)} bytes, shorter than the {_HEAD.size + 4}-byte frame)")
    magic, version, t, hlen, nblobs = _HEAD.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError(f"not a refimpl NEXUS message (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, this refimpl speaks version {VERSION}")
    if t not in _TYPE_NAMES:
        raise ProtocolError(f"unknown message type {t}")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise ProtocolError(f"{_TYPE_NAMES[t]} message: checksum mismatch (corrupted or truncated)")
    kind = _TYPE_NAMES[t]
    if expect is not None and kind not in ((expect,) if isinstance(expect, str) else expect):
        if kind == "error":
            raise ProtocolError(f"the peer reports: {json.loads(data[_HEAD.size:_HEAD.size + hlen]).get('error')}")
        raise ProtocolError(f"expected a {expect} message, got {kind}")
    pos, end = _HEAD.size, len(data) - 4
    if hlen > MAX_HEADER or pos + hlen > end:
        raise ProtocolError(f"{kind} message: header length {hlen} exceeds the frame")
    try:
        header = json.loads(data[pos:pos + hlen].decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"{kind} message: header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"{kind} message: header must be a JSON object")
    pos += hlen
    blobs = []
    for i in range(nblobs):
        if pos + 8 > end:
            raise ProtocolError(f"{kind} message: blob {i} of {nblobs} is missing (truncated)")
        (n,) = struct.unpack_from("<Q", data, pos)
        pos += 8
        if pos + n > end:
            raise ProtocolError(f"{kind} message: blob {i} claims {n} bytes, {end - pos} left")
        blobs.append(data[pos:pos + n])
        pos += n
    if pos != end:
        raise ProtocolError(f"{kind} message: {end - pos} unexpected trailing bytes")
    return kind, header, blobs


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def blob_kind(blob: bytes) -> str:
    """The kind byte of a refimpl.ckks.serialize blob (checked again, fully, when deserialized)."""
    if len(blob) < 7 or blob[:4] != ser.MAGIC:
        raise ProtocolError("a blob is not refimpl CKKS data")
    return {v: k for k, v in ser.KINDS.items()}.get(blob[6], f"unknown kind {blob[6]}")


# ----------------------------------------------------------------------------- sizes
def _poly_bytes(params, rows) -> int:
    return (sum(params.ctx.primes[i].bit_length() for i in rows) * params.N + 7) // 8


def ciphertext_nbytes(params, level: int, size: int = 2) -> int:
    """Serialized size of a ciphertext at `level` (the formula of refimpl.ckks.serialize, tested)."""
    return ser._HEAD.size + 11 + size * _poly_bytes(params, params.q_basis(level)) + 4


def switching_key_nbytes(params, level: int | None = None) -> int:
    """Serialized size of a switching key for ciphertexts up to `level` (default: the top)."""
    from ..ckks.keys import key_digits, key_rows

    level = params.L if level is None else level
    d = key_digits(params, level)
    return ser._HEAD.size + 4 + 8 * d + d * _poly_bytes(params, key_rows(params, level)) + 4


def public_key_nbytes(params) -> int:
    return ciphertext_nbytes(params, params.L)


@dataclass
class Ledger:
    """Bytes by direction and purpose, counted from the frames actually sent (TCP prefixes included)."""

    sent: Counter = field(default_factory=Counter)
    received: Counter = field(default_factory=Counter)

    def count(self, direction: str, kind: str, nbytes: int) -> None:
        purpose = {"key": "keys", "keys_done": "keys", "query": "query", "result": "result"}.get(kind, "control")
        (self.sent if direction == "sent" else self.received)[purpose] += nbytes


# ----------------------------------------------------------------------------- transports
class LocalTransport:
    """Client end of an in-process connection: frames go through the server session's `handle`."""

    def __init__(self, session: "ServerSession"):
        self.session, self.inbox = session, []

    def send(self, frame: bytes) -> int:
        reply = self.session.handle(bytes(frame))
        if reply is not None:
            self.inbox.append(reply)
        return len(frame)

    def recv(self) -> bytes:
        if not self.inbox:
            raise ProtocolError("no reply from the server")
        return self.inbox.pop(0)

    def close(self) -> None:
        pass


class TcpTransport:
    """Frames over a TCP socket, each behind a u64 length (counted as part of the bytes)."""

    def __init__(self, sock: socket.socket):
        self.sock = sock

    @classmethod
    def connect(cls, host: str, port: int, timeout: float = 3600.0) -> "TcpTransport":
        sock = socket.create_connection((host, port), timeout=timeout)
        return cls(sock)

    def send(self, frame: bytes) -> int:
        self.sock.sendall(struct.pack("<Q", len(frame)) + frame)
        return len(frame) + 8

    def _exactly(self, n: int) -> bytes | None:
        buf = bytearray()
        while len(buf) < n:
            chunk = self.sock.recv(min(n - len(buf), 1 << 22))
            if not chunk:
                if buf:
                    raise ProtocolError(f"connection closed inside a frame ({len(buf)} of {n} bytes)")
                return None
            buf += chunk
        return bytes(buf)

    def recv(self) -> bytes | None:
        """The next frame, or None when the peer closed the connection between frames."""
        head = self._exactly(8)
        if head is None:
            return None
        (n,) = struct.unpack("<Q", head)
        if n > MAX_FRAME:
            raise ProtocolError(f"frame length {n} exceeds the limit {MAX_FRAME}")
        data = self._exactly(n)
        if data is None:
            raise ProtocolError("connection closed before the frame")
        return data

    def close(self) -> None:
        self.sock.close()


# ----------------------------------------------------------------------------- models
class ToyModel:
    """Stand-in model for fast protocol tests (no paper): per-feature affine, the NEXUS 4-piece
    GELU, a linear classifier over the flattened features; 8 tokens x 8 features.

        logits[c] = sum_{t,j} Wc[c, t d + j] GELU(a[t, j] x[t, j] + b[t, j]) + bc[c]

    Encrypted: one plaintext product (1 level), bootstrap, GELU (18 levels, NEXUS §3.3),
    bootstrap, one masked product and a QuickSum (NEXUS Alg. 7) per class."""

    name, n, d, vocab = "toy", 8, 8, 97
    labels = ("negative", "positive")

    def __init__(self):
        rng = np.random.default_rng(20251123)
        self.E = rng.uniform(-2.0, 2.0, (self.vocab, self.d))
        self.a = rng.uniform(0.5, 1.5, (self.n, self.d))
        self.b = rng.uniform(-1.0, 1.0, (self.n, self.d))
        self.Wc = rng.normal(0.0, 1.0 / np.sqrt(self.n * self.d), (2, self.n * self.d))
        self.bc = np.array([0.05, -0.05])

    @property
    def num_labels(self) -> int:
        return len(self.labels)

    def embed(self, sentence: str) -> tuple[np.ndarray, list[int]]:
        """Client side: words hashed into a fixed table (CRC-32, stable across processes)."""
        words = sentence.lower().split()[: self.n - 1]
        ids = [0] + [1 + zlib.crc32(w.encode()) % (self.vocab - 1) for w in words]
        x = np.zeros((self.n, self.d))
        x[: len(ids)] = self.E[ids]
        return x, [1] * len(ids) + [0] * (self.n - len(ids))

    def layout(self, n: int, slots: int):
        if n != self.n or slots < n * self.d:
            raise ProtocolError(f"the toy model takes n = {self.n} tokens in >= {self.n * self.d} slots")
        return (n, self.d)

    def pack(self, x: np.ndarray, layout) -> list[np.ndarray]:
        return [np.asarray(x, dtype=np.float64).ravel()]

    def rotation_steps(self, n: int, slots: int) -> list[int]:
        from .folding import fold_rotations

        return fold_rotations(n * self.d)

    def plain_logits(self, x: np.ndarray, mask) -> np.ndarray:
        """The float64 model of the encrypted forward (the same GELU approximation)."""
        from .gelu import gelu_plain

        return self.Wc @ gelu_plain(self.a * x + self.b).ravel() + self.bc

    def input_bound(self) -> float:
        return float(np.max(np.abs(self.E)))

    def reference_logits(self, sentence: str) -> dict:
        """Plaintext logits: 'model' (the same GELU approximation) and 'exact' (erf GELU)."""
        from math import erf

        x, mask = self.embed(sentence)
        u = (self.a * x + self.b).ravel()
        exact = u * 0.5 * (1.0 + np.vectorize(erf)(u / np.sqrt(2.0)))
        return {"model": self.plain_logits(x, mask), "exact": self.Wc @ exact + self.bc}

    def forward(self, ev, bts, cts, n, mask, trace=None) -> list[Ciphertext]:
        from .folding import quick_sum
        from .gelu import LEVELS as GELU_LEVELS, gelu
        enc = Encoder(ev.params)
        ct = cts[0]
        t0 = time.perf_counter()
        q = float(ev.params.q[ct.level])
        h = ev.rescale(ev.mul_plain(ct, enc.encode(self.a.ravel(), level=ct.level, scale=q)))  # level l -> l-1
        h = with_scale(h, ct.scale) if abs(h.scale - ct.scale) < 1e-9 * ct.scale else h
        h = ev.add_plain(h, enc.encode(self.b.ravel(), level=h.level, scale=h.scale))
        _trace(trace, "affine", t0, ct, h)
        h = _refresh(h, GELU_LEVELS, bts, "GELU", trace)
        t0 = time.perf_counter()
        g = gelu(ev, h, -6.0, 6.0)  # level 18 -> 0
        _trace(trace, "gelu", t0, h, g)
        g = _refresh(g, 1, bts, "classifier", trace)
        t0 = time.perf_counter()
        outs = []
        for c in range(self.num_labels):
            m = ev.rescale(ev.mul_plain(g, enc.encode(self.Wc[c], level=g.level, scale=float(ev.params.q[g.level]))))
            s = quick_sum(ev, m, n * self.d)  # slot 0: sum over the n d features
            outs.append(ev.add_const(s, float(self.bc[c])))
        _trace(trace, "classifier", t0, g, outs[0])
        return outs

    def unpack(self, vectors: list[np.ndarray], layout) -> np.ndarray:
        return np.array([v[0].real for v in vectors])


def _refresh(ct, need, bts, what, trace):
    """ensure_levels, with the bootstrap (if any) as its own trace entry."""
    from .levels import ensure_levels

    t0 = time.perf_counter()
    out = ensure_levels(ct, need, bts, what)
    if out is not ct:
        _trace(trace, "bootstrap", t0, ct, out)
    return out


def _trace(trace, block, t0, ct_in, ct_out):
    if trace is not None:
        trace.append({"block": block, "seconds": time.perf_counter() - t0,
                      "level_in": ct_in.level, "level_out": ct_out.level})


class NexusBert:
    """A BERT classifier through the encrypted BERT of refimpl.nexus.bert (NEXUS §3-4).

    encode(sentence) -> (ids, mask) is the client's tokenizer; the client also holds the
    embedding table (refimpl.nexus.bert.client_embed says why)."""

    def __init__(self, name: str, config, params: dict, encode, labels=("negative", "positive")):
        from . import bert as nb

        self._nb, self.name, self.config, self.params, self.encode = nb, name, config, params, encode
        self.model = nb.NexusModel(config, params)
        self.labels = tuple(labels)
        self.ranges_source = "refimpl.nexus.bert's own calibration on random tokens"

    def load_ranges(self, path) -> None:
        """The model owner's calibrated ranges (RANGES_FILE, written by `refimpl nexus calibrate`)."""
        from pathlib import Path

        try:
            doc = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ProtocolError(f"{path}: not JSON ({e})") from None
        try:
            self.model.ranges = self._nb.ranges_from_json(doc, self.config)
        except ValueError as e:
            raise ProtocolError(f"{path}: {e}") from None
        self.ranges_source = f"{Path(path).parent.name}/{Path(path).name}: {doc.get('source', '?')}"

    def save_ranges(self, path, source: str) -> None:
        from pathlib import Path

        Path(path).write_text(json.dumps(self._nb.ranges_to_json(self.model.get_ranges(), source), indent=1) + "\n")

    @classmethod
    def shipped(cls, name: str) -> "NexusBert":
        """A shipped SST-2 model (refimpl.bert.shipped)."""
        from ..bert import shipped

        m = shipped.load(name)
        labels = (m.meta or {}).get("labels", ("negative", "positive"))
        out = cls(name, m.config, m.params, lambda s: shipped.encode(m, s), labels)
        if (shipped.model_dir(name) / RANGES_FILE).exists():
            out.load_ranges(shipped.model_dir(name) / RANGES_FILE)
        return out

    @classmethod
    def from_dir(cls, path: str) -> "NexusBert":
        """A model directory in the shipped layout (model.safetensors, config.json, vocab.txt)."""
        from pathlib import Path

        from ..bert import weights
        from ..bert.tokenizer import BertTokenizer

        d = Path(path)
        config, params = weights.load(d, dtype=np.float32)
        tok = BertTokenizer(d / "vocab.txt")

        def encode(s):
            ids, _ = tok.encode(s, max_length=128)
            return np.array(ids, dtype=np.int64), np.ones(len(ids), dtype=np.int64)

        out = cls(d.name, config, params, encode)
        if (d / RANGES_FILE).exists():
            out.load_ranges(d / RANGES_FILE)
        return out

    @property
    def num_labels(self) -> int:
        return self.config.num_labels

    def calibrate(self, sentences, max_tokens: int = CALIBRATION_TOKENS, limit: int = CALIBRATION_SENTENCES) -> int:
        """Server side: the value ranges of the approximations from plaintext sentences
        (refimpl.nexus.bert.calibrate; without it NexusModel calibrates on random tokens)."""
        samples = []
        for s in sentences:
            ids, mask = self.encode(s)
            if len(ids) <= max_tokens:
                samples.append((np.asarray(ids), np.asarray(mask)))
            if len(samples) == limit:
                break
        if not samples:
            raise ProtocolError(f"no calibration sentence has at most {max_tokens} tokens")
        self.model.ranges = self._nb.calibrate(self.model, samples)
        self.ranges_source = f"{len(samples)} sentences of at most {max_tokens} tokens"
        return len(samples)

    def input_bound(self) -> float:
        """|LayerNorm(e)_j| <= sqrt(d - 1) |gamma_j| + |beta_j| for any e (the normalized vector has norm sqrt(d))."""
        g = np.abs(np.asarray(self.params["embeddings.LayerNorm.weight"], dtype=np.float64))
        b = np.abs(np.asarray(self.params["embeddings.LayerNorm.bias"], dtype=np.float64))
        return float(np.max(np.sqrt(self.config.hidden_size - 1) * g + b))

    def reference_logits(self, sentence: str) -> dict:
        """Plaintext logits: 'model' (the encrypted forward's approximations in float64) and 'exact';
        'range_error': None, or which calibrated range the sentence leaves (bert.check_ranges: the
        Softmax bound, LayerNorm variances, GELU inputs, the refreshed streams' bounds); then the
        encrypted result, like 'model', may be far from 'exact'. The server cannot see this; the
        plaintext harness can."""
        ids, mask = self.encode(sentence)
        ref = {ap: self._nb.plaintext_reference(self.model, ids, mask, approximate=ap) for ap in (True, False)}
        try:
            self._nb.check_ranges(self.model, ref[True])
            err = None
        except ValueError as e:
            err = f"{e} (ranges: {self.ranges_source})"
        return {"model": np.asarray(ref[True]["logits"]), "exact": np.asarray(ref[False]["logits"]), "range_error": err}

    def embed(self, sentence: str):
        ids, mask = self.encode(sentence)
        x = self._nb.client_embed(self.config, self.params, ids, mask)
        return np.asarray(x), [int(v) for v in np.asarray(mask).ravel()]

    def layout(self, n, slots):
        return self._nb.input_layout(self.config, n, slots)

    def pack(self, x, layout):
        return [np.asarray(v) for v in self._nb.pack_input(x, layout)]

    def rotation_steps(self, n, slots):
        return list(self._nb.rotation_steps(self.config, n, slots))

    def plan(self, n, params_rc):
        return self._nb.plan(self.model, n, params_rc)

    def forward(self, ev, bts, cts, n, mask, trace=None):
        return self._nb.encrypted_forward(ev, bts, self.model, cts, n, np.asarray(mask), trace=trace)

    def unpack(self, vectors, layout):
        return np.asarray(self._nb.unpack_output(vectors, layout, self.num_labels))


def load_model(name):
    """'toy' (the stand-in above), a shipped model name, a model directory, or a model object (as is)."""
    if not isinstance(name, str):
        return name
    if name == "toy":
        return ToyModel()
    return NexusBert.from_dir(name) if os.path.isdir(name) else NexusBert.shipped(name)


def placement(model, layout, n: int, d: int, slots: int) -> list[list[tuple[int, np.ndarray]]]:
    """For each value x[t, j] (index t d + j): the (ciphertext, 0/1 slot mask) pairs where pack puts it.

    Found by packing the value ids 1..n d and checked on a random x: pack must only place
    values (copies allowed), which is what lets the server rebuild the layout from broadcasts."""
    ids = np.arange(1, n * d + 1, dtype=np.float64).reshape(n, d)
    packed = model.pack(ids, layout)
    where: list[list] = [[] for _ in range(n * d)]
    for k, v in enumerate(packed):
        v = np.asarray(v).real
        for i in np.unique(v[v != 0]):
            if i != round(i) or not 1 <= i <= n * d:
                raise ProtocolError("pack_input is not a placement of values: use --no-compress")
            where[int(i) - 1].append((k, (v == i).astype(np.float64)))
    x = np.random.default_rng(0).normal(size=(n, d))
    rebuilt = [np.zeros(slots) for _ in packed]
    for i, places in enumerate(where):
        for k, m in places:
            rebuilt[k][: m.size] += x.flat[i] * m
    for k, v in enumerate(model.pack(x, layout)):
        if not np.allclose(rebuilt[k][: len(v)], np.asarray(v).real):
            raise ProtocolError("pack_input is not a placement of values: use --no-compress")
    return where


# ----------------------------------------------------------------------------- server
@dataclass
class _ClientKeys:
    """What the server holds for one client: public key material only."""

    public: object = None
    relin: SwitchingKey | None = None
    galois: dict = field(default_factory=dict)
    enc_down: SwitchingKey | None = None
    enc_up: SwitchingKey | None = None
    key_bytes: int = 0
    evaluator: object = None
    bootstrapper: object = None


def key_levels(boot_levels: dict, model_elements, subs_elements_, out_level: int, compressed_level: int) -> dict[int, int]:
    """Galois element -> the level its key must cover: bootstrapping's own levels, the model's
    rotations at the bootstrapping output level, decompression at the compressed level (an
    element used by several gets the highest)."""
    levels = dict(boot_levels)
    for ks, lv in ((model_elements, out_level), (subs_elements_, compressed_level)):
        for k in ks:
            levels[k] = max(levels.get(k, -1), lv)
    return dict(sorted(levels.items()))


class Server:
    """The NEXUS server: one model, one bootstrapping parameter set, keys cached per client id."""

    def __init__(self, model: str = "toy", params: str = "toy-2^10-deep", record_dir: str | None = None,
                 log=None, expand: str = "bootstrap"):
        """expand: how compressed input reaches the forward's input level. "direct": the client
        encrypts one level above it and the server decompresses there (all levels: slow Subs,
        large query); "bootstrap": the client encrypts at level 1, the server decompresses on two
        limbs, places the values scaled by 1/B (B a public power of two bounding |x|), bootstraps
        each input ciphertext and multiplies by B (an integer: no level)."""
        if expand not in ("bootstrap", "direct"):
            raise ProtocolError(f"expand must be 'bootstrap' or 'direct', got {expand!r}")
        self.expand = expand
        self.params, self.rc = resolve_params(params)
        self.model = load_model(model)
        self.model_name, self.params_name = self.model.name, params
        self.boot_levels = Bootstrapper(Evaluator(self.params), self.rc).galois_levels()
        self.boot_elements = sorted(self.boot_levels)
        self.output_level = self.params.L - self.rc.depth
        self.compressed_level = 1 if expand == "bootstrap" else self.output_level + 1
        self.clients: dict[str, _ClientKeys] = {}
        self.record_dir = record_dir
        self.received = 0
        self.log = log or (lambda *a: None)
        if record_dir:
            os.makedirs(record_dir, exist_ok=True)

    def session(self) -> "ServerSession":
        return ServerSession(self)

    def needed_levels(self, n: int, compress: bool) -> dict[int, int]:
        """Galois element -> the highest level it is applied at, so that each key covers only
        Q_level P: the model's rotations run at or below the bootstrapping output level,
        decompression at the compressed level, bootstrapping at its own (galois_levels)."""
        from ..ckks.keys import galois_element

        p = self.params
        model = {galois_element(p, r) for r in self.model.rotation_steps(n, p.slots) if r % p.slots}
        subs = set(subs_elements(p.N, max(chunk_counts(n * self._width(), p.N)))) if compress else set()
        return key_levels(self.boot_levels, model, subs, self.output_level, self.compressed_level)

    def needed_elements(self, n: int, compress: bool) -> list[int]:
        return list(self.needed_levels(n, compress))

    def input_bound(self) -> int:
        """B: a public power of two with |x| <= B for every embedded input (from the model, never the data)."""
        b = float(self.model.input_bound())
        return 1 << max(0, int(np.ceil(np.log2(b))))

    def _width(self) -> int:
        return self.model.d if isinstance(self.model, ToyModel) else self.model.config.hidden_size


class ServerSession:
    """One connection: a state machine from frames to reply frames (None: no reply)."""

    def __init__(self, server: Server):
        self.s = server
        self.query: dict | None = None

    def handle(self, frame: bytes) -> bytes | None:
        s = self.s
        s.received += 1
        try:
            kind, header, blobs = decode_message(frame)
            if s.record_dir:
                with open(os.path.join(s.record_dir, f"{s.received:05d}_{kind}.bin"), "wb") as f:
                    f.write(frame)
            return getattr(self, "_" + kind)(header, blobs)
        except Exception as e:  # every failure goes back to the client as an error message
            s.log(f"error: {type(e).__name__}: {e}")
            return encode_message("error", {"error": f"{type(e).__name__}: {e}"})

    def _keys(self, header) -> _ClientKeys:
        cid = header.get("client_id")
        if not isinstance(cid, str) or not cid:
            raise ProtocolError("message without a client id")
        return self.s.clients.setdefault(cid, _ClientKeys())

    def _hello(self, header, blobs):
        s, p = self.s, self.s.params
        if header.get("model") != s.model_name or header.get("params") != s.params_name:
            raise ProtocolError(f"this server runs model {s.model_name!r} with parameters {s.params_name!r}, "
                                f"the client asked for {header.get('model')!r} with {header.get('params')!r}")
        n, compress = int(header["n"]), bool(header.get("compress", True))
        keys = self._keys(header)
        need = s.needed_levels(n, compress)
        self.hello = dict(n=n, compress=compress, mask=[int(v) for v in header["mask"]], elements=need)
        missing = [k for k, ok in (("public", keys.public), ("relin", keys.relin),
                                   ("encapsulation", keys.enc_up or not s.rc.encapsulation_h)) if not ok]
        width = s._width()
        plan = s.model.plan(n, (p, s.rc)) if hasattr(s.model, "plan") else None
        if plan is not None:
            s.log(f"plan for n = {n}:\n" + s.model._nb.plan_table(plan))
        return encode_message("setup", {
            "galois_elements": list(need), "galois_levels": [[g, lv] for g, lv in need.items()],
            "missing_galois": [g for g, lv in need.items() if g not in keys.galois or keys.galois[g].level < lv],
            "missing": missing, "input_level": s.output_level, "compressed_level": s.compressed_level,
            "chunks": chunk_counts(n * width, p.N), "width": width, "slots": p.slots,
            "encapsulation_h": s.rc.encapsulation_h, "security": p.security_note,
            "plan": plan,
        })

    def _key(self, header, blobs):
        keys, p = self._keys(header), self.s.params
        role = header.get("role")
        if len(blobs) != 1:
            raise ProtocolError(f"a key message carries one blob, got {len(blobs)}")
        kind = blob_kind(blobs[0])
        want = "public_key" if role == "public" else "switching_key"
        if kind not in SERVER_KINDS or kind != want:
            raise ProtocolError(f"refused a {kind} blob for role {role!r}: the server takes only public key material")
        keys.key_bytes += len(blobs[0])
        if role == "public":
            keys.public = ser.deserialize_public_key(blobs[0], p)
            return None
        k = ser.deserialize_switching_key(blobs[0], p)
        if p.N >= 2**15:  # keep b and the seeds only (the PRG re-expands a at each use)
            k = SwitchingKey(k.b, k.a_seeds, p, expand=False, level=k.level)
        if role == "relin":
            keys.relin = k
        elif role == "galois":
            g = int(header["element"])
            if g % 2 == 0 or not 0 < g < 2 * p.N:
                raise ProtocolError(f"invalid Galois element {g}")
            keys.galois[g] = k
        elif role in ("enc_down", "enc_up"):
            setattr(keys, role, k)
        else:
            raise ProtocolError(f"unknown key role {role!r}")
        keys.evaluator = keys.bootstrapper = None  # rebuilt with the new key
        return None

    def _keys_done(self, header, blobs):
        return None

    def _query(self, header, blobs):
        from .counting import CountingBootstrapper

        s, p = self.s, self.s.params
        if getattr(self, "hello", None) is None:
            raise ProtocolError("query before hello")
        keys, h = self._keys(header), self.hello
        for b in blobs:
            if blob_kind(b) != "ciphertext":
                raise ProtocolError(f"a query carries ciphertexts only, got a {blob_kind(b)}")
        absent = [g for g, lv in h["elements"].items() if g not in keys.galois or keys.galois[g].level < lv]
        if keys.relin is None or absent or (s.rc.encapsulation_h and keys.enc_up is None):
            raise ProtocolError(f"keys missing for this query (relinearization or Galois elements {absent[:5]})")
        if keys.evaluator is None:
            keys.evaluator = Evaluator(p, EvaluationKeys(relin=keys.relin, galois=keys.galois))
            enc = (keys.enc_down, keys.enc_up) if s.rc.encapsulation_h else None
            keys.bootstrapper = Bootstrapper(keys.evaluator, s.rc, encapsulation=enc)
        ev = keys.evaluator
        cts = [ser.deserialize_ciphertext(b, p) for b in blobs]
        n, layout = h["n"], s.model.layout(h["n"], p.slots)
        t0 = time.perf_counter()
        boot_in = CountingBootstrapper(keys.bootstrapper)
        if h["compress"]:
            cts = self._expand(ev, cts, layout, n, boot_in)
        elif any(c.level != s.output_level for c in cts):
            raise ProtocolError(f"query ciphertexts must be at level {s.output_level}")
        t1 = time.perf_counter()
        bts, trace = CountingBootstrapper(keys.bootstrapper), []
        out = s.model.forward(ev, bts, cts, n, h["mask"], trace=trace)
        t2 = time.perf_counter()
        computed = sum(ciphertext_nbytes(p, c.level, c.size) for c in out)
        out_blobs = [ser.serialize_ciphertext(ev.drop_level(c, 0)) for c in out]  # level 0: least bytes
        s.log(f"query n = {n}: expand {t1 - t0:.2f} s, forward {t2 - t1:.2f} s, {bts.calls} bootstraps")
        return encode_message("result", {
            "expand_s": t1 - t0, "forward_s": t2 - t1, "bootstraps": bts.calls, "trace": trace,
            "input_bootstraps": boot_in.calls, "expand_mode": s.expand if h["compress"] else None,
            "levels_out": [c.level for c in out], "result_bytes_at_computed_level": computed,
            "key_bytes_held": keys.key_bytes,
        }, out_blobs)

    def _expand(self, ev, cts, layout, n, bts=None) -> list[Ciphertext]:
        """Compressed input -> the model's slot layout at the forward's input level: decompress
        (NEXUS Alg. 5), each broadcast x[t, j] times its slot mask, summed per output ciphertext
        (1 level); in "bootstrap" mode the masks carry 1/B and each sum is bootstrapped, then
        multiplied by the integer B."""
        s, p = self.s, self.s.params
        width = s._width()
        chunks = chunk_counts(n * width, p.N)
        lvl = s.compressed_level
        if len(cts) != len(chunks) or any(c.level != lvl for c in cts):
            raise ProtocolError(f"a compressed query has {len(chunks)} ciphertexts at level {lvl}")
        B = s.input_bound() if s.expand == "bootstrap" else 1
        where = placement(s.model, layout, n, width, p.slots)
        enc = Encoder(p)
        acc: dict[int, Ciphertext] = {}
        for c, (ct, size) in enumerate(zip(cts, chunks)):
            def consume(j, leaf, base=c * p.N):
                if base + j >= n * width:
                    return
                for k, m in where[base + j]:
                    scale = p.scale * float(p.q[lvl]) / leaf.scale  # after rescale: exactly Delta
                    term = ev.mul_plain(leaf, enc.encode(m / B, level=lvl, scale=scale))
                    term = Ciphertext(term.c, lvl, p.scale * float(p.q[lvl]), p)
                    acc[k] = term if k not in acc else ev.add(acc[k], term)
            decompress(ev, ct, consume, size)
        K = len(s.model.pack(np.zeros((n, width)), layout))
        missing = [k for k in range(K) if k not in acc]
        if missing:
            raise ProtocolError(f"no input value lands in ciphertexts {missing} of the layout")
        out = [with_scale(ev.rescale(acc[k]), p.scale) for k in range(K)]  # level l -> l-1, scale Delta
        if s.expand == "bootstrap":
            out = [ev.mul_int(bts.bootstrap(c), B) for c in out]  # x / B at level 0 -> x at the output level
        return out


# ----------------------------------------------------------------------------- client
class Client:
    """The NEXUS client: holds the secret key and the embedding table, sends bytes only."""

    def __init__(self, transport, model: str = "toy", params: str = "toy-2^10-deep", compress: bool = True,
                 seed: int | None = None):
        self.params, self.rc = resolve_params(params)
        self.model = load_model(model)
        self.t, self.model_name, self.params_name, self.compress = transport, self.model.name, params, compress
        t0 = time.perf_counter()
        self.kg = KeyGenerator(self.params, RandomSource(seed), expand_keys=False)  # keys are sent, not kept
        self.sk = self.kg.secret_key()  # never leaves this object
        self.pk = self.kg.public_key(self.sk)
        self.keygen_s = time.perf_counter() - t0
        self.client_id = secrets.token_hex(8)
        self.enc, self.encryptor = Encoder(self.params), Encryptor(self.pk, RandomSource(None if seed is None else seed + 1))
        self.decryptor = Decryptor(self.sk)
        self.ledger = Ledger()
        self.overhead = 8 if isinstance(transport, TcpTransport) else 0

    def _send(self, kind: str, header: dict, blobs=()) -> None:
        n = self.t.send(encode_message(kind, {"client_id": self.client_id, **header}, list(blobs)))
        self.ledger.count("sent", kind, n)

    def _recv(self, expect: str):
        frame = self.t.recv()
        if frame is None:
            raise ProtocolError("the server closed the connection")
        kind, header, blobs = decode_message(frame, expect)
        self.ledger.count("received", kind, len(frame) + self.overhead)
        return header, blobs

    def _send_keys(self, setup: dict) -> None:
        """Public key material the server lacks, one key per message (the client keeps none)."""
        p, kg, sk = self.params, self.kg, self.sk
        t0 = time.perf_counter()
        for g in setup["missing_galois"]:
            if g % 2 == 0 or not 0 < g < 2 * p.N:
                raise ProtocolError(f"the server asked for an invalid Galois element {g}")
        if "public" in setup["missing"]:
            self._send("key", {"role": "public"}, [ser.serialize_public_key(self.pk)])
        if "relin" in setup["missing"]:
            self._send("key", {"role": "relin"}, [ser.serialize_switching_key(kg.relin_key(sk))])
        if "encapsulation" in setup["missing"]:
            down, up = kg.encapsulation_keys(sk, kg.secret_key(hamming_weight=self.rc.encapsulation_h))
            self._send("key", {"role": "enc_down"}, [ser.serialize_switching_key(down)])
            self._send("key", {"role": "enc_up"}, [ser.serialize_switching_key(up)])
        levels = {int(g): int(lv) for g, lv in setup.get("galois_levels", [])}
        for g in setup["missing_galois"]:
            key = kg.galois_key(sk, g, levels.get(g))  # over Q_level P only: the level the server applies it at
            self._send("key", {"role": "galois", "element": g}, [ser.serialize_switching_key(key)])
        self._send("keys_done", {})
        self.keygen_s += time.perf_counter() - t0

    def _encrypt_query(self, x: np.ndarray, layout, setup: dict) -> tuple[list[bytes], list[bytes]]:
        """(compressed blobs, slot-packed blobs): both are built so that both sizes are real bytes."""
        p = self.params
        flat = np.asarray(x, dtype=np.float64).ravel()
        comp = []
        for c, size in enumerate(setup["chunks"]):
            scale = p.scale / np.sqrt(size)  # leaves land at sqrt(size) Delta: both roundings ~2^-(40 - log2(size)/2)
            pt = self.enc.encode_coeffs(flat[c * p.N:(c + 1) * p.N], level=setup["compressed_level"], scale=scale)
            comp.append(ser.serialize_ciphertext(self.encryptor.encrypt(pt)))
        packed = [ser.serialize_ciphertext(self.encryptor.encrypt(self.enc.encode(v, level=setup["input_level"])))
                  for v in self.model.pack(x, layout)]
        return comp, packed

    def classify(self, sentence: str) -> dict:
        """One encrypted query: the label, the logits, bytes and seconds."""
        t_start = time.perf_counter()
        before = Counter(self.ledger.sent), Counter(self.ledger.received)
        x, mask = self.model.embed(sentence)  # the client holds the embedding table
        n = x.shape[0]
        self._send("hello", {"model": self.model_name, "params": self.params_name, "n": n, "mask": mask,
                             "compress": self.compress})
        setup, _ = self._recv("setup")
        keygen_before = self.keygen_s
        self._send_keys(setup)
        t0 = time.perf_counter()
        layout = self.model.layout(n, self.params.slots)
        comp, packed = self._encrypt_query(x, layout, setup)
        t1 = time.perf_counter()
        self._send("query", {"compressed": self.compress}, comp if self.compress else packed)
        result, blobs = self._recv("result")
        t2 = time.perf_counter()
        vectors = [self.enc.decode(self.decryptor.decrypt(ser.deserialize_ciphertext(b, self.params))).real
                   for b in blobs]
        logits = np.asarray(self.model.unpack(vectors, layout), dtype=np.float64)
        t3 = time.perf_counter()
        sent = self.ledger.sent - before[0]
        recv = self.ledger.received - before[1]
        return {
            "sentence": sentence, "n": n, "label": self.model.labels[int(np.argmax(logits))],
            "logits": logits.tolist(), "compressed": self.compress,
            "bytes": {
                "keys": sent["keys"], "query": sent["query"], "result": recv["result"],
                "control": sent["control"] + recv["control"],
                "query_compressed": sum(map(len, comp)), "query_uncompressed": sum(map(len, packed)),
                "query_cts_compressed": len(comp), "query_cts_uncompressed": len(packed),
                "result_at_computed_level": result["result_bytes_at_computed_level"],
            },
            "seconds": {"keygen": self.keygen_s - keygen_before, "encrypt": t1 - t0,
                        "server_expand": result["expand_s"], "server_forward": result["forward_s"],
                        "round_trip": t2 - t1, "decrypt": t3 - t2, "total": t3 - t_start},
            "bootstraps": result["bootstraps"], "input_bootstraps": result["input_bootstraps"],
            "expand_mode": result["expand_mode"], "trace": result["trace"], "plan": setup.get("plan"),
            "security": setup["security"],
        }


# ----------------------------------------------------------------------------- command line
DEFAULT_MODEL = "sst2-small-softmax-gelu"
DEFAULT_PARAMS = "128-2^16-dense"


def serve(server: Server, host: str, port: int, max_connections: int = 0, out=sys.stdout) -> None:
    """Accept connections one at a time (the evaluation uses every core) until max_connections."""
    with socket.create_server((host, port)) as lsock:
        print(f"listening on {host}:{lsock.getsockname()[1]}", file=out, flush=True)
        served = 0
        while not max_connections or served < max_connections:
            conn, _ = lsock.accept()
            t = TcpTransport(conn)
            session = server.session()
            try:
                while (frame := t.recv()) is not None:
                    reply = session.handle(frame)
                    if reply is not None:
                        t.send(reply)
            except (ProtocolError, OSError) as e:
                print(f"connection dropped: {e}", file=out, flush=True)
            finally:
                t.close()
            served += 1


def tsv_sentences(path) -> list[str]:
    """The first column of a GLUE single-sentence TSV (header skipped): calibration text."""
    with open(path) as f:
        return [ln.split("\t")[0] for ln in f.read().splitlines()[1:]]


def _calibrate_cli(args) -> int:
    """refimpl nexus calibrate: the model owner's ranges from plaintext sentences, saved beside the model."""
    from pathlib import Path

    model = load_model(args.model)
    if not hasattr(model, "calibrate"):
        print("refimpl nexus calibrate: applies to BERT models only", file=sys.stderr)
        return 2
    k = model.calibrate(tsv_sentences(args.calibrate_tsv))
    if args.out:
        out = Path(args.out)
    elif os.path.isdir(args.model):
        out = Path(args.model) / RANGES_FILE
    else:
        from ..bert import shipped

        out = shipped.model_dir(args.model) / RANGES_FILE
    model.save_ranges(out, f"the first {k} sentences of at most {CALIBRATION_TOKENS} tokens of "
                           f"{Path(args.calibrate_tsv).parent.name}/{Path(args.calibrate_tsv).name}, "
                           f"refimpl.nexus.bert.calibrate with its margins")
    print(f"{out}: ranges of {args.model} from {k} sentences of {args.calibrate_tsv}")
    return 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="refimpl nexus", description="NEXUS client and server as two processes")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("serve", "query", "calibrate"):
        a = sub.add_parser(name)
        if name != "calibrate":
            a.add_argument("--port", type=int, required=(name == "query"), default=0)
            a.add_argument("--host", default="127.0.0.1")
            a.add_argument("--params", default=DEFAULT_PARAMS,
                           help=f"bootstrapping preset ({', '.join(BOOTSTRAP_PRESETS)}) or deep-2^K-L")
        a.add_argument("--model", default=DEFAULT_MODEL, help="a shipped model name, or 'toy' (protocol stand-in)")
    s, q, c = sub.choices["serve"], sub.choices["query"], sub.choices["calibrate"]
    c.add_argument("--calibrate-tsv", required=True, help="SST-2 TSV (e.g. glue/SST-2/train.tsv): the ranges of the "
                   f"first {CALIBRATION_SENTENCES} sentences of at most {CALIBRATION_TOKENS} tokens, with margins")
    c.add_argument("--out", help=f"default: {RANGES_FILE} in the shipped model's directory (read by serve and the demo)")
    s.add_argument("--record-dir", help="write every received frame here (what the server sees)")
    s.add_argument("--max-connections", type=int, default=0, help="exit after this many connections (0: never)")
    s.add_argument("--expand", choices=("bootstrap", "direct"), default="bootstrap",
                   help="compressed input: at level 1 then bootstrapped (default), or one level above the input level")
    s.add_argument("--calibrate-tsv", help="calibrate the value ranges on the first 200 short sentences of this "
                   f"SST-2 TSV (e.g. glue/SST-2/train.tsv); default: the model's {RANGES_FILE} (`refimpl nexus "
                   "calibrate`), else refimpl.nexus.bert's own calibration on random tokens")
    q.add_argument("--sentence", action="append", required=True, help="repeat for several sentences")
    q.add_argument("--no-compress", action="store_true", help="send slot-packed ciphertexts instead of compressed ones")
    q.add_argument("--seed", type=int, default=None, help="key and encryption randomness (default: OS entropy)")
    q.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if args.cmd == "calibrate":
        return _calibrate_cli(args)
    try:
        params, _ = resolve_params(args.params)
    except ProtocolError as e:
        print(f"refimpl nexus: {e}", file=sys.stderr)
        return 2
    if params.security_bits < 128:
        print(f"INSECURE parameters ({args.params}): {params.security_note}", flush=True)
    if args.cmd == "serve":
        server = Server(args.model, args.params, args.record_dir, log=lambda m: print(m, flush=True), expand=args.expand)
        if args.calibrate_tsv:
            if not hasattr(server.model, "calibrate"):
                print("refimpl nexus serve: --calibrate-tsv applies to BERT models only", file=sys.stderr)
                return 2
            k = server.model.calibrate(tsv_sentences(args.calibrate_tsv))
            print(f"calibrated the ranges on {k} sentences of {args.calibrate_tsv}", flush=True)
        print(f"model {args.model}, parameters {args.params}: {params.security_note}", flush=True)
        serve(server, args.host, args.port, args.max_connections)
        return 0
    try:
        t = TcpTransport.connect(args.host, args.port)
    except OSError as e:
        print(f"refimpl nexus query: cannot reach a server at {args.host}:{args.port} ({e})", file=sys.stderr)
        return 1
    client = Client(t, args.model, args.params, compress=not args.no_compress, seed=args.seed)
    results = []
    try:
        for sentence in args.sentence:
            r = client.classify(sentence)
            results.append(r)
            b = r["bytes"]
            print(f"{r['label']}\t{json.dumps([round(v, 4) for v in r['logits']])}\t{sentence}", flush=True)
            print(f"  bytes: keys {b['keys']:,} (once per client), query {b['query']:,} "
                  f"(compressed {b['query_compressed']:,} / slot-packed {b['query_uncompressed']:,}), "
                  f"result {b['result']:,}; {r['bootstraps']} bootstraps, {r['seconds']['total']:.1f} s", flush=True)
    except ProtocolError as e:
        print(f"refimpl nexus query: {e}", file=sys.stderr)
        return 1
    finally:
        t.close()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=_json_default)
    return 0
