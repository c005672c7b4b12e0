"""What a video run yields: faces per frame, the opened source, and the run's report."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel

from ..results import FaceLandmarks


class TrackedFace(BaseModel):
    """One face in one frame.

    ``face_id`` is stable across frames for the same person; ``detected`` says the face detector
    found this face in this frame (else it was only tracked from its previous landmarks); ``success`` is
    ``mean confidence >= min_confidence``. ``landmarks.box`` is the detector-like box of the
    (smoothed) points, ``landmarks.score`` the last detector score of this face.
    """

    face_id: int
    detected: bool
    success: bool
    landmarks: FaceLandmarks

    @property
    def confidence(self) -> float:
        """The face's mean landmark confidence."""
        return self.landmarks.mean_confidence


class FrameResult(BaseModel):
    """All faces of one decoded frame. ``frame`` is 0-based; ``timestamp`` in seconds."""

    frame: int
    timestamp: float
    width: int
    height: int
    faces: list[TrackedFace]
    error: str = ""  # why the frame has no result (an unreadable image in a folder; width and height are then 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict of the frame and its faces (the JSON output's ``frames`` entries)."""
        return self.model_dump()


class SourceInfo(BaseModel):
    """What was opened: ``kind`` is file, camera, folder or memory (numpy frames); ``frame_count`` None when
    unknown."""

    source: str
    kind: Literal["file", "camera", "folder", "memory"]
    width: int
    height: int
    fps: float
    frame_count: int | None


class TrackReport(BaseModel):
    """How a run went. ``truncated``: fewer frames decoded than the container/folder claims."""

    source: str
    frames_decoded: int = 0
    frames_expected: int | None = None
    frames_with_face: int = 0
    frames_unreadable: int = 0
    face_rows: int = 0
    faces_seen: int = 0
    truncated: bool = False
    interrupted: bool = False
    stop_reason: str = ""
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        """Decoded frames per second of wall time (0 before any time has passed)."""
        return self.frames_decoded / self.seconds if self.seconds > 0 else 0.0
