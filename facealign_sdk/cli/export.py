"""Export a model to ONNX (fp32 / fp16 / int8) and TensorRT, with a parity and speed report.

``facealign export --model models/<name> --to onnx,fp16,int8[,decode][,trt]`` writes
into the model folder (or ``--out DIR``): ``model.onnx``, ``model_fp16.onnx``,
``model_int8.onnx``, ``model_decode.onnx``, ``model_fp16_b1-8-64_<TensorRT>_<GPU>.engine`` (+ ``.json``),
and ``parity.json``. It fails (exit 1) when an artifact's landmarks move more
than the parity limit from the PyTorch model's, or when int8 fails its gate (``int8_gate.py``:
end-to-end NME and video jitter against fp32), and exits 2 on bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..export import int8_gate, parity
from ..export.quantize import DEFAULT_CALIB, DEFAULT_CALIB_COUNT, load_face_crops, noise_crops
from ..export.tensorrt import DEFAULT_PROFILE, DEFAULT_WORKSPACE_GB, parse_profile, trtexec_lines
from ..model import (MANIFEST, Manifest, ModelError, describe_validation_error, load_manifest, record_artifacts,
                     resolve_model_dir)
from ..outputs import check_output_folder, replacing
from .flags import add_aligner_flags

TARGETS = ("onnx", "fp16", "int8", "decode", "trt")
DEFAULT_TARGETS = "onnx,fp16,int8"
FILES = {"onnx": "model.onnx", "fp16": "model_fp16.onnx", "int8": "model_int8.onnx", "decode": "model_decode.onnx"}
DEFAULT_PARITY_DATA = DEFAULT_CALIB.parent / "val"
DEFAULT_PARITY_FACES = 64
REPORT = "parity.json"

log = logging.getLogger("facealign_sdk")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``facealign export`` flags."""
    add_aligner_flags(parser, ("model",))
    parser.add_argument("--to", default=DEFAULT_TARGETS,
                        help=f"comma-separated targets from {', '.join(TARGETS)}; "
                             "fp16/int8/decode/trt also write model.onnx")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the model folder)")
    parser.add_argument("--calib", type=Path, default=DEFAULT_CALIB,
                        help="folder of face images with .pts for int8 calibration")
    parser.add_argument("--calib-count", type=int, default=DEFAULT_CALIB_COUNT, help="calibration faces")
    parser.add_argument("--calib-method", default="MinMax", choices=["MinMax", "Entropy", "Percentile", "Distribution"],
                        help="int8 calibration method")
    parser.add_argument("--int8-quantize-head", action="store_true",
                        help="quantize the heatmap head too (otherwise it stays fp32, for landmark precision)")
    parser.add_argument("--int8-activations", choices=("uint8", "int8"), default="uint8",
                        help="uint8: asymmetric U8S8, ONNX Runtime CPU's fast path; int8: symmetric S8S8")
    parser.add_argument("--int8-reduce-range", action="store_true",
                        help="7-bit weights: avoids U8S8 saturation on x86 CPUs without VNNI")
    parser.add_argument("--int8-no-subpixel", action="store_true",
                        help="keep ConvTranspose layers as they are in the int8 graph (otherwise they are rewritten as "
                             "Conv + DepthToSpace, exact, so ONNX Runtime CPU runs them in int8)")
    int8_gate.add_arguments(parser)
    parser.add_argument("--parity-data", type=Path, default=DEFAULT_PARITY_DATA,
                        help="folder of face images with .pts for the parity check (random-noise crops, with a note in the "
                             "report, when the default folder is absent)")
    parser.add_argument("--parity-faces", type=int, default=DEFAULT_PARITY_FACES, help="faces for the parity check")
    parser.add_argument("--no-bench", action="store_true", help="skip the ms/face measurement")
    parser.add_argument("--bench-repeats", type=int, default=5, help="timed runs per artifact")
    parser.add_argument("--warn-only", action="store_true", help="report parity failures but exit 0")
    parser.add_argument("--profile", default=f"{DEFAULT_PROFILE.min},{DEFAULT_PROFILE.opt},{DEFAULT_PROFILE.max}",
                        help="TensorRT batch profile MIN,OPT,MAX")
    parser.add_argument("--workspace-gb", type=float, default=DEFAULT_WORKSPACE_GB, help="TensorRT workspace (GiB)")


def parse_targets(text: str) -> list[str]:
    """``"onnx,int8"`` -> ordered, de-duplicated targets (with ``onnx`` added when another needs it)."""
    wanted = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [t for t in wanted if t not in TARGETS]
    if unknown or not wanted:
        raise InputError(f"unknown --to target(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(TARGETS)}")
    if "trt" in wanted and "fp16" not in wanted:
        wanted.append("fp16")  # TensorRT 11 builds from the fp16 graph; cheap to write
    return [t for t in TARGETS if t in wanted or t == "onnx"]


def check_manifest(manifest: Manifest) -> None:
    """ModelError when the manifest asks for a network (input / heatmap geometry) that cannot be built."""
    from pydantic import ValidationError

    from ..nets import NetConfig

    sizes = {"input_size": manifest.input_size, "heatmap_size": manifest.heatmap_size,
             "num_landmarks": manifest.num_landmarks}
    try:
        NetConfig.model_validate({**sizes, **manifest.net})
    except ValidationError as exc:
        raise ModelError(f"manifest: its network cannot be built ({describe_validation_error(exc)})") from None


def face_crops(folder: Path, count: int, what: str, size: int) -> tuple[np.ndarray, str]:
    """Real ``size``-px face crops from ``folder`` when it exists, else random noise; with a note for the report."""
    if folder.is_dir():
        return load_face_crops(folder, count, size), f"{count} runtime crops from {folder}"
    note = f"random-noise crops: {folder} not found (landmark parity on noise is only a mechanics check)"
    log.warning("%s: %s", what, note)
    return noise_crops(count, size), note


def _export_onnx_targets(net, manifest: Manifest, out: Path, targets: list[str], args: argparse.Namespace) -> list[Path]:
    from ..export.onnx import export_decode_onnx, export_onnx
    from ..export.quantize import convert_fp16, quantize_int8

    source = out / FILES["onnx"]
    written = [_write_whole(source, lambda tmp: export_onnx(net, manifest, tmp))]
    if "fp16" in targets:
        written.append(_write_whole(out / FILES["fp16"], lambda tmp: convert_fp16(source, tmp)))
    if "int8" in targets:
        crops, note = face_crops(args.calib, args.calib_count, "int8 calibration", manifest.input_size)
        written.append(_write_whole(out / FILES["int8"], lambda tmp: quantize_int8(
            source, tmp, crops, keep_head_fp32=not args.int8_quantize_head, method=args.calib_method,
            activations=args.int8_activations, reduce_range=args.int8_reduce_range,
            subpixel=not args.int8_no_subpixel), f" (calibration: {note})"))
    if "decode" in targets:
        written.append(_write_whole(out / FILES["decode"], lambda tmp: export_decode_onnx(source, manifest, tmp)))
    return written


def _write_whole(path: Path, writer: Callable[[Path], object], note: str = "") -> Path:
    """Have ``writer`` fill a temporary file that replaces ``path`` once it is complete: an interrupted or failed
    export leaves the previous artifact (or none), never a truncated one that a runtime would try to load."""
    with replacing(path) as tmp:
        writer(tmp)
    print(f"wrote {path}{note}")
    return path


def _run_int8_gate(out: Path, args: argparse.Namespace) -> int8_gate.Int8Gate:
    if args.no_int8_gate:
        return int8_gate.Int8Gate(note="not judged: --no-int8-gate")
    from facealign_sdk.backends.ort import env_threads

    sets = [Path(s.strip()) for s in args.int8_gate_sets.split(",") if s.strip()]
    return int8_gate.run_gate(out / FILES["onnx"], out / FILES["int8"], sets, args.int8_gate_limit,
                              args.int8_gate_stills, env_threads() or os.cpu_count() or 1, args.int8_gate_seconds)


def _prepare_out(model_dir: Path, out: Path | None) -> Path:
    """The output folder; a separate one gets a copy of the manifest so the runtime can load it as a model."""
    if out is None:
        return model_dir
    out.mkdir(parents=True, exist_ok=True)
    if out.resolve() != model_dir.resolve():
        shutil.copy2(model_dir / MANIFEST, out / MANIFEST)
    return out


def run(args: argparse.Namespace) -> int:
    """``facealign export``: write the requested artifacts, check their parity, update the manifest."""
    from ..backends.torch_backend import load_network

    targets = parse_targets(args.to)
    try:
        profile = parse_profile(args.profile)
    except ValueError as exc:  # a malformed --profile is bad input, whatever type parse_profile raises
        raise InputError(f"--profile: {exc}") from None
    for name in ("calib_count", "parity_faces", "bench_repeats", "int8_gate_stills"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if args.int8_gate_limit is not None and args.int8_gate_limit < 1:
        raise InputError("--int8-gate-limit must be at least 1")
    if not args.int8_gate_seconds > 0:
        raise InputError("--int8-gate-seconds must be positive")
    # only the default folders (../shared) may be missing: then noise crops stand in, with a note in the report
    named = [(args.parity_data, DEFAULT_PARITY_DATA, "--parity-data")]
    if "int8" in targets:
        named.append((args.calib, DEFAULT_CALIB, "--calib"))
    for folder, default, option in named:
        if not folder.is_dir() and folder.resolve() != default.resolve():
            raise FileNotFoundError(f"{option} {folder}: no such folder")
    if args.out is not None:
        check_output_folder(args.out)  # before loading the network, not after it
    model_dir = resolve_model_dir(args.model)
    manifest = load_manifest(model_dir)
    check_manifest(manifest)
    out_dir = args.out if args.out is not None else model_dir
    if "trt" in targets:
        print("\n".join(trtexec_lines(out_dir, manifest.input_size, profile)))
        from ..export.tensorrt import require_tensorrt

        require_tensorrt()  # fail before any work when TensorRT is missing (exit 2)
    net = load_network(model_dir, manifest)  # ModelError: missing / corrupt / replaced weights
    out = _prepare_out(model_dir, args.out)
    artifacts = _export_onnx_targets(net, manifest, out, targets, args)
    if "trt" in targets:
        from ..export.tensorrt import build_engine, sidecar_path

        artifacts.append(build_engine(out, manifest, profile, args.workspace_gb))
        print(f"wrote {artifacts[-1]} (+ {sidecar_path(artifacts[-1]).name})")
    manifest = record_artifacts(out, artifacts)  # the runtime checks every file it loads against these
    print(f"recorded the sha256 of {len(artifacts)} artifact(s) in {out / MANIFEST}")
    crops, note = face_crops(args.parity_data, args.parity_faces, "parity", manifest.input_size)
    report = parity.run_parity(net, manifest, artifacts, crops, note, bench=not args.no_bench, repeats=args.bench_repeats)
    if "int8" in targets:
        report = parity.apply_int8_gate(report, _run_int8_gate(out, args))
    path = parity.write_report(report, out / REPORT)
    print(parity.format_table(report))
    print(f"wrote {path}")
    if not report.passed:
        failed = ", ".join(f"{r.artifact} (p99 {r.landmark_p99_px:.3f} px > {r.limit_px} px)" if r.limit_px is not None
                           else f"{r.artifact} (int8 gate)" for r in report.rows if not r.passed)
        if args.warn_only:
            print(f"warning: parity limits exceeded (--warn-only): {failed}")
            return 0
        print(f"facealign export: parity check failed: {failed}; the artifacts are written but should not be shipped",
              file=sys.stderr)
        return 1
    return 0
