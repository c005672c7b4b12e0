"""Annotation conventions: where a model's points sit, on average, relative to one data set's annotators.

Data sets place some of the 68 points differently (ytf68's nose and mouth sit lower than 300-W's, AFLW2000-3D's
jaw follows the 3-D contour). A model trained on several learns a compromise that is biased for each. A
convention is the mean offset, per landmark, from the model's points to one set's annotations, measured in
the model's crop (fractions of the crop side, so it holds at any input size) on that set's training faces:
``Manifest.conventions`` stores them and the runtime adds the chosen one (``Aligner(convention=...)``);
training can shift a set's targets into another set's convention (``DataSource.convention``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, ValidationError
from tqdm import tqdm

from .. import geometry
from ..detectors.base import Detection
from ..errors import InputError
from ..evaluate import load_points, select_images
from ..imageio import read_image
from ..metrics import nme
from ..model import (MANIFEST, NETWORK_CONVENTION, Manifest, ModelError, describe_validation_error, load_manifest,
                     manifest_json, write_manifest)
from ..outputs import write_file_atomic
from ..pts import check_points_in_image
from .data import is_held_out


class ModelIdentity(BaseModel):
    """Which model a conventions file was fitted on: its manifest's name and weights hash."""

    name: str
    weights_sha256: str

    @classmethod
    def of(cls, manifest: Manifest) -> "ModelIdentity":
        """The identity of the model ``manifest`` describes."""
        return cls(name=manifest.name, weights_sha256=manifest.weights_sha256)

    def __str__(self) -> str:
        return f"{self.name} (weights {self.weights_sha256[:12] or 'unhashed'})"


class FittedConvention(BaseModel):
    """One fitted convention and what it does on the faces it was fitted on (fixed boxes)."""

    name: str
    model: ModelIdentity | None = Field(None, description="the model whose points the offsets start from (None: "
                                        "not recorded, a file fitted before it was)")
    folder: str
    faces: int
    offsets: list[tuple[float, float]] = Field(description="per landmark (dx, dy), fractions of the crop side")
    nme_without: float = Field(description="NME % of the model's raw points on these faces")
    nme_with: float = Field(description="NME % with the offsets added")
    flip_offsets: list[tuple[float, float]] | None = Field(
        None, description="the same fitted on flip-averaged points (Aligner(flip=True)); None: not fitted")
    nme_with_flip: float | None = Field(None, description="NME % of the flip-averaged points with flip_offsets added")


def fitting_images(folder: str | Path, held_out: float | None = None) -> list[Path]:
    """The images of ``folder`` a convention is fitted on (those :func:`is_held_out` does not set aside);
    InputError when there are none."""
    paths = [p for p in select_images(folder) if held_out is None or not is_held_out(p, held_out)]
    if not paths:
        raise InputError(f"{folder}: no annotated images to fit a convention on (held_out {held_out})")
    return paths


def crop_points(aligner, folder: str | Path, held_out: float | None = None, progress: bool = True
                ) -> tuple[np.ndarray, np.ndarray]:
    """The model's points and the annotations, (N, L, 2) each, in crop fractions of each face's crop,
    for the faces of ``folder`` not held out (``held_out``: the fraction :func:`is_held_out` sets aside),
    each run in the crop of the box derived from its annotation (no detector: no misses, the training crop)."""
    landmarker = aligner.landmarker
    if landmarker.convention is not None:
        # offsets are stored from the network's points: measured from a convention's, they would be off by it
        raise InputError(f"the aligner adds convention {landmarker.convention!r}: fit on the network's own points, "
                         f"Aligner(..., convention={NETWORK_CONVENTION!r})")
    size = landmarker.manifest.input_size
    paths = fitting_images(folder, held_out)
    predicted, annotated = [], []
    for path in tqdm(paths, desc=f"fitting {Path(folder).name}", leave=False, disable=not progress):
        image, points = read_image(path), load_points(path, landmarker.num_landmarks)
        check_points_in_image(points, image, path)  # one face cut at the wrong place would move every mean offset
        frame = landmarker.frame_for(Detection(box=geometry.box_from_points(points)))
        (found,), _ = landmarker.landmarks_in_frames([(image, frame)])
        predicted.append(geometry.image_to_crop(found, frame, size) / size)
        annotated.append(geometry.image_to_crop(points, frame, size) / size)
    return np.asarray(predicted), np.asarray(annotated)


def _rounded(offsets: np.ndarray) -> list[tuple[float, float]]:
    # a millionth of the crop side is far below any annotation's precision
    return [(round(float(x), 6), round(float(y), 6)) for x, y in offsets]


def fit_convention(aligner, name: str, folder: str | Path, held_out: float | None = None,
                   progress: bool = True, flip_aligner=None) -> FittedConvention:
    """The mean offset from the model's points to ``folder``'s annotations (faces not held out); with
    ``flip_aligner`` (the same model with ``flip=True``) also the offset from its flip-averaged points."""
    model = ModelIdentity.of(aligner.landmarker.manifest)
    if flip_aligner is not None:
        flip_model = ModelIdentity.of(flip_aligner.landmarker.manifest)
        if not flip_aligner.flip or flip_model != model:  # its offsets would be stored as this model's flip offsets
            raise InputError(f"flip_aligner must be {model} with flip=True, got {flip_model} with "
                             f"flip={flip_aligner.flip}")
    predicted, annotated = crop_points(aligner, folder, held_out, progress)
    offsets = (annotated - predicted).mean(axis=0)
    eyes = aligner.landmarker.scheme.outer_eye_corners

    def nme_pct(points: np.ndarray) -> float:
        return 100 * float(nme(points, annotated, eyes).mean())

    fitted = FittedConvention(name=name, model=model, folder=str(folder),
                              faces=len(predicted), offsets=_rounded(offsets), nme_without=nme_pct(predicted),
                              nme_with=nme_pct(predicted + offsets))
    if flip_aligner is not None:
        flipped, _ = crop_points(flip_aligner, folder, held_out, progress)
        flip_offsets = (annotated - flipped).mean(axis=0)
        fitted.flip_offsets, fitted.nme_with_flip = _rounded(flip_offsets), nme_pct(flipped + flip_offsets)
    return fitted


def shift_to(points: np.ndarray, source: Sequence[Sequence[float]], target: Sequence[Sequence[float]]) -> np.ndarray:
    """Image points annotated in the ``source`` convention moved into the ``target`` one: by ``target - source``
    (both offsets of the same model) in the face's training crop (the box derived from the points)."""
    frame = geometry.frame_from_box(geometry.box_from_points(points))
    size = 1000  # any: offsets are fractions of the crop side
    shift = (np.asarray(target, np.float64) - np.asarray(source, np.float64)) * size
    return geometry.crop_to_image(geometry.image_to_crop(points, frame, size) + shift, frame, size)


def write_conventions(fitted: Sequence[FittedConvention], model_dir: Path | None = None, json_path: Path | None = None,
                      default: str | None = None) -> None:
    """Write fitted conventions as a conventions file (``json_path``: a training run's ``conventions``) and / or
    into ``model_dir``'s manifest (a fitted convention replaces the one of its name, the others stay: refitting
    one set must not drop the rest or the default; ``default`` becomes its default convention). A convention
    refitted without flip offsets loses those it had: they were fitted with the offsets they replace."""
    if json_path is not None:
        write_file_atomic(Path(json_path), manifest_json({f.name: f.model_dump(mode="json") for f in fitted}))
    if model_dir is None:
        return
    path = Path(model_dir) / MANIFEST
    manifest = load_manifest(Path(model_dir))
    conventions = {**manifest.conventions, **{f.name: [tuple(xy) for xy in f.offsets] for f in fitted}}
    flip_conventions = {name: offsets for name, offsets in manifest.flip_conventions.items()
                        if name not in {f.name for f in fitted}}
    flip_conventions |= {f.name: [tuple(xy) for xy in f.flip_offsets] for f in fitted if f.flip_offsets is not None}
    default = default if default is not None else manifest.default_convention
    try:
        updated = manifest.model_copy(update={"conventions": conventions, "flip_conventions": flip_conventions,
                                              "default_convention": default})
        Manifest.model_validate(updated.model_dump())
    except ValidationError as exc:
        raise ModelError(f"{path}: the fitted conventions do not fit the manifest ({describe_validation_error(exc)})") from None
    write_manifest(Path(model_dir), updated)
