"""A face bank: every unlabelled face available, cropped the way the landmark stage crops, in one file.

The autoencoder stage (3FabRec's pretraining) learns from faces without labels; the more and the more
varied, the better. Sources:

* folders of face images that are already crops (``faces/real``, ``faces/synthetic``): centre square;
* annotated folders (images + ``.pts``): the runtime crop of the point-derived box, labels unused;
  ``FOLDER:FRACTION`` leaves out the held-out share that evaluation uses (``training.data.is_held_out``);
* videos (files or folders of them): every ``video_stride``-th frame, each face the detector finds,
  cropped from its detection as the runtime would.

The bank is one ``.npz`` (no pickles): JPEG bytes of every crop concatenated (``jpeg``), their offsets
(``offsets``), and the crop side and source of each face, small enough to carry to a lent GPU machine.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from .. import geometry
from ..errors import InputError
from ..imageio import list_images, read_image
from ..outputs import check_output_file, replacing
from ..pts import check_points_in_image, read_pts
from .data import center_square

VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v")


class FaceBankConfig(BaseModel):
    """What goes into a face bank."""

    model_config = ConfigDict(extra="forbid")

    crops: list[str] = Field(default_factory=lambda: ["../shared/data/faces/real", "../shared/data/faces/synthetic"],
                             description="folders of images that are already face crops")
    annotated: list[str] = Field(default_factory=lambda: [
        "../shared/data/300w/train", "../shared/data/aflw2000/train:0.2", "../shared/data/ytf68/train",
        "../shared/data/infanface/train:0.25"],
        description="folders of images with .pts (labels are not used); FOLDER:FRACTION leaves out its held-out share")
    videos: list[str] = Field(default_factory=lambda: ["../shared/data/videos"],
                              description="video files or folders of them")
    size: int = Field(256, ge=16, description="largest side of the stored crops (a face smaller in its source is stored "
                      "at its source size and resized when loaded)")
    video_stride: int = Field(15, ge=1, description="take every Nth video frame")
    jpeg_quality: int = Field(90, ge=50, le=100)


def _stored_side(source_side: float, size: int) -> int:
    """Crops are stored no larger than the face was in its source: upsampled pixels only cost bytes."""
    return int(min(size, max(64, source_side)))


def _square(image: np.ndarray, size: int) -> np.ndarray:
    square = center_square(image)
    return cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA if len(square) > size else cv2.INTER_LINEAR)


def _annotated_crops(spec: str, size: int) -> Iterator[tuple[np.ndarray, int]]:
    from ..evaluate import parse_folder_spec
    from .data import is_held_out

    folder, held_out = parse_folder_spec(spec)
    for path in list_images(folder):
        pts = path.with_suffix(".pts")
        if not pts.is_file() or (held_out is not None and is_held_out(path, held_out)):
            continue
        image, points = read_image(path), read_pts(pts, None)
        check_points_in_image(points, image, path)  # another image's points would bank a crop of no face
        frame = geometry.frame_from_box(geometry.box_from_points(points))
        yield geometry.warp_crop(image, frame, _stored_side(frame.side, size)), int(frame.side)


def _video_files(source: str) -> list[Path]:
    path = Path(source)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video or folder")
    return [path]


def _video_crops(source: str, size: int, stride: int, detector) -> Iterator[tuple[np.ndarray, int]]:
    for video in _video_files(source):
        cap = cv2.VideoCapture(str(video))
        try:
            if not cap.isOpened():
                raise FileNotFoundError(f"{video}: not a readable video")
            index = 0
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                if index % stride == 0:
                    for det in detector.detect(frame):
                        roll = geometry.roll_from_eyes(*det.keypoints[:2]) if det.keypoints else 0.0
                        crop_frame = geometry.frame_from_box(det.box, roll)
                        yield geometry.warp_crop(frame, crop_frame, _stored_side(crop_frame.side, size)), int(crop_frame.side)
                index += 1
        finally:
            cap.release()


def build_face_bank(cfg: FaceBankConfig, out: str | Path, progress: bool = True) -> dict[str, int]:
    """Crop every face of the configured sources and write the bank; returns faces per source kind."""
    out = Path(out)
    if out.suffix != ".npz":
        raise InputError(f"{out}: a face bank is an .npz file")
    check_output_file(out, create_folder=True)  # before the minutes of cropping, not after them
    chunks: list[bytes] = []
    sides: list[int] = []
    kinds: list[int] = []
    counts = {"crops": 0, "annotated": 0, "videos": 0}

    def add(crop: np.ndarray, side: int, kind: int) -> None:
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        chunks.append(buf.tobytes())
        sides.append(side)
        kinds.append(kind)

    bar = tqdm(desc="face bank", unit="face", disable=not progress)
    for folder in cfg.crops:
        for path in list_images(folder):
            image = read_image(path)
            side = min(image.shape[:2])
            add(_square(image, _stored_side(side, cfg.size)), side, 0)
            counts["crops"] += 1
            bar.update(1)
    for folder in cfg.annotated:
        for crop, side in _annotated_crops(folder, cfg.size):
            add(crop, side, 1)
            counts["annotated"] += 1
            bar.update(1)
    if cfg.videos:
        from ..detectors.yunet import YuNetDetector

        detector = YuNetDetector()
        for source in cfg.videos:
            for crop, side in _video_crops(source, cfg.size, cfg.video_stride, detector):
                add(crop, side, 2)
                counts["videos"] += 1
                bar.update(1)
    bar.close()
    if not chunks:
        raise InputError("the face bank would be empty: no faces in the given sources")
    offsets = np.cumsum([0] + [len(c) for c in chunks]).astype(np.int64)
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as tmp, open(tmp, "wb") as f:  # a file object: np.savez would rename a path
        np.savez(f, jpeg=np.frombuffer(b"".join(chunks), np.uint8), offsets=offsets,
                 source_side=np.array(sides, np.int32), kind=np.array(kinds, np.int8), size=np.int32(cfg.size))
    return counts


def _read_bank(path: str | Path, *keys: str) -> list[np.ndarray]:
    """Arrays of a face bank; an InputError for a file that is not one (another .npz, half a file)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such face bank")
    try:
        with np.load(path, allow_pickle=False) as bank:
            return [bank[key] for key in keys]
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a face bank of facealign train facebank ({exc})") from None


def face_bank_rows(path: str | Path, min_source_side: int = 0) -> np.ndarray:
    """Indices of the bank's faces that were at least ``min_source_side`` pixels in their source."""
    (source_side,) = _read_bank(path, "source_side")
    return np.flatnonzero(source_side >= min_source_side)


def load_face_bank(path: str | Path, size: int, min_source_side: int = 0, out: np.ndarray | None = None) -> np.ndarray:
    """Faces of a bank as (N, size, size, 3) uint8 BGR, decoded into ``out`` when given (no second copy);
    ``min_source_side`` drops faces that were smaller than that in their source image (for 256-px
    training, upsampled 100-px faces teach blur)."""
    keep = face_bank_rows(path, min_source_side)
    jpeg, offsets = _read_bank(path, "jpeg", "offsets")
    if out is None:
        out = np.empty((len(keep), size, size, 3), np.uint8)
    elif out.shape != (len(keep), size, size, 3):
        raise ValueError(f"out has shape {out.shape}, the bank needs {(len(keep), size, size, 3)}")
    for row, i in enumerate(keep):
        face = cv2.imdecode(jpeg[offsets[i] : offsets[i + 1]], cv2.IMREAD_COLOR) if i + 1 < len(offsets) else None
        if face is None:
            raise InputError(f"{path}: face {i} is not a readable JPEG (a damaged face bank)")
        if face.shape[0] != size:
            face = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA if face.shape[0] > size else cv2.INTER_LINEAR)
        out[row] = face
    return out


def is_face_bank(path: str | Path) -> bool:
    """Whether ``path`` is an existing face bank file (``.npz``)."""
    return Path(path).suffix == ".npz" and Path(path).is_file()

