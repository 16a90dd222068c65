"""Galois keys on disk, memory-mapped on use and kept mapped up to a bound (ours).

A BERT-base forward at N = 2^16 uses a few hundred Galois keys (the forward's and bootstrapping's:
about 16 GiB as b + seeds), more than a small machine holds beside everything else, but each block
uses only some of them. `KeyStore` is a read-only mapping Galois element -> SwitchingKey, as
`EvaluationKeys.galois` expects: a key's file is memory-mapped the first time it is asked for, and the
least recently used keys are unmapped when the keys mapped pass `limit_bytes`.

Why mapped and not read: a key file holds b as the key switch uses it (uint64 residues, one C-order
array [rows, N] per digit), so "reading" a key is a mapping and the kernel pages it in from the page cache,
or from disk, while the key switch runs (madvise WILLNEED starts the read-ahead at once). The protocol's
bit-packed form (refimpl.ckks.serialize) is a third smaller at `128-2^16-dense19` (its primes average 43
bits), but unpacking it costs about 2.4 s of CPU per GiB (`refimpl experiment key-load`): 28 GiB of keys per
BERT-base layer through an 8 GiB bound was 162 s of a 1,005 s layer. An unmapped
key's pages stay in the page cache while memory allows, outside this process's resident set, so mapping it
again reads nothing from disk. The first mapping in a process checks the file: header, parameters, CRC-32 of
the body, every residue below its prime (one SerializationError naming what is wrong).

    KeyStore.write(root, element, key)   one key, written aside and renamed into place
    KeyStore.convert(root, params)       the protocol's packed files (g<element>.key) rewritten as key files
    KeyStore(root, params, limit_bytes)  the mapping; `release(k)` unmaps; `stats()`: keys mapped, bytes, seconds, peak held

File `root/g<element>.mkey`: a header of HEADER_BYTES (magic, version, the parameters' fingerprint, the key
id, level, digits, rows, N, the digits' seeds of a, the CRC-32 of the body), then the body: digits x rows x N
little-endian uint64. The store's key_id (the secret the keys switch to) is read from the first key, so that
`EvaluationKeys` refuses keys of two secrets without reading every key.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .errors import SerializationError
from .keys import SwitchingKey, key_digits, key_rows
from .params import Parameters
from .serialize import deserialize_switching_key

MAGIC, VERSION = b"RFKM", 1
HEAD = struct.Struct("<4sH8s8sHHHI")  # magic, version, fingerprint, key id, level, digits, rows, N
HEADER_BYTES = 4096  # the body starts page-aligned
NO_KEY = bytes(8)


def key_path(root, element: int) -> Path:
    return Path(root) / f"g{int(element)}.mkey"


def _crc(arrays) -> int:
    c = 0
    for x in arrays:
        c = zlib.crc32(memoryview(np.ascontiguousarray(x)).cast("B"), c)
    return c


def _header(key: SwitchingKey) -> bytes:
    rows, d = len(key.rows), len(key.b)
    head = HEAD.pack(MAGIC, VERSION, key.params.fingerprint(), key.key_id or NO_KEY, key.level, d, rows, key.params.N)
    head += struct.pack(f"<{d}QI", *key.a_seeds, _crc(key.b))
    if len(head) > HEADER_BYTES:
        raise ValueError(f"a key of {d} digits does not fit the {HEADER_BYTES}-byte header")
    return head + bytes(HEADER_BYTES - len(head))


def _open_key(path: Path, params: Parameters, verify: bool) -> SwitchingKey:
    """Map one key file (copy-on-write: the arrays are writable numpy arrays whose pages stay the page cache's)."""
    what = f"key file {path.name}"
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size < HEADER_BYTES:
            raise SerializationError(f"{what}: truncated ({size} bytes is shorter than the {HEADER_BYTES}-byte header)")
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    magic, version, fp, key_id, level, d, rows, n = HEAD.unpack_from(mm)
    if magic != MAGIC:
        raise SerializationError(f"{what}: not a refimpl key file (magic {magic!r}, expected {MAGIC!r})")
    if version != VERSION:
        raise SerializationError(f"{what}: format version {version}, this refimpl reads version {VERSION}")
    if fp != params.fingerprint():
        raise SerializationError(f"{what}: made under other parameters (fingerprint {fp.hex()} != "
                                 f"{params.fingerprint().hex()})")
    if level > params.L or d != key_digits(params, level) or rows != len(key_rows(params, level)) or n != params.N:
        raise SerializationError(f"{what}: level {level}, {d} digits, {rows} rows, N = {n}; these parameters give "
                                 f"a key at level {min(level, params.L)} {key_digits(params, min(level, params.L))} "
                                 f"digits and {len(key_rows(params, min(level, params.L)))} rows, N = {params.N}")
    if size != HEADER_BYTES + d * rows * n * 8:
        raise SerializationError(f"{what}: {size} bytes, a key of {d} digits x {rows} rows x N = {n} has "
                                 f"{HEADER_BYTES + d * rows * n * 8} (corrupted or truncated)")
    *seeds, crc = struct.unpack_from(f"<{d}QI", mm, HEAD.size)
    mm.madvise(mmap.MADV_WILLNEED)  # the kernel starts reading ahead now, the key switch finds the pages in
    b = tuple(np.frombuffer(mm, dtype="<u8", count=rows * n, offset=HEADER_BYTES + j * rows * n * 8).reshape(rows, n)
              for j in range(d))
    if verify:
        if _crc(b) != crc:
            raise SerializationError(f"{what}: checksum mismatch (corrupted data)")
        q = params.ctx.q[list(key_rows(params, level))]
        if any(np.any(x >= q[:, None]) for x in b):
            raise SerializationError(f"{what}: a residue is not below its prime (malformed data)")
    return SwitchingKey(b, tuple(seeds), params, expand=False, level=level, key_id=None if key_id == NO_KEY else key_id)


class KeyStore(Mapping):
    """Galois element -> SwitchingKey, mapped from `root` on use; at most `limit_bytes` of keys mapped
    (the least recently used unmapped first; a key larger than the bound is still mapped while in use)."""

    def __init__(self, root, params: Parameters, limit_bytes: int, elements=None):
        self.root, self.params, self.limit = Path(root), params, int(limit_bytes)
        found = sorted(int(p.stem[1:]) for p in self.root.glob("g*.mkey"))
        self.elements = sorted(int(k) for k in elements) if elements is not None else found
        self.element_set = set(self.elements)
        missing = sorted(set(self.elements) - set(found))
        if missing:
            raise FileNotFoundError(f"{self.root}: no key file for Galois elements {missing[:8]}"
                                    f"{'...' if len(missing) > 8 else ''}")
        self.held: OrderedDict[int, SwitchingKey] = OrderedDict()
        self.verified: set[int] = set()
        self.held_bytes = self.peak_bytes = 0
        self.loads = self.load_bytes = 0
        self.load_seconds = 0.0
        self.key_id = self[self.elements[0]].key_id if self.elements else None

    def __len__(self) -> int:
        return len(self.elements)

    def __iter__(self):
        return iter(self.elements)

    def __contains__(self, k) -> bool:
        return not isinstance(k, bool) and int(k) in self.element_set

    def __getitem__(self, k) -> SwitchingKey:
        k = int(k)
        key = self.held.get(k)
        if key is not None:
            self.held.move_to_end(k)
            return key
        if k not in self:
            raise KeyError(k)
        t = time.perf_counter()
        key = _open_key(key_path(self.root, k), self.params, verify=k not in self.verified)
        self.verified.add(k)
        self.load_seconds += time.perf_counter() - t
        self.loads += 1
        self.load_bytes += key.nbytes
        while self.held and self.held_bytes + key.nbytes > self.limit:
            _, old = self.held.popitem(last=False)  # its arrays go, and with them the mapping
            self.held_bytes -= old.nbytes
        self.held[k] = key
        self.held_bytes += key.nbytes
        self.peak_bytes = max(self.peak_bytes, self.held_bytes)
        return key

    def release(self, k=None) -> None:
        """Unmap key `k` (every held key when None); the next use maps it again, without the check."""
        for e in ([int(k)] if k is not None else list(self.held)):
            old = self.held.pop(e, None)
            if old is not None:
                self.held_bytes -= old.nbytes

    def stats(self) -> dict:
        return {"keys": len(self.elements), "loads": self.loads, "load_gib": round(self.load_bytes / 2**30, 3),
                "load_s": round(self.load_seconds, 2), "held_gib": round(self.held_bytes / 2**30, 3),
                "peak_held_gib": round(self.peak_bytes / 2**30, 3), "limit_gib": round(self.limit / 2**30, 3)}

    @staticmethod
    def write(root, element: int, key: SwitchingKey) -> Path:
        """Write one key under `root` (aside, then renamed: a killed writer leaves no partial key file)."""
        root = Path(root)
        root.mkdir(parents=True, exist_ok=True)
        path = key_path(root, element)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(_header(key))
            for x in key.b:
                f.write(memoryview(np.ascontiguousarray(x, dtype="<u8")).cast("B"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    @staticmethod
    def convert(root, params: Parameters) -> int:
        """Rewrite the protocol's packed key files `root/g<element>.key` (refimpl.ckks.serialize) as key files,
        each removed once its key file is in place (a killed conversion continues); returns how many."""
        done = 0
        for p in sorted(Path(root).glob("g*.key")):
            key = deserialize_switching_key(p.read_bytes(), params, expand=False)
            KeyStore.write(root, int(p.stem[1:]), key)
            p.unlink()
            done += 1
        return done
