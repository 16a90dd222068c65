"""BERT-base at n = 128 under NEXUS: model, plan, block kinds, derived time, tables, merging runs.

See the package docstring (refimpl.experiments.bertbase) for the method.
"""

from __future__ import annotations

import numpy as np

from ...bert import weights
from ...bert.config import BertConfig
from ...bert.shipped import model_dir
from ...constants import C
from ...errors import UserError
from ...nexus import bert as nb

PRESET = "128-2^16-dense19"
N_TOKENS = 128
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
MODELS = {  # name -> (attention, activation, the shipped small model whose ranges are borrowed)
    "softmax-gelu": ("softmax", "gelu", "sst2-small-softmax-gelu"),
    "2quad-freediv-quad": ("2quad-freediv", "quad", "sst2-small-2quad-freediv-quad"),
}
KEY_SHIFTS = 4  # Q K^T and P V are timed over this many of the n_pad key shifts (their Galois keys: ~80 MB each)
BOOTSTRAP_JSON = "results/ckks/bootstrap_128-2^16-dense19.json"
QUIET_BOOTSTRAP_S = 72.4  # the same bootstrap on a quiet machine: results/ckks/bootstrap_128-2^16-dense19_quiet.json
# (2026-12-04; 56.2 s before SlotsToCoeffs spread its scale drop; README "Bootstrapping")
LAYER = 1  # the layer whose planned levels the timed instances use (layer 0 starts at the client's level)

# block kinds of the issue, keyed by the piece name inside a layer ("L{i}." stripped)
KINDS = (("qkv", "QKV"), ("qk", "Q K^T"), ("softmax.", "Softmax"), ("2quad", "2Quad-freeDiv"), ("pv.", "P V"),
         ("out", "output projection"), ("ln1", "residual + LayerNorm 1"), ("ffn1", "FFN1"), ("gelu", "GELU"),
         ("quad", "Quad"), ("ffn2", "FFN2"), ("ln2", "residual + LayerNorm 2"))


def kind_of(piece: str) -> str:
    """The issue's block kind of a piece name ("L3.softmax.round2" -> "Softmax"; "head" -> "head")."""
    local = piece.split(".", 1)[1] if piece.startswith("L") and "." in piece else piece
    for prefix, kind in KINDS:
        if local == prefix or (prefix.endswith(".") and local.startswith(prefix)) or local.startswith(prefix + "."):
            return kind
    if local == "head":
        return "head"
    raise ValueError(f"piece {piece!r} belongs to no block kind")


# ============================================================================ model and plan
def config(model: str, layers: int = 12, **size) -> BertConfig:
    """BERT-base (or `size` overrides, for tests) with the model's attention and activation."""
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {sorted(MODELS)}")
    att, act, _ = MODELS[model]
    kw = dict(BERT_BASE, num_hidden_layers=layers)
    kw.update(size)
    return BertConfig(attention=att, activation=act, **kw)


def widest_ranges(ranges: dict, layers: int) -> dict:
    """Ranges for `layers` layers: per block kind the widest over the source's layers (NexusModel.get_ranges format)."""
    src_layers = sorted({int(k.split(".")[0][1:]) for k in (*ranges["absmax"], *ranges["var"]) if k[0] == "L"})
    absmax, var = {}, {}
    for suffix in {k.split(".", 1)[1] for k in ranges["absmax"]}:
        v = max(ranges["absmax"].get(f"L{i}.{suffix}", 0.0) for i in src_layers)
        absmax.update({f"L{i}.{suffix}": v for i in range(layers + 1)})
    for suffix in {k.split(".", 1)[1] for k in ranges["var"]}:
        lo = min(ranges["var"][f"L{i}.{suffix}"][0] for i in src_layers if f"L{i}.{suffix}" in ranges["var"])
        hi = max(ranges["var"][f"L{i}.{suffix}"][1] for i in src_layers if f"L{i}.{suffix}" in ranges["var"])
        var.update({f"L{i}.{suffix}": (lo, hi) for i in range(layers)})
    return {"score_bound": ranges["score_bound"], "var": var, "act": tuple(ranges["act"]), "absmax": absmax}


def shipped_ranges(model: str) -> dict:
    """The calibrated ranges of the shipped small model of this kind (synthetic calibration text)."""
    cfg, prm = weights.load(model_dir(MODELS[model][2]), dtype=np.float32)
    return nb.NexusModel(cfg, prm).get_ranges()


def parse_options(text: str | None) -> dict:
    """NexusModel design options from the command line: "NAME=0|1,..." (0 / false: off); the word "previous" sets
    every option off (the previous path; later NAME=1 items turn single ones back on). Unknown names are refused."""
    out = {}
    for o in (text or "").split(","):
        if not o.strip():
            continue
        if o.strip() == "previous":
            out.update({k: False for k in nb.DESIGN_OPTIONS})
            continue
        k, eq, v = o.partition("=")
        if not eq:
            raise UserError(f"--options: {o!r} is not NAME=0|1 or previous")
        if k.strip() not in nb.DESIGN_OPTIONS:
            raise UserError(f"--options: unknown option {k.strip()!r}; known: {', '.join(sorted(nb.DESIGN_OPTIONS))}")
        out[k.strip()] = v.strip() not in ("0", "false", "False")
    return out


def synthetic_model(cfg: BertConfig, ranges: dict, seed: int = 0, options: dict | None = None) -> nb.NexusModel:
    """A NexusModel with the given ranges and only a random classifier (the plan needs no weights;
    the timed kernels take random weights of the right shapes); options: NexusModel options (default its own)."""
    rng = np.random.default_rng(seed)
    params = {"classifier.weight": rng.normal(0, 0.05, (cfg.num_labels, cfg.hidden_size)),
              "classifier.bias": rng.normal(0, 0.05, cfg.num_labels)}
    return nb.NexusModel(cfg, params, ranges=ranges, options=dict(options or {}))


def layout(cfg: BertConfig, n: int, slots: int) -> nb.Layout:
    return nb.input_layout(cfg, n, slots, head_rows=True)


def blocks(model: nb.NexusModel, n: int, params, *, bootstrap_level: int | None = None,
           limb_s: dict[str, float] | None = None, boot_s: float | None = None) -> dict:
    """The plan (placement.place over nexus.bert.chain.pieces_of) and, per block kind of one layer, its
    pieces, levels consumed, ciphertexts entering, and per layer the bootstrap points and
    ciphertexts refreshed.

    Returns {"layout", "rows" (the whole plan), "layer_blocks" (layer LAYER, or 0 for one-layer
    models), "per_layer": [{"layer", "bootstrap_points", "ciphertexts_refreshed"}], "head": ...,
    "total": {...}}. limb_s, boot_s: a time-weighted placement (placement.place; see limb_seconds)."""
    p, top = nb.bootstrap_level_of(params, bootstrap_level)
    lay = layout(model.config, n, p.slots)
    pieces = nb.pieces_of(model, lay)
    rows = nb.place(pieces, top, top, limb_s=limb_s, boot_s=boot_s)
    L = model.config.num_hidden_layers
    ch, ci, sw = lay.chunks(lay.d), lay.chunks(lay.intermediate), lay.score_cts
    entering = {"QKV": ch, "Q K^T": 2 * ch, "Softmax": sw, "2Quad-freeDiv": sw, "P V": sw + ch, "output projection": ch,
                "residual + LayerNorm 1": 2 * ch, "FFN1": ch, "GELU": ci, "Quad": ci, "FFN2": ci,
                "residual + LayerNorm 2": 2 * ch, "head": ch}
    layer = LAYER if L > LAYER else 0
    out = []
    for r in rows:
        if not r["block"].startswith(f"L{layer}."):
            continue
        k = kind_of(r["block"])
        if not out or out[-1]["kind"] != k:
            out.append({"kind": k, "pieces": [], "levels": 0, "ciphertexts_in": entering[k],
                        "level_in": r["level_in"], "bootstrap_points": 0, "ciphertexts_refreshed": 0})
        b = out[-1]
        b["pieces"].append(r["block"].split(".", 1)[1])
        b["levels"] += r["cost"]
        b["bootstrap_points"] += int(r["bootstrap"])
        b["ciphertexts_refreshed"] += r["bootstraps"]
        b["level_out"] = r["level_out"]
    per_layer = []
    for i in range(L):
        rs = [r for r in rows if r["block"].startswith(f"L{i}.")]
        per_layer.append({"layer": i, "bootstrap_points": sum(r["bootstrap"] for r in rs),
                          "ciphertexts_refreshed": sum(r["bootstraps"] for r in rs),
                          "levels": sum(r["cost"] for r in rs)})
    head = [r for r in rows if r["block"] == "head"][0]
    return {"layout": lay, "rows": rows, "pieces": pieces, "layer": layer, "layer_blocks": out, "per_layer": per_layer,
            "head": {"bootstrap_points": int(head["bootstrap"]), "ciphertexts_refreshed": head["bootstraps"],
                     "levels": head["cost"]},
            "total": {"bootstrap_points": sum(r["bootstrap"] for r in rows),
                      "ciphertexts_refreshed": sum(r["bootstraps"] for r in rows),
                      "levels": sum(r["cost"] for r in rows)},
            "top": top}


def limb_seconds(info: dict, timed: list[dict]) -> dict[str, float]:
    """Seconds per limb of every piece, from timed blocks of the plan `info` (blocks()): a kind's
    seconds per layer T spread over its pieces in proportion to the limbs they run at (level + 1),
    T / sum(level_in + 1) for each piece of the kind in every layer (the head: its own row).
    The time-weighted placement's model: a piece's time is proportional to the limbs of its level.
    Within a kind of several pieces (LayerNorm, Softmax, P V) every piece gets the same seconds per
    limb, whatever its width and depth: a first-order split (only their sum is measured)."""
    per = {r["kind"]: r["seconds"] for r in timed}
    layer = [r for r in info["rows"] if r["block"].startswith(f"L{info['layer']}.") or r["block"] == "head"]
    limbs: dict[str, int] = {}
    for r in layer:
        k = kind_of(r["block"])
        limbs[k] = limbs.get(k, 0) + r["level_in"] + 1
    out = {}
    for r in info["rows"]:
        k = kind_of(r["block"])
        if k in per:
            out[r["block"]] = per[k] / limbs[k]
    return out


def derive(info: dict, timed: list[dict], bootstrap_s: float, layers: int) -> dict:
    """layer = sum(block time x count) + refreshed ciphertexts x bootstrap time; model = the plan's layers + head,
    every layer's blocks at the timed layer's seconds. model_by_limbs_s: every piece of every layer at its own
    level instead (limb_seconds: the timed layer's seconds per limb x the limbs the piece runs at), as layers
    differ when the plan alternates (a time-weighted plan) and layer 0 starts at the client's level."""
    per = {r["kind"]: r["seconds"] for r in timed if r["kind"] != "head"}  # per layer (scaled)
    cpu = sum(r.get("cpu_seconds", 0.0) for r in timed if r["kind"] != "head")
    compute = sum(per.values())
    boots = [pl["ciphertexts_refreshed"] for pl in info["per_layer"]]
    head = sum(r["seconds"] for r in timed if r["kind"] == "head")
    rep = info["per_layer"][info["layer"]]["ciphertexts_refreshed"]
    limb = limb_seconds(info, timed)
    return {"layer_compute_s": round(compute, 1), "layer_compute_cpu_s": round(cpu, 1), "layer_bootstraps": rep,
            "layer_s": round(compute + rep * bootstrap_s, 1),
            "model_s": round(layers * compute + sum(boots) * bootstrap_s + head
                             + info["head"]["ciphertexts_refreshed"] * bootstrap_s, 1),
            "model_bootstraps": sum(boots) + info["head"]["ciphertexts_refreshed"], "bootstrap_s": bootstrap_s,
            "model_by_limbs_s": round(sum(limb.get(r["block"], 0.0) * (r["level_in"] + 1) for r in info["rows"])
                                      + (sum(boots) + info["head"]["ciphertexts_refreshed"]) * bootstrap_s, 1),
            "complete": {"QKV", "Q K^T", "P V", "output projection", "FFN1", "FFN2"} <= set(per)}



def paper_figures() -> dict:
    """NEXUS's published BERT-base figures (refimpl/constants.toml [nexus.published])."""
    pub = C["nexus"]["published"]
    return {"bert_base_gpu_s": pub["bert_base_gpu_seconds"], "gpu_speedup_vs_cpu": pub["gpu_speedup_vs_cpu"],
            "cpu_s_implied": round(pub["bert_base_gpu_seconds"] * pub["gpu_speedup_vs_cpu"]),
            "source": "refimpl/constants.toml [nexus.published] (NDSS 2025 abstract: A100 GPU; the CPU time is GPU x "
                      "speedup, computed and unverified; the paper's bootstrapping "
                      "parameters are not 128-bit)"}


def table(res: dict) -> str:
    """One layer's blocks: ciphertexts entering, levels, ciphertexts refreshed, derived seconds, error, instance."""
    lines = [f"{'block':<24s} {'cts in':>6s} {'levels':>6s} {'boots':>5s} {'block s':>9s} {'max err':>8s}  "
             "instance timed; scaling"]
    timed = {r["kind"]: r for r in res.get("timed", [])}
    for b in res["layer_blocks"] + [dict(res["head"], kind="head", ciphertexts_in=res["layout"]["hidden_cts"])]:
        t = timed.get(b["kind"])
        lines.append(f"{b['kind']:<24s} {b['ciphertexts_in']:>6d} {b['levels']:>6d} {b['ciphertexts_refreshed']:>5d} "
                     + (f"{t['seconds']:>9.1f} {t['max_err']:>8.1e}  {t['instance']}; {t['note'] or 'not scaled'}"
                        if t else f"{'-':>9s}"))
    return "\n".join(lines)


def markdown(res: dict) -> str:
    """The README table from a stored result: blocks per layer (seconds, refreshed ciphertexts) per model,
    then layer and model time (quiet and loaded bootstraps) beside the paper's figures."""
    names = list(res["models"])
    present = {b["kind"] for m in res["models"].values() for b in m["layer_blocks"]}
    kinds = [k for _, k in KINDS if k in present]
    head = " | ".join(f"{n}{' (time-weighted plan)' if m.get('placement', {}).get('weighed_by') else ''} s (boots)"
                      for n, m in res["models"].items())
    lines = [f"| block (one layer) | {head} |", "|---|" + "---:|" * len(names)]
    for k in kinds:
        cells = []
        for m in res["models"].values():
            b = next((b for b in m["layer_blocks"] if b["kind"] == k), None)
            t = next((r for r in m.get("timed", []) if r["kind"] == k), None)
            cells.append("-" if b is None else f"{t['seconds']:.0f} ({b['ciphertexts_refreshed']})" if t
                         else f"not timed ({b['ciphertexts_refreshed']})")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    quiet = next((m["derived_quiet_bootstrap"]["bootstrap_s"] for m in res["models"].values()
                  if "derived_quiet_bootstrap" in m), QUIET_BOOTSTRAP_S)
    rows = (("levels used (12 layers + head)", lambda m, d, q: f"{m['total']['levels']}"),
            ("ciphertexts bootstrapped per layer", lambda m, d, q: f"{q['layer_bootstraps']}"),
            ("ciphertexts bootstrapped, model", lambda m, d, q: f"{q['model_bootstraps']} at {m['total']['bootstrap_points']} points"),
            ("layer blocks (wall s)", lambda m, d, q: f"{q['layer_compute_s']:.0f}"),
            ("layer blocks (process CPU s, both cores)", lambda m, d, q: f"{q['layer_compute_cpu_s']:.0f}"),
            (f"model, bootstrap {quiet} s (quiet)", lambda m, d, q: f"{q['model_s']:.0f} s = {q['model_s'] / 3600:.1f} h"),
            (f"model, bootstrap {quiet} s, each layer at its own levels", lambda m, d, q: "-" if "model_by_limbs_s" not in q
             else f"{q['model_by_limbs_s']:.0f} s = {q['model_by_limbs_s'] / 3600:.1f} h"),
            ("model, bootstrap as measured under load", lambda m, d, q: "-" if d is None else
             f"{d['model_s']:.0f} s = {d['model_s'] / 3600:.1f} h ({d['bootstrap_s']:.0f} s each)"))
    for label, f in rows:
        cells = [f(m, m.get("derived"), m["derived_quiet_bootstrap"]) if "derived_quiet_bootstrap" in m else "-"
                 for m in res["models"].values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    pp = res["paper"]
    lines.append(f"| paper (NEXUS, Softmax + GELU) | {pp['bert_base_gpu_s']} s on an A100 GPU; about {pp['cpu_s_implied']} s "
                 f"on a CPU (GPU x {pp['gpu_speedup_vs_cpu']}, implied) |" + " |" * (len(names) - 1))
    return "\n".join(lines)


def merge(docs: list[dict], names: list[str]) -> dict:
    """One result from runs of disjoint models (e.g. one process per model, side by side on two cores).

    The runs must share the preset, n and BERT config; each model keeps its own run's command, load
    averages and peak RSS under "run"."""
    if len(docs) < 2:
        raise ValueError(f"merge needs at least two results, got {len(docs)}")
    same = ("preset", "N", "n", "config")
    out: dict = {}
    for doc, name in zip(docs, names):
        if "models" not in doc or "paper" not in doc:
            raise ValueError(f"{name}: expected a result of refimpl experiment bertbase (keys 'models' and 'paper'), "
                             f"got {sorted(doc)}")
        if not out:
            out = {k: v for k, v in doc.items() if k not in ("models", "command", "load_average_start",
                                                                "load_average_end", "peak_rss_gib")}
            out["models"], out["commands"], out["peak_rss_gib"] = {}, [], 0.0
        for k in same:
            if doc.get(k) != out.get(k):
                raise ValueError(f"{name}: {k} = {doc.get(k)!r}, expected {out.get(k)!r} as in {names[0]}")
        for model, m in doc["models"].items():
            if model in out["models"]:
                raise ValueError(f"{name}: model {model!r} is already in an earlier result")
            run = {k: doc.get(k) for k in ("command", "load_average_start", "load_average_end", "peak_rss_gib")}
            out["models"][model] = {**m, "run": run}
        out["commands"].append(doc["command"])
        out["peak_rss_gib"] = max(out["peak_rss_gib"], doc.get("peak_rss_gib") or 0.0)
    out["command"] = " ; ".join(out["commands"])
    return out
