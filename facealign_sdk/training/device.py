"""The torch device a training stage runs on, checked before any work."""

from __future__ import annotations

import torch

from ..model import ModelError


def training_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N``; a CUDA device that this torch cannot use is an error, not a CPU run."""
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ModelError(f"device {name!r}: {exc}") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ModelError(f"device {name!r}: this PyTorch ({torch.__version__}) sees no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ModelError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    elif device.type != "cpu":
        raise ModelError(f"device {name!r}: training runs on 'cpu' or 'cuda[:N]'")
    return device
