"""BERT-base at n = 128: key switches, bootstraps and plaintext products per block, counted (ours).

The forward's own code (refimpl.nexus.bert.forward, head_rows layout, the plan of
refimpl.ckks.bootstrap.placement) runs on refimpl.nexus.counting.DryEvaluator: no arithmetic, levels
and scales exact, every operation counted; refreshes on a DryBootstrapper. Each piece's counts
come from the forward's trace and are grouped into the block kinds of `plan.KINDS`. Weights are
random of BERT-base shape (one layer's arrays shared by every layer: the counts depend only on
which plaintext diagonals are non-zero, and random weights have none zero).

Published figures beside (THOR, ePrint 2024/1881, public code Desilo/THOR; counted per BERT-base
layer of Softmax + GELU by running its layer code on a counting evaluator): `THOR_KEY_SWITCHES`.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np

from ...bert.model import param_shapes
from ...nexus import bert as nb
from ...nexus.counting import DryBootstrapper, DryEvaluator, key_bytes
from .cost import CountingStore
from .plan import KINDS, kind_of

COUNTED = ("key_switches", "rotations", "relinearizations", "conjugations", "subs", "ct_mults", "pt_mults", "encodes",
           "rescales")
# THOR per BERT-base layer (Softmax + GELU): key switches and bootstraps per block kind
THOR_KEY_SWITCHES = {"QKV": 196, "Q K^T": 471, "Softmax": 575, "P V": 268, "output projection": 126, "FFN1": 240,
                     "FFN2": 296, "GELU": 632, "residual + LayerNorm 1": 55, "residual + LayerNorm 2": 56}
THOR_LAYER = {"key_switches": 2915, "bootstraps": 24, "LayerNorms": 111}
# refimpl per BERT-base layer before this counter's changes (same counting; the table)
BEFORE = {"softmax-gelu": {"key_switches": 20638, "bootstraps": 146, "QKV": 414, "Q K^T": 7662, "Softmax": 2292,
                           "P V": 7662, "output projection": 138, "FFN1": 264, "FFN2": 426, "GELU": 1680,
                           "LayerNorms": 100},
          "2quad-freediv-quad": {"key_switches": 16711, "bootstraps": 11}}


def random_weights(cfg, seed: int = 0, *, shared: bool = True, embeddings: bool = False, std: float = 0.05) -> dict:
    """Random weights of cfg's shapes. shared: every encoder layer holds the same arrays (memory of one
    layer; enough for counting); False: each layer its own (a real run's numbers). embeddings: also the
    client's embedding tables (refimpl.nexus.bert.client_embed), for a run from token ids. std: of every
    entry (LayerNorm weights 1 + that); BERT initialises with 0.02."""
    rng = np.random.default_rng(seed)
    cache: dict = {}
    params = {}
    for name, shape in param_shapes(cfg, head=True).items():
        if name.startswith("embeddings.") and not embeddings:
            continue  # the client's (refimpl.nexus.bert.client_embed)
        local = name.split(".", 3)[3] if shared and name.startswith("encoder.layer.") else name
        if local not in cache:
            cache[local] = rng.normal(0.0, std, shape) + (1.0 if "LayerNorm.weight" in name else 0.0)
        params[name] = cache[local]
    return params


def counting_model(model: nb.NexusModel) -> nb.NexusModel:
    """`model` (its config and ranges) with random weights of its shapes (the synthetic model holds a classifier only)."""
    return nb.NexusModel(model.config, random_weights(model.config), ranges=model.get_ranges(),
                         options=dict(model.options))


def count(model: nb.NexusModel, n: int, params, top: int) -> dict:
    """Run the encrypted forward of `model` on the dry evaluator from level `top` (the bootstrap output level).

    Returns {"pieces": the trace rows with their counts, "per_layer": [per layer: {kind: counts}, ...],
    "head": counts, "total": counts, "seconds": the dry run's wall time, "ops_per_layer" / "ops_head": the
    operations by level (DryEvaluator.ops), "store_per_layer" / "store_head": the plaintexts a weight store
    would give, by level (refimpl.experiments.bertbase.cost)}."""
    ev = DryEvaluator(params)
    bts = DryBootstrapper(params, top)
    store = CountingStore()
    lay = nb.input_layout(model.config, n, params.slots, head_rows=True)
    cts = [ev.fresh(top) for _ in range(lay.chunks(lay.d))]
    trace: list = []
    snaps = [(Counter(), Counter())]
    t = time.perf_counter()
    nb.encrypted_forward(ev, bts, model, cts, n, np.ones(n), trace=trace, head_rows=True, weights=store,
                         on_layer=lambda i, x: snaps.append((Counter(ev.ops), Counter(store.hits))))
    seconds = time.perf_counter() - t
    snaps.append((Counter(ev.ops), Counter(store.hits)))
    diffs = [(dict(b[0] - a[0]), dict(b[1] - a[1])) for a, b in zip(snaps, snaps[1:])]
    layers = model.config.num_hidden_layers
    per_layer = [dict() for _ in range(layers)]
    head: dict = {}
    for row in trace:
        c = dict(row.get("counts", {}))
        c["bootstraps"] = row["bootstraps"]
        if row["block"].startswith("L"):
            i = int(row["block"].split(".")[0][1:])
            dst = per_layer[i].setdefault(kind_of(row["block"]), {})
        else:
            dst = head
        for k in (*COUNTED, "bootstraps"):
            dst[k] = dst.get(k, 0) + c.get(k, 0)
    for blocks in per_layer:
        blocks["layer"] = {k: sum(b[k] for kd, b in blocks.items() if kd != "layer") for k in (*COUNTED, "bootstraps")}
    total = {k: sum(b["layer"][k] for b in per_layer) + head.get(k, 0) for k in (*COUNTED, "bootstraps")}
    if total["bootstraps"] != bts.calls:
        raise RuntimeError(f"internal: the trace counts {total['bootstraps']} refreshes, the bootstrapper {bts.calls}")
    return {"per_layer": per_layer, "head": head, "total": total, "seconds": round(seconds, 2), "n": n,
            "ops_per_layer": [d[0] for d in diffs[:-1]], "ops_head": diffs[-1][0],
            "store_per_layer": [d[1] for d in diffs[:-1]], "store_head": diffs[-1][1],
            "galois_keys": {"count": len(ev.galois), "gib_b": round(key_bytes(params, ev.galois) / 2**30, 2),
                            "gib_expanded": round(key_bytes(params, ev.galois, with_a=True) / 2**30, 2),
                            "by_level": dict(Counter(ev.galois.values()))}}


def kinds_in_order(per_layer: list[dict]) -> list[str]:
    seen = {k for b in per_layer for k in b if k != "layer"}
    return [k for _, k in KINDS if k in seen]


def counts_table(name: str, res: dict, layer: int, timed: list[dict] | None = None) -> str:
    """A markdown table of one layer's counts per block kind, beside the timed seconds (if any), refimpl before
    and THOR (Softmax + GELU only)."""
    blocks = res["per_layer"][layer]
    sec = {r["kind"]: r["seconds"] for r in (timed or [])}
    before = BEFORE.get(name, {})
    thor = name == "softmax-gelu"
    head = "| block | key switches | (rotations + relin. + conj.) | bootstraps | ct-pt products | encodings | seconds |"
    head += " before | THOR |" if thor else " before |"
    lines = [f"{name}, layer {layer} of {len(res['per_layer'])} (n = {res['n']}):", "", head,
             "|" + "---|" * (head.count("|") - 1)]
    for kind in [*kinds_in_order(res["per_layer"]), "layer"]:
        b = blocks[kind]
        s = sec.get(kind, "") if kind != "layer" else (round(sum(sec.values()), 1) if sec else "")
        row = (f"| {kind} | {b['key_switches']:,} | ({b['rotations']:,} + {b['relinearizations']:,} + "
               f"{b['conjugations']:,}) | {b['bootstraps']} | {b['pt_mults']:,} | {b['encodes']:,} | {s} |")
        key = "key_switches" if kind == "layer" else kind
        row += f" {before.get(key, '')} |"
        if thor:
            row += f" {THOR_LAYER['key_switches'] if kind == 'layer' else THOR_KEY_SWITCHES.get(kind, '')} |"
        lines.append(row)
    return "\n".join(lines)
