"""GPU verification suite: speed and landmark parity of every GPU path, in one JSON report.

Run it on a machine with an NVIDIA GPU (a few minutes on an H200), with CUDA builds of PyTorch and
onnxruntime-gpu, and TensorRT where it can be had (README, "GPU paths")::

    python benchmarks/gpu_suite.py --out runs/gpu_suite/report.json

Each section is recorded even when another fails (its error goes into the report):

1. facts: GPU, driver, CUDA, cuDNN, PyTorch / ONNX Runtime / TensorRT versions.
2. reference: PyTorch fp32 on the CPU on real face crops (``--data``, else faces YuNet finds in
   ``samples/clip.mp4``): the landmarks every GPU path is compared with.
3. PyTorch CUDA fp32 / fp16: crops/s at batch 1 / 8 / 64 with the input on the GPU (eager and CUDA
   graphs) and numpy in / numpy out (the backend, as the Aligner calls it).
4. ONNX Runtime: CUDA provider with ``model.onnx`` and ``model_fp16.onnx`` (converted from ``model.onnx`` into
   ``<out>/model/`` when the model folder has none); TensorRT provider (fp16,
   engine cache under ``--cache``), with its start-up time (engine build).
5. native TensorRT: an engine built here (``export.tensorrt.build_engine``) through the trt backend.
6. parity of every path: landmark distance to the reference, mean / p99 / max in 256-px crop pixels,
   against the export's limits (``export.parity.THRESHOLDS_PX``).
7. end-to-end video frames/s (decode + YuNet + tracking + landmarks + smoothing + CSV) per backend,
   1 and 8 frames per network call, the CPU (ONNX Runtime) beside them.

Exit status: 0 all ran and passed; 1 a path failed or missed its parity limit; 2 no usable CUDA GPU
(one line on stderr). ``--cpu-mechanics`` runs the steps that need no CUDA on the CPU to check the
script itself; its figures are CPU figures and its report says so.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

from facealign_sdk.export import parity  # noqa: E402
from facealign_sdk.cli.export import DEFAULT_PARITY_DATA  # noqa: E402
from facealign_sdk.export.quantize import load_face_crops, to_batch  # noqa: E402
from facealign_sdk.backends.base import ProfileBatcher  # noqa: E402
from facealign_sdk.model import load_manifest, resolve_model_dir  # noqa: E402

BATCHES = (1, 8, 64)
CLIP = REPO / "samples" / "clip.mp4"
EXIT_NO_GPU = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model name or folder (default: the released model)")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "gpu_suite" / "report.json", help="the JSON report")
    p.add_argument("--cache", type=Path, default=None, help="TensorRT engines (default: beside --out)")
    p.add_argument("--data", type=Path, default=DEFAULT_PARITY_DATA, help="annotated face images for the crops")
    p.add_argument("--faces", type=int, default=64, help="face crops for parity (default 64)")
    p.add_argument("--iters", type=int, default=20, help="timed runs per batch size (default 20)")
    p.add_argument("--video", type=Path, default=CLIP, help="clip for the end-to-end run (default samples/clip.mp4)")
    p.add_argument("--video-frames", type=int, default=0, help="frames of the clip (default 0: all)")
    p.add_argument("--workspace-gb", type=float, default=4.0, help="TensorRT builder workspace (GiB)")
    p.add_argument("--skip-trt", action="store_true", help="leave out both TensorRT paths (engine builds take minutes)")
    p.add_argument("--cpu-mechanics", action="store_true", help="no GPU: check the script on the CPU (CPU figures)")
    return p.parse_args(argv)


def gpu_problem() -> str | None:
    """Why no CUDA GPU can be used here, or None when PyTorch sees one."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed (the suite needs a CUDA build of it)"
    if torch.cuda.is_available():
        return None
    from facealign_sdk.backends.torch_backend import torch_gpu_status

    return torch_gpu_status()


def guarded(name: str, fn: Callable[[], dict], failures: list[str]) -> dict:
    """``fn()`` with its duration; an exception becomes the section's ``error`` (the suite goes on)."""
    print(f"[gpu_suite] {name} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
        result = fn()
    except Exception as exc:  # a GPU session is scarce: record the failure and run the other sections
        failures.append(name)
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc(limit=6)}
        print(f"[gpu_suite] {name} FAILED: {result['error']}", file=sys.stderr, flush=True)
    result["seconds"] = round(time.perf_counter() - start, 2)
    return result


# -- facts -----------------------------------------------------------------------------------------


def _version(package: str) -> str | None:
    import importlib.metadata as md

    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return None


def _command(*cmd: str) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    text = (done.stdout if done.returncode == 0 else f"failed: {done.stderr}").strip()
    return text or None


def preload_cuda_libraries() -> dict:
    """Let onnxruntime-gpu load the CUDA / cuDNN libraries of PyTorch's CUDA wheels (ONNX Runtime >= 1.21)."""
    import onnxruntime

    if not hasattr(onnxruntime, "preload_dlls"):
        return {"preload_dlls": "not in this onnxruntime"}
    onnxruntime.preload_dlls()
    return {"preload_dlls": "done"}


def facts() -> dict:
    import onnxruntime
    import torch

    out = {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_cores": os.cpu_count(),
        "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        # TF32 (on by default for cuDNN convolutions) moves fp32 results on Ampere and later GPUs
        "torch_cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "onnxruntime": onnxruntime.__version__, "onnxruntime_package": "onnxruntime-gpu" if _version("onnxruntime-gpu") else "onnxruntime",
        "onnxruntime_providers": onnxruntime.get_available_providers(), "tensorrt": _version("tensorrt"),
        "git_commit": _command("git", "-C", str(REPO), "rev-parse", "HEAD"),
        "nvidia_smi": _command("nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit",
                               "--format=csv,noheader"),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        out.update(gpu=props.name, compute_capability=f"{props.major}.{props.minor}",
                   gpu_memory_gib=round(props.total_memory / 2**30, 1), multiprocessors=props.multi_processor_count,
                   gpu_count=torch.cuda.device_count())
    return out


# -- crops and the reference -------------------------------------------------------------------------


def clip_crops(model_dir: Path, clip: Path, count: int) -> np.ndarray:
    """Crops of the faces YuNet finds in ``clip``, the way the Aligner cuts them (evenly over the clip)."""
    import cv2

    from facealign_sdk import geometry
    from facealign_sdk.aligner import Aligner

    aligner = Aligner(model_dir, backend="ort", device="cpu")
    capture = cv2.VideoCapture(str(clip))
    frames = []
    ok, frame = capture.read()
    while ok:
        frames.append(frame)
        ok, frame = capture.read()
    capture.release()
    crops = []
    for frame in frames[:: max(1, len(frames) // count)]:
        for det in aligner.detect(frame):
            crop = geometry.warp_crop(frame, aligner.frame_for(det), aligner.manifest.input_size)
            crops.append(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
    if not crops:
        raise RuntimeError(f"{clip}: no face found for the parity crops")
    return to_batch(np.stack(crops[:count]))


def face_crops(model_dir: Path, args: argparse.Namespace) -> tuple[np.ndarray, str]:
    if args.data.is_dir():
        size = load_manifest(model_dir).input_size
        return load_face_crops(args.data, args.faces, size), f"{args.faces} annotated faces of {args.data}"
    crops = clip_crops(model_dir, args.video, args.faces)
    return crops, f"{len(crops)} faces YuNet found in {args.video.name} ({args.data} not present)"


class Reference:
    """The CPU PyTorch fp32 heatmaps and landmarks of the crops; compares any path's heatmaps with them."""

    def __init__(self, model_dir: Path, manifest, crops: np.ndarray) -> None:
        from facealign_sdk.backends.torch_backend import TorchBackend

        self.manifest = manifest
        self.heatmaps = parity.run_batched(TorchBackend(model_dir, manifest, "cpu").run, crops)
        self.points = parity.landmarks_px(self.heatmaps, manifest)

    def compare(self, heatmaps: np.ndarray, precision: str) -> dict:
        stats = {**parity.heatmap_stats(self.heatmaps, heatmaps),
                 **parity.landmark_stats(self.points, parity.landmarks_px(heatmaps, self.manifest))}
        limit = parity.THRESHOLDS_PX[precision]
        return {**{k: round(v, 5) for k, v in stats.items()}, "limit_px": limit, "passed": stats["landmark_p99_px"] <= limit}


# -- timing ------------------------------------------------------------------------------------------


def host_rate(run: Callable[[np.ndarray], np.ndarray], crops: np.ndarray, batch: int, iters: int) -> float:
    """Crops per second of ``run`` on a numpy batch (copies to and from the device included)."""
    x = np.ascontiguousarray(np.resize(crops, (batch, *crops.shape[1:])), dtype=np.float32)
    return _rate(lambda: run(x), batch, iters, lambda: None)


def _rate(step: Callable[[], object], batch: int, iters: int, sync: Callable[[], None]) -> float:
    for _ in range(3):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        step()
    sync()
    return round(batch * iters / (time.perf_counter() - start), 1)


# -- PyTorch -----------------------------------------------------------------------------------------


def cuda_graph(net, batch: int, dtype, device: str, size: int):
    """A CUDA graph of ``net`` on a static (batch, 3, size, size) input: (graph, input, output)."""
    import torch

    static_x = torch.zeros((batch, 3, size, size), device=device, dtype=dtype)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(3):  # warm-up outside the capture (cuDNN picks its algorithms here)
            net(static_x)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(graph):
        static_y = net(static_x)
    return graph, static_x, static_y


def torch_path(model_dir: Path, manifest, crops: np.ndarray, ref: Reference, half: bool, device: str, iters: int) -> dict:
    import torch

    from facealign_sdk.backends.torch_backend import TorchBackend

    torch.backends.cudnn.benchmark = True
    backend = TorchBackend(model_dir, manifest, device, half=half)
    net, dtype, size = backend.net, backend.dtype, manifest.input_size
    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    row = {"runtime": backend.name, "precision": "fp16" if half else "fp32",
           "parity": ref.compare(parity.run_batched(backend.run, crops), "fp16" if half else "fp32"),
           "crops_per_s_numpy_io": {b: host_rate(backend.run, crops, b, iters) for b in BATCHES},
           "crops_per_s_on_device": {}}
    for b in BATCHES:
        x = torch.rand((b, 3, size, size), device=device, dtype=dtype)
        with torch.inference_mode():
            row["crops_per_s_on_device"][b] = _rate(lambda: net(x), b, iters, sync)
    if cuda:
        row["crops_per_s_cuda_graph"] = {}
        for b in BATCHES:
            graph, _, _ = cuda_graph(net, b, dtype, device, size)
            row["crops_per_s_cuda_graph"][b] = _rate(graph.replay, b, iters, sync)
        graph, static_x, static_y = cuda_graph(net, BATCHES[-1], dtype, device, size)

        def replay(chunk: np.ndarray) -> np.ndarray:
            static_x.copy_(torch.from_numpy(chunk).to(device, dtype))
            graph.replay()
            return static_y.float().cpu().numpy()

        # a graph takes its captured batch only: the batcher pads the last chunk
        row["parity_cuda_graph"] = ref.compare(ProfileBatcher(replay, BATCHES[-1], BATCHES[-1]).run(crops),
                                               row["precision"])
    return row


# -- ONNX Runtime and TensorRT -----------------------------------------------------------------------


def ort_path(onnx_path: Path, device: str, precision: str, manifest, crops: np.ndarray, ref: Reference, iters: int) -> dict:
    from facealign_sdk.backends.ort import OrtBackend

    start = time.perf_counter()
    backend = OrtBackend(onnx_path, manifest.input_size, device)
    backend.run(crops[:1])  # the TensorRT provider builds (or loads) its engine here
    row = {"runtime": backend.name, "providers": backend.providers, "precision": precision,
           "startup_s": round(time.perf_counter() - start, 2)}
    row["parity"] = ref.compare(parity.run_batched(backend.run, crops), precision)
    row["crops_per_s_numpy_io"] = {b: host_rate(backend.run, crops, b, iters) for b in BATCHES}
    return row


def with_fp16_graph(model_dir: Path, work: Path) -> Path:
    """The model folder, or where it has no ``model_fp16.onnx`` (released folders do not carry it), a copy of
    it in ``work`` with that graph converted from ``model.onnx`` and recorded in the copy's manifest."""
    from facealign_sdk.export.quantize import convert_fp16
    from facealign_sdk.model import record_artifacts

    if (model_dir / "model_fp16.onnx").is_file():
        return model_dir
    work.mkdir(parents=True, exist_ok=True)
    for name in ("manifest.json", "model.safetensors", "model.onnx"):
        shutil.copy2(model_dir / name, work / name)
    record_artifacts(work, [convert_fp16(work / "model.onnx", work / "model_fp16.onnx")])
    return work


def engine_folder(model_dir: Path, work: Path) -> Path:
    """A copy of the model folder's manifest and ONNX graphs for the engine build (the model folder stays as it is)."""
    work.mkdir(parents=True, exist_ok=True)
    for name in ("manifest.json", "model.safetensors", "model.onnx", "model_fp16.onnx"):
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, work / name)
    return work


def trt_path(model_dir: Path, work: Path, manifest, crops: np.ndarray, ref: Reference, args: argparse.Namespace) -> dict:
    from facealign_sdk.export.tensorrt import DEFAULT_PROFILE, build_engine
    from facealign_sdk.backends import load_backend

    start = time.perf_counter()
    engine = build_engine(engine_folder(model_dir, work), manifest, DEFAULT_PROFILE, args.workspace_gb)
    row = {"engine": engine.name, "build_s": round(time.perf_counter() - start, 1), "precision": "fp16"}
    backend = load_backend(work, manifest, "trt", "cuda")
    row["runtime"] = f"trt {engine.name}"
    row["parity"] = ref.compare(parity.run_batched(backend.run, crops), "fp16")
    row["crops_per_s_numpy_io"] = {b: host_rate(backend.run, crops, b, args.iters) for b in BATCHES}
    return row


# -- video -------------------------------------------------------------------------------------------


def video_runs(configs: list[tuple[str, Path, str, str]], args: argparse.Namespace) -> list[dict]:
    """frames/s end to end for each (label, model, backend, device), 1 and 8 frames per network call."""
    from video_real import run_clip  # benchmarks/video_real.py: the timed tracking loop with CSV writing

    from facealign_sdk.aligner import Aligner

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, model, backend, device in configs:
            try:
                aligner = Aligner(model, backend=backend, device=device)
            except Exception as exc:  # that path is reported above; here it only has no video row
                rows.append({"path": label, "error": f"{type(exc).__name__}: {exc}"})
                continue
            for batch_frames in (1, 8):
                options = argparse.Namespace(redetect_every=10, batch_frames=batch_frames, no_smooth=False,
                                             max_frames=args.video_frames or None)
                run_clip(aligner, args.video, argparse.Namespace(**{**vars(options), "max_frames": 16}), Path(tmp))
                result = run_clip(aligner, args.video, options, Path(tmp))
                rows.append({"path": label, "backend": aligner.backend_name, "batch_frames": batch_frames,
                             **{k: result[k] for k in ("frames", "fps", "with_face", "confidence")}})
    return rows


# -- main --------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    device = "cpu" if args.cpu_mechanics else "cuda"
    out_dir = args.out.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    model_dir = with_fp16_graph(resolve_model_dir(args.model), out_dir / "model")
    manifest = load_manifest(model_dir)
    os.environ["FACEALIGN_CACHE"] = str(args.cache or out_dir / "cache")
    failures: list[str] = []
    report: dict = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                    "mode": "CPU mechanics check: no GPU figures" if args.cpu_mechanics else "GPU",
                    "model": manifest.name, "weights_sha256": manifest.weights_sha256,
                    "criterion": parity.CRITERION.replace("PyTorch fp32", "PyTorch fp32 on the CPU"),
                    "note": "fp32 on the GPU may run convolutions in TF32 (the PyTorch cuDNN and ONNX Runtime CUDA "
                            "defaults), which can move landmarks past the fp32 limit without being an error",
                    "timing": f"crops/s: {args.iters} runs after 3 warm-up runs; on_device: input already on the GPU; "
                              "numpy_io: numpy in, numpy out (the backend as the Aligner calls it)"}
    report["facts"] = guarded("facts", facts, failures)
    if not args.cpu_mechanics:
        report["setup"] = guarded("setup", preload_cuda_libraries, failures)
    crops, note = face_crops(model_dir, args)
    report["data"] = note
    ref = Reference(model_dir, manifest, crops)
    paths: dict[str, dict] = {}
    for half in (False, True) if not args.cpu_mechanics else (False,):
        name = f"torch-{device}-{'fp16' if half else 'fp32'}"
        paths[name] = guarded(name, lambda: torch_path(model_dir, manifest, crops, ref, half, device, args.iters), failures)
    import onnxruntime

    available = onnxruntime.get_available_providers()
    ort_runs = [("cuda", "model.onnx", "fp32", "CUDAExecutionProvider"),
                ("cuda", "model_fp16.onnx", "fp16", "CUDAExecutionProvider")]
    if not args.skip_trt:
        ort_runs.append(("tensorrt", "model.onnx", "fp16", "TensorrtExecutionProvider"))
    if args.cpu_mechanics:
        ort_runs = [("cpu", "model.onnx", "fp32", "CPUExecutionProvider")]
    for ort_device, file, precision, provider in ort_runs:
        name = f"ort-{ort_device}-{file.removesuffix('.onnx')}"
        if provider not in available:
            paths[name] = {"skipped": f"{provider} not in this onnxruntime build ({', '.join(available)})"}
            continue
        paths[name] = guarded(name, lambda: ort_path(model_dir / file, ort_device, precision, manifest, crops, ref,
                                                     args.iters), failures)
    work = out_dir / "engine"
    if args.skip_trt or _version("tensorrt") is None or args.cpu_mechanics:
        why = "--skip-trt" if args.skip_trt else ("no GPU" if args.cpu_mechanics else "TensorRT is not installed")
        paths["trt-native"] = {"skipped": why}
    else:
        paths["trt-native"] = guarded("trt-native", lambda: trt_path(model_dir, work, manifest, crops, ref, args), failures)
    report["paths"] = paths
    configs = [("torch", model_dir, "torch", device)]
    if "CUDAExecutionProvider" in available or args.cpu_mechanics:
        configs.append(("ort-fp16" if not args.cpu_mechanics else "ort", model_dir / (
            "model_fp16.onnx" if not args.cpu_mechanics else "model.onnx"), "ort", device))
    if "error" not in paths["trt-native"] and "skipped" not in paths["trt-native"]:
        configs.append(("trt-native", work, "trt", "cuda"))
    if not args.cpu_mechanics:
        configs.append(("ort-cpu", model_dir / "model.onnx", "ort", "cpu"))
    report["video"] = guarded("video", lambda: {"clip": str(args.video), "runs": video_runs(configs, args)}, failures)
    failed_parity = [n for n, p in paths.items() for key in ("parity", "parity_cuda_graph")
                     if key in p and not p[key]["passed"]]
    report["failed"] = failures
    report["failed_parity"] = failed_parity
    args.out.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(summary(report))
    print(f"wrote {args.out}")
    return 1 if failures or failed_parity else 0


def summary(report: dict) -> str:
    """The report's paths as a short table."""
    lines = [f"{'path':<24} {'p99 px':>8} {'limit':>6} {'ok':>3}  crops/s b1 / b8 / b64 (numpy io; on device; graph)"]
    for name, row in report["paths"].items():
        if "parity" not in row:
            lines.append(f"{name:<24} {row.get('skipped') or row.get('error', '')}")
            continue
        par = row["parity"]
        rates = "; ".join(" / ".join(str(v) for v in row[k].values()) for k in
                          ("crops_per_s_numpy_io", "crops_per_s_on_device", "crops_per_s_cuda_graph") if k in row)
        lines.append(f"{name:<24} {par['landmark_p99_px']:8.4f} {par['limit_px']:6.2f} {'ok' if par['passed'] else 'NO':>3}  {rates}")
    for run in report["video"].get("runs", []):
        if "fps" in run:
            lines.append(f"video {run['path']:<18} batch {run['batch_frames']}: {run['fps']:.1f} frames/s ({run['frames']} frames)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.cpu_mechanics:
        problem = gpu_problem()
        if problem:
            print(f"gpu_suite: no usable CUDA GPU here ({problem}); nothing was measured", file=sys.stderr)
            return EXIT_NO_GPU
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
