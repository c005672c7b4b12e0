"""Landmark accuracy on folders of images with iBUG ``.pts`` beside them: NME, FR@10, AUC@10, CED.

    facealign eval ../shared/data/ytf68/val ../shared/data/infanface/train --held-out-only 0.25 \\
        --mode both --ced ced.png --json eval.json

Two modes:

* ``end2end``: the face detector finds the face, as a user would run it. The detection that
  matches the ground truth is the one overlapping the box derived from the GT points
  (IoU >= ``MATCH_IOU``) whose centre is nearest that box's centre. A face the detector
  misses is a *detection failure*: its NME is ``inf`` (``null`` in JSON), so it counts as a
  failure in FR and adds nothing to AUC; the reported mean NME is over detected faces only.
* ``fixed``: every face gets the detector-like box derived from its GT points
  (:func:`facealign_sdk.geometry.box_from_points`), so there are no misses.

NME is normalised by the outer-eye-corner distance (points 36 and 45), as in 300-W and 3FabRec.
"""

from __future__ import annotations

import io
import math
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from tqdm import tqdm

from . import geometry, metrics
from .boxes import match_box
from .detectors.base import Detection
from .errors import EvalItemError, InputError, MissingDependencyError
from .imageio import ImageError, list_images
from .outputs import write_file_atomic
from .pts import PtsError, check_points_in_image, read_pts
from .schemes import IBUG68
from .training.data import is_held_out

Mode = Literal["end2end", "fixed"]
MODES: tuple[Mode, ...] = ("end2end", "fixed")
FAILURE_LIMIT = 0.10
# a detection belongs to the annotated face when it overlaps the GT-derived box this much
MATCH_IOU = 0.3
# images whose crops go through the network together
CHUNK = 16
# annotations that cannot be scored: outer eye corners (the NME normaliser) closer than this (px) give
# NMEs of millions of percent
MIN_EYE_DISTANCE_PX = 1.0


# -- result types ---------------------------------------------------------------------------------
class ItemResult(BaseModel):
    """One annotated face: its NME (fraction; ``None`` when the detector missed it)."""

    image: str
    detected: bool
    nme: float | None = None
    confidence: float | None = Field(None, description="the model's mean point confidence on the face")


class Summary(BaseModel):
    """Aggregate numbers of one evaluation (percentages where named ``_pct``)."""

    faces: int
    detected: int
    detection_rate_pct: float
    nme_pct: float = Field(description="mean NME over detected faces, % of the outer-eye-corner distance")
    nme_median_pct: float
    fr_pct: float = Field(description="share of all faces with NME > 10 %; a missed face counts as a failure")
    auc: float = Field(description="AUC of the CED up to 10 % over all faces (a missed face contributes 0)")


class EvalResult(BaseModel):
    """Evaluation of one folder in one mode."""

    folder: str
    mode: Mode
    model: str = ""
    backend: str = ""
    refine: str = ""
    blur: bool = True
    flip: bool = False
    convention: str | None = Field(None, description="annotation convention of the points (None: the network's own)")
    held_out_fraction: float | None = None
    seconds: float = 0.0
    skipped: list[str] = Field(default_factory=list, description="bad items reported and skipped (--skip-bad)")
    summary: Summary
    items: list[ItemResult]

    def errors(self) -> np.ndarray:
        """Per-face NME as an array, ``inf`` for missed faces."""
        return errors_array(self.items)

    @property
    def label(self) -> str:
        """The set's name with its held-out share and the mode, for tables."""
        return f"{set_name(self.folder, self.held_out_fraction)} ({self.mode})"


def set_name(folder: str | Path, held_out: float | None = None) -> str:
    """A short name for a folder: its last two path parts, plus the held-out share if any."""
    name = "/".join(Path(folder).resolve().parts[-2:])
    return f"{name} held-out {held_out:g}" if held_out is not None else name


def errors_array(items: Sequence[ItemResult]) -> np.ndarray:
    """Per-face NMEs, ``inf`` where the face was missed."""
    return np.array([math.inf if it.nme is None else it.nme for it in items], dtype=np.float64)


def summarise(errors: np.ndarray, limit: float = FAILURE_LIMIT) -> Summary:
    """Summary of per-face NMEs where ``inf`` marks a missed face."""
    errs = np.asarray(errors, np.float64)
    found = errs[np.isfinite(errs)]
    n = len(errs)
    return Summary(
        faces=n,
        detected=len(found),
        detection_rate_pct=100.0 * len(found) / n if n else math.nan,
        nme_pct=float(found.mean() * 100) if len(found) else math.nan,
        nme_median_pct=float(np.median(found) * 100) if len(found) else math.nan,
        fr_pct=metrics.failure_rate(errs, limit) * 100 if n else math.nan,
        auc=metrics.auc(errs, limit) if n else math.nan,
    )


# -- inputs -----------------------------------------------------------------------------------------
def parse_folder_spec(spec: str, default_held_out: float | None = None) -> tuple[Path, float | None]:
    """``PATH`` or ``PATH:FRACTION`` (evaluate only the held-out share ``FRACTION`` of that folder)."""
    path, sep, tail = spec.rpartition(":")
    if sep and path and not Path(spec).exists():
        try:
            return Path(path), float(tail)
        except ValueError:
            pass
    return Path(spec), default_held_out


@dataclass
class Sample:
    """An image path and its 0-based GT points."""

    image: Path
    points: np.ndarray


def select_images(folder: str | Path, held_out: float | None = None, limit: int | None = None) -> list[Path]:
    """Images of ``folder``: only the held-out share when ``held_out`` is given, and at most
    ``limit`` of them (evenly spaced through the sorted list, so every identity can show up)."""
    files = list_images(folder)
    if held_out is not None:
        if not 0.0 < held_out <= 1.0:
            raise InputError(f"{folder}: the held-out share (FOLDER:FRACTION or --held-out-only) must be in (0, 1], "
                             f"got {held_out:g}")
        files = [f for f in files if is_held_out(f, held_out)]
        if not files:
            raise FileNotFoundError(f"{folder}: no images in the held-out share {held_out}")
    if limit is not None:
        if limit < 1:
            raise InputError(f"--limit must be >= 1, got {limit}")
        if limit < len(files):
            files = [files[i] for i in np.linspace(0, len(files) - 1, limit).round().astype(int)]
    return files


def load_points(image: Path, num_points: int) -> np.ndarray:
    """GT points of ``image`` from the ``.pts`` beside it (errors name the file)."""
    pts_path = image.with_suffix(".pts")
    if not pts_path.is_file():
        raise FileNotFoundError(f"{image}: no landmark file {pts_path.name} beside it")
    points = read_pts(pts_path, num_points)
    i, j = metrics.OUTER_EYE_CORNERS
    if max(i, j) < len(points):
        dist = float(np.linalg.norm(points[i] - points[j]))
        if dist < MIN_EYE_DISTANCE_PX:
            raise PtsError(f"{pts_path}: outer eye corners (points {i} and {j}) are {dist:.2g} px apart; NME "
                           f"normalises by that distance, so it needs at least {MIN_EYE_DISTANCE_PX:g} px")
    return points


def load_samples(
    files: Sequence[Path], num_points: int, skip_bad: bool = False, skipped: list[str] | None = None
) -> list[Sample]:
    """Read every ``.pts`` up front so that a bad one stops the run before any inference."""
    samples = []
    for f in files:
        try:
            samples.append(Sample(f, load_points(f, num_points)))
        except (PtsError, FileNotFoundError) as exc:
            if not skip_bad:
                raise
            _report_skip(exc, skipped)
    return samples


def _report_skip(exc: Exception, skipped: list[str] | None) -> None:
    print(f"facealign eval: skipping: {exc}", file=sys.stderr)
    if skipped is not None:
        skipped.append(str(exc))


# -- evaluation --------------------------------------------------------------------------------------
def _face_box(aligner, image: np.ndarray, gt: np.ndarray, mode: Mode) -> Detection | None:
    """The face to align: the matched detection (end2end) or the GT-derived box (fixed)."""
    reference = geometry.box_from_points(gt)
    if mode == "fixed":
        return Detection(box=reference, score=1.0)
    dets = aligner.detect(image)
    idx = match_box([d.box for d in dets], reference, MATCH_IOU)
    return None if idx is None else dets[idx]


def _prepare(aligner, sample: Sample, mode: Mode) -> tuple[np.ndarray, Detection | None]:
    """Load one image and find its face; any failure names the image."""
    try:
        image = aligner.load_image(sample.image)
        check_points_in_image(sample.points, image, sample.image)
        return image, _face_box(aligner, image, sample.points, mode)
    except (ImageError, PtsError, FileNotFoundError):
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised with the item's name
        raise EvalItemError(f"{sample.image}: {type(exc).__name__}: {exc}") from exc


def _chunks(seq: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(seq), size):
        yield seq[start : start + size]


def _align_chunk(aligner, chunk: Sequence[tuple[Sample, np.ndarray, Detection]]
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Landmarks and confidences of the chosen faces of a chunk of images, in one batched network call."""
    jobs = [(image, aligner.landmarker.frame_for(det)) for _, image, det in chunk]
    try:
        return aligner.landmarker.landmarks_in_frames(jobs)
    except Exception as exc:  # noqa: BLE001 - re-raised with the items' names
        names = ", ".join(str(s.image) for s, _, _ in chunk)
        raise EvalItemError(f"landmarks failed for one of: {names}: {type(exc).__name__}: {exc}") from exc


def check_scheme(aligner) -> None:
    """NME's normaliser (the outer eye corners) needs the iBUG 68-point scheme."""
    if aligner.num_landmarks != IBUG68.num_points:
        raise InputError(
            f"model has {aligner.num_landmarks} landmarks: NME with the outer-eye-corner normaliser needs "
            f"{IBUG68.num_points}"
        )


def evaluate_samples(
    aligner, samples: Sequence[Sample], mode: Mode, progress: bool = True, skip_bad: bool = False,
    skipped: list[str] | None = None, desc: str = "",
) -> list[ItemResult]:
    """Per-face NME of ``samples`` in one mode (see the module docstring)."""
    if mode not in MODES:
        raise InputError(f"mode must be one of {MODES}, got {mode!r}")
    results: dict[Path, ItemResult] = {}
    bar = tqdm(total=len(samples), desc=desc or mode, unit="img", disable=not progress, leave=False)
    for chunk in _chunks(samples, CHUNK):
        found = []
        for sample in chunk:
            try:
                image, det = _prepare(aligner, sample, mode)
            except (ImageError, PtsError) as exc:
                if not skip_bad:
                    raise
                _report_skip(exc, skipped)
                continue
            if det is None:
                results[sample.image] = ItemResult(image=sample.image.name, detected=False)
            else:
                found.append((sample, image, det))
        for (sample, _, _), pred, conf in zip(found, *(_align_chunk(aligner, found) if found else ([], []))):
            err = float(metrics.nme(pred[None], sample.points[None])[0])
            results[sample.image] = ItemResult(image=sample.image.name, detected=True, nme=err,
                                               confidence=float(np.mean(conf)))
        bar.update(len(chunk))
    bar.close()
    return [results[s.image] for s in samples if s.image in results]


def evaluate_folder(
    aligner, folder: str | Path, mode: Mode = "end2end", held_out: float | None = None,
    limit: int | None = None, progress: bool = True, skip_bad: bool = False,
) -> EvalResult:
    """Evaluate ``aligner`` (a :class:`facealign_sdk.Aligner`) on one folder in one mode.

    >>> result = evaluate_folder(Aligner(), "../shared/data/ytf68/val", "fixed")
    >>> result.summary.nme_pct, result.summary.fr_pct, result.summary.auc
    """
    check_scheme(aligner)
    start = time.perf_counter()
    skipped: list[str] = []
    files = select_images(folder, held_out, limit)
    samples = load_samples(files, aligner.num_landmarks, skip_bad, skipped)
    if not samples:
        raise InputError(f"{folder}: no usable images (all were skipped)")
    items = evaluate_samples(aligner, samples, mode, progress, skip_bad, skipped, f"{set_name(folder)} {mode}")
    return EvalResult(
        folder=str(folder), mode=mode, model=getattr(aligner.manifest, "name", ""),
        backend=aligner.backend_name, refine=aligner.refine, blur=aligner.blur, flip=aligner.flip,
        convention=getattr(aligner, "convention", None),  # duck-typed aligners (tests, wrappers) may lack it
        held_out_fraction=held_out,
        seconds=round(time.perf_counter() - start, 3), skipped=skipped,
        summary=summarise(errors_array(items)), items=items,
    )


# -- reporting ----------------------------------------------------------------------------------------
def format_table(rows: Mapping[str, Summary] | Sequence[EvalResult]) -> str:
    """A markdown table: faces, detected %, NME %, FR@10 %, AUC@10 per folder and mode."""
    pairs = rows.items() if isinstance(rows, Mapping) else [(r.label, r.summary) for r in rows]
    lines = [
        "| set | faces | detected % | NME % (detected) | FR@10 % | AUC@10 |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, s in pairs:
        lines.append(
            f"| {label} | {s.faces} | {s.detection_rate_pct:.1f} | {s.nme_pct:.2f} | {s.fr_pct:.2f} | {s.auc:.4f} |"
        )
    return "\n".join(lines)


CED_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")

TABLE_NOTE = (
    "NME: outer-eye-corner normalised, mean over detected faces. FR@10 and AUC@10 are over all faces: "
    "a face the detector missed counts as a failure (NME = inf)."
)


def plot_ced(
    results: Sequence[EvalResult] | Mapping[str, Sequence[float]], path: str | Path, limit: float = FAILURE_LIMIT
) -> Path:
    """Write a CED plot (PNG) of several evaluations, or of ``{label: per-face NMEs}`` (``inf`` = missed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise MissingDependencyError("matplotlib", "plots", "the CED plot") from exc
    curves = results.items() if isinstance(results, Mapping) else [(r.label, r.errors()) for r in results]
    fig, ax = plt.subplots(figsize=(6, 4.5), dpi=120)
    for label, errs in curves:
        errs = np.asarray(errs, np.float64)
        x, y = metrics.ced(errs, limit)
        ax.plot(x * 100, y * 100, label=f"{label}: AUC {metrics.auc(errs, limit):.3f}")
    ax.set(xlabel="NME (% of outer-eye-corner distance)", ylabel="faces (%)", xlim=(0, limit * 100), ylim=(0, 100))
    ax.set_title("Cumulative error distribution")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = io.BytesIO()
    fig.savefig(image, format=path.suffix.lstrip(".").lower() or "png")
    plt.close(fig)
    return write_file_atomic(path, image.getvalue())


class EvalReport(BaseModel):
    """What ``--json`` writes: every evaluation with its per-image errors and summary."""

    failure_limit: float = FAILURE_LIMIT
    normaliser: str = "outer eye corners (points {}, {}, 0-based)".format(*IBUG68.outer_eye_corners)
    missed_faces: str = "nme null; counted as failures in fr_pct, 0 in auc; excluded from nme_pct"
    results: list[EvalResult]


def write_json(results: Sequence[EvalResult], path: str | Path) -> Path:
    """Write the per-image errors and summaries of ``results`` as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file_atomic(path, EvalReport(results=list(results)).model_dump_json(indent=1))
    return path
