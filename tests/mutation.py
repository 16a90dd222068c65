"""Mutation testing of refimpl's core packages with mutmut, one target at a time.

Not part of the default test run (it takes hours on two cores). Usage, from the repository root:

    python tests/mutation.py list                 # the targets and what they mutate
    nice -n 19 python tests/mutation.py run ring  # mutate refimpl/ring, run tests/ring per mutant
    python tests/mutation.py report ring          # score and surviving mutants of the last run
    nice -n 19 python tests/mutation.py recheck ring tests/ring/test_samplers.py
                                                  # the survivors against the tests written for them
    nice -n 10 python tests/mutation.py sample ckks --size 200 --seed 1
                                                  # a seeded random sample of ckks's mutants, run in
                                                  # random order; --resume goes on after a stop
    python tests/mutation.py report ckks-sample   # its score with a 95 % interval so far

Each target runs in its own scratch copy of the repository, .mutation/<target>/ (ignored by git),
whose pyproject.toml gets a [tool.mutmut] section naming the files to mutate and the tests to
run; the checkout itself is never touched. mutmut (>= 3.3) must be installed in the running
interpreter (`pip install -e ".[mutation]"`). The report is written to .mutation/<target>.txt:
the counts per status, the score killed / (killed + survived), and the diff of every survivor.

The sample mode is our departure from a full run, for a shared machine: a full run of ckks or
nexus-blocks takes 5 to 10 hours on two cores. `sample` draws K mutants of the target uniformly
with a seeded generator (Python's random.Random(seed).sample over the sorted mutant names), runs
them in that random order (mutmut itself runs the mutants with the cheapest tests first), and the
report counts the longest prefix of that order whose mutants all have a result: a uniform random
sample however early the run was stopped. The score is given with a 95 % Wilson interval. The full
run stays the documented measurement for a quiet machine.

This script never imports refimpl: it only copies files and calls mutmut.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = ROOT / ".mutation"

# target -> (files to mutate, test paths run against each mutant). The test paths are those
# that exercise the target; -m 'not slow' is inherited from the project's pytest options.
TARGETS: dict[str, tuple[list[str], list[str]]] = {
    "ring": (["refimpl/ring/*.py"], ["tests/ring"]),
    "ckks": (
        ["refimpl/ckks/params.py", "refimpl/ckks/encoder.py", "refimpl/ckks/encryptor.py",
         "refimpl/ckks/evaluator.py", "refimpl/ckks/keys.py", "refimpl/ckks/keyswitch.py",
         "refimpl/ckks/polyeval.py", "refimpl/ckks/ciphertext.py", "refimpl/ckks/serialize.py"],
        # the bootstrapping tests belong to ckks-bootstrap (minutes each): left out with PYTEST_ARGS
        ["tests/ckks"],
    ),
    # with the tests that reach the oracle bootstrapper (test_polyeval), galois_levels (test_key_levels),
    # bootstrapping_context and the bootstrap's progress (test_progress, 5 s); not test_facade (a minute)
    "ckks-bootstrap": (["refimpl/ckks/bootstrap/*.py"],
                       ["tests/ckks/test_bootstrap.py", "tests/ckks/test_placement.py",
                        "tests/ckks/test_bootstrap_mutants.py", "tests/ckks/test_bootstrap_precompute.py",
                        "tests/ckks/test_key_levels.py", "tests/ckks/test_polyeval.py", "tests/test_progress.py"]),
    "nexus-blocks": (
        ["refimpl/nexus/sign.py", "refimpl/nexus/gelu.py", "refimpl/nexus/softmax.py",
         "refimpl/nexus/layernorm.py", "refimpl/nexus/argmax.py", "refimpl/nexus/compression.py",
         "refimpl/nexus/matmul.py", "refimpl/nexus/folding.py"],
        ["tests/nexus/test_nexus_sign_folding.py", "tests/nexus/test_nexus_gelu.py",
         "tests/nexus/test_nexus_softmax.py", "tests/nexus/test_nexus_layernorm.py",
         "tests/nexus/test_nexus_argmax.py", "tests/nexus/test_nexus_compression.py",
         "tests/nexus/test_nexus_matmul.py", "tests/nexus/test_approx_constants.py",
         "tests/nexus/test_nexus_mutants.py"],
    ),
    # the float64 models and constants of the blocks against the papers' values and the exact
    # functions only (no encryption: fast); run with --only 'refimpl.nexus.*plain*' and the like
    "nexus-models": (
        ["refimpl/nexus/sign.py", "refimpl/nexus/gelu.py", "refimpl/nexus/softmax.py",
         "refimpl/nexus/layernorm.py", "refimpl/nexus/argmax.py", "refimpl/nexus/folding.py"],
        ["tests/nexus/test_approx_constants.py"],
    ),
    "aby3": (
        ["refimpl/aby3/arith.py", "refimpl/aby3/boolean.py", "refimpl/aby3/nonlinear.py",
         "refimpl/aby3/prss.py", "refimpl/aby3/shares.py", "refimpl/aby3/fixed.py",
         "refimpl/aby3/network.py", "refimpl/aby3/attention.py"],
        # the unit tests; the TCP, agreement, speed and model tests rerun whole models per mutant.
        # Left out as well: test_views.py, the byte-histogram view audit (90 of the 168 s these
        # tests take; the conditioned audit of test_prss_and_views.py checks the same protocols'
        # messages), and test_kernels.py (the numba kernels, which no file mutated here holds).
        ["tests/aby3/test_arith.py", "tests/aby3/test_boolean.py", "tests/aby3/test_nonlinear.py",
         "tests/aby3/test_attention.py", "tests/aby3/test_network.py", "tests/aby3/test_cost_pins.py",
         "tests/aby3/test_prss_and_views.py", "tests/aby3/test_protocol_edges.py", "tests/aby3/test_aby3_mutants.py"],
    ),
}

# target -> pytest options added to its runs: tests of the directory that belong to another target
# and take minutes (every mutant of ckks's evaluator would rerun them)
PYTEST_ARGS = {"ckks": ["--ignore=tests/ckks/test_bootstrap.py", "--ignore=tests/ckks/test_placement.py",
                        "--ignore=tests/ckks/test_bootstrap_precompute.py"]}

THREADED = {"aby3"}  # targets whose tests call numba from several threads at once

# mutmut stops a mutant's test run after (estimated test time + constant) x multiplier seconds and
# counts it as killed ("timeout"). The default (30 s, x 10) suits the single-process targets. In
# aby3 a mutant that drops or misroutes a message leaves a party waiting for it (the in-memory
# transport waits up to 10 minutes): with the default every such mutant costs 5 minutes or more,
# so that target waits (t + 10 s) x 3, still well above its tests' normal time on a loaded machine.
TIMEOUTS = {"aby3": (10.0, 3.0)}  # target -> (constant s, multiplier)

# Edits of the scratch copy only (never of the checkout): (file, text, replacement). The ABY3
# in-memory transport waits 10 minutes for a message before it declares the peer dead; a mutant
# that leaves a party waiting then fails after 60 s instead (a ProtocolError: killed).
SCRATCH_EDITS = {"aby3": [("refimpl/aby3/network.py", "RECV_TIMEOUT_S = 600.0", "RECV_TIMEOUT_S = 60.0")]}

# what the scratch copy needs: the package (with its data files), the tests, the project file
COPIED = ["refimpl", "tests", "pyproject.toml", "results", "spec"]


# Run in a scratch copy instead of `python -m mutmut`: `generate` only writes the mutants (mutmut
# has no command for that); `run ORDERFILE ARGS...` is `mutmut run ARGS` with the mutants taken in
# the order of ORDERFILE instead of cheapest tests first (mutmut sorts by its estimate
# `estimated_worst_case_time`, which this replaces by the rank). With MUTATION_SKIP_CLEAN=1 the
# clean run of the selected tests is skipped: set when the same invocation collects mutmut's
# stats, which runs every selected test unmutated and stops if one fails.
MUTMUT_DRIVER = r"""
import os, sys
from pathlib import Path
import mutmut.__main__ as mm
if sys.argv[1] == "generate":
    mm.set_mutant_under_test("mutant_generation")
    os.makedirs("mutants", exist_ok=True)
    mm.copy_src_dir()
    mm.copy_also_copy_files()
    mm.setup_source_paths()
    mm.store_lines_covered_by_tests()
    mm.create_mutants(1)
    sys.exit(0)
rank = {n: i for i, n in enumerate(Path(sys.argv[2]).read_text().split())}
mm.estimated_worst_case_time = lambda name: float(rank.get(name, len(rank)))
if os.environ.get("MUTATION_SKIP_CLEAN") == "1":
    make_runner = mm.get_mutant_runner
    def get_runner(*args):
        runner = make_runner(*args)
        runner.run_clean_tests = lambda tests: 0
        return runner
    mm.get_mutant_runner = get_runner
mm.cli(["run"] + sys.argv[3:])
"""

# mutmut statuses that are a verdict; the others ("not checked", "check was interrupted by user",
# "suspicious") are run (again) by `sample --resume`
FINAL = {"killed", "timeout", "survived", "no tests", "segfault", "caught by type check", "skipped"}


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion k / n (Wilson 1927)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


def _env(target: str) -> dict[str, str]:
    env = dict(os.environ)
    if target not in THREADED:
        env["NUMBA_THREADING_LAYER"] = "workqueue"
    return env


def _commit() -> str:
    """HEAD, and the tree id of refimpl/ (equal on every commit with the same code, e.g. main's)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    head = f"{git('rev-parse', '--short', 'HEAD')}, refimpl/ tree {git('rev-parse', '--short', 'HEAD:refimpl')}"
    dirty = subprocess.run(["git", "status", "--porcelain", "refimpl"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return head + (" (with uncommitted changes in refimpl/)" if dirty else "")


def sample(target: str, size: int, seed: int, resume: bool, max_children: int) -> int:
    """Run `size` mutants of `target` drawn with `seed` (the first `size` of a seeded random
    permutation of all its mutants, so that a larger size on --resume extends the same sample), in
    that order, in the scratch copy <target>-sample; report the score over the longest finished prefix."""
    name = f"{target}-sample"
    work, meta_file = SCRATCH / name, SCRATCH / f"{name}.json"
    fresh = not (resume and work.exists() and meta_file.exists())
    env = _env(target)
    if fresh:
        prepare(target, name=name)
        subprocess.check_call([sys.executable, "-c", MUTMUT_DRIVER, "generate"], cwd=work, env=env)
        order = sorted(n for names in statuses(name).values() for n in names)
        random.Random(seed).shuffle(order)
        meta = {"target": target, "seed": seed, "commit": _commit(), "population": len(order), "order": order}
        meta_file.write_text(json.dumps(meta, indent=1))
    meta = json.loads(meta_file.read_text())
    if meta["seed"] != seed:
        raise SystemExit(f"{name} was drawn with seed {meta['seed']}; resume with that seed or start afresh")
    meta["size"] = min(size, meta["population"])
    meta_file.write_text(json.dumps(meta, indent=1))
    chosen = meta["order"][:meta["size"]]
    (SCRATCH / f"{name}.order").write_text("\n".join(chosen) + "\n")
    done = {n for st, names in statuses(name).items() if st in FINAL for n in names}
    todo = [n for n in chosen if n not in done]
    if fresh:
        env["MUTATION_SKIP_CLEAN"] = "1"  # the stats run of this invocation runs the tests unmutated
    cmd = [sys.executable, "-c", MUTMUT_DRIVER, "run", str(SCRATCH / f"{name}.order"), "--max-children",
           str(max_children)]
    rc = 0
    if todo:
        proc = subprocess.Popen(cmd + todo, cwd=work, env=env)
        (SCRATCH / f"{name}.pid").write_text(f"{proc.pid}\n")  # stop with: kill -INT <pid> (resumable)
        rc = proc.wait()
        again = [n for n in statuses(name).get("suspicious", []) if n in set(chosen)]
        if again and rc == 0:
            env.pop("MUTATION_SKIP_CLEAN", None)
            rc = subprocess.call(cmd + again, cwd=work, env=env)
    report(name)
    return rc


def sample_summary(name: str, status: dict[str, list[str]]) -> list[str]:
    """The score of a sample over the longest prefix of its random order with a verdict for every mutant."""
    meta = json.loads((SCRATCH / f"{name}.json").read_text())
    of = {n: st for st, names in status.items() for n in names}
    prefix = []
    for n in meta["order"][:meta["size"]]:
        if of.get(n) not in FINAL:
            break
        prefix.append(n)
    count: dict[str, int] = {}
    for n in prefix:
        count[of[n]] = count.get(of[n], 0) + 1
    killed = count.get("killed", 0) + count.get("timeout", 0)
    survived = count.get("survived", 0)
    lo, hi = wilson(killed, killed + survived)
    text = [f"sample of {meta['target']}: seed {meta['seed']}, code of commit {meta['commit']}",
            f"  {len(prefix)} of the {meta['size']} drawn have a verdict (population {meta['population']} mutants): "
            + ", ".join(f"{k} {v}" for k, v in sorted(count.items()))]
    if killed + survived:
        text.append(f"  score {killed}/{killed + survived} = {100.0 * killed / (killed + survived):.1f} %, "
                    f"95 % Wilson interval [{100 * lo:.1f} %, {100 * hi:.1f} %]")
    text += [f"  survived in the prefix: {n}" for n in prefix if of[n] == "survived"]
    return text


def _toml_list(xs: list[str]) -> str:
    return "[" + ", ".join(f'"{x}"' for x in xs) + "]"


def prepare(target: str, tests: list[str] | None = None, name: str | None = None,
            code_from: Path | None = None) -> Path:
    """A fresh scratch copy for `target` with its [tool.mutmut] section (`tests` overrides the
    target's test selection; `name` the scratch directory; `code_from` a directory whose refimpl/
    is copied instead of the checkout's, so that a recheck mutates the code of the run it checks)."""
    mutate, default_tests = TARGETS[target]
    tests = tests or default_tests
    work = SCRATCH / (name or target)
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis")
    for item in COPIED:
        src = (code_from or ROOT) / item if item == "refimpl" else ROOT / item
        if src.is_dir():
            shutil.copytree(src, work / item, ignore=ignore)
        elif src.exists():
            shutil.copy2(src, work / item)
    for path, text, replacement in SCRATCH_EDITS.get(target, []):
        src = (work / path).read_text()
        if replacement in src:  # a recheck copies the code of a run that had the edit already
            continue
        if text not in src:
            raise SystemExit(f"{path} no longer contains {text!r}: update SCRATCH_EDITS in tests/mutation.py")
        (work / path).write_text(src.replace(text, replacement))
    existing = [t for t in tests if (work / t).exists()]
    section = (
        "\n[tool.mutmut]\n"
        'source_paths = ["refimpl"]\n'
        f"only_mutate = {_toml_list(mutate)}\n"
        f"pytest_add_cli_args_test_selection = {_toml_list(existing)}\n"
        f'pytest_add_cli_args = {_toml_list(["-p", "no:cacheprovider", "-x"] + PYTEST_ARGS.get(target, []))}\n'
        f"timeout_multiplier = {TIMEOUTS.get(target, (30.0, 10.0))[1]}\n"
        f"timeout_constant = {TIMEOUTS.get(target, (30.0, 10.0))[0]}\n"
        # numba's default threading layer (GNU OpenMP) does not survive a fork() of a process
        # that already ran parallel code: the child is terminated and mutmut reports the mutant
        # as "suspicious". Single-threaded targets use numba's workqueue layer (fork-safe, see
        # `run`); the ABY3 parties call numba from three threads at once, which workqueue does
        # not allow, so that target forks from a server that has only imported the tests.
        + ('process_isolation = "forkserver"\n' if target in THREADED else "")
    )
    with open(work / "pyproject.toml", "a") as f:
        f.write(section)
    return work


def statuses(target: str) -> dict[str, list[str]]:
    """mutmut's status -> mutant names, for the last run of `target`."""
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=SCRATCH / target,
                         capture_output=True, text=True)
    status: dict[str, list[str]] = {}
    for ln in out.stdout.splitlines():
        name, sep, st = ln.strip().rpartition(": ")
        if sep:
            status.setdefault(st.strip(), []).append(name.strip())
    return status


def run(target: str, max_children: int, resume: bool = False, only: list[str] | None = None) -> int:
    """Mutate and test `target`; resume=True keeps the scratch copy and its results so far; `only`:
    mutant name patterns (e.g. "refimpl.aby3.prss.*") to run first or alone. Mutants whose test
    run ended abnormally ("suspicious") are run once more at the end."""
    work = SCRATCH / target if resume and (SCRATCH / target).exists() else prepare(target)
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
    env = _env(target)
    rc = subprocess.call(cmd + list(only or []), cwd=work, env=env)
    again = statuses(target).get("suspicious", [])
    if again:
        rc = subprocess.call(cmd + again, cwd=work, env=env)
    report(target)
    return rc


def recheck(target: str, tests: list[str]) -> int:
    """Run the survivors and untested mutants of the last run of `target` against `tests` (the
    tests written for them) in a scratch copy of its own, <target>-recheck; report it."""
    status = statuses(target)
    names = status.get("survived", []) + status.get("no tests", [])
    if not names:
        print(f"{target}: no survivors to recheck")
        return 0
    name = f"{target}-recheck"
    base = target.removesuffix("-sample")
    work = prepare(base, tests=tests, name=name, code_from=SCRATCH / target)
    env = _env(base)
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", "1"]
    rc = subprocess.call(cmd + names, cwd=work, env=env)
    report(name, only=set(names))
    return rc


def report(target: str, only: set[str] | None = None) -> int:
    work = SCRATCH / target
    status = statuses(target)
    if only is not None:  # a recheck: the mutants it was asked about
        status = {st: [n for n in names if n in only] for st, names in status.items()}
        status = {st: names for st, names in status.items() if names}
    killed = len(status.get("killed", [])) + len(status.get("timeout", []))  # a hang is noticed too
    survived = status.get("survived", [])
    text = [f"target {target}: " + ", ".join(f"{k} {len(v)}" for k, v in sorted(status.items()))]
    if killed + len(survived):
        text.append(f"score (killed + timeout) / (killed + timeout + survived) = {killed}/{killed + len(survived)}"
                    f" = {100.0 * killed / (killed + len(survived)):.1f} %")
    per: dict[str, dict[str, int]] = {}  # module -> status -> count
    for st, names in status.items():
        for name in names:
            module = name.split(".x")[0]  # refimpl.ring.ntt.x_ntt__mutmut_3 -> refimpl.ring.ntt
            per.setdefault(module, {}).setdefault(st, 0)
            per[module][st] += 1
    for module, c in sorted(per.items()):
        k, sv = c.get("killed", 0) + c.get("timeout", 0), c.get("survived", 0)
        score = f"{100.0 * k / (k + sv):.1f} %" if k + sv else "-"
        text.append(f"  {module}: killed {k}, survived {sv}, no tests {c.get('no tests', 0)}, "
                    f"other {sum(c.values()) - k - sv - c.get('no tests', 0)}: {score}")
    if (SCRATCH / f"{target}.json").exists() and only is None:
        text += sample_summary(target, status)
    header = len(text)
    for name in survived:
        diff = subprocess.run([sys.executable, "-m", "mutmut", "show", name], cwd=work,
                              capture_output=True, text=True).stdout
        text += ["", f"survived: {name}", diff.rstrip()]
    (SCRATCH / f"{target}.txt").write_text("\n".join(text) + "\n")
    print("\n".join(text[:header]))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    r = sub.add_parser("run")
    r.add_argument("target", choices=sorted(TARGETS))
    r.add_argument("--max-children", type=int, default=1)
    r.add_argument("--resume", action="store_true", help="keep the scratch copy and the results so far")
    r.add_argument("--only", nargs="*", default=None, help="mutant name patterns, e.g. 'refimpl.aby3.prss.*'")
    m = sub.add_parser("sample", help="a seeded random sample of the target's mutants, in random order")
    m.add_argument("target", choices=sorted(TARGETS))
    m.add_argument("--size", type=int, required=True, help="mutants to draw (K)")
    m.add_argument("--seed", type=int, default=1)
    m.add_argument("--max-children", type=int, default=1)
    m.add_argument("--resume", action="store_true", help="go on with the sample drawn before (a larger --size extends it)")
    runs = sorted(TARGETS) + [f"{t}-sample" for t in sorted(TARGETS)]
    s = sub.add_parser("report")
    s.add_argument("target", choices=runs)
    c = sub.add_parser("recheck", help="survivors of the last run against the tests written for them")
    c.add_argument("target", choices=runs)
    c.add_argument("tests", nargs="+")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for t, (mutate, tests) in TARGETS.items():
            print(f"{t}: mutate {' '.join(mutate)}; tests {' '.join(tests)}")
        return 0
    if args.cmd == "run":
        return run(args.target, args.max_children, args.resume, args.only)
    if args.cmd == "sample":
        return sample(args.target, args.size, args.seed, args.resume, args.max_children)
    if args.cmd == "recheck":
        return recheck(args.target, args.tests)
    return report(args.target)


if __name__ == "__main__":
    sys.exit(main())
