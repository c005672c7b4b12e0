"""Mutation testing of the core modules with mutmut (configured in pyproject.toml, ``[tool.mutmut]``).

mutmut copies the package into ``mutants/`` and, for every generated mutant of a function in the
listed modules (geometry, decoding, results and writers, tracker, image I/O, export CLI), runs the
tests of the fast selection that cover that function. A mutant is killed when a test fails or times
out. Not part of CI: on 2 cores a full run takes a long while.

    pip install -e ".[dev,mutation]"
    python benchmarks/mutation.py --children 2        # run (resumes where a previous run stopped)
    python benchmarks/mutation.py --only 'facealign_sdk.geometry.*' 'facealign_sdk.results.*'   # some modules
    python benchmarks/mutation.py --report-only       # kill rate and survivors of the last run

Writes ``runs/mutation/summary.json``: per module, the mutants generated, checked, killed and surviving
(by name), and the kill rate over the modules checked so far. Survivors explained:
``benchmarks/mutation_survivors.md``.

mutmut keeps its verdicts: a killed mutant is not re-run, a survivor only when named (``--only NAME``) after
new tests. It maps each test to the functions it calls once, by the test's name: a test changed in place
to call another function needs a new name. Changing the test selection in ``pyproject.toml`` makes it
re-run everything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "runs" / "mutation"


def module_counts(mutants_dir: Path) -> dict[str, dict]:
    """Per mutated module: mutants generated, checked, killed (a failing or timed-out test), survived and
    not covered by the selection, from mutmut's per-file results (``mutants/**/*.py.meta``). Mutants not
    checked yet (modules left out with ``--only``) count in ``generated`` only."""
    from mutmut.stats import status_by_exit_code  # mutmut's own reading of its exit codes

    counts: dict[str, dict] = {}
    for meta in sorted(mutants_dir.rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        status = [status_by_exit_code[code] for code in codes.values()]
        killed = sum(s in ("killed", "timeout") for s in status)
        survivors = sorted(name for name, code in codes.items() if status_by_exit_code[code] == "survived")
        tested = killed + len(survivors)
        module = meta.relative_to(mutants_dir).as_posix().removesuffix(".py.meta").replace("/", ".")
        counts[module] = {"generated": len(codes), "checked": sum(s != "not checked" for s in status),
                          "killed": killed, "survived": len(survivors),
                          "no_tests": sum(s == "no tests" for s in status),
                          "kill_rate_pct": round(100 * killed / tested, 1) if tested else None,
                          "survivors": survivors}
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--report-only", action="store_true", help="only summarise the last run")
    parser.add_argument("--only", nargs="*", default=[], metavar="PATTERN",
                        help="mutant name patterns (fnmatch), e.g. 'facealign_sdk.geometry.*'")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FACEALIGN_SHARED": str(REPO.parent / "shared"),
           "FACEALIGN_TEST_EXPORT_CACHE": str(OUT / "exported_networks")}  # tests/conftest.py
    if not args.report_only:
        exe = shutil.which("mutmut")
        if exe is None:
            sys.exit('mutmut is not installed: pip install -e ".[mutation]"')
        run = subprocess.run([exe, "run", "--max-children", str(args.children), *args.only], cwd=REPO, env=env)
        if run.returncode != 0:  # mutmut exits 0 with survivors; non-zero: its clean or forced-fail run failed
            print(f"mutmut run failed (exit {run.returncode})", file=sys.stderr)
            return 2
    counts = module_counts(REPO / "mutants")
    checked = {m: c for m, c in counts.items() if c["killed"] + c["survived"]}
    if not checked:
        print("no mutation results: run without --report-only first", file=sys.stderr)
        return 2
    killed = sum(c["killed"] for c in checked.values())
    tested = killed + sum(c["survived"] for c in checked.values())
    summary = {"modules": counts, "killed": killed, "tested": tested,
               "kill_rate_pct": round(100 * killed / tested, 1),
               "not_run": [m for m, c in counts.items() if m not in checked]}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))
    for module, c in checked.items():
        print(f"{module}: killed {c['killed']} of {c['killed'] + c['survived']} ({c['kill_rate_pct']} %), "
              f"{c['generated'] - c['checked']} of {c['generated']} not checked, {c['no_tests']} not covered")
        for name in c["survivors"]:
            print(f"  survived: {name}")
    print(f"all checked modules: killed {killed} of {tested} ({summary['kill_rate_pct']} %); "
          f"not run: {', '.join(summary['not_run']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
