"""Contour lines of the iBUG 68-point face (jaw, brows, nose, eyes, lips), drawn under the points by
:func:`facealign_sdk.results.draw_faces` (``--draw`` of ``facealign image`` and ``facealign video``)."""

from __future__ import annotations

import cv2
import numpy as np

from .schemes import CONTOURS_68, IBUG68

CONTOUR_COLOR = (0, 220, 255)  # BGR yellow: apart from the green / red points and the blue box
_SHIFT = 4  # cv2 fixed-point bits: lines start and end at the points' subpixel positions
# coordinates are clipped to +-this many pixels before drawing: far outside any image, and in int32 even with
# _SHIFT bits (a point at 3e8 px became INT_MIN: its line ran the other way; cv2.circle refused 1e10)
DRAW_LIMIT = float(1 << 20)


def drawable(values: np.ndarray) -> np.ndarray:
    """Finite coordinates clipped to +-:data:`DRAW_LIMIT`, so that OpenCV's integer drawing takes them."""
    return np.clip(np.asarray(values, np.float64), -DRAW_LIMIT, DRAW_LIMIT)


def contour_segments(num_points: int) -> list[tuple[int, int]]:
    """The point pairs joined by contour lines: those of :data:`CONTOURS_68` for 68 points, none otherwise."""
    if num_points != IBUG68.num_points:
        return []
    pairs: list[tuple[int, int]] = []
    for _, idx, closed in CONTOURS_68:
        pairs += list(zip(idx[:-1], idx[1:]))
        if closed:
            pairs.append((idx[-1], idx[0]))
    return pairs


def draw_contours(image: np.ndarray, points: np.ndarray, thickness: int = 1,
                  color: tuple[int, int, int] = CONTOUR_COLOR) -> np.ndarray:
    """Draw the contour lines of 68 points onto ``image`` (in place; returned too). Other point counts
    have no known contours and draw nothing."""
    pts = np.asarray(points, np.float64)
    if len(pts) != IBUG68.num_points or not np.isfinite(pts).all():
        return image
    fixed = np.round(drawable(pts) * (1 << _SHIFT)).astype(np.int32)
    lines = [fixed[list(idx)].reshape(-1, 1, 2) for _, idx, _ in CONTOURS_68]
    for line, (_, _, closed) in zip(lines, CONTOURS_68):
        cv2.polylines(image, [line], closed, color, thickness, cv2.LINE_AA, _SHIFT)
    return image
