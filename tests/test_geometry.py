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
    for box in [(10, 10, 5, 20), (10, 10, 10, 20), (10, 10, 20, 10)]:  # negative width, zero width, zero height
        with pytest.raises(ValueError, match="invalid face box"):
            geometry.frame_from_box(box)
    # any positive width and height is a box, even below a pixel
    assert geometry.frame_from_box((10, 10, 10.5, 10.5)).side == pytest.approx(0.5 * geometry.CROP_SCALE)
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


def test_frame_from_box_values():
    """Side ``CROP_SCALE`` x the box's geometric-mean size, centre ``CENTER_SHIFT`` sizes below the box
    centre, or along the face's own 'down' when it is rolled (a quarter turn: towards -x)."""
    box = (10.0, 20.0, 110.0, 70.0)  # 100 x 50: size sqrt(5000)
    size = math.sqrt(5000.0)
    upright = geometry.frame_from_box(box)
    assert (upright.center_x, upright.center_y) == pytest.approx((60.0, 45.0 + geometry.CENTER_SHIFT * size))
    assert upright.side == pytest.approx(geometry.CROP_SCALE * size) and upright.roll == 0.0
    turned = geometry.frame_from_box(box, math.pi / 2, crop_scale=2.0, center_shift=0.1)
    assert (turned.center_x, turned.center_y) == pytest.approx((60.0 - 0.1 * size, 45.0))
    assert turned.side == pytest.approx(2.0 * size) and turned.roll == math.pi / 2


def test_crop_matrix_values():
    """``crop = s * R(-roll) @ (p - c) + (crop_size - 1) / 2`` with s = crop_size / side."""
    frame = geometry.CropFrame(50.0, 40.0, 128.0, math.pi / 2)
    m = geometry.crop_matrix(frame, 256)
    # s = 2; R(-90 deg) maps the image's +y to the crop's +x (a face rolled by +90 deg turned upright)
    np.testing.assert_allclose(m, [[0.0, 2.0, 127.5 - 80.0], [-2.0, 0.0, 127.5 + 100.0]], atol=1e-12)
    np.testing.assert_allclose(geometry.invert_matrix(m) @ [127.5, 127.5, 1.0], [50.0, 40.0], atol=1e-12)
    with pytest.raises(ValueError, match="positive"):
        geometry.crop_matrix(geometry.CropFrame(0.0, 0.0, 0.0), 256)
    # any positive side is a crop, even below a pixel (a face seen from far away, upsampled)
    assert geometry.crop_matrix(geometry.CropFrame(0.0, 0.0, 0.5), 256)[0, 0] == pytest.approx(512.0)


def test_warp_crop_fills_outside_the_image_with_black():
    """A crop reaching past the image border: exactly 0 there, the image's own pixels inside."""
    image = np.full((100, 100, 3), 255, np.uint8)
    crop = geometry.warp_crop(image, geometry.CropFrame(0.0, 50.0, 64.0), 64)  # centred on the left edge
    assert (crop[:, :30] == 0).all() and (crop[:, 34:] == 255).all()


def test_box_from_points_values_and_collapsed_shapes():
    """All four sides of the detector-like box, and a collapsed shape (all points on a line) gives a box
    near zero size: the tracker ends such a ghost face by its size."""
    pts = np.array([[10.0, 20.0], [110.0, 20.0], [10.0, 120.0], [60.0, 70.0]])  # 100 x 100 span
    c = geometry.POINTS_TO_BOX
    cx, cy, half = 60.0 + c["dx"] * 100, 70.0 + c["dy"] * 100, c["size"] * 50
    assert geometry.box_from_points(pts) == pytest.approx((cx - half, cy - half, cx + half, cy + half))
    line = np.stack([np.linspace(0, 100, 68), np.full(68, 50.0)], axis=1)
    for shape in (line, line[:, ::-1]):  # collapsed along y, then along x
        x1, y1, x2, y2 = geometry.box_from_points(shape)
        assert 0 < x2 - x1 < 0.1 and 0 < y2 - y1 < 0.1


def test_frame_change_is_the_largest_relative_change():
    """Centre shift and side change as fractions of the old side, roll change in radians (wrapped)."""
    old = geometry.CropFrame(100.0, 100.0, 50.0, 0.1)
    change = geometry.frame_change
    assert change(old, old) == 0.0
    assert change(old, geometry.CropFrame(103.0, 104.0, 50.0, 0.1)) == pytest.approx(5 / 50)  # both axes
    assert change(old, geometry.CropFrame(103.0, 100.0, 50.0, 0.1)) == pytest.approx(3 / 50)
    assert change(old, geometry.CropFrame(100.0, 100.0, 45.0, 0.1)) == pytest.approx(5 / 50)
    assert change(old, geometry.CropFrame(100.0, 100.0, 50.0, 0.17)) == pytest.approx(0.07)
    assert change(old, geometry.CropFrame(100.0, 100.0, 50.0, 0.1 + math.tau - 0.03)) == pytest.approx(0.03)
    assert change(old, geometry.CropFrame(101.0, 100.0, 60.0, 0.15)) == pytest.approx(10 / 50)  # the largest


def test_frame_from_points_rolls_with_the_eyes_only_when_asked():
    """The tracker's crop from the previous landmarks: the detector-like box of the points, rolled by the
    eye line when ``use_roll`` (iBUG 68: points 36-41 and 42-47 are the eyes)."""
    roll = math.radians(25)
    rot = np.array([[math.cos(roll), -math.sin(roll)], [math.sin(roll), math.cos(roll)]])
    upright = np.random.default_rng(2).uniform(-40, 40, (68, 2))
    upright[36:42], upright[42:48] = [-25.0, -15.0], [25.0, -15.0]
    pts = upright @ rot.T + [200.0, 150.0]
    box = geometry.box_from_points(pts)
    assert geometry.frame_from_points(pts) == geometry.frame_from_box(box)
    rolled = geometry.frame_from_points(pts, use_roll=True, crop_scale=1.2, center_shift=0.05)
    assert rolled == geometry.frame_from_box(box, rolled.roll, crop_scale=1.2, center_shift=0.05)
    assert rolled.roll == pytest.approx(roll)
