"""`refimpl reproduce speed`: the freeDiv speed comparison, with real ABY3 counts (freeDiv §5, Table "speed").

For every attention + activation pair of the paper (Softmax+GeLU, 2Quad+Quad, 2ReLU+ReLU,
Scaling+Quad, softmax-freeDiv+Quad, 2Quad-freeDiv+Quad) at BERT-base size (12 layers,
hidden 768, 12 heads, FFN 3072, vocabulary 28996 of the paper's BERT-base-cased, n = 128; the size
"bert-base-uncased" has the 30522 of the tables committed before, which only the embeddings feel) and at MiniLM size (6 layers,
hidden 384): one encoder layer is run on three parties (secret input, secret weights from
the model owner), and so are the embeddings (the client's one-hot [n, V] times the shared
table, then LayerNorm) and the head ([CLS] row, classifier, logits opened to the client).
The model is counted as embeddings + L layers + head: bytes and rounds add up exactly
(the layers run one after the other), wall times add up as measured.

Per row: bytes (all three parties), rounds (critical path), sends (largest per-party
send count, SPU's "send actions"), wall_s (the 3-thread in-process simulation, the fastest
of --reps runs, as timeit advises on a shared machine; wall_s_median beside it; the layers of
all pairs are run round robin, so that every pair sees the same mix of other jobs; the three
parties share this machine's 2 cores), party_cpu_s (the largest
per-party thread CPU time: what one party would spend on its own machine), LAN and WAN
estimates (refimpl.aby3.network.LAN / WAN: wall + rounds RTT + largest party bytes /
bandwidth; lan_cpu_s the same with party_cpu_s as the compute time, i.e. one machine per
party), and the speedup over Softmax+GeLU with the baseline's GeLU as erf GeLU three
ways: refimpl's (`gelu`: an even polynomial within 3e-4 of the exact GeLU, 2 MSBs), the
NEXUS/PUMA 4-piece polynomial (`gelu_poly4`, 3 MSBs) and SPU's erf recipe (`gelu_as`:
Abramowitz-Stegun 7.1.27 with a Goldschmidt reciprocal, what SPU's BERT pays). Beside it: the paper's
2.26x (SPU, LAN, BERT-base-cased, n = 128; the paper does not say which GeLU its baseline
ran) and SPU 0.9.5's per-layer figures measured on this machine
(refimpl.bench.aby3.SPU_ANCHOR; its Softmax+GeLU uses the exact erf GeLU, HF Flax BERT's
"gelu", and its PUMA row the 4-piece polynomial).
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from refimpl.aby3.encoder import LAYER_KEYS, encoder_layer
from refimpl.aby3.kernels import matmul_u64
from refimpl.aby3.model import attention_kw, secure_embeddings, secure_head, share_tokens
from refimpl.aby3.network import LAN, WAN
from refimpl.aby3.party import simulate
from refimpl.aby3.shares import reveal, share_input
from refimpl.bench.aby3 import SPU_ANCHOR, layer_reference, random_layer_weights
from refimpl.bert.config import BertConfig
from refimpl.cli.progress import Bars
from refimpl.constants import C
from refimpl.progress import or_silent

PAPER_SPEEDUP = C["freediv"]["speedup_vs_softmax_gelu"]  # freeDiv abstract: 2Quad-freeDiv+Quad vs Softmax+GeLU, SPU ABY3, LAN, BERT-base, n = 128
# The paper states 2.26x twice: of Scaling + Quad (§5, "the best speedup of the four prior attentions") and of
# the converted 2Quad-freeDiv + Quad model (abstract, conclusion). Its speed table is an image missing from
# our sources, so which row the printed 2.26 belongs to cannot be checked; refimpl compares it with both.
PAPER_SPEEDUP_ROWS = (("scaling", "quad"), ("2quad-freediv", "quad"))
SPU_LAYER_TARGET = dict(zip(("bytes", "rounds", "wall_s"), SPU_ANCHOR["layer_2quad-freediv_quad"][:3]))  # SPU's layer
PAIRS = [("softmax", "gelu"), ("softmax", "gelu_poly4"), ("softmax", "gelu_as"), ("2quad", "quad"),
         ("2relu", "relu"), ("scaling", "quad"), ("softmax-freediv", "quad"), ("2quad-freediv", "quad")]
BASELINES = {"erf": ("softmax", "gelu"), "poly4": ("softmax", "gelu_poly4"), "spu_erf": ("softmax", "gelu_as")}
REFERENCE_ACT = {"gelu_as": "gelu"}  # SPU's erf recipe approximates the exact GeLU
TARGET = ("2quad-freediv", "quad")
SPU_KEY = {("softmax", "gelu"): "layer_softmax_gelu", ("softmax", "gelu_as"): "layer_softmax_gelu",
           ("softmax", "gelu_poly4"): "layer_softmax_gelu_poly4",
           ("2quad", "quad"): "layer_2quad_quad", ("2relu", "relu"): "layer_2relu_relu",
           ("softmax-freediv", "quad"): "layer_softmax-freediv_quad",
           ("2quad-freediv", "quad"): "layer_2quad-freediv_quad"}


@dataclass(frozen=True)
class Size:
    """A model size of the table: layers, hidden, heads, FFN, vocabulary, sequence length."""

    name: str
    layers: int
    d: int
    heads: int
    ff: int
    vocab: int
    n: int


SIZES = {
    "bert-base": Size("bert-base", 12, 768, 12, 3072, 28996, 128),  # the paper's bert-base-cased (V = 28996)
    "bert-base-uncased": Size("bert-base-uncased", 12, 768, 12, 3072, 30522, 128),  # the tables before 2026-12-06
    "minilm": Size("minilm", 6, 384, 12, 1536, 30522, 128),  # all-MiniLM-L6-v2
    "quick": Size("quick", 2, 128, 2, 512, 1000, 32),  # for tests
}


def run_parties(program, inputs: list, reps: int) -> dict:
    """Run `program(p, *shares)` on three parties `reps` times; the measured part is scope 'op'.

    inputs: (owner, array, raw) triples shared before the clock starts. Returns bytes, rounds,
    sends of 'op', wall and CPU times, and per protocol scope one level below the measured op:
    breakdown_s (wall, max over parties) and parts (bytes of all parties, rounds and calls
    (max over parties), largest party's bytes and wall)."""
    walls, cpus, res, out = [], [], None, None
    for rep in range(reps):
        barrier = threading.Barrier(3)
        spans = [None] * 3

        def prog(p):
            xs = [share_input(p, o, x if p.id == o else None, raw=raw) for o, x, raw in inputs]
            barrier.wait()
            t0, c0 = time.perf_counter(), time.thread_time()
            with p.net.scope("op"):
                y = program(p, *xs)
            spans[p.id] = (t0, time.perf_counter(), time.thread_time() - c0)
            return y

        res = simulate(prog, insecure_seed=rep)
        walls.append(max(s[1] for s in spans) - min(s[0] for s in spans))
        cpus.append(max(s[2] for s in spans))
        out = res.outputs[0]
    st = res.scope("op")
    parts: dict[str, float] = {}  # wall seconds per protocol scope one level below the measured op (max over parties)
    costs: dict[str, dict] = {}
    for net in res.nets:
        for name, sc in net.scopes.items():
            bits = name.split("/")
            if len(bits) == 3 and bits[0] == "op":
                parts[bits[2]] = max(parts.get(bits[2], 0.0), sc.seconds)
                c = costs.setdefault(bits[2], {"bytes": 0, "rounds": 0, "calls": 0, "max_party_bytes": 0})
                c["bytes"] += sc.bytes_sent
                c["rounds"] = max(c["rounds"], sc.rounds)
                c["calls"] = max(c["calls"], sc.calls)
                c["max_party_bytes"] = max(c["max_party_bytes"], sc.bytes_sent)
    for k, c in costs.items():
        c["wall_s"] = parts[k]
    return {"bytes": st["bytes"], "rounds": st["rounds"], "sends": st["sends"],
            "breakdown_s": {k: round(v, 4) for k, v in sorted(parts.items(), key=lambda kv: -kv[1])},
            "parts": costs,
            "max_party_bytes": max(n.scopes["op"].bytes_sent for n in res.nets),
            "wall_s": min(walls), "wall_s_median": statistics.median(walls), "party_cpu_s": min(cpus),
            "output": out}


def _times(row: dict) -> dict:
    row["lan_s"] = LAN.estimate(row["wall_s"], row["rounds"], row["max_party_bytes"])
    row["wan_s"] = WAN.estimate(row["wall_s"], row["rounds"], row["max_party_bytes"])
    row["lan_cpu_s"] = LAN.estimate(row["party_cpu_s"], row["rounds"], row["max_party_bytes"])  # one machine per party
    return row


def measure_layer(size: Size, attention: str, act: str, reps: int, seed: int = 0, keep_parts: bool = False) -> dict:
    """One encoder layer at `size` with secret input and weights; error against float64 (parts kept if asked)."""
    rng = np.random.default_rng(seed)
    w = random_layer_weights(rng, size.d, size.ff)
    x = rng.normal(size=(size.n, size.d))
    mask = np.ones(size.n)
    keys = list(LAYER_KEYS)
    kw = attention_kw(BertConfig(attention=attention))

    def program(p, xs, *ws):
        y = encoder_layer(p, xs, dict(zip(keys, ws)), mask, heads=size.heads, attention=attention, act=act,
                          attention_kw=kw)
        return reveal(p, y, to=0)

    r = run_parties(program, [(0, x, False)] + [(1, w[k], False) for k in keys], reps)
    ref = layer_reference(x, w, mask, size.heads, attention, REFERENCE_ACT.get(act, act))
    r["max_abs_err"] = float(np.max(np.abs(r.pop("output") - ref)))
    if not keep_parts:
        r.pop("parts")
    return _times(r)


def measure_ends(size: Size, reps: int, seed: int = 0) -> tuple[dict, dict]:
    """Embeddings (client's one-hot sharing included) and head (logits opened to the client)."""
    rng = np.random.default_rng(seed)
    cfg = BertConfig(vocab_size=size.vocab, hidden_size=size.d, num_attention_heads=size.heads,
                     intermediate_size=size.ff, num_hidden_layers=1, max_position_embeddings=max(512, size.n))
    emb = {"embeddings.word_embeddings.weight": rng.normal(0, 0.05, (size.vocab, size.d)),
           "embeddings.position_embeddings.weight": rng.normal(0, 0.05, (cfg.max_position_embeddings, size.d)),
           "embeddings.token_type_embeddings.weight": rng.normal(0, 0.05, (2, size.d)),
           "embeddings.LayerNorm.weight": 1 + 0.1 * rng.normal(size=size.d),
           "embeddings.LayerNorm.bias": 0.1 * rng.normal(size=size.d)}
    ids = rng.integers(0, size.vocab, size.n)
    names = list(emb)

    def emb_program(p, *ws):
        toks = share_tokens(p, ids if p.id == 0 else None, size.vocab)
        return secure_embeddings(p, cfg, dict(zip(names, ws)), toks).a[:1, :1]

    e = _times(run_parties(emb_program, [(1, emb[k], False) for k in names], reps))
    e.pop("output")
    e.pop("parts")
    head = {"classifier.weight": rng.normal(0, 0.05, (2, size.d)), "classifier.bias": np.zeros(2)}
    x = rng.normal(size=(size.n, size.d))

    def head_program(p, xs, hw, hb):
        return reveal(p, secure_head(p, cfg, {"classifier.weight": hw, "classifier.bias": hb}, xs, np.ones(size.n)), to=0)

    h = _times(run_parties(head_program, [(0, x, False), (1, head["classifier.weight"], False),
                                    (1, head["classifier.bias"], False)], reps))
    h.pop("output")
    h.pop("parts")
    return e, h


def _best(runs: list[dict]) -> dict:
    """The fastest of several single runs (counts are identical), with the median wall beside it."""
    best = dict(min(runs, key=lambda r: r["wall_s"]))
    best["wall_s_median"] = statistics.median(r["wall_s"] for r in runs)
    best["party_cpu_s"] = min(r["party_cpu_s"] for r in runs)
    best["runs"] = len(runs)
    return _times(best)


def model_row(size: Size, layer: dict, emb: dict, head: dict) -> dict:
    """Embeddings + L layers + head: counts add exactly, times add as measured."""
    L = size.layers
    tot = {k: emb[k] + L * layer[k] + head[k] for k in ("bytes", "rounds", "sends", "max_party_bytes", "wall_s",
                                                           "wall_s_median", "party_cpu_s")}
    return _times(tot)


def thread_settings() -> dict:
    """numba's thread count, the BLAS/OpenMP limits of the environment and the CPU model (runs compare only alike)."""
    env = {k: os.environ[k] for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "MKL_NUM_THREADS") if k in os.environ}
    cpu = Path("/proc/cpuinfo")
    model = next((ln.split(":", 1)[1].strip() for ln in (cpu.read_text().splitlines() if cpu.exists() else [])
                  if ln.startswith("model name")), None)
    return {"numba": numba.get_num_threads(), "env": env, "cpu": model}


def table(sizes: list[str], reps: int, pairs=PAIRS, progress=print, bars=None) -> dict:
    """Measure every pair at every size; return the JSON document. progress: the measured lines as
    they come; bars: refimpl.progress's callback over the layer runs (None: silent)."""
    say, done, total = or_silent(bars), 0, len(sizes) * reps * len(pairs)
    matmul_u64(np.ones((2, 2), np.uint64), np.ones((2, 2), np.uint64))  # compile/load the kernel first
    out = {"table": "speed", "paper": "freeDiv (Liu et al. 2024): 2Quad-freeDiv+Quad 2.26x faster than Softmax+GeLU "
                                      "(SPU ABY3, LAN, BERT-base-cased, n = 128)",
           "paper_speedup": PAPER_SPEEDUP, "lan": LAN.__dict__, "wan": WAN.__dict__, "reps": reps,
           "cores": os.cpu_count(), "threads": thread_settings(), "load_avg_start": os.getloadavg()[0],
           "sizes": {}}
    for sname in sizes:
        size = SIZES[sname]
        t0 = time.perf_counter()
        emb, head = measure_ends(size, reps)
        progress(f"[{sname}] embeddings: {emb['bytes'] / 1e6:.1f} MB, {emb['rounds']} rounds, {emb['wall_s']:.2f} s; "
                 f"head: {head['bytes'] / 1e3:.1f} kB, {head['rounds']} rounds")
        rows = []
        runs: dict[tuple, list[dict]] = {pair: [] for pair in pairs}
        for _ in range(reps):  # round robin: every pair sees the same mix of other jobs on the machine
            for pair in pairs:
                say(f"reproduce speed: {sname} {pair[0]} + {pair[1]}", done, total)
                runs[pair].append(measure_layer(size, *pair, 1))
                done += 1
        for att, act in pairs:
            layer = _best(runs[(att, act)])
            model = model_row(size, layer, emb, head)
            row = {"attention": att, "activation": act, "layer": layer, "model": model}
            key = SPU_KEY.get((att, act))
            if size.name.startswith("bert-base") and key:
                b, acts, wall, err = SPU_ANCHOR[key]
                row["spu_layer"] = {"bytes": b, "send_actions": acts, "wall_s": wall, "max_abs_err": err,
                                    "source": "anchor: refimpl.bench.aby3.SPU_ANCHOR (SPU 0.9.5, default compiler "
                                              "options; softmax-freeDiv re-measured by refimpl)"}
            rows.append(row)
            progress(f"[{sname}] {att} + {act}: layer {layer['bytes'] / 1e6:.1f} MB, {layer['rounds']} rounds, "
                     f"{layer['wall_s']:.2f} s (err {layer['max_abs_err']:.1e}); model {model['bytes'] / 1e6:.0f} MB, "
                     f"{model['rounds']} rounds, LAN {model['lan_s']:.1f} s, WAN {model['wan_s']:.1f} s")
        by = {(r["attention"], r["activation"]): r for r in rows}
        for r in rows:
            for tag, base in BASELINES.items():
                if base in by:
                    b = by[base]
                    r[f"speedup_vs_{tag}"] = {
                        k: round(b["model"][k] / r["model"][k], 3)
                        for k in ("lan_s", "lan_cpu_s", "wan_s", "wall_s", "bytes", "rounds")}
                    r[f"speedup_vs_{tag}"]["layer_lan_s"] = round(b["layer"]["lan_s"] / r["layer"]["lan_s"], 3)
            if "spu_layer" in r:
                for tag, base in BASELINES.items():
                    bk = SPU_KEY[base]
                    r["spu_layer"][f"wall_speedup_vs_{tag}"] = round(SPU_ANCHOR[bk][2] / r["spu_layer"]["wall_s"], 3)
        out["sizes"][sname] = {"size": size.__dict__, "embeddings": emb, "head": head, "rows": rows,
                               "seconds": round(time.perf_counter() - t0, 1)}
        if size.name.startswith("bert-base") and TARGET in by:
            out["sizes"][sname]["targets"] = targets(by[TARGET])
    say("reproduce speed", total, total)
    out["load_avg_end"] = os.getloadavg()[0]
    return out


def targets(row: dict) -> dict:
    """The issue's targets for 2Quad-freeDiv+Quad at BERT-base, each with its measured value."""
    lay, sp = row["layer"], row.get("speedup_vs_erf", {})
    return {
        "bytes_per_layer_le_spu": [lay["bytes"], SPU_LAYER_TARGET["bytes"], lay["bytes"] <= SPU_LAYER_TARGET["bytes"]],
        "rounds_per_layer_le_spu": [lay["rounds"], SPU_LAYER_TARGET["rounds"], lay["rounds"] <= SPU_LAYER_TARGET["rounds"]],
        "wall_per_layer_lt_spu": [lay["wall_s"], SPU_LAYER_TARGET["wall_s"], lay["wall_s"] < SPU_LAYER_TARGET["wall_s"]],
        "lan_speedup_vs_erf_ge_paper": [sp.get("lan_s"), PAPER_SPEEDUP, (sp.get("lan_s") or 0) >= PAPER_SPEEDUP],
        "lan_speedup_vs_poly4": row.get("speedup_vs_poly4", {}).get("lan_s"),
        "lan_speedup_vs_spu_erf": row.get("speedup_vs_spu_erf", {}).get("lan_s"),
    }


def render(doc: dict) -> str:
    """The table as text (Markdown), one block per size."""
    lines = []
    for sname, s in doc["sizes"].items():
        z = s["size"]
        lines.append(f"### {sname}: {z['layers']} layers, hidden {z['d']}, n = {z['n']}, vocabulary {z['vocab']} "
                     f"(model = embeddings + {z['layers']} layers + head)")
        lines.append("")
        lines.append("| attention + activation | layer MB | layer rounds | layer s | model MB | model rounds | "
                     "LAN s | WAN s | LAN speedup vs erf / poly4 / SPU-erf | SPU layer MB / acts / s |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in s["rows"]:
            lay, m = r["layer"], r["model"]
            spu = r.get("spu_layer")
            spu_s = f"{spu['bytes'] / 1e6:.0f} / {spu['send_actions']} / {spu['wall_s']:.1f}" if spu else "-"
            sp = " / ".join(f"{r.get('speedup_vs_' + t, {}).get('lan_s', 0):.2f}x" for t in BASELINES)
            lines.append(f"| {r['attention']} + {r['activation']} | {lay['bytes'] / 1e6:.1f} | {lay['rounds']} | "
                         f"{lay['wall_s']:.2f} | {m['bytes'] / 1e6:.0f} | {m['rounds']} | {m['lan_s']:.1f} | "
                         f"{m['wan_s']:.1f} | {sp} | {spu_s} |")
        lines.append("")
        lines.append(f"embeddings (one-hot [n, V] shared by the client, matmul, LayerNorm): "
                     f"{s['embeddings']['bytes'] / 1e6:.1f} MB, {s['embeddings']['rounds']} rounds, "
                     f"{s['embeddings']['wall_s']:.2f} s; head: {s['head']['bytes'] / 1e3:.1f} kB, "
                     f"{s['head']['rounds']} rounds")
        if "targets" in s:
            lines.append(f"targets (2Quad-freeDiv+Quad): {json.dumps(s['targets'])}")
        lines.append("")
    for sname, s in doc["sizes"].items():
        by = {(r["attention"], r["activation"]): r for r in s["rows"]}
        got = [f"{a} + {b} {by[(a, b)]['speedup_vs_erf']['lan_s']:.2f}x" for a, b in PAPER_SPEEDUP_ROWS
               if (a, b) in by and "speedup_vs_erf" in by[(a, b)]]
        if got:
            lines.append(f"[{sname}] the paper's {PAPER_SPEEDUP}x is said of Scaling + Quad (its speed table) and of "
                         f"the converted 2Quad-freeDiv + Quad model (abstract, conclusion); refimpl, LAN vs erf: "
                         + ", ".join(got))
    lines.append("Softmax + GeLU baseline: refimpl's exp clamps (a ReLU before the squarings; SPU's Taylor exp "
                 "has none) and its reciprocal takes 3 Goldschmidt iterations (SPU's default: 2), so the baseline "
                 "is dearer than SPU's and the speedups above gain by it (`refimpl reproduce freediv-profile` "
                 "measures both: the clamp is about a fifth of the Softmax bytes).")
    lines.append(f"paper: {doc['paper']}; SPU 0.9.5 on this machine (anchor, per layer): Softmax+GeLU(erf) -> "
                 f"2Quad-freeDiv+Quad {SPU_ANCHOR['layer_softmax_gelu'][2] / SPU_ANCHOR['layer_2quad-freediv_quad'][2]:.2f}x, "
                 f"PUMA (poly4 GeLU) -> {SPU_ANCHOR['layer_softmax_gelu_poly4'][2] / SPU_ANCHOR['layer_2quad-freediv_quad'][2]:.2f}x "
                 "(in-memory wall)")
    return "\n".join(lines)


def add_arguments(ap) -> None:
    """The options of `refimpl reproduce speed`."""
    ap.add_argument("--quick", action="store_true", help="a small model (2 layers, hidden 128, n = 32) only")
    ap.add_argument("--sizes", default="bert-base,minilm", help="comma-separated: bert-base, minilm, quick")
    ap.add_argument("--reps", type=int, default=None, help="runs per item, median taken (default 3; --quick 1)")
    ap.add_argument("--json", default=None, help="write the JSON document here (e.g. results/aby3/aby3_speed.json)")


def run(args) -> int:
    """`refimpl reproduce speed [--quick] [--sizes bert-base,minilm] [--reps R] [--json F]`."""
    argv = args.argv[2:]  # the command line after `refimpl reproduce speed`, for the record
    sizes = ["quick"] if args.quick else [s.strip() for s in args.sizes.split(",") if s.strip()]
    bad = [s for s in sizes if s not in SIZES]
    if bad:
        raise SystemExit(f"refimpl reproduce speed: unknown size {bad[0]!r}; choose from {sorted(SIZES)}")
    reps = args.reps or (1 if args.quick else 3)
    if reps < 1:
        raise SystemExit("refimpl reproduce speed: --reps must be >= 1")
    with Bars() as bars:  # on stderr, on a terminal only
        doc = table(sizes, reps, bars=bars)
    doc["command"] = "refimpl reproduce speed " + " ".join(argv)
    print(render(doc))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    return 0
