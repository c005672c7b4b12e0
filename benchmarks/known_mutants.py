"""Re-run the hand-written mutation round: each known wrong change must make the suite fail.

Each mutant is one textual change to the package (the bugs a mutation round once slipped past the
suite). The repository's tracked files are copied to ``runs/mutants/repo`` (with ``../shared`` linked
beside it), the change is applied there, and the tests named for it are run; a mutant that leaves
them green is reported as a survivor. Nothing in the checkout is modified.

    python benchmarks/known_mutants.py            # all mutants
    python benchmarks/known_mutants.py --only csv  # those whose name contains 'csv'

The tests of every mutant first run on the unmutated copy and must pass there. A mutant is killed when
its tests fail (pytest exit 1) or hang; any other pytest exit (collection or usage error) is an error,
and a run whose tests were all skipped (no ``../shared``) leaves the mutant untested.

Exit code: 0 when every mutant was killed, 1 otherwise, 2 when the unmutated copy fails its tests.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "runs" / "mutants"


@dataclass(frozen=True)
class Mutant:
    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = [
    Mutant("crop rolled the wrong way", "facealign_sdk/geometry.py",
           "a = np.array([[cos, sin], [-sin, cos]])", "a = np.array([[cos, -sin], [sin, cos]])",
           ("tests/test_accuracy.py", "tests/test_geometry.py")),
    Mutant("roll-dependent centre shift with the wrong sign", "facealign_sdk/geometry.py",
           "cx = (x1 + x2) / 2.0 - math.sin(roll)", "cx = (x1 + x2) / 2.0 + math.sin(roll)",
           ("tests/test_geometry.py",)),
    Mutant("csv x and y swapped (image and video)", "facealign_sdk/csvformat.py",
           'return ([f"{v:.{point_digits}f}" for v in face.points[:, 0]] + [f"{v:.{point_digits}f}" for v in face.points[:, 1]]',
           'return ([f"{v:.{point_digits}f}" for v in face.points[:, 1]] + [f"{v:.{point_digits}f}" for v in face.points[:, 0]]',
           ("tests/test_values.py",)),
    Mutant("csv writes x into the y columns (image and video)", "facealign_sdk/csvformat.py",
           '+ [f"{v:.{point_digits}f}" for v in face.points[:, 1]]', '+ [f"{v:.{point_digits}f}" for v in face.points[:, 0]]',
           ("tests/test_values.py",)),
    Mutant("json points rounded to integers", "facealign_sdk/results.py",
           "np.round(value.astype(np.float64), 3)", "np.round(value.astype(np.float64))",
           ("tests/test_values.py",)),
    Mutant("max_faces keeps the lowest-scoring faces", "facealign_sdk/aligner.py",
           "key=lambda d: -d.score", "key=lambda d: d.score",
           ("tests/test_values.py",)),
    Mutant("lost faces never expire", "facealign_sdk/video/tracker.py",
           "t.lost_at is None or now - t.lost_at <= keep", "True",
           ("tests/test_tracker_logic.py",)),
    Mutant("a weak track no longer forces re-detection", "facealign_sdk/video/tracker.py",
           "or any(t.weak for t in active)", "",
           ("tests/test_tracker_logic.py",)),
    Mutant("training crops fed as BGR", "facealign_sdk/training/data.py",
           "return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), geometry.image_to_crop(points, frame, crop_size)",
           "return crop, geometry.image_to_crop(points, frame, crop_size)",
           ("tests/test_values.py",)),
    Mutant("runtime feeds BGR to the network", "facealign_sdk/landmarker.py",
           "cv2.cvtColor(geometry.warp_crop(im, fr, size), cv2.COLOR_BGR2RGB)", "geometry.warp_crop(im, fr, size)",
           ("tests/test_accuracy.py", "tests/test_values.py")),
    Mutant("mirror order maps the nostrils to themselves", "facealign_sdk/schemes.py",
           "[35, 34, 33, 32, 31]", "[31, 32, 33, 34, 35]",
           ("tests/test_values.py",)),
    Mutant("16-bit images scaled by 1/256", "facealign_sdk/imageio.py",
           "(img.astype(np.float32) / 257.0).round().astype(np.uint8)", "(img // 256 + 1).astype(np.uint8)",
           ("tests/test_values.py",)),
    Mutant("export exits 0 when the parity check fails", "facealign_sdk/cli/export.py",
           "the artifacts are written but should not be shipped\",\n              file=sys.stderr)\n        return 1",
           "the artifacts are written but should not be shipped\",\n              file=sys.stderr)\n        return 0",
           ("tests/test_exit_codes.py",)),
]


def fresh_copy() -> Path:
    """The tracked files (as in the working tree) under runs/mutants/repo, with ../shared linked beside it."""
    target = WORK / "repo"
    shutil.rmtree(target, ignore_errors=True)
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, check=True, capture_output=True).stdout.split(b"\0")
    for name in filter(None, files):
        src = REPO / name.decode()
        if src.is_file():
            dst = target / name.decode()
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    shared = WORK / "shared"
    if not shared.exists() and (REPO.parent / "shared").is_dir():
        shared.symlink_to((REPO.parent / "shared").resolve())
    return target


def _pytest(copy: Path, tests: tuple[str, ...], timeout: float) -> tuple[int, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FACEALIGN_SHARED": str(REPO.parent / "shared")}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                          cwd=copy, env=env, capture_output=True, text=True, timeout=timeout)
    return proc.returncode, proc.stdout


def run_mutant(copy: Path, mutant: Mutant, timeout: float) -> tuple[str, float]:
    """'killed', 'survived', 'untested' (every test skipped), 'error' (pytest could not run the tests) or
    'not applied' (the original text is no longer in the code), and seconds."""
    path = copy / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        return "not applied", 0.0
    path.write_text(original.replace(mutant.old, mutant.new))
    start = time.perf_counter()
    try:
        code, out = _pytest(copy, mutant.tests, timeout)
        verdict = {0: "survived" if " passed" in out else "untested", 1: "killed"}.get(code, "error")
    except subprocess.TimeoutExpired:
        verdict = "killed"  # a hang is a failure the suite notices
    finally:
        path.write_text(original)
    return verdict, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="run only mutants whose name contains this")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per mutant")
    args = parser.parse_args()
    chosen = [m for m in MUTANTS if args.only in m.name]
    if not chosen:
        print(f"no mutant name contains {args.only!r}", file=sys.stderr)
        return 2
    copy = fresh_copy()
    tests = tuple(sorted({t for m in chosen for t in m.tests}))
    code, out = _pytest(copy, tests, args.timeout * len(tests))
    if code != 0:
        print(f"the unmutated copy fails its tests (pytest exit {code}):\n{out[-2000:]}", file=sys.stderr)
        return 2
    results = []
    for mutant in chosen:
        verdict, seconds = run_mutant(copy, mutant, args.timeout)
        results.append(verdict)
        print(f"{verdict:12s} {seconds:6.1f} s  {mutant.name}", flush=True)
    killed = results.count("killed")
    print(f"killed {killed} of {len(results)}")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
