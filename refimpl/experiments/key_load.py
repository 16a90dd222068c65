"""Galois keys from disk, read and unpacked or memory-mapped, measured side by side (refimpl.ckks.keystore).

One Galois key of the BERT-base preset (`128-2^16-dense19`, 128-bit) at the forward's top level, written in
the protocol's bit-packed form (refimpl.ckks.serialize, what the key store used to read) and as a mapped key
file (refimpl.ckks.keystore). Alternately, `repeats` times each, with the files in the page cache (this
machine reads its disk at about 2-3 GB/s, so what differs is the CPU):

- `packed_read_s`: read the file and unpack it (the store's former load);
- `mapped_first_s`: map the file and check it (header, CRC-32, residues below their primes: once per process);
- `mapped_again_s`: map it again (an unmapped key asked for again);
- `packed_use_s`, `mapped_use_s`: one load as above plus one key switch (a rotation of a fresh ciphertext at
  that level) with the key: a mapped key's pages come in during the key switch, so this is the comparison
  that counts.

Medians, and the ratio mapped / packed of each. The per-layer figure follows from the bytes a layer reads
(results/nexus/nexus_bertbase_run_student_cache8.json: 28 GiB through an 8 GiB bound).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from ..ckks import Encoder, Encryptor, EvaluationKeys, Evaluator, KeyGenerator
from ..ckks.bootstrap.bootstrapper import bootstrap_preset
from ..ckks.keys import galois_element
from ..ckks.keystore import KeyStore, key_path
from ..ckks.serialize import deserialize_switching_key, serialize_switching_key
from ..ring.sampling import RandomSource

GIB = 2**30


def measure(preset: str = "128-2^16-dense19", repeats: int = 5, rotation: int = 1, work: str | None = None) -> dict:
    params, rc = bootstrap_preset(preset)
    level = params.L - rc.depth
    kg = KeyGenerator(params, RandomSource(), expand_keys=False)
    sk = kg.secret_key()
    g = galois_element(params, rotation)
    key = kg.galois_key(sk, g, level)
    ct = Encryptor(kg.public_key(sk), RandomSource()).encrypt(Encoder(params).encode(np.arange(8.0), level=level))
    with tempfile.TemporaryDirectory(dir=work) as d:
        root = Path(d)
        packed = root / f"g{g}.key"
        packed.write_bytes(serialize_switching_key(key))
        KeyStore.write(root, g, key)
        sizes = {"packed_bytes": packed.stat().st_size, "mapped_bytes": key_path(root, g).stat().st_size,
                 "key_bytes_in_memory": key.nbytes}
        del key

        def packed_load():
            return deserialize_switching_key(packed.read_bytes(), params, expand=False)

        def mapped_load(verify):
            store = KeyStore(root, params, limit_bytes=GIB * 64, elements=[g]) if verify else warm
            if not verify:
                store.release(g)
            return store[g]

        warm = KeyStore(root, params, limit_bytes=GIB * 64, elements=[g])
        times = {k: [] for k in ("packed_read_s", "mapped_first_s", "mapped_again_s", "packed_use_s", "mapped_use_s")}
        for _ in range(repeats):
            for name, load in (("packed_read_s", packed_load), ("mapped_first_s", lambda: mapped_load(True)),
                               ("mapped_again_s", lambda: mapped_load(False))):
                t = time.perf_counter()
                load()
                times[name].append(time.perf_counter() - t)
            for name, load in (("packed_use_s", packed_load), ("mapped_use_s", lambda: mapped_load(False))):
                t = time.perf_counter()
                Evaluator(params, EvaluationKeys(galois={g: load()})).rotate(ct, rotation)
                times[name].append(time.perf_counter() - t)
    med = {k: round(statistics.median(v), 4) for k, v in times.items()}
    return {"security": params.security_note, "preset": preset, "N": params.N, "level": level,
            "repeats": repeats, **sizes, "median_s": med, "all_s": {k: [round(x, 4) for x in v] for k, v in times.items()},
            "ratio_mapped_first_to_packed_read": round(med["mapped_first_s"] / med["packed_read_s"], 3),
            "ratio_mapped_again_to_packed_read": round(med["mapped_again_s"] / med["packed_read_s"], 4),
            "ratio_mapped_use_to_packed_use": round(med["mapped_use_s"] / med["packed_use_s"], 3),
            "packed_read_s_per_gib": round(med["packed_read_s"] / (sizes["key_bytes_in_memory"] / GIB), 2)}
