"""`refimpl experiment ...`: timing studies, probes and runners (refimpl.experiments).

    refimpl experiment nexus-bert --model NAME [--plan-only PRESET ...] [--json FILE]
    refimpl experiment bertbase [--plan-only] [--models A,B] [--json FILE] [--table FILE] [--merge A B]
    refimpl experiment noise-probe MODEL "SENTENCE" 20 20:3,4 26 ...
    refimpl experiment bertbase-noise [--n 32 --hidden 192 --heads 12 --intermediate 768 --logN 12] exact 20 20:1 ...
    refimpl experiment nexus-blocks [--quick] [--rows argmax_boot,...]
    refimpl experiment weights-store [--block] [--json FILE]     (weights encoded once, side by side)
    refimpl experiment first-layer [--json FILE]                 (Alg. 5 + broadcast product vs expansion + BSGS)
    refimpl experiment distributed [--json FILE]                 (one block on two Dask workers; dask optional)
    refimpl experiment precision-levels [--logN 13] [--json FILE] (CKKS precision per level and bootstrap)
    refimpl experiment unit-costs [--preset P] [--validate LOGN] [--add-mac] [--json FILE] (seconds per operation and level)
    refimpl experiment key-load [--repeats 5] [--json FILE]     (Galois keys read and unpacked, or memory-mapped)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from refimpl.cli.common import add_glue_dir, add_json, glue_dir, write_json
from refimpl.cli.progress import Bars

KEY_SHIFTS = 4  # refimpl.experiments.bertbase.KEY_SHIFTS (kept here: the parser imports no library)
QUIET_BOOTSTRAP_S = 72.4  # refimpl.experiments.bertbase.QUIET_BOOTSTRAP_S
BERTBASE_MODELS = "softmax-gelu,2quad-freediv-quad"  # refimpl.experiments.bertbase.MODELS
BERTBASE_PRESET = "128-2^16-dense19"
NEXUS_BLOCK_ROWS = "gelu,layernorm,softmax,matmul,argmax,qk,argmax_boot,softmax_boot"  # nexus_blocks.ALL_ROWS


def command_line(prefix: str, args: argparse.Namespace, positional: tuple[str, ...] = ()) -> str:
    """The command as a user would type it, rebuilt from the parsed options (recorded in result files)."""
    skip = {"func", "command", "experiment", "verbose", "argv", *positional}  # the global options are not the command's
    out = [prefix] + [str(getattr(args, k)) for k in positional]
    for k, v in vars(args).items():
        if k in skip or v is None or v is False or v == "":
            continue
        flag = "--" + k.replace("_", "-")
        if v is True:
            out.append(flag)
        elif isinstance(v, list):
            out += [flag, *map(str, v)]
        else:
            out += [flag, str(v)]
    return " ".join(out)


def _glue_dir(args: argparse.Namespace) -> None:
    glue_dir(args)  # --glue-dir, then $REFIMPL_GLUE_DIR, then one clear error line


def nexus_bert(args: argparse.Namespace) -> int:
    from refimpl.experiments import nexus_bert as nbx  # lazy: keeps `refimpl --help` instant

    _glue_dir(args)
    return nbx.command(args, command_line("refimpl experiment nexus-bert", args))


def bertbase_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of the BERT-base study (also `refimpl reproduce nexus-bertbase`)."""
    ap.add_argument("--models", default=BERTBASE_MODELS)
    ap.add_argument("--options", default="", metavar="NAME=0|1,...",
                    help="NexusModel design options (refimpl.nexus.bert.ranges; e.g. qk_lazy=0,pv_lazy=0: the previous "
                         "attention products); default: the model's defaults")
    ap.add_argument("--preset", default=BERTBASE_PRESET)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--shifts", type=int, default=KEY_SHIFTS, help="key shifts of Q K^T and P V timed (of n_pad)")
    ap.add_argument("--json")
    ap.add_argument("--plan-only", action="store_true")
    ap.add_argument("--counts", action="store_true",
                    help="count key switches, bootstraps and plaintext products per block of every layer (no arithmetic, "
                         "a few minutes); printed beside the timed seconds, stored in --json")
    ap.add_argument("--only", help="comma-separated block kinds to time")
    ap.add_argument("--gelu-probe", action="store_true",
                    help="only: GELU's error against its float64 model by input, both Sgn prescales (merged into --json)")
    ap.add_argument("--weigh-by", metavar="FILE",
                    help="time-weighted placement (ours): seconds per limb of each block from FILE's timed run of the "
                         "same model and plan, refreshes at --boot-s seconds")
    ap.add_argument("--boot-s", type=float, default=QUIET_BOOTSTRAP_S,
                    help=f"with --weigh-by: seconds per refreshed ciphertext on this machine (default {QUIET_BOOTSTRAP_S}, "
                         "the quiet measurement)")
    ap.add_argument("--units", metavar="FILE",
                    help="with --counts: derive each layer's time from the counts by level and FILE's seconds per "
                         "operation (refimpl experiment unit-costs), bootstraps at --units-boot-s")
    ap.add_argument("--units-boot-s", type=float, default=None,
                    help="with --units: seconds per bootstrap on the same threads (default: FILE's bootstrap_s)")
    ap.add_argument("--table", metavar="FILE", help="only: print the README table of a stored result (no run)")
    ap.add_argument("--merge", nargs="+", metavar="FILE",
                    help="only: join results of disjoint models (one process per model) into --json (no run)")


def bertbase(args: argparse.Namespace, prefix: str = "refimpl experiment bertbase") -> int:
    from refimpl.experiments.bertbase import run  # lazy: keeps `refimpl --help` instant

    return run.command(args, command_line(prefix, args), prog=prefix)


def bertbase_run(args: argparse.Namespace) -> int:
    from refimpl.experiments.bertbase import realrun  # lazy: keeps `refimpl --help` instant

    return realrun.command(args, command_line("refimpl experiment bertbase-run", args))


def noise_probe(args: argparse.Namespace) -> int:
    from refimpl.experiments import noise_probe as npx  # lazy: keeps `refimpl --help` instant

    _glue_dir(args)
    return npx.command(args)


def bertbase_noise(args: argparse.Namespace) -> int:
    from refimpl.experiments.bertbase import noise  # lazy: keeps `refimpl --help` instant

    return noise.command(args)


def nexus_blocks(args: argparse.Namespace) -> int:
    import numba  # lazy: keeps `refimpl --help` instant

    from refimpl.experiments.nexus_blocks import run  # lazy: keeps `refimpl --help` instant

    numba.set_num_threads(args.threads)
    rows = []

    def emit(row):  # one JSON line each as it comes; the whole list with --json
        rows.append(row)
        print(json.dumps(row), flush=True)

    run(args.quick, emit, tuple(args.rows.split(",")), args.dnum or None)
    write_json(args.json, {"command": command_line("refimpl experiment nexus-blocks", args), "rows": rows})
    return 0


def weights_store(args: argparse.Namespace) -> int:
    from refimpl.experiments import weights_timing as wt  # lazy: keeps `refimpl --help` instant

    doc = {"command": command_line("refimpl experiment weights-store", args)}
    if not args.skip_small:
        doc["small_ring"] = wt.small_ring(args.logN, repeats=args.repeats, n=args.n)
    if args.encode_vs_read:
        doc["encode_vs_expand_2^16"] = wt.encode_vs_expand()
        doc["bertbase_query_saving"] = wt.bertbase_saving(doc["encode_vs_expand_2^16"])
    if args.layer_store:
        doc["bertbase_layer_store"] = wt.bertbase_layer_store()
    if args.block:
        doc["bertbase_block"] = wt.bertbase_block(repeats=args.repeats)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


def first_layer(args: argparse.Namespace) -> int:
    from refimpl.experiments import first_layer as fl  # lazy: keeps `refimpl --help` instant

    doc = {"command": command_line("refimpl experiment first-layer", args), "small_ring": fl.counts_small(),
           "bertbase": fl.counts_bertbase()}
    print(json.dumps(doc, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


def distributed(args: argparse.Namespace) -> int:
    from refimpl.experiments import distributed as dx  # lazy: keeps `refimpl --help` instant (and dask is optional)

    try:
        row = dx.run()
    except ImportError:
        print("refimpl experiment distributed: needs dask.distributed (pip install 'dask[distributed]')")
        return 2
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"command": command_line("refimpl experiment distributed", args), **row}, f, indent=1)
    return 0


def measure_with_bars(fn, *a, **kw):
    """fn(*a, progress=bars, **kw) with progress bars on stderr (refimpl.cli.progress)."""
    with Bars() as bars:
        return fn(*a, progress=bars, **kw)


def precision_levels(args: argparse.Namespace) -> int:
    from refimpl.experiments import precision_levels as pl  # lazy: keeps `refimpl --help` instant

    cmd = f"refimpl experiment precision-levels --logN {args.logN} --cycles {args.cycles}"
    doc = {"command": cmd + (f" --json {args.json}" if args.json else ""),
           **measure_with_bars(pl.measure, args.logN, args.cycles)}
    print(doc["security"], file=sys.stderr)
    write_json(args.json, doc)
    if not args.json:
        print(json.dumps(doc, indent=1))
    return 0


def key_load(args: argparse.Namespace) -> int:
    from refimpl.experiments import key_load as kl  # lazy: keeps `refimpl --help` instant

    doc = {"command": command_line("refimpl experiment key-load", args), **kl.measure(args.preset, args.repeats)}
    write_json(args.json, doc)
    print(json.dumps(doc, indent=1))
    return 0


def unit_costs(args: argparse.Namespace) -> int:
    import numba  # lazy: keeps `refimpl --help` instant

    from refimpl.ckks.bootstrap.bootstrapper import bootstrap_preset  # lazy: keeps `refimpl --help` instant
    from refimpl.experiments.bertbase import cost  # lazy: keeps `refimpl --help` instant

    counts = [int(t) for t in str(args.threads).split(",")]
    numba.set_num_threads(counts[0])
    if args.add_mac:
        return add_mac(args, cost)
    if len(counts) > 1:
        return units_by_threads(args, cost, counts)
    cmd = (f"refimpl experiment unit-costs --validate {args.validate}" if args.validate
           else f"refimpl experiment unit-costs --preset {args.preset}") + f" --reps {args.reps} --threads {args.threads}"
    doc = {"command": cmd + (f" --json {args.json}" if args.json else ""), "threads": counts[0]}
    if args.validate:
        doc.update(measure_with_bars(cost.validate, logN=args.validate, reps=args.reps))
        for name, m in doc["models"].items():
            print(f"{name}: measured {m['measured_cpu_s']} CPU s, predicted {m['predicted_s']} s "
                  f"(measured / predicted {m['ratio_measured_over_predicted']})")
    else:
        params, rc = bootstrap_preset(args.preset)
        top = params.L - rc.depth
        levels = sorted({1, *range(top % 4 or 4, top + 1, 4), top})
        doc.update({"preset": args.preset, "N": params.N, "security": params.security_note,
                    "bootstrap_s": args.bootstrap_s, "bootstrap_source": args.bootstrap_source,
                    "units": measure_with_bars(cost.measure_units, params, levels, reps=args.reps)})
        print(json.dumps(doc["units"]))
    write_json(args.json, doc)
    return 0


BOOTSTRAP_BY_THREADS = {1: (140.9, "results/ckks/bootpair_128-2^16-dense_1thread.json (one thread)"),
                        2: (72.4, "results/ckks/bootstrap_128-2^16-dense19_quiet.json (two threads, wall, quiet)")}


def units_by_threads(args: argparse.Namespace, cost, counts: list[int]) -> int:
    """unit-costs --threads 1,2: every operation timed at each thread count side by side in one run (wall and CPU
    seconds); the file's "units" are the last count's wall seconds, "units_by_threads" each count's, and the
    bootstrap seconds per count are the measured bootstraps of BOOTSTRAP_BY_THREADS (ours)."""
    from refimpl.ckks.bootstrap.bootstrapper import bootstrap_preset  # lazy: keeps `refimpl --help` instant

    params, rc = bootstrap_preset(args.preset)
    top = params.L - rc.depth
    levels = sorted({1, *range(top % 4 or 4, top + 1, 4), top})
    missing = [t for t in counts if t not in BOOTSTRAP_BY_THREADS]
    if missing:
        raise SystemExit(f"unit-costs --threads: no measured bootstrap for {missing} thread(s)")
    cmd = (f"refimpl experiment unit-costs --preset {args.preset} --reps {args.reps} --threads {args.threads}"
           + (f" --json {args.json}" if args.json else ""))
    units = measure_with_bars(cost.measure_units, params, levels, reps=args.reps, threads=tuple(counts))
    by = units.pop("by_threads")
    doc = {"command": cmd, "threads": counts[-1], "clock": units["clock"], "preset": args.preset, "N": params.N,
           "security": params.security_note, "bootstrap_s": BOOTSTRAP_BY_THREADS[counts[-1]][0],
           "bootstrap_source": BOOTSTRAP_BY_THREADS[counts[-1]][1], "units": units,
           "units_by_threads": {t: v["wall"] for t, v in by.items()},
           "units_cpu_by_threads": {t: v["cpu"] for t, v in by.items()},
           "bootstrap_s_by_threads": {str(t): BOOTSTRAP_BY_THREADS[t][0] for t in counts},
           "bootstrap_source_by_threads": {str(t): BOOTSTRAP_BY_THREADS[t][1] for t in counts}}
    print(json.dumps(doc["units_by_threads"]))
    write_json(args.json, doc)
    return 0


def add_mac(args: argparse.Namespace, cost) -> int:
    """unit-costs --add-mac: the fused multiply-accumulate's unit measured at the levels of the units in --json
    (made before it existed) and written into them."""
    if not args.json or not Path(args.json).exists():
        raise SystemExit("refimpl experiment unit-costs --add-mac: give the existing units file as --json FILE")
    from refimpl.ckks.bootstrap.bootstrapper import bootstrap_preset  # lazy: keeps `refimpl --help` instant

    doc = json.loads(Path(args.json).read_text())
    params, _ = bootstrap_preset(doc.get("preset", args.preset))
    doc["units"]["mac"] = cost.measure_mac(params, doc["units"]["levels"], reps=args.reps)
    doc["mac_command"] = (f"refimpl experiment unit-costs --add-mac --reps {args.reps} --threads {args.threads} "
                          f"--json {args.json}")
    print(json.dumps({"levels": doc["units"]["levels"], "mac": doc["units"]["mac"]}))
    write_json(args.json, doc)
    return 0


def register(sub) -> None:
    fmt = argparse.ArgumentDefaultsHelpFormatter
    e = sub.add_parser("experiment", help="timing studies, probes and runners (refimpl.experiments)", formatter_class=fmt)
    es = e.add_subparsers(dest="experiment", required=True)

    p = es.add_parser("nexus-bert", formatter_class=fmt,
                      help="the encrypted BERT on short SST-2 sentences: encrypted vs plaintext logits, or the plans")
    p.add_argument("--model", required=True, help="a model directory or a shipped model's name")
    add_glue_dir(p)
    p.add_argument("--logN", type=int, default=12)
    p.add_argument("--levels-after", type=int, default=19)
    p.add_argument("--sentences", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=8)
    p.add_argument("--offset", type=int, default=0, help="skip this many short dev sentences")
    p.add_argument("--calibration", type=int, default=200, help="short SST-2 train sentences for the ranges")
    p.add_argument("--json")
    p.add_argument("--plan-only", nargs="*", metavar="PRESET",
                   help="print and record the plans at these bootstrapping presets (e.g. 128-2^16-dense) for n = 8, 16")
    p.set_defaults(func=nexus_bert)

    p = es.add_parser("bertbase", formatter_class=fmt,
                      help="BERT-base at n = 128 under NEXUS: plan, timed blocks, derived time")
    bertbase_arguments(p)
    p.set_defaults(func=bertbase)

    p = es.add_parser("bertbase-run", formatter_class=fmt,
                      help="one real encrypted BERT-base forward, each layer decrypted and checked, resumable (ours)")
    p.add_argument("--model", default="student", help="student (2Quad-freeDiv + Quad) or softmax-gelu")
    p.add_argument("--work", help="the run's directory: weight store, keys (the secret key too), input, checkpoint")
    p.add_argument("--preset", default=BERTBASE_PRESET)
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--hidden", type=int, help="smaller sizes (tests): hidden size")
    p.add_argument("--heads", type=int, help="smaller sizes (tests): attention heads")
    p.add_argument("--intermediate", type=int, help="smaller sizes (tests): FFN size")
    p.add_argument("--key-cache-gib", type=float, default=6.0,
                   help="Galois keys held in memory at most (read on use from the work directory)")
    p.add_argument("--diagonals", action="store_true", help="keep the bootstrap's encoded diagonals (4.55 GiB at 2^16)")
    p.add_argument("--options", default="", metavar="NAME=0|1,...", help="NexusModel design options (as bertbase's)")
    p.add_argument("--tolerance", type=float, default=0.05,
                   help="stop (exit 1) when a layer's decrypted output is farther than this from the float64 model")
    p.add_argument("--json", help="the per-layer records (default results/nexus/nexus_bertbase_run_MODEL.json)")
    p.add_argument("--verbose", action="store_true", help="log every piece of the forward and every bootstrap stage")
    p.add_argument("--table", metavar="FILE", help="only: print the per-layer table of a results file (no run)")
    p.set_defaults(func=bertbase_run)

    p = es.add_parser("noise-probe", formatter_class=fmt,
                      help="the encrypted forward with Gaussian noise on refreshed slots, against the float64 model")
    p.add_argument("model")
    p.add_argument("sentence")
    p.add_argument("specs", nargs="+", help="BITS[:i,j,...]: noise 2^-BITS, only at the i-th, j-th refresh")
    add_glue_dir(p)
    add_json(p, help="also write the rows as one JSON document to this file")
    p.set_defaults(func=noise_probe)

    p = es.add_parser("bertbase-noise", formatter_class=fmt,
                      help="bertbase-run's synthetic model, layer 0, on a small insecure ring with noisy refreshes (ours)")
    p.add_argument("specs", nargs="*", help="exact, or BITS[:i,j,...]: noise 2^-BITS, only at the i-th, j-th refresh")
    p.add_argument("--model", default="student", help="student (2Quad-freeDiv + Quad) or softmax-gelu")
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--hidden", type=int, default=192)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--intermediate", type=int, default=768)
    p.add_argument("--logN", type=int, default=12, help="ring degree 2^logN (insecure; 128-2^16-dense19's chain)")
    p.add_argument("--layers", type=int, default=1, help="the model's depth: layer 0 as that model's plan refreshes it")
    p.add_argument("--options", default="", metavar="NAME=0|1,...",
                   help="NexusModel design options (as bertbase's); previous: every option off")
    p.add_argument("--all-layers", action="store_true",
                   help="run every layer and the head: each layer's error and the logits' against the float64 model")
    p.add_argument("--seed", default="0", metavar="K[,K...]",
                   help="draws of keys, encryptions and refresh noise, one run each (insecure seeds)")
    p.add_argument("--table", nargs="+", metavar="FILE", help="only: print stored --all-layers runs as one table")
    add_json(p, help="also write the rows as one JSON document to this file")
    p.set_defaults(func=bertbase_noise)

    p = es.add_parser("weights-store", formatter_class=fmt,
                      help="the encrypted forward with and without a weight store (weights encoded once), side by side")
    p.add_argument("--logN", type=int, default=12, help="ring of the small-ring run (tiny models, oracle refreshes)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--n", type=int, default=6, help="tokens of the small-ring run (N / 128 fills every token window)")
    p.add_argument("--block", action="store_true", help="also one BERT-base 128 x 128 block at N = 2^16 (minutes, GBs)")
    p.add_argument("--skip-small", action="store_true")
    p.add_argument("--encode-vs-read", action="store_true",
                   help="also: per diagonal at N = 2^16, encoding against reading and expanding the stored one (CPU s)")
    p.add_argument("--layer-store", action="store_true",
                   help="also: the store of one synthetic BERT-base layer at N = 2^16, n = 128 (bytes, minutes)")
    p.add_argument("--json")
    p.set_defaults(func=weights_store)

    p = es.add_parser("first-layer", formatter_class=fmt,
                      help="the first layer counted two ways: input expansion + BSGS, or Alg. 5 + broadcast ct-pt")
    p.add_argument("--json")
    p.set_defaults(func=first_layer)

    p = es.add_parser("distributed", formatter_class=fmt,
                      help="one linear block on two Dask workers beside one process (needs dask.distributed)")
    p.add_argument("--json")
    p.set_defaults(func=distributed)

    p = es.add_parser("precision-levels", formatter_class=fmt,
                      help="CKKS precision (bits) per level and after each bootstrap, small insecure ring (minutes)")
    p.add_argument("--logN", type=int, default=13, help="ring degree 2^logN (below 16: insecure, precision only)")
    p.add_argument("--cycles", type=int, default=3, help="bootstraps along the chain")
    add_json(p, help="write the measurement as one JSON document to this file (else to stdout)")
    p.set_defaults(func=precision_levels)

    p = es.add_parser("key-load", formatter_class=fmt,
                      help="one BERT-base Galois key read and unpacked, or memory-mapped, each then used in a key "
                           "switch, side by side (about a minute)")
    p.add_argument("--preset", default=BERTBASE_PRESET)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json")
    p.set_defaults(func=key_load)

    p = es.add_parser("unit-costs", formatter_class=fmt,
                      help="seconds per CKKS operation by level (the time model of bertbase --units), or --validate "
                           "the model against a real small forward")
    p.add_argument("--preset", default=BERTBASE_PRESET)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", default="1", help="numba threads; a list (1,2): each operation timed at every count "
                                                   "side by side, wall seconds (and CPU) per count")
    p.add_argument("--validate", type=int, metavar="LOGN", help="instead: predicted against measured on an insecure "
                                                                    "ring of 2^LOGN (a one-layer model)")
    p.add_argument("--bootstrap-s", type=float, default=140.9,
                   help="seconds per bootstrap recorded beside the units (default: the one-thread bootstrap of "
                        "results/ckks/bootpair_128-2^16-dense_1thread.json)")
    p.add_argument("--bootstrap-source", default="results/ckks/bootpair_128-2^16-dense_1thread.json")
    p.add_argument("--add-mac", action="store_true",
                   help="only measure the fused multiply-accumulate (Evaluator.mul_plain_sum, per term) at the levels "
                        "of the units already in --json FILE, and add it there")
    add_json(p, help="write the units as one JSON document to this file")
    p.set_defaults(func=unit_costs)

    p = es.add_parser("nexus-blocks", formatter_class=fmt, help="benchmark rows of the NEXUS blocks, JSON lines")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rows", default=NEXUS_BLOCK_ROWS)
    p.add_argument("--dnum", type=int, default=4, help="key-switching digits at N = 2^16 (0: one special prime, as SEAL)")
    p.add_argument("--threads", type=int, default=1, help="numba threads (the peer figures are one thread)")
    add_json(p, help="also write the rows as one JSON document to this file")
    p.set_defaults(func=nexus_blocks)
