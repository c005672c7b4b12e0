"""PyTorch backend: the reference implementation and the fallback (CPU or CUDA, fp32 or fp16)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..model import WEIGHTS, Manifest, ModelError, sha256
from .base import BackendError, check_batch


def load_network(model_dir: Path, manifest: Manifest, verify: bool = True):
    """The LandmarkNet of a model folder with its safetensors weights (fp32, eval mode)."""
    try:
        import torch
        from safetensors.torch import load_file
    except ImportError as exc:
        raise BackendError("the torch backend needs PyTorch: pip install torch==2.13.0 (or 'facealign-sdk[torch]')") from exc
    from ..nets import LandmarkNet, NetConfig

    path = model_dir / WEIGHTS
    if not path.is_file():
        raise ModelError(f"{model_dir}: weights file {WEIGHTS} is missing")
    if verify and manifest.weights_sha256 and sha256(path) != manifest.weights_sha256:
        raise ModelError(f"{path}: sha256 does not match the manifest (corrupt or replaced weights)")
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types for bad files
        raise ModelError(f"{path}: cannot read weights ({exc})") from exc
    net = LandmarkNet(NetConfig(**manifest.net))
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()})
    except RuntimeError as exc:
        raise ModelError(f"{path}: weights do not fit the manifest's network ({str(exc).splitlines()[0]})") from exc
    return net.eval()


def torch_gpu_status() -> str:
    """Why PyTorch cannot use a GPU here, in one phrase (for error messages)."""
    try:
        import torch
    except ImportError:
        return "PyTorch is not installed"
    build = f"a CUDA {torch.version.cuda} build" if torch.version.cuda else "a CPU-only build"
    return f"PyTorch {torch.__version__} ({build}) sees no CUDA device"


class TorchBackend:
    """Runs the PyTorch network; ``device`` is "cpu", "cuda" or "cuda:N"."""

    def __init__(self, model_dir: Path, manifest: Manifest, device: str = "cpu", half: bool = False) -> None:
        import torch

        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"device={device!r}: no usable GPU: {torch_gpu_status()}; use device='cpu'")
        if half and not device.startswith("cuda"):
            raise BackendError("fp16 (half=True) is only supported on CUDA in the torch backend")
        self._torch = torch
        self.net = load_network(model_dir, manifest).to(device)
        self.dtype = torch.float16 if half else torch.float32
        if half:
            self.net.half()
        self.device = device
        self.input_size = manifest.input_size
        self.num_landmarks = manifest.num_landmarks
        self.name = f"torch:{device}" + (":fp16" if half else "")

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = self._torch.from_numpy(check_batch(batch, self.input_size)).to(self.device, self.dtype)
        with self._torch.inference_mode():
            return self.net(x).float().cpu().numpy()
