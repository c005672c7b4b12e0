"""The one backend interface: ``run(batch NCHW float32) -> heatmaps NxLxHxW float32``, and what backends share."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import InputError

INPUT_NAME = "image"  # the input of every exported graph and engine (export.onnx)
DEVICES = ("auto", "cpu", "cuda", "tensorrt")  # "cuda" and "tensorrt" also as "cuda:N" / "tensorrt:N"; "gpu" = "cuda"
GPU_DEVICES = ("cuda", "tensorrt")


class BackendError(InputError, RuntimeError):
    """A backend that cannot be created or run with what was asked for (a device, a runtime that is not
    installed); the message says what to install or fix. An input error: exit 2 in the CLI."""


@runtime_checkable
class Backend(Protocol):
    """An inference engine for one landmark model."""

    name: str  # e.g. "ort:CPUExecutionProvider", "torch:cpu", "trt"
    num_landmarks: int

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(N, 3, S, S) float32 RGB in [0, 1] -> (N, L, H, W) float32 heatmaps."""
        ...


def check_batch(batch: np.ndarray, input_size: int) -> np.ndarray:
    """Validate and make contiguous float32 an input batch."""
    arr = np.asarray(batch)
    if arr.ndim != 4 or arr.shape[1:] != (3, input_size, input_size):
        raise ValueError(f"input batch must be (N, 3, {input_size}, {input_size}), got {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("input batch is empty")
    return np.ascontiguousarray(arr, dtype=np.float32)


def parse_device(device: str) -> tuple[str, int]:
    """``"cuda:1"`` -> ("cuda", 1); ``"gpu"`` is ``"cuda"`` (an explicit GPU: never a silent CPU run);
    BackendError for anything not in :data:`DEVICES`."""
    kind, _, index = str(device).strip().lower().partition(":")
    kind = "cuda" if kind == "gpu" else kind
    if kind not in DEVICES or (index and (kind not in GPU_DEVICES or not index.isdigit())):
        raise BackendError(f"unknown device {device!r}: use auto, cpu, cuda, cuda:N or tensorrt (ONNX Runtime's "
                           "TensorRT provider)")
    return kind, int(index or 0)


Outputs = np.ndarray | tuple[np.ndarray, ...]


class ProfileBatcher:
    """Runs batches of any size through ``execute``, which accepts only ``min_batch`` to ``max_batch`` items.

    A TensorRT optimisation profile fixes that range: a larger batch is split, and a chunk below the
    minimum (a single face, or the last chunk) is padded by repeating its last item, whose outputs
    are then dropped. With ``serialize`` one call runs at a time: a TensorRT execution context, with
    its stream and bound buffers, serves one caller at a time.
    """

    def __init__(self, execute: Callable[[np.ndarray], Outputs], min_batch: int = 1, max_batch: int | None = None,
                 serialize: bool = True) -> None:
        if min_batch < 1 or (max_batch is not None and max_batch < min_batch):
            raise BackendError(f"invalid batch range {min_batch}..{max_batch} (need 1 <= min <= max)")
        self.execute = execute
        self.min_batch = min_batch
        self.max_batch = max_batch
        self._lock = threading.Lock() if serialize else None

    def _call(self, chunk: np.ndarray) -> Outputs:
        if self._lock is None:
            return self.execute(chunk)
        with self._lock:
            return self.execute(chunk)

    def run(self, batch: np.ndarray) -> Outputs:
        """Outputs for every item of ``batch`` (N, ...), in order; a tuple when ``execute`` returns one."""
        step = self.max_batch or len(batch)
        parts = []
        for start in range(0, len(batch), step):
            chunk = batch[start : start + step]
            real = len(chunk)
            if real < self.min_batch:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.min_batch - real, axis=0)])
            out = self._call(chunk)
            parts.append(tuple(o[:real] for o in out) if isinstance(out, tuple) else out[:real])
        if isinstance(parts[0], tuple):
            return tuple(np.concatenate(p) for p in zip(*parts))
        return parts[0] if len(parts) == 1 else np.concatenate(parts)
