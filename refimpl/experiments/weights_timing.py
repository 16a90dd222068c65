"""Weights encoded once, measured: the forward with and without a weight store (refimpl.nexus.bert.weights_store),
side by side in one run.

small_ring: the tiny 2-layer models (hidden 32, 2 heads, FFN 64; both kinds) on a small insecure
ring with oracle refreshes, each query run alternately with and without the store, the same
ciphertexts out: the linear pieces' wall seconds (qkv, out, ffn1, ffn2), the whole forward's wall
and process CPU seconds (CPU: less sensitive to a loaded machine), the plaintexts encoded and the
CPU seconds spent encoding them, the store's size and the peak RSS.
bertbase_block: one BERT-base-size P x P block (128 x 128 weights, 128 diagonals) of the QKV
projection at N = 2^16 (`128-2^16-dense19`, the level the plan gives QKV), `Forward.linear` with
and without the store (the store opened and read once before, as a server would: page cache warm),
plus the store's bytes per diagonal; a BERT-base layer's encoding time follows from its count of
diagonals.
"""

from __future__ import annotations

import gc
import math
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from ..bert.config import BertConfig
from ..bert.model import init_params
from ..ckks import Decryptor, Encoder, Encryptor, Evaluator, KeyGenerator
from ..ckks.bootstrap.bootstrapper import bootstrap_parameters, bootstrap_preset
from ..ckks.bootstrap.oracle import OracleBootstrapper
from ..measure import peak_rss_mib
from ..nexus import bert as nb
from ..nexus.bert import weights_store as ws
from ..ring.sampling import RandomSource
from .bertbase.plan import (
    blocks,
    config,
    shipped_ranges,
    synthetic_model,
    widest_ranges,
)
from .bertbase.timer import BlockTimer

LINEAR_PIECES = ("qkv", "out", "ffn1", "ffn2")


def tiny_model(attention: str, activation: str, layers: int = 2, seed: int = 1) -> nb.NexusModel:
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=16, attention=attention, activation=activation)
    rng = np.random.default_rng(seed)
    params = init_params(cfg, rng, dtype=np.float64)
    for k in params:
        if "LayerNorm" not in k and "embeddings" not in k:
            params[k] = params[k] * 10 if k.endswith("weight") else rng.normal(0, 0.1, params[k].shape)
    return nb.NexusModel(cfg, params)


def small_ring(logN: int = 12, levels_after: int = 20, repeats: int = 2, n: int = 6, log=print) -> list[dict]:
    """Both tiny models on N = 2^logN, n tokens (the last one padding): per-query seconds with and without
    the store, alternated. n = N / 128 fills every token window (hidden 32: window 64), the sparse store."""
    ids = np.array([3, 7, 11, 19, 23, 2, 5, 9, 13, 17, 29, 31, 37, 41, 43, 47])[:n]
    mask = np.r_[np.ones(n - 1, dtype=int), 0]
    p, rc = bootstrap_parameters(2**logN, levels_after=levels_after, encapsulation_h=32, num_p=3, insecure=True)
    top = p.L - rc.depth
    kg = KeyGenerator(p, RandomSource.insecure_seeded(5))
    sk = kg.secret_key()
    enc = Encoder(p)
    out = []
    for att, act in (("2quad-freediv", "quad"), ("softmax", "gelu")):
        model = tiny_model(att, act)
        cfg = model.config
        ev = Evaluator(p, kg.evaluation_keys(sk, rotations=nb.rotation_steps(cfg, len(ids), p.slots)))
        spent = {"calls": 0, "cpu_s": 0.0}
        # every plaintext the forward encodes (diagonals, masks, biases, constants)
        ev.encoder.encode = timed(ev.encoder.encode, spent)
        lay = nb.input_layout(cfg, len(ids), p.slots)
        E = Encryptor(kg.public_key(sk), RandomSource.insecure_seeded(7))
        cts = [E.encrypt(enc.encode(v, level=top)) for v in nb.pack_input(nb.client_embed(cfg, model.params, ids, mask), lay)]
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            manifest = ws.precompute(model, p, len(ids), d, input_level=top, bootstrap_level=top)
            pre_s = time.perf_counter() - t
            t = time.perf_counter()
            store = ws.WeightStore.open(d, p, model)
            open_s = time.perf_counter() - t
            runs = {"without": [], "with": []}
            outs = {}
            for _ in range(repeats):
                for which in ("without", "with"):
                    trace = []
                    bts = OracleBootstrapper(sk, output_level=top, rng=RandomSource.insecure_seeded(6))
                    spent.update(calls=0, cpu_s=0.0)
                    cpu = time.process_time()
                    res = nb.encrypted_forward(ev, bts, model, cts, len(ids), mask, trace=trace,
                                               weights=store if which == "with" else None)
                    cpu = time.process_time() - cpu
                    outs[which] = res[0]
                    lin = sum(r["seconds"] for r in trace if r["block"].split(".")[-1] in LINEAR_PIECES)
                    runs[which].append({"linear_s": lin, "forward_s": sum(r["seconds"] for r in trace),
                                        "forward_cpu_s": cpu, "encodes": spent["calls"], "encode_cpu_s": spent["cpu_s"]})
            same = all(np.array_equal(a, b) for a, b in zip(outs["with"].c, outs["without"].c))
            logits = nb.unpack_output([enc.decode(Decryptor(sk).decrypt(outs["with"])).real], lay, 2)
            ref = nb.plaintext_reference(model, ids, mask, approximate=True)["logits"]
            med = {w: {k: float(np.median([r[k] for r in rs]))
                       for k in ("linear_s", "forward_s", "forward_cpu_s", "encodes", "encode_cpu_s")}
                   for w, rs in runs.items()}
            row = {"model": f"{att} + {act}", "N": p.N, "layers": cfg.num_hidden_layers, "n": len(ids),
                   "plaintexts": sum(f["count"] for f in manifest["files"].values()),
                   "strides": sorted({f["stride"] for f in manifest["files"].values()}),
                   "store_bytes": manifest["total_bytes"], "precompute_s": round(pre_s, 2), "open_s": round(open_s, 3),
                   "runs": runs, "median": med,
                   "saved_per_query_s": round(med["without"]["forward_s"] - med["with"]["forward_s"], 3),
                   "saved_per_query_cpu_s": round(med["without"]["forward_cpu_s"] - med["with"]["forward_cpu_s"], 3),
                   "encode_cpu_saved_s": round(med["without"]["encode_cpu_s"] - med["with"]["encode_cpu_s"], 3),
                   "linear_speedup": round(med["without"]["linear_s"] / med["with"]["linear_s"], 2),
                   "same_ciphertexts": bool(same), "hits": store.hits, "misses": store.misses,
                   "logits_err": float(np.max(np.abs(logits - ref))), "peak_rss_mib": round(peak_rss_mib())}
            log(row)
            out.append(row)
            del store
            gc.collect()
    return out


def bertbase_block(model_name: str = "2quad-freediv-quad", repeats: int = 2, workdir: str | None = None,
                   log=print) -> dict:
    """One 128 x 128 block of the QKV projection at N = 2^16, with and without the store (see module docstring)."""
    params, rc = bootstrap_preset("128-2^16-dense19")
    cfg = config(model_name)
    model = synthetic_model(cfg, widest_ranges(shipped_ranges(model_name), cfg.num_hidden_layers))
    t = BlockTimer(params, rc, model, 128)
    lay = t.lay
    P = lay.chunk
    level = t.row("qkv")["level_in"]
    log(f"BERT-base block: P = {P}, level {level}, peak RSS {peak_rss_mib():.0f} MiB")
    rng = np.random.default_rng(0)
    W, b = rng.normal(0, 1 / math.sqrt(P), (P, P)), rng.normal(0, 0.1, P)
    x = rng.normal(0, 1, (lay.n, P))
    steps = sorted(nb.linear_steps(P, nb.bsgs_baby(P, 1, 1)))  # the rotations of a 1 -> 1 chunk product
    fw = t.forward(steps, level)
    ct = t.encrypt(nb.pack(x, lay)[0], level)
    rec = ws.Recorder(model, params, lay, t.top, t.top)
    rec.linear([rec.ev.shadow(level, ct.scale)], W, b, "block")
    d = workdir or tempfile.mkdtemp(prefix="weights_block_")
    t0 = time.perf_counter()
    manifest = ws.write_store(d, params, rec.recorded, {"model_checksum": "one block", "layout": ws.layout_dict(lay)})
    write_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store = ws.WeightStore.open(d, params, model_sum="one block")
    open_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for f in manifest["files"]:
        np.asarray(np.load(f"{d}/{f}", mmap_mode="r")).sum()  # read once: the page cache a running server would have
    warm_s = time.perf_counter() - t0
    runs = {"without": [], "with": []}
    cpu = {"without": [], "with": []}
    ys = {}
    for _ in range(repeats):
        for which in ("without", "with"):
            fw.weights = store if which == "with" else None
            t0, c0 = time.perf_counter(), time.process_time()
            ys[which] = fw.linear([ct], W, b, "block")[0]
            runs[which].append(time.perf_counter() - t0)
            cpu[which].append(time.process_time() - c0)
            log(f"{which} store: {runs[which][-1]:.2f} s wall, {cpu[which][-1]:.2f} s CPU")
    same = all(np.array_equal(a, c) for a, c in zip(ys["with"].c, ys["without"].c))
    err = float(np.max(np.abs(nb.unpack([t.decrypt(ys["with"])], lay, P) - (x @ W.T + b))))
    count = sum(f["count"] for f in manifest["files"].values())
    med = {k: float(np.median(v)) for k, v in runs.items()}
    med_cpu = {k: float(np.median(v)) for k, v in cpu.items()}
    per_diag = (med_cpu["without"] - med_cpu["with"]) / count  # CPU: the wall time swings with the machine's load
    diags_per_layer = sum(layer_diagonals(lay).values())
    row = {"N": params.N, "level": level, "diagonals": count, "store_bytes": manifest["total_bytes"],
           "bytes_per_diagonal": manifest["total_bytes"] // count, "write_s": round(write_s, 2),
           "open_verify_s": round(open_s, 2), "first_read_s": round(warm_s, 2), "runs_s": runs, "median_s": med,
           "cpu_s": cpu, "median_cpu_s": med_cpu, "saved_per_diagonal_cpu_s": round(per_diag, 4), "same_ciphertexts": bool(same), "max_err": err,
           "hits": store.hits, "bertbase_layer_diagonals": diags_per_layer,
           "bertbase_layer_saved_cpu_s_at_this_level": round(per_diag * diags_per_layer, 1),
           "bertbase_layer_store_gib_at_this_level": round(diags_per_layer * manifest["total_bytes"] / count / 2**30, 1),
           "peak_rss_mib": round(peak_rss_mib())}
    log(row)
    return row


def period_w_vector(slots: int, window: int, chunk: int, rng, shift: int = 0) -> np.ndarray:
    """A diagonal as the forward encodes it with every token window active: P = chunk values on the
    first P slots of each window, rolled by a giant step (period `window` in the slots)."""
    v = np.zeros((slots // window, window))
    v[:, :chunk] = rng.normal(0, 0.05, chunk)
    return np.roll(v.ravel(), shift)


def encode_vs_expand(preset: str = "128-2^16-dense19", levels=(19, 14, 13, 10, 9, 7, 4, 3), reps: int = 5,
                     window: int = 256, log=print) -> list[dict]:
    """Per diagonal at N = 2^16 (BERT-base at n = 128: window 256, P = 128), side by side in one run,
    process CPU seconds (the machine's load swings the wall time) and bytes:
      encode        Encoder.encode of the slot vector at the level of a linear piece (no store);
      read_v1       a copy of the stored NTT residues from a memory-mapped file (format version 1);
      ntt_full      format version 2 at stride 1: the N rounded coefficients, their residues and the full NTT;
      scatter_ntt   the 2w kept coefficients scattered into N, residues, full NTT;
      expand        the 2w kept coefficients: residues, a 2w-point NTT, each output repeated N/2w times
                    (weights_store.expand, what the store does);
    every memory-mapped file read once before (the page cache a running server has); each result is
    checked equal to the encoding bit for bit. precompute_cpu_s: the store's one-time cost per diagonal
    (the N coefficients as Encoder.encode rounds them, their stride)."""
    params, _ = bootstrap_preset(preset)
    enc, N = Encoder(params), params.N
    rng = np.random.default_rng(0)
    vs = [period_w_vector(params.slots, window, window // 2, rng, shift=8 * j) for j in range(reps)]
    out = []
    with tempfile.TemporaryDirectory() as d:
        for level in levels:
            scale = float(params.q[level])
            enc.encode(vs[0], level=level, scale=scale)  # warm-up (numba, FFT plans)
            ws.expand(np.zeros(2 * window, dtype=np.int64), N // (2 * window), level, params)
            t = time.process_time()
            pts = [enc.encode(v, level=level, scale=scale).poly for v in vs]
            encode_s = (time.process_time() - t) / reps
            t = time.process_time()
            coeffs = [ws.integer_coefficients(params, v, scale) for v in vs]
            strides = [ws.stride_of(c) for c in coeffs]
            pre_s = (time.process_time() - t) / reps
            s = min(strides)
            files = {"read_v1": np.stack(pts), "ntt_full": np.stack(coeffs).astype(np.int64),
                     "sparse": np.stack([c[::s] for c in coeffs]).astype(np.int64)}
            mm = {}
            for k, a in files.items():
                np.save(f"{d}/{k}.npy", a)
                mm[k] = np.load(f"{d}/{k}.npy", mmap_mode="r")
                np.asarray(mm[k]).sum()  # page cache warm
            ways = read_ways(mm, params, level, s)
            row = {"level": level, "stride": s, "kept_coefficients": N // s, "encode_cpu_s": round(encode_s, 5),
                   "precompute_cpu_s": round(pre_s, 5),
                   "bytes": {"read_v1": (level + 1) * N * 8, "ntt_full": N * 8, "scatter_ntt": N // s * 8,
                             "expand": N // s * 8}}
            for k, f in ways.items():
                f(0)
                t = time.process_time()
                got = [f(j) for j in range(reps)]
                row[f"{k}_cpu_s"] = round((time.process_time() - t) / reps, 5)
                row[f"{k}_equals_encode"] = all(np.array_equal(g, p) for g, p in zip(got, pts))
            row["encode_over_expand"] = round(encode_s / max(row["expand_cpu_s"], 1e-9), 1)
            log(row)
            out.append(row)
            mm.clear()  # drop the memory maps before the next level reuses the file names
    return out


def timed(f, spent: dict):
    """f, counting its calls in spent["calls"] and adding their process CPU seconds to spent["cpu_s"]."""
    def wrapped(*a, **kw):
        t = time.process_time()
        try:
            return f(*a, **kw)
        finally:
            spent["calls"] += 1
            spent["cpu_s"] += time.process_time() - t
    return wrapped


def read_ways(mm: dict, params, level: int, s: int) -> dict:
    """The four ways of `encode_vs_expand` to get diagonal j's NTT residues from the memory maps mm."""
    basis, N = params.q_basis(level), params.N
    return {
        "read_v1": lambda j: np.array(mm["read_v1"][j]),
        "ntt_full": lambda j: ws.expand(mm["ntt_full"][j], 1, level, params),
        "scatter_ntt": lambda j: params.ctx.ntt(params.ctx.from_int(scatter(mm["sparse"][j], s, N), basis), basis),
        "expand": lambda j: ws.expand(mm["sparse"][j], s, level, params),
    }


def scatter(kept: np.ndarray, stride: int, N: int) -> np.ndarray:
    """The N coefficients with kept[j] at stride j, zeros elsewhere (int64)."""
    full = np.zeros(N, dtype=np.int64)
    full[::stride] = kept
    return full


def bertbase_layer_store(model_name: str = "2quad-freediv-quad", layer: int = 0, n: int = 128,
                         preset: str = "128-2^16-dense19", workdir: str | None = None, log=print) -> dict:
    """The store of one layer of a synthetic BERT-base (random weights, the shipped model's widest ranges)
    at n tokens: the forward recorded on the level-only evaluator (all 12 layers, the plan's levels),
    layer `layer`'s plaintexts written; its bytes, strides, the diagonals per level, the write and
    open (SHA-256 of every file) times; the store is removed afterwards unless workdir is given."""
    params, rc = bootstrap_preset(preset)
    cfg = config(model_name)
    rng = np.random.default_rng(0)
    model = nb.NexusModel(cfg, init_params(cfg, rng, dtype=np.float64),
                          ranges=widest_ranges(shipped_ranges(model_name), cfg.num_hidden_layers))
    top = params.L - rc.depth
    t0 = time.process_time()
    lay, rec = ws.record(model, params, n, top, top, head_rows=True)
    record_s = time.process_time() - t0
    mine = {k: v for k, v in rec.items() if k[0].startswith(f"L{layer}.")}
    d = workdir or tempfile.mkdtemp(prefix="weights_layer_")
    t0, w0 = time.process_time(), time.perf_counter()
    m = ws.write_store(d, params, mine, {"model_checksum": ws.model_checksum(model), "n": n, "head_rows": True,
                                         "layout": ws.layout_dict(lay), "input_level": top})
    write_cpu, write_wall = time.process_time() - t0, time.perf_counter() - w0
    t0 = time.perf_counter()
    store = ws.WeightStore.open(d, params, model_sum=m["model_checksum"])
    open_s = time.perf_counter() - t0
    count = sum(f["count"] for f in m["files"].values())
    per_level = {}
    for f in m["files"].values():
        per_level[f["level"]] = per_level.get(f["level"], 0) + f["count"]
    row = {"model": model_name, "N": params.N, "n": n, "layer": layer, "diagonals": count,
           "diagonals_per_level": dict(sorted(per_level.items())),
           "files": {k: {"level": f["level"], "count": f["count"], "stride": f["stride"], "bytes": f["bytes"]}
                     for k, f in m["files"].items()},
           "store_bytes": m["total_bytes"], "manifest_bytes": Path(d, ws.MANIFEST).stat().st_size,
           "record_all_layers_cpu_s": round(record_s, 1), "write_cpu_s": round(write_cpu, 1),
           "write_wall_s": round(write_wall, 1), "open_verify_s": round(open_s, 2), "hits_possible": len(store.index),
           "peak_rss_mib": round(peak_rss_mib())}
    if workdir is None:
        shutil.rmtree(d)
    log(row)
    return row


def layer_diagonals(lay) -> dict[str, int]:
    """Diagonals per linear piece of one layer (all nonzero, as with trained or random weights): Q and K
    one output chunk per head (refimpl.nexus.bert.attention.head_projections) when the layout has a row per
    head, else as V; V and the output projection d x d, FFN1 and FFN2 d x intermediate; P per block."""
    P, ch, ci = lay.chunk, lay.chunks(lay.d), lay.chunks(lay.intermediate)
    qk = 2 * (lay.heads * ch if lay.head_rows else ch * ch) * P
    return {"qkv": qk + ch * ch * P, "out": ch * ch * P, "ffn1": ch * ci * P, "ffn2": ci * ch * P}


def bertbase_saving(rows: list[dict], preset: str = "128-2^16-dense19", n: int = 128) -> dict:
    """Per-query CPU seconds the store saves at BERT-base, both models, from the per-diagonal encode and
    expand times of `rows` (encode_vs_expand, one run) at the level each linear piece of each of the 12
    layers runs at in the plan (experiments.bertbase.plan.blocks); bytes of the store per model (4 KiB per
    diagonal at n = 128)."""
    params, rc = bootstrap_preset(preset)
    at = {r["level"]: r for r in rows}
    out = {}
    for name in ("2quad-freediv-quad", "softmax-gelu"):
        cfg = config(name)
        plan = blocks(synthetic_model(cfg, widest_ranges(shipped_ranges(name), cfg.num_hidden_layers)), n, (params, rc))
        counts = layer_diagonals(plan["layout"])
        enc = exp = 0.0
        levels = {}
        for r in plan["rows"]:
            layer, _, piece = r["block"].partition(".")
            if piece in counts and layer[0] == "L":  # L<i>.qkv, .out, .ffn1, .ffn2 (not L<i>.ln1.out)
                row = at[r["level_in"]]  # KeyError: a level the encode_vs_expand run did not measure
                levels.setdefault(piece, []).append(r["level_in"])
                enc += counts[piece] * row["encode_cpu_s"]
                exp += counts[piece] * row["expand_cpu_s"]
        diags = sum(counts.values())
        out[name] = {"diagonals_per_layer": counts, "levels_per_layer": levels,
                     "encode_cpu_s_per_query": round(enc, 1), "expand_cpu_s_per_query": round(exp, 1),
                     "saved_cpu_s_per_query": round(enc - exp, 1),
                     "store_bytes_per_layer": diags * at[19]["bytes"]["expand"],
                     "store_bytes_12_layers": cfg.num_hidden_layers * diags * at[19]["bytes"]["expand"],
                     "version1_bytes_12_layers": sum(counts[p] * at[lv]["bytes"]["read_v1"]
                                                     for p, lvs in levels.items() for lv in lvs)}
    return out
