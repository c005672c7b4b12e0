"""Inference backends behind one interface, and the router that picks one for a model.

Like insightface's ``model_zoo``: a model folder (or one artifact in it) goes in,
a :class:`Backend` comes out. ``backend="auto"`` takes the fastest one that can run
here: a TensorRT engine built for this machine > ONNX Runtime (CUDA provider, else
CPU) > PyTorch, trying the next when one cannot start (an engine built for another
GPU or TensorRT version, a GPU provider whose libraries are missing). An explicit GPU
device (``"cuda"``, ``"tensorrt"``) never runs on the CPU: without a usable GPU it is
a BackendError that says why each runtime cannot use one. On the CPU, ONNX Runtime and OpenVINO are
both candidates: the faster one here is measured once and cached (:mod:`.choice`).
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from ..model import Manifest, ModelError, verify_artifact
from .base import GPU_DEVICES, Backend, BackendError, check_batch, parse_device

BACKENDS = ("auto", "ort", "openvino", "torch", "trt")
CPU_CONTEST = ("ort", "openvino")  # CPU backends of model.onnx that backend="auto" times against each other
ONNX_FP32 = "model.onnx"
ONNX_DECODE = "model_decode.onnx"  # heatmaps decoded inside the graph (facealign export --to decode)
CUDA_PROVIDER = "CUDAExecutionProvider"
log = logging.getLogger("facealign_sdk")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _cuda_in_torch() -> bool:
    if not _has("torch"):
        return False
    import torch

    return torch.cuda.is_available()


def _ort_providers() -> list[str]:
    if not _has("onnxruntime"):
        return []
    import onnxruntime

    return onnxruntime.get_available_providers()


# the backends that run a file named as the model (Aligner(model="models/x/model_int8.onnx"))
_RUNS_FILE = {".onnx": ("ort", "openvino"), ".engine": ("trt",), ".safetensors": ("torch",)}


def load_backend(
    model_dir: Path,
    manifest: Manifest,
    backend: str = "auto",
    device: str = "auto",
    artifact: Path | None = None,
    decode_graph: bool = False,
) -> Backend:
    """Create the backend for a model folder; ``artifact`` is a specific .onnx / .engine file.

    ``device``: "auto", "cpu", "cuda" / "cuda:N", or "tensorrt" (ONNX Runtime's TensorRT provider).
    ``decode_graph``: with ONNX Runtime, take the folder's ``model_decode.onnx`` (points out,
    decoding inside the graph) when there is one.
    """
    if backend not in BACKENDS:
        raise BackendError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    parse_device(device)
    runs = _RUNS_FILE.get(artifact.suffix) if artifact is not None else None
    if backend == "auto" and artifact is not None:
        backend = runs[0] if runs is not None else "torch"  # the first backend that runs the file
    if runs is not None and backend not in runs:  # e.g. the int8 graph asked for with backend='torch'
        raise BackendError(f"backend={backend!r} does not run {artifact.name}: a {artifact.suffix} file runs with "
                           f"backend {' or '.join(repr(b) for b in runs)}")
    if backend != "auto":
        return _create(backend, model_dir, manifest, device, artifact, decode_graph)
    candidates = _auto_candidates(model_dir, device)
    contest = [c for c in candidates if c in CPU_CONTEST]
    # only where the CPU comes first: a TensorRT engine ahead of them is tried in the loop below
    if len(contest) > 1 and candidates[0] in CPU_CONTEST and not (decode_graph and (model_dir / ONNX_DECODE).is_file()):
        from .choice import choose_cpu_backend

        fastest = choose_cpu_backend(contest, lambda name: _create(name, model_dir, manifest, device, None, False),
                                     model_dir / ONNX_FP32, manifest.input_size)
        if fastest is not None:
            return fastest
        candidates = [c for c in candidates if c not in contest] or candidates
    for name, following in zip(candidates, candidates[1:]):
        try:
            chosen = _create(name, model_dir, manifest, device, artifact, decode_graph)
        except BackendError as exc:
            log.warning("backend=auto: %s cannot run here (%s); trying %s", name, exc, following)
            continue
        log.info("backend=auto picked %s", name)
        return chosen
    log.info("backend=auto picked %s", candidates[-1])  # the last one's error is the caller's
    return _create(candidates[-1], model_dir, manifest, device, artifact, decode_graph)


def _create(backend: str, model_dir: Path, manifest: Manifest, device: str, artifact: Path | None,
            decode_graph: bool) -> Backend:
    kind, index = parse_device(device)
    if backend == "trt":
        from .trt import TrtBackend, list_engines, runtime_info, select_engine

        if kind in ("cpu", "tensorrt"):
            raise BackendError(f"backend='trt' runs TensorRT engines on a CUDA GPU; device={device!r} does not fit "
                               "(use device='cuda', or backend='ort' for ONNX Runtime's TensorRT provider)")
        engine = artifact or select_engine(list_engines(model_dir), runtime_info(index), manifest.model_dump())
        verify_artifact(model_dir, manifest, engine)
        return TrtBackend(engine, manifest, index)
    if backend == "ort":
        from .ort import OrtBackend

        onnx = artifact or model_dir / ONNX_FP32
        if artifact is None and decode_graph and (model_dir / ONNX_DECODE).is_file():
            onnx = model_dir / ONNX_DECODE
        if not onnx.is_file():
            raise ModelError(f"{model_dir}: no {onnx.name}; run `facealign export --model {model_dir} --to onnx` or use backend='torch'")
        verify_artifact(model_dir, manifest, onnx)
        return OrtBackend(onnx, manifest.input_size, device)
    if backend == "openvino":
        return _create_openvino(model_dir, manifest, device, artifact)
    from .torch_backend import TorchBackend

    if kind == "tensorrt":
        raise BackendError("device='tensorrt' is ONNX Runtime's TensorRT provider; the torch backend runs on 'cpu' or 'cuda'")
    torch_device = {"auto": "cuda" if _cuda_in_torch() else "cpu", "cpu": "cpu"}.get(kind, f"cuda:{index}")
    return TorchBackend(model_dir, manifest, torch_device)


def _create_openvino(model_dir: Path, manifest: Manifest, device: str, artifact: Path | None) -> Backend:
    from .openvino import OpenVinoBackend

    if parse_device(device)[0] not in ("auto", "cpu"):
        raise BackendError(f"backend='openvino' runs on the CPU; device={device!r} does not fit")
    onnx = artifact or model_dir / ONNX_FP32
    if not onnx.is_file():
        raise ModelError(f"{model_dir}: no {onnx.name}; run `facealign export --model {model_dir} --to onnx`")
    verify_artifact(model_dir, manifest, onnx)
    return OpenVinoBackend(onnx, manifest.input_size)


def _auto_candidates(model_dir: Path, device: str) -> list[str]:
    """The backends worth trying for ``device``, fastest first; BackendError when there are none."""
    kind, _ = parse_device(device)
    cuda = _cuda_in_torch()
    providers = _ort_providers()
    onnx = (model_dir / ONNX_FP32).is_file()
    has_trt = _has("tensorrt")
    engines = any(model_dir.glob("*.engine"))
    gpu_provider = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}.get(kind)
    candidates = []
    if kind in ("auto", "cuda") and has_trt and engines and cuda:
        candidates.append("trt")
    if onnx and providers and (gpu_provider is None or gpu_provider in providers):
        candidates.append("ort")
    # OpenVINO runs on the CPU: a candidate where the CPU is what "auto" ends on (ORT has no GPU provider here)
    if onnx and _has("openvino") and (kind == "cpu" or (kind == "auto" and CUDA_PROVIDER not in providers)):
        candidates.append("openvino")
    if _has("torch") and kind != "tensorrt" and (kind != "cuda" or cuda):
        candidates.append("torch")
    if candidates:
        return candidates
    if kind in GPU_DEVICES:
        why = [f"ONNX Runtime offers {', '.join(providers)} (no {gpu_provider}; the GPU build: pip uninstall "
               "onnxruntime && pip install 'facealign-sdk[gpu]')" if providers else "onnxruntime is not installed"]
        if not onnx:
            why[0] = f"there is no {ONNX_FP32} for ONNX Runtime"
        if kind == "cuda":
            from .torch_backend import torch_gpu_status

            why.append(torch_gpu_status())
        raise BackendError(f"device={device!r} needs a usable NVIDIA GPU and nothing here can use one: "
                           f"{'; '.join(why)}. Use device='cpu' (or 'auto': the GPU when there is one)")
    raise BackendError(
        f"no usable backend for {model_dir}: install onnxruntime (pip install onnxruntime) for the "
        f"exported {ONNX_FP32}, or PyTorch (pip install torch==2.13.0) for the safetensors weights"
    )


__all__ = ["BACKENDS", "Backend", "BackendError", "check_batch", "load_backend"]
