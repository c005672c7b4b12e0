"""The detector protocol: image -> face boxes, scores and optional 5 keypoints."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict


class Detection(BaseModel):
    """One detected face: box ``(x1, y1, x2, y2)`` in image pixels, a score and optional
    5 keypoints (image-left eye, image-right eye, nose tip, left and right mouth corners)."""

    model_config = ConfigDict(frozen=True)

    box: tuple[float, float, float, float]
    score: float = 1.0
    keypoints: tuple[tuple[float, float], ...] | None = None


@runtime_checkable
class FaceDetector(Protocol):
    """Anything with ``detect(image_bgr) -> list[Detection]``, sorted by score, best first.

    A detector may also offer ``fork() -> FaceDetector``, an independent copy: an ``Aligner`` used
    from several threads then gives each thread its own copy; it calls other detectors one thread
    at a time.
    """

    def detect(self, image: np.ndarray) -> list[Detection]:
        """The faces in a uint8 BGR image, best score first."""
        ...
