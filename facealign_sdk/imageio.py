"""Loading images of any common kind into 8-bit 3-channel BGR (what the pipeline expects).

Image files are turned upright by their EXIF orientation tag, as image viewers do, so points
come out in the coordinates of the upright image. Files above a pixel limit are refused from
their header, before they are decoded (a 1 MB PNG can hold 20000 x 20000 px: 1.2 GB decoded).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .imageheader import read_header


# The most pixels (width x height) an image file may have; FACEALIGN_MAX_PIXELS overrides it. 100 MP
# covers every phone and most cameras; decoded it takes 300 MB as 8-bit BGR.
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "FACEALIGN_MAX_PIXELS"

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
        low, high = float(img.min()), float(img.max())
        if high > 1.0 + 1e-3 or low < -1e-3:  # [-1, 1] or 0-255 floats would be clipped into another image
            raise ImageError(f"{name}: float image has values in [{low:.4g}, {high:.4g}]; float images must be "
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


def max_pixels() -> int:
    """The pixel limit for image files: ``FACEALIGN_MAX_PIXELS`` if set, else ``DEFAULT_MAX_PIXELS``."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value == float("inf"):
        return sys.maxsize  # no limit
    if not value >= 1:  # also NaN
        raise ImageError(f"{MAX_PIXELS_ENV}={text!r}: expected a positive number of pixels (or inf: no limit)")
    return int(value)


def _check_pixels(path: Path, width: int, height: int, limit: int) -> None:
    if width * height > limit:
        raise ImageError(f"{path}: {width} x {height} px ({width * height / 1e6:.1f} MP) is above the limit of "
                         f"{limit / 1e6:g} MP; set {MAX_PIXELS_ENV} to allow larger images")


def apply_orientation(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an image stored with EXIF ``orientation`` (1-8) upright, as image viewers show it."""
    if orientation == 2:
        return image[:, ::-1]
    if orientation == 3:
        return image[::-1, ::-1]
    if orientation == 4:
        return image[::-1]
    if orientation == 5:
        return image.swapaxes(0, 1)
    if orientation == 6:
        return image.swapaxes(0, 1)[:, ::-1]
    if orientation == 7:
        return image.swapaxes(0, 1)[::-1, ::-1]
    if orientation == 8:
        return image.swapaxes(0, 1)[::-1]
    return image


def read_image(path: str | Path, limit: int | None = None) -> np.ndarray:
    """Read an image file as upright uint8 BGR; clear errors for missing, unreadable or too large files.

    ``limit``: the most pixels allowed (default :func:`max_pixels`), checked from the header before
    decoding when the format's header is known (JPEG, PNG, BMP, WebP, TIFF), else after decoding.
    """
    path = Path(path)
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a file")
    limit = max_pixels() if limit is None else limit
    data = np.fromfile(str(path), dtype=np.uint8)
    header = read_header(data.data) if data.size else None
    if header is not None:
        _check_pixels(path, header.width, header.height, limit)
    # IMREAD_UNCHANGED keeps 16-bit and alpha and ignores the EXIF orientation of JPEG, PNG and WebP,
    # which is applied below; OpenCV's TIFF decoder turns the image upright itself
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise ImageError(f"{path}: not a readable image")
    _check_pixels(path, image.shape[1], image.shape[0], limit)
    oriented_by_decoder = bytes(data[:4]) in (b"II*\x00", b"MM\x00*")
    orientation = header.orientation if header and not oriented_by_decoder else 1
    return to_bgr8(apply_orientation(image, orientation), str(path))


def list_images(folder: str | Path) -> list[Path]:
    """Image files of a folder, sorted by name; error if the folder is missing or has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{folder}: no images found")
    return files
