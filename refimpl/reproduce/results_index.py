"""`refimpl reproduce results-index`: results/INDEX.md, every result file with its command and the docs citing it.

The commands are kept here (COMMANDS, FOLDERS); "cited by" is found by searching README.md,
docs/, spec/ and tests/ for the file's path (or for a glob pattern that matches it), so the index
follows the docs. tests/test_results_index.py checks that the committed index is the one this
builds and that it covers every file under results/.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

from refimpl.cli.common import add_json

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "results"
INDEX = RESULTS / "INDEX.md"
CITING = ("README.md", "docs", "spec", "tests")

# file (relative to results/) -> the command that made it
COMMANDS = {
    'aby3/aby3_tls_tiny.json': 'refimpl bench aby3-tls --model tiny --json results/aby3/aby3_tls_tiny.json',
    'aby3/aby3_tls_sst2-small-2quad-freediv-quad.json': 'refimpl bench aby3-tls --model sst2-small-2quad-freediv-quad --json results/aby3/aby3_tls_sst2-small-2quad-freediv-quad.json',
    'ckks/bench_csprng_2^16.json': 'refimpl bench csprng --json results/ckks/bench_csprng_2^16.json',
    'aby3/aby3_agreement.json': 'refimpl reproduce agreement --glue-dir $GLUE_DIR --no-progress --json results/aby3/aby3_agreement.json',
    'aby3/aby3_speed.json': 'refimpl reproduce speed --reps 5 --json results/aby3/aby3_speed.json',
    'aby3/aby3_speed_quiet.json': 'refimpl reproduce speed --reps 5 --json FILE',
    'bert/freediv_fit.json': 'refimpl fit-freediv --glue-dir $GLUE_DIR --split dev --model FILE --label teacher --model sst2-small-softmax-gelu --model sst2-small-2quad-freediv-quad',
    'bert/freediv_fit.png': 'refimpl fit-freediv (written beside results/bert/freediv_fit.json)',
    'ckks/mac_128-2^16-dense19.json': 'refimpl bench mac --threads both --json results/ckks/mac_128-2^16-dense19.json',
    'ckks/bench_ckks.json': 'refimpl bench ckks --threads 1 --json results/ckks/bench_ckks.json',
    'ckks/bench_ckks.log': 'the standard error of the run that wrote results/ckks/bench_ckks.json',
    'ckks/bench_ckks_loaded.log': 'refimpl bench ckks --threads 1 (an earlier run on a heavily loaded machine)',
    'ckks/bootstrap_128-2^16-dense.json': 'refimpl bench bootstrap --config \'{"preset": "128-2^16-dense", "reps": 3, "threads": "default"}\'',
    'ckks/bootpair_128-2^16-dense_1thread.json': 'refimpl bench bootstrap-pair --config \'{"preset": "128-2^16-dense", "levels_after": 18, "threads": "1", "reps": 2, "peer_reps": 2, "json": "results/ckks/bootpair_128-2^16-dense_1thread.json"}\'',
    'ckks/bootpair_128-2^16-dense_1thread_diagonals.json': 'refimpl bench bootstrap-pair --config \'{"preset": "128-2^16-dense", "levels_after": 18, "threads": "1", "reps": 2, "peer_reps": 2, "wait_mem_gib": 17, "json": "results/ckks/bootpair_128-2^16-dense_1thread_diagonals.json"}\'',
    'ckks/bootstrap_diagonals_ab_2^13.json': 'refimpl bench bootstrap --config \'{"params": {"N": 8192, "levels_after": 18, "encapsulation_h": 32, "log_s2c": 40, "num_p": 3, "ks_slack_bits": 20, "insecure": true}, "reps": 3, "threads": "1", "cache_diagonals": false}\' (run four times, cache_diagonals false, true, true, false; the four outputs and the load averages collected in one file)',
    'ckks/bootpair_128-2^16-dense_2threads_reps2.json': 'refimpl bench bootstrap-pair --config \'{"preset": "128-2^16-dense", "levels_after": 18, "threads": "default", "reps": 2, "peer_reps": 2, "wait_mem_gib": 17, "json": "results/ckks/bootpair_128-2^16-dense_2threads_reps2.json"}\'',
    'ckks/bootpair_128-2^16-dense_2threads_reps3.json': 'refimpl bench bootstrap-pair --config \'{"preset": "128-2^16-dense", "levels_after": 18, "threads": "default", "reps": 3, "peer_reps": 3, "wait_mem_gib": 17, "json": "results/ckks/bootpair_128-2^16-dense_2threads_reps3.json"}\'',
    'ckks/bootpair_dense_2^15.json': 'refimpl bench bootstrap-pair --config \'{"params": {"N": 32768, "levels_after": 18, "encapsulation_h": 32, "log_s2c": 40, "num_p": 3, "ks_slack_bits": 20, "insecure": true}, "levels_after": 18, "threads": "default", "reps": 3, "json": "results/ckks/bootpair_dense_2^15.json"}\'',
    'ckks/bootstrap_128-2^16-dense19.json': 'refimpl bench bootstrap --config \'{"preset": "128-2^16-dense19", "reps": 3, "threads": "default"}\'',
    'ckks/bootstrap_128-2^16-dense19_quiet.json': 'refimpl bench bootstrap --config \'{"preset": "128-2^16-dense19", "reps": 3, "threads": "default", "expand_keys": false}\'',
    'ckks/bootstrap_128-2^16.json': 'refimpl bench bootstrap --config \'{"preset": "128-2^16", "reps": 3, "threads": "default"}\'',
    'ckks/precision_levels_2^13.json': 'refimpl experiment precision-levels --logN 13 --cycles 3 --json results/ckks/precision_levels_2^13.json',
    'ckks/key_load_2^16.json': 'refimpl experiment key-load --json results/ckks/key_load_2^16.json',
    'ckks/openfhe_bootstrap_2^16.json': 'refimpl.bench.peers.run_peer("openfhe", "boot_openfhe", ...) (the OpenFHE peer in its own venv)',
    'nexus/nexus_argmax_bootstrapped_2^16.json': 'refimpl experiment nexus-blocks --rows argmax_boot',
    'nexus/nexus_bert_2quad-freediv-quad_2^12_20.json': 'refimpl experiment nexus-bert --model sst2-small-2quad-freediv-quad --glue-dir $GLUE_DIR --sentences 20 --max-tokens 8 --json results/nexus/nexus_bert_2quad-freediv-quad_2^12_20.json',
    'nexus/nexus_bert_2quad-freediv-quad_toy2^12.json': 'refimpl experiment nexus-bert --model sst2-small-2quad-freediv-quad --sentences 2 --json results/nexus/nexus_bert_2quad-freediv-quad_toy2^12.json',
    'nexus/nexus_bert_plan_2quad-freediv-quad.json': 'refimpl experiment nexus-bert --model sst2-small-2quad-freediv-quad --plan-only 128-2^16-dense 128-2^16-dense19',
    'nexus/nexus_bert_plan_softmax-gelu.json': 'refimpl experiment nexus-bert --model sst2-small-softmax-gelu --plan-only 128-2^16-dense 128-2^16-dense19',
    'nexus/nexus_bert_softmax-gelu_2^12_20.json': 'refimpl experiment nexus-bert --model sst2-small-softmax-gelu --glue-dir $GLUE_DIR --sentences 10 --max-tokens 8 --json FILE',
    'nexus/nexus_bert_softmax-gelu_2^12_20_part2.json': 'refimpl experiment nexus-bert --model sst2-small-softmax-gelu --glue-dir $GLUE_DIR --sentences 10 --offset 10 --max-tokens 8 --json FILE',
    'nexus/nexus_bert_softmax-gelu_toy2^12.json': 'refimpl experiment nexus-bert --model sst2-small-softmax-gelu --sentences 1 --json results/nexus/nexus_bert_softmax-gelu_toy2^12.json',
    'nexus/nexus_first_layer_counts.json': 'refimpl experiment first-layer --json results/nexus/nexus_first_layer_counts.json',
    'nexus/nexus_weights_store_encode_vs_read_2^16.json': 'refimpl experiment weights-store --skip-small --encode-vs-read --json results/nexus/nexus_weights_store_encode_vs_read_2^16.json',
    'nexus/nexus_weights_store_2^11.json': 'refimpl experiment weights-store --logN 11 --repeats 2 --json results/nexus/nexus_weights_store_2^11.json',
    'nexus/nexus_weights_store_block_2^16.json': 'refimpl experiment weights-store --skip-small --block --repeats 2 --json results/nexus/nexus_weights_store_block_2^16.json',
    'nexus/nexus_weights_store_v2_2^16.json': 'refimpl experiment weights-store --skip-small --encode-vs-read --layer-store --json results/nexus/nexus_weights_store_v2_2^16.json',
    'nexus/nexus_weights_store_expand_2^16.json': 'refimpl experiment weights-store --skip-small --encode-vs-read --json results/nexus/nexus_weights_store_expand_2^16.json',
    'nexus/nexus_weights_store_v2_2^10.json': 'refimpl experiment weights-store --logN 10 --n 8 --repeats 2 --json results/nexus/nexus_weights_store_v2_2^10.json',
    'nexus/nexus_weights_store_v2_block_2^16.json': 'refimpl experiment weights-store --skip-small --block --repeats 2 --json results/nexus/nexus_weights_store_v2_block_2^16.json',
    'nexus/nexus_distributed_dask_2^12.json': 'refimpl experiment distributed --json results/nexus/nexus_distributed_dask_2^12.json (dask[distributed] installed)',
    'nexus/nexus_unit_costs_2^16_threads.json': 'refimpl experiment unit-costs --preset 128-2^16-dense19 --reps 5 --threads 1,2 --json results/nexus/nexus_unit_costs_2^16_threads.json',
    'nexus/nexus_unit_costs_2^16_threads_nice.json': 'nice -n -20 refimpl experiment unit-costs --preset 128-2^16-dense19 --reps 5 --threads 1,2 --json results/nexus/nexus_unit_costs_2^16_threads_nice.json',
    'nexus/nexus_bertbase_counts_threads.json': 'refimpl experiment bertbase --models softmax-gelu,2quad-freediv-quad --preset 128-2^16-dense19 --n 128 --shifts 4 --plan-only --counts --boot-s 72.4 --units results/nexus/nexus_unit_costs_2^16_threads.json --json results/nexus/nexus_bertbase_counts_threads.json',
    'nexus/nexus_bertbase_counts_lazy_rescale.json': 'refimpl experiment bertbase --models softmax-gelu,2quad-freediv-quad --preset 128-2^16-dense19 --n 128 --shifts 4 --plan-only --counts --boot-s 72.4 --options qk_lazy=1,pv_lazy=1 --units results/nexus/nexus_unit_costs_2^16_threads.json --json results/nexus/nexus_bertbase_counts_lazy_rescale.json',
    'nexus/nexus_bertbase_128.json': 'refimpl experiment bertbase --models 2quad-freediv-quad,softmax-gelu --json results/nexus/nexus_bertbase_128.json',
    'nexus/nexus_bertbase_run_tiny_2^10.json': 'refimpl experiment bertbase-run --model student --work DIR --preset toy-2^10-deep --n 16 --layers 2 --hidden 32 --heads 4 --intermediate 128 --key-cache-gib 4 --json results/nexus/nexus_bertbase_run_tiny_2^10.json',
    'nexus/nexus_bertbase_run_student_first.json': 'refimpl experiment bertbase-run --model student --work DIR --key-cache-gib 4 --verbose --json FILE (the design before the FFN pairs and packed skews; stopped after layer 0)',
    'nexus/nexus_bertbase_run_student_2^16_h128.json': 'refimpl experiment bertbase-run --model student --work DIR --n 128 --layers 1 --hidden 128 --heads 2 --intermediate 512 --key-cache-gib 4 --tolerance 100 --json FILE',
    'nexus/nexus_bertbase_run_student.json': 'refimpl experiment bertbase-run --model student --work DIR --layers 1 --key-cache-gib 4 --verbose --json results/nexus/nexus_bertbase_run_student.json',
    'nexus/nexus_bertbase_run_student_12_before_guard.json': 'refimpl experiment bertbase-run --model student --work DIR --layers 12 --key-cache-gib 4 --diagonals --json FILE (the design before ln_input_guard, i.e. --options ln_input_guard=0; stopped after layer 1)',
    'nexus/nexus_bertbase_run_student_12.json': 'refimpl experiment bertbase-run --model student --work DIR --layers 12 --key-cache-gib 4 --diagonals --json FILE (resumable: the same command continues it)',
    'nexus/nexus_bertbase_run_student_12_first6.json': 'refimpl experiment bertbase-run --model student --work DIR --layers 12 --key-cache-gib 4 --diagonals --json FILE (an earlier run of the same command with its own keys; layers 0-5, its work directory lost with its machine)',
    'nexus/nexus_bertbase_noise_12_attribution_2^12.json': 'refimpl experiment bertbase-noise --layers 12 exact 19 19:0 19:1,2,3 19:4,5 19:6 --json results/nexus/nexus_bertbase_noise_12_attribution_2^12.json',
    'nexus/nexus_bertbase_noise_12_attribution_softmax-gelu_whole0_2^12.json': 'refimpl experiment bertbase-noise --model softmax-gelu --layers 12 --options rsqrt_carry_whole=0 exact 19 19:0,1,2,3,4,5,6,7 19:8 19:9 19:10 19:11,12,13 19:14,15,16,17,18,19 19:20 --json results/nexus/nexus_bertbase_noise_12_attribution_softmax-gelu_whole0_2^12.json',
    'nexus/nexus_bertbase_noise_12_attribution_softmax-gelu_previous_2^12.json': 'refimpl experiment bertbase-noise --model softmax-gelu --layers 12 --options previous exact 19 19:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14 19:15,16,17,18,19,20 19:21,22,23 19:24 19:25,26,27 19:28,29,30,31,32,33,34,35,36,37,38,39 19:40 --json results/nexus/nexus_bertbase_noise_12_attribution_softmax-gelu_previous_2^12.json',
    'nexus/nexus_bertbase_noise_all_layers_student_2^12.json': 'refimpl experiment bertbase-noise --model student --layers 12 --all-layers --seed 0,1,2 exact 19 17 --json results/nexus/nexus_bertbase_noise_all_layers_student_2^12.json (one process per seed, joined)',
    'nexus/nexus_bertbase_noise_all_layers_student_previous_2^12.json': 'refimpl experiment bertbase-noise --model student --layers 12 --all-layers --seed 0,1,2 --options previous exact 19 17 --json results/nexus/nexus_bertbase_noise_all_layers_student_previous_2^12.json (one process per seed, joined)',
    'nexus/nexus_bertbase_noise_all_layers_softmax-gelu_whole0_2^12.json': 'refimpl experiment bertbase-noise --model softmax-gelu --layers 12 --all-layers --seed 0,1 --options rsqrt_carry_whole=0 exact 19 17 --json results/nexus/nexus_bertbase_noise_all_layers_softmax-gelu_whole0_2^12.json (one process per seed, joined)',
    'nexus/nexus_bertbase_noise_all_layers_softmax-gelu_2^12.json': 'refimpl experiment bertbase-noise --model softmax-gelu --layers 12 --all-layers --seed 0,1 exact 19 17 --json results/nexus/nexus_bertbase_noise_all_layers_softmax-gelu_2^12.json (one process per seed, joined)',
    'nexus/nexus_bertbase_noise_all_layers_softmax-gelu_previous_2^12.json': 'refimpl experiment bertbase-noise --model softmax-gelu --layers 12 --all-layers --seed 0,1 --options previous exact 19 17 --json results/nexus/nexus_bertbase_noise_all_layers_softmax-gelu_previous_2^12.json (one process per seed, joined)',
    'nexus/nexus_bertbase_noise_12_unguarded_2^12.json': 'refimpl experiment bertbase-noise --layers 12 --options ln_input_guard=0 exact 19 19:0 19:1,2,3 19:4,5 19:6 --json results/nexus/nexus_bertbase_noise_12_unguarded_2^12.json',
    'nexus/nexus_bertbase_noise_12_2^12.json': 'refimpl experiment bertbase-noise --layers 12 exact 19 --json results/nexus/nexus_bertbase_noise_12_2^12.json',
    'nexus/nexus_bertbase_run_student_cache8.json': 'refimpl experiment bertbase-run --model student --work DIR --layers 1 --key-cache-gib 8 --verbose --json results/nexus/nexus_bertbase_run_student_cache8.json (a quiet machine)',
    'nexus/nexus_bertbase_run_student_2^16_h128_before_carry.json': 'refimpl experiment bertbase-run --model student --work DIR --n 128 --layers 1 --hidden 128 --heads 2 --intermediate 512 --key-cache-gib 4 --tolerance 100 --json FILE (before LayerNorm\'s 1/sqrt carried (y, t) and the variance\'s precise refresh)',
    'nexus/nexus_bertbase_run_student_2^16_h128_before.json': 'refimpl experiment bertbase-run --model student --work DIR --n 128 --layers 1 --hidden 128 --heads 2 --intermediate 512 --key-cache-gib 4 --tolerance 100 --json FILE (before the paired refresh took real parts)',
    'nexus/nexus_bertbase_noise_2^12.json': 'refimpl experiment bertbase-noise exact 19 20 19:0 19:1 19:2 --json results/nexus/nexus_bertbase_noise_2^12.json',
    'nexus/nexus_bertbase_noise_2^12_before_carry.json': 'refimpl experiment bertbase-noise exact 19 20 19:0 19:1 19:2 --json FILE (before LayerNorm\'s 1/sqrt carried (y, t) and the variance\'s precise refresh: options rsqrt_carry, precise_variance)',
    'nexus/nexus_bertbase_noise_2^12_before.json': 'refimpl experiment bertbase-noise 19 19:1 --json FILE (before the paired refresh took real parts)',
    'nexus/nexus_bertbase_run_student_2^13_n16.json': 'refimpl experiment bertbase-run --model student --work DIR --preset toy-2^13-dense19 --n 16 --layers 1 --key-cache-gib 2 --json results/nexus/nexus_bertbase_run_student_2^13_n16.json',
    'nexus/nexus_bertbase_run_student_2^13_n16_before.json': 'refimpl experiment bertbase-run --model student --work DIR --preset toy-2^13-dense19 --n 16 --layers 1 --key-cache-gib 2 --json FILE (the design before the FFN pairs and packed skews)',
    'nexus/nexus_bertbase_128_placement_fewest.json': 'refimpl experiment bertbase --models 2quad-freediv-quad --json results/nexus/nexus_bertbase_128_placement_fewest.json',
    'nexus/nexus_bertbase_128_placement_time.json': 'refimpl experiment bertbase --models 2quad-freediv-quad --weigh-by results/nexus/nexus_bertbase_128.json --json results/nexus/nexus_bertbase_128_placement_time.json',
    'nexus/nexus_protocol_2proc_2quad_2^12.json': "refimpl nexus serve --port 47011 --model sst2-small-2quad-freediv-quad --params deep-2^12-19 --calibrate-tsv $GLUE_DIR/SST-2/train.tsv --max-connections 1 ; refimpl nexus query --port 47011 --model sst2-small-2quad-freediv-quad --params deep-2^12-19 --sentence 'a gorgeous , witty movie .' --sentence 'the plot is dull .' --json ...",
    'nexus/nexus_qk_2^13.jsonl': 'refimpl experiment nexus-blocks --rows qk',
    'nexus/nexus_reproduce_128_2quad-freediv-quad.json': 'refimpl reproduce nexus --params 128-2^16-dense19 --models sst2-small-2quad-freediv-quad --sentences 1 --sentences-tsv $GLUE_DIR/SST-2/dev.tsv --calibrate-tsv $GLUE_DIR/SST-2/train.tsv --json results/nexus/nexus_reproduce_128_2quad-freediv-quad.json',
    'nexus/nexus_reproduce_128_softmax-gelu.json': 'refimpl reproduce nexus --params 128-2^16-dense19 --models sst2-small-softmax-gelu --sentences 1 --sentences-tsv $GLUE_DIR/SST-2/dev.tsv --calibrate-tsv $GLUE_DIR/SST-2/train.tsv --json results/nexus/nexus_reproduce_128_softmax-gelu.json',
    'nexus/nexus_reproduce_128_toy.json': 'refimpl reproduce nexus --params 128-2^16-dense --models toy --sentences 1 --json results/nexus/nexus_reproduce_128_toy.json',
    'nexus/nexus_reproduce_quick.json': 'refimpl reproduce nexus --quick --models toy --json results/nexus/nexus_reproduce_quick.json',
    'nexus/nexus_reproduce_small_2^12.json': 'refimpl reproduce nexus --params deep-2^12-19 --models sst2-small-softmax-gelu --sentences 1 --calibrate-tsv $GLUE_DIR/SST-2/train.tsv --json results/nexus/nexus_reproduce_small_2^12.json',
    'nexus/nexus_softmax_bootstrapped_2^16.json': 'refimpl experiment nexus-blocks --rows softmax_boot',
}

# folders whose files each record their own command: folder -> (what, command)
FOLDERS = {
    'accuracy/': ('one JSON per accuracy-table run (row, task, seed), each recording its command, seed, epochs, metric and train_seconds', '`refimpl reproduce accuracy ...` (the command is inside each file); the table: `refimpl reproduce accuracy --table`'),
    'trials/rte/': ("RTE recipes tried that are not the table's cell", '`refimpl reproduce accuracy --task RTE ...` (inside each file)'),
    'trials/sts_b/': ("STS-B recipes tried that are not the table's cell", '`refimpl reproduce accuracy --task STS-B ...` (inside each file)'),
    'trials/ship/': ('shipped-model build trials', '`refimpl ship ...` (inside each file)'),
}

HEAD = """# results/: what each file is and the command that made it

Current results by area (`ckks/`, `nexus/`, `aby3/`, `bert/`, `accuracy/`); trials that did not become a
table cell in `trials/`. Superseded copies are deleted (git history keeps them). Commands are
shown with `$GLUE_DIR` for the GLUE data folder and FILE where a run wrote to a scratch path.
Regenerate: `refimpl reproduce results-index` (tests/test_results_index.py checks it is current).
"""

_PATH = re.compile(r"results/[A-Za-z0-9_\-^*{},./]+")


def _citations(repo: Path) -> dict[str, set[str]]:
    """Each results/... path or pattern written in the citing files -> the files that write it."""
    found: dict[str, set[str]] = {}
    for top in CITING:
        base = repo / top
        files = [base] if base.is_file() else sorted(base.rglob("*.md")) + sorted(base.rglob("*.py"))
        for f in files:
            if not f.is_file():
                continue
            for m in _PATH.findall(f.read_text(encoding="utf-8", errors="replace")):
                found.setdefault(m.rstrip(".,)"), set()).add(str(f.relative_to(repo)))
    return found


def _expand(pattern: str) -> list[str]:
    """`a_{x,y}.json` -> [a_x.json, a_y.json]; other patterns unchanged."""
    m = re.search(r"\{([^}]*)\}", pattern)
    if not m:
        return [pattern]
    return [e for alt in m.group(1).split(",") for e in _expand(pattern[: m.start()] + alt + pattern[m.end():])]


def cited_by(rel: str, citations: dict[str, set[str]]) -> list[str]:
    """The files citing results/<rel>: by exact path, by a glob pattern, or by the folder."""
    target = "results/" + rel
    out: set[str] = set()
    for written, files in citations.items():
        for w in _expand(written):
            if w == target or fnmatch.fnmatchcase(target, w) or (target.endswith("/") and (w + "/").startswith(target)):
                out |= files
    return sorted(out)


def entries(repo: Path = REPO) -> dict:
    """Every result file and folder with the command that writes it and the files citing it."""
    results = repo / "results"
    citations = _citations(repo)
    files = []
    for p in sorted(results.rglob("*")):
        rel = p.relative_to(results).as_posix()
        if p.is_dir() or rel == "INDEX.md" or any(rel.startswith(f) for f in FOLDERS):
            continue
        files.append({"file": rel, "command": COMMANDS.get(rel, "(recorded in the file)"),
                      "cited_by": cited_by(rel, citations)})
    folders = [{"folder": folder, "what": what, "command": cmd, "cited_by": cited_by(folder, citations)}
               for folder, (what, cmd) in FOLDERS.items()]
    return {"files": files, "folders": folders}


def build(repo: Path = REPO) -> str:
    doc = entries(repo)
    lines = [HEAD, "| file | command | cited by |", "|---|---|---|"]
    lines += [f"| `{e['file']}` | `{e['command']}` | {', '.join(e['cited_by']) or '-'} |" for e in doc["files"]]
    lines += ["", "## Folders", "", "| folder | what | command | cited by |", "|---|---|---|---|"]
    lines += [f"| `{e['folder']}` | {e['what']} | {e['command']} | {', '.join(e['cited_by']) or '-'} |"
              for e in doc["folders"]]
    return "\n".join(lines) + "\n"


def uncovered(repo: Path = REPO) -> list[str]:
    """Files under results/ that have no row (neither their own nor their folder's)."""
    text = (repo / "results" / "INDEX.md").read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `([^`]+)` \|", text, re.M))
    out = []
    for p in sorted((repo / "results").rglob("*")):
        rel = p.relative_to(repo / "results").as_posix()
        if p.is_file() and rel != "INDEX.md" and rel not in rows and not any(rel.startswith(f) for f in rows if f.endswith("/")):
            out.append(rel)
    return out


def add_arguments(ap) -> None:
    """The options of `refimpl reproduce results-index`."""
    ap.add_argument("--check", action="store_true", help="exit 1 if results/INDEX.md is not current")
    add_json(ap, help="also write the index (files, folders, commands, citations) as JSON to this file")


def run(args) -> int:
    """`refimpl reproduce results-index`."""
    text = build()
    if args.json:
        Path(args.json).write_text(json.dumps(entries(), indent=1) + "\n", encoding="utf-8")
    if args.check:
        return 0 if INDEX.read_text(encoding="utf-8") == text else 1
    INDEX.write_text(text, encoding="utf-8")
    print(f"wrote {INDEX.relative_to(REPO)}")
    return 0
