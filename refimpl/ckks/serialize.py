"""Serialization of plaintexts, ciphertexts and keys to bytes (what bandwidth is counted in).

Layout (little endian):
    magic b"RFCK" | version u16 | kind u8 | parameter fingerprint 8 bytes | key id 8 bytes |
    kind header | payload | CRC-32 of all preceding bytes (u32)
The key id (ours; refimpl.ckks.keys, "Key ids") names the secret key of a ciphertext, a public key
or the secret a switching key switches to; zero bytes: none (plaintexts, objects built by hand).
Other format versions are refused with the version found (version 2 carried no key id).
Residues mod q_i are bit-packed to bitlen(q_i) bits each (a 40-bit prime costs 5 bytes per
coefficient, not 8). Switching keys carry their level, b_j over Q_level P and the 64-bit seeds of
a_j (the receiver expands a_j), as SEAL does. Anything malformed, truncated, corrupted, of another kind or of another
parameter set raises SerializationError saying which; so does anything the encoder and the
evaluator never produce (a scale outside [1, Q_level / 2), a flag byte other than 0 / 1, a
Galois element repeated or even).
"""

from __future__ import annotations

import struct
import zlib

import numba as nb
import numpy as np

from .ciphertext import Ciphertext, Plaintext
from .checks import check_scale
from .errors import ScaleRangeError, SerializationError
from .keys import EvaluationKeys, PublicKey, SwitchingKey, key_digits, key_rows
from .params import Parameters

MAGIC = b"RFCK"
VERSION = 3  # 2: switching keys carry their level (rows q_0..q_level and P); 3: the key id
KINDS = {"plaintext": 1, "ciphertext": 2, "public_key": 3, "switching_key": 4, "evaluation_keys": 5}
HEAD = struct.Struct("<4sHB8s8s")  # magic, version, kind, the parameters' fingerprint, the key id
NO_KEY = bytes(8)  # the key id field of an object without one


@nb.njit(cache=True)
def _pack(a, bits):
    """Rows of a (uint64 [L, N]) at bits[l] bits each, into one little-endian bit stream."""
    L, N = a.shape
    total = 0
    for l in range(L):
        total += bits[l] * N
    out = np.zeros((total + 7) // 8 + 8, dtype=np.uint8)
    pos = 0
    for l in range(L):
        b = bits[l]
        for n in range(N):
            v = a[l, n]
            byte = pos >> 3
            off = pos & 7
            # write b bits of v starting at bit offset `off` of `byte`
            acc = v << np.uint64(off)
            k = 0
            written = 0
            while written < b + off:
                out[byte + k] |= np.uint8(acc & np.uint64(0xFF))
                acc >>= np.uint64(8)
                if k == 7 and off > 0:
                    acc = v >> np.uint64(64 - off)
                k += 1
                written += 8
            pos += b
    return out[: (total + 7) // 8]


@nb.njit(cache=True)
def _unpack(buf, bits, N):
    L = bits.shape[0]
    out = np.zeros((L, N), dtype=np.uint64)
    pos = 0
    for l in range(L):
        b = bits[l]
        mask = (np.uint64(1) << np.uint64(b)) - np.uint64(1)
        for n in range(N):
            byte = pos >> 3
            off = pos & 7
            v = np.uint64(0)
            need = (b + off + 7) >> 3
            for k in range(need):
                if k < 8:
                    v |= np.uint64(buf[byte + k]) << np.uint64(8 * k)
            v >>= np.uint64(off)
            if need > 8:
                v |= np.uint64(buf[byte + 8]) << np.uint64(64 - off)
            out[l, n] = v & mask
            pos += b
    return out


def _bits(params: Parameters, rows) -> np.ndarray:
    return np.array([params.ctx.primes[i].bit_length() for i in rows], dtype=np.int64)


def _pack_rows(params: Parameters, a: np.ndarray, rows) -> bytes:
    return _pack(np.ascontiguousarray(a), _bits(params, rows)).tobytes()


def _packed_len(params: Parameters, rows) -> int:
    return (int(_bits(params, rows).sum()) * params.N + 7) // 8


def _unpack_rows(params: Parameters, buf: memoryview, rows, what: str) -> np.ndarray:
    bits = _bits(params, rows)
    a = _unpack(np.frombuffer(buf, dtype=np.uint8), bits, params.N)
    q = params.ctx.q[list(rows)]
    if np.any(a >= q[:, None]):
        raise SerializationError(f"{what}: a residue is not below its prime (malformed data)")
    return a


class _Reader:
    def __init__(self, data: bytes, what: str):
        self.data = memoryview(data)
        self.pos = 0
        self.what = what
        self.key_id: bytes | None = None  # from the header (None: no key)

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise SerializationError(
                f"{self.what}: truncated data ({len(self.data) + 4} bytes, needed at least {self.pos + n + 4})"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        s = struct.Struct(fmt)
        return s.unpack(self.take(s.size))


def _wrap(kind: str, params: Parameters, body: bytes, key_id: bytes | None = None) -> bytes:
    head = HEAD.pack(MAGIC, VERSION, KINDS[kind], params.fingerprint(), key_id or NO_KEY)
    data = head + body
    return data + struct.pack("<I", zlib.crc32(data))


def _open(data: bytes, kind: str, params: Parameters) -> _Reader:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise SerializationError(f"{kind}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < HEAD.size + 4:
        raise SerializationError(f"{kind}: truncated data ({len(data)} bytes is shorter than the header)")
    magic, version, k, fp, key_id = HEAD.unpack_from(data)
    if magic != MAGIC:
        raise SerializationError(f"{kind}: not refimpl CKKS data (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise SerializationError(f"{kind}: format version {version}, this refimpl reads version {VERSION} only "
                                 "(version 2 carried no key id): serialize it again with this refimpl")
    if k != KINDS[kind]:
        found = {v: n for n, v in KINDS.items()}.get(k, f"unknown kind {k}")
        raise SerializationError(f"expected a serialized {kind}, got a {found}")
    if fp != params.fingerprint():
        raise SerializationError(f"{kind}: serialized under other parameters (fingerprint {fp.hex()} != {params.fingerprint().hex()})")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) != crc:
        raise SerializationError(f"{kind}: checksum mismatch (corrupted or truncated data)")
    r = _Reader(data[:-4], kind)
    r.pos = HEAD.size
    r.key_id = None if key_id == NO_KEY else key_id
    return r


def _done(r: _Reader) -> None:
    if r.pos != len(r.data):
        raise SerializationError(f"{r.what}: {len(r.data) - r.pos} unexpected trailing bytes")


# ----------------------------------------------------------------------------- ciphertexts
def _poly_body(params, polys, level, scale) -> bytes:
    rows = params.q_basis(level)
    head = struct.pack("<HBd", level, len(polys), scale)
    return head + b"".join(_pack_rows(params, c, rows) for c in polys)


def _read_polys(r: _Reader, params: Parameters, what: str, sizes: tuple[int, ...], unit_scale: bool = False):
    """Level, component count and scale, checked before any data is read: what the encoder and
    the evaluator can produce (a scale in [SCALE_FLOOR, Q_level / 2); keys: scale 1)."""
    level, size, scale = r.unpack("<HBd")
    if level > params.L:
        raise SerializationError(f"{what}: level {level} above the top level {params.L}")
    if size not in sizes:
        raise SerializationError(f"{what}: {size} components, expected {' or '.join(map(str, sizes))}")
    if unit_scale:
        if scale != 1.0:
            raise SerializationError(f"{what}: scale {scale!r}, a key is stored at scale 1")
    else:
        try:
            check_scale(params, scale, level, what)
        except ScaleRangeError as e:
            raise SerializationError(f"{what}: a scale no encoder or evaluator produces ({e})") from None
    rows = params.q_basis(level)
    n = _packed_len(params, rows)
    polys = tuple(_unpack_rows(params, r.take(n), rows, what) for _ in range(size))
    return polys, level, scale


def serialize_ciphertext(ct: Ciphertext) -> bytes:
    return _wrap("ciphertext", ct.params, _poly_body(ct.params, ct.c, ct.level, ct.scale), ct.key_id)


def deserialize_ciphertext(data: bytes, params: Parameters) -> Ciphertext:
    r = _open(data, "ciphertext", params)
    polys, level, scale = _read_polys(r, params, "ciphertext", (2, 3))
    _done(r)
    return Ciphertext(polys, level, scale, params, r.key_id)


def serialize_plaintext(pt: Plaintext) -> bytes:
    return _wrap("plaintext", pt.params, _poly_body(pt.params, (pt.poly,), pt.level, pt.scale))


def deserialize_plaintext(data: bytes, params: Parameters) -> Plaintext:
    r = _open(data, "plaintext", params)
    polys, level, scale = _read_polys(r, params, "plaintext", (1,))
    _done(r)
    return Plaintext(polys[0], level, scale, params)


# ----------------------------------------------------------------------------- keys
def serialize_public_key(pk: PublicKey) -> bytes:
    p = pk.params
    return _wrap("public_key", p, _poly_body(p, (pk.b, pk.a), p.L, 1.0), pk.key_id)


def deserialize_public_key(data: bytes, params: Parameters) -> PublicKey:
    r = _open(data, "public_key", params)
    polys, level, _ = _read_polys(r, params, "public_key", (2,), unit_scale=True)
    if level != params.L:
        raise SerializationError("public_key: expected 2 polynomials at the top level")
    _done(r)
    return PublicKey(polys[0], polys[1], params, key_id=r.key_id)


def _swk_body(k: SwitchingKey) -> bytes:
    p = k.params
    head = struct.pack("<HH", len(k.b), k.level) + b"".join(struct.pack("<Q", s) for s in k.a_seeds)
    return head + b"".join(_pack_rows(p, b, k.rows) for b in k.b)


def _read_swk(r: _Reader, params: Parameters, expand: bool = True) -> SwitchingKey:
    d, level = r.unpack("<HH")
    if level > params.L:
        raise SerializationError(f"switching_key: level {level} above the chain's top level {params.L}")
    if d != key_digits(params, level):
        raise SerializationError(f"switching_key: {d} digits, a key at level {level} has {key_digits(params, level)} "
                                 f"(dnum = {params.dnum})")
    seeds = tuple(r.unpack("<Q")[0] for _ in range(d))
    rows = key_rows(params, level)
    n = _packed_len(params, rows)
    bs = tuple(_unpack_rows(params, r.take(n), rows, "switching_key") for _ in range(d))
    return SwitchingKey(bs, seeds, params, expand=expand, level=level, key_id=r.key_id)


def serialize_switching_key(k: SwitchingKey) -> bytes:
    return _wrap("switching_key", k.params, _swk_body(k), k.key_id)


def deserialize_switching_key(data: bytes, params: Parameters, expand: bool = True) -> SwitchingKey:
    """expand=False: the key keeps b and the seeds only (SwitchingKey's expand)."""
    r = _open(data, "switching_key", params)
    k = _read_swk(r, params, expand)
    _done(r)
    return k


def serialize_evaluation_keys(ek: EvaluationKeys, params: Parameters) -> bytes:
    body = struct.pack("<BI", ek.relin is not None, len(ek.galois))
    if ek.relin is not None:
        body += _swk_body(ek.relin)
    for g, k in sorted(ek.galois.items()):
        body += struct.pack("<I", g) + _swk_body(k)
    return _wrap("evaluation_keys", params, body, ek.key_id)


def deserialize_evaluation_keys(data: bytes, params: Parameters) -> EvaluationKeys:
    r = _open(data, "evaluation_keys", params)
    has_relin, n = r.unpack("<BI")
    if has_relin not in (0, 1):
        raise SerializationError(f"evaluation_keys: relinearization flag byte {has_relin}, expected 0 or 1")
    if n > params.N // 2:
        raise SerializationError(f"evaluation_keys: {n} Galois keys, there are only {params.N // 2} nontrivial elements")
    relin = _read_swk(r, params) if has_relin else None
    galois = {}
    for _ in range(n):
        (g,) = r.unpack("<I")
        if g % 2 == 0 or not 1 < g < 2 * params.N:
            raise SerializationError(f"evaluation_keys: invalid Galois element {g} (odd, in (1, 2N = {2 * params.N}))")
        if galois and g <= max(galois):
            raise SerializationError(f"evaluation_keys: Galois element {g} repeated or out of order (keys are stored sorted)")
        galois[g] = _read_swk(r, params)
    _done(r)
    return EvaluationKeys(relin=relin, galois=galois)
