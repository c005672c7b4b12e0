"""A compact archive of a landmark run's annotated data, for a machine without ``../shared``.

A GPU machine lent for minutes is sent the repository and at most 64 MiB in all, so the run's images go
as one .tar.gz of WebP crops: each face cut with room for the training augmentation around the runtime crop,
shrunk where it is larger than the network needs, its points moved with it (same file names, so
held-out splits by name hash select the same faces). Unpacked into ``../shared/data`` there, the run's
own config finds every folder where it expects it.
"""

from __future__ import annotations

import gzip
import io
import math
import tarfile
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from .. import geometry
from ..errors import InputError
from ..imageio import list_images, read_image
from ..outputs import replacing
from ..pts import check_points_in_image, pts_text, read_pts
from .data import first_by_hash, is_held_out


class PackOptions(BaseModel):
    """How faces are cut and stored."""

    model_config = ConfigDict(extra="forbid")

    margin: float = Field(1.5, ge=1.0, description="side of the stored square, in runtime crop sides: room for most "
                          "of what the augmentation's rotation (+-30 deg), scale and shift reach around the crop (at "
                          "1.5 a sixth of the crops lose a few corner pixels to black; 1.9 holds all of it)")
    crop_pixels: int = Field(224, ge=32, description="the runtime crop's side in stored pixels at most (faces "
                             "larger in their image are shrunk; smaller ones are kept as they are)")
    quality: int = Field(80, ge=1, le=100, description="WebP quality")
    every: dict[str, int] = Field(default_factory=dict, description="keep every N-th face of these folders "
                                  "(sorted by name; any path to the folder): sets of consecutive video frames repeat "
                                  "themselves")


class FolderUse(NamedTuple):
    """One use of a folder by a run: a train source (its held-out share and ``max_faces``) or the val folder."""

    folder: str
    held_out: float | None = None
    max_faces: int | None = None

    def faces(self, files: list[Path]) -> set[Path]:
        """The faces of ``files`` this use takes, chosen as training chooses them (:func:`.data.is_held_out`,
        then :func:`.data.first_by_hash`)."""
        kept = [f for f in files if self.held_out is None or not is_held_out(f, self.held_out)]
        return set(first_by_hash(kept, self.max_faces))


class PackReport(BaseModel):
    """What a pack holds."""

    out: str
    faces: dict[str, int]
    megabytes: float


def cut_face(image: np.ndarray, points: np.ndarray, margin: float, crop_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """The square of ``margin`` runtime crop sides around a face (black outside the image), shrunk so that the
    runtime crop is at most ``crop_pixels``; with the points in its pixels."""
    frame = geometry.frame_from_box(geometry.box_from_points(points))
    side = max(1, int(math.ceil(frame.side * margin)))
    x0, y0 = int(round(frame.center_x - side / 2)), int(round(frame.center_y - side / 2))
    window = np.zeros((side, side, 3), np.uint8)
    h, w = image.shape[:2]
    sx, sy, ex, ey = max(x0, 0), max(y0, 0), min(x0 + side, w), min(y0 + side, h)
    if ex > sx and ey > sy:
        window[sy - y0 : ey - y0, sx - x0 : ex - x0] = image[sy:ey, sx:ex]
    moved = points - np.array([x0, y0], np.float64)
    scale = min(1.0, crop_pixels / frame.side)
    if scale < 1.0:
        out = max(1, int(round(side * scale)))
        window = cv2.resize(window, (out, out), interpolation=cv2.INTER_AREA)
        moved = (moved + 0.5) * (out / side) - 0.5  # cv2.resize maps pixel centres this way
    return window, moved


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))  # mtime 0, root-owned


def pack_folders(folders: list[FolderUse | tuple], root: str | Path, out: str | Path,
                 options: PackOptions | None = None, progress: bool = True, max_mb: float | None = None) -> PackReport:
    """Write the faces of ``folders`` that their uses take (:class:`FolderUse`, or a tuple of its fields) as ``out``
    (a .tar.gz whose paths are the folders' paths under ``root``); InputError when it comes to more than
    ``max_mb``. Whole or not at all: a failure (a bad image, the size bound) leaves the pack that was there before."""
    options = options or PackOptions()
    root = Path(root).resolve()
    # a folder is the same however it is written (trailing slash, ./, absolute) and is packed once: with the
    # faces every use of it takes (a train source's and the val folder's)
    uses: dict[Path, list[FolderUse]] = {}
    for use in folders:
        use = FolderUse(*use)
        uses.setdefault(Path(use.folder).resolve(), []).append(use)
    unknown = sorted(folder for folder in options.every if Path(folder).resolve() not in uses)
    if unknown:
        raise InputError(f"every: {', '.join(unknown)} is not one of the packed folders")
    every = {Path(folder).resolve(): count for folder, count in options.every.items()}
    places = []
    for folder, folder_uses in uses.items():
        try:
            places.append((folder, folder_uses, folder.relative_to(root)))
        except ValueError:
            raise InputError(f"{folder}: not under the pack's root {root}") from None
    faces: dict[str, int] = {}
    # gzip: the .pts texts and the tar headers are a third of an uncompressed pack; WebP stays as it is. No name
    # or time in the gzip header: the same data packs to the same bytes
    with replacing(Path(out)) as part:
        with open(part, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as zipped, \
                tarfile.open(fileobj=zipped, mode="w") as tar:
            for folder, folder_uses, place in places:
                files = list_images(folder)
                taken = set().union(*(use.faces(files) for use in folder_uses))
                files = [f for f in files if f in taken][:: every.get(folder, 1)]
                for path in tqdm(files, desc=f"packing {place}", leave=False, disable=not progress):
                    points, image = read_pts(path.with_suffix(".pts")), read_image(path)
                    check_points_in_image(points, image, path)
                    crop, moved = cut_face(image, points, options.margin, options.crop_pixels)
                    ok, webp = cv2.imencode(".webp", crop, [cv2.IMWRITE_WEBP_QUALITY, options.quality])
                    if not ok:
                        raise InputError(f"{path}: OpenCV could not encode it as WebP")
                    _add(tar, f"{place.as_posix()}/{path.stem}.webp", webp.tobytes())
                    _add(tar, f"{place.as_posix()}/{path.stem}.pts", pts_text(moved).encode())
                faces[str(place)] = len(files)
        megabytes = round(part.stat().st_size / 1e6, 2)
        if max_mb is not None and megabytes > max_mb:
            raise InputError(f"the pack came to {megabytes} MB, more than {max_mb:g} MB (not written): lower the "
                             "quality or the crop pixels, or thin video frames with every")
    return PackReport(out=str(out), faces=faces, megabytes=megabytes)
