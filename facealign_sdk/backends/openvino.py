"""OpenVINO backend (CPU): runs the exported ``model.onnx`` (or ``model_int8.onnx``) unchanged.

Optional extra ``[openvino]``. Inference precision is forced to fp32: OpenVINO's CPU plugin defaults to
bf16 on CPUs with AMX / AVX512-BF16, which moves landmarks by tenths of a pixel. Each thread gets its
own infer request (a compiled model serves several requests at once; one request serves one caller), so
a backend may be shared by threads like the ONNX Runtime one.
"""

from __future__ import annotations

import functools

import threading
from pathlib import Path

import numpy as np

from .base import BackendError, check_batch
from .ort import env_threads

DEVICE = "CPU"


def openvino_version() -> str:
    """The installed OpenVINO runtime's version; BackendError when it cannot be imported."""
    try:
        import openvino
    except Exception as exc:  # a broken install raises anything from ImportError to RuntimeError
        raise BackendError(f"the openvino backend needs a working OpenVINO: pip install 'facealign-sdk[openvino]' "
                           f"({type(exc).__name__}: {exc})") from exc
    return str(openvino.__version__)


@functools.lru_cache(maxsize=1)
def _core():
    """One OpenVINO Core per process: a Core per backend loads and unloads the CPU plugin each time, and a
    process that had unloaded it crashed (segfault) on a later SIGINT in the test suite."""
    import openvino as ov

    return ov.Core()


class OpenVinoBackend:
    """Runs an ONNX landmark model with OpenVINO on the CPU, fp32."""

    def __init__(self, onnx_path: Path, input_size: int = 256, threads: int | None = None) -> None:
        openvino_version()
        if not Path(onnx_path).is_file():
            raise BackendError(f"ONNX model not found: {onnx_path}")
        config: dict[str, str] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        threads = threads or env_threads()
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        try:
            core = _core()
            self.compiled = core.compile_model(core.read_model(str(onnx_path)), DEVICE, config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise BackendError(f"{onnx_path}: OpenVINO cannot load it ({exc})") from exc
        outputs = self.compiled.outputs
        shape = outputs[0].get_partial_shape()
        if len(outputs) != 1 or shape.rank.get_length() != 4:
            raise BackendError(f"{onnx_path}: the openvino backend runs heatmap graphs (one (N, L, H, W) output), "
                               f"this one has {len(outputs)} output(s), the first of shape {shape}")
        self.num_landmarks = int(shape[1].get_length())
        self.input_size = input_size
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        if self.precision != "f32":  # an int8 graph still runs its float parts in fp32
            raise BackendError(f"OpenVINO compiled {onnx_path} for {self.precision} inference, not the f32 asked for")
        self.name = f"openvino:{DEVICE}"
        self._local = threading.local()

    def _request(self):
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self.compiled.create_infer_request()
        return request

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 RGB in [0, 1] -> (N, L, H, W) float32 heatmaps."""
        request = self._request()
        request.infer([check_batch(batch, self.input_size)])
        # the output tensor is the request's own buffer, overwritten by its next run
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)
