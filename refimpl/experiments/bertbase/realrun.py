"""One real encrypted BERT-base forward, layer by layer, every layer checked, resumable (ours).

`refimpl experiment bertbase-run --model student --work DIR` runs the student (2Quad-freeDiv + Quad) or
Softmax + GELU at BERT-base size (synthetic weights, N(0, 0.02^2) as BERT initialises them, every layer its
own; the shipped small model's calibrated ranges, widest over its layers) on n tokens at a bootstrapping
preset (default 128-2^16-dense19, 128-bit), client and server in one process:

1. the weight store (refimpl.nexus.bert.weights_store) precomputed into DIR/store, once;
2. the keys, once, from the OS's randomness: the secret key stays in DIR/keys as the client's; the Galois
   keys are exactly those the forward uses (refimpl.nexus.bert.keyset, a dry run) and the bootstrapper's,
   each at the highest level it serves, stored as b + seeds (one file each, DIR/keys/galois);
3. one input (random token ids), embedded and encrypted once (DIR/input);
4. the resumable forward (refimpl.nexus.bert.checkpoint, DIR/checkpoint) with the real bootstrapper; the
   Galois keys are memory-mapped on use from DIR/keys/galois and at most --key-cache-gib of them held
   mapped (refimpl.ckks.keystore); the bootstrap's diagonals cached (--diagonals) or encoded in each bootstrap;
5. after each layer: its output decrypted and compared with the float64 numpy reference of that layer
   (the same approximations; and the exact model), and a record (wall and CPU seconds, peak memory of the
   layer, key switches, bootstraps, keys read or mapped, errors) appended to the results JSON, written whole after
   each layer. Running the same command again resumes after the last finished layer, in any later process.

`--table FILE` prints the per-layer table of a results file (docs/nexus-scale.md).
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ...ckks import Decryptor, Encoder, Encryptor, EvaluationKeys, Evaluator, KeyGenerator, SecretKey
from ...ckks.bootstrap.bootstrapper import Bootstrapper, bootstrap_preset
from ...ckks.keys import galois_element, key_digits, key_rows
from ...ckks.keystore import KeyStore, key_path
from ...ckks.serialize import (
    deserialize_ciphertext, deserialize_public_key, deserialize_switching_key, serialize_ciphertext,
    serialize_public_key, serialize_switching_key,
)
from ...errors import UserError
from ...measure import peak_rss_mib, reset_peak
from ...nexus import bert as nb
from ...nexus.bert.checkpoint import MANIFEST as CK_MANIFEST, Checkpoint, query_id, resumable_forward
from ...nexus.bert.keyset import forward_key_levels, merged
from ...nexus.bert.weights_store import WeightStore, model_checksum, precompute
from ...nexus.counting import CountingBootstrapper, CountingEvaluator, key_bytes
from ...ring.sampling import RandomSource
from .. import repo_path
from .counts import random_weights
from .plan import MODELS, PRESET, config, parse_options, shipped_ranges, widest_ranges

ALIASES = {"student": "2quad-freediv-quad", "softmax-gelu": "softmax-gelu", "2quad-freediv-quad": "2quad-freediv-quad"}
WEIGHT_STD = 0.02  # BERT's initializer_range: keeps every layer inside the shipped model's calibrated ranges
MODEL_SEED, INPUT_SEED = 0, 1
GIB = 2**30
DERIVED = "results/nexus/nexus_bertbase_counts_derived.json"  # the derived time (counts x unit costs) to compare with
after_record = None  # hook (tests): called with the layer index after its record is written


def build_model(name: str, layers: int, size: dict, options: dict | None = None) -> nb.NexusModel:
    """The synthetic model: `name`'s attention and activation at BERT-base size (or `size`), random weights
    (each layer its own, embeddings included), the shipped small model's ranges widest over its layers;
    options: NexusModel options (default its own)."""
    cfg = config(name, layers, **size)
    prm = random_weights(cfg, MODEL_SEED, shared=False, embeddings=True, std=WEIGHT_STD)
    return nb.NexusModel(cfg, prm, ranges=widest_ranges(shipped_ranges(name), layers), options=dict(options or {}))


class LayerCheckFailed(RuntimeError):
    """A layer's decrypted output is farther from the float64 model than the run's tolerance."""


def check_layer(rec: dict, tolerance: float) -> None:
    """Raise LayerCheckFailed when a layer's record is farther from the float64 model than `tolerance`."""
    if not rec["max_abs_err_vs_model"] <= tolerance:
        raise LayerCheckFailed(f"layer {rec['layer']}: decrypted output {rec['max_abs_err_vs_model']:.3g} from the "
                               f"float64 model (tolerance {tolerance:g}); the record is written, the checkpoint kept")


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def swk_bytes(params, level: int) -> int:
    """Bytes of one switching key at `level` as b + seeds (refimpl.nexus.counting.key_bytes of one key)."""
    return key_digits(params, level) * len(key_rows(params, level)) * params.N * 8


# ------------------------------------------------------------------ the work directory
def ensure_store(work: Path, model, params, n: int, top: int, log) -> dict:
    """DIR/store: the weight store, precomputed once (into store.partial, renamed when complete)."""
    store = work / "store"
    if (store / "manifest.json").exists():
        return {"store_precomputed_now": False}
    part = work / "store.partial"
    shutil.rmtree(part, ignore_errors=True)
    t, c = time.perf_counter(), time.process_time()
    log(f"precomputing the weight store into {part.name} ...")
    precompute(model, params, n, part, input_level=top, bootstrap_level=top, head_rows=True)
    os.replace(part, store)
    gc.collect()
    return {"store_precomputed_now": True, "store_wall_s": round(time.perf_counter() - t, 1),
            "store_cpu_s": round(time.process_time() - c, 1)}


def load_secret(path: Path, params) -> SecretKey:
    coeffs = np.load(path).astype(np.int64)
    basis = tuple(range(len(params.q) + len(params.p)))
    return SecretKey(coeffs, params.ctx.ntt(params.ctx.from_int(coeffs, basis), basis), params)


def key_plan(model, params, rc, n: int, top: int) -> dict:
    """The Galois keys: the forward's (dry run), the bootstrapper's, their union, beside rotation_steps'."""
    t = time.perf_counter()
    fwd = forward_key_levels(model, n, params, top, top, head_rows=True)
    dry_s = time.perf_counter() - t
    boot = Bootstrapper(Evaluator(params), rc, cache_diagonals=False).galois_levels()
    steps = [r for r in nb.rotation_steps(model.config, n, params.slots, head_rows=True) if r % params.slots]
    listed = {galois_element(params, r): top for r in steps}
    union = merged(fwd, boot)
    return {"dry_run_s": round(dry_s, 1), "forward": {str(k): v for k, v in fwd.items()},
            "bootstrap": {str(k): v for k, v in boot.items()}, "all": {str(k): v for k, v in union.items()},
            "sizes": {"forward_keys": len(fwd), "forward_gib": round(key_bytes(params, fwd) / GIB, 2),
                      "rotation_steps_keys": len(listed), "rotation_steps_gib": round(key_bytes(params, listed) / GIB, 2),
                      "rotation_steps_unused": len(set(listed) - set(fwd)),
                      "bootstrap_keys": len(boot), "bootstrap_gib": round(key_bytes(params, boot) / GIB, 2),
                      "all_keys": len(union), "all_gib": round(key_bytes(params, union) / GIB, 2),
                      "relin_gib": round(swk_bytes(params, params.L) / GIB, 2),
                      "encapsulation_gib": round((swk_bytes(params, params.L) + swk_bytes(params, 0)) / GIB, 2)
                      if rc.encapsulation_h else 0.0}}


def disk_gib(keys: Path) -> float:
    return round(sum(f.stat().st_size for f in keys.rglob("*.*key")) / GIB, 2)


def ensure_keys(work: Path, model, params, rc, n: int, top: int, log) -> dict:
    """DIR/keys: the secret (the client's), public, relinearization, encapsulation and Galois keys, made
    once from the OS's randomness; a killed generation continues with the keys it lacks."""
    keys = work / "keys"
    done = keys / "done.json"
    if done.exists():
        info = json.loads(done.read_text())
        if KeyStore.convert(keys / "galois", params):  # made by an earlier version: packed key files
            log("keys: the packed Galois key files rewritten as mapped key files")
            info["disk_gib"] = disk_gib(keys)
            write_atomic(done, (json.dumps(info, indent=1) + "\n").encode())
        return info
    keys.mkdir(parents=True, exist_ok=True)
    plan_file = keys / "keyset.json"
    if plan_file.exists():
        plan = json.loads(plan_file.read_text())
    else:
        log("dry run: the Galois keys the forward uses ...")
        plan = key_plan(model, params, rc, n, top)
        write_atomic(plan_file, (json.dumps(plan, indent=1) + "\n").encode())
    log(f"keys: {json.dumps(plan['sizes'])}")
    t = time.perf_counter()
    kg = KeyGenerator(params, RandomSource(), expand_keys=False)
    if (keys / "secret.npy").exists():
        sk = load_secret(keys / "secret.npy", params)
    else:
        sk = kg.secret_key()
        tmp = keys / "secret.tmp.npy"
        np.save(tmp, np.asarray(sk.coeffs, dtype=np.int8))
        os.replace(tmp, keys / "secret.npy")
    if not (keys / "public.key").exists():
        write_atomic(keys / "public.key", serialize_public_key(kg.public_key(sk)))
    if not (keys / "relin.key").exists():
        write_atomic(keys / "relin.key", serialize_switching_key(kg.relin_key(sk)))
    if rc.encapsulation_h and not (keys / "enc_up.key").exists():
        down, up = kg.encapsulation_keys(sk, kg.secret_key(hamming_weight=rc.encapsulation_h))
        write_atomic(keys / "enc_down.key", serialize_switching_key(down))
        write_atomic(keys / "enc_up.key", serialize_switching_key(up))
    if KeyStore.convert(keys / "galois", params):  # a work directory of an earlier version: packed key files
        log("keys: the packed Galois key files rewritten as mapped key files")
    todo = [(int(k), lv) for k, lv in plan["all"].items() if not key_path(keys / "galois", k).exists()]
    for j, (k, lv) in enumerate(todo):
        KeyStore.write(keys / "galois", k, kg.galois_key(sk, k, lv))
        if j % 20 == 0:
            log(f"keys: Galois {j + 1} of {len(todo)} still to make")
    info = {"sizes": plan["sizes"], "keygen_wall_s": round(time.perf_counter() - t, 1),
            "disk_gib": disk_gib(keys)}
    write_atomic(done, (json.dumps(info, indent=1) + "\n").encode())
    return info


def ensure_input(work: Path, model, params, pk, n: int, top: int) -> tuple[np.ndarray, list]:
    """DIR/input: the token ids and their encrypted chunks, made once."""
    d = work / "input"
    lay = nb.input_layout(model.config, n, params.slots, head_rows=True)
    cfg = model.config
    if not (d / "done").exists():
        d.mkdir(parents=True, exist_ok=True)
        ids = np.random.default_rng(INPUT_SEED).integers(1000 if cfg.vocab_size > 2000 else 1, cfg.vocab_size, n)
        x = nb.client_embed(cfg, model.params, ids, np.ones(n))
        enc, E = Encoder(params), Encryptor(pk, RandomSource())
        np.save(d / "ids.npy", ids)
        for j, v in enumerate(nb.pack_input(x, lay)):
            write_atomic(d / f"ct{j}.ct", serialize_ciphertext(E.encrypt(enc.encode(v, level=top))))
        (d / "done").write_text("ok\n")
    ids = np.load(d / "ids.npy")
    cts = [deserialize_ciphertext((d / f"ct{j}.ct").read_bytes(), params) for j in range(lay.chunks(lay.d))]
    return ids, cts


# ------------------------------------------------------------------ the run
def derived_seconds(name: str, preset: str, n: int, layers: int, size: dict) -> dict | None:
    """The derived CPU seconds per layer with the weight store (DERIVED, `refimpl experiment bertbase --counts
    --units ...`) when it was derived for this model, preset and n at BERT-base size, else None."""
    path = repo_path(DERIVED)
    if size or layers != 12 or not path.exists():
        return None
    doc = json.loads(path.read_text())
    d = doc.get("models", {}).get(name, {}).get("derived_from_counts")
    if not d or doc.get("preset") != preset or doc.get("n") != n:
        return None
    return {"source": DERIVED, "per_layer": [x["total"] for x in d["per_layer_store"]], "head": d["head_store"]["total"],
            "units": d["units"], "bootstrap_s": d["bootstrap_s"]}


def table(res: dict) -> str:
    """The per-layer table of a results file (markdown), with the derived CPU seconds where known."""
    der = res.get("derived_cpu_s") or {}
    lines = ["| layer | wall s | CPU s | derived CPU s | peak GiB | key switches | bootstraps | keys read or mapped (GiB) | max abs "
             "error vs model | vs exact | \\|x\\| max |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in [*res.get("layers", []), *([res["head"]] if res.get("head") else [])]:
        f = (lambda k, fmt="{:,.0f}": "" if r.get(k) is None else fmt.format(r[k]))
        d = der.get("head") if r["layer"] == "head" else (der.get("per_layer") or [None] * (r["layer"] + 1))[r["layer"]]
        lines.append(f"| {r['layer']} | {f('wall_s')} | {f('cpu_s')} | {'' if d is None else f'{d:,.0f}'} | "
                     f"{f('peak_rss_gib', '{:.2f}')} | "
                     f"{f('key_switches')} | {f('bootstraps')} | {f('key_load_gib', '{:.1f}')} | "
                     f"{f('max_abs_err_vs_model', '{:.2e}')} | {f('max_abs_err_vs_exact', '{:.2e}')} | "
                     f"{f('max_abs_ref', '{:.2f}')} |")
    return "\n".join(lines)


def command(a, cmd: str) -> int:
    if a.table:
        res = json.loads(Path(a.table).read_text())
        print(f"{res['security']}; {res['command']}\n")
        print(table(res))
        return 0
    if not a.work:
        raise UserError("give --work DIR (the run's directory), or --table FILE")
    name = ALIASES.get(a.model, a.model)
    if name not in MODELS:
        raise UserError(f"unknown model {a.model!r}; expected one of {sorted(ALIASES)}")
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    cmd = cmd.replace(f"--work {a.work}", "--work DIR")  # the command as recorded: no path of this machine
    if a.json and Path(a.json).is_absolute():
        cmd = cmd.replace(f"--json {a.json}", "--json FILE")
    size = {k: v for k, v in (("hidden_size", a.hidden), ("num_attention_heads", a.heads),
                              ("intermediate_size", a.intermediate)) if v}
    out = Path(a.json or f"results/nexus/nexus_bertbase_run_{a.model}.json")

    def log(msg):
        print(f"[{now()}] {msg}", flush=True)

    params, rc = bootstrap_preset(a.preset)
    top = params.L - rc.depth
    options = parse_options(getattr(a, "options", ""))
    model = build_model(name, a.layers, size, options)
    setup = {"model": name, "preset": a.preset, "n": a.n, "layers": a.layers, "size": size,
             **({"options": options} if options else {}), "model_checksum": model_checksum(model)}
    sfile = work / "setup.json"
    if sfile.exists() and json.loads(sfile.read_text()) != setup:
        raise UserError(f"{work}: made for {sfile.read_text()}, this run is {setup}: use another --work directory")
    write_atomic(sfile, (json.dumps(setup, indent=1) + "\n").encode())
    n, mask = a.n, np.ones(a.n)
    timing = ensure_store(work, model, params, n, top, log)
    keyinfo = ensure_keys(work, model, params, rc, n, top, log)
    keys = work / "keys"
    sk = load_secret(keys / "secret.npy", params)
    pk = deserialize_public_key((keys / "public.key").read_bytes(), params)
    ids, cts = ensure_input(work, model, params, pk, n, top)
    qid = query_id(cts, n, mask, False)
    sec = "INSECURE toy ring" if params.insecure else "128-bit"
    res = json.loads(out.read_text()) if out.exists() else {}
    if res and res.get("query") != qid:
        raise UserError(f"{out}: the records of another run (query {res.get('query', '?')[:12]}..., this work "
                         f"directory's is {qid[:12]}...): give another --json or remove it")
    if res.get("head"):
        log(f"{out}: every layer and the head done")
        print(table(res))
        return 0
    res.update({"command": cmd, "security": f"{sec}: {params.security_note}", "preset": a.preset, "N": params.N,
                "n": n, "model": name, "config": {"layers": a.layers, **size}, "weights": f"N(0, {WEIGHT_STD}^2), seed "
                f"{MODEL_SEED}, each layer its own", "ranges_from": MODELS[name][2] + " (widest over its layers)",
                "query": qid, "options": options or "the model's defaults", "keys": keyinfo,
                "derived_cpu_s": derived_seconds(name, a.preset, n, a.layers, size)})
    res.setdefault("layers", [])
    res.setdefault("sessions", []).append({"started": now(), "pid": os.getpid(), "galois_keys": "memory-mapped", **timing})

    log("float64 references (the approximations, and the exact model) ...")
    ap = nb.plaintext_reference(model, ids, mask, approximate=True)
    ex = nb.plaintext_reference(model, ids, mask, approximate=False)
    nb.check_ranges(model, ap)
    relin = deserialize_switching_key((keys / "relin.key").read_bytes(), params, expand=False)
    encaps = tuple(deserialize_switching_key((keys / f).read_bytes(), params, expand=False)
                   for f in ("enc_down.key", "enc_up.key")) if rc.encapsulation_h else None
    galois = KeyStore(keys / "galois", params, int(a.key_cache_gib * GIB))
    raw = Evaluator(params, EvaluationKeys(relin=relin, galois=galois))
    bts = Bootstrapper(raw, rc, encapsulation=encaps, cache_diagonals=a.diagonals)
    diag = bts.precompute() if a.diagonals else 0
    ev, cbts = CountingEvaluator(raw), CountingBootstrapper(bts)
    store = WeightStore.open(work / "store", params, model)
    weights_gib = sum(v.nbytes for v in model.w64.values()) / GIB
    res["memory_plan"] = {
        "galois_key_cache_limit_gib": a.key_cache_gib, "galois_keys_on_disk_gib": keyinfo.get("disk_gib"),
        "relin_and_encapsulation_gib": round(relin.nbytes / GIB + sum(k.nbytes for k in encaps or ()) / GIB, 2),
        "bootstrap_diagonals_gib": round(diag / GIB, 2), "weight_store_mapped_gib": round(store.nbytes / GIB, 2),
        "model_float64_gib": round(weights_gib, 2), "cache_diagonals": a.diagonals}
    lay = nb.input_layout(model.config, n, params.slots, head_rows=True)
    enc, D = Encoder(params), Decryptor(sk)

    def decrypted(chunks):
        return nb.unpack([enc.decode(D.decrypt(c)).real for c in chunks], lay, lay.d)

    def write():
        res.pop("peak_rss_gib_process", None)  # a name of earlier versions: the high-water mark is reset per layer
        res["peak_rss_gib_max_layer"] = max([r.get("peak_rss_gib") or 0.0 for r in res["layers"]], default=None)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, (json.dumps(res, indent=1, default=str) + "\n").encode())

    mark: dict = {}

    def start_mark():
        reset_peak()
        mark.update(wall=time.perf_counter(), cpu=time.process_time(), ks=ev.counts["key_switches"],
                    rot=ev.counts["rotations"], relin=ev.counts["relinearizations"], boots=cbts.calls,
                    loads=galois.loads, load_bytes=galois.load_bytes, load_s=galois.load_seconds, hits=store.hits)

    def record(label, got, want, exact, timed=True):
        r = {"layer": label, "finished": now(), "pid": os.getpid(),
             "max_abs_err_vs_model": float(np.max(np.abs(got - want))),
             "max_abs_err_vs_exact": float(np.max(np.abs(got - exact))), "max_abs_ref": float(np.max(np.abs(want)))}
        if timed:
            r.update(wall_s=round(time.perf_counter() - mark["wall"], 1), cpu_s=round(time.process_time() - mark["cpu"], 1),
                     peak_rss_gib=round(peak_rss_mib() / 1024, 2), key_switches=ev.counts["key_switches"] - mark["ks"],
                     rotations=ev.counts["rotations"] - mark["rot"],
                     relinearizations=ev.counts["relinearizations"] - mark["relin"], bootstraps=cbts.calls - mark["boots"],
                     key_loads=galois.loads - mark["loads"], key_load_gib=round((galois.load_bytes - mark["load_bytes"]) / GIB, 2),
                     key_load_s=round(galois.load_seconds - mark["load_s"], 1), store_hits=store.hits - mark["hits"],
                     load_average=[round(x, 2) for x in os.getloadavg()])
        else:
            r["note"] = "checked from the checkpoint: the process ended between the checkpoint and this record"
        return r

    def on_layer(i, chunks):
        rec = record(i, decrypted(chunks), ap["hidden"][i + 1], ex["hidden"][i + 1])
        rec["within_tolerance"] = rec["max_abs_err_vs_model"] <= a.tolerance
        res["layers"] = [r for r in res["layers"] if r["layer"] != i] + [rec]
        write()
        check_layer(rec, a.tolerance)  # a wrong layer stops the run: the next would compute on it
        log(f"layer {i}: " + json.dumps({k: rec.get(k) for k in ("wall_s", "cpu_s", "peak_rss_gib", "key_switches",
                                                                   "bootstraps", "max_abs_err_vs_model")}))
        store.release(f"L{i}.")  # layer i's diagonals leave this process's memory (not the page cache)
        if after_record is not None:
            after_record(i)
        start_mark()

    ck = Checkpoint(work / "checkpoint", params, model_checksum(model), qid, top).manifest()
    done = int(ck["layers_done"]) if ck else 0
    if done and not any(r["layer"] == done - 1 for r in res["layers"]):
        _, chunks = Checkpoint(work / "checkpoint", params, model_checksum(model), qid, top).resume()
        res["layers"].append(record(done - 1, decrypted(chunks), ap["hidden"][done], ex["hidden"][done], timed=False))
    write()
    log(f"forward from layer {done} of {a.layers}; memory plan {json.dumps(res['memory_plan'])}")

    def progress(msg, i, total):
        if a.verbose:
            log(f"{msg} ({i}/{total}); peak {peak_rss_mib() / 1024:.2f} GiB; keys held {galois.held_bytes / GIB:.2f} GiB")

    bts.progress = progress if a.verbose else None
    start_mark()
    try:
        (z,) = resumable_forward(ev, cbts, model, cts, n, mask, work / "checkpoint", log=log, on_layer=on_layer,
                                 head_rows=True, weights=store, progress=progress)
    except LayerCheckFailed as e:
        log(f"FAILED: {e}")
        return 1
    logits = nb.unpack_output([enc.decode(D.decrypt(z)).real], lay, model.config.num_labels)
    res["head"] = record("head", logits, ap["logits"], ex["logits"])
    res["logits"] = {"encrypted": logits.tolist(), "model": ap["logits"].tolist(), "exact": ex["logits"].tolist()}
    res["key_store"] = galois.stats()
    write()
    log(f"done: logits {logits.tolist()} (model {ap['logits'].tolist()})")
    print(table(res))
    return 0
