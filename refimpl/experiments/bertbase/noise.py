"""The synthetic BERT-base-shaped model under noisy refreshes on a small ring (ours, a diagnosis).

`refimpl experiment bertbase-noise SPEC ...` runs layer 0 of `bertbase-run`'s synthetic model of `--layers` layers
(refreshed where that depth's plan refreshes layer 0; its weights, the shipped small model's ranges) at a smaller width and token count on an insecure ring with the chain of
128-2^16-dense19 (N = 2^logN instead of 2^16), the refreshes made by refimpl.experiments.noise_probe.NoisyOracle:
exact re-encryption plus N(0, 2^-2B) on the real and imaginary part of every refreshed slot, which models a real
bootstrap of B bits (128-2^16-dense19's measures about 19-20 mean bits). Each SPEC is B[:i,j,...] (noise only at
the i-th, j-th refresh, counted from 0) or "exact". One JSON line per SPEC: the layer output's error against the
float64 model (same approximations), and the refresh points in order (piece, bootstraps) so that an index names
its piece. A scaled geometry keeps BERT-base's ratios: window = 4 dh, n = 2 dh, two heads per window (e.g. n = 32,
hidden 192, 12 heads of 16 at N = 2^12).

`--all-layers` runs every layer and the head instead: each layer's output and the logits against the float64 model,
so that the errors of a deep plan are seen as they carry from layer to layer. `--seed K[,K...]` draws the keys, the
encryptions and the refresh noise anew for each K (the input and the weights stay); K = 0 is the draw of the earlier
results. `--options previous` is the previous path (every design option off), for a side-by-side comparison;
`--table FILE ...` prints the stored --all-layers runs as one markdown table.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...ckks import Decryptor, Encoder, Encryptor, EvaluationKeys, Evaluator, KeyGenerator
from ...ckks.bootstrap.bootstrapper import BOOTSTRAP_PRESETS, bootstrap_parameters
from ...ckks.bootstrap.oracle import OracleBootstrapper
from ...errors import UserError
from ...nexus import bert as nb
from ...nexus.bert.keyset import forward_key_levels
from ...ring.sampling import RandomSource
from ..noise_probe import NoisyOracle
from .plan import parse_options
from .realrun import ALIASES, build_model


class _Stop(Exception):
    """Raised after layer 0: the probe measures layer 0 of a model of any depth (its plan's refresh points)."""


def _stop_after_layer_0(i, chunks):
    raise _Stop


def run(model_name: str, n: int, size: dict, logN: int, specs: list[str], layers: int = 1,
        options: dict | None = None, all_layers: bool = False, seed: int = 0) -> list[dict]:
    """One row per spec: layer 0's error (max_abs_err, median_abs_err) and the refresh points; with all_layers,
    also every layer's max error (layer_err) and the logits' (logit_err)."""
    kw = {**BOOTSTRAP_PRESETS["128-2^16-dense19"], "N": 2**logN, "insecure": True}
    params, rc = bootstrap_parameters(**kw)
    top = params.L - rc.depth
    model = build_model(ALIASES.get(model_name, model_name), layers, size, options)
    kg = KeyGenerator(params, RandomSource.insecure_seeded(3 + 100 * seed))
    sk = kg.secret_key()
    levels = forward_key_levels(model, n, params, top, top, head_rows=True)
    ev = Evaluator(params, EvaluationKeys(relin=kg.relin_key(sk),
                                          galois={k: kg.galois_key(sk, k, lv) for k, lv in levels.items()}))
    lay = nb.input_layout(model.config, n, params.slots, head_rows=True)
    ids, mask = np.random.default_rng(1).integers(1, model.config.vocab_size, n), np.ones(n)
    x = nb.client_embed(model.config, model.params, ids, mask)
    enc, E, D = Encoder(params), Encryptor(sk, RandomSource.insecure_seeded(4 + 100 * seed)), Decryptor(sk)
    ref = nb.plaintext_reference(model, ids, mask, approximate=True)
    rows = []
    for spec in specs:
        bits, _, only = spec.partition(":")
        bts = (OracleBootstrapper(sk, output_level=top, rng=RandomSource.insecure_seeded(5 + 100 * seed)) if bits == "exact"
               else NoisyOracle(sk, top, float(bits), {int(k) for k in only.split(",")} if only else None, seed=seed))
        cts = [E.encrypt(enc.encode(v, level=top)) for v in nb.pack_input(x, lay)]
        taps: dict = {}
        trace: list = []
        out = None
        try:
            out = nb.encrypted_forward(ev, bts, model, cts, n, mask, taps=taps, trace=trace, head_rows=True,
                                       on_layer=_stop_after_layer_0 if layers > 1 and not all_layers else None)
        except _Stop:
            pass

        errs = [np.abs(nb.unpack([enc.decode(D.decrypt(c)).real for c in taps[f"L{i}"]], lay, lay.d) - ref["hidden"][i + 1])
                for i in range(layers if all_layers else 1)]  # each layer decrypted once
        err = errs[0]
        row = {"spec": spec, "seed": seed, "max_abs_err": float(err.max()), "median_abs_err": float(np.median(err)),
               "refresh_points": [[r["block"], r["bootstraps"]] for r in trace if r["bootstraps"]]}
        if all_layers:
            logits = nb.unpack_output([enc.decode(D.decrypt(out[0])).real], lay, model.config.num_labels)
            row.update(layer_err=[float(e.max()) for e in errs],
                       logits=np.asarray(logits).tolist(), model_logits=np.asarray(ref["logits"]).tolist(),
                       logit_err=float(np.abs(np.asarray(logits) - ref["logits"]).max()), refreshes=bts.calls)
        rows.append(row)
    return rows


def seeds_of(text) -> list[int]:
    """`--seed 0,1,2` -> [0, 1, 2]."""
    try:
        out = [int(k) for k in str(text).split(",") if k.strip()]
    except ValueError:
        raise UserError(f"--seed: {text!r} is not K or K,K,...") from None
    if not out or min(out) < 0:
        raise UserError(f"--seed: {text!r} is not K or K,K,... with K >= 0")
    return out


def table(docs: list[dict]) -> str:
    """Markdown: per stored run (model, design) and refresh noise, over its seeds (lowest to highest), the error of
    layer 0, the largest over the layers, the last layer's and the logits' (runs made with --all-layers). Where a
    model's previous path is among the runs, a second table: each other design's errors as the previous path's
    over its own, per layer and for the logits, at equal seed and refresh noise (above 1: closer than the previous
    path)."""
    def span(v, fmt=".2e"):
        return f"{min(v):{fmt}}" if min(v) == max(v) else f"{min(v):{fmt}} to {max(v):{fmt}}"

    def noise_of(spec):
        return "exact" if spec == "exact" else f"2^-{spec} noise"

    lines = ["| model | design | refreshes | seeds | layer 0 | largest over the layers | last layer | logits |",
             "|---|---|---|---|---|---|---|---|"]
    runs = []  # (model, design, {spec: [rows]})
    for d in docs:
        cmd = d["command"]
        model = cmd.split("--model ")[1].split()[0]
        design = "previous path" if "--options previous" in cmd else ("current" if "--options" not in cmd else
                                                                       cmd.split("--options ")[1].split()[0])
        groups: dict = {}
        for r in d["rows"]:
            if "layer_err" not in r:
                raise UserError("bertbase-noise --table: the rows of an --all-layers run are needed")
            groups.setdefault(r["spec"], []).append(r)
        runs.append((model, design, groups))
        for spec, rs in groups.items():
            le = [r["layer_err"] for r in rs]
            lines.append(f"| {model} | {design} | {noise_of(spec)} | "
                         f"{', '.join(str(r.get('seed', 0)) for r in rs)} | {span([e[0] for e in le])} | "
                         f"{span([max(e) for e in le])} | {span([e[-1] for e in le])} | "
                         f"{span([r['logit_err'] for r in rs])} |")
    previous = {m: g for m, dsg, g in runs if dsg == "previous path"}
    ratios = []
    for model, design, groups in runs:
        if design == "previous path" or model not in previous:
            continue
        for spec, rs in groups.items():
            base = {r.get("seed", 0): r for r in previous[model].get(spec, [])}
            pairs = [(base[r.get("seed", 0)], r) for r in rs if r.get("seed", 0) in base]
            if not pairs:
                continue
            per_layer = [p / c for b, r in pairs for p, c in zip(b["layer_err"], r["layer_err"])]
            logits = [b["logit_err"] / r["logit_err"] for b, r in pairs]
            ratios.append(f"| {model} | {design} | {noise_of(spec)} | {', '.join(str(r.get('seed', 0)) for _, r in pairs)} "
                          f"| {span(per_layer, '.2f')} | {span(logits, '.2f')} |")
    if ratios:
        lines += ["", "| model | design | refreshes | seeds | previous path's error / this, per layer | "
                      "the same, logits |", "|---|---|---|---|---|---|", *ratios]
    return "\n".join(lines)


def command(a) -> int:
    """`refimpl experiment bertbase-noise` (options: refimpl.cli.experiments)."""
    if a.table:
        print(table([json.loads(Path(f).read_text()) for f in a.table]))
        return 0
    if not a.specs:
        raise UserError("bertbase-noise: give SPEC ... (exact, BITS or BITS:i,j), or --table FILE ...")
    size = {"hidden_size": a.hidden, "num_attention_heads": a.heads, "intermediate_size": a.intermediate}
    rows = []
    for seed in seeds_of(a.seed):
        for r in run(a.model, a.n, size, a.logN, a.specs, a.layers, parse_options(a.options), a.all_layers, seed):
            print(json.dumps(r), flush=True)
            rows.append(r)
    if a.json:
        Path(a.json).write_text(json.dumps({
            "command": f"refimpl experiment bertbase-noise --model {a.model} --n {a.n} --hidden {a.hidden} --heads "
                       f"{a.heads} --intermediate {a.intermediate} --logN {a.logN} --layers {a.layers}"
                       + (" --all-layers" if a.all_layers else "") + (f" --seed {a.seed}" if str(a.seed) != "0" else "")
                       + (f" --options {a.options}" if a.options else "") + f" {' '.join(a.specs)} --json FILE",
            "security": f"INSECURE N = 2^{a.logN} (a diagnosis of precision, not a measurement of security)",
            "rows": rows}, indent=1) + "\n")
    return 0
