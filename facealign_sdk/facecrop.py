"""Aligned face crops ("face chips"): the similarity transform that takes a face's landmarks onto a
canonical template, and the crop it gives, as face recognisers (ArcFace and its kin) expect them.

Two templates:

* ``"arcface5"``: the five points of insightface's ``arcface_dst`` (eye centres, nose tip, mouth
  corners) for 112 x 112 crops, scaled as insightface's ``estimate_norm`` / ``norm_crop`` do for other
  sizes (sizes that are multiples of 112 scale it; others scale it by ``size / 128`` and shift it right
  by ``8 * size / 128``). From 68 points the five are the mean of each eye's six points, the nose tip
  (30) and the mouth corners (48, 54); five points (a detector's keypoints, in that order) work too.
* ``"68"``: all 68 points of the mean face (:data:`facealign_sdk.meanface.MEAN_FACE_68`, seen from the
  front), placed by the similarity that takes its own five points onto ``"arcface5"``: the same framing,
  fitted to every point, so one misplaced point moves the crop less.

The transform is the least-squares similarity (rotation, uniform scale, translation; no reflection)
of Umeyama (1991), the estimate insightface makes with scikit-image's ``SimilarityTransform``.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from .errors import InputError
from .geometry import eye_centers_68
from .meanface import MEAN_FACE_68
from .results import FaceLandmarks
from .schemes import IBUG68

TEMPLATES = ("arcface5", "68")
# insightface's arcface_dst: the five points of a 112 x 112 ArcFace crop
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]])
MIN_SIZE, MAX_SIZE = 8, 4096
# pixel types cv2.warpAffine takes (it raises cv2.error for others)
WARP_DTYPES = tuple(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64))


class FaceCrop(NamedTuple):
    """An aligned crop and the 2 x 3 matrix that took image pixels into it (``cv2.warpAffine``'s)."""

    image: np.ndarray
    matrix: np.ndarray


def five_points(points: np.ndarray) -> np.ndarray:
    """The ArcFace five points (image-left eye centre, other eye centre, nose tip, image-left mouth
    corner, other mouth corner) of 68 iBUG points."""
    pts = np.asarray(points, np.float64)
    mouth_left, mouth_right = IBUG68.mouth_corners
    return np.stack([*eye_centers_68(pts), pts[IBUG68.nose_tip], pts[mouth_left], pts[mouth_right]])


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2 x 3 least-squares similarity (Umeyama; no reflection) taking points ``src`` onto ``dst``."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d.T @ s / len(src))
    sign = np.array([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ np.diag(sign) @ vt
    scale = float((sig * sign).sum() / ((s**2).sum() / len(src)))
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def _arcface_points(size: int) -> np.ndarray:
    if size % 112 == 0:
        return ARCFACE_112 * (size / 112)
    ratio = size / 128
    return ARCFACE_112 * ratio + [8 * ratio, 0.0]


def template_points(template: str, size: int = 112) -> np.ndarray:
    """The template's points in a ``size`` x ``size`` crop: (5, 2) for ``"arcface5"``, (68, 2) for ``"68"``."""
    _check_args(template, size)
    five = _arcface_points(size)
    if template == "arcface5":
        return five
    front = MEAN_FACE_68[:, :2]
    m = similarity_matrix(five_points(front), five)
    return front @ m[:, :2].T + m[:, 2]


def _check_args(template: object, size: object) -> None:
    if template not in TEMPLATES:
        raise InputError(f"template must be one of {TEMPLATES}, got {template!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise InputError(f"size must be an integer number of pixels in [{MIN_SIZE}, {MAX_SIZE}], got {size!r}")


def _source_points(face: FaceLandmarks | np.ndarray, template: str) -> np.ndarray:
    pts = face.points if isinstance(face, FaceLandmarks) else face
    try:
        pts = np.asarray(pts, np.float64)
    except (TypeError, ValueError):
        raise InputError(f"face must be a FaceLandmarks or an (N, 2) array of points, got {type(face).__name__}") \
            from None
    allowed = [(IBUG68.num_points, 2), (5, 2)] if template == "arcface5" else [(IBUG68.num_points, 2)]
    if pts.shape not in allowed:
        raise InputError(f"template {template!r} needs points of shape {' or '.join(map(str, allowed))}, "
                         f"got {pts.shape}")
    if not np.isfinite(pts).all():
        raise InputError("face points contain NaN or inf")
    if np.ptp(pts, axis=0).max() < 1.0:
        raise InputError("face points are degenerate (all within one pixel): no transform maps them to a template")
    return five_points(pts) if template == "arcface5" and len(pts) == IBUG68.num_points else pts


def align_face(image: np.ndarray, face: FaceLandmarks | np.ndarray, size: int = 112,
               template: str = "arcface5") -> FaceCrop:
    """Crop ``face`` out of ``image``, rotated upright and scaled so its landmarks land on ``template``.

    Args:
        image: the image the landmarks are in (any ``cv2.warpAffine`` image: HxW or HxWxC numpy array).
        face: a result of ``Aligner.align``, 68 points (N, 2), or for ``"arcface5"`` the five points.
        size: side of the square crop in pixels.
        template: ``"arcface5"`` (insightface's ``norm_crop``) or ``"68"`` (all points, same framing).

    Returns:
        ``FaceCrop(image, matrix)``: the ``size`` x ``size`` crop (black outside the image) and the
        2 x 3 matrix from image to crop pixels (``cv2.invertAffineTransform`` maps crop points back).
    """
    _check_args(template, size)
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        raise InputError(f"image must be a non-empty HxW or HxWxC numpy array, got "
                         f"{getattr(image, 'shape', type(image).__name__)}")
    if image.dtype not in WARP_DTYPES:
        raise InputError(f"image pixels of type {image.dtype} cannot be warped; use one of "
                         f"{', '.join(map(str, WARP_DTYPES))}")
    src = _source_points(face, template)
    matrix = similarity_matrix(src, template_points(template, int(size)))
    crop = cv2.warpAffine(image, matrix, (int(size), int(size)), flags=cv2.INTER_LINEAR, borderValue=0)
    return FaceCrop(crop, matrix)
