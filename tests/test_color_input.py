"""Input colour: numpy BGR by default, ``Aligner(color="rgb")`` for RGB arrays, PIL images as RGB, all by value."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_sdk import Aligner
from facealign_sdk.color import COLOR_ORDERS, check_color, to_bgr
from facealign_sdk.errors import InputError
from facealign_sdk.imageio import ImageError

from .conftest import SAMPLES

Image = pytest.importorskip("PIL.Image")


@pytest.fixture(scope="module")
def released() -> Aligner:
    return Aligner()


@pytest.fixture(scope="module")
def bgr_result(released, face_image):
    faces = released.align(face_image)
    assert len(faces) == 1
    return faces[0]


def _same(a, b) -> None:
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    assert a.box == b.box and a.pose == b.pose


def test_rgb_array_with_color_rgb_equals_the_bgr_result(face_image, bgr_result):
    rgb = np.ascontiguousarray(face_image[..., ::-1])
    _same(Aligner(color="rgb").align(rgb)[0], bgr_result)


def test_pil_image_equals_the_bgr_result(released, face_image, bgr_result):
    pil = Image.fromarray(np.ascontiguousarray(face_image[..., ::-1]))
    _same(released.align(pil)[0], bgr_result)
    _same(Aligner(color="rgb").align(pil)[0], bgr_result)  # PIL is RGB whatever `color` says
    rgba = pil.convert("RGBA")
    _same(released.align(rgba)[0], bgr_result)


def test_rgb_array_taken_as_bgr_moves_the_points(released, face_image, bgr_result):
    """Why the option exists: red and blue swapped is another image to the network."""
    swapped = released.align(np.ascontiguousarray(face_image[..., ::-1]))[0]
    assert np.abs(swapped.points - bgr_result.points).max() > 2.0


def test_bad_color_is_a_clear_error():
    with pytest.raises(InputError, match=r"color must be one of \('bgr', 'rgb'\).*got 'RGB'"):
        Aligner(color="RGB", detector=None)
    with pytest.raises(InputError, match="color must be one of"):
        check_color(None)
    with pytest.raises(InputError, match="color must be one of"):
        to_bgr(np.zeros((4, 4, 3), np.uint8), "hsv")


def test_rgb_order_swaps_only_colour_channels():
    rgba = np.array([[[10, 20, 30, 99]]], np.uint8)
    np.testing.assert_array_equal(to_bgr(rgba, "rgb")[0, 0], [30, 20, 10])
    np.testing.assert_array_equal(to_bgr(rgba[..., :3], "bgr")[0, 0], [10, 20, 30])
    grey = np.array([[7, 200]], np.uint8)
    np.testing.assert_array_equal(to_bgr(grey, "rgb")[0, :, 2], [7, 200])


U16 = np.array([[0, 257, 32896, 65535]], np.uint16)
U16_AS_8 = [0, 1, 128, 255]


@pytest.mark.parametrize("mode, byteorder", [("I;16", "<u2"), ("I;16L", "<u2"), ("I;16B", ">u2")])
def test_pil_16bit_modes_are_scaled_not_clipped(mode, byteorder):
    image = Image.frombytes(mode, (4, 1), U16.astype(byteorder).tobytes())
    out = to_bgr(image)
    np.testing.assert_array_equal(out[0, :, 0], U16_AS_8)
    assert (out[..., 0] == out[..., 2]).all()


def test_pil_32bit_integer_is_taken_as_16bit_and_refused_outside_it():
    np.testing.assert_array_equal(to_bgr(Image.fromarray(U16.astype(np.int32)))[0, :, 1], U16_AS_8)
    with pytest.raises(ImageError, match="mode 'I' has values -1..70000"):
        to_bgr(Image.fromarray(np.array([[-1, 70000]], np.int32)))


def test_pil_float_is_scaled_and_out_of_range_refused():
    image = Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32))
    assert image.mode == "F"
    np.testing.assert_array_equal(to_bgr(image)[0, :, 0], [0, 128, 255])
    with pytest.raises(ImageError, match=r"must be\s+in \[0, 1\]"):
        to_bgr(Image.fromarray(np.array([[0.0, 200.0]], np.float32)))


def test_pil_8bit_modes_by_value():
    rgb = np.array([[[10, 20, 30], [250, 128, 0]]], np.uint8)
    pil = Image.fromarray(rgb)
    np.testing.assert_array_equal(to_bgr(pil)[0], rgb[0, :, ::-1])
    np.testing.assert_array_equal(to_bgr(pil.convert("CMYK"))[0], rgb[0, :, ::-1])
    grey = Image.fromarray(np.array([[3, 200]], np.uint8))
    np.testing.assert_array_equal(to_bgr(grey)[0], [[3, 3, 3], [200, 200, 200]])
    np.testing.assert_array_equal(to_bgr(grey.convert("LA"))[0], [[3, 3, 3], [200, 200, 200]])
    np.testing.assert_array_equal(to_bgr(grey.convert("1"))[0], [[0, 0, 0], [255, 255, 255]])
    palette = pil.quantize(2)
    assert palette.mode == "P"
    np.testing.assert_array_equal(to_bgr(palette)[0], rgb[0, :, ::-1])


def test_not_an_image_is_a_clear_error(released):
    with pytest.raises(ImageError, match="expected a numpy array, a PIL image or a file path, got list"):
        released.align([[1, 2], [3, 4]])


@pytest.mark.parametrize("color", COLOR_ORDERS)
def test_negative_float_pixels_are_refused_not_clipped(color):
    # a [-1, 1] normalised image was clipped to black below 0: another image, silently
    normalised = np.linspace(-1.0, 1.0, 4 * 4 * 3, dtype=np.float32).reshape(4, 4, 3)
    with pytest.raises(ImageError, match=r"values in \[-1, 1\]"):
        to_bgr(normalised, color)
    with pytest.raises(ImageError, match="must be in"):
        to_bgr(Image.fromarray(np.array([[-0.5, 0.5]], np.float32)))
    assert to_bgr(np.full((2, 2), -1e-4, np.float32), color).max() == 0  # rounding noise about 0 is fine


def test_unreadable_pil_images_are_image_errors(tmp_path):
    from facealign_sdk.color import pil_to_array

    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((SAMPLES / "face.jpg").read_bytes()[:20000])
    closed = Image.open(SAMPLES / "face.jpg")
    closed.close()
    # PIL decodes on first use: these were a bare OSError and ValueError
    for image, message in ((Image.open(truncated), "truncated"), (closed, "closed image")):
        with pytest.raises(ImageError, match=f"cannot be read.*{message}"):
            pil_to_array(image)
    with pytest.raises(ImageError, match="mode 'La' cannot be read"):  # PIL has no La -> RGB conversion
        pil_to_array(Image.new("La", (2, 2)))
