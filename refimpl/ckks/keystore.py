"""Galois keys on disk, read on use and kept in memory up to a bound (ours).

A BERT-base forward at N = 2^16 uses a few hundred Galois keys (the forward's and bootstrapping's:
about 19 GiB as b + seeds), more than a small machine holds beside everything else, but each block
uses only some of them. `KeyStore` is a read-only mapping Galois element -> SwitchingKey, as
`EvaluationKeys.galois` expects: a key is read from its file (refimpl.ckks.serialize, b and the seeds
of a, kept unexpanded) the first time it is asked for, and the least recently used keys are dropped
when the keys held pass `limit_bytes`. Reading a key is sequential I/O of a few tens of MB (from the
page cache when memory allows), small beside the key switches that use it.

    KeyStore.write(root, element, key)   one key, written aside and renamed into place
    KeyStore(root, params, limit_bytes)  the mapping; `stats()`: keys read, bytes read, seconds, peak held

Files: `root/g<element>.key`; the store's key_id (the secret the keys switch to) is read from the first
key, so that `EvaluationKeys` refuses keys of two secrets without reading every key.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from .keys import SwitchingKey
from .params import Parameters
from .serialize import deserialize_switching_key, serialize_switching_key


def key_path(root, element: int) -> Path:
    return Path(root) / f"g{int(element)}.key"


class KeyStore(Mapping):
    """Galois element -> SwitchingKey, read from `root` on use; at most `limit_bytes` of keys held
    (the least recently used dropped first; a key larger than the bound is still held while in use)."""

    def __init__(self, root, params: Parameters, limit_bytes: int, elements=None):
        self.root, self.params, self.limit = Path(root), params, int(limit_bytes)
        found = sorted(int(p.stem[1:]) for p in self.root.glob("g*.key"))
        self.elements = sorted(int(k) for k in elements) if elements is not None else found
        self.element_set = set(self.elements)
        missing = sorted(set(self.elements) - set(found))
        if missing:
            raise FileNotFoundError(f"{self.root}: no key file for Galois elements {missing[:8]}"
                                    f"{'...' if len(missing) > 8 else ''}")
        self.held: OrderedDict[int, SwitchingKey] = OrderedDict()
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
        data = key_path(self.root, k).read_bytes()
        key = deserialize_switching_key(data, self.params, expand=False)
        self.load_seconds += time.perf_counter() - t
        self.loads += 1
        self.load_bytes += len(data)
        while self.held and self.held_bytes + key.nbytes > self.limit:
            _, old = self.held.popitem(last=False)
            self.held_bytes -= old.nbytes
        self.held[k] = key
        self.held_bytes += key.nbytes
        self.peak_bytes = max(self.peak_bytes, self.held_bytes)
        return key

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
            f.write(serialize_switching_key(key))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path
