"""Landmarks for every frame of a video: reading, tracking, One-Euro smoothing and writers.

Modules: :mod:`.results` (what a run yields), :mod:`.reader` (video file / camera / image
folder), :mod:`.smoothing` (One-Euro filters), :mod:`.tracker` (face tracking and
:func:`track`), :mod:`.writers` (CSV, JSON and annotated-video outputs).

Pipeline (see :func:`track`)::

    VideoReader (file / camera index / image folder)
      -> FaceTracker: detect on re-detect frames (every ``redetect_every`` frames, when a
         track's confidence drops, or while no face is tracked), otherwise crop each face
         from its previous landmarks (``Landmarker.frame_from_landmarks``); all crops of a
         group of ``batch_frames`` frames go through the network in one batched call
         (push frames yourself instead: ``aligner.tracker().update(frame, timestamp_s)``)
      -> LandmarkSmoother per face: One-Euro filters on the pose and on the size-normalised
       shape (speeds in face sizes per second, dt from timestamps)
      -> FrameResult per decoded frame (frame index, timestamp, faces with stable face_id)
      -> CsvWriter (OpenFace 2 style columns), JsonWriter, DrawWriter (annotated mp4)

A tracked face must be backed by the detector: when its confidence falls below
``confirm_confidence`` the detector runs on the next frame, and a face it does not find there (or
has not found for ``unconfirmed_seconds`` while it ran) ends, so no face is reported where the
detector sees none after a scene cut; two tracks on one face (IoU > 0.5) are merged.

Face ids start at 0 and are never reused for another person: a face lost for up to
``reacquire_seconds`` and detected again near where it was lost gets its old id back
(with a fresh filter); anything else gets a new id.

CSV rows for frames without a face have ``face_id = -1``, ``success = 0``, confidence 0
and *empty* landmark fields (read as NaN by pandas / numpy ``genfromtxt``).
"""

from .reader import DEFAULT_FOLDER_FPS, IMAGE_SUFFIXES, VideoError, VideoFrame, VideoReader
from .results import FrameResult, SourceInfo, TrackedFace, TrackReport
from .smoothing import LandmarkSmoother, OneEuroConfig, OneEuroFilter, SmoothingConfig, face_scale
from .tracker import FaceTracker, TrackOptions, VideoTrack, iou, track
from .writers import (
    VIDEO_SUFFIXES,
    CsvWriter,
    DrawWriter,
    JsonWriter,
    check_outputs,
    csv_header,
    csv_rows,
    draw_frame,
    open_text_output,
)

__all__ = [
    "DEFAULT_FOLDER_FPS",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "CsvWriter",
    "DrawWriter",
    "FaceTracker",
    "FrameResult",
    "JsonWriter",
    "LandmarkSmoother",
    "OneEuroConfig",
    "OneEuroFilter",
    "SmoothingConfig",
    "SourceInfo",
    "TrackOptions",
    "TrackReport",
    "TrackedFace",
    "VideoError",
    "VideoFrame",
    "VideoReader",
    "VideoTrack",
    "check_outputs",
    "csv_header",
    "csv_rows",
    "draw_frame",
    "face_scale",
    "iou",
    "open_text_output",
    "track",
]
