"""TensorRT backend: runs a serialized engine (``model_fp16_b1-8-64.engine``) built by ``facealign export --to trt``.

Engines are not portable: one runs only with the TensorRT version and on the GPU
model it was built with. The JSON sidecar written beside each engine records
both, and :func:`check_sidecar` refuses a mismatch before TensorRT is asked to
deserialise it. GPU memory is handled with PyTorch CUDA tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from ..model import Manifest
from .base import BackendError, check_batch

INSTALL_HINT = "pip install 'facealign-sdk[trt]' (tensorrt and a CUDA build of torch; NVIDIA GPU required)"


class Profile(BaseModel):
    """The engine's optimisation profile for the batch dimension of ``image``."""

    min: int = Field(1, ge=1)
    opt: int = Field(8, ge=1)
    max: int = Field(64, ge=1)


class EngineSidecar(BaseModel):
    """``<engine>.json``: what an engine was built from and where it can run."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor", e.g. "9.0"
    precision: str = "fp16"
    profile: Profile = Field(default_factory=Profile)
    input_name: str = "image"
    output_name: str = "heatmaps"
    onnx_file: str = ""
    onnx_sha256: str = ""
    manifest: dict = Field(default_factory=dict)
    built_at: str = ""


def sidecar_path(engine_path: Path) -> Path:
    """The sidecar JSON of an engine: same name, ``.json`` suffix."""
    return Path(engine_path).with_suffix(".json")


def read_sidecar(engine_path: Path) -> EngineSidecar:
    """Load and validate an engine's sidecar; BackendError when missing or unreadable."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        raise BackendError(
            f"{engine_path}: no sidecar {path.name} beside it (it records the TensorRT version and GPU the engine "
            "was built for); rebuild the engine with `facealign export --to trt`"
        )
    try:
        return EngineSidecar.model_validate_json(path.read_text())
    except (ValidationError, ValueError) as exc:
        raise BackendError(f"{path}: invalid engine sidecar ({exc})") from exc


def check_sidecar(sidecar: dict, runtime: dict, manifest: dict | None = None) -> None:
    """Refuse an engine built for another TensorRT version or GPU, or for other weights.

    ``sidecar`` and ``runtime`` hold ``tensorrt_version``, ``gpu_name`` and
    ``compute_capability``; ``manifest`` (the model folder's) is compared with the
    one recorded at build time. Pure: no TensorRT or GPU needed. Raises BackendError.
    """
    problems = []
    for key, what in (("tensorrt_version", "TensorRT version"), ("compute_capability", "GPU compute capability"),
                      ("gpu_name", "GPU")):
        built, here = str(sidecar.get(key, "")), str(runtime.get(key, ""))
        if built != here:
            problems.append(f"{what}: engine built with {built or 'unknown'}, running with {here or 'unknown'}")
    if manifest is not None and sidecar.get("manifest"):
        recorded = sidecar["manifest"]
        for key in ("weights_sha256", "num_landmarks", "input_size", "heatmap_size"):
            if key in recorded and key in manifest and recorded[key] != manifest[key]:
                problems.append(f"{key}: engine built for {recorded[key]!r}, model folder has {manifest[key]!r}")
    if problems:
        raise BackendError(
            "TensorRT engine does not match this machine or model (engines are not portable): "
            + "; ".join(problems)
            + ". Rebuild it here: facealign export --model <folder> --to trt (or use backend='ort')"
        )


def import_tensorrt():
    """The ``tensorrt`` module, or BackendError with the install hint."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendError(f"the trt backend needs TensorRT: {INSTALL_HINT}") from exc
    return tensorrt


def gpu_info(device: int = 0) -> dict[str, str]:
    """Name and compute capability of a CUDA GPU (via PyTorch); BackendError without one."""
    try:
        import torch
    except ImportError as exc:
        raise BackendError(f"the trt backend uses PyTorch for GPU memory: {INSTALL_HINT}") from exc
    if not torch.cuda.is_available():
        raise BackendError("the trt backend needs a CUDA GPU, and PyTorch sees none (CPU-only torch build?)")
    major, minor = torch.cuda.get_device_capability(device)
    return {"gpu_name": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


def runtime_info() -> dict[str, str]:
    """TensorRT version + GPU of this machine, in the sidecar's terms."""
    trt = import_tensorrt()
    return {"tensorrt_version": trt.__version__, **gpu_info()}


class TrtBackend:
    """Runs a TensorRT engine on the GPU; batches larger than the profile's maximum are split."""

    name = "trt"

    def __init__(self, engine_path: Path, manifest: Manifest) -> None:
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise BackendError(f"TensorRT engine not found: {engine_path}")
        trt = import_tensorrt()
        self.sidecar = read_sidecar(engine_path)
        check_sidecar(self.sidecar.model_dump(), runtime_info(), manifest.model_dump())
        import torch

        self._torch, self._trt = torch, trt
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
        if self.engine is None:
            raise BackendError(f"{engine_path}: TensorRT cannot deserialise it (corrupt, or built by another version)")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"{engine_path}: cannot create a TensorRT execution context (out of GPU memory?)")
        self.input_name, self.output_name = self._io_names()
        self.input_dtype = self._torch_dtype(self.input_name)
        self.output_dtype = self._torch_dtype(self.output_name)
        self.max_batch = self._max_batch()
        self.input_size = manifest.input_size
        self.num_landmarks = manifest.num_landmarks
        self.device = torch.device("cuda")
        self.engine_path = engine_path

    def _io_names(self) -> tuple[str, str]:
        trt = self._trt
        inputs, outputs = [], []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            (inputs if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(name)
        if len(inputs) != 1 or len(outputs) != 1:
            raise BackendError(f"engine must have one input and one output, has inputs {inputs} and outputs {outputs}")
        return inputs[0], outputs[0]

    def _torch_dtype(self, name: str):
        trt, torch = self._trt, self._torch
        dtype = self.engine.get_tensor_dtype(name)
        mapping = {trt.DataType.FLOAT: torch.float32, trt.DataType.HALF: torch.float16}
        if dtype not in mapping:
            raise BackendError(f"engine tensor {name!r} has unsupported type {dtype}")
        return mapping[dtype]

    def _max_batch(self) -> int:
        try:
            shapes = self.engine.get_tensor_profile_shape(self.input_name, 0)  # [min, opt, max]
            return int(shapes[2][0])
        except Exception:  # older/newer bindings: fall back to what the sidecar recorded
            return self.sidecar.profile.max

    def _run_chunk(self, chunk: np.ndarray) -> np.ndarray:
        torch = self._torch
        x = torch.from_numpy(chunk).to(self.device, self.input_dtype, non_blocking=False).contiguous()
        if not self.context.set_input_shape(self.input_name, tuple(x.shape)):
            raise BackendError(f"batch of {len(chunk)} is outside the engine's profile {self.sidecar.profile}")
        out_shape = tuple(self.context.get_tensor_shape(self.output_name))
        y = torch.empty(out_shape, dtype=self.output_dtype, device=self.device)
        self.context.set_tensor_address(self.input_name, x.data_ptr())
        self.context.set_tensor_address(self.output_name, y.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise BackendError("TensorRT inference failed (execute_async_v3 returned False)")
        stream.synchronize()
        return y.float().cpu().numpy()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 -> (N, L, H, W) float32 heatmaps, in chunks of at most the profile's max batch."""
        x = check_batch(batch, self.input_size)
        return np.concatenate([self._run_chunk(x[i : i + self.max_batch]) for i in range(0, len(x), self.max_batch)])


def write_sidecar(engine_path: Path, sidecar: EngineSidecar) -> Path:
    """Write ``sidecar`` beside ``engine_path``."""
    path = sidecar_path(engine_path)
    path.write_text(json.dumps(sidecar.model_dump(), indent=2) + "\n")
    return path
