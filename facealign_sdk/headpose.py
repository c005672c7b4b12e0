"""Head pose from 68 landmarks: the rotation and translation of a generic 3-D face
(:data:`facealign_sdk.meanface.MEAN_FACE_68`, millimetres) that best reproject onto the points,
found with ``cv2.solvePnP`` for a pinhole camera.

Camera: focal length in pixels = the image width unless given, principal point at the image centre
(``((w - 1) / 2, (h - 1) / 2)`` in the 0-based pixel-centre coordinates of the points), no lens
distortion. Camera axes are OpenCV's: x right, y down, z into the scene.

Angles (degrees), read as a viewer of the image sees the face:

* ``yaw`` > 0: the face turns towards the image's right (its nose moves right);
* ``pitch`` > 0: the face looks up;
* ``roll`` > 0: the face tilts so that its image-right eye is lower (the sign of
  :func:`facealign_sdk.geometry.roll_from_eyes`).

``R = Rz(roll) @ Ry(-yaw) @ Rx(-pitch)`` is the rotation from the mean face's frame (x to the
image right, y down, z away from the camera when the face looks at the camera) to the camera's;
``rotation_vector`` is its Rodrigues vector and ``translation_vector`` the nose tip in camera
coordinates (mm, as the mean face's eye corners are 90 mm apart: distances scale with the real head).
A generic face gives a generic pose: expect a few degrees of error on any one person.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, field_serializer

from .errors import InputError
from .meanface import MEAN_FACE_68

# points closer together than this (pixels, RMS about their centre) carry no pose
MIN_SPREAD_PX = 2.0
# the most RMS reprojection error, as a fraction of that spread, of landmarks taken to be a face: annotated
# faces of 300w/val and ytf68/val stay below 0.29, aflw2000/train below 0.24 but for one face at 0.45 (medians
# 0.11-0.16); uniformly random points give 4.7 or more (median 8.5)
MAX_REPROJECTION_ERROR = 0.5
# the most degrees between a face's forward direction and its line of sight to the camera: beyond 90 the camera
# sees the back of the head. Annotated aflw2000/train faces reach 112.8 (its jaw follows the 3-D contour on
# profiles); the Aligner's points (boxes from the annotations) on the 129 faces annotated as turned beyond 75
# degrees reach 47.5. The mirror image of a face's points (a flipped image, the points not swapped) solves as
# a face seen from behind: 128 or more for faces turned less than 60 degrees.
MAX_VIEW_ANGLE = 120.0


class PoseError(InputError):
    """Landmarks from which no head pose can be estimated (wrong shape, NaN, degenerate, no solution)."""


Vector3 = tuple[float, float, float]


class HeadPose(BaseModel):
    """A head pose: angles in degrees and the camera-from-face rotation / translation (see the module)."""

    model_config = ConfigDict(frozen=True)

    yaw: float
    pitch: float
    roll: float
    rotation_vector: Vector3  # Rodrigues vector of R (radians)
    translation_vector: Vector3  # the mean face's nose tip in camera coordinates, mm

    @property
    def rotation_matrix(self) -> np.ndarray:
        """R (3 x 3): face frame -> camera frame."""
        return cv2.Rodrigues(np.array(self.rotation_vector, np.float64))[0]

    @field_serializer("yaw", "pitch", "roll", "rotation_vector", "translation_vector")
    def _rounded(self, value: float | Vector3) -> float | list[float]:
        return round(value, 3) if isinstance(value, float) else [round(v, 5) for v in value]


def rotation_from_angles(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``Rz(roll) @ Ry(-yaw) @ Rx(-pitch)`` for angles in degrees."""
    a, b, c = math.radians(roll), math.radians(-yaw), math.radians(-pitch)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    ry = np.array([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]])
    rx = np.array([[1, 0, 0], [0, math.cos(c), -math.sin(c)], [0, math.sin(c), math.cos(c)]])
    return rz @ ry @ rx


def angles_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation matrix; the inverse of :func:`rotation_from_angles`
    for yaw within +-90 degrees."""
    r = np.asarray(rotation, np.float64)
    b = math.asin(float(np.clip(-r[2, 0], -1.0, 1.0)))
    a = math.atan2(r[1, 0], r[0, 0])
    c = math.atan2(r[2, 1], r[2, 2])
    return math.degrees(-b), math.degrees(-c), math.degrees(a)


def camera_matrix(image_size: Sequence[int], focal_length: float | None = None) -> np.ndarray:
    """The pinhole camera of the module docstring for an image of ``(width, height)`` pixels."""
    try:
        width, height = (_positive(v) for v in image_size)
    except (TypeError, ValueError):
        raise PoseError(f"image_size is (width, height) in pixels, both > 0, got {image_size!r}") from None
    try:
        f = width if focal_length is None else _positive(focal_length)
    except (TypeError, ValueError):
        raise PoseError(f"focal_length must be a positive number of pixels, got {focal_length!r}") from None
    return np.array([[f, 0, (width - 1) / 2], [0, f, (height - 1) / 2], [0, 0, 1]], np.float64)


def _positive(value: object) -> float:
    """``value`` as a finite number > 0, else ValueError (TypeError for what is not a number, bools included)."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("a bool is not a size")
    number = float(value)  # type: ignore[arg-type]
    if not (number > 0 and math.isfinite(number)):
        raise ValueError(f"{value!r} is not a positive number")
    return number


def view_angle(rotation: np.ndarray, translation: Sequence[float]) -> float:
    """Degrees between the face's forward direction (-z of the mean face, rotated) and the line from its
    nose tip to the camera: 0 when it looks into the camera, 90 in profile, 180 from behind."""
    t = np.asarray(translation, np.float64)
    cos = float(np.asarray(rotation, np.float64)[:, 2] @ t / np.linalg.norm(t))
    return math.degrees(math.acos(min(1.0, max(-1.0, cos))))


def _spread(points: np.ndarray) -> float:
    return float(np.sqrt(((points - points.mean(0)) ** 2).sum(1).mean()))


def _check_points(points: np.ndarray) -> np.ndarray:
    try:
        pts = np.asarray(points, np.float64)
    except (TypeError, ValueError):
        raise PoseError(f"head pose needs (68, 2) landmarks, got {type(points).__name__}") from None
    if pts.shape != MEAN_FACE_68[:, :2].shape:
        raise PoseError(f"head pose needs the 68 iBUG points as a (68, 2) array, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise PoseError("head pose: the landmarks contain NaN or inf")
    spread = _spread(pts)
    if spread < MIN_SPREAD_PX:
        raise PoseError(f"head pose: the landmarks are degenerate (spread {spread:.3g} px about their centre)")
    return pts


def estimate_head_pose(points: np.ndarray, image_size: Sequence[int],
                       focal_length: float | None = None) -> HeadPose:
    """The head pose of 68 iBUG points (image pixels) in an image of ``(width, height)`` pixels.

    ``cv2.solvePnP``: SQPnP for the global solution, then Levenberg-Marquardt on the reprojection
    error. Raises :class:`PoseError` for points that are not (68, 2) finite numbers, degenerate points
    (all in one spot) and points no face pose reproduces (a solution behind the camera, one that
    misses them by more than ``MAX_REPROJECTION_ERROR`` times their spread, or one that shows the camera
    the back of the head: ``MAX_VIEW_ANGLE``).
    """
    pts = _check_points(points)
    camera = camera_matrix(image_size, focal_length)
    model = MEAN_FACE_68.astype(np.float64)
    try:
        ok, rvec, tvec = cv2.solvePnP(model, pts, camera, None, flags=cv2.SOLVEPNP_SQPNP)
        if ok:
            ok, rvec, tvec = cv2.solvePnP(model, pts, camera, None, rvec, tvec, useExtrinsicGuess=True,
                                          flags=cv2.SOLVEPNP_ITERATIVE)
    except cv2.error as exc:
        raise PoseError(f"head pose: cv2.solvePnP failed on these landmarks ({str(exc).strip().splitlines()[-1]})") \
            from exc
    rvec, tvec = rvec.reshape(3), tvec.reshape(3)
    if not (ok and np.isfinite(rvec).all() and np.isfinite(tvec).all() and tvec[2] > 0):
        raise PoseError("head pose: no face pose in front of the camera reproduces these landmarks")
    error = float(np.sqrt(((project_mean_face(cv2.Rodrigues(rvec)[0], tvec, camera) - pts) ** 2).sum(1).mean()))
    if error > MAX_REPROJECTION_ERROR * _spread(pts):
        raise PoseError(f"head pose: the landmarks are not a face (the best pose misses them by {error:.3g} px RMS, "
                        f"more than {MAX_REPROJECTION_ERROR:g} x their spread)")
    if view_angle(cv2.Rodrigues(rvec)[0], tvec) > MAX_VIEW_ANGLE:
        raise PoseError(f"head pose: the landmarks fit only a face turned away from the camera (more than "
                        f"{MAX_VIEW_ANGLE:g} degrees): mirrored points, or points of another order than iBUG 68")
    yaw, pitch, roll = angles_from_rotation(cv2.Rodrigues(rvec)[0])
    return HeadPose(yaw=yaw, pitch=pitch, roll=roll, rotation_vector=tuple(float(v) for v in rvec),
                    translation_vector=tuple(float(v) for v in tvec))


def head_pose_or_none(points: np.ndarray, image_size: Sequence[int]) -> HeadPose | None:
    """The head pose of a result's points, or None where there is none: not 68 points, or points that
    fit no face pose (:class:`PoseError`). What the ``Aligner`` and the video tracker attach to results."""
    if np.shape(points) != MEAN_FACE_68[:, :2].shape:
        return None
    try:
        return estimate_head_pose(points, image_size)
    except PoseError:
        return None


def project_mean_face(rotation: np.ndarray, translation: Sequence[float], camera: np.ndarray) -> np.ndarray:
    """(68, 2) image points of the mean face at a pose (what :func:`estimate_head_pose` inverts)."""
    rvec = cv2.Rodrigues(np.asarray(rotation, np.float64))[0]
    pts, _ = cv2.projectPoints(MEAN_FACE_68.astype(np.float64), rvec, np.asarray(translation, np.float64),
                               camera, None)
    return pts.reshape(-1, 2)
