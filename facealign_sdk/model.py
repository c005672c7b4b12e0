"""Released model folders: ``models/<name>/`` with weights, ``manifest.json`` and ``CARD.md``.

A folder holds ``model.safetensors`` (PyTorch weights) and, once exported,
``model.onnx`` (+ ``model_fp16.onnx``, ``model_int8.onnx``, ``*.engine``). The manifest
says how to feed the network and how to read its output.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from . import geometry
from .errors import InputError

REPO_MODELS = Path(__file__).resolve().parents[1] / "models"  # a checkout (pip install -e .)
WHEEL_MODELS = Path(__file__).resolve().parent / "_models"  # an installed wheel (setup.py copies models/ there)


def models_root() -> Path:
    """The folder of released models: the checkout's ``models/``, else the installed wheel's copy."""
    return REPO_MODELS if REPO_MODELS.is_dir() else WHEEL_MODELS
DEFAULT_MODEL = "fabrec-scaf-w32"
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"


class ModelError(InputError):
    """A model folder or file that cannot be used; the message says what is wrong."""


class CropSpec(BaseModel):
    """How a detector box becomes the network's crop (see :mod:`facealign_sdk.geometry`)."""

    crop_scale: float = geometry.CROP_SCALE
    center_shift: float = geometry.CENTER_SHIFT
    use_roll: bool = True


class Manifest(BaseModel):
    """Everything a runtime needs to know about a model."""

    name: str
    architecture: str = "3fabrec-scaf"
    net: dict = Field(description="NetConfig of the network (facealign_sdk.nets.NetConfig)")
    num_landmarks: int
    landmark_scheme: str = "ibug68"
    input_size: int = 256
    heatmap_size: int = 128
    input_format: str = "RGB float32 in [0, 1], NCHW; mean/std are subtracted inside the network"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop: CropSpec = Field(default_factory=CropSpec)
    training_data: list[str] = Field(default_factory=list)
    mirror_symmetric: bool = Field(
        True, description="trained with mirror augmentation; False when trained without it because the annotation "
        "convention is not mirror-symmetric (then flip averaging, Aligner(flip=True), mixes in the mirrored "
        "convention and costs accuracy)")
    weights_sha256: str = ""
    licence: str = "research data: non-commercial use only"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_model_dir(model: str | Path | None) -> Path:
    """A model folder from a path or a released model's name."""
    model = model or DEFAULT_MODEL
    path = Path(model)
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    root = models_root()
    named = root / str(model)
    if named.is_dir():
        return named
    released = sorted(p.name for p in root.glob("*") if (p / MANIFEST).exists()) if root.is_dir() else []
    raise ModelError(f"model {str(model)!r} not found (not a folder or file; released models: {released or 'none'})")


def load_manifest(model_dir: Path) -> Manifest:
    path = model_dir / MANIFEST
    if not path.is_file():
        raise ModelError(f"{model_dir}: no {MANIFEST} (not a facealign model folder)")
    try:
        return Manifest.model_validate_json(path.read_text())
    except (ValidationError, ValueError) as exc:
        raise ModelError(f"{path}: invalid manifest ({exc})") from exc
