"""Datasets for both training stages: unlabelled faces and annotated (.pts) faces.

Every crop goes through :mod:`facealign_sdk.geometry`, the same transform the runtime uses.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import cv2
import numpy as np
from tqdm import tqdm

from .. import geometry
from ..imageio import list_images, read_image
from ..pts import check_points_in_image, read_pts
from ..schemes import IBUG68


def is_held_out(path: Path, fraction: float) -> bool:
    """Deterministic split by file name hash (for sets without their own val split)."""
    digest = hashlib.sha1(path.stem.encode()).digest()
    return digest[0] / 256.0 < fraction


class _Named(Protocol):
    name: str


NamedT = TypeVar("NamedT", bound=_Named)


def first_by_hash(items: list[NamedT], count: int | None) -> list[NamedT]:
    """``count`` of ``items`` (faces, or their image paths) chosen by a hash of their names (all when ``count``
    is None): the same faces every run, whatever the folder's order, independent of :func:`is_held_out`'s split."""
    if count is None or count >= len(items):
        return items
    return sorted(items, key=lambda it: hashlib.sha1(b"subset:" + Path(it.name).stem.encode()).digest())[:count]


@dataclass
class Annotated:
    """One annotated face image."""
    image: np.ndarray  # uint8 BGR
    points: np.ndarray  # (L, 2) 0-based
    name: str
    point_weights: np.ndarray | None = None  # (L,) loss weight per point; None: all 1


def turned_face_ratio(points: np.ndarray) -> float:
    """Near/far cheek width ratio of a 68-point face (1: frontal, -> 0: profile).

    The distances from the nose tip (30) to the jaw at cheek height (2 and 14), measured along the
    eye axis (36 -> 45, so roll does not matter): on a face turned away the far one shrinks, and on a
    3-D contour jaw (AFLW2000-3D) the nose tip can pass the far cheek point: a distance <= 0 is a profile.
    """
    right_corner, left_corner = IBUG68.outer_eye_corners
    near, far = IBUG68.cheeks
    axis = points[left_corner] - points[right_corner]
    axis = axis / max(float(np.linalg.norm(axis)), 1e-6)
    left = float((points[IBUG68.nose_tip] - points[near]) @ axis)
    right = float((points[far] - points[IBUG68.nose_tip]) @ axis)
    if left <= 0 or right <= 0:
        return 0.0
    return min(left, right) / max(left, right)


def contour_weights(points: np.ndarray, jaw_weight: float, turned_below: float = 0.5) -> np.ndarray | None:
    """Per-point loss weights that lower the jaw (0-16) of strongly turned faces to ``jaw_weight``.

    For sets whose jaw follows the 3-D contour (AFLW2000-3D) rather than the visible outline:
    on turned faces the two conventions disagree, so those points get less say.
    """
    if jaw_weight == 1.0 or len(points) != IBUG68.num_points or turned_face_ratio(points) >= turned_below:
        return None
    w = np.ones(len(points), np.float32)
    w[list(IBUG68.jaw)] = jaw_weight
    return w


def load_annotated(
    folder: str | Path,
    num_points: int = IBUG68.num_points,
    held_out: float | None = None,
    take_held_out: bool = False,
    turned_jaw_weight: float = 1.0,
    progress: bool = True,
) -> list[Annotated]:
    """Load every image + .pts pair of a folder (errors name the file); ``progress`` shows a bar.

    ``turned_jaw_weight`` < 1 lowers the jaw points' loss weight on strongly turned faces
    (:func:`contour_weights`).
    """
    items = []
    for img_path in tqdm(list_images(folder), desc=f"loading {Path(folder).name}", leave=False, disable=not progress):
        if held_out is not None and is_held_out(img_path, held_out) != take_held_out:
            continue
        pts_path = img_path.with_suffix(".pts")
        if not pts_path.exists():
            raise FileNotFoundError(f"{img_path}: no landmark file {pts_path.name} beside it")
        points = read_pts(pts_path, num_points)
        image = read_image(img_path)
        check_points_in_image(points, image, img_path)  # another image's points would train on the wrong crop
        items.append(Annotated(image, points, img_path.name, contour_weights(points, turned_jaw_weight)))
    return items


def center_square(image: np.ndarray) -> np.ndarray:
    """The largest centred square of an image (a view, no copy)."""
    h, w = image.shape[:2]
    s = min(h, w)
    return image[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]


def load_faces(folders: list[str | Path], size: int, min_source_side: int = 0, progress: bool = True) -> np.ndarray:
    """Unlabelled face images, resized (centre-cropped to square) to ``size``; (N, size, size, 3) uint8 BGR,
    in the order of ``folders``.

    A source may be a folder of images or a face bank (``.npz``, :mod:`.facebank`); ``min_source_side``
    applies to banks (faces smaller than that in their source image are left out). One array is
    allocated for all of them (a bank of 20k faces at 256 px is ~4 GB).
    """
    from .facebank import face_bank_rows, is_face_bank, load_face_bank

    sources = [(f, len(face_bank_rows(f, min_source_side)) if is_face_bank(f) else list_images(f)) for f in folders]
    total = sum(n if isinstance(n, int) else len(n) for _, n in sources)
    out = np.empty((total, size, size, 3), np.uint8)
    row = 0
    for source, content in sources:
        if isinstance(content, int):
            load_face_bank(source, size, min_source_side, out=out[row : row + content])
            row += content
            continue
        for f in tqdm(content, desc=f"loading {Path(source).name}", leave=False, disable=not progress):
            out[row] = cv2.resize(center_square(read_image(f)), (size, size), interpolation=cv2.INTER_AREA)
            row += 1
    return out


def random_similarity(rng: np.random.Generator, size: int, rot_deg: float, scale: float, shift: float) -> np.ndarray:
    """A random similarity transform about the image centre (2x3)."""
    angle = math.radians(rng.uniform(-rot_deg, rot_deg))
    s = rng.uniform(1 - scale, 1 + scale)
    tx, ty = rng.uniform(-shift, shift, 2) * size
    c = (size - 1) / 2
    a = s * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    return np.hstack([a, (np.array([c + tx, c + ty]) - a @ np.array([c, c]))[:, None]])


def augment_face(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Autoencoder augmentation: flip, +-4 % translation, 94-103 % scale, +-15 deg rotation."""
    if rng.random() < 0.5:
        img = img[:, ::-1]
    size = img.shape[0]
    m = random_similarity(rng, size, 15.0, 0.05, 0.04)
    return cv2.warpAffine(np.ascontiguousarray(img), m, (size, size), borderMode=cv2.BORDER_REFLECT)


@dataclass
class LandmarkAugment:
    """Landmark-stage augmentation (SCAF / StyleGAN-ITL recipe)."""

    rotation: float = 30.0
    scale: float = 0.08
    shift: float = 0.05
    box_jitter: float = 0.05  # detector box noise, fraction of box size
    p_flip: float = 0.5
    p_occlusion: float = 0.4
    p_blur: float = 0.2
    p_color: float = 0.45
    perspective: float = 0.06  # corner jitter (fraction of the crop) of a random projective warp
    p_perspective: float = 0.3
    p_low_resolution: float = 0.25  # downscale to 15-60 % and back up (small or distant faces)
    p_jpeg: float = 0.25  # JPEG re-encoding at quality 15-70
    p_noise: float = 0.2  # Gaussian sensor noise, sigma 2-12 grey levels
    p_gray: float = 0.1  # greyscale photos

    @classmethod
    def none(cls) -> "LandmarkAugment":
        """No augmentation at all: the plain runtime crop (with a random generator)."""
        zeros = {name: 0 for name in cls.__dataclass_fields__}
        return cls(**zeros)


def _random_perspective(rng: np.random.Generator, size: int, amount: float) -> np.ndarray:
    """A 3x3 homography that moves each crop corner by up to ``amount * size``."""
    src = np.float32([[0, 0], [size - 1, 0], [size - 1, size - 1], [0, size - 1]])
    dst = src + rng.uniform(-amount, amount, (4, 2)).astype(np.float32) * size
    return cv2.getPerspectiveTransform(src, dst)


def degrade(crop: np.ndarray, rng: np.random.Generator, aug: LandmarkAugment) -> np.ndarray:
    """Photometric and resolution changes (none moves a point); ``crop`` is uint8 BGR."""
    size = crop.shape[0]
    if rng.random() < aug.p_color:
        crop = cv2.convertScaleAbs(crop, alpha=rng.uniform(0.6, 1.6), beta=rng.uniform(-50, 50))
    if rng.random() < aug.p_gray:
        crop = cv2.cvtColor(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    if rng.random() < aug.p_low_resolution:
        small = max(8, int(size * rng.uniform(0.15, 0.6)))
        crop = cv2.resize(cv2.resize(crop, (small, small), interpolation=cv2.INTER_AREA), (size, size),
                          interpolation=cv2.INTER_LINEAR)
    if rng.random() < aug.p_blur:
        k = int(rng.choice([3, 5, 7]))
        crop = cv2.GaussianBlur(crop, (k, k), 0)
    if rng.random() < aug.p_noise:
        noise = rng.normal(0, rng.uniform(2, 12), crop.shape)
        crop = np.clip(crop + noise, 0, 255).astype(np.uint8)
    if rng.random() < aug.p_jpeg:
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(15, 71))])
        if ok:
            crop = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return crop


def landmark_sample(
    item: Annotated, crop_size: int, rng: np.random.Generator | None, aug: LandmarkAugment | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One training crop (crop_size^2, RGB uint8) and its points in crop pixels.

    Without ``rng`` the crop is the deterministic runtime crop of the point-derived box.
    """
    image, points = item.image, item.points
    frame = geometry.frame_from_box(geometry.box_from_points(points))
    if rng is None:
        crop = geometry.warp_crop(image, frame, crop_size)
        return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), geometry.image_to_crop(points, frame, crop_size)
    aug = aug or LandmarkAugment()
    j = aug.box_jitter
    frame = geometry.CropFrame(
        frame.center_x + rng.normal(0, j) * frame.side / geometry.CROP_SCALE,
        frame.center_y + rng.normal(0, j) * frame.side / geometry.CROP_SCALE,
        frame.side * math.exp(rng.normal(0, j)),
    )
    m = random_similarity(rng, crop_size, aug.rotation, aug.scale, aug.shift)
    full = np.vstack([m, [0, 0, 1]]) @ np.vstack([frame.transform(crop_size), [0, 0, 1]])
    if aug.perspective > 0 and rng.random() < aug.p_perspective:
        full = _random_perspective(rng, crop_size, aug.perspective) @ full
    crop = cv2.warpPerspective(image, full, (crop_size, crop_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    pts = cv2.perspectiveTransform(points[None].astype(np.float64), full)[0]
    if rng.random() < aug.p_flip and len(points) == IBUG68.num_points:
        crop = crop[:, ::-1]
        pts = pts[IBUG68.mirror].copy()
        pts[:, 0] = crop_size - 1 - pts[:, 0]
    crop = degrade(np.ascontiguousarray(crop), rng, aug)
    if rng.random() < aug.p_occlusion:
        w, h = (rng.uniform(0.15, 0.4, 2) * crop_size).astype(int)
        x, y = rng.integers(0, crop_size - w), rng.integers(0, crop_size - h)
        crop[y : y + h, x : x + w] = rng.integers(0, 256, 3, dtype=np.uint8)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), pts
