"""The one CSV convention of the image and video outputs.

Every row is one face: ``face_id`` (-1 on the row of an image / frame without a face), ``confidence``
(the face's mean landmark confidence), then ``x_0..x_{L-1}``, ``y_0..y_{L-1}`` and ``c_0..c_{L-1}``
(per-landmark confidence). The image CSV starts with ``image`` and adds the detector box and score; the
video CSV follows OpenFace 2 (``frame, face_id, timestamp, confidence, success``). Neither has a place for
metadata: the annotation convention of the points is in the JSON outputs (``"convention"``).

Every CSV the package writes ends each line with ``\n`` alone (:data:`LINE_END`, through :func:`csv_text`), on
purpose not the csv module's default ``\r\n``: ``\n`` is what OpenFace writes on Linux and what line tools
(diff, wc, awk) expect, and one ending in every file keeps diffs and parsers from seeing mixed ones. CSV
readers (the csv module, pandas, numpy) accept either.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from .results import FaceLandmarks


def landmark_columns(num_landmarks: int) -> list[str]:
    """``x_0..x_{L-1}, y_0..y_{L-1}, c_0..c_{L-1}``."""
    idx = range(num_landmarks)
    return [f"x_{i}" for i in idx] + [f"y_{i}" for i in idx] + [f"c_{i}" for i in idx]


def landmark_cells(face: FaceLandmarks, point_digits: int, confidence_digits: int) -> list[str]:
    """The ``landmark_columns`` of one face, formatted with these decimals."""
    return ([f"{v:.{point_digits}f}" for v in face.points[:, 0]] + [f"{v:.{point_digits}f}" for v in face.points[:, 1]]
            + [f"{v:.{confidence_digits}f}" for v in face.confidence])


LINE_END = "\n"


def csv_text(rows: Iterable[Sequence[object]]) -> str:
    """Rows as CSV text (quoted where a cell needs it), each ended by :data:`LINE_END`."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=LINE_END).writerows(rows)
    return buffer.getvalue()
