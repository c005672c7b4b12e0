"""Writers of frame results: OpenFace-style CSV, streamed JSON, annotated video; output checks."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from ..csvformat import csv_text, landmark_cells, landmark_columns
from ..errors import InputError
from ..outputs import check_output_file
from ..results import FaceLandmarks, draw_faces
from .results import FrameResult, SourceInfo, TrackReport

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi")  # what --draw writes (mp4v)


def csv_header(num_landmarks: int) -> list[str]:
    """OpenFace 2 columns: frame, face_id, timestamp, confidence, success, x_*, y_*, then c_* per landmark."""
    return ["frame", "face_id", "timestamp", "confidence", "success", *landmark_columns(num_landmarks)]


def csv_rows(result: FrameResult, num_landmarks: int) -> list[list[str]]:
    """Rows of one frame: one per face, or one ``face_id=-1, success=0`` row with empty landmarks."""
    frame, ts = str(result.frame + 1), f"{result.timestamp:.3f}"
    if not result.faces:
        return [[frame, "-1", ts, "0", "0"] + [""] * (3 * num_landmarks)]
    rows = []
    for face in result.faces:
        lm = face.landmarks
        rows.append([frame, str(face.face_id), ts, f"{lm.mean_confidence:.3f}", str(int(face.success)),
                     *landmark_cells(lm, 2, 3)])
    return rows


class RecordFile:
    """A UTF-8 text output written in whole records at known offsets, unbuffered.

    :meth:`put` writes text at an offset and, if the system refuses part of it (a full disk),
    cuts the file back to that offset before raising, so the file keeps only complete records.
    Any seekable text stream (``io.StringIO``) works in its place.
    """

    def __init__(self, path: Path, overwrite: bool) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL), 0o666)
        self.name = str(path)

    def seek(self, offset: int) -> int:
        return os.lseek(self.fd, offset, os.SEEK_SET)

    def tell(self) -> int:
        return os.lseek(self.fd, 0, os.SEEK_CUR)

    def write(self, text: str) -> int:
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(self.fd, data):]
        return len(text)

    def truncate(self, size: int) -> int:
        os.ftruncate(self.fd, size)
        return size

    def flush(self) -> None:
        """Nothing to flush: every write goes straight to the file."""

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def put(stream: IO[str], offset: int, text: str, restore: str = "") -> int:
    """Write ``text`` at ``offset`` of a seekable stream and return where it ends. On an OSError the
    stream is cut back to ``offset`` and ``restore`` written there (what the text replaced), then the
    error is raised: the stream keeps its last complete state."""
    try:
        stream.seek(offset)
        stream.write(text)
        stream.flush()
        end = stream.tell()
        stream.truncate(end)
        return end
    except OSError:
        try:  # the restored text overwrites bytes the file already had: it needs no new space
            stream.seek(offset)
            stream.write(restore)
            stream.flush()
            stream.truncate(stream.tell())
        except OSError:
            pass  # nothing more can be saved; the original error says why
        raise


class CsvWriter:
    """Writes frame results as CSV rows: a frame's rows land whole or not at all (valid after Ctrl-C or a
    full disk)."""

    def __init__(self, stream: IO[str], num_landmarks: int) -> None:
        self.stream, self.num_landmarks = stream, num_landmarks
        self._end = put(stream, 0, csv_text([csv_header(num_landmarks)]))

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        self._end = put(self.stream, self._end, csv_text(csv_rows(result, self.num_landmarks)))

    def close(self, report: TrackReport | None = None) -> None:
        self.stream.close()


class JsonWriter:
    """Streams ``{"source": ..., "num_landmarks": L, "convention": ..., "frames": [...], "report": {...}}``
    (``convention``: the annotation convention of the points, null for the network's own). The closing
    brackets are always written after the last frame (with ``"report": null`` until :meth:`close`), so
    the file is a complete JSON document at every moment: after Ctrl-C, a crash or a full disk."""

    def __init__(self, stream: IO[str], info: SourceInfo, num_landmarks: int, convention: str | None) -> None:
        self.stream, self._first = stream, True
        head = {"source": info.model_dump(), "num_landmarks": num_landmarks, "convention": convention}
        self._tail = _json_tail(None)
        self._body = put(stream, 0, _strict_json(head)[:-1] + ', "frames": [\n')
        put(stream, self._body, self._tail)

    def write(self, result: FrameResult, image: np.ndarray | None = None) -> None:
        record = ("" if self._first else ",\n") + _strict_json(result.to_dict())
        # JSON text is ASCII (json.dumps escapes the rest), so characters and bytes count alike
        self._body = put(self.stream, self._body, record + self._tail, restore=self._tail) - len(self._tail)
        self._first = False

    def close(self, report: TrackReport | None = None) -> None:
        try:
            if report is not None:
                put(self.stream, self._body, _json_tail(report), restore=self._tail)
        finally:
            self.stream.close()


def _json_tail(report: TrackReport | None) -> str:
    return f'\n], "report": {_strict_json(report.model_dump()) if report is not None else "null"}}}\n'


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
    if src and src[0].is_dir():  # an image folder: none of its images may be overwritten
        src += [p for p in src[0].iterdir() if p.is_file()]
    wanted = {0: (".csv",), 1: (".json",), 2: VIDEO_SUFFIXES}
    for slot, path in enumerate(outputs):
        if path is None:
            continue
        what = ("the CSV output (--out)", "the JSON output (--json)", "the annotated video (--draw)")[slot]
        check_output_file(Path(path), overwrite, src, suffixes=wanted[slot], what=what)
    return paths


def open_text_output(path: Path, overwrite: bool) -> RecordFile:
    """Open an output for writing (refusing an existing file unless overwriting): clear errors."""
    try:
        return RecordFile(path, overwrite)
    except FileExistsError:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it") from None
    except OSError as exc:
        raise PermissionError(f"{path}: cannot write ({exc.strerror or exc})") from None
