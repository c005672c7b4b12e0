"""Contour lines by pixel content: a line between consecutive points of each part, nothing between parts."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_sdk.drawing import CONTOUR_COLOR, CONTOURS_68, contour_segments, draw_contours
from facealign_sdk.facecrop import template_points
from facealign_sdk.results import FaceLandmarks, draw_faces

SIDE = 448
BACKGROUND = 40


def _face(confidence: float = 0.9) -> FaceLandmarks:
    points = template_points("68", SIDE) + [0.0, -40.0]  # the mean face, 4x the 112 px template, all inside
    return FaceLandmarks(box=(20, 20, 430, 430), score=0.9, points=points, confidence=np.full(68, confidence))


def _contour_likeness(pixel: np.ndarray) -> float:
    """1 for the contour colour, 0 for the grey background (anti-aliased pixels in between)."""
    target, bg = np.array(CONTOUR_COLOR, float), np.full(3, BACKGROUND, float)
    return float(np.clip((pixel.astype(float) - bg) @ (target - bg) / ((target - bg) @ (target - bg)), 0, 1))


def _best_near(image: np.ndarray, point: np.ndarray) -> float:
    x, y = (int(round(v)) for v in point)
    return max(_contour_likeness(image[y + dy, x + dx]) for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_segments_are_the_parts_of_the_68_point_face():
    segments = contour_segments(68)
    assert len(segments) == 16 + 4 + 4 + 3 + 6 + 6 + 6 + 12 + 8
    assert (16, 17) not in segments and (26, 27) not in segments  # jaw, brows and nose are separate parts
    assert (41, 36) in segments and (67, 60) in segments and (35, 30) in segments  # eyes, lips, lower nose closed
    assert (16, 0) not in segments  # the jaw is open
    assert contour_segments(5) == [] and contour_segments(98) == []
    assert {name for name, _, _ in CONTOURS_68} >= {"jaw", "nose_bridge", "lower_nose", "outer_lips", "inner_lips"}


def test_draw_faces_draws_a_line_between_consecutive_points():
    image = np.full((SIDE, SIDE, 3), BACKGROUND, np.uint8)
    face = _face()
    out = draw_faces(image, [face])
    assert (image == BACKGROUND).all()
    pts = face.points
    checked = 0
    for i, j in contour_segments(68):
        if np.linalg.norm(pts[i] - pts[j]) < 10:  # the dots (radius 2) would cover the midpoint
            continue
        for t in (0.4, 0.5, 0.6):
            assert _best_near(out, pts[i] + t * (pts[j] - pts[i])) > 0.6, (i, j, t)  # anti-aliased: not all 1
        checked += 1
    assert checked >= 30
    # no line joins two parts: between the jaw's ends (above the nose bridge) and between jaw end and brow
    for i, j in [(0, 16), (16, 26), (8, 57)]:
        mid = (pts[i] + pts[j]) / 2
        assert _best_near(out, mid) < 0.05, (i, j)
    # the points are still drawn on top, green where confident
    x, y = (int(round(v)) for v in pts[36])
    np.testing.assert_array_equal(out[y, x], [0, 255, 0])


@pytest.mark.parametrize("count", [3, 5, 98])
def test_other_point_counts_draw_no_lines(count):
    image = np.full((SIDE, SIDE, 3), BACKGROUND, np.uint8)
    pts = np.linspace([50.0, 50.0], [400.0, 300.0], count)
    face = FaceLandmarks(box=(0, 0, 1, 1), score=1.0, points=pts, confidence=np.ones(count))
    out = draw_faces(image, [face])
    for a, b in zip(pts[:-1], pts[1:]):
        if np.linalg.norm(a - b) > 10:
            assert _best_near(out, (a + b) / 2) < 0.05


def test_draw_contours_with_nan_points_draws_nothing():
    image = np.full((64, 64, 3), BACKGROUND, np.uint8)
    draw_contours(image, np.full((68, 2), np.nan))
    assert (image == BACKGROUND).all()


def test_points_far_outside_the_image_draw_towards_where_they_are():
    face = _face()
    points = face.points.copy()
    chin = points[8].copy()
    points[9] = (3e8, chin[1])  # far right: in 4-bit fixed point it was INT_MIN, the line ran left
    far = FaceLandmarks(box=face.box, score=0.9, points=points, confidence=face.confidence)
    out = draw_faces(np.full((SIDE, SIDE, 3), BACKGROUND, np.uint8), [far])
    assert _best_near(out, chin + (30, 0)) > 0.6 and _best_near(out, chin - (30, 0)) < 0.05
    # coordinates OpenCV's int cannot hold: was a cv2.error; NaN points were a ValueError
    points[:3] = 1e10
    points[3] = np.nan
    wild = FaceLandmarks(box=(-1e10, 0, 1e10, 5), score=0.9, points=points, confidence=face.confidence)
    assert draw_faces(np.full((SIDE, SIDE, 3), BACKGROUND, np.uint8), [wild]).shape == (SIDE, SIDE, 3)


def _line_width(image: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Contour colour summed across the middle of the near-horizontal line a-b: about its width in px."""
    x, y = (int(round(v)) for v in (a + b) / 2)
    return sum(_contour_likeness(image[yy, x]) for yy in range(y - 4, y + 5))


@pytest.mark.parametrize("side, thin", [(SIDE, True), (1600, False)])
def test_contour_lines_grow_with_the_image(side, thin):
    """1 px lines up to 1400 px images, 2 px from 1400 px (4x the dot and box scale of 400 px steps)."""
    points = template_points("68", side)
    face = FaceLandmarks(box=(0, 0, 1, 1), score=0.9, points=points, confidence=np.full(68, 0.9))
    width = _line_width(draw_faces(np.full((side, side, 3), BACKGROUND, np.uint8), [face]), points[63], points[64])
    assert (width < 2.2) if thin else (2.5 < width < 4.5), width


def test_a_point_that_cannot_be_drawn_does_not_stop_the_others():
    points = np.array([[np.nan, np.nan], [100.0, 100.0], [300.0, 200.0]])
    face = FaceLandmarks(box=(0, 0, 1, 1), score=0.9, points=points, confidence=np.array([0.9, 0.9, 0.1]))
    out = draw_faces(np.full((SIDE, SIDE, 3), BACKGROUND, np.uint8), [face])
    np.testing.assert_array_equal(out[100, 100], [0, 255, 0])
    np.testing.assert_array_equal(out[200, 300], [0, 0, 255])
