"""The models a NEXUS server evaluates and a client embeds for: the toy stand-in and BERT.

A protocol model offers, to the client: embed(sentence) -> (x [n, width], mask), layout,
pack, unpack, labels; to the server: layout, pack, rotation_steps, input_bound, forward
(the encrypted evaluation) and, for BERT, the bootstrapping plan and the value ranges.

`ToyModel` is refimpl's stand-in for fast protocol tests (no paper); `NexusBert` wraps the
encrypted BERT of refimpl.nexus.bert (NEXUS §3-4, Zhang et al., NDSS 2025).
"""

from __future__ import annotations

import json
import os
import time
import zlib
from math import erf
from pathlib import Path

import numpy as np

from refimpl.bert import shipped, weights
from refimpl.bert.tokenizer import BertTokenizer
from refimpl.ckks import Ciphertext, Encoder
from refimpl.nexus.bert import (
    NexusModel, check_ranges, client_embed, encrypted_forward, input_layout, pack_input, plaintext_reference,
    plan as plan_bert, plan_table as plan_table_bert, ranges_from_json, ranges_to_json, rotation_steps as rotation_steps_bert,
    unpack_argmax, unpack_output,
)
from refimpl.nexus.bert import calibrate as calibrate_ranges
from refimpl.nexus.argmax import argmax as argmax_blocks
from refimpl.nexus.bert.keyset import forward_key_levels
from refimpl.nexus.folding import fold_rotations, quick_sum
from refimpl.nexus.gelu import LEVELS as GELU_LEVELS, gelu, gelu_plain
from refimpl.nexus.levels import ensure_levels, with_scale
from refimpl.progress import or_silent

from .wire import ProtocolError

RANGES_FILE = "nexus_ranges.json"  # the model owner's calibrated ranges, beside a model's weights
CALIBRATION_TOKENS, CALIBRATION_SENTENCES = 16, 200


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

    @property
    def width(self) -> int:
        """Features per token (d)."""
        return self.d

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

    def rotation_steps(self, n: int, slots: int, argmax: bool = True) -> list[int]:
        """The classifier's QuickSum, and with argmax the Argmax's moves, fold and duplication."""
        width = 1 << max(1, (self.num_labels - 1).bit_length())
        extra = [-c for c in range(1, self.num_labels)] + fold_rotations(width) + [-width] if argmax else []
        return sorted(set(fold_rotations(n * self.d)) | set(extra))

    def plain_logits(self, x: np.ndarray, mask) -> np.ndarray:
        """The float64 model of the encrypted forward (the same GELU approximation)."""
        return self.Wc @ gelu_plain(self.a * x + self.b).ravel() + self.bc

    def input_bound(self) -> float:
        return float(np.max(np.abs(self.E)))

    def reference_logits(self, sentence: str) -> dict:
        """Plaintext logits: 'model' (the same GELU approximation) and 'exact' (erf GELU)."""
        x, mask = self.embed(sentence)
        u = (self.a * x + self.b).ravel()
        exact = u * 0.5 * (1.0 + np.vectorize(erf)(u / np.sqrt(2.0)))
        return {"model": self.plain_logits(x, mask), "exact": self.Wc @ exact + self.bc}

    @property
    def max_tokens(self) -> int:
        """The longest input the server accepts (a HELLO's n)."""
        return self.n

    def logit_bound(self) -> float:
        """B with |logit_c| <= B for every input: |x| <= max|E|, so |GELU(a x + b)| <= max|a x + b|."""
        u = np.abs(self.a) * self.input_bound() + np.abs(self.b)
        return float(np.max(np.abs(self.Wc) @ u.ravel() + np.abs(self.bc)))

    def forward(self, ev, bts, cts, n, mask, trace=None, argmax: bool = False, progress=None) -> list[Ciphertext]:
        """The logits, one ciphertext per class (slot 0), or with argmax=True one ciphertext holding
        the Argmax selection vector in slots 0 .. num_labels - 1 (NEXUS §3.4). progress:
        refimpl.progress's callback, once per block."""
        say, blocks = or_silent(progress), 4 if argmax else 3  # blocks done, and the one that runs next
        say("encrypted forward: affine", 0, blocks)
        enc = Encoder(ev.params)
        ct = cts[0]
        t0 = time.perf_counter()
        q = float(ev.params.q[ct.level])
        h = ev.rescale(ev.mul_plain(ct, enc.encode(self.a.ravel(), level=ct.level, scale=q)))  # level l -> l-1
        h = with_scale(h, ct.scale) if abs(h.scale - ct.scale) < 1e-9 * ct.scale else h
        h = ev.add_plain(h, enc.encode(self.b.ravel(), level=h.level, scale=h.scale))
        _trace(trace, "affine", t0, ct, h)
        say("encrypted forward: gelu", 1, blocks)
        h = _refresh(h, GELU_LEVELS, bts, "GELU", trace)
        t0 = time.perf_counter()
        g = gelu(ev, h, -6.0, 6.0)  # level 18 -> 0
        _trace(trace, "gelu", t0, h, g)
        say("encrypted forward: classifier", 2, blocks)
        g = _refresh(g, 1, bts, "classifier", trace)
        t0 = time.perf_counter()
        outs = []
        for c in range(self.num_labels):
            m = ev.rescale(ev.mul_plain(g, enc.encode(self.Wc[c], level=g.level, scale=float(ev.params.q[g.level]))))
            s = quick_sum(ev, m, n * self.d)  # slot 0: sum over the n d features
            outs.append(ev.add_const(s, float(self.bc[c])))
        _trace(trace, "classifier", t0, g, outs[0])
        if not argmax:
            say("encrypted forward", blocks, blocks)
            return outs
        say("encrypted forward: argmax", 3, blocks)
        out = self.argmax(ev, bts, outs, trace)
        say("encrypted forward", blocks, blocks)
        return [out]

    def argmax(self, ev, bts, outs, trace=None) -> Ciphertext:
        """Logit c / 2B moved to slot c (one masked product each; |logit / 2B| <= 1/2), then
        refimpl.nexus.argmax (QuickMax and 1 + Sgn, NEXUS §3.4) over rows of two slots."""
        enc, t0 = Encoder(ev.params), time.perf_counter()
        width = 1 << max(1, (self.num_labels - 1).bit_length())  # labels padded to a power of two
        e0 = np.zeros(ev.params.slots)
        e0[0] = 1.0 / (2 * self.logit_bound())
        z = None
        for c, o in enumerate(_refresh(o, 1, bts, "argmax", trace) for o in outs):
            m = ev.rescale(ev.mul_plain(o, enc.encode(e0, level=o.level, scale=float(ev.params.q[o.level]))))
            m = ev.rotate(m, -c) if c else m
            z = m if z is None else ev.add(z, with_scale(m, z.scale) if m.level == z.level else m)
        key_mask = np.zeros(ev.params.slots)
        key_mask[: self.num_labels] = 1.0
        out = argmax_blocks(ev, z, width, bound=0.5, key_mask=key_mask, window=2 * width, bootstrapper=bts)
        _trace(trace, "argmax", t0, outs[0], out)
        return out

    def unpack(self, vectors: list[np.ndarray], layout) -> np.ndarray:
        return np.array([v[0].real for v in vectors])

    def unpack_argmax(self, vectors: list[np.ndarray], layout) -> np.ndarray:
        return np.asarray(vectors[0]).real[: self.num_labels]


def _refresh(ct, need, bts, what, trace):
    """ensure_levels, with the bootstrap (if any) as its own trace entry."""
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
        self.name, self.config, self.params, self.encode = name, config, params, encode
        self.model = NexusModel(config, params)
        self.labels = tuple(labels)
        self.ranges_source = "refimpl.nexus.bert's own calibration on random tokens"

    def load_ranges(self, path) -> None:
        """The model owner's calibrated ranges (RANGES_FILE, written by `refimpl nexus calibrate`)."""
        try:
            doc = json.loads(Path(path).read_text())
        except json.JSONDecodeError as e:
            raise ProtocolError(f"{path}: not JSON ({e})") from None
        try:
            self.model.ranges = ranges_from_json(doc, self.config)
        except ValueError as e:
            raise ProtocolError(f"{path}: {e}") from None
        self.ranges_source = f"{Path(path).parent.name}/{Path(path).name}: {doc.get('source', '?')}"

    def save_ranges(self, path, source: str) -> None:
        """Write the current ranges as RANGES_FILE's JSON document, with where they come from."""
        Path(path).write_text(json.dumps(ranges_to_json(self.model.get_ranges(), source), indent=1) + "\n")

    @classmethod
    def shipped(cls, name: str) -> "NexusBert":
        """A shipped SST-2 model (refimpl.bert.shipped)."""
        m = shipped.load(name)
        labels = (m.meta or {}).get("labels", ("negative", "positive"))
        out = cls(name, m.config, m.params, lambda s: shipped.encode(m, s), labels)
        if (shipped.model_dir(name) / RANGES_FILE).exists():
            out.load_ranges(shipped.model_dir(name) / RANGES_FILE)
        return out

    @classmethod
    def from_dir(cls, path: str) -> "NexusBert":
        """A model directory in the shipped layout (model.safetensors, config.json, vocab.txt)."""
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

    @property
    def width(self) -> int:
        """Features per token (the hidden size)."""
        return self.config.hidden_size

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
        self.model.ranges = calibrate_ranges(self.model, samples)
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
        ref = {ap: plaintext_reference(self.model, ids, mask, approximate=ap) for ap in (True, False)}
        try:
            check_ranges(self.model, ref[True])
            err = None
        except ValueError as e:
            err = f"{e} (ranges: {self.ranges_source})"
        return {"model": np.asarray(ref[True]["logits"]), "exact": np.asarray(ref[False]["logits"]), "range_error": err}

    def embed(self, sentence: str):
        ids, mask = self.encode(sentence)
        x = client_embed(self.config, self.params, ids, mask)
        return np.asarray(x), [int(v) for v in np.asarray(mask).ravel()]

    def layout(self, n, slots):
        return input_layout(self.config, n, slots)

    def pack(self, x, layout):
        return [np.asarray(v) for v in pack_input(x, layout)]

    def rotation_steps(self, n, slots, argmax: bool = True):
        """refimpl.nexus.bert.rotation_steps (the Argmax's included either way)."""
        return list(rotation_steps_bert(self.config, n, slots))

    def key_levels(self, n, params, level: int, argmax: bool = True) -> dict[int, int]:
        """The Galois keys `forward` uses on n tokens, element -> the highest level it applies it at, with the
        inputs and every bootstrap's output at `level`: a dry run of the forward itself
        (refimpl.nexus.bert.keyset), fewer than `rotation_steps` lists; kept per (n, level, Argmax, settings)."""
        key = (n, params.fingerprint(), level, argmax, json.dumps(self.model.settings(), sort_keys=True, default=str))
        cache = self.__dict__.setdefault("_key_levels", {})
        if key not in cache:
            cache[key] = forward_key_levels(self.model, n, params, level, level, argmax=argmax)
        return cache[key]

    @property
    def max_tokens(self) -> int:
        """The longest input the server accepts (a HELLO's n): BERT's position embeddings."""
        return int(self.config.max_position_embeddings)

    def plan(self, n, params_rc, argmax: bool = False):
        return plan_bert(self.model, n, params_rc, argmax=argmax)

    def plan_table(self, plan) -> str:
        """The bootstrapping plan as text (refimpl.nexus.bert.plan_table), for the server's log."""
        return plan_table_bert(plan)

    def forward(self, ev, bts, cts, n, mask, trace=None, argmax: bool = False, progress=None, weights=None):
        """weights: None or a weight store for this layout (refimpl.nexus.bert.weights_store.WeightStore)."""
        return encrypted_forward(ev, bts, self.model, cts, n, np.asarray(mask), trace=trace, argmax=argmax,
                                 progress=progress, weights=weights)

    def unpack(self, vectors, layout):
        return np.asarray(unpack_output(vectors, layout, self.num_labels))

    def unpack_argmax(self, vectors, layout):
        return np.asarray(unpack_argmax(vectors, layout, self.num_labels))


def load_model(name):
    """'toy' (the stand-in above), a shipped model name, a model directory, or a model object (as is)."""
    if not isinstance(name, str):
        return name
    if name == "toy":
        return ToyModel()
    return NexusBert.from_dir(name) if os.path.isdir(name) else NexusBert.shipped(name)

