"""Writers of frame results: OpenFace-style CSV, streamed JSON, annotated video; output checks."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from ..errors import InputError
from ..outputs import check_output_file
from ..results import FaceLandmarks, draw_faces
from .results import FrameResult, SourceInfo, TrackReport

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi")  # what --draw writes (mp4v)


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
        stream.write(_strict_json(head)[:-1] + ', "frames": [\n')

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        self.stream.write(("" if self._first else ",\n") + _strict_json(result.to_dict()))
        self._first = False
        self.stream.flush()

    def close(self, report: TrackReport | None = None) -> None:
        tail = _strict_json(report.model_dump()) if report is not None else "null"
        self.stream.write(f'\n], "report": {tail}}}\n')
        self.stream.close()


def _strict_json(value: object) -> str:
    """JSON text; a NaN or inf is an error rather than the bare ``NaN`` token, which is not JSON."""
    return json.dumps(value, allow_nan=False)


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

    def write(self, result: FrameResult, image: np.ndarray | None) -> None:
        if image is None:  # an unreadable image in a folder: a black frame keeps the video in step
            image = np.zeros((self.size[1], self.size[0], 3), np.uint8)
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
        raise InputError("nothing to write: give --out CSV, --json FILE and/or --draw VIDEO")
    resolved = [p.resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise InputError("the output files must be different from each other")
    src = [Path(str(source))] if source is not None and Path(str(source)).exists() else []
    for path in paths:
        if path in outputs[2:] and path.suffix.lower() not in VIDEO_SUFFIXES:
            raise InputError(f"{path}: the annotated video must end in {', '.join(VIDEO_SUFFIXES)}")
        check_output_file(path, overwrite, src)
    return paths


def open_text_output(path: Path, overwrite: bool) -> IO[str]:
    """Open an output for writing (``x`` mode unless overwriting): turns OS errors into clear ones."""
    try:
        return open(path, "w" if overwrite else "x", newline="", encoding="utf-8")
    except FileExistsError:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it") from None
    except OSError as exc:
        raise PermissionError(f"{path}: cannot write ({exc.strerror or exc})") from None
