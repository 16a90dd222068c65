"""The wire format of the NEXUS client/server protocol: frames, their limits, blob kinds, sizes.

Every message is a frame (little endian):
    magic b"RFNX" | version u16 | type u8 | header length u32 | blob count u32 |
    header (UTF-8 JSON) | per blob: length u64, bytes | CRC-32 of all preceding bytes (u32)
and on TCP a u64 length before each frame (refimpl.nexus.protocol.transport). Blobs are
refimpl.ckks.serialize outputs (their own magic, version, kind, parameter fingerprint and CRC).
Anything malformed raises ProtocolError. The frame limits (MAX_FRAME, MAX_HEADER: absolute
ceilings; `frame_limit`: the largest legitimate frame of a parameter set) and the blob kinds the
server accepts (SERVER_KINDS) live here, in one place.

Authentication (ours): after SETUP every client frame is sealed, frame | HMAC-SHA256 tag
(`seal`, `unseal`), under a session key derived from the client's secret and the server's
nonce (`session_key`); the client id is a hash of that secret (`client_id_of`), so only the
holder of the secret can upload keys or query under its id. On TCP the channel is TLS
(refimpl.nexus.protocol.tls), which keeps the secret from eavesdroppers.

The byte-size formulas (`ciphertext_nbytes`, `switching_key_nbytes`, `public_key_nbytes`)
equal the serialized bytes (tested); refimpl.reproduce.nexus extrapolates bandwidth with them.

The frame layout is refimpl's own; the protocol it carries is NEXUS §2 (Zhang et al., NDSS 2025).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import struct
import zlib

import numpy as np

from refimpl.ckks import serialize as ser
from refimpl.ckks.bootstrap.bootstrapper import BOOTSTRAP_PRESETS, bootstrap_parameters, bootstrap_preset
from refimpl.ckks.keys import key_digits, key_rows
from refimpl.errors import UserError


class ProtocolError(UserError):
    """A malformed, unexpected or refused protocol message."""


class AuthenticationError(ProtocolError):
    """A frame whose tag or client id does not verify (ours)."""


MAGIC = b"RFNX"
VERSION = 1
TYPES = {"hello": 1, "setup": 2, "key": 3, "keys_done": 4, "query": 5, "result": 6, "error": 7, "progress": 8}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
FRAME_HEAD = struct.Struct("<4sHBII")  # magic, version, type, header length, blob count
MAX_FRAME = 1 << 36  # absolute ceiling; a party applies frame_limit(params, ...) below it
MAX_HEADER = 1 << 24  # absolute ceiling; the server applies header_limit(max_tokens)
TAG_BYTES = 32  # HMAC-SHA256
SECRET_BYTES = 32
SERVER_KINDS = ("ciphertext", "public_key", "switching_key")  # what the server accepts: no secret key kind exists
# refimpl.ckks.serialize's blob header: magic, version u16, kind u8, parameter fingerprint, key id (8 bytes each)
CKKS_HEAD_BYTES = ser.HEAD.size


def resolve_params(name: str):
    """(Parameters, ResolvedConfig) both parties build from the name a HELLO carries (the primes
    are deterministic; serialized data carries a fingerprint that must match): a bootstrapping
    preset, or deep-2^K-L = N = 2^K with L levels after bootstrapping, dense secret with an
    h = 32 encapsulation (insecure below N = 2^16), as refimpl.nexus.bert's experiments use."""
    if name in BOOTSTRAP_PRESETS:
        return bootstrap_preset(name)
    m = re.fullmatch(r"deep-2\^(\d+)-(\d+)", name)
    if not m or not 4 <= int(m[1]) <= 17:
        raise ProtocolError(f"unknown parameter set {name!r}; known: {', '.join(BOOTSTRAP_PRESETS)}, or deep-2^K-L")
    k = int(m[1])
    return bootstrap_parameters(2**k, levels_after=int(m[2]), encapsulation_h=32, num_p=3, insecure=k < 16)


# ----------------------------------------------------------------------------- frames
def encode_message(kind: str, header: dict, blobs: list[bytes] = ()) -> bytes:
    """One frame: magic, version, type, JSON header, length-prefixed blobs, CRC-32."""
    if kind not in TYPES:
        raise ProtocolError(f"unknown message type {kind!r}")
    h = json.dumps(header, separators=(",", ":"), default=json_default).encode()
    body = FRAME_HEAD.pack(MAGIC, VERSION, TYPES[kind], len(h), len(blobs)) + h
    body += b"".join(struct.pack("<Q", len(b)) + bytes(b) for b in blobs)
    return body + struct.pack("<I", zlib.crc32(body))


def decode_message(data: bytes, expect: str | tuple[str, ...] | None = None,
                   max_header: int = MAX_HEADER) -> tuple[str, dict, list[bytes]]:
    """(type, header, blobs) of a frame; ProtocolError on anything malformed or unexpected."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < FRAME_HEAD.size + 4:
        raise ProtocolError(f"truncated message ({len(data)} bytes, shorter than the {FRAME_HEAD.size + 4}-byte frame)")
    magic, version, t, hlen, nblobs = FRAME_HEAD.unpack_from(data)
    if magic != MAGIC:
        raise ProtocolError(f"not a refimpl NEXUS message (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, this refimpl speaks version {VERSION}")
    if t not in TYPE_NAMES:
        raise ProtocolError(f"unknown message type {t}")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise ProtocolError(f"{TYPE_NAMES[t]} message: checksum mismatch (corrupted or truncated)")
    kind = TYPE_NAMES[t]
    pos, end = FRAME_HEAD.size, len(data) - 4
    if hlen > max_header:
        raise ProtocolError(f"{kind} message: header of {hlen} bytes exceeds the limit {max_header}")
    if pos + hlen > end:
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
    if expect is not None and kind not in ((expect,) if isinstance(expect, str) else expect):
        if kind == "error":
            raise ProtocolError(f"the peer reports: {header.get('error')}")
        raise ProtocolError(f"expected a {expect if isinstance(expect, str) else ' or '.join(expect)} message, got {kind}")
    return kind, header, blobs


# ----------------------------------------------------------------------------- limits (ours)
def header_limit(max_tokens: int) -> int:
    """The largest client header: a HELLO's mask (at most 2 bytes per token) plus 64 KiB of fields."""
    return (1 << 16) + 2 * max_tokens


def frame_limit(params, max_cts: int, header: int = MAX_HEADER) -> int:
    """The largest legitimate frame of a parameter set: a header, then either one key (switching
    key or public key at the top level) or max_cts ciphertexts at the top level."""
    blobs = max(switching_key_nbytes(params), public_key_nbytes(params), max_cts * ciphertext_nbytes(params, params.L))
    return FRAME_HEAD.size + header + 8 * max(1, max_cts) + blobs + 4


# ----------------------------------------------------------------------------- authentication (ours)
def client_id_of(secret: bytes) -> str:
    """The public client id: SHA-256 of the client's secret (hex, 32 characters)."""
    return hashlib.sha256(b"refimpl-nexus client id\0" + bytes(secret)).hexdigest()[:32]


def session_key(secret: bytes, nonce: bytes) -> bytes:
    """The MAC key of one session: HMAC-SHA256(secret, label | server nonce)."""
    return hmac.new(bytes(secret), b"refimpl-nexus session\0" + bytes(nonce), hashlib.sha256).digest()


def seal(frame: bytes, key: bytes, seq: int) -> bytes:
    """frame | HMAC-SHA256(key, seq u64 | frame): the seq-th sealed frame of a session."""
    tag = hmac.new(key, struct.pack("<Q", seq) + bytes(frame), hashlib.sha256).digest()
    return bytes(frame) + tag


def unseal(data: bytes, key: bytes, seq: int) -> bytes:
    """The frame of a sealed message; AuthenticationError if the tag does not verify (forged,
    altered, replayed or reordered)."""
    data = bytes(data)
    if len(data) < TAG_BYTES:
        raise AuthenticationError("an unauthenticated frame (no tag) after the HELLO: refused")
    frame, tag = data[:-TAG_BYTES], data[-TAG_BYTES:]
    want = hmac.new(key, struct.pack("<Q", seq) + frame, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, want):
        raise AuthenticationError("authentication failed: the frame's tag does not verify under this "
                                  "session's key (forged, altered or replayed): refused")
    return frame


def json_default(o):
    """json.dump's fallback for headers and result files: numpy scalars and arrays as numbers, else str."""
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
    return CKKS_HEAD_BYTES + 11 + size * _poly_bytes(params, params.q_basis(level)) + 4


def switching_key_nbytes(params, level: int | None = None) -> int:
    """Serialized size of a switching key for ciphertexts up to `level` (default: the top)."""
    level = params.L if level is None else level
    d = key_digits(params, level)
    return CKKS_HEAD_BYTES + 4 + 8 * d + d * _poly_bytes(params, key_rows(params, level)) + 4


def public_key_nbytes(params) -> int:
    """Serialized size of a public key (a ciphertext at the top level)."""
    return ciphertext_nbytes(params, params.L)
