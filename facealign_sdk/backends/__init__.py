"""Inference backends behind one interface, and the router that picks one for a model.

Like insightface's ``model_zoo``: a model folder (or one artifact in it) goes in,
a :class:`Backend` comes out. ``backend="auto"`` takes the fastest one available:
TensorRT engine > ONNX Runtime (TensorRT/CUDA EP, then CPU) > PyTorch.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from ..model import Manifest, ModelError, verify_artifact
from .base import Backend, BackendError, check_batch

BACKENDS = ("auto", "ort", "torch", "trt")
ONNX_FP32 = "model.onnx"
ONNX_DECODE = "model_decode.onnx"  # heatmaps decoded inside the graph (facealign export --to decode)
log = logging.getLogger("facealign_sdk")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda_in_torch() -> bool:
    if not _has("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def load_backend(
    model_dir: Path,
    manifest: Manifest,
    backend: str = "auto",
    device: str = "auto",
    artifact: Path | None = None,
    decode_graph: bool = False,
) -> Backend:
    """Create the backend for a model folder; ``artifact`` is a specific .onnx / .engine file.

    ``decode_graph``: with ONNX Runtime, take the folder's ``model_decode.onnx`` (points out,
    decoding inside the graph) when there is one.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        backend = _auto_backend(model_dir, device, artifact)
        log.info("backend=auto picked %s", backend)
    if backend == "trt":
        from .trt import TrtBackend

        engine = artifact or _first(model_dir, "*.engine", "a TensorRT engine (.engine); build one with facealign export --to trt")
        verify_artifact(model_dir, manifest, engine)
        return TrtBackend(engine, manifest)
    if backend == "ort":
        from .ort import OrtBackend

        onnx = artifact or model_dir / ONNX_FP32
        if artifact is None and decode_graph and (model_dir / ONNX_DECODE).is_file():
            onnx = model_dir / ONNX_DECODE
        if not onnx.is_file():
            raise ModelError(f"{model_dir}: no {onnx.name}; run `facealign export --model {model_dir} --to onnx` or use backend='torch'")
        verify_artifact(model_dir, manifest, onnx)
        return OrtBackend(onnx, manifest.input_size, "auto" if device in ("auto", "gpu") else device)
    from .torch_backend import TorchBackend

    torch_device = ("cuda" if _cuda_in_torch() else "cpu") if device in ("auto", "gpu") else device
    return TorchBackend(model_dir, manifest, torch_device)


def _first(model_dir: Path, pattern: str, what: str) -> Path:
    found = sorted(model_dir.glob(pattern))
    if not found:
        raise ModelError(f"{model_dir}: no {what}")
    return found[0]


def _auto_backend(model_dir: Path, device: str, artifact: Path | None) -> str:
    if artifact is not None:
        return {".engine": "trt", ".onnx": "ort"}.get(artifact.suffix, "torch")
    if device != "cpu" and _has("tensorrt") and any(model_dir.glob("*.engine")) and _cuda_in_torch():
        return "trt"
    if _has("onnxruntime") and (model_dir / ONNX_FP32).is_file():
        return "ort"
    if _has("torch"):
        return "torch"
    raise BackendError(
        f"no usable backend for {model_dir}: install onnxruntime (pip install onnxruntime) for the "
        f"exported {ONNX_FP32}, or PyTorch (pip install torch==2.13.0) for the safetensors weights"
    )


__all__ = ["BACKENDS", "Backend", "BackendError", "check_batch", "load_backend"]
