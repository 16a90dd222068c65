"""A forward that survives restarts: each encoder layer's output ciphertexts on disk, resumed from the last
complete layer (ours).

A BERT-base forward at N = 2^16 takes hours on a small machine, longer than one process may live.
`resumable_forward` runs refimpl.nexus.bert's forward with its `on_layer` hook: after layer i the
output chunks are written (refimpl.ckks.serialize, each file written aside and renamed into
place), then the manifest (checkpoint.json, likewise atomic) is updated to say "layers 0 .. i
done, their output is these files, with these SHA-256". A process killed at any moment leaves
either the previous complete layer or the new one; the next call with the same query loads the
last complete layer and continues at the next (`Forward.run(start=...)`, the plan computed from
the original input level), so no finished layer is computed twice.

The manifest names the query it belongs to (the SHA-256 of the input ciphertexts, the token
count, the attention mask and the Argmax option), the parameter fingerprint and the model's
checksum (refimpl.nexus.bert.weights_store.model_checksum); a directory holding another query's
checkpoint is refused (CheckpointError), never silently resumed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ...ckks import Ciphertext
from ...ckks.serialize import deserialize_ciphertext, serialize_ciphertext
from .forward import encrypted_forward
from .ranges import NexusModel
from .weights_store import model_checksum

FORMAT = "refimpl-nexus-checkpoint"
VERSION = 1
MANIFEST = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint directory that belongs to another query, parameter set or model, or is damaged."""


def query_id(cts: list[Ciphertext], n: int, mask, argmax: bool) -> str:
    """SHA-256 of what identifies a query: its input ciphertexts, n, the attention mask, Argmax or not."""
    h = hashlib.sha256(f"{n}:{argmax}:{np.asarray(mask, dtype=np.int64).tolist()}".encode())
    for ct in cts:
        h.update(serialize_ciphertext(ct))
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Checkpoint:
    """The checkpoint directory of one query: `save(i, chunks)` after layer i, `resume()` -> (start, chunks)."""

    def __init__(self, root, params, model_sum: str, query: str, input_level: int):
        self.root, self.params = Path(root), params
        self.ident = {"format": FORMAT, "version": VERSION, "params_fingerprint": params.fingerprint().hex(),
                      "model_checksum": model_sum, "query": query, "input_level": int(input_level)}
        self.root.mkdir(parents=True, exist_ok=True)
        self.saved_layers: list[int] = []

    def manifest(self) -> dict | None:
        path = self.root / MANIFEST
        if not path.exists():
            return None
        try:
            m = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{path}: not JSON ({e})") from None
        for k, v in self.ident.items():
            if m.get(k) != v:
                raise CheckpointError(f"{self.root}: a checkpoint of another {k.replace('_', ' ')} "
                                      f"({m.get(k)!r}, this run's is {v!r}): use another directory or remove it")
        return m

    def save(self, i: int, chunks: list[Ciphertext]) -> None:
        """Write layer i's output chunks, then the manifest that points to them; drop the previous layer's files."""
        old = self.manifest()
        files = {}
        for j, ct in enumerate(chunks):
            name = f"L{i}.chunk{j}.ct"
            data = serialize_ciphertext(ct)
            _write_atomic(self.root / name, data)
            files[name] = hashlib.sha256(data).hexdigest()
        m = dict(self.ident, layers_done=i + 1, files=files)
        _write_atomic(self.root / MANIFEST, (json.dumps(m, indent=1) + "\n").encode())
        for name in (old or {}).get("files", {}):
            if name not in files:
                (self.root / name).unlink(missing_ok=True)
        self.saved_layers.append(i)

    def resume(self) -> tuple[int, list[Ciphertext] | None]:
        """(the next layer to run, the last complete layer's output chunks), or (0, None) without a checkpoint."""
        m = self.manifest()
        if m is None:
            return 0, None
        chunks = []
        for name, digest in m["files"].items():
            data = (self.root / name).read_bytes()
            if hashlib.sha256(data).hexdigest() != digest:
                raise CheckpointError(f"{self.root}: {name} does not match its SHA-256 (damaged)")
            chunks.append(deserialize_ciphertext(data, self.params))
        return int(m["layers_done"]), chunks


def resumable_forward(ev, bootstrapper, model: NexusModel, cts: list[Ciphertext], n: int, attention_mask, root, *,
                      argmax: bool = False, log=None, on_layer=None, **kw) -> list[Ciphertext]:
    """encrypted_forward with a checkpoint after every encoder layer under `root`, resumed from there.

    Same arguments and result as refimpl.nexus.bert.encrypted_forward (kw: trace, taps, head_rows,
    weights); on_layer (i, chunks) is called after layer i's checkpoint is written; the checkpoint of
    a finished query stays (a second call reruns only the head).
    CheckpointError if `root` holds another query's checkpoint."""
    ck = Checkpoint(root, ev.params, model_checksum(model), query_id(cts, n, attention_mask, argmax), cts[0].level)
    start, saved = ck.resume()
    if log:
        log(f"checkpoint {root}: " + (f"resuming after layer {start - 1}" if start else "starting at layer 0"))
    inputs = saved if saved is not None else list(cts)

    def saved_then(i, chunks):
        ck.save(i, chunks)
        if on_layer is not None:
            on_layer(i, chunks)

    return encrypted_forward(ev, bootstrapper, model, inputs, n, attention_mask, argmax=argmax, on_layer=saved_then,
                             start=start, input_level=cts[0].level, **kw)
