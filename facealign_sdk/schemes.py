"""Landmark schemes: what is known about a model's points beyond their count.

A :class:`LandmarkScheme` names the points the rest of the SDK needs by role (mirror order for flip
augmentation and ``flip=True``, the eyes for the crop's roll, the outer eye corners that normalise
NME) so that no module writes iBUG-68 indices itself. A model's manifest names its scheme
(``landmark_scheme``); :func:`scheme_of` looks it up.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict

from .errors import InputError


class LandmarkScheme(BaseModel):
    """Point count and named points of one landmark convention (0-based indices)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    num_points: int
    mirror: np.ndarray | None = None  # point i of a mirrored face is point mirror[i] of the original
    right_eye: tuple[int, ...] = ()  # the image-left eye's contour
    left_eye: tuple[int, ...] = ()
    outer_eye_corners: tuple[int, int] | None = None  # the NME normaliser (300-W, 3FabRec)
    jaw: tuple[int, ...] = ()
    nose_tip: int | None = None
    mouth_corners: tuple[int, int] | None = None  # image-left corner first
    cheeks: tuple[int, int] | None = None  # jaw points at cheek height, image-left first
    # (name, point indices, closed): the face's contour lines, drawn under the points (facealign_sdk.drawing)
    contours: tuple[tuple[str, tuple[int, ...], bool], ...] = ()

    def eye_centers(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Centres of the two eyes (image-left eye first)."""
        if not self.right_eye or not self.left_eye:
            raise InputError(f"landmark scheme {self.name!r} has no eye points")
        pts = np.asarray(points, dtype=np.float64)
        return pts[list(self.right_eye)].mean(axis=0), pts[list(self.left_eye)].mean(axis=0)


# iBUG 68-point mirror permutation
FLIP_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46]  # eyes
    + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)

# the parts dlib's render_face_detections joins
CONTOURS_68: tuple[tuple[str, tuple[int, ...], bool], ...] = (
    ("jaw", tuple(range(0, 17)), False),
    ("right_brow", tuple(range(17, 22)), False),  # image-left brow
    ("left_brow", tuple(range(22, 27)), False),
    ("nose_bridge", tuple(range(27, 31)), False),
    ("lower_nose", tuple(range(30, 36)), True),  # nose tip and nostrils
    ("right_eye", tuple(range(36, 42)), True),
    ("left_eye", tuple(range(42, 48)), True),
    ("outer_lips", tuple(range(48, 60)), True),
    ("inner_lips", tuple(range(60, 68)), True),
)

IBUG68 = LandmarkScheme(
    name="ibug68", num_points=68, mirror=FLIP_68, right_eye=tuple(range(36, 42)), left_eye=tuple(range(42, 48)),
    outer_eye_corners=(36, 45), jaw=tuple(range(17)), nose_tip=30, mouth_corners=(48, 54), cheeks=(2, 14),
    contours=CONTOURS_68,
)
SCHEMES: dict[str, LandmarkScheme] = {IBUG68.name: IBUG68}


def scheme_of(name: str, num_points: int) -> LandmarkScheme:
    """The known scheme of this name and point count, else one that knows only the count."""
    scheme = SCHEMES.get(name)
    return scheme if scheme is not None and scheme.num_points == num_points else LandmarkScheme(
        name=name, num_points=num_points)


def mirror_permutation(scheme: str, num_landmarks: int) -> np.ndarray | None:
    """The point permutation of a horizontally mirrored face, or None when the scheme has none."""
    return scheme_of(scheme, num_landmarks).mirror
