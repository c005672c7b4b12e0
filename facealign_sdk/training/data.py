"""Datasets for both training stages: unlabelled faces and annotated (.pts) faces.

Every crop goes through :mod:`facealign_sdk.geometry`, the same transform the runtime uses.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from .. import geometry
from ..imageio import list_images, read_image
from ..pts import read_pts
from ..schemes import FLIP_68


def is_held_out(path: Path, fraction: float) -> bool:
    """Deterministic split by file name hash (for sets without their own val split)."""
    digest = hashlib.sha1(path.stem.encode()).digest()
    return digest[0] / 256.0 < fraction


@dataclass
class Annotated:
    image: np.ndarray  # uint8 BGR
    points: np.ndarray  # (L, 2) 0-based
    name: str


def load_annotated(
    folder: str | Path, num_points: int = 68, held_out: float | None = None, take_held_out: bool = False
) -> list[Annotated]:
    """Load every image + .pts pair of a folder (errors name the file)."""
    items = []
    for img_path in tqdm(list_images(folder), desc=f"loading {Path(folder).name}", leave=False):
        if held_out is not None and is_held_out(img_path, held_out) != take_held_out:
            continue
        pts_path = img_path.with_suffix(".pts")
        if not pts_path.exists():
            raise FileNotFoundError(f"{img_path}: no landmark file {pts_path.name} beside it")
        items.append(Annotated(read_image(img_path), read_pts(pts_path, num_points), img_path.name))
    return items


def load_faces(folders: list[str | Path], size: int) -> np.ndarray:
    """Unlabelled face images, resized (centre-cropped to square) to ``size``; (N, size, size, 3) uint8 BGR."""
    files = [f for folder in folders for f in list_images(folder)]
    out = np.empty((len(files), size, size, 3), np.uint8)
    for i, f in enumerate(tqdm(files, desc="loading faces", leave=False)):
        img = read_image(f)
        h, w = img.shape[:2]
        s = min(h, w)
        img = img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        out[i] = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
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
    crop = cv2.warpAffine(image, full[:2], (crop_size, crop_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    pts = geometry.apply_matrix(full[:2], points)
    if rng.random() < aug.p_flip and len(points) == len(FLIP_68):
        crop = crop[:, ::-1]
        pts = pts[FLIP_68].copy()
        pts[:, 0] = crop_size - 1 - pts[:, 0]
    crop = np.ascontiguousarray(crop)
    if rng.random() < aug.p_color:
        alpha = rng.uniform(0.6, 1.6)
        beta = rng.uniform(-50, 50)
        crop = cv2.convertScaleAbs(crop, alpha=alpha, beta=beta)
    if rng.random() < aug.p_blur:
        k = int(rng.choice([3, 5, 7]))
        crop = cv2.GaussianBlur(crop, (k, k), 0)
    if rng.random() < aug.p_occlusion:
        w, h = (rng.uniform(0.15, 0.4, 2) * crop_size).astype(int)
        x, y = rng.integers(0, crop_size - w), rng.integers(0, crop_size - h)
        crop[y : y + h, x : x + w] = rng.integers(0, 256, 3, dtype=np.uint8)
    return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB), pts
