"""Loading images of any common kind into 8-bit 3-channel BGR (what the pipeline expects)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import InputError


# image file types the SDK reads from folders (images, annotated sets, image-sequence "videos")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class ImageError(InputError):
    """An image that cannot be used; the message says which and why."""


def to_bgr8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Convert greyscale / BGRA / 16-bit / float images to uint8 BGR.

    Float images are taken to be in [0, 1]; 16-bit images are scaled by 1/257.
    """
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{name}: expected a numpy array, got {type(image).__name__}")
    if image.size == 0 or image.ndim not in (2, 3):
        raise ImageError(f"{name}: expected an HxW or HxWxC image, got shape {image.shape}")
    img = image
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif img.dtype in (np.float16, np.float32, np.float64):
        if not np.isfinite(img).all():
            raise ImageError(f"{name}: float image contains NaN or inf")
        if img.max() > 1.0 + 1e-3:
            raise ImageError(f"{name}: float image has values up to {float(img.max()):.4g}; float images must be "
                             "in [0, 1] (divide by 255), or pass uint8")
        img = (np.clip(img, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageError(f"{name}: unsupported pixel type {img.dtype}")
    if img.ndim == 2 or img.shape[2] == 1:
        img = cv2.cvtColor(img.reshape(img.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    elif img.shape[2] != 3:
        raise ImageError(f"{name}: expected 1, 3 or 4 channels, got {img.shape[2]}")
    return np.ascontiguousarray(img)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 BGR; clear errors for missing or unreadable files."""
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a file")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageError(f"{path}: not a readable image")
    return to_bgr8(image, str(path))


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder, sorted by name; error if the folder is missing or has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no images found")
    return files
