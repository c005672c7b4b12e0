"""The one backend interface: ``run(batch NCHW float32) -> heatmaps NxLxHxW float32``."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


class BackendError(RuntimeError):
    """A backend that cannot be created or run; the message says what to install or fix."""


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
