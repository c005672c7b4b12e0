"""Aligned face crops by value: a face moved by a known similarity comes back onto the template."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from facealign_sdk.errors import InputError
from facealign_sdk.facecrop import (ARCFACE_112, FaceCrop, align_face, five_points, similarity_matrix,
                                    template_points)
from facealign_sdk.results import FaceLandmarks

CANVAS = 400
# well-separated points (eye corners, nose tip, mouth corners, lower lip) whose blobs are measured in the crop
MARKED = [36, 45, 30, 48, 54, 57]


def _similarity(scale: float, degrees: float, tx: float, ty: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[scale * math.cos(a), -scale * math.sin(a), tx], [scale * math.sin(a), scale * math.cos(a), ty]])


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _blob_image(points: np.ndarray, sigma: float) -> np.ndarray:
    """A float image with one Gaussian blob at each point (the synthetic "face")."""
    ys, xs = np.mgrid[0:CANVAS, 0:CANVAS].astype(np.float64)
    img = np.zeros((CANVAS, CANVAS), np.float64)
    for x, y in points:
        img += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return img.astype(np.float32)


def _centroid(img: np.ndarray, near: np.ndarray, radius: int = 5) -> np.ndarray:
    x0, y0 = (int(round(v)) for v in near)
    win = img[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1].astype(np.float64)
    ys, xs = np.mgrid[y0 - radius : y0 + radius + 1, x0 - radius : x0 + radius + 1]
    return np.array([(win * xs).sum(), (win * ys).sum()]) / win.sum()


# the image-to-crop map of a face placed in the canvas by the similarity `placed` is its inverse
PLACED = _similarity(1.6, 23.0, 130.0, 40.0)


def test_a_face_moved_by_a_similarity_comes_back_to_the_template():
    canonical = template_points("68", 112)
    face = _apply(PLACED, canonical)  # a 68-point face: the template, rotated, scaled and moved
    image = _blob_image(face[MARKED], sigma=2.5)
    crop, matrix = align_face(image, face, size=112, template="68")
    assert crop.shape == (112, 112) and matrix.shape == (2, 3)
    np.testing.assert_allclose(matrix, cv2.invertAffineTransform(PLACED), atol=1e-9)
    np.testing.assert_allclose(_apply(matrix, face), canonical, atol=1e-9)
    for index in MARKED:  # the pixels moved with the points: each blob is where its template point is
        np.testing.assert_allclose(_centroid(crop, canonical[index]), canonical[index], atol=0.1)


def test_arcface5_from_68_points_uses_their_five_points():
    face = _apply(PLACED, template_points("68", 112))
    image = np.zeros((CANVAS, CANVAS), np.uint8)
    from_68 = align_face(image, face, template="arcface5").matrix
    np.testing.assert_allclose(from_68, align_face(image, five_points(face), template="arcface5").matrix, atol=1e-12)
    # the 68 template sits on arcface5 by least squares over its five points: close, not exact (mean face != ArcFace's)
    assert np.abs(_apply(from_68, five_points(face)) - ARCFACE_112).max() < 4.0


def test_five_points_are_mapped_exactly_onto_arcface():
    five = _apply(PLACED, ARCFACE_112)
    image = _blob_image(five, sigma=2.5)
    crop, matrix = align_face(image, five, size=112)
    np.testing.assert_allclose(_apply(matrix, five), ARCFACE_112, atol=1e-9)
    for point in ARCFACE_112:
        np.testing.assert_allclose(_centroid(crop, point), point, atol=0.1)


def test_five_points_of_68_and_face_results():
    pts = np.zeros((68, 2))
    pts[36:42], pts[42:48] = [[10, 20]], [[30, 22]]
    pts[30], pts[48], pts[54] = [20, 30], [12, 40], [28, 41]
    np.testing.assert_array_equal(five_points(pts), [[10, 20], [30, 22], [20, 30], [12, 40], [28, 41]])
    face = FaceLandmarks(box=(0, 0, 1, 1), score=1.0, points=_apply(PLACED, template_points("68")),
                         confidence=np.ones(68))
    result = align_face(np.zeros((50, 60, 3), np.uint8), face, template="68")
    assert isinstance(result, FaceCrop) and result.image.shape == (112, 112, 3)
    np.testing.assert_allclose(result.matrix, cv2.invertAffineTransform(PLACED), atol=1e-9)


def test_template_sizes_follow_insightface():
    np.testing.assert_allclose(template_points("arcface5", 224), ARCFACE_112 * 2)
    np.testing.assert_allclose(template_points("arcface5", 128), ARCFACE_112 + [8, 0])
    np.testing.assert_allclose(template_points("arcface5", 256), (ARCFACE_112 + [8, 0]) * 2)
    np.testing.assert_allclose(template_points("68", 224), template_points("68", 112) * 2)
    t68 = template_points("68", 112)
    assert t68.shape == (68, 2) and t68[36, 0] < t68[45, 0] and t68[27, 1] < t68[8, 1]  # upright


def test_similarity_never_reflects():
    src = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 5.0]])
    mirrored = src * [-1, 1]
    m = similarity_matrix(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0
    np.testing.assert_allclose(similarity_matrix(src, _apply(PLACED, src)), PLACED, atol=1e-12)


@pytest.mark.parametrize("kwargs, message", [
    ({"template": "arcface"}, "template must be one of"),
    ({"size": 0}, "size must be an integer"),
    ({"size": 112.0}, "size must be an integer"),
    ({"size": True}, "size must be an integer"),
    ({"face": np.zeros((10, 2))}, r"needs points of shape \(68, 2\) or \(5, 2\)"),
    ({"face": np.zeros((5, 2)), "template": "68"}, r"needs points of shape \(68, 2\), got \(5, 2\)"),
    ({"face": np.full((68, 2), np.nan)}, "NaN"),
    ({"face": np.full((68, 2), 7.0)}, "degenerate"),
    ({"face": "eyes"}, "face must be a FaceLandmarks or an"),
    ({"image": np.zeros((0, 5, 3), np.uint8)}, "non-empty"),
    ({"image": [[0]]}, "numpy array"),
    ({"image": np.zeros((100, 100, 3), bool)}, "type bool cannot be warped"),  # these three were cv2.errors
    ({"image": np.zeros((100, 100, 3), np.int64)}, "type int64 cannot be warped"),
    ({"image": np.zeros((100, 100), np.int32)}, "type int32 cannot be warped"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    args = {"image": np.zeros((100, 100, 3), np.uint8), "face": _apply(PLACED, template_points("68")) / 4,
            "size": 112, "template": "arcface5"} | kwargs
    with pytest.raises(InputError, match=message):
        align_face(**args)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int16, np.float32, np.float64])
def test_every_warpable_pixel_type_keeps_its_type(dtype):
    image = np.full((100, 100, 3), 7, dtype)
    crop = align_face(image, _apply(PLACED, template_points("68")) / 4, template="68").image
    assert crop.dtype == dtype and crop.shape == (112, 112, 3)
