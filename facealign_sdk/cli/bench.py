"""facealign bench: inference speed per backend/artifact (network only, heatmap decoding, end to end)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..imageio import read_image
from ..model import load_manifest, resolve_model_dir
from ..outputs import check_output_file
from ..resources import sample_image
from .flags import DECODER_FLAGS, add_aligner_flags, aligner_from_args



def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``facealign bench`` flags."""
    parser.add_argument("--backends", default="all", help="comma list of ort,ort-fp16,ort-int8,ort-decode,torch,trt or 'all' (those available)")
    parser.add_argument("--batch", default="1,8", help="comma list of batch sizes for the network-only timing")
    parser.add_argument("--iters", type=int, default=10, help="timed iterations per setting (after 2 warm-up runs)")
    parser.add_argument("--image", type=Path, default=None, help="image for the end-to-end timing (default: the "
                        "bundled sample face.jpg)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    # --backends takes the place of --backend: each target names its backend
    add_aligner_flags(parser, ("model", "device") + DECODER_FLAGS)


def _targets(model_dir: Path, wanted: str) -> list[tuple[str, str, Path | None]]:
    """(label, backend, artifact) for each requested target; with 'all', those present. A target named
    explicitly whose file is not in the model folder is an error, not a silently empty table."""
    all_targets = [("ort", "ort", model_dir / "model.onnx"), ("ort-fp16", "ort", model_dir / "model_fp16.onnx"),
                   ("ort-int8", "ort", model_dir / "model_int8.onnx"),
                   ("ort-decode", "ort", model_dir / "model_decode.onnx"), ("torch", "torch", None)]
    if any(model_dir.glob("*.engine")):
        all_targets.append(("trt", "trt", None))  # the backend picks the engine built for this machine
    names = [t[0] for t in all_targets] if wanted == "all" else [w.strip() for w in wanted.split(",")]
    known = {t[0]: t for t in all_targets}
    out = []
    for name in names:
        if name not in known:
            raise InputError(f"unknown or unavailable bench target {name!r} (available: {', '.join(known)})")
        label, backend, artifact = known[name]
        if artifact is None or artifact.is_file():
            out.append(known[name])
        elif wanted != "all":
            raise InputError(f"bench target {name!r}: {artifact} is not in the model folder "
                             f"(facealign export --model {model_dir} --to {name.removeprefix('ort-') if '-' in name else 'onnx'})")
    return out


def parse_batches(text: str) -> list[int]:
    """``"1,8"`` -> [1, 8]; ValueError for anything but positive integers."""
    try:
        batches = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise InputError(f"--batch must be a comma list of positive integers, got {text!r}")
    return batches


def _time(fn, iters: int) -> float:
    for _ in range(2):
        fn()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


def run(args: argparse.Namespace) -> int:
    """``facealign bench``: time each backend (network per batch size, then end to end); print a table."""
    model_dir = resolve_model_dir(args.model)
    batches = parse_batches(args.batch)
    if args.iters < 1:
        raise InputError(f"--iters must be at least 1, got {args.iters}")
    if args.json:
        check_output_file(args.json)  # before the timing runs, not after them
    # an unknown convention is bad input for every target alike, not one "skipped" line per target (exit 1)
    convention, _ = load_manifest(model_dir).convention_offsets(args.convention)
    targets = _targets(model_dir, args.backends)
    image = read_image(args.image or sample_image())
    aligners = []
    for label, backend, artifact in targets:
        try:
            aligners.append((label, aligner_from_args(args, model=artifact or model_dir, backend=backend)))
        except Exception as exc:  # report and go on with the other targets
            print(f"{label}: skipped ({exc})")
    for _, aligner in aligners:  # warm every target up before timing any: the first one timed ran slower otherwise
        aligner.align(image)
    rows = []
    for label, aligner in aligners:
        row = {"target": label, "backend": aligner.backend_name}
        # a decode graph's network time includes its decoding
        landmarker = aligner.landmarker
        infer = landmarker.backend.run_points if landmarker.decodes_in_graph else landmarker.backend.run
        size = landmarker.manifest.input_size
        for b in batches:
            x = np.random.default_rng(0).random((b, 3, size, size), dtype=np.float32)
            row[f"net_ms_per_face_b{b}"] = round(_time(lambda: infer(x), args.iters) / b * 1000, 2)
        row["decode_ms_per_face"] = None
        if not landmarker.decodes_in_graph:
            heatmaps = landmarker.heatmaps(np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32))
            row["decode_ms_per_face"] = round(_time(lambda: landmarker.decode(heatmaps), args.iters) * 1000, 2)
        row["end_to_end_ms_per_image"] = round(_time(lambda: aligner.align(image), args.iters) * 1000, 2)
        rows.append(row)
        print(json.dumps(row))
    env = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(), "python": platform.python_version()}
    cols = list(rows[0]) if rows else []
    print("\n| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(f"\n{env}")
    if args.json:  # the points' annotation convention, as image and video JSON record it (null: the network's own);
        # flip: end_to_end_ms_per_image ran the network twice per face (net_ms_per_face_b* is one run)
        args.json.write_text(json.dumps({"env": env, "convention": convention, "flip": args.flip, "results": rows},
                                        indent=1))
    if not rows:
        print("facealign bench: no target could be built (see the skipped lines above)", file=sys.stderr)
        return 1
    return 0
