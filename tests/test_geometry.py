"""The one geometry module: crop transform, its inverse, heatmap <-> crop mapping."""

import math

import cv2
import numpy as np
import pytest

from facealign_sdk import geometry


@pytest.mark.parametrize("roll", [0.0, 0.3, -1.2])
def test_crop_inverse_round_trip_below_0_01_px(roll):
    rng = np.random.default_rng(1)
    frame = geometry.CropFrame(center_x=321.7, center_y=188.2, side=143.9, roll=roll)
    pts = rng.uniform(0, 640, (200, 2))
    back = geometry.crop_to_image(geometry.image_to_crop(pts, frame, 256), frame, 256)
    assert np.abs(back - pts).max() < 0.01


def test_warp_crop_puts_image_point_where_the_matrix_says():
    # a single bright pixel must land where image_to_crop maps it (pixel-centre convention)
    img = np.zeros((200, 300, 3), np.uint8)
    img[80, 120] = 255
    frame = geometry.CropFrame(130.0, 90.0, 128.0, 0.0)  # side 128 -> scale 2 on a 256 crop
    crop = geometry.warp_crop(img, frame, 256).astype(float)[..., 0]
    ys, xs = np.nonzero(crop > 0)
    w = crop[ys, xs]
    centroid = np.array([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()])
    expected = geometry.image_to_crop(np.array([[120.0, 80.0]]), frame, 256)[0]
    assert np.abs(centroid - expected).max() < 0.3


def test_heatmap_crop_mapping_inverse_and_convention():
    from facealign_sdk.codec import HeatmapCodec

    codec = HeatmapCodec(input_size=256, heatmap_size=128)
    pts = np.array([[0.0, 0.0], [63.5, 10.25], [127.0, 127.0]])
    crop = codec.to_crop(pts)
    assert np.allclose(codec.from_crop(crop), pts)
    assert np.allclose(crop[0], [0.5, 0.5])  # heatmap pixel 0 covers crop pixels 0 and 1


def test_frame_from_box_rejects_bad_boxes():
    with pytest.raises(ValueError, match="invalid face box"):
        geometry.frame_from_box((10, 10, 5, 20))
    with pytest.raises(ValueError):
        geometry.frame_from_box((0, 0, float("nan"), 10))


def test_roll_is_undone_in_the_crop():
    # eyes on a line rotated by 20 degrees come out horizontal in the crop
    roll = math.radians(20)
    right, left = np.array([100.0, 100.0]), np.array([100 + 60 * math.cos(roll), 100 + 60 * math.sin(roll)])
    assert geometry.roll_from_eyes(right, left) == pytest.approx(roll)
    frame = geometry.CropFrame(130.0, 110.0, 150.0, roll)
    a, b = geometry.image_to_crop(np.stack([right, left]), frame, 256)
    assert abs(a[1] - b[1]) < 1e-9


def test_box_from_points_is_scaled_like_a_detector_box():
    pts = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0], [100.0, 100.0]])
    x1, y1, x2, y2 = geometry.box_from_points(pts)
    assert (x2 - x1) == pytest.approx(100 * geometry.POINTS_TO_BOX["size"])
    assert (y1 + y2) / 2 == pytest.approx(50 + 100 * geometry.POINTS_TO_BOX["dy"])


def test_points_shape_checked():
    with pytest.raises(ValueError, match="shape"):
        geometry.apply_matrix(np.eye(2, 3), np.zeros((3, 3)))


def test_warp_matches_opencv_convention_for_identity():
    img = (np.random.default_rng(0).random((256, 256, 3)) * 255).astype(np.uint8)
    frame = geometry.CropFrame(127.5, 127.5, 256.0)
    assert np.array_equal(geometry.warp_crop(img, frame, 256), cv2.warpAffine(img, np.eye(2, 3), (256, 256)))


@pytest.mark.parametrize("roll_deg", [-60.0, -35.0, 20.0, 90.0])
def test_crop_centre_moves_towards_the_chin_of_a_rolled_face(roll_deg):
    """The box centre -> crop centre shift follows the face's own 'down' (eyes to mouth) whatever its roll,
    with the roll measured the way the runtime measures it (from the eyes): a rolled face gets the crop an
    upright face would get, rotated with it."""
    roll = np.radians(roll_deg)
    rot = np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]])
    centre = np.array([300.0, 200.0])
    right_eye, left_eye, mouth = (centre + rot @ p for p in ([-30.0, -20.0], [30.0, -20.0], [0.0, 50.0]))
    measured = geometry.roll_from_eyes(right_eye, left_eye)
    assert measured == pytest.approx(roll)
    box = (centre[0] - 50, centre[1] - 50, centre[0] + 50, centre[1] + 50)
    frame = geometry.frame_from_box(box, measured)
    upright = geometry.frame_from_box(box, 0.0)
    offset = np.array([frame.center_x, frame.center_y]) - centre
    expected = rot @ (np.array([upright.center_x, upright.center_y]) - centre)
    np.testing.assert_allclose(offset, expected, atol=1e-9)
    assert offset @ (mouth - centre) > 0
    # and the crop turns the face upright: eyes level, mouth straight below their midpoint
    in_crop = geometry.image_to_crop(np.array([right_eye, left_eye, mouth]), frame, 256)
    assert in_crop[0, 1] == pytest.approx(in_crop[1, 1], abs=1e-6) and in_crop[0, 0] < in_crop[1, 0]
    assert in_crop[2, 0] == pytest.approx(in_crop[:2, 0].mean(), abs=1e-6) and in_crop[2, 1] > in_crop[0, 1]
