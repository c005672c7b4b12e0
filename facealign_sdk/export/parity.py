"""Parity of exported artifacts with the PyTorch model, and their speed (the export's report).

Every artifact and the PyTorch fp32 network (``load_network``) run on the same
face crops. Heatmaps are compared directly; landmarks are decoded with the one
decoder (``decode_heatmaps(..., "soft")``) and mapped to 256-px crop pixels (a 128-px model's crop
pixels count double, so a limit means the same share of the face for both). The
pass/fail statistic is the 99th percentile of the per-landmark distance over all
faces and landmarks: stricter than the mean, yet not failed by the odd landmark
whose heatmap has two near-equal peaks (occluded points) and whose argmax a
rounding difference can flip. Mean and max are reported beside it.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from ..model import Manifest
from ..outputs import write_file_atomic

from .int8_gate import Int8Gate, format_gate

# max allowed p99 landmark difference (256-px crop pixels) per precision; int8 is judged by what users see
# instead (int8_gate.py: end-to-end NME and video jitter), its shift is reported only
THRESHOLDS_PX = {"fp32": 0.05, "fp16": 0.5}
LIMIT_CROP_SIZE = 256
INT8_GATE_NOTE = "judged by the int8 gate (end-to-end NME, video jitter); the shift is reported, not gated"
STATISTIC = "p99"
CRITERION = (
    "p99 of the per-landmark distance (256-px crop pixels) to PyTorch fp32 over all faces x landmarks, "
    "soft-argmax decoding; limits: fp32 0.05 px, fp16 / TensorRT fp16 0.5 px; int8: the int8 gate (int8_gate)"
)
BENCH_BATCH = 8
RUN_BATCH = 16

Runner = Callable[[np.ndarray], np.ndarray]


class ArtifactParity(BaseModel):
    """One artifact compared with the PyTorch model."""

    artifact: str
    precision: str
    runtime: str
    heatmap_max_abs: float | None = Field(None, description="None for graphs that output points")
    heatmap_mean_abs: float | None = None
    landmark_mean_px: float
    landmark_p99_px: float
    landmark_max_px: float
    limit_px: float | None = Field(description="None: not judged by the shift (int8: see ParityReport.int8_gate)")
    passed: bool
    ms_per_face: float | None = Field(None, description=f"median over repeats, batch {BENCH_BATCH}, this machine")
    size_mb: float | None = None
    note: str = ""


class ParityReport(BaseModel):
    """The export's parity and speed report (``parity.json``)."""

    model: str
    weights_sha256: str
    faces: int
    data: str
    criterion: str = CRITERION
    reference: str = "PyTorch fp32 (load_network), CPU"
    reference_ms_per_face: float | None = None
    reference_noise_px: dict[str, float] = Field(
        default_factory=dict,
        description="how far the PyTorch model's own landmarks move when +-0.5 grey level of uniform noise is "
                    "added to the crops (mean / p99 / max px): the floor below which no artifact can be judged",
    )
    bench: str = ""
    rows: list[ArtifactParity] = Field(default_factory=list)
    passed: bool = True
    created: str = ""
    versions: dict[str, str] = Field(default_factory=dict)
    int8_gate: Int8Gate | None = Field(None, description="the int8 gate's verdict and measurements")


def precision_of(path: Path) -> str:
    """fp32 / fp16 / int8 from an artifact's name (engines are fp16)."""
    name = path.name
    if path.suffix == ".engine" or "fp16" in name:
        return "fp16"
    if "int8" in name:
        return "int8"
    return "fp32"


def to_crop_px(points_hm: np.ndarray, manifest: Manifest) -> np.ndarray:
    """Heatmap-pixel points -> pixels of a 256-px crop (the limits' unit, whatever the model's crop size)."""
    return manifest.heatmap_codec().to_crop(points_hm) * (LIMIT_CROP_SIZE / manifest.input_size)


def landmarks_px(heatmaps: np.ndarray, manifest: Manifest) -> np.ndarray:
    """(N, L, 2) soft-argmax landmarks of (N, L, H, W) heatmaps in pixels of a 256-px crop."""
    points, _ = manifest.heatmap_codec().decode(heatmaps, "soft")
    return to_crop_px(points, manifest)


def landmark_stats(ref_px: np.ndarray, px: np.ndarray) -> dict[str, float]:
    """Mean / p99 / max of per-landmark distances between two (N, L, 2) point sets."""
    d = np.linalg.norm(np.asarray(px, np.float64) - np.asarray(ref_px, np.float64), axis=-1).ravel()
    return {"landmark_mean_px": float(d.mean()), "landmark_p99_px": float(np.percentile(d, 99)),
            "landmark_max_px": float(d.max())}


def heatmap_stats(ref: np.ndarray, hm: np.ndarray) -> dict[str, float]:
    """Max / mean absolute heatmap difference."""
    diff = np.abs(np.asarray(hm, np.float32) - np.asarray(ref, np.float32))
    return {"heatmap_max_abs": float(diff.max()), "heatmap_mean_abs": float(diff.mean())}


def run_batched(run: Runner, crops: np.ndarray, batch: int = RUN_BATCH) -> np.ndarray:
    """Run ``run`` over ``crops`` in batches and concatenate (first output only for tuples)."""
    outs = []
    for i in range(0, len(crops), batch):
        out = run(crops[i : i + batch])
        outs.append(out[0] if isinstance(out, tuple) else out)
    return np.concatenate(outs)


def ms_per_face(run: Runner, crops: np.ndarray, batch: int = BENCH_BATCH, repeats: int = 5) -> float:
    """Median milliseconds per face of ``run`` on one batch of ``batch`` crops (after one warm-up run)."""
    x = np.ascontiguousarray(np.resize(crops, (batch, *crops.shape[1:])), dtype=np.float32)
    run(x)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0 / batch)


def torch_runner(net) -> Runner:
    """A runner for the PyTorch reference network (CPU, fp32)."""
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()

    return run


def ort_session(path: Path, threads: int | None = None):
    """An ONNX Runtime CPU session for an artifact."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def artifact_runner(path: Path, manifest: Manifest) -> tuple[Runner, str, bool]:
    """(runner, runtime name, outputs_points) for an .onnx (ORT CPU) or .engine (TensorRT) artifact."""
    if path.suffix == ".engine":
        from ..backends.trt import TrtBackend

        backend = TrtBackend(path, manifest)
        return backend.run, backend.name, False
    session = ort_session(path)
    input_name = session.get_inputs()[0].name
    outputs = [o.name for o in session.get_outputs()]
    points = outputs[0] == "points"

    def run(x: np.ndarray):
        result = session.run(None, {input_name: np.ascontiguousarray(x, dtype=np.float32)})
        return tuple(result) if points else np.asarray(result[0], np.float32)

    return run, "ort:CPUExecutionProvider", points


def compare_artifact(path: Path, manifest: Manifest, crops: np.ndarray, ref_hm: np.ndarray, ref_px: np.ndarray,
                     limits: dict[str, float] | None = None, bench: bool = True, repeats: int = 5) -> ArtifactParity:
    """Run one artifact on ``crops`` and compare it with the reference heatmaps / landmarks."""
    limits = {**THRESHOLDS_PX, **(limits or {})}
    precision = precision_of(path)
    run, runtime, outputs_points = artifact_runner(path, manifest)
    hm_stats: dict[str, float | None] = {"heatmap_max_abs": None, "heatmap_mean_abs": None}
    note = ""
    if outputs_points:
        px = to_crop_px(run_batched(run, crops), manifest)
        note = "decoding inside the graph; compared with decode_heatmaps(soft) of the PyTorch heatmaps"
    elif precision == "fp16" and path.suffix == ".onnx":
        note = "fp16 graph is for GPU execution providers; ORT CPU runs it through casts, so its CPU ms/face is not its speed"
    if not outputs_points:
        hm = run_batched(run, crops)
        hm_stats = heatmap_stats(ref_hm, hm)
        px = landmarks_px(hm, manifest)
    lm = landmark_stats(ref_px, px)
    limit = limits.get(precision)
    if limit is None:  # int8: failing until the gate says otherwise
        note = "; ".join(n for n in (note, INT8_GATE_NOTE) if n)
    return ArtifactParity(
        artifact=path.name,
        precision=precision + ("-trt" if path.suffix == ".engine" else ""),
        runtime=runtime,
        **hm_stats,
        **lm,
        limit_px=limit,
        passed=limit is not None and lm["landmark_p99_px"] <= limit,
        ms_per_face=ms_per_face(run, crops, repeats=repeats) if bench else None,
        size_mb=round(path.stat().st_size / 1e6, 2),
        note=note,
    )


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("torch", "onnx", "onnxruntime", "tensorrt"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def run_parity(net, manifest: Manifest, artifacts: list[Path], crops: np.ndarray, data_note: str,
               limits: dict[str, float] | None = None, bench: bool = True, repeats: int = 5) -> ParityReport:
    """Compare every artifact with the PyTorch network ``net`` on ``crops``; the report says whether all passed."""
    ref_run = torch_runner(net)
    ref_hm = run_batched(ref_run, crops)
    ref_px = landmarks_px(ref_hm, manifest)
    rows = [compare_artifact(Path(p), manifest, crops, ref_hm, ref_px, limits, bench, repeats) for p in artifacts]
    noise = np.random.default_rng(0).uniform(-0.5 / 255, 0.5 / 255, crops.shape).astype(np.float32)
    noisy_px = landmarks_px(run_batched(ref_run, np.clip(crops + noise, 0.0, 1.0)), manifest)
    noise_stats = {k.removeprefix("landmark_").removesuffix("_px"): v for k, v in landmark_stats(ref_px, noisy_px).items()}

    return ParityReport(
        model=manifest.name,
        weights_sha256=manifest.weights_sha256,
        faces=len(crops),
        data=data_note,
        reference_ms_per_face=ms_per_face(ref_run, crops, repeats=repeats) if bench else None,
        reference_noise_px=noise_stats,
        bench=(f"ms/face: median of {repeats} runs of batch {BENCH_BATCH} after a warm-up, ONNX Runtime CPU "
               f"(TensorRT on GPU for .engine), {os.cpu_count()} CPU cores; compare only numbers from one machine")
        if bench else "not measured",
        rows=rows,
        passed=all(r.passed for r in rows),
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        versions=_versions(),
    )


def apply_int8_gate(report: ParityReport, gate: Int8Gate) -> ParityReport:
    """The report with the gate's verdict on its int8 rows (and in the overall verdict)."""
    rows = [r.model_copy(update={"passed": gate.passed}) if r.precision == "int8" else r for r in report.rows]
    return report.model_copy(update={"rows": rows, "int8_gate": gate, "passed": all(r.passed for r in rows)})


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(report: ParityReport) -> str:
    """The report as a fixed-width text table."""
    head = (f"{'artifact':<26} {'runtime':<26} {'hm max':>9} {'hm mean':>9} {'lm mean':>8} {'lm p99':>8} "
            f"{'lm max':>8} {'limit':>6} {'ms/face':>8}  result")
    lines = [
        f"parity vs {report.reference} on {report.faces} faces ({report.data})",
        f"criterion: {report.criterion}",
        head,
        "-" * len(head),
        f"{'(pytorch reference)':<26} {'torch:cpu':<26} {'':>9} {'':>9} {'':>8} {'':>8} {'':>8} {'':>6} "
        f"{_fmt(report.reference_ms_per_face, '8.2f'):>8}",
    ]
    for r in report.rows:
        lines.append(
            f"{r.artifact:<26} {r.runtime:<26} {_fmt(r.heatmap_max_abs, '9.2e'):>9} {_fmt(r.heatmap_mean_abs, '9.2e'):>9} "
            f"{r.landmark_mean_px:8.4f} {r.landmark_p99_px:8.4f} {r.landmark_max_px:8.4f} {_fmt(r.limit_px, '6.2f'):>6} "
            f"{_fmt(r.ms_per_face, '8.2f'):>8}  {'ok' if r.passed else 'FAIL'}"
        )
    if report.reference_noise_px:
        n = report.reference_noise_px
        lines.append(f"noise floor: the PyTorch model itself with +-0.5 grey-level input noise moves landmarks "
                     f"mean {n['mean']:.4f} / p99 {n['p99']:.4f} / max {n['max']:.4f} px")
    if report.int8_gate is not None:
        lines.append(format_gate(report.int8_gate))
    lines.append(f"overall: {'PASS' if report.passed else 'FAIL'}")
    return "\n".join(lines)


def write_report(report: ParityReport, path: Path) -> Path:
    """Write the report as JSON."""
    write_file_atomic(path, json.dumps(report.model_dump(mode="json"), indent=2) + "\n")
    return path
