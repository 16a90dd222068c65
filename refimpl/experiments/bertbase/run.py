"""BERT-base at n = 128: the command (`refimpl experiment bertbase`, `refimpl reproduce nexus-bertbase`).

Options: refimpl.cli.experiments.bertbase_arguments. Reads the measured bootstrap time from
results/ckks/bootstrap_128-2^16-dense19.json of the repository.
"""

from __future__ import annotations

import gc
import json
import os
from pathlib import Path

from ...ckks.bootstrap.bootstrapper import bootstrap_preset
from ...ckks.bootstrap.placement import plan_table
from ...measure import peak_rss_mib
from .. import repo_path
from .plan import (
    BERT_BASE, BOOTSTRAP_JSON, MODELS, QUIET_BOOTSTRAP_S, blocks, config, derive, limb_seconds, markdown, merge,
    paper_figures, parse_options, shipped_ranges, synthetic_model, table, widest_ranges,
)
from .cost import predict
from .counts import count as count_blocks, counting_model, counts_table
from .timer import BlockTimer, gelu_probe

def _derive(counts: dict, units: dict, boot: float) -> dict:
    """Per layer (without and with the weight store), the head, and the model's seconds from counts x units."""
    layers, layers_store = [], []
    for ops, hits, kinds in zip(counts["ops_per_layer"], counts["store_per_layer"], counts["per_layer"]):
        b = kinds["layer"]["bootstraps"]
        layers.append(predict(ops, units, b, boot))
        layers_store.append(predict(ops, units, b, boot, store_hits=hits))
    head = predict(counts["ops_head"], units, counts["head"].get("bootstraps", 0), boot, counts["store_head"])
    head_plain = predict(counts["ops_head"], units, counts["head"].get("bootstraps", 0), boot)
    shown = 1 if len(layers) > 1 else 0
    return {"bootstrap_s": boot, "per_layer": layers, "per_layer_store": layers_store, "head": head_plain,
            "head_store": head, "layer_shown_s": layers[shown]["total"],
            "layer_shown_store_s": layers_store[shown]["total"],
            "model_s": round(sum(x["total"] for x in layers) + head_plain["total"], 1),
            "model_store_s": round(sum(x["total"] for x in layers_store) + head["total"], 1)}


def derive_from_counts(counts: dict, units_file: str, boot_s: float | None) -> dict:
    """Each layer's (and the head's) seconds: its operations by level x the unit costs of `units_file`
    (refimpl experiment unit-costs) + its bootstraps x boot_s (default: the file's bootstrap_s).

    A units file measured at several thread counts (unit-costs --threads 1,2) also gives "by_threads": the same
    derivation from each count's wall seconds and that count's bootstrap (boot_s applies to the file's own
    units only)."""
    doc = json.loads(Path(units_file).read_text())
    if "units" not in doc:
        raise ValueError(f"{units_file}: expected a result of refimpl experiment unit-costs (key 'units')")
    units, boot = doc["units"], doc.get("bootstrap_s") if boot_s is None else boot_s
    out = {"units": units_file, "threads": doc.get("threads"), **_derive(counts, units, boot)}
    if "units_by_threads" in doc:
        keep = ("bootstrap_s", "layer_shown_s", "layer_shown_store_s", "model_s", "model_store_s")
        out["by_threads"] = {t: {k: v for k, v in _derive(counts, u, doc["bootstrap_s_by_threads"][t]).items()
                                 if k in keep} | {"clock": "wall"}
                             for t, u in doc["units_by_threads"].items()}
        if "1" in doc.get("units_cpu_by_threads", {}):  # one thread, process CPU seconds (the one-thread file's clock)
            d = _derive(counts, doc["units_cpu_by_threads"]["1"], doc["bootstrap_s_by_threads"]["1"])
            out["by_threads"]["1 cpu"] = {k: v for k, v in d.items() if k in keep} | {"clock": "process CPU"}
    return out


def command(a, cmd: str, prog: str = "refimpl experiment bertbase") -> int:
    """Plan, time and derive (or --table, --merge, --gelu-probe); cmd: the command line, recorded in --json."""
    if a.merge:
        if not a.json:
            raise ValueError("--merge writes the joined result to --json FILE; give --json")
        res = merge([json.loads(Path(f).read_text()) for f in a.merge], a.merge)
        Path(a.json).write_text(json.dumps(res, indent=1, default=str) + "\n")
        print(f"{a.json}: models {', '.join(res['models'])} from {len(a.merge)} runs")
        return 0
    if a.table:
        res = json.loads(Path(a.table).read_text())
        if "models" not in res or "paper" not in res:
            raise ValueError(f"{a.table}: expected a result of {prog} (keys 'models' and 'paper'), got {sorted(res)}")
        print(f"{res['security']}; {res['command']}\n")
        print(markdown(res))
        return 0
    if a.gelu_probe:
        params, rc = bootstrap_preset(a.preset)
        probe = gelu_probe(params, rc)
        print(json.dumps(probe, indent=1))
        if a.json:
            old = json.loads(Path(a.json).read_text()) if Path(a.json).exists() else {}
            old["gelu_probe"] = probe
            Path(a.json).write_text(json.dumps(old, indent=1, default=str) + "\n")
        return 0
    params, rc = bootstrap_preset(a.preset)
    sec = "INSECURE toy ring" if params.insecure else "128-bit"
    print(f"{sec} ({params.security_note}); times are DERIVED: one instance per block kind, scaled by exact counts, "
          f"bootstraps at the measured time of {BOOTSTRAP_JSON}", flush=True)
    boot_file = repo_path(BOOTSTRAP_JSON)
    boot = json.loads(boot_file.read_text()) if boot_file.exists() else {}
    res: dict = {"command": cmd,
                 "security": f"{sec}: {params.security_note}", "derived": True, "preset": a.preset, "N": params.N,
                 "slots": params.slots, "log_qp": round(params.log_qp), "levels_after_bootstrap": params.L - rc.depth,
                 "n": a.n, "config": BERT_BASE, "models": {},
                 "bootstrap": {"source": BOOTSTRAP_JSON, "median_s": boot.get("median_s"), "note": boot.get("note")},
                 "paper": paper_figures()}

    def write():
        res["peak_rss_gib"] = round(peak_rss_mib() / 1024, 2)
        res["load_average_end"] = os.getloadavg()
        if a.json:
            Path(a.json).write_text(json.dumps(res, indent=1, default=str) + "\n")

    options = parse_options(getattr(a, "options", ""))  # NexusModel options
    res["load_average_start"] = os.getloadavg()
    if options:
        res["options"] = options
    weights: dict = {}
    weigh_by = json.loads(Path(a.weigh_by).read_text()) if a.weigh_by else None
    for name in a.models.split(","):
        cfg = config(name)
        model = synthetic_model(cfg, widest_ranges(shipped_ranges(name), cfg.num_hidden_layers), options=options)
        info = blocks(model, a.n, (params, rc))
        placement = {"objective": "fewest ciphertexts refreshed, then fewest refresh points (ours)"}
        if weigh_by is not None:
            old = weigh_by.get("models", {}).get(name)
            if old is None or not old.get("timed"):
                raise ValueError(f"--weigh-by {a.weigh_by}: no timed run of {name} in it "
                                 f"(models: {sorted(weigh_by.get('models', {}))})")
            missing = sorted(({b["kind"] for b in info["layer_blocks"]} | {"head"}) - {r["kind"] for r in old["timed"]})
            if missing:
                raise ValueError(f"--weigh-by {a.weigh_by}: its {name} run timed no {missing} (a run with --only or "
                                 f"cut short): every block kind needs its seconds")
            if old["per_layer"] != info["per_layer"] or weigh_by.get("n") != a.n or weigh_by.get("preset") != a.preset:
                raise ValueError(f"--weigh-by {a.weigh_by}: its {name} run has another plan, n or preset than this one "
                                 f"(expected the fewest-refreshes plan of n = {a.n} at {a.preset})")
            limb = limb_seconds(info, old["timed"])
            weights[name] = dict(limb_s=limb, boot_s=a.boot_s)
            info = blocks(model, a.n, (params, rc), **weights[name])
            layer = [r for r in info["rows"] if r["block"].startswith(f"L{info['layer']}.")]
            placement = {"objective": "least derived time (ours): refreshed ciphertexts x boot_s + seconds per limb x "
                                      "limbs per piece", "weighed_by": a.weigh_by, "boot_s": a.boot_s,
                         "predicted_layer_compute_s": round(sum(limb.get(r["block"], 0.0) * (r["level_in"] + 1)
                                                                for r in layer), 1)}
        lay = info["layout"]
        m = {"ranges_from": MODELS[name][2] + " (widest over its layers, every layer)", "settings": model.settings(),
             "layout": {"chunk": lay.chunk, "window": lay.window, "hidden_cts": lay.chunks(lay.d),
                        "ffn_cts": lay.chunks(lay.intermediate), "score_cts": lay.score_cts, "head_rows": lay.head_rows},
             "layer_blocks": info["layer_blocks"], "layer_shown": info["layer"], "per_layer": info["per_layer"],
             "head": info["head"], "total": info["total"], "plan_table": plan_table(info["rows"]).splitlines()[-1],
             "placement": placement}
        res["models"][name] = m
        if getattr(a, "counts", False):
            m["counts"] = count_blocks(counting_model(model), a.n, params, info["top"])
            print(counts_table(name, m["counts"], info["layer"]), flush=True)
            gk = m["counts"]["galois_keys"]
            print(f"{name}: {gk['count']} Galois keys used, each made at the highest level it serves: {gk['gib_b']} GiB "
                  f"as b + seeds, {gk['gib_expanded']} GiB with a expanded", flush=True)
            if getattr(a, "units", None):
                m["derived_from_counts"] = derive_from_counts(m["counts"], a.units, a.units_boot_s)
                d = m["derived_from_counts"]
                print(f"{name}, derived from counts x unit costs ({a.units}; {d['threads']} thread(s), bootstrap "
                      f"{d['bootstrap_s']} s): layer {d['layer_shown_s']:.0f} s; model {d['model_s']:.0f} s = "
                      f"{d['model_s'] / 3600:.2f} h without a weight store, {d['model_store_s']:.0f} s = "
                      f"{d['model_store_s'] / 3600:.2f} h with it", flush=True)
                for t, dt in d.get("by_threads", {}).items():
                    print(f"{name}, {t} thread(s), {dt['clock']}: layer {dt['layer_shown_s']:.0f} s without the store, "
                          f"{dt['layer_shown_store_s']:.0f} s with it; model {dt['model_s'] / 3600:.2f} h / "
                          f"{dt['model_store_s'] / 3600:.2f} h (bootstrap {dt['bootstrap_s']} s)", flush=True)
        print(f"\n{name}: per layer bootstraps {[p['ciphertexts_refreshed'] for p in info['per_layer']]}, total "
              f"{info['total']['ciphertexts_refreshed']} ciphertexts at {info['total']['bootstrap_points']} points, "
              f"{info['total']['levels']} levels", flush=True)
        write()
    if not a.plan_only:
        for name in a.models.split(","):
            m = res["models"][name]
            cfg = config(name)
            model = synthetic_model(cfg, widest_ranges(shipped_ranges(name), cfg.num_hidden_layers), options=options)
            step = max(1, a.n // a.shifts) if a.n >= a.shifts else 1
            shifts = [step // 2 + step * k for k in range(a.shifts)]
            timer = BlockTimer(params, rc, model, a.n, shifts=shifts, **weights.get(name, {}))
            only = set(a.only.split(",")) if a.only else None

            def on_block(rows, m=m, timer=timer):
                m["timed"] = rows
                if boot.get("median_s"):
                    m["derived"] = derive(timer.info, rows, boot["median_s"], cfg.num_hidden_layers)
                m["derived_quiet_bootstrap"] = derive(timer.info, rows, QUIET_BOOTSTRAP_S, cfg.num_hidden_layers)
                write()
                print(json.dumps({k: rows[-1][k] for k in ("kind", "seconds", "max_err", "peak_rss_gib")}), flush=True)

            timer.run(on_block=on_block, only=only)
            del timer
            gc.collect()
            print(table(m), flush=True)
            if "counts" in m:
                print(counts_table(name, m["counts"], m["layer_shown"], m.get("timed")), flush=True)
            if "derived" in m:
                d, pp = m["derived"], res["paper"]
                print(f"{name}: layer {d['layer_s']:.0f} s ({d['layer_compute_s']:.0f} s blocks + {d['layer_bootstraps']} "
                      f"bootstraps x {d['bootstrap_s']:.0f} s); 12 layers + head {d['model_s']:.0f} s = "
                      f"{d['model_s'] / 3600:.1f} h ({d['model_bootstraps']} bootstraps); paper: {pp['bert_base_gpu_s']} s "
                      f"on a GPU, about {pp['cpu_s_implied']} s on a CPU (implied, unverified)", flush=True)
    write()
    return 0
