"""Mutation testing of the core modules with mutmut (configured in pyproject.toml, ``[tool.mutmut]``).

mutmut copies the package into ``mutants/`` and, for every generated mutant of a function in the
listed modules (geometry, decoding, results and writers, tracker, image I/O, export CLI), runs the
tests of the fast selection that cover that function. A mutant is killed when a test fails or times
out. Not part of CI: on 2 cores a full run takes a long while.

    pip install -e ".[dev,mutation]"
    python benchmarks/mutation.py --children 2        # run (resumes where a previous run stopped)
    python benchmarks/mutation.py --only 'facealign_sdk.geometry.*' 'facealign_sdk.results.*'   # some modules
    python benchmarks/mutation.py --report-only       # kill rate and survivors of the last run

Writes ``runs/mutation/summary.json`` (counts, kill rate, surviving mutants).
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


def mutmut(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    exe = shutil.which("mutmut")
    if exe is None:
        sys.exit('mutmut is not installed: pip install -e ".[mutation]"')
    return subprocess.run([exe, *args], cwd=REPO, env=env, capture_output=True, text=True)


def survivors(env: dict[str, str]) -> list[str]:
    """Names of surviving mutants (``mutmut results`` lists those not killed)."""
    out = mutmut("results", env=env).stdout
    return [line.split(":")[0].strip() for line in out.splitlines() if line.strip().endswith("survived")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--children", type=int, default=1, help="mutants tested at once (default 1)")
    parser.add_argument("--report-only", action="store_true", help="only summarise the last run")
    parser.add_argument("--only", nargs="*", default=[], metavar="PATTERN",
                        help="mutant name patterns (fnmatch), e.g. 'facealign_sdk.geometry.*'")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FACEALIGN_SHARED": str(REPO.parent / "shared")}
    if not args.report_only:
        run = subprocess.run([shutil.which("mutmut") or "mutmut", "run", "--max-children", str(args.children),
                              *args.only], cwd=REPO, env=env)
        if run.returncode != 0:  # mutmut exits 0 with survivors; non-zero: its clean or forced-fail run failed
            print(f"mutmut run failed (exit {run.returncode})", file=sys.stderr)
            return 2
    stats_run = mutmut("export-cicd-stats", env=env)
    stats_path = REPO / "mutants" / "mutmut-cicd-stats.json"
    if stats_run.returncode != 0 or not stats_path.is_file():
        print(f"no mutation results: {stats_run.stdout.strip()} {stats_run.stderr.strip()}", file=sys.stderr)
        return 2
    stats = json.loads(stats_path.read_text())
    tested = stats["total"] - stats["skipped"] - stats["no_tests"]
    killed = stats["killed"] + stats["timeout"]
    summary = {**stats, "tested": tested, "kill_rate_pct": round(100 * killed / max(tested, 1), 1),
               "survivors": survivors(env)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "summary.json").write_text(json.dumps(summary, indent=1))
    print(f"mutants {stats['total']}: killed {killed} of {tested} tested ({summary['kill_rate_pct']} %), "
          f"{stats['no_tests']} not covered by the selection, {len(summary['survivors'])} survived")
    for name in summary["survivors"]:
        print(f"  survived: {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
