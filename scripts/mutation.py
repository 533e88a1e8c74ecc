"""Mutation testing of the modules that hold the method, each against its own test file(s).

    python scripts/mutation.py balance losses topology    # these modules, one after another
    python scripts/mutation.py --list                     # modules and their test files
    python scripts/mutation.py dst --only '*prune_and_regrow*'   # one function's mutants
    python scripts/mutation.py dst --results              # survivors of the last dst run

For each module the script copies `adapt_tf/`, `tests/`, `gin_configs/` and `setup.cfg` into
`<workdir>/<module>/` (default workdir: `mutants_runs/`, git-ignored), narrows setup.cfg's
`[mutmut]` section to that module and its tests, runs `mutmut run` there, and prints the
score: killed / (killed + survived), with timeouts and "suspicious" (too slow) mutants counted
as killed (the mutant hangs the test) and mutants no test reaches ("no tests") counted as
survivors. Equivalent survivors are not recognised here: docs/TESTING.md lists them. A JSON
summary (counts and the names of surviving mutants, for `mutmut show NAME` in that
directory) goes to `<workdir>/<module>/summary.json`.

Each run starts from a fresh copy (mutmut's cache keeps old verdicts when only the tests
changed). Temporary files of the run (the test session directories of tests/conftest.py, one
per forked mutant, and TensorFlow's autograph files) go to `<workdir>/<module>/tmp`, removed
at the end: the forked mutants exit without running atexit handlers, so nothing else would
delete them. It is CPU-heavy: every mutant runs the tests of its own file that cover the mutated
function, in a process forked from a server that has imported them (TensorFlow included); on a
2-core machine `balance` and `losses` take minutes, `dst` and `gan` much longer.
"""
from __future__ import annotations

import argparse
import configparser
import io
import json
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
MUTMUT = pathlib.Path(sys.executable).with_name("mutmut")

# module (its dotted path below adapt_tf) -> the test files that own it
# (tests/test_<module's name>.py, plus the file whose subject is the module's main use when
# that lives elsewhere).
MODULE_TESTS = {
    "balance": ["tests/test_balance.py"],
    "gan.losses": ["tests/test_losses.py"],
    "sparse.topology": ["tests/test_topology.py"],
    "balance.controller": ["tests/test_controller.py"],
    "sparse.dst": ["tests/test_dst.py"],
    "sparse.layers": ["tests/test_layers.py"],
    "gan.sparse_gan": ["tests/test_gan.py"],
    "sparse.sparsity": ["tests/test_sparsity.py"],
    "gan.ema": ["tests/test_ema.py"],
    "evaluation.scorers": ["tests/test_evaluate.py", "tests/test_toy_metric.py",
                           "tests/test_classifier_metric.py"],
    "evaluation.classifier_metric": ["tests/test_classifier_metric.py",
                                     "tests/test_toy_metric.py"],
}


def module_file(module: str) -> str:
    """The source file of a dotted module below adapt_tf: `adapt_tf/a/b.py`, or the package's
    `adapt_tf/a/b/__init__.py` (`balance`)."""
    path = pathlib.Path("adapt_tf", *module.split("."))
    return str(path.with_suffix(".py") if (ROOT / path.with_suffix(".py")).exists()
               else path / "__init__.py")


def _config(module: str, isolation: str | None = None) -> str:
    """setup.cfg with its [mutmut] section narrowed to one module and its tests."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(ROOT / "setup.cfg")
    if not parser.has_section("mutmut"):
        parser.add_section("mutmut")
    section = parser["mutmut"]
    section["source_paths"] = "adapt_tf/"
    section["only_mutate"] = module_file(module)
    section["pytest_add_cli_args_test_selection"] = "\n" + "\n".join(MODULE_TESTS[module])
    section["also_copy"] = "\ngin_configs/"  # the tests that train read gin_configs/test/
    # mutmut's default limit, 15x the tests' own time + 1 s, flags ordinary mutants as
    # timeouts when a forked worker re-warms TensorFlow on a loaded 2-core machine.
    section.setdefault("timeout_constant", "120")
    # Forking mutmut's main process, which has run TensorFlow ops while collecting coverage,
    # deadlocks TensorFlow's thread pools in the children; a fork server that has only
    # imported the test modules does not.
    section.setdefault("process_isolation", "forkserver")
    if isolation:
        section["process_isolation"] = isolation
    section.setdefault("forkserver_warmup", "collect")
    text = io.StringIO()
    parser.write(text)
    return text.getvalue()


def _prepare(module: str, workdir: pathlib.Path, isolation: str | None) -> pathlib.Path:
    target = workdir / module
    # A fresh copy every run: mutmut keeps a mutant's last verdict while the mutated function
    # is unchanged, even when the tests that would now kill it changed.
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for folder in ("adapt_tf", "tests", "gin_configs"):
        shutil.copytree(ROOT / folder, target / folder, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    (target / "setup.cfg").write_text(_config(module, isolation))
    return target


def _summary(target: pathlib.Path, module: str) -> dict:
    """Counts per mutmut status, and the score, from `mutmut results --all true`."""
    listing = subprocess.run([str(MUTMUT), "results", "--all", "true"], cwd=target,
                             capture_output=True, text=True, check=True).stdout
    statuses: dict[str, list[str]] = {}
    for line in listing.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name:
            statuses.setdefault(status, []).append(name)
    counts = {status: len(names) for status, names in statuses.items()}
    # A timeout or "suspicious" (slow) mutant hung the tests: detected.
    killed = counts.get("killed", 0) + counts.get("timeout", 0) + counts.get("suspicious", 0)
    survived = counts.get("survived", 0) + counts.get("no tests", 0)
    total = killed + survived
    return {"module": module, "tests": MODULE_TESTS[module], "counts": counts,
            "score": killed / total if total else float("nan"),
            "survivors": statuses.get("survived", []) + statuses.get("no tests", [])}


def _run(module: str, workdir: pathlib.Path, max_children: int, only: list[str],
         isolation: str | None) -> dict:
    target = _prepare(module, workdir, isolation)
    patterns = [f"adapt_tf.{module}.{pattern}" for pattern in only]
    # Every forked mutant imports tests/conftest.py, which makes a session directory with
    # tempfile.mkdtemp and removes it at exit; mutmut's children leave with os._exit, so
    # atexit never runs. Temporary files of the run go to a directory of its own, removed
    # at the end, so that a run leaves nothing in the system's temporary directory.
    tmp = target / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp)}
    try:
        subprocess.run([str(MUTMUT), "run", "--max-children", str(max_children), *patterns],
                       cwd=target, check=False, env=env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = _summary(target, module)
    (target / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _print(summary: dict) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(summary["counts"].items()))
    print(f"{summary['module']:<11} score {summary['score']:.1%}  ({counts})")
    for name in summary["survivors"]:
        print(f"    survivor: {name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("modules", nargs="*", help=f"modules to mutate, of {list(MODULE_TESTS)} "
                        "(default: all)")
    parser.add_argument("--workdir", type=pathlib.Path, default=ROOT / "mutants_runs")
    parser.add_argument("--max-children", type=int, default=2,
                        help="parallel mutant runs (default 2)")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="mutate only functions matching this fnmatch pattern, e.g. "
                        "'*decide*' (repeatable; default: the whole module)")
    parser.add_argument("--isolation", choices=["fork", "forkserver"],
                        help="mutmut process_isolation (default: setup.cfg's, forkserver); "
                        "'fork' is much faster for test files that run no TensorFlow op "
                        "before forking, and deadlocks for those that do")
    parser.add_argument("--results", action="store_true",
                        help="only summarise the last run in the workdir")
    parser.add_argument("--list", action="store_true", help="print modules and test files")
    args = parser.parse_args(argv)
    if args.list:
        for module, tests in MODULE_TESTS.items():
            print(f"{module:<11} {' '.join(tests)}")
        return
    unknown = sorted(set(args.modules) - set(MODULE_TESTS))
    if unknown:
        parser.error(f"unknown modules {unknown}: choose from {list(MODULE_TESTS)}")
    for module in args.modules or list(MODULE_TESTS):
        if args.results:
            summary = _summary(args.workdir / module, module)
        else:
            summary = _run(module, args.workdir, args.max_children, args.only,
                           args.isolation)
        _print(summary)


if __name__ == "__main__":
    main()
