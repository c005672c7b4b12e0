"""Reading frames from a video file, a camera (index), a folder of images or numpy frames in memory."""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..color import ColorOrder, check_color, is_pil_image, to_bgr
from ..imageio import IMAGE_SUFFIXES, ImageError, read_image, to_bgr8
from .results import SourceInfo

log = logging.getLogger("facealign_sdk")

DEFAULT_FOLDER_FPS = 30.0
MAX_FPS = 1000.0  # a higher (or infinite) frame rate makes time steps of ~0 and NaN smoothing
# a file whose decoding stops this many frame intervals (or this share of its duration) before the container's
# duration has ended normally; further short, the stream broke
COUNT_SLACK_FRAMES = 2
COUNT_SLACK_FRACTION = 0.01
_END = object()  # the end of in-memory frames (None is a bad frame there, not the end)


class VideoError(InputError):
    """A video source that cannot be used; the message says which and why."""


@dataclass
class VideoFrame:
    """One frame: 0-based index, timestamp (s) and the BGR image; ``image`` is None and ``error`` says
    why for an unreadable image in a folder (the frame is still accounted for)."""

    index: int
    timestamp: float
    image: np.ndarray | None
    error: str = ""


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def _in_memory(source: object) -> bool:
    """Frames in memory: any iterable (a list, a generator, an (N, H, W[, C]) array) but a path or a string."""
    return not isinstance(source, (str, bytes, Path, int)) and isinstance(source, Iterable)


def _memory_frame(item: object, index: int, color: ColorOrder) -> np.ndarray:
    """One in-memory frame (numpy in ``color`` order, or PIL) as uint8 BGR; VideoError (not an early, silent
    end) for anything that is not an image."""
    if not (isinstance(item, np.ndarray) or is_pil_image(item)):
        raise VideoError(f"in-memory frames: frame {index} is {type(item).__name__}, not a numpy or PIL image")
    try:
        return to_bgr(item, color, f"in-memory frames: frame {index}")
    except ImageError as exc:
        raise VideoError(str(exc)) from None


def _camera_index(source: str | int | Path) -> int | None:
    if isinstance(source, int):
        return source
    text = str(source)
    return int(text) if text.isdigit() and not Path(text).exists() else None


class VideoReader:
    """Frames of a video file, a camera (index), a folder of images or numpy frames in memory, in order.

    In-memory frames are any iterable of HxW or HxWxC images (a list, a generator, an (N, H, W, C)
    array; BGR like OpenCV's); an element that is not an image (None, say) raises VideoError when
    it is reached. Their time stamps come from ``fps`` (default 30).

    The source is opened and its first frame decoded in the constructor, so a missing,
    empty or undecodable input fails *before* any work (``FileNotFoundError`` /
    :class:`VideoError`). After iteration, :attr:`truncated` says whether fewer frames were
    decoded than the source claimed (a broken stream) and :attr:`stop_reason` why it ended.
    """

    def __init__(self, source: str | int | Path | Iterable[np.ndarray], fps: float | None = None,
                 max_frames: int | None = None, color: ColorOrder = "bgr") -> None:
        """``color``: the channel order of in-memory numpy frames (files and cameras are decoded as BGR)."""
        self.color = check_color(color)
        if fps is not None and not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
            raise VideoError(f"fps must be in (0, {MAX_FPS:g}], got {fps!r}")
        self.max_frames = max_frames
        self.frames_read = 0
        self.stop_reason = ""
        self._cap: cv2.VideoCapture | None = None
        self._files: list[Path] = []
        self._first: np.ndarray | None = None
        self._t0 = 0.0
        self._last_ts = -1.0
        self._frames: Iterator | None = None
        if _in_memory(source):
            self.info = self._open_memory(source, fps)
            return
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
        rate = rate if math.isfinite(rate) and 0 < rate <= MAX_FPS else (fps or DEFAULT_FOLDER_FPS)
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
        rate = rate if math.isfinite(rate) and 0 < rate <= MAX_FPS else (fps or DEFAULT_FOLDER_FPS)
        return SourceInfo(source=f"camera {index}", kind="camera", width=image.shape[1], height=image.shape[0],
                          fps=float(rate), frame_count=None)

    def _open_folder(self, path: Path, fps: float | None) -> SourceInfo:
        files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()), key=_natural_key)
        if not files:
            raise VideoError(f"{path}: folder has no images ({', '.join(IMAGE_SUFFIXES)})")
        image, problems = None, []
        for k, file in enumerate(files):  # the first readable image gives the size; a folder needs one
            try:
                image = read_image(file)
            except ImageError as exc:
                problems.append(str(exc))
                continue
            self._first = image if k == 0 else None
            break
        if image is None:
            raise VideoError(f"{path}: no readable image ({problems[0]}{', ...' if len(problems) > 1 else ''})")
        self._files = files
        return SourceInfo(source=str(path), kind="folder", width=image.shape[1], height=image.shape[0],
                          fps=fps or DEFAULT_FOLDER_FPS, frame_count=len(files))

    def _open_memory(self, frames: Iterable, fps: float | None) -> SourceInfo:
        if isinstance(frames, np.ndarray) and (frames.ndim not in (3, 4) or (frames.ndim == 3 and frames.shape[2] <= 4)):
            # (H, W, C) is one image, not H frames of W x C pixels
            raise VideoError(f"in-memory frames: an array of frames is (N, H, W[, C]), got shape {frames.shape} "
                             "(one image? pass [image])")
        count = len(frames) if hasattr(frames, "__len__") else None
        self._frames = iter(frames)
        first = next(self._frames, _END)
        if first is _END:
            raise VideoError("in-memory frames: no frames")
        self._first = _memory_frame(first, 0, self.color)
        return SourceInfo(source=f"<{type(frames).__name__} of frames>", kind="memory", width=self._first.shape[1],
                          height=self._first.shape[0], fps=fps or DEFAULT_FOLDER_FPS, frame_count=count)

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
        """True when the stream broke: decoding stopped before the end of the source."""
        return self.stop_reason == "decode error"

    def _stopped_early(self) -> bool:
        """Whether reading stopped before the end of the source. A folder's count is exact. A file's
        frame count is only an estimate in many containers (MKV / WebM: duration x nominal frame
        rate, wrong for variable frame rates or pauses), so a file is judged by where the decoder
        stopped: the end of its last frame against the container's duration (count / rate, the
        quantities OpenCV estimates the count from), within a couple of frames or 1 %."""
        known = self.info.frame_count
        if known is None:
            return False
        if self.info.kind != "file":
            return self.frames_read < known
        rate = self.info.fps
        duration = known / rate
        reached = self._last_ts + 1.0 / rate if self.frames_read else 0.0
        return duration - reached > max(COUNT_SLACK_FRAMES / rate, COUNT_SLACK_FRACTION * duration) + 1e-6

    def _timestamp(self, index: int) -> float:
        if self.info.kind == "camera":
            return time.monotonic() - self._t0
        fallback = index / self.info.fps
        if self.info.kind in ("folder", "memory") or self._cap is None:
            return fallback
        ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        ts = ms / 1000.0 if math.isfinite(ms) and ms >= 0 else fallback
        if index > 0 and ts <= self._last_ts:  # no/duplicate container timestamps
            ts = max(fallback, self._last_ts + 1.0 / self.info.fps)
        return ts

    def _next_image(self) -> np.ndarray | ImageError | None:
        """The next image; None at the end; the ImageError of an unreadable image in a folder."""
        if self._first is not None:
            image, self._first = self._first, None
            return image
        if self._frames is not None:
            item = next(self._frames, _END)
            return None if item is _END else _memory_frame(item, self.frames_read, self.color)
        if self._files:
            if self.frames_read >= len(self._files):
                return None
            try:
                return read_image(self._files[self.frames_read])
            except ImageError as exc:  # one bad file in a folder: warn and go on with the rest
                log.warning("%s (frame %d has no landmarks)", exc, self.frames_read + 1)
                return exc
        ok, image = self._cap.read() if self._cap is not None else (False, None)
        return image if ok else None

    def __iter__(self) -> Iterator[VideoFrame]:
        while self.max_frames is None or self.frames_read < self.max_frames:
            image = self._next_image()
            if image is None:
                self.stop_reason = "decode error" if self._stopped_early() else "end"
                break
            ts = self._timestamp(self.frames_read)
            self._last_ts = ts
            if isinstance(image, ImageError):
                frame = VideoFrame(self.frames_read, ts, None, error=str(image))
            else:
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
