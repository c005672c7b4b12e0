"""ONNX Runtime backend: CPU, and CUDA / TensorRT execution providers with onnxruntime-gpu."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import BackendError, check_batch

DECODE_OUTPUTS = ("points", "scores")

# fastest first; only the ones the installed onnxruntime build offers are used
PROVIDER_PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def choose_providers(available: list[str], device: str = "auto") -> list[str]:
    """Execution providers for ``device`` ("auto", "cpu", "cuda", "tensorrt") from those available."""
    wanted = {
        "auto": PROVIDER_PREFERENCE,
        "cpu": ("CPUExecutionProvider",),
        "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
        "tensorrt": PROVIDER_PREFERENCE,
    }.get(device)
    if wanted is None:
        raise BackendError(f"unknown device {device!r} for the ort backend (auto, cpu, cuda, tensorrt)")
    chosen = [p for p in wanted if p in available]
    if device in ("cuda", "tensorrt") and chosen[:1] != [wanted[0]]:
        raise BackendError(
            f"{wanted[0]} is not available in this onnxruntime build (have {available}); "
            "install the GPU build: pip uninstall onnxruntime && pip install 'facealign-sdk[gpu]'"
        )
    return chosen


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
        opts.intra_op_num_threads = threads or int(os.environ.get("FACEALIGN_THREADS", 0)) or 0
        # ORT's worker threads spin after a run, waiting for the next one; in the Aligner the next thing
        # is OpenCV / numpy work on the same cores, which they slow down (2 cores: decoding right after a
        # run 7.5 ms with spinning, 4.2 ms without; the run itself 12.7 vs 14.5 ms). FACEALIGN_ORT_SPIN=1
        # turns spinning back on for back-to-back network runs (benchmarks of the network alone).
        spin = os.environ.get("FACEALIGN_ORT_SPIN", "0").strip().lower() in ("1", "true", "yes")
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        opts.log_severity_level = 3
        providers = choose_providers(ort.get_available_providers(), device)
        try:
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise BackendError(f"{onnx_path}: ONNX Runtime cannot load it ({exc})") from exc
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
        self.providers = self.session.get_providers()
        self.name = f"ort:{self.providers[0]}"

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.outputs_points:
            raise BackendError("this ONNX graph decodes inside (points, scores): use run_points, or model.onnx for heatmaps")
        x = check_batch(batch, self.input_size).astype(self.input_dtype, copy=False)
        (heatmaps,) = self.session.run(self.output_names, {self.input_name: x})
        return np.asarray(heatmaps, dtype=np.float32)

    def run_points(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Decode graphs only: (N, 3, S, S) crops -> points (N, L, 2) in heatmap pixels and scores (N, L)."""
        if not self.outputs_points:
            raise BackendError("this ONNX graph outputs heatmaps, not points: decode them with facealign_sdk.decode")
        x = check_batch(batch, self.input_size).astype(self.input_dtype, copy=False)
        points, scores = self.session.run(self.output_names, {self.input_name: x})
        return np.asarray(points, dtype=np.float64), np.asarray(scores, dtype=np.float32)
