"""ONNX Runtime backend: CPU, and CUDA / TensorRT execution providers with onnxruntime-gpu.

A GPU provider is used only where ONNX Runtime really runs the graph with it: the providers in
use are read back from the session, and an explicitly requested one that is missing is an error.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from pathlib import Path

import numpy as np

from ..model import sha256
from .base import GPU_DEVICES, INPUT_NAME, BackendError, ProfileBatcher, check_batch, parse_device

DECODE_OUTPUTS = ("points", "scores")

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
# per device kind, in order of preference. "auto" takes CUDA, not TensorRT: the TensorRT provider builds an
# engine for minutes on first use (and whenever the batch leaves its profile); ask for it with device="tensorrt".
PROVIDERS = {"auto": (CUDA, CPU), "cpu": (CPU,), "cuda": (CUDA, CPU), "tensorrt": (TENSORRT, CUDA, CPU)}
TRT_PROFILE = (1, 8, 64)  # min / opt / max batch of the TensorRT provider's engine (as export --to trt)
GPU_INSTALL_HINT = "pip uninstall onnxruntime && pip install 'facealign-sdk[gpu]'"
log = logging.getLogger("facealign_sdk")


def cache_dir() -> Path:
    """Where built TensorRT engines are kept: ``$FACEALIGN_CACHE``, else ``$XDG_CACHE_HOME/facealign`` (~/.cache)."""
    if os.environ.get("FACEALIGN_CACHE"):
        return Path(os.environ["FACEALIGN_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "facealign"


def tensorrt_options(onnx_path: Path, input_size: int, device_id: int = 0, profile: tuple[int, int, int] = TRT_PROFILE,
                     cache_root: Path | None = None) -> dict[str, str]:
    """TensorRT provider options: FP16, one batch profile, an engine cache kept per graph and ORT/TensorRT version.

    ORT reuses a cached engine only while its profile matches, so one profile covering every batch
    (:class:`ProfileBatcher` splits larger ones) means one build, ever, per graph and machine.
    """
    import onnxruntime as ort

    trt_version = "unknown"
    try:
        trt_version = importlib.metadata.version("tensorrt")
    except importlib.metadata.PackageNotFoundError:
        pass  # TensorRT from system libraries: the cache is still keyed by graph and ORT version
    key = f"{Path(onnx_path).stem}-{sha256(Path(onnx_path))[:12]}-ort{ort.__version__}-trt{trt_version}"
    shapes = [f"{INPUT_NAME}:{b}x3x{input_size}x{input_size}" for b in profile]
    return {
        "device_id": str(device_id),
        "trt_fp16_enable": "True",
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str((cache_root or cache_dir()) / "ort-tensorrt" / key),
        "trt_profile_min_shapes": shapes[0],
        "trt_profile_opt_shapes": shapes[1],
        "trt_profile_max_shapes": shapes[2],
    }


def choose_providers(available: list[str], device: str = "auto", tensorrt: dict[str, str] | None = None,
                     ) -> list[str | tuple[str, dict[str, str]]]:
    """Execution providers for ``device`` ("auto", "cpu", "cuda[:N]", "tensorrt[:N]") from those available.

    GPU providers come with their options (``device_id``; ``tensorrt``: the TensorRT provider's).
    BackendError when an explicitly requested GPU provider is not in this onnxruntime build.
    """
    kind, index = parse_device(device)
    wanted = PROVIDERS[kind]
    if kind in GPU_DEVICES and wanted[0] not in available:
        raise BackendError(
            f"device={device!r} needs ONNX Runtime's {wanted[0]}, which this onnxruntime build does not offer (it has "
            f"{', '.join(available)}): no usable GPU for ONNX Runtime. Install the GPU build: {GPU_INSTALL_HINT}"
        )
    options = {CUDA: {"device_id": str(index)}, TENSORRT: {"device_id": str(index), **(tensorrt or {})}}
    return [(p, options[p]) if p in options else p for p in wanted if p in available]


def check_providers_in_use(device: str, requested: list, in_use: list[str]) -> None:
    """After session creation: the GPU provider asked for must be the one running the graph.

    ONNX Runtime lists a provider as available when its library is present, then falls back to
    the CPU (with a log line) when the CUDA / cuDNN / TensorRT libraries it needs cannot be
    loaded. An explicit GPU device raises BackendError then; "auto" logs a warning and runs on the CPU.
    """
    kind, _ = parse_device(device)
    first = requested[0][0] if isinstance(requested[0], tuple) else requested[0]
    if first == CPU or first in in_use:
        return
    message = (f"ONNX Runtime did not enable {first} (running with {', '.join(in_use)}): its CUDA / cuDNN"
               f"{' / TensorRT' if first == TENSORRT else ''} libraries are missing or do not match this onnxruntime "
               f"build")
    if kind in GPU_DEVICES:
        raise BackendError(f"device={device!r}: no usable GPU: {message}. Use device='cpu', or install matching "
                           "libraries (with PyTorch's CUDA wheels installed, onnxruntime.preload_dlls() before "
                           "the session loads theirs)")
    log.warning("%s; running on the CPU", message)


def env_threads() -> int:
    """``FACEALIGN_THREADS`` (a positive integer; unset: 0, ONNX Runtime's default of one per core)."""
    text = os.environ.get("FACEALIGN_THREADS", "").strip()
    if not text:
        return 0
    if not text.isdigit() or int(text) < 1:
        raise BackendError(f"FACEALIGN_THREADS={text!r}: expected a positive whole number of threads")
    return int(text)


class OrtBackend:
    """Runs an ONNX landmark model with ONNX Runtime."""

    def __init__(self, onnx_path: Path, input_size: int = 256, device: str = "auto", threads: int | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendError("the ort backend needs onnxruntime: pip install onnxruntime (or onnxruntime-gpu)") from exc
        if not Path(onnx_path).is_file():
            raise BackendError(f"ONNX model not found: {onnx_path}")
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = threads or env_threads()
        # ORT's worker threads spin after a run, waiting for the next one; in the Aligner the next thing
        # is OpenCV / numpy work on the same cores, which they slow down (2 cores: decoding right after a
        # run 7.5 ms with spinning, 4.2 ms without; the run itself 12.7 vs 14.5 ms). FACEALIGN_ORT_SPIN=1
        # turns spinning back on for back-to-back network runs (benchmarks of the network alone).
        spin = os.environ.get("FACEALIGN_ORT_SPIN", "0").strip().lower() in ("1", "true", "yes")
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        opts.log_severity_level = 3
        kind, index = parse_device(device)
        available = ort.get_available_providers()
        trt = tensorrt_options(onnx_path, input_size, index) if TENSORRT in available and kind == "tensorrt" else None
        providers = choose_providers(available, device, trt)
        try:
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"{onnx_path}: ONNX Runtime cannot load it ({exc})") from exc
        self.providers = self.session.get_providers()
        check_providers_in_use(device, providers, self.providers)
        inp = self.session.get_inputs()[0]
        outputs = self.session.get_outputs()
        # a decode graph (export --to decode) outputs points (N, L, 2) and scores (N, L) instead of heatmaps
        self.outputs_points = [o.name for o in outputs[:2]] == list(DECODE_OUTPUTS)
        if not self.outputs_points and len(outputs[0].shape) != 4:
            raise BackendError(
                f"{onnx_path}: first output {outputs[0].name!r} has shape {outputs[0].shape}; expected heatmaps "
                f"(N, L, H, W) or a decode graph's {' and '.join(DECODE_OUTPUTS)}"
            )
        self.input_name = inp.name
        self.output_names = [o.name for o in outputs[: 2 if self.outputs_points else 1]]
        self.input_dtype = np.float16 if inp.type == "tensor(float16)" else np.float32
        self.num_landmarks = int(outputs[0].shape[1])
        self.input_size = input_size
        self.name = f"ort:{self.providers[0]}"
        # the TensorRT provider's engine takes batches of its profile only (a larger one would rebuild it)
        self._batcher = ProfileBatcher(self._session_run, 1, TRT_PROFILE[2] if self.providers[0] == TENSORRT else None,
                                       serialize=False)

    def _session_run(self, x: np.ndarray):
        outputs = self.session.run(self.output_names, {self.input_name: x.astype(self.input_dtype, copy=False)})
        return tuple(outputs) if self.outputs_points else outputs[0]

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.outputs_points:
            raise BackendError("this ONNX graph decodes inside (points, scores): use run_points, or model.onnx for heatmaps")
        return np.asarray(self._batcher.run(check_batch(batch, self.input_size)), dtype=np.float32)

    def run_points(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode graphs only: (N, 3, S, S) crops -> points (N, L, 2) in heatmap pixels and scores (N, L)."""
        if not self.outputs_points:
            raise BackendError("this ONNX graph outputs heatmaps, not points: decode them with facealign_sdk.decode")
        points, scores = self._batcher.run(check_batch(batch, self.input_size))
        return np.asarray(points, dtype=np.float64), np.asarray(scores, dtype=np.float32)
