"""The one geometry module: face box -> similarity transform -> crop, and back.

Conventions (used everywhere: training, runtime, export tests, C++):

* Points are ``(x, y)`` in pixel-centre coordinates, 0-based: the centre of the
  top-left pixel is ``(0, 0)``. This is what ``cv2.warpAffine`` uses.
* A crop is defined by a :class:`CropFrame`: a centre, a side length in image
  pixels and a roll angle. It maps to a ``crop_size`` x ``crop_size`` image.
* Heatmap pixels <-> crop pixels: :class:`facealign_sdk.codec.HeatmapCodec`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .detectors.calibration import YUNET
from .errors import InputError
from .schemes import IBUG68

# A detector-like face box is turned into a square crop whose side is
# ``CROP_SCALE`` times the box size, centred ``CENTER_SHIFT`` box sizes below
# the box centre.  The same constants turn 68 points into a detector-like box
# (``box_from_points``), so training and inference crops agree.
CROP_SCALE = 1.4
CENTER_SHIFT = 0.15

# Mapping from the tight bounding box of the 68 points to the box that the
# YuNet detector reports on the same face: the detector's own calibration
# (facealign_sdk.detectors.calibration.YUNET).
POINTS_TO_BOX = {"dx": YUNET.dx, "dy": YUNET.dy, "size": YUNET.size}


@dataclass(frozen=True)
class CropFrame:
    """A square, possibly rotated window of an image."""

    center_x: float
    center_y: float
    side: float
    roll: float = 0.0  # radians, counter-clockwise rotation of the face

    def transform(self, crop_size: int) -> np.ndarray:
        """2x3 affine matrix mapping image pixels to crop pixels."""
        return crop_matrix(self, crop_size)


def _check_points(points: np.ndarray) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise InputError(f"points must have shape (N, 2), got {pts.shape}")
    return pts


def crop_matrix(frame: CropFrame, crop_size: int) -> np.ndarray:
    """Similarity transform (2x3) taking image coordinates into the crop.

    ``crop = s * R(-roll) @ (p - c) + (crop_size - 1) / 2``.
    """
    if frame.side <= 0:
        raise InputError(f"crop side must be positive, got {frame.side}")
    scale = crop_size / frame.side
    cos, sin = math.cos(frame.roll) * scale, math.sin(frame.roll) * scale
    half = (crop_size - 1) / 2.0
    # rotate by -roll so that a rolled face comes out upright
    a = np.array([[cos, sin], [-sin, cos]])
    t = np.array([half, half]) - a @ np.array([frame.center_x, frame.center_y])
    return np.hstack([a, t[:, None]])


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    """Exact inverse of a 2x3 affine matrix."""
    a = matrix[:, :2]
    inv_a = np.linalg.inv(a)
    return np.hstack([inv_a, (-inv_a @ matrix[:, 2])[:, None]])


def apply_matrix(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N, 2) points."""
    pts = _check_points(points)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def warp_crop(image: np.ndarray, frame: CropFrame, crop_size: int) -> np.ndarray:
    """Cut ``frame`` out of ``image`` as a ``crop_size`` square (bilinear, black border)."""
    return cv2.warpAffine(
        image,
        crop_matrix(frame, crop_size),
        (crop_size, crop_size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def crop_to_image(points: np.ndarray, frame: CropFrame, crop_size: int) -> np.ndarray:
    """Map crop pixel coordinates back to image coordinates (the exact inverse)."""
    return apply_matrix(invert_matrix(crop_matrix(frame, crop_size)), points)


def image_to_crop(points: np.ndarray, frame: CropFrame, crop_size: int) -> np.ndarray:
    """Map image coordinates into crop pixel coordinates."""
    return apply_matrix(crop_matrix(frame, crop_size), points)


def frame_from_box(
    box: tuple[float, float, float, float],
    roll: float = 0.0,
    crop_scale: float = CROP_SCALE,
    center_shift: float = CENTER_SHIFT,
) -> CropFrame:
    """Crop window for a detector-style face box ``(x1, y1, x2, y2)`` and a face roll (radians)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if not (w > 0 and h > 0) or not all(math.isfinite(v) for v in (x1, y1, x2, y2)):
        raise InputError(f"invalid face box {box}: need x2 > x1 and y2 > y1")
    size = math.sqrt(w * h)
    cx = (x1 + x2) / 2.0 - math.sin(roll) * center_shift * size
    cy = (y1 + y2) / 2.0 + math.cos(roll) * center_shift * size
    return CropFrame(cx, cy, size * crop_scale, roll)


def box_from_points(points: np.ndarray) -> tuple[float, float, float, float]:
    """A detector-like face box derived from landmarks (see ``POINTS_TO_BOX``)."""
    pts = _check_points(points)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    size = math.sqrt(max(hi[0] - lo[0], 1e-6) * max(hi[1] - lo[1], 1e-6))
    cx = (lo[0] + hi[0]) / 2.0 + POINTS_TO_BOX["dx"] * size
    cy = (lo[1] + hi[1]) / 2.0 + POINTS_TO_BOX["dy"] * size
    half = POINTS_TO_BOX["size"] * size / 2.0
    return (cx - half, cy - half, cx + half, cy + half)


def roll_from_eyes(right_eye: np.ndarray, left_eye: np.ndarray) -> float:
    """Face roll (radians) from the two eye centres (image-left eye first)."""
    dx, dy = np.asarray(left_eye, float) - np.asarray(right_eye, float)
    return math.atan2(dy, dx)


def eye_centers_68(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eye centres of an iBUG 68-point shape (image-left eye first)."""
    return IBUG68.eye_centers(_check_points(points))


def frame_change(old: CropFrame, new: CropFrame) -> float:
    """How far ``new`` is from ``old``: the largest of the centre shift and the side change (as fractions
    of ``old.side``) and the roll change (radians, the angle that moves a corner by that fraction)."""
    shift = math.hypot(new.center_x - old.center_x, new.center_y - old.center_y) / old.side
    side = abs(new.side - old.side) / old.side
    roll = abs(math.remainder(new.roll - old.roll, math.tau))
    return max(shift, side, roll)


def frame_from_points(points: np.ndarray, use_roll: bool = False, **crop: float) -> CropFrame:
    """Crop window for a 68-point face, as the runtime would make from a detector box
    (used to track a face from its previous landmarks)."""
    roll = roll_from_eyes(*eye_centers_68(points)) if use_roll else 0.0
    return frame_from_box(box_from_points(points), roll, **crop)
