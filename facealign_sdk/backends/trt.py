"""TensorRT backend: runs a serialized engine built by ``facealign export --to trt``.

Engines are not portable: one runs only with the TensorRT version and on the GPU
model it was built with, so their file names say both
(``model_fp16_b1-8-64_trt10.13.0.35_sm90_nvidia-h200.engine``). The JSON sidecar
beside each engine (``<engine>.json``) records them, with the weights it was built
from; :func:`check_sidecar` refuses a mismatch before TensorRT is asked to
deserialise it, and :func:`select_engine` picks the engine that fits. An engine
without a sidecar (``trtexec``) is accepted with a warning. GPU memory is handled
with PyTorch CUDA tensors.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from ..model import Manifest, ModelError
from ..outputs import write_file_atomic
from .base import BackendError, ProfileBatcher, check_batch

log = logging.getLogger("facealign_sdk")

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
    """The sidecar JSON of an engine: its file name with ``.json`` appended (``x.engine`` -> ``x.engine.json``)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_sidecar(engine_path: Path) -> EngineSidecar | None:
    """An engine's sidecar, or None when it has none (an engine built with trtexec); BackendError when unreadable."""
    path = sidecar_path(engine_path)
    if not path.is_file():
        return None
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


_LOGGER = None


def trt_logger(trt):
    """The process's one TensorRT logger, shared by builder and runtimes (TensorRT keeps the first it is given)."""
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = trt.Logger(trt.Logger.WARNING)
    return _LOGGER


def gpu_info(device: int = 0) -> dict[str, str]:
    """Name and compute capability of a CUDA GPU (via PyTorch); BackendError without one."""
    try:
        import torch
    except ImportError as exc:
        raise BackendError(f"the trt backend uses PyTorch for GPU memory: {INSTALL_HINT}") from exc
    if not torch.cuda.is_available():
        raise BackendError(f"the trt backend needs a CUDA GPU, and PyTorch {torch.__version__} sees none "
                           "(no NVIDIA driver, or a CPU-only torch build)")
    major, minor = torch.cuda.get_device_capability(device)
    return {"gpu_name": torch.cuda.get_device_name(device), "compute_capability": f"{major}.{minor}"}


def runtime_info(device: int = 0) -> dict[str, str]:
    """TensorRT version + GPU ``device`` of this machine, in the sidecar's terms."""
    trt = import_tensorrt()
    return {"tensorrt_version": trt.__version__, **gpu_info(device)}


def runtime_tag(runtime: dict[str, str]) -> str:
    """What an engine file name says about where it runs, e.g. ``trt10.13.0.35_sm90_nvidia-h200``."""
    gpu = re.sub(r"[^a-z0-9]+", "-", runtime["gpu_name"].lower()).strip("-")
    return f"trt{runtime['tensorrt_version']}_sm{runtime['compute_capability'].replace('.', '')}_{gpu}"


def list_engines(model_dir: Path) -> list[Path]:
    """The folder's ``*.engine`` files, by name; ModelError when there are none."""
    engines = sorted(Path(model_dir).glob("*.engine"))
    if not engines:
        raise ModelError(f"{model_dir}: no TensorRT engine (.engine); build one with facealign export --to trt")
    return engines


def select_engine(engines: list[Path], runtime: dict[str, str], manifest: dict | None = None) -> Path:
    """The engine to run here, the same one every time.

    Engines whose sidecar matches this machine (TensorRT version, GPU) and ``manifest`` come first;
    among them the most recently built (then the last by name). Failing those, the first engine
    without a sidecar by name (TensorRT checks it when deserialising). BackendError when every
    engine was built for another machine or model, with each one's reason.
    """
    matching, unknown, refused = [], [], []
    for path in sorted(engines):
        try:
            sidecar = read_sidecar(path)
            if sidecar is None:
                unknown.append(path)
                continue
            check_sidecar(sidecar.model_dump(), runtime, manifest)
            matching.append((sidecar.built_at, path.name, path))
        except BackendError as exc:
            refused.append(f"{path.name}: {exc}")
    if matching:
        return max(matching)[2]
    if unknown:
        return unknown[0]
    raise BackendError("no TensorRT engine here fits this machine or model: " + " | ".join(refused))


def profile_batch_range(engine, input_name: str) -> tuple[int, int]:
    """(min, max) batch of the engine's first optimisation profile (a static batch: that batch twice)."""
    batch = int(engine.get_tensor_shape(input_name)[0])
    if batch > 0:
        return batch, batch
    shapes = engine.get_tensor_profile_shape(input_name, 0)  # [min, opt, max]
    return int(shapes[0][0]), int(shapes[2][0])


class TrtBackend:
    """Runs a TensorRT engine on the GPU.

    Batches outside the profile's range are split or padded (:class:`ProfileBatcher`); one thread
    at a time uses the execution context, on the backend's own CUDA stream (TensorRT's
    ``enqueueV3`` synchronises more on the default stream).
    """

    name = "trt"

    def __init__(self, engine_path: Path, manifest: Manifest, device_index: int = 0) -> None:
        engine_path = Path(engine_path)
        if not engine_path.is_file():
            raise BackendError(f"TensorRT engine not found: {engine_path}")
        trt = import_tensorrt()
        runtime = runtime_info(device_index)
        self.sidecar = read_sidecar(engine_path)
        if self.sidecar is None:
            log.warning("%s has no sidecar %s (built with trtexec?): its TensorRT version, GPU and weights cannot be "
                        "checked; TensorRT refuses it if it was built for another version or GPU",
                        engine_path, sidecar_path(engine_path).name)
        else:
            check_sidecar(self.sidecar.model_dump(), runtime, manifest.model_dump())
        import torch

        self._torch, self._trt = torch, trt
        self.device = torch.device("cuda", device_index)
        with torch.cuda.device(self.device):  # TensorRT works on the current CUDA device
            self._runtime = trt.Runtime(trt_logger(trt))
            self.engine = self._runtime.deserialize_cuda_engine(engine_path.read_bytes())
            if self.engine is None:
                raise BackendError(f"{engine_path}: TensorRT {trt.__version__} cannot deserialise it (corrupt, or built "
                                   "by another TensorRT version or for another GPU); rebuild it: facealign export --to trt")
            self.context = self.engine.create_execution_context()
        if self.context is None:
            raise BackendError(f"{engine_path}: cannot create a TensorRT execution context (out of GPU memory?)")
        self.input_name, self.output_name = self._io_names()
        self.input_dtype = self._torch_dtype(self.input_name)
        self.output_dtype = self._torch_dtype(self.output_name)
        self.min_batch, self.max_batch = profile_batch_range(self.engine, self.input_name)
        self.stream = torch.cuda.Stream(device=self.device)
        self._batcher = ProfileBatcher(self._execute, self.min_batch, self.max_batch, serialize=True)
        self.input_size = manifest.input_size
        self.num_landmarks = manifest.num_landmarks
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

    def _execute(self, chunk: np.ndarray) -> np.ndarray:
        """One profile-sized chunk: copy in, execute and copy out, all on this backend's stream."""
        torch = self._torch
        with torch.cuda.device(self.device), torch.cuda.stream(self.stream):
            x = torch.from_numpy(chunk).to(self.device).to(self.input_dtype).contiguous()
            if not self.context.set_input_shape(self.input_name, tuple(x.shape)):
                raise BackendError(f"batch of {len(chunk)} is outside the engine's profile "
                                   f"{self.min_batch}..{self.max_batch}")
            y = torch.empty(tuple(self.context.get_tensor_shape(self.output_name)), dtype=self.output_dtype,
                            device=self.device)
            self.context.set_tensor_address(self.input_name, x.data_ptr())
            self.context.set_tensor_address(self.output_name, y.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise BackendError("TensorRT inference failed (execute_async_v3 returned False)")
            out = y.float().cpu()  # waits for this stream only
        return out.numpy()

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 -> (N, L, H, W) float32 heatmaps, any N."""
        return self._batcher.run(check_batch(batch, self.input_size))


def write_sidecar(engine_path: Path, sidecar: EngineSidecar) -> Path:
    """Write ``sidecar`` beside ``engine_path``."""
    path = sidecar_path(engine_path)
    write_file_atomic(path, json.dumps(sidecar.model_dump(), indent=2) + "\n")
    return path
