"""Distillation data: unlabelled face images labelled by a teacher model (``facealign train pseudolabel``).

The teacher (by default the released model) runs once, end to end with its own detector as a user would
run it, on every image of the given folders; the best face of each image is kept when the teacher's mean
point confidence reaches ``min_confidence``. Each kept image is copied to ``out/<folder name>/`` with the
teacher's points beside it as an iBUG ``.pts`` (the teacher network's own points unless ``convention`` names
one of the teacher's annotation conventions: a landmark run takes them as ``DataSource(convention="none")``): the layout of the annotated sets, so the landmark stage
reads it as one more :class:`~facealign_sdk.training.landmarks.DataSource`. ``out/pseudolabel.json``
records the teacher, the threshold and what was kept.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from ..errors import InputError
from ..model import DEFAULT_MODEL, NETWORK_CONVENTION, load_manifest, resolve_model
from ..outputs import replacing, write_file_atomic
from ..pts import write_pts

REPORT = "pseudolabel.json"
# Teacher faces below this mean confidence are left out. benchmarks/teacher_confidence.py, fabrec-scaf-w32 end
# to end on 300w/val, ytf68/val and the held-out 20 % of aflw2000 (749 detected faces): at 0.88 it keeps 86.6 %
# of them with NME 4.77 % and FR@10 1.5 % (all: 10.7 %, 10.2 %); on 300w/val and ytf68/val alone it keeps 95 %
# with no failure; 0.9 keeps only 70 % (FR 0.4 %), 0.86 92 % (FR 3.5 %).
MIN_CONFIDENCE = 0.88


class PseudoLabelConfig(BaseModel):
    """Settings of the pseudo-labelling stage."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error, not silently ignored

    data: list[str] = Field(
        min_length=1, default_factory=lambda: ["../shared/data/faces/real", "../shared/data/faces/synthetic"],
        description="folders of unlabelled face images")
    out: str = Field("runs/pseudo", description="folder to write (one subfolder per data folder); must not hold files")
    teacher: str = Field(DEFAULT_MODEL, description="model that labels the faces (a released name or a folder)")
    min_confidence: float = Field(MIN_CONFIDENCE, ge=0, le=1, description="keep faces whose mean point confidence "
                                  "reaches this")
    convention: str = Field(NETWORK_CONVENTION, description="annotation convention of the written points, one of the "
                            "teacher's; none: the teacher network's own points (what a landmark run's source with "
                            "convention none expects), not the teacher's default convention")
    flip: bool = Field(False, description="the teacher also runs the mirrored crop and averages (twice its time; more "
                       "accurate where the teacher has offsets fitted for it, manifest 'flip_conventions': name one of "
                       "them as convention)")
    limit: int | None = Field(None, ge=1, description="at most this many images per folder (evenly spaced)")
    batch_size: int = Field(32, ge=1, description="images per teacher call")


class SourceCounts(BaseModel):
    """What became of one data folder's images."""

    folder: str
    written_to: str
    images: int = 0
    no_face: int = 0
    below_threshold: int = 0
    kept: int = 0
    kept_confidence_median: float | None = None


class PseudoLabelReport(BaseModel):
    """``out/pseudolabel.json``."""

    teacher: str
    teacher_weights_sha256: str
    min_confidence: float
    convention: str = Field(description="annotation convention of the written points (none: the network's own)")
    flip: bool = Field(False, description="the teacher averaged its points with the mirrored crop's")
    sources: list[SourceCounts]
    seconds: float


def _output_folders(cfg: PseudoLabelConfig) -> list[Path]:
    """``out/<name>`` per data folder; InputError for a missing data folder, clashing names or a used ``out``."""
    out = Path(cfg.out)
    if out.is_dir() and any(out.iterdir()):
        raise InputError(f"{out}: already holds files (pseudo-labels of an earlier run?); remove it or choose another "
                         "--out")
    names = [Path(folder).name for folder in cfg.data]
    for folder in cfg.data:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
    if len(set(names)) != len(names):
        raise InputError(f"data folders must have different names (each is written to {out}/<name>): {names}")
    return [out / name for name in names]


def _check_flip_offsets(cfg: PseudoLabelConfig) -> None:
    """InputError when the teacher's flip-averaged points would follow neither the convention they are written in
    nor the mirrored one (a landmark run shifts them as if they followed it: ``DataSource.convention``)."""
    manifest = load_manifest(resolve_model(cfg.teacher)[0])
    if manifest.flip_mixes_conventions(manifest.convention_offsets(cfg.convention, flip=True)[0]):
        fitted = ", ".join(sorted(manifest.flip_conventions)) or "none"
        raise InputError(f"{cfg.teacher}: trained without mirror augmentation, and convention {cfg.convention} has no "
                         f"offsets fitted for flip averaging: flipped pseudo-labels would not follow it (name a "
                         f"convention it has flip offsets for: {fitted}; or leave flip off)")


def pseudo_label(cfg: PseudoLabelConfig, progress: bool = True) -> PseudoLabelReport:
    """Label the faces of ``cfg.data`` with the teacher and write the confident ones to ``cfg.out``."""
    from ..aligner import Aligner
    from ..evaluate import select_images

    targets = _output_folders(cfg)
    if cfg.flip:
        _check_flip_offsets(cfg)
    teacher = Aligner(model=cfg.teacher, max_faces=1, convention=cfg.convention, flip=cfg.flip)
    start = time.perf_counter()
    sources = []
    for folder, target in zip(cfg.data, targets):
        target.mkdir(parents=True, exist_ok=True)
        files = select_images(folder, None, cfg.limit)
        counts = SourceCounts(folder=folder, written_to=str(target), images=len(files))
        kept_confidence = []
        bar = tqdm(total=len(files), desc=f"pseudo-labelling {Path(folder).name}", disable=not progress, leave=False)
        for first in range(0, len(files), cfg.batch_size):
            chunk = files[first : first + cfg.batch_size]
            for path, faces in zip(chunk, teacher.align_batch(chunk)):
                if not faces:
                    counts.no_face += 1
                    continue
                confidence = float(np.mean(faces[0].confidence))
                if confidence < cfg.min_confidence:
                    counts.below_threshold += 1
                    continue
                with replacing(target / path.name) as tmp:
                    shutil.copyfile(path, tmp)
                with replacing((target / path.name).with_suffix(".pts")) as tmp:
                    write_pts(tmp, faces[0].points)
                counts.kept += 1
                kept_confidence.append(confidence)
            bar.update(len(chunk))
        bar.close()
        if kept_confidence:
            counts.kept_confidence_median = round(float(np.median(kept_confidence)), 4)
        sources.append(counts)
    report = PseudoLabelReport(teacher=teacher.manifest.name, teacher_weights_sha256=teacher.manifest.weights_sha256,
                               min_confidence=cfg.min_confidence, convention=cfg.convention, flip=cfg.flip, sources=sources,
                               seconds=round(time.perf_counter() - start, 1))
    write_file_atomic(Path(cfg.out) / REPORT, report.model_dump_json(indent=2) + "\n")
    return report
