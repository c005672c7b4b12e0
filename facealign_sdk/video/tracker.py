"""Tracking faces through a video: :class:`FaceTracker` (push frames: ``update(frame, timestamp_s)``),
:class:`VideoTrack` and :func:`track` (iterate a video source).

The tracker needs a :class:`~facealign_sdk.landmarker.Landmarker` (crop windows and landmarks) and a
``detect(image) -> list[Detection]`` callable (best first); ``Aligner.tracker()`` passes its own.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, Field

from .. import geometry
from ..boxes import box_iou as iou
from ..boxes import centre_distance
from ..detectors.base import Detection
from ..color import ColorOrder
from ..errors import InputError
from ..imageio import to_bgr8
from ..results import FaceLandmarks
from .reader import MAX_FPS, VideoFrame, VideoReader
from .results import FrameResult, TrackedFace, TrackReport
from .smoothing import LandmarkSmoother, SmoothingConfig

if TYPE_CHECKING:  # pragma: no cover
    from ..landmarker import Landmarker

log = logging.getLogger("facealign_sdk")


# the confirm threshold of a model whose manifest names none (fitted on fabrec-scaf-w32's confidence scale)
DEFAULT_CONFIRM_CONFIDENCE = 0.6


class TrackOptions(BaseModel):
    """Options of :func:`track` (also the ``facealign video`` flags)."""

    redetect_every: int = Field(10, ge=0, description="run the detector every N frames (0: only when needed)")
    min_confidence: float = Field(0.3, ge=0, le=1, description="below this mean confidence a face counts as lost")
    confirm_confidence: float | None = Field(
        None, ge=0, le=1, description="below this mean confidence the detector must confirm a tracked face: it runs on "
        "the next frame, and a face it does not find there ends (None: the model's, from its manifest, else "
        f"{DEFAULT_CONFIRM_CONFIDENCE}; for the default model the empty crop after a scene cut gives 0.4-0.7, real "
        "faces 0.8-0.95)")
    unconfirmed_seconds: float = Field(
        0.5, ge=0, description="a tracked face the detector has not found again for this long (while it ran) ends")
    max_faces: int | None = Field(None, ge=1, description="track at most this many faces (default: the Aligner's)")
    smooth: bool = True
    smoothing: SmoothingConfig = Field(default_factory=SmoothingConfig)
    batch_frames: int = Field(1, ge=1, description="frames whose crops share one network call")
    crop_deadband: float = Field(
        0.02, ge=0, description="a still face keeps its crop until its landmarks call for one this much different "
        "(fraction of the crop size; see geometry.frame_change), so its landmarks do not shake from re-cropping; "
        "a face counts as still while the wanted crop moves less than half of this per frame; 0: re-crop "
        "every frame")
    reacquire_seconds: float = Field(2.0, ge=0, description="a lost face found again within this keeps its id")
    match_iou: float = Field(0.3, gt=0, le=1, description="min IoU to match a detection to a tracked face")
    fps: float | None = Field(None, gt=0, le=MAX_FPS, allow_inf_nan=False,
                              description="frame rate for image folders (and when the file has none)")
    max_frames: int | None = Field(None, ge=1, description="stop after this many frames")


# a face whose landmarks span less than this (px, sqrt of the box area) is a collapsed ghost, not a face
MIN_FACE_PX = 4.0
# two reported faces overlapping this much are one face tracked twice
DUPLICATE_IOU = 0.5


def _size(box: Sequence[float]) -> float:
    return math.sqrt(max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0))


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
    weak: bool = False  # last confidence below confirm_confidence: re-detect next frame
    confirmed_at: float | None = None  # timestamp when the detector last found this face
    missed_since: float | None = None  # the detector ran since then and did not find it (timestamp of the first miss)
    ended: bool = False  # merged into another track of the same face: gone for good
    lost_at: float | None = None  # timestamp when lost; None while tracked
    reset_smoother: bool = True
    wanted_crop: geometry.CropFrame | None = None  # the crop the last landmarks call for (deadband)


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
    missed: bool = False  # the detector ran on this frame and did not find this face

    @property
    def score(self) -> float:
        return self.det.score if self.det is not None else self.track.score


@dataclass
class _GroupState:
    frames: list[VideoFrame]
    detections: dict[int, list[Detection]] = field(default_factory=dict)


class FaceTracker:
    """Tracks faces through consecutive frames: push them one by one to :meth:`update`, or in groups
    (whose crops share one network call) to :meth:`process`.

    >>> tracker = aligner.tracker(redetect_every=10)
    >>> result = tracker.update(frame, timestamp_s=0.033)   # a FrameResult: faces with stable ids

    ``max_faces`` caps the faces when ``options.max_faces`` does not.
    """

    def __init__(self, landmarker: Landmarker, detect: Callable[[np.ndarray], list[Detection]],
                 options: TrackOptions | None = None, max_faces: int | None = None,
                 load_image: Callable[[Any], np.ndarray] = to_bgr8) -> None:
        """``load_image`` turns a pushed frame into uint8 BGR (the Aligner's: its ``color`` order, PIL images)."""
        self.landmarker = landmarker
        self.load_image = load_image
        self.detect = detect
        self.options = options if options is not None else TrackOptions()
        self.max_faces = self.options.max_faces or max_faces
        self.confirm_confidence = next(c for c in (self.options.confirm_confidence,
                                                   landmarker.manifest.confirm_confidence, DEFAULT_CONFIRM_CONFIDENCE)
                                       if c is not None)
        self.tracks: list[_Track] = []
        self._next_id = 0
        self._since_detect: int | None = None  # frames since the last detector run
        self._frames_pushed = 0

    @property
    def faces_seen(self) -> int:
        """How many face ids have been given out so far."""
        return self._next_id

    # public
    def update(self, image: np.ndarray, timestamp_s: float) -> FrameResult:
        """The result of the next frame (an image as ``load_image`` takes it: for an Aligner's tracker a numpy
        array in its ``color`` order or a PIL image; ``timestamp_s`` in seconds, increasing)."""
        if image is None:
            raise InputError("update() needs an image (a numpy array or a PIL image)")
        frame = VideoFrame(self._frames_pushed, float(timestamp_s), self.load_image(image))
        self._frames_pushed += 1
        return self.process([frame])[0]

    def process(self, frames: Sequence[VideoFrame]) -> list[FrameResult]:
        """Landmarks for consecutive frames (all crops in one batched network call); an unreadable frame
        (no image) gets an empty result with its error, and tracking goes on over it."""
        readable = iter(self._process([f for f in frames if f.image is not None]))
        return [next(readable) if f.image is not None else
                FrameResult(frame=f.index, timestamp=f.timestamp, width=0, height=0, faces=[], error=f.error)
                for f in frames]

    def _process(self, frames: list[VideoFrame]) -> list[FrameResult]:
        group = _GroupState(frames)
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
            dets = self.detect(group.frames[pos].image)
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
                dist = min(centre_distance(det.box, tr.box), centre_distance(det.box, tr.det_box))
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
        jobs += [_Job(pos, t, t.crop, None, False, t.box, missed=True) for t in active if id(t) not in matched_tracks]
        free = [d for i, d in enumerate(dets) if i not in on_active and i not in on_lost]
        for det in free:
            if self.max_faces and len(self._active()) >= self.max_faces:
                break
            tr = self._new_track(det)
            jobs.append(self._det_job(pos, tr, det))
        return jobs

    def _new_track(self, det: Detection) -> _Track:
        tr = _Track(self._next_id, self.landmarker.frame_for(det), det.box, det.box, det.score,
                    LandmarkSmoother(self.options.smoothing))
        self._next_id += 1
        self.tracks.append(tr)
        return tr

    def _det_job(self, pos: int, tr: _Track, det: Detection) -> _Job:
        tr.crop, tr.box, tr.det_box, tr.score = self.landmarker.frame_for(det), det.box, det.box, det.score
        return _Job(pos, tr, tr.crop, det, True, det.box)

    # running
    def _run(self, group: _GroupState, jobs: list[_Job]) -> None:
        if not jobs:
            return
        points, conf = self.landmarker.landmarks_in_frames([(group.frames[j.pos].image, j.crop) for j in jobs])
        for job, p, c in zip(jobs, points, conf):
            job.points, job.conf = p, c

    def _weak(self, job: _Job) -> bool:
        return job.conf is None or float(job.conf.mean()) < self.options.min_confidence

    def _ends(self, job: _Job, now: float) -> bool:
        """Whether a face the detector did not find in this frame ends here: no face in its crop (weak),
        a collapsed crop, or the detector has missed it while its confidence is low or for too long."""
        tr = job.track
        if job.det is not None:
            return False
        if self._weak(job) or _size(geometry.box_from_points(job.points)) < MIN_FACE_PX:
            return True
        if tr.missed_since is None:
            return False
        doubtful = float(job.conf.mean()) < self.confirm_confidence
        return doubtful or now - tr.missed_since > self.options.unconfirmed_seconds

    def _repair(self, group: _GroupState, failed: list[_Job]) -> None:
        """Crops from landmarks that lost the face: retry from the detector's box in that frame."""
        retry = []
        for job in failed:
            det = job.det or self._best_detection(self._detect(group, job.pos), job)
            if det is not None:
                job.crop, job.det, job.crop_from_det = self.landmarker.frame_for(det), det, True
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
        now = frame.timestamp
        for job in jobs:
            tr = job.track
            if tr.ended or (tr.lost_at is not None and job.det is None):  # ended earlier in this group of frames
                continue
            if job.det is not None:
                tr.confirmed_at, tr.missed_since = now, None
            elif job.missed and tr.missed_since is None:
                tr.missed_since = now
            if self._ends(job, now):  # the detector does not back it up: a ghost of a face that left
                if tr.lost_at is None:
                    tr.lost_at, tr.weak, tr.missed_since = now, False, None
                continue
            faces.append(self._face(frame, job, self._weak(job)))
        faces = self._without_duplicates(faces, jobs)
        faces.sort(key=lambda f: f.face_id)
        return FrameResult(frame=frame.index, timestamp=frame.timestamp, width=frame.image.shape[1],
                           height=frame.image.shape[0], faces=faces)

    def _without_duplicates(self, faces: list[TrackedFace], jobs: list[_Job]) -> list[TrackedFace]:
        """One face tracked twice (a drifting track and a new one on the same face): keep the track the
        detector confirmed most recently (then the older id); the other ends."""
        tracks = {j.track.face_id: j.track for j in jobs}
        def last_confirmed(face: TrackedFace) -> float:
            at = tracks[face.face_id].confirmed_at
            return -math.inf if at is None else at  # 0.0 (the first frame) is a time, not "never"

        order = sorted(faces, key=lambda f: (-last_confirmed(f), f.face_id))
        kept: list[TrackedFace] = []
        for face in order:
            if any(iou(face.landmarks.box, k.landmarks.box) > DUPLICATE_IOU for k in kept):
                tr = tracks[face.face_id]
                tr.ended = True
                self.tracks = [t for t in self.tracks if t is not tr]
                continue
            kept.append(face)
        return kept

    def _update_crop(self, tr: _Track, wanted: geometry.CropFrame, from_detector: bool) -> None:
        """Crop the next frame where the landmarks say, unless the face holds still (deadband).

        Still: the wanted crop moved less than half the deadband since the last frame and
        stays within the deadband of the crop in use. A moving face is re-cropped every frame."""
        band = self.options.crop_deadband
        moving = tr.wanted_crop is None or geometry.frame_change(tr.wanted_crop, wanted) > band / 2
        if from_detector or moving or geometry.frame_change(tr.crop, wanted) > band:
            tr.crop = wanted
        tr.wanted_crop = wanted

    def _face(self, frame: VideoFrame, job: _Job, weak: bool) -> TrackedFace:
        tr = job.track
        raw = job.points
        doubtful = float(job.conf.mean()) < self.confirm_confidence
        tr.points, tr.weak, tr.lost_at, tr.score = raw, doubtful, None, job.score
        self._update_crop(tr, self.landmarker.frame_from_landmarks(raw, job.crop), job.crop_from_det)
        tr.box = geometry.box_from_points(raw)
        if tr.reset_smoother:
            tr.smoother.reset()
            tr.reset_smoother = False
        points = tr.smoother(raw, frame.timestamp) if self.options.smooth else raw
        size = (frame.image.shape[1], frame.image.shape[0])
        lm = FaceLandmarks(box=geometry.box_from_points(points), score=job.score, points=points, confidence=job.conf,
                           image_size=size)
        return TrackedFace(face_id=tr.face_id, detected=job.det is not None, success=not weak, landmarks=lm)


# -- the entry point -------------------------------------------------------------------------


class VideoTrack:
    """Iterator of :class:`FrameResult` over a video; :attr:`info` and (after iteration) :attr:`report`.

    Created by :func:`track`; the source is already open (bad input has raised by then).
    Iterate it once, either directly or through :meth:`frames` (results with their images);
    use it as a context manager (or call :meth:`close`) to release a camera when stopping early.
    """

    def __init__(self, tracker: FaceTracker, video: str | int | Path | Iterable[np.ndarray],
                 color: ColorOrder = "bgr") -> None:
        options = self.options = tracker.options
        self.reader = VideoReader(video, fps=options.fps, max_frames=options.max_frames, color=color)
        self.info = self.reader.info
        self.tracker = tracker
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
        self.report.frames_unreadable += bool(result.error)


def track(aligner: Any, video: str | int | Path | Iterable[np.ndarray], **options: Any) -> VideoTrack:
    """Landmarks for every frame of ``video`` (a file, a camera index like ``0``, an image folder, or numpy BGR
    frames in memory: a list or any iterable).

    Opens the source at once (``FileNotFoundError`` / :class:`VideoError` for bad input) and
    returns an iterator of :class:`FrameResult`, one per decoded frame in order. ``options``
    are :class:`TrackOptions` fields (``smoothing`` may be a dict or :class:`OneEuroConfig`).
    After the loop, ``.report`` (:class:`TrackReport`) says e.g. whether the stream was truncated.
    ``aligner`` is a :class:`facealign_sdk.Aligner` (its ``tracker()`` is used).
    """
    return VideoTrack(aligner.tracker(TrackOptions(**options)), video, color=getattr(aligner, "color", "bgr"))
