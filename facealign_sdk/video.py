"""Landmarks for every frame of a video: reading, tracking, One-Euro smoothing and writers.

Pipeline (see :func:`track`)::

    VideoReader (file / camera index / image folder)
      -> FaceTracker: detect on re-detect frames (every ``redetect_every`` frames, when a
         track's confidence drops, or while no face is tracked), otherwise crop each face
         from its previous landmarks (``Aligner.frame_from_landmarks``); all crops of a
         group of ``batch_frames`` frames go through the network in one batched call
      -> LandmarkSmoother per face: One-Euro filters on the pose and on the size-normalised
       shape (speeds in face sizes per second, dt from timestamps)
      -> FrameResult per decoded frame (frame index, timestamp, faces with stable face_id)
      -> CsvWriter (OpenFace 2 style columns), JsonWriter, DrawWriter (annotated mp4)

Face ids start at 0 and are never reused for another person: a face lost for up to
``reacquire_seconds`` and detected again near where it was lost gets its old id back
(with a fresh filter); anything else gets a new id.

CSV rows for frames without a face have ``face_id = -1``, ``success = 0``, confidence 0
and *empty* landmark fields (read as NaN by pandas / numpy ``genfromtxt``).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from . import geometry
from .detectors.base import Detection
from .imageio import ImageError, read_image, to_bgr8
from .results import FaceLandmarks, draw_faces

if TYPE_CHECKING:  # pragma: no cover
    from .aligner import Aligner

log = logging.getLogger("facealign_sdk")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
DEFAULT_FOLDER_FPS = 30.0
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi")  # what --draw writes (mp4v)

# -- results ---------------------------------------------------------------------------------


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
        return self.landmarks.mean_confidence


class FrameResult(BaseModel):
    """All faces of one decoded frame. ``frame`` is 0-based; ``timestamp`` in seconds."""

    frame: int
    timestamp: float
    width: int
    height: int
    faces: list[TrackedFace]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


class SourceInfo(BaseModel):
    """What was opened: ``kind`` is file, camera or folder; ``frame_count`` None when unknown."""

    source: str
    kind: Literal["file", "camera", "folder"]
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
    face_rows: int = 0
    faces_seen: int = 0
    truncated: bool = False
    interrupted: bool = False
    stop_reason: str = ""
    seconds: float = 0.0

    @property
    def fps(self) -> float:
        return self.frames_decoded / self.seconds if self.seconds > 0 else 0.0


# -- options ---------------------------------------------------------------------------------


class OneEuroConfig(BaseModel):
    """One-Euro filter parameters (Casiez et al. 2012), with the speed in face sizes per second.

    ``min_cutoff`` (Hz): smoothing at rest (lower = smoother, more lag on slow drifts);
    ``beta``: how fast the cutoff rises with speed (higher = less lag on fast motion);
    ``d_cutoff`` (Hz): cutoff of the speed estimate itself.
    """

    model_config = ConfigDict(frozen=True)

    min_cutoff: float = Field(1.0, gt=0)
    beta: float = Field(1.0, ge=0)
    d_cutoff: float = Field(1.0, gt=0)


class SmoothingConfig(BaseModel):
    """Landmark smoothing: the face's pose and its shape get their own One-Euro filter.

    Each frame's landmarks are split into a pose (centre, size, roll: a similarity transform)
    and a shape (the landmarks in the face's own frame, centred, divided by the face size and
    rolled upright, i.e. coordinates normalised by face size). Head motion then moves only the
    pose, which is estimated from all points at once (little noise) and filtered lightly with a
    high ``beta`` (no lag); the shape, which only expressions change, is filtered strongly.
    Speeds are in face sizes (and radians) per second.
    """

    model_config = ConfigDict(frozen=True)

    pose: OneEuroConfig = Field(default_factory=lambda: OneEuroConfig(min_cutoff=4.0, beta=32.0, d_cutoff=1.0))
    shape: OneEuroConfig = Field(default_factory=lambda: OneEuroConfig(min_cutoff=0.3, beta=4.0, d_cutoff=1.0))


class TrackOptions(BaseModel):
    """Options of :func:`track` (also the ``facealign video`` flags)."""

    redetect_every: int = Field(10, ge=0, description="run the detector every N frames (0: only when needed)")
    min_confidence: float = Field(0.3, ge=0, le=1, description="below this mean confidence a face counts as lost")
    max_faces: int | None = Field(None, ge=1, description="track at most this many faces (default: the Aligner's)")
    smooth: bool = True
    smoothing: SmoothingConfig = Field(default_factory=SmoothingConfig)
    batch_frames: int = Field(1, ge=1, description="frames whose crops share one network call")
    reacquire_seconds: float = Field(2.0, ge=0, description="a lost face found again within this keeps its id")
    match_iou: float = Field(0.3, gt=0, le=1, description="min IoU to match a detection to a tracked face")
    fps: float | None = Field(None, gt=0, description="frame rate for image folders (and when the file has none)")
    max_frames: int | None = Field(None, ge=1, description="stop after this many frames")


# -- reading ---------------------------------------------------------------------------------


class VideoError(ValueError):
    """A video source that cannot be used; the message says which and why."""


@dataclass
class VideoFrame:
    """One decoded frame: 0-based index, timestamp (s) and the BGR image."""

    index: int
    timestamp: float
    image: np.ndarray


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _camera_index(source: str | int | Path) -> int | None:
    if isinstance(source, int):
        return source
    text = str(source)
    return int(text) if text.isdigit() and not Path(text).exists() else None


class VideoReader:
    """Frames of a video file, a camera (index) or a folder of images, in order.

    The source is opened and its first frame decoded in the constructor, so a missing,
    empty or undecodable input fails *before* any work (``FileNotFoundError`` /
    :class:`VideoError`). After iteration, :attr:`truncated` says whether fewer frames were
    decoded than the source claimed (a broken stream) and :attr:`stop_reason` why it ended.
    """

    def __init__(self, source: str | int | Path, fps: float | None = None, max_frames: int | None = None) -> None:
        self.max_frames = max_frames
        self.frames_read = 0
        self.stop_reason = ""
        self._cap: cv2.VideoCapture | None = None
        self._files: list[Path] = []
        self._first: np.ndarray | None = None
        self._t0 = 0.0
        self._last_ts = -1.0
        camera = _camera_index(source)
        if camera is not None:
            self.info = self._open_camera(camera, fps)
        else:
            path = Path(source)
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file or folder")
            self.info = self._open_folder(path, fps) if path.is_dir() else self._open_file(path, fps)

    # opening
    def _open_file(self, path: Path, fps: float | None) -> SourceInfo:
        if not path.is_file():
            raise VideoError(f"{path}: not a file")
        if path.stat().st_size == 0:
            raise VideoError(f"{path}: empty file (0 bytes)")
        cap = cv2.VideoCapture(str(path))
        ok, image = cap.read() if cap.isOpened() else (False, None)
        if not ok or image is None:
            cap.release()
            raise VideoError(f"{path}: not a video OpenCV can decode")
        self._cap, self._first = cap, image
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        rate = cap.get(cv2.CAP_PROP_FPS) or 0.0
        rate = rate if math.isfinite(rate) and 0 < rate < 1000 else (fps or DEFAULT_FOLDER_FPS)
        return SourceInfo(source=str(path), kind="file", width=image.shape[1], height=image.shape[0], fps=rate,
                          frame_count=count if count > 0 else None)

    def _open_camera(self, index: int, fps: float | None) -> SourceInfo:
        cap = cv2.VideoCapture(index)
        ok, image = cap.read() if cap.isOpened() else (False, None)
        if not ok or image is None:
            cap.release()
            raise VideoError(f"camera {index}: cannot be opened or gives no frames")
        self._cap, self._first, self._t0 = cap, image, time.monotonic()
        rate = cap.get(cv2.CAP_PROP_FPS) or 0.0
        rate = rate if math.isfinite(rate) and 0 < rate < 1000 else (fps or DEFAULT_FOLDER_FPS)
        return SourceInfo(source=f"camera {index}", kind="camera", width=image.shape[1], height=image.shape[0],
                          fps=float(rate), frame_count=None)

    def _open_folder(self, path: Path, fps: float | None) -> SourceInfo:
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=_natural_key)
        if not files:
            raise VideoError(f"{path}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
        try:
            image = read_image(files[0])
        except ImageError as exc:
            raise VideoError(str(exc)) from exc
        self._files, self._first = files, image
        return SourceInfo(source=str(path), kind="folder", width=image.shape[1], height=image.shape[0],
                          fps=fps or DEFAULT_FOLDER_FPS, frame_count=len(files))

    # reading
    @property
    def expected_frames(self) -> int | None:
        """Frames the source claims to hold (capped by ``max_frames``); None when unknown."""
        n = self.info.frame_count
        if self.max_frames is not None:
            return min(n, self.max_frames) if n is not None else None
        return n

    @property
    def truncated(self) -> bool:
        """True when the stream ended before the frame count the container announced."""
        expected = self.expected_frames
        return self.stop_reason == "decode error" and expected is not None and self.frames_read < expected

    def _timestamp(self, index: int) -> float:
        if self.info.kind == "camera":
            return time.monotonic() - self._t0
        fallback = index / self.info.fps
        if self.info.kind == "folder" or self._cap is None:
            return fallback
        ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        ts = ms / 1000.0 if math.isfinite(ms) and ms >= 0 else fallback
        if index > 0 and ts <= self._last_ts:  # no/duplicate container timestamps
            ts = max(fallback, self._last_ts + 1.0 / self.info.fps)
        return ts

    def _next_image(self) -> np.ndarray | None:
        if self._first is not None:
            image, self._first = self._first, None
            return image
        if self._files:
            if self.frames_read >= len(self._files):
                return None
            try:
                return read_image(self._files[self.frames_read])
            except ImageError as exc:
                log.warning("%s", exc)
                return None
        ok, image = self._cap.read() if self._cap is not None else (False, None)
        return image if ok else None

    def __iter__(self) -> Iterator[VideoFrame]:
        while self.max_frames is None or self.frames_read < self.max_frames:
            image = self._next_image()
            if image is None:
                known = self.info.frame_count
                self.stop_reason = "decode error" if known is not None and self.frames_read < known else "end"
                break
            ts = self._timestamp(self.frames_read)
            self._last_ts = ts
            frame = VideoFrame(self.frames_read, ts, to_bgr8(image))
            self.frames_read += 1
            yield frame
        else:
            self.stop_reason = "max_frames"
        self.close()

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


# -- smoothing -------------------------------------------------------------------------------


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro low-pass filter over an array of coordinates (e.g. (L, 2) landmarks).

    The speed that opens the filter is measured in *face sizes per second* (divide by
    ``scale``), as MediaPipe's landmark smoothing does, so the same parameters work for
    small and large faces. ``dt`` comes from timestamps, not frame numbers.
    """

    def __init__(self, config: OneEuroConfig | None = None) -> None:
        self.config = config or OneEuroConfig()
        self.reset()

    def reset(self) -> None:
        """Forget the history: the next value passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def __call__(self, value: np.ndarray, timestamp: float, scale: float | np.ndarray = 1.0) -> np.ndarray:
        """Filtered ``value`` at ``timestamp`` (s); the speed is divided by ``scale`` (per component or one)."""
        x = np.asarray(value, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), timestamp
            return x.copy()
        dt = timestamp - self._t
        if not dt > 0:  # repeated / out-of-order timestamp: keep the state, no update
            return self._x.copy()
        cfg = self.config
        speed = (x - self._x) / dt / np.maximum(scale, 1e-6)
        a_d = _alpha(cfg.d_cutoff, dt)
        self._dx = a_d * speed + (1 - a_d) * self._dx
        a = _alpha(cfg.min_cutoff + cfg.beta * np.abs(self._dx), dt)
        self._x = a * x + (1 - a) * self._x
        self._t = timestamp
        return self._x.copy()


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


class LandmarkSmoother:
    """Smooths the landmarks of one face over time (see :class:`SmoothingConfig`).

    ``points = centre + size * R(roll) @ shape``: centre is the mean point, size the RMS
    distance to it, roll the rotation that best fits the previous smoothed shape to the new
    points (least squares). Pose ``(cx, cy, log size, roll)`` and shape go through
    :class:`OneEuroFilter` with timestamps for dt; the result is put back together.
    """

    def __init__(self, config: SmoothingConfig | None = None) -> None:
        self.config = config or SmoothingConfig()
        self.pose = OneEuroFilter(self.config.pose)
        self.shape = OneEuroFilter(self.config.shape)
        self._ref: np.ndarray | None = None

    def reset(self) -> None:
        """Start afresh (a new or re-acquired face): the next points pass through unchanged."""
        self.pose.reset()
        self.shape.reset()
        self._ref = None

    def __call__(self, points: np.ndarray, timestamp: float) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64)
        centre = pts.mean(axis=0)
        rel = pts - centre
        size = max(float(np.sqrt((rel**2).sum(axis=1).mean())), 1e-6)
        rel /= size
        roll = 0.0
        if self._ref is not None and self._ref.shape == rel.shape:
            cross = float((self._ref[:, 0] * rel[:, 1] - self._ref[:, 1] * rel[:, 0]).sum())
            roll = math.atan2(cross, float((self._ref * rel).sum()))
        shape = rel @ _rotation(roll)  # rotate by -roll: the face's own frame
        pose = self.pose(np.array([centre[0], centre[1], math.log(size), roll]), timestamp,
                         np.array([size, size, 1.0, 1.0]))
        smooth_shape = self.shape(shape, timestamp)
        self._ref = smooth_shape
        return pose[:2] + math.exp(pose[2]) * (smooth_shape @ _rotation(pose[3]).T)


def face_scale(points: np.ndarray) -> float:
    """Face size in pixels: sqrt(width * height) of the landmarks' bounding box."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return float(math.sqrt(max(hi[0] - lo[0], 1.0) * max(hi[1] - lo[1], 1.0)))


# -- tracking --------------------------------------------------------------------------------


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Distance of the box centres in units of box ``b``'s size."""
    size = math.sqrt(max((b[2] - b[0]) * (b[3] - b[1]), 1e-6))
    return math.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2) / size


@dataclass
class _Track:
    """State of one tracked face."""

    face_id: int
    crop: geometry.CropFrame
    box: tuple[float, float, float, float]  # detector-like box of the last landmarks
    det_box: tuple[float, float, float, float]  # the last detector box
    score: float
    smoother: LandmarkSmoother
    points: np.ndarray | None = None
    weak: bool = False  # last confidence below threshold: re-detect next frame
    lost_at: float | None = None  # timestamp when lost; None while tracked
    reset_smoother: bool = True


@dataclass
class _Job:
    """One crop to run: a track in a frame."""

    pos: int  # position in the group
    track: _Track
    crop: geometry.CropFrame
    det: Detection | None  # the detection of this face in this frame, if the detector ran and found it
    crop_from_det: bool  # the crop is the detector's (else: from the previous landmarks)
    ref_box: tuple[float, float, float, float]  # where the face was expected
    points: np.ndarray | None = None
    conf: np.ndarray | None = None

    @property
    def score(self) -> float:
        return self.det.score if self.det is not None else self.track.score


@dataclass
class _GroupState:
    frames: list[VideoFrame]
    detections: dict[int, list[Detection]] = field(default_factory=dict)


class FaceTracker:
    """Tracks faces through consecutive frames; feed groups of frames to :meth:`process`."""

    def __init__(self, aligner: Aligner, options: TrackOptions) -> None:
        self.aligner = aligner
        self.options = options
        self.max_faces = options.max_faces or aligner.max_faces
        self.tracks: list[_Track] = []
        self._next_id = 0
        self._since_detect: int | None = None  # frames since the last detector run

    @property
    def faces_seen(self) -> int:
        return self._next_id

    # public
    def process(self, frames: Sequence[VideoFrame]) -> list[FrameResult]:
        """Landmarks for consecutive frames (all crops in one batched network call)."""
        group = _GroupState(list(frames))
        jobs = [job for pos in range(len(frames)) for job in self._plan(group, pos)]
        self._run(group, jobs)
        self._repair(group, [j for j in jobs if not j.crop_from_det and self._weak(j)])
        return [self._update(group.frames[pos], [j for j in jobs if j.pos == pos]) for pos in range(len(frames))]

    # planning
    def _active(self) -> list[_Track]:
        return [t for t in self.tracks if t.lost_at is None]

    def _detect_due(self) -> bool:
        n = self.options.redetect_every
        active = self._active()
        return (
            self._since_detect is None
            or not active
            or any(t.weak for t in active)
            or (n > 0 and self._since_detect >= n)
        )

    def _detect(self, group: _GroupState, pos: int) -> list[Detection]:
        if pos not in group.detections:
            dets = self.aligner.detect(group.frames[pos].image)
            group.detections[pos] = dets[: self.max_faces] if self.max_faces else dets
        return group.detections[pos]

    def _plan(self, group: _GroupState, pos: int) -> list[_Job]:
        if self._detect_due():
            self._since_detect = 0
            self._expire(group.frames[pos].timestamp)
            jobs = self._associate(self._detect(group, pos), pos)
        else:
            jobs = [_Job(pos, t, t.crop, None, False, t.box) for t in self._active()]
        self._since_detect = (self._since_detect or 0) + 1
        return jobs

    def _expire(self, now: float) -> None:
        keep = self.options.reacquire_seconds
        self.tracks = [t for t in self.tracks if t.lost_at is None or now - t.lost_at <= keep]

    def _match(self, dets: list[Detection], tracks: list[_Track], lost: bool, taken: set[int]) -> dict[int, int]:
        """Greedy matching detection index -> track index (highest IoU first)."""
        pairs = []
        for di, det in enumerate(dets):
            if di in taken:
                continue
            for ti, tr in enumerate(tracks):
                overlap = max(iou(det.box, tr.box), iou(det.box, tr.det_box))
                dist = min(_centre_distance(det.box, tr.box), _centre_distance(det.box, tr.det_box))
                if overlap >= self.options.match_iou or (lost and dist < 0.75):
                    pairs.append((overlap, -dist, di, ti))
        matched: dict[int, int] = {}
        for _, _, di, ti in sorted(pairs, reverse=True):
            if di not in matched and ti not in matched.values():
                matched[di] = ti
        return matched

    def _associate(self, dets: list[Detection], pos: int) -> list[_Job]:
        """Match detections to tracked, then to lost faces; start new tracks; make this frame's jobs."""
        active = self._active()
        lost = [t for t in self.tracks if t.lost_at is not None]
        on_active = self._match(dets, active, False, set())
        on_lost = self._match(dets, lost, True, set(on_active))
        jobs: list[_Job] = []
        for di, ti in on_active.items():
            tr, det = active[ti], dets[di]
            if tr.weak or iou(det.box, tr.box) < 0.5:  # drifted or unsure: take the detector's crop
                jobs.append(self._det_job(pos, tr, det))
            else:  # confirmed where the landmarks put it: keep the (steadier) landmark crop
                jobs.append(_Job(pos, tr, tr.crop, det, False, tr.box))
                tr.det_box = det.box
        for di, ti in on_lost.items():
            tr = lost[ti]
            tr.lost_at, tr.reset_smoother = None, True
            jobs.append(self._det_job(pos, tr, dets[di]))
        matched_tracks = {id(j.track) for j in jobs}
        jobs += [_Job(pos, t, t.crop, None, False, t.box) for t in active if id(t) not in matched_tracks]
        free = [d for i, d in enumerate(dets) if i not in on_active and i not in on_lost]
        for det in free:
            if self.max_faces and len(self._active()) >= self.max_faces:
                break
            tr = self._new_track(det)
            jobs.append(self._det_job(pos, tr, det))
        return jobs

    def _new_track(self, det: Detection) -> _Track:
        tr = _Track(self._next_id, self.aligner.frame_for(det), det.box, det.box, det.score,
                    LandmarkSmoother(self.options.smoothing))
        self._next_id += 1
        self.tracks.append(tr)
        return tr

    def _det_job(self, pos: int, tr: _Track, det: Detection) -> _Job:
        tr.crop, tr.box, tr.det_box, tr.score = self.aligner.frame_for(det), det.box, det.box, det.score
        return _Job(pos, tr, tr.crop, det, True, det.box)

    # running
    def _run(self, group: _GroupState, jobs: list[_Job]) -> None:
        if not jobs:
            return
        points, conf = self.aligner.landmarks_in_frames([(group.frames[j.pos].image, j.crop) for j in jobs])
        for job, p, c in zip(jobs, points, conf):
            job.points, job.conf = p, c

    def _weak(self, job: _Job) -> bool:
        return job.conf is None or float(job.conf.mean()) < self.options.min_confidence

    def _repair(self, group: _GroupState, failed: list[_Job]) -> None:
        """Crops from landmarks that lost the face: retry from the detector's box in that frame."""
        retry = []
        for job in failed:
            det = job.det or self._best_detection(self._detect(group, job.pos), job)
            if det is not None:
                job.crop, job.det, job.crop_from_det = self.aligner.frame_for(det), det, True
                retry.append(job)
        self._run(group, retry)

    def _best_detection(self, dets: list[Detection], job: _Job) -> Detection | None:
        """The detection overlapping most with where the face was expected or last detected."""
        def overlap(d: Detection) -> float:
            return max(iou(d.box, job.ref_box), iou(d.box, job.track.det_box))

        best = max(dets, key=overlap, default=None)
        return best if best is not None and overlap(best) >= self.options.match_iou else None

    # updating
    def _update(self, frame: VideoFrame, jobs: list[_Job]) -> FrameResult:
        faces = []
        for job in jobs:
            tr, weak = job.track, self._weak(job)
            if weak and job.det is None:  # no face in the tracked crop, and the detector did not see one
                if tr.lost_at is None:
                    tr.lost_at, tr.weak = frame.timestamp, False
                continue
            faces.append(self._face(frame, job, weak))
        faces.sort(key=lambda f: f.face_id)
        return FrameResult(frame=frame.index, timestamp=frame.timestamp, width=frame.image.shape[1],
                           height=frame.image.shape[0], faces=faces)

    def _face(self, frame: VideoFrame, job: _Job, weak: bool) -> TrackedFace:
        tr = job.track
        raw = job.points
        tr.points, tr.weak, tr.lost_at, tr.score = raw, weak, None, job.score
        tr.crop = self.aligner.frame_from_landmarks(raw)
        tr.box = geometry.box_from_points(raw)
        if tr.reset_smoother:
            tr.smoother.reset()
            tr.reset_smoother = False
        points = tr.smoother(raw, frame.timestamp) if self.options.smooth else raw
        lm = FaceLandmarks(box=geometry.box_from_points(points), score=job.score, points=points, confidence=job.conf)
        return TrackedFace(face_id=tr.face_id, detected=job.det is not None, success=not weak, landmarks=lm)


# -- the entry point -------------------------------------------------------------------------


class VideoTrack:
    """Iterator of :class:`FrameResult` over a video; :attr:`info` and (after iteration) :attr:`report`.

    Created by :func:`track`; the source is already open (bad input has raised by then).
    Iterate it once, either directly or through :meth:`frames` (results with their images);
    use it as a context manager (or call :meth:`close`) to release a camera when stopping early.
    """

    def __init__(self, aligner: Aligner, video: str | int | Path, options: TrackOptions) -> None:
        self.options = options
        self.reader = VideoReader(video, fps=options.fps, max_frames=options.max_frames)
        self.info = self.reader.info
        self.tracker = FaceTracker(aligner, options)
        self.report = TrackReport(source=self.info.source, frames_expected=self.reader.expected_frames)
        self._results: Iterator[FrameResult] | None = None

    def _groups(self) -> Iterator[list[VideoFrame]]:
        group: list[VideoFrame] = []
        for frame in self.reader:
            group.append(frame)
            if len(group) >= self.options.batch_frames:
                yield group
                group = []
        if group:
            yield group

    def frames(self) -> Iterator[tuple[FrameResult, np.ndarray]]:
        """Like iterating, but each result comes with its decoded BGR frame (for drawing)."""
        start = time.perf_counter()
        try:
            for group in self._groups():
                for result, frame in zip(self.tracker.process(group), group):
                    self._count(result)
                    self.report.seconds = time.perf_counter() - start
                    yield result, frame.image
        except KeyboardInterrupt:
            self.report.interrupted, self.report.stop_reason = True, "interrupted"
            raise
        except GeneratorExit:
            self.report.stop_reason = "stopped by the caller"
            raise
        finally:
            self.reader.close()
            self.report.seconds = time.perf_counter() - start
            self.report.faces_seen = self.tracker.faces_seen
        self.report.stop_reason = self.reader.stop_reason
        self.report.truncated = self.reader.truncated
        if self.report.truncated:
            log.warning("%s: the stream broke after %d of %d expected frames (truncated or damaged file)",
                        self.info.source, self.report.frames_decoded, self.report.frames_expected)

    def __iter__(self) -> VideoTrack:
        return self

    def __next__(self) -> FrameResult:
        if self._results is None:
            self._results = (result for result, _ in self.frames())
        return next(self._results)

    def close(self) -> None:
        """Stop early and release the source (a camera, for instance)."""
        if self._results is not None:
            self._results.close()
        self.reader.close()

    def __enter__(self) -> VideoTrack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count(self, result: FrameResult) -> None:
        self.report.frames_decoded += 1
        if result.faces:
            self.report.frames_with_face += 1
        self.report.face_rows += len(result.faces)


def track(aligner: Aligner, video: str | int | Path, **options: Any) -> VideoTrack:
    """Landmarks for every frame of ``video`` (a file, a camera index like ``0``, or an image folder).

    Opens the source at once (``FileNotFoundError`` / :class:`VideoError` for bad input) and
    returns an iterator of :class:`FrameResult`, one per decoded frame in order. ``options``
    are :class:`TrackOptions` fields (``smoothing`` may be a dict or :class:`OneEuroConfig`).
    After the loop, ``.report`` (:class:`TrackReport`) says e.g. whether the stream was truncated.
    """
    return VideoTrack(aligner, video, TrackOptions(**options))


# -- writers ---------------------------------------------------------------------------------


def csv_header(num_landmarks: int) -> list[str]:
    """OpenFace 2 columns: frame, face_id, timestamp, confidence, success, x_*, y_*, then c_* per landmark."""
    idx = range(num_landmarks)
    return (["frame", "face_id", "timestamp", "confidence", "success"]
            + [f"x_{i}" for i in idx] + [f"y_{i}" for i in idx] + [f"c_{i}" for i in idx])


def csv_rows(result: FrameResult, num_landmarks: int) -> list[list[str]]:
    """Rows of one frame: one per face, or one ``face_id=-1, success=0`` row with empty landmarks."""
    frame, ts = str(result.frame + 1), f"{result.timestamp:.3f}"
    if not result.faces:
        return [[frame, "-1", ts, "0", "0"] + [""] * (3 * num_landmarks)]
    rows = []
    for face in result.faces:
        lm = face.landmarks
        rows.append([frame, str(face.face_id), ts, f"{lm.mean_confidence:.3f}", str(int(face.success)),
                     *(f"{v:.2f}" for v in lm.points[:, 0]), *(f"{v:.2f}" for v in lm.points[:, 1]),
                     *(f"{v:.3f}" for v in lm.confidence)])
    return rows


class CsvWriter:
    """Writes frame results as CSV rows, flushed after every frame (valid when interrupted)."""

    def __init__(self, stream: IO[str], num_landmarks: int) -> None:
        self.stream, self.num_landmarks = stream, num_landmarks
        self._csv = csv.writer(stream, lineterminator="\n")
        self._csv.writerow(csv_header(num_landmarks))
        stream.flush()

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        buffer = io.StringIO()  # one write call per frame: Ctrl-C cannot leave half a row
        csv.writer(buffer, lineterminator="\n").writerows(csv_rows(result, self.num_landmarks))
        self.stream.write(buffer.getvalue())
        self.stream.flush()

    def close(self, report: TrackReport | None = None) -> None:
        self.stream.close()


class JsonWriter:
    """Streams ``{"source": ..., "num_landmarks": L, "frames": [...], "report": {...}}``;
    :meth:`close` finishes the document (also after an interruption)."""

    def __init__(self, stream: IO[str], info: SourceInfo, num_landmarks: int) -> None:
        self.stream, self._first = stream, True
        head = {"source": info.model_dump(), "num_landmarks": num_landmarks}
        stream.write(json.dumps(head)[:-1] + ', "frames": [\n')

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        self.stream.write(("" if self._first else ",\n") + json.dumps(result.to_dict()))
        self._first = False
        self.stream.flush()

    def close(self, report: TrackReport | None = None) -> None:
        tail = json.dumps(report.model_dump()) if report is not None else "null"
        self.stream.write(f'\n], "report": {tail}}}\n')
        self.stream.close()


def draw_frame(image: np.ndarray, result: FrameResult) -> np.ndarray:
    """The frame with boxes, points and face ids drawn."""
    out = draw_faces(image, [f.landmarks for f in result.faces])
    size = max(image.shape[:2]) / 800
    scale, thick = max(0.5, size), max(1, round(2 * size))
    for face in result.faces:
        x1, y1 = (int(round(v)) for v in face.landmarks.box[:2])
        cv2.putText(out, f"id {face.face_id}", (x1, max(int(20 * scale), y1 - 8)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 160, 0), thick, cv2.LINE_AA)
    return out


class DrawWriter:
    """Annotated copy of the video (mp4v) through ``cv2.VideoWriter``."""

    def __init__(self, path: Path, info: SourceInfo) -> None:
        self.size = (info.width, info.height)
        self.writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), info.fps, self.size)
        if not self.writer.isOpened():
            raise PermissionError(f"{path}: cannot write a video here")

    def write(self, result: FrameResult, image: np.ndarray) -> None:
        if (image.shape[1], image.shape[0]) != self.size:  # image folders may mix sizes
            image = cv2.resize(image, self.size)
            scale = (self.size[0] / result.width, self.size[1] / result.height)
            result = _scaled(result, scale)
        self.writer.write(draw_frame(image, result))

    def close(self, report: TrackReport | None = None) -> None:
        self.writer.release()


def _scaled(result: FrameResult, scale: tuple[float, float]) -> FrameResult:
    sx, sy = scale
    faces = []
    for f in result.faces:
        lm = f.landmarks
        box = (lm.box[0] * sx, lm.box[1] * sy, lm.box[2] * sx, lm.box[3] * sy)
        new = FaceLandmarks(box=box, score=lm.score, points=lm.points * [sx, sy], confidence=lm.confidence)
        faces.append(f.model_copy(update={"landmarks": new}))
    return result.model_copy(update={"faces": faces})


def check_outputs(outputs: Sequence[Path | None], overwrite: bool, source: str | int | Path | None = None) -> list[Path]:
    """Fail before any work if an output cannot be written: exists (without ``overwrite``), is a
    folder, equals the input or another output, or its folder is missing / not writable.
    ``outputs`` is ``[csv, json, draw]`` (None for those not wanted); the third must be a video name."""
    paths = [Path(p) for p in outputs if p is not None]
    if not paths:
        raise ValueError("nothing to write: give --out CSV, --json FILE and/or --draw VIDEO")
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise ValueError("the output files must be different from each other")
    src = Path(str(source)).resolve() if source is not None and Path(str(source)).exists() else None
    for path, real in zip(paths, resolved):
        if path in outputs[2:] and path.suffix.lower() not in VIDEO_SUFFIXES:
            raise ValueError(f"{path}: the annotated video must end in {', '.join(VIDEO_SUFFIXES)}")
        if src is not None and real == src:
            raise ValueError(f"{path}: output would overwrite the input video")
        if path.is_dir():
            raise IsADirectoryError(f"{path}: is a folder, expected a file name")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
        parent = path.parent if str(path.parent) else Path(".")
        if not parent.exists():
            raise FileNotFoundError(f"{parent}: output folder does not exist")
        if not parent.is_dir():
            raise NotADirectoryError(f"{parent}: not a folder")
        if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise PermissionError(f"{path}: not writable")
    return paths


def open_text_output(path: Path, overwrite: bool) -> IO[str]:
    """Open an output for writing (``x`` mode unless overwriting): turns OS errors into clear ones."""
    try:
        return open(path, "w" if overwrite else "x", newline="", encoding="utf-8")
    except FileExistsError:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it") from None
    except OSError as exc:
        raise PermissionError(f"{path}: cannot write ({exc.strerror or exc})") from None
