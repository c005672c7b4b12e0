"""Result types (pydantic) and drawing."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, computed_field, field_serializer

from .drawing import draw_contours, drawable
from .headpose import HeadPose, head_pose_or_none


class FaceLandmarks(BaseModel):
    """Landmarks of one face, in image pixel coordinates (0-based pixel centres).

    ``pose`` is estimated from the points when first read (most callers never read it: it costs a
    ``cv2.solvePnP``), in an image of ``image_size``; ``FaceLandmarks(..., pose=...)`` gives it instead.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    box: tuple[float, float, float, float]
    score: float
    points: np.ndarray  # (L, 2) float
    confidence: np.ndarray  # (L,) in [0, 1]
    image_size: tuple[int, int] | None = Field(None, exclude=True, description=(
        "(width, height) of the image: the camera of the head pose (facealign_sdk.headpose); None: no pose"))

    _pose: tuple[HeadPose | None, ...] = PrivateAttr(default=())  # () until estimated (or given)

    def __init__(self, **data: Any) -> None:
        given = "pose" in data
        pose = data.pop("pose", None)
        super().__init__(**data)
        if given:
            self._pose = (pose if pose is None else HeadPose.model_validate(pose),)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pose(self) -> HeadPose | None:
        """Head pose of a 68-point face (:mod:`facealign_sdk.headpose`), None if unknown."""
        if not self._pose:
            self._pose = (None if self.image_size is None else head_pose_or_none(self.points, self.image_size),)
        return self._pose[0]

    @property
    def mean_confidence(self) -> float:
        """The mean of the per-point confidences."""
        return float(self.confidence.mean())

    @field_serializer("points", "confidence")
    def _arrays(self, value: np.ndarray) -> list:
        return np.round(value.astype(np.float64), 3).tolist()

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict: box, score, points [[x, y], ...], confidence [...], pose {yaw, pitch, roll,
        rotation_vector, translation_vector} or None."""
        return self.model_dump()


class ImageLandmarks(BaseModel):
    """All faces found in one image, with the annotation convention their points follow."""

    source: str = ""
    width: int
    height: int
    convention: str | None = Field(description="the Aligner's convention (None: the network's own points)")
    faces: list[FaceLandmarks]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


def draw_faces(image: np.ndarray, faces: list[FaceLandmarks], min_confidence: float = 0.0) -> np.ndarray:
    """A copy of a BGR image with boxes, contour lines (68-point faces, :mod:`facealign_sdk.drawing`) and
    points drawn (low-confidence points in red)."""
    out = image.copy()
    scale = max(1, round(max(image.shape[:2]) / 400))
    for face in faces:
        if np.isfinite(face.box).all():
            x1, y1, x2, y2 = (int(round(v)) for v in drawable(face.box))
            cv2.rectangle(out, (x1, y1), (x2, y2), (255, 160, 0), scale)
        draw_contours(out, face.points, thickness=max(1, scale // 2))
        for (x, y), c in zip(drawable(face.points), face.confidence):
            if not np.isfinite([x, y]).all():
                continue
            color = (0, 255, 0) if c >= max(min_confidence, 0.3) else (0, 0, 255)
            cv2.circle(out, (int(round(x)), int(round(y))), scale + 1, color, -1, cv2.LINE_AA)
    return out
