"""Weights encoded once: the linear layers' plaintext diagonals on disk, memory-mapped by the server (ours).

The encrypted forward multiplies every ciphertext by the encoded diagonals of its weights
(refimpl.nexus.bert.forward, `Forward.linear`); the weights never change, yet without a store
each query encodes them again (BERT-base: about 58,500 plaintexts per layer). NEXUS's Alg. 6
has a precompute phase for its first layer, and THOR encodes its weights once, at the level each
is used; this module does the same for refimpl's forward:

    precompute(model, params, n, out)   records which plaintexts the forward encodes, at which
                                        levels (the bootstrapping plan fixes them), encodes them
                                        once and writes a store;
    WeightStore.open(out, params, model) checks it and memory-maps it; the forward asks it for
                                        a plaintext by (weight name, diagonal, level) through
                                        its `weights` hook, and encodes what the store lacks.

Recording: `Recorder` runs `Forward.run` with a level-only evaluator (no arithmetic) and the
other kernels replaced by their plan levels, so the plaintexts recorded are exactly those
`Forward.linear` asks for, with the weights as the forward folds them (Quad's 1/sqrt(M) in W_1,
M in W_2).

Store format (version 3: version 2's files, each diagonal keyed (name, oc, ic, k, g), g the baby steps of its
product, which fix its pre-rotation): a directory with manifest.json and one .npy file per (weight, level):
int64 [count, N / stride], the rounded integer coefficients that Encoder.encode computes for each
plaintext, kept only at the multiples of `stride` (every other coefficient is zero), opened with
np.load(mmap_mode="r"). On use a plaintext is expanded (`expand`): the residues of the kept
coefficients, their negacyclic NTT of size N / stride, each value repeated `stride` times: exactly
the NTT-domain residues Encoder.encode returns (tested bit for bit). Why it is exact: a polynomial
m(X) = m'(X^s) takes at psi^(2 brv(i) + 1) (the forward NTT's output i, refimpl.ring.ntt) the value
m'(psi_s^(2 brv_M(i // s) + 1)) with psi_s = psi^s the root of the size-M = N/s transform (the same
generator: refimpl.ring.primes.primitive_root_2n), so the N outputs are the M outputs of the small
transform, each repeated s times. Why the stride is large: with every token window active (n = the
windows, e.g. BERT-base's n = 128) a diagonal tiled over the windows is periodic in the slots with
period w (the window), and a slot vector of period w is the embedding of a polynomial in
Z[X^(N / 2w)]: 2w coefficients of N (N = 2^16, w = 256: 512 of 65,536, 4 KiB per diagonal at any
level against 10 MiB of residues at level 19). With fewer tokens than windows the stride is 1
(N coefficients, 8 N bytes, still the NTT only on use).

The manifest holds the format name and version, the parameter fingerprint
(refimpl.ckks.Parameters.fingerprint), the model's checksum (`model_checksum`: config, weights and
the approximation settings), the token count and layout, the input level of the plan, and per
file its SHA-256, size, level, scale, stride and the diagonal keys of its rows. `WeightStore.open`
refuses, with one StoreError naming the difference, a store of another format version, parameter
set, model or layout, or whose files do not match their SHA-256.

Sizes (docs/nexus-scale.md): a BERT-base layer's 64,512 diagonals at n = 128 are 4 KiB each,
252 MiB per layer, 2.95 GiB for 12 layers (version 1 kept the residues: 418-534 GiB per layer at
the plans' levels).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mmap
import re
from functools import lru_cache
from pathlib import Path

import numpy as np

from ...ckks import Ciphertext, Plaintext
from ...ckks.bootstrap.placement import place
from ...ckks.encoder import unembed
from ...errors import UserError
from ...ring.ntt import make_tables, ntt_inplace
from .chain import pieces_of
from .forward import Forward
from .layout import Layout, input_layout
from .ranges import NexusModel

FORMAT = "refimpl-nexus-weights"
VERSION = 3  # 3: the diagonal keys carry the baby steps g; 2: rounded integer coefficients at a stride (1: residues)
MANIFEST = "manifest.json"


class StoreError(UserError):
    """A weight store that cannot be used with these parameters, this model or this layout (a user
    error: the command line prints it as one line)."""


# ------------------------------------------------------------------ identities
def model_checksum(model: NexusModel) -> str:
    """SHA-256 of what the plaintexts depend on: the config, every weight (float64, by name) and the
    approximation settings chosen from the ranges (the activation divisor M is folded into W_1, W_2)."""
    h = hashlib.sha256()
    h.update(json.dumps(dataclasses.asdict(model.config), sort_keys=True, default=str).encode())
    for k in sorted(model.w64):
        a = np.ascontiguousarray(model.w64[k], dtype=np.float64)
        h.update(f"{k}:{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps(model.settings(), sort_keys=True, default=str).encode())
    return h.hexdigest()


def layout_dict(lay: Layout) -> dict:
    return dataclasses.asdict(lay)


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------ recording
class LevelEvaluator:
    """An evaluator that tracks levels and scales only (no arithmetic): what `Recorder` runs on."""

    def __init__(self, params):
        self.params = params
        self.encoder = self  # encode: a plaintext's level and scale only

    def encode(self, values, level: int | None = None, scale: float | None = None) -> Plaintext:
        return Plaintext(None, self.params.L if level is None else int(level),
                         float(self.params.scale if scale is None else scale), self.params)

    def shadow(self, level: int, scale: float) -> Ciphertext:
        return Ciphertext((), int(level), float(scale), self.params)

    def rescale(self, a):
        return self.shadow(a.level - 1, a.scale / float(self.params.q[a.level]))

    def mul_plain(self, a, pt):
        return self.shadow(a.level, a.scale * pt.scale)

    def mul_plain_sum(self, cts, pts):
        terms = list(zip(cts, pts, strict=True))  # takes every plaintext, in order: the recording
        return self.mul_plain(*terms[0])

    def mul_const(self, a, value, scale: float | None = None):
        return self.shadow(a.level, a.scale * (float(self.params.q[a.level]) if scale is None else scale))

    def relinearize(self, a):
        return a

    def multiply(self, a, b, relinearize: bool = True):
        return self.shadow(min(a.level, b.level), a.scale * b.scale)

    def square(self, a):
        return self.multiply(a, a)

    def rotate_hoisted(self, a, rotations):
        return {r: a for r in rotations}

    def add(self, a, b):
        return a

    sub = add

    def rotate(self, a, r):
        return a

    def mul_int(self, a, k):
        return a

    def add_const(self, a, value):
        return a

    def drop_level(self, a, level):
        return self.shadow(level, a.scale)

    def subs(self, a, k):
        return a

    def mul_monomial(self, a, j):
        return a

    def conjugate(self, a):  # the head pairs' halves (refimpl.nexus.bert.attention_pairs)
        return a

    def negate(self, a):  # the complex splits (refimpl.nexus.bert.packing.unpack_complex)
        return a


class Recorder(Forward):
    """`Forward.run` on a LevelEvaluator: the linear layers run (no arithmetic) and record every
    plaintext they ask for; the other kernels return their plan's levels. recorded: {(name, level):
    [(diagonal key, scale, values), ...]} in the forward's order (values: a function of no arguments)."""

    def __init__(self, model: NexusModel, params, lay: Layout, input_level: int, bootstrap_level: int,
                 argmax: bool = False):
        pieces = pieces_of(model, lay, argmax)
        rows = place(pieces, input_level, bootstrap_level)
        super().__init__(LevelEvaluator(params), None, model, lay, np.ones(lay.n), rows, pieces, None)
        self.recorded: dict[tuple[str, int], list] = {}

    def plaintext(self, key: tuple, level: int, scale: float, values):
        if key[0] is None:
            raise RuntimeError("internal: a linear layer without a weight name cannot be stored")
        self.recorded.setdefault((key[0], level), []).append((tuple(int(k) for k in key[1:]), scale, values))
        return Plaintext(None, level, scale, self.ev.params)

    def _at(self, name: str, which: str, cts) -> list:
        """Move to plan row `name` (skipping the rows a replaced kernel would have entered); shadows at its level."""
        while self.rows[self.i]["block"] != name:
            self.i += 1
        row = self.rows[self.i]
        return [self.ev.shadow(row[which], self.ev.params.scale) for _ in cts]

    def enter(self, name, cts):
        return self._at(name, "level_in", cts)

    def leave(self, name, cts, level_in=None):
        out = self._at(name, "level_out", cts)
        self.i += 1
        return out

    # the kernels without weights: shapes only
    def scores(self, q, k, c, scale, shift):
        return q

    def head_scores(self, q, k, c, scale, shift, shifts=None):
        return [q for _ in self.vec.heads(c)]

    def softmax_pieces(self, i, S):
        return list(S)

    def pv(self, i, probs, V, shifts=None, packed=False):
        return [V[0]] * self.lay.chunks(self.lay.d) if packed else list(V)

    def layernorm(self, name, xs, gamma, beta, ln):
        return list(xs)

    def gelu_masked(self, ct, c):
        return ct

    def gelu_pair(self, ct, c):
        return [ct] if (c + 1) * self.lay.chunk >= self.lay.intermediate else [ct, ct]

    def gelu_joint(self, ct, c):
        return ct

    def gelu_unpair(self, pairs):
        return [ct for k, ct in enumerate(pairs) for _ in range(1 if (2 * k + 1) * self.lay.chunk >= self.lay.intermediate else 2)]

    def quad(self, u, c, packed=False):
        return u

    def join(self, a, b, subtract=False):
        return a

    def head(self, xs):
        return xs[0]

    def argmax(self, z):
        return z


def record(model: NexusModel, params, n: int, input_level: int, bootstrap_level: int, *,
           head_rows: bool = False, argmax: bool = False) -> tuple[Layout, dict]:
    """(layout, recorded plaintexts) of the forward on n tokens whose inputs arrive at input_level."""
    lay = input_layout(model.config, n, params.slots, head_rows=head_rows)
    rec = Recorder(model, params, lay, input_level, bootstrap_level, argmax)
    x = [rec.ev.shadow(input_level, params.scale) for _ in range(lay.chunks(lay.d))]
    rec.run(x, argmax)
    return lay, rec.recorded


# ------------------------------------------------------------------ coefficients (ours)
def integer_coefficients(params, values, scale: float) -> np.ndarray:
    """The rounded coefficients (float64 [N], integers) Encoder.encode gives the slot vector `values`
    at `scale`: the same operations in the same order (zero-pad to N/2 slots, unembed, times the
    scale, rint), so that `expand` of them is Encoder.encode's plaintext bit for bit."""
    z = np.asarray(values, dtype=np.complex128).ravel()
    full = np.zeros(params.slots, dtype=np.complex128)
    full[: z.size] = z
    c = np.rint(unembed(full, params.N) * float(scale))
    if np.max(np.abs(c), initial=0.0) >= 2.0**62:
        raise ValueError(f"coefficients reach 2^{np.log2(np.max(np.abs(c))):.1f}: beyond int64, not storable")
    return c


def stride_of(coeffs: np.ndarray) -> int:
    """The largest power of two s <= N/2 with every nonzero coefficient at a multiple of s (the
    polynomial lies in Z[X^s]; N/2w for a diagonal of period w in the slots)."""
    N = coeffs.shape[-1]
    g = int(np.gcd.reduce(np.flatnonzero(coeffs))) if np.any(coeffs) else 0
    return N // 2 if g == 0 else min(g & -g, N // 2)


@lru_cache(maxsize=256)
def ntt_tables(primes: tuple, size: int):
    """refimpl.ring.ntt tables of `primes` for transforms of `size` points; their root is psi^(N/size)
    for the size-N root psi (both g^((q-1)/2 size) for the same generator g), see the module docstring."""
    return make_tables(list(primes), size)


def expand(kept: np.ndarray, stride: int, level: int, params) -> np.ndarray:
    """The NTT-domain residues [level + 1, N] of the polynomial whose coefficient stride j is kept[j]
    (int64 [N / stride]) and all others are zero: residues of the kept ones, their size-N/stride NTT,
    each output repeated stride times (module docstring). Equals Encoder.encode's poly bit for bit."""
    basis = params.q_basis(level)
    res = params.ctx.from_int(np.asarray(kept, dtype=np.int64), basis)
    ntt_inplace(res, ntt_tables(tuple(params.ctx.primes[i] for i in basis), res.shape[1]))
    return res if stride == 1 else np.repeat(res, stride, axis=1)


# ------------------------------------------------------------------ writing
def write_store(out, params, recorded: dict, meta: dict, log=None) -> dict:
    """Compute the recorded plaintexts' integer coefficients and write them, at each file's stride,
    with their manifest under `out` (created).

    meta: model_checksum, layout (and anything else to keep, e.g. n, input_level); returns the manifest."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    N = params.N
    files = {}
    for (name, level), entries in recorded.items():
        fname = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{name}.l{level}") + ".npy"
        scales = {s for _, s, _ in entries}
        if len(scales) != 1:
            raise RuntimeError(f"internal: {name} at level {level} encoded at several scales")
        rows = []  # (stride, kept coefficients) per plaintext, each at its own stride
        for _, scale, values in entries:
            c = integer_coefficients(params, values(), scale)
            s = stride_of(c)
            rows.append((s, c[::s].astype(np.int64)))
        stride = min(s for s, _ in rows)  # the file's stride: every row's kept coefficients at multiples of it
        arr = np.zeros((len(entries), N // stride), dtype=np.int64)
        for j, (s, kept) in enumerate(rows):
            arr[j, :: s // stride] = kept
        np.save(out / fname, arr)
        files[fname] = {"name": name, "level": level, "scale": scales.pop(), "count": len(entries), "stride": stride,
                        "keys": [list(k) for k, _, _ in entries], "bytes": (out / fname).stat().st_size,
                        "sha256": file_sha256(out / fname)}
        if log:
            log(f"{fname}: {len(entries)} plaintexts, stride {stride}, {files[fname]['bytes'] / 2**20:.2f} MiB")
    manifest = {"format": FORMAT, "version": VERSION, "params_fingerprint": params.fingerprint().hex(),
                "N": N, **meta, "files": files,
                "total_bytes": sum(f["bytes"] for f in files.values())}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def precompute(model: NexusModel, params, n: int, out, *, input_level: int, bootstrap_level: int,
               head_rows: bool = False, argmax: bool = False, log=None) -> dict:
    """Record the forward's plaintexts for n tokens (inputs at input_level, bootstraps returning
    bootstrap_level), compute their coefficients once and write the store under `out`; returns its manifest."""
    lay, rec = record(model, params, n, input_level, bootstrap_level, head_rows=head_rows, argmax=argmax)
    meta = {"model_checksum": model_checksum(model), "n": n, "head_rows": head_rows, "layout": layout_dict(lay),
            "input_level": input_level, "bootstrap_level": bootstrap_level, "argmax": argmax}
    return write_store(out, params, rec, meta, log)


# ------------------------------------------------------------------ reading
def mapped(path) -> np.ndarray:
    """The array of an .npy file, read-only and memory-mapped (as np.load(mmap_mode="r")), its base the mmap
    (so that WeightStore.release can drop its pages)."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read(f)
        offset = f.tell()
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    return np.ndarray(shape, dtype=dtype, buffer=mm, offset=offset, order="F" if fortran else "C")


class WeightStore:
    """A checked, memory-mapped store; `plaintext((name, oc, ic, k, g), level)` for Forward's `weights` hook.

    hits / misses count the lookups (a miss: the forward encodes that plaintext itself)."""

    def __init__(self, root: Path, manifest: dict, params, arrays: dict):
        self.root, self.manifest, self.params = root, manifest, params
        self.index = {}
        for fname, f in manifest["files"].items():
            for row, k in enumerate(f["keys"]):
                self.index[(f["name"], *k, f["level"])] = (arrays[fname], row, f["stride"], f["scale"])
        self.hits = self.misses = 0
        self.checked_model = None
        self.arrays = arrays

    def release(self, prefix: str) -> int:
        """Drop from this process's memory the pages read so far of the files whose names start with `prefix`
        (e.g. "L3." after layer 3; ours): they stay in the page cache and are read again if asked for. A long
        forward's resident size then holds only the layers it works on. Returns the files released."""
        done = 0
        for fname, arr in self.arrays.items():
            if fname.startswith(prefix) and isinstance(arr.base, mmap.mmap):
                arr.base.madvise(mmap.MADV_DONTNEED)
                done += 1
        return done

    @classmethod
    def open(cls, root, params, model: NexusModel | None = None, *, model_sum: str | None = None,
             verify: bool = True) -> "WeightStore":
        """Open the store under `root` for these parameters and this model (or its checksum model_sum).

        verify: check every file's SHA-256 (reads the whole store once). StoreError on any mismatch."""
        root = Path(root)
        try:
            manifest = json.loads((root / MANIFEST).read_text())
        except FileNotFoundError:
            raise StoreError(f"{root}: no {MANIFEST} (not a weight store; make one with `refimpl nexus precompute`)") from None
        except json.JSONDecodeError as e:
            raise StoreError(f"{root}/{MANIFEST}: not JSON ({e})") from None
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise StoreError(f"{root}: format {manifest.get('format')!r} version {manifest.get('version')!r}, "
                             f"this reader needs {FORMAT!r} version {VERSION}: precompute the store again "
                             "(`refimpl nexus precompute`)")
        if manifest["params_fingerprint"] != params.fingerprint().hex():
            raise StoreError(f"{root}: made for other parameters (fingerprint {manifest['params_fingerprint']}, "
                             f"these are {params.fingerprint().hex()}): precompute the store for them")
        want = model_checksum(model) if model is not None else model_sum
        if want is not None and manifest["model_checksum"] != want:
            raise StoreError(f"{root}: made for another model or other ranges (checksum {manifest['model_checksum'][:16]}..., "
                             f"this model's is {want[:16]}...): precompute the store again")
        arrays = {}
        for fname, f in manifest["files"].items():
            path = root / fname
            if not path.exists():
                raise StoreError(f"{root}: {fname} is missing")
            if verify and file_sha256(path) != f["sha256"]:
                raise StoreError(f"{root}: {fname} does not match its SHA-256 (corrupted or changed)")
            arrays[fname] = mapped(path)
            want_shape = (f["count"], params.N // f["stride"])
            if arrays[fname].shape != want_shape or arrays[fname].dtype != np.int64:
                raise StoreError(f"{root}: {fname} is {arrays[fname].dtype} {arrays[fname].shape}, the manifest "
                                 f"says int64 {want_shape}")
        out = cls(root, manifest, params, arrays)
        out.checked_model = model
        return out

    def layout_error(self, lay: Layout) -> str | None:
        """None if the store was made for layout `lay`, else what differs (for a StoreError or a log line)."""
        m = self.manifest
        if m.get("layout") == layout_dict(lay):
            return None
        made = {k: v for k, v in m.get("layout", {}).items() if layout_dict(lay).get(k) != v}
        return (f"{self.root}: made for the layout of n = {m.get('n')} tokens ({made}), the query's is "
                f"n = {lay.n} ({ {k: layout_dict(lay)[k] for k in made} }): precompute a store for it")

    def check(self, params, model: NexusModel, lay: Layout) -> None:
        """StoreError unless the store was made for these parameters, this model and this layout."""
        m = self.manifest
        if m["params_fingerprint"] != params.fingerprint().hex():
            raise StoreError(f"{self.root}: made for other parameters")
        if self.checked_model is not model:
            if m["model_checksum"] != model_checksum(model):
                raise StoreError(f"{self.root}: made for another model or other ranges")
            self.checked_model = model
        err = self.layout_error(lay)
        if err:
            raise StoreError(err)

    def plaintext(self, key: tuple, level: int) -> Plaintext | None:
        """The stored plaintext of `key` = (name, oc, ic, k, g) at `level` (diagonal k of block (oc, ic), pre-rotated for g baby steps), expanded (`expand`), or None
        (counted as a miss)."""
        hit = self.index.get((*key, level))
        if hit is None:
            self.misses += 1
            return None
        arr, row, stride, scale = hit
        self.hits += 1
        return Plaintext(expand(arr[row], stride, level, self.params), level, scale, self.params)

    @property
    def nbytes(self) -> int:
        return int(self.manifest["total_bytes"])
