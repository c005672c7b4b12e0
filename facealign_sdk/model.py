"""Released model folders: ``models/<name>/`` with weights, ``manifest.json`` and ``CARD.md``.

A folder holds ``model.safetensors`` (PyTorch weights) and, once exported,
``model.onnx`` (+ ``model_int8.onnx``; ``model_fp16.onnx`` and ``*.engine`` for GPUs,
written by ``facealign export`` where they are used). The manifest says how to feed the
network and how to read its output.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from . import geometry
from .codec import CodecSpec, HeatmapCodec
from .detectors.calibration import YUNET
from .errors import InputError
from .resources import models_root

log = logging.getLogger("facealign_sdk")
DEFAULT_MODEL = "fabrec-scaf-w32"
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"


class ModelError(InputError):
    """A model folder or file that cannot be used; the message says what is wrong."""


# Manifests are read strictly: a misspelt key is an error (not silently ignored), numbers must be
# finite (no NaN / Infinity tokens) and within these sizes, which every real model is far from.
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)
MAX_INPUT_SIZE = 2048
MAX_LANDMARKS = 1000
# architecture numbers of `net` that set tensor sizes: an absurd one would allocate gigabytes
NET_LIMITS = {"width": 1024, "z_dim": 4096, "num_itl": 16}


class CropSpec(BaseModel):
    """How a detector box becomes the network's crop (see :mod:`facealign_sdk.geometry`)."""

    model_config = STRICT

    crop_scale: float = Field(geometry.CROP_SCALE, gt=0, le=10, description="crop side / box size")
    center_shift: float = Field(geometry.CENTER_SHIFT, ge=-1, le=1, description="crop centre below the box centre, in box sizes")
    use_roll: bool = True
    detector: str = Field(YUNET.detector, min_length=1, description="the detector whose boxes the model was trained "
                          "for (facealign_sdk.detectors.calibration); another detector's boxes give other crops")


# Aligner(convention=NETWORK_CONVENTION): the network's points, no convention's offsets
NETWORK_CONVENTION = "none"


class Manifest(BaseModel):
    """Everything a runtime needs to know about a model."""

    model_config = STRICT

    name: str = Field(min_length=1)
    architecture: str = "3fabrec-scaf"
    net: dict = Field(description="NetConfig of the network (facealign_sdk.nets.NetConfig)")
    num_landmarks: int = Field(ge=1, le=MAX_LANDMARKS)
    landmark_scheme: str = "ibug68"
    input_size: int = Field(256, ge=16, le=MAX_INPUT_SIZE)
    heatmap_size: int = Field(128, ge=4, le=MAX_INPUT_SIZE)
    input_format: str = "RGB float32 in [0, 1], NCHW; mean/std are subtracted inside the network"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop: CropSpec = Field(default_factory=CropSpec)
    codec: CodecSpec = Field(default_factory=CodecSpec, description="heatmap encoding / decoding parameters "
                             "(facealign_sdk.codec); a manifest without them gets the values of every released model")
    training_data: list[str] = Field(default_factory=list)
    conventions: dict[str, list[tuple[float, float]]] = Field(
        default_factory=dict, description="annotation conventions the points can follow, by name: per landmark the "
        "mean offset (dx, dy) from the network's points to that data set's annotations, in fractions of the crop "
        "side (facealign_sdk.training.conventions); empty: the network's points as they are")
    default_convention: str | None = Field(None, description="the convention applied unless another is asked for")
    flip_conventions: dict[str, list[tuple[float, float]]] = Field(
        default_factory=dict, description="the same conventions for flip averaging (Aligner(flip=True)), by name: the "
        "mean offset from the flip-averaged points to that set's annotations. A network that is not mirror-symmetric "
        "moves each point by a fixed amount when averaged with its mirror image; these offsets take that out too")
    mirror_symmetric: bool = Field(
        True, description="trained with mirror augmentation; False when trained without it because the annotation "
        "convention is not mirror-symmetric (then flip averaging, Aligner(flip=True), mixes in the mirrored "
        "convention and costs accuracy)")
    confirm_confidence: float | None = Field(
        None, ge=0, le=1, description="the mean landmark confidence below which the video tracker asks the detector to "
        "confirm a face (TrackOptions.confirm_confidence; None: its default). Each network has its own confidence "
        "scale, so each model carries the value that puts the same share of face-free crops below it")
    weights_sha256: str = ""
    artifacts_sha256: dict[str, str] = Field(
        default_factory=dict, description="sha256 of every other file a runtime loads (model.onnx, *.engine, ...), "
        "by file name; written by facealign export, checked before loading")
    licence: str = "research data: non-commercial use only"

    def heatmap_codec(self) -> HeatmapCodec:
        """The model's :class:`~facealign_sdk.codec.HeatmapCodec` (its ``codec`` parameters and sizes)."""
        return HeatmapCodec(**self.codec.model_dump(), input_size=self.input_size, heatmap_size=self.heatmap_size)

    @model_validator(mode="after")
    def _consistent(self) -> Manifest:
        if self.heatmap_size > self.input_size:
            raise ValueError(f"heatmap_size {self.heatmap_size} is larger than input_size {self.input_size}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")
        for key in ("input_size", "heatmap_size", "num_landmarks"):
            if key in self.net and self.net[key] != getattr(self, key):
                raise ValueError(f"{key} {getattr(self, key)!r} disagrees with net.{key} {self.net[key]!r}")
        for key, limit in NET_LIMITS.items():
            value = self.net.get(key, 0)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
                raise ValueError(f"net.{key} must be an integer in [0, {limit}], got {value!r}")
        for name, offsets in self.conventions.items():
            if name == NETWORK_CONVENTION:
                raise ValueError(f"convention name {NETWORK_CONVENTION!r} is reserved for the network's own points")
            self._check_offsets(f"convention {name!r}", offsets)
        for name, offsets in self.flip_conventions.items():
            if name not in self.conventions:
                raise ValueError(f"flip convention {name!r} is not one of the conventions {sorted(self.conventions)}")
            self._check_offsets(f"flip convention {name!r}", offsets)
        if self.default_convention is not None and self.default_convention not in self.conventions:
            raise ValueError(f"default_convention {self.default_convention!r} is not one of the conventions "
                             f"{sorted(self.conventions)}")
        return self

    def _check_offsets(self, what: str, offsets: list[tuple[float, float]]) -> None:
        if len(offsets) != self.num_landmarks:
            raise ValueError(f"{what}: need {self.num_landmarks} (dx, dy) offsets, got {len(offsets)}")
        if np.abs(offsets).max() > 0.5:
            raise ValueError(f"{what}: offsets up to {np.abs(offsets).max():.3g} of the crop side; a convention moves "
                             "points by less than half of it")

    def flip_mixes_conventions(self, convention: str | None) -> bool:
        """True when flip averaging in ``convention`` (a name :meth:`convention_offsets` returned; None: the
        network's own points) mixes in the mirrored convention uncorrected: a network trained without mirror
        augmentation, with no offsets of that convention fitted for flip averaging."""
        return not self.mirror_symmetric and convention not in self.flip_conventions

    def convention_offsets(self, convention: str | None, flip: bool = False) -> tuple[str | None, np.ndarray | None]:
        """The convention to apply (``None``: the default; ``"none"``: the network's points as they are) and its
        (L, 2) offsets in crop fractions, those fitted for flip averaging when ``flip`` and the manifest has them; a
        name the manifest does not have is a ModelError naming the ones it has."""
        name = convention if convention is not None else self.default_convention
        if name is None or name == NETWORK_CONVENTION:
            return None, None
        if name not in self.conventions:
            have = ", ".join(sorted(self.conventions)) or "none"
            raise ModelError(f"model {self.name!r} has no annotation convention {name!r} (it has: {have})")
        offsets = self.flip_conventions.get(name) if flip else None
        return name, np.asarray(offsets if offsets is not None else self.conventions[name], np.float64)


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def resolve_model(model: str | Path | None) -> tuple[Path, Path | None]:
    """The model folder and, when ``model`` names one file of it (``models/x/model_int8.onnx``, or a released
    model's file by name: ``fabrec-scaf-w32/model_int8.onnx``), that artifact."""
    model = model or DEFAULT_MODEL
    root = models_root()
    for path in (Path(model), root / str(model)):
        if path.is_dir():
            return path, None
        if path.is_file():
            return path.parent, path
    for folder in (Path(model).parent, (root / str(model)).parent):
        if str(Path(model).parent) != "." and (folder / MANIFEST).is_file():  # a model folder without that file
            graphs = sorted(p.name for p in folder.iterdir() if p.suffix in (".onnx", ".engine"))
            raise ModelError(f"model {str(model)!r} not found: {folder} has no {Path(model).name} (it has "
                             f"{', '.join(graphs) or 'no graphs'}; `facealign export --model {folder} --to ...` "
                             "writes the others: fp16, int8, decode, trt)")
    released = sorted(p.name for p in root.glob("*") if (p / MANIFEST).exists()) if root.is_dir() else []
    raise ModelError(f"model {str(model)!r} not found (not a folder or file; released models: {released or 'none'})")


def resolve_model_dir(model: str | Path | None) -> Path:
    """A model folder from a path, a released model's name, or a file of either."""
    return resolve_model(model)[0]


def load_manifest(model_dir: Path) -> Manifest:
    """The checked ``manifest.json`` of a model folder (``ModelError`` when missing or invalid)."""
    path = model_dir / MANIFEST
    if not path.is_file():
        raise ModelError(f"{model_dir}: no {MANIFEST} (not a facealign model folder)")
    try:
        return Manifest.model_validate_json(path.read_text())
    except ValidationError as exc:
        raise ModelError(f"{path}: invalid manifest ({describe_validation_error(exc)})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read ({exc})") from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per pydantic error: ``where: what (got value)``, joined with ``; ``."""
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "manifest"
        got = f" (got {err['input']!r:.60})" if err["type"] not in ("missing", "model_type") else ""
        parts.append(f"{where}: {err['msg']}{got}")
    return "; ".join(parts)


def verify_artifact(model_dir: Path, manifest: Manifest, path: Path) -> None:
    """Check a file about to be loaded against the sha256 the manifest records for it: ModelError when it
    differs (corrupt or replaced); a warning when the manifest records none (copied in by hand)."""
    path = Path(path)
    recorded = manifest.artifacts_sha256 if path.resolve().parent == Path(model_dir).resolve() else {}
    expected = manifest.weights_sha256 if path.name == WEIGHTS else recorded.get(path.name)
    if not expected:
        log.warning("%s: the manifest records no sha256 for it; its integrity is not checked (facealign export "
                    "records it)", path)
        return
    if sha256(path) != expected:
        raise ModelError(f"{path}: sha256 does not match the manifest (corrupt or replaced file)")


def record_artifacts(model_dir: Path, paths: list[Path]) -> Manifest:
    """Record the sha256 of ``paths`` (files in ``model_dir``) in its manifest; returns the new manifest."""
    manifest = load_manifest(model_dir)
    hashes = dict(manifest.artifacts_sha256)
    for path in paths:
        hashes[Path(path).name] = sha256(Path(path))
    manifest = manifest.model_copy(update={"artifacts_sha256": dict(sorted(hashes.items()))})
    write_manifest(Path(model_dir), manifest)
    return manifest


# an (x, y) pair that json.dumps spreads over four lines (the conventions' offsets): one line each
_PAIR = re.compile(r"\[\s+(-?[0-9.e+-]+),\s+(-?[0-9.e+-]+)\s+\]")


def manifest_json(data: dict) -> str:
    """The text of a manifest (or a conventions file): indented JSON with each (x, y) pair on one line."""
    return _PAIR.sub(r"[\1, \2]", json.dumps(data, indent=2)) + "\n"


def write_manifest(model_dir: Path, manifest: Manifest) -> Path:
    """Write ``model_dir/manifest.json`` whole or not at all."""
    from .outputs import write_file_atomic

    return write_file_atomic(Path(model_dir) / MANIFEST, manifest_json(manifest.model_dump(mode="json")))
