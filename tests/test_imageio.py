"""Image files and arrays into upright uint8 BGR: EXIF/TIFF orientation, the pixel limit, conversions, errors.

No model is loaded here: the file is part of the fast selection that mutation testing runs per mutant.
"""

from __future__ import annotations

import re
import struct
import zlib

import cv2
import numpy as np
import pytest

from facealign_sdk.imageio import ImageError, apply_orientation, max_pixels, read_image, to_bgr8


def _pixels(seed: int, shape: tuple[int, ...] = (24, 40, 3)) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) * 255).astype(np.uint8)


# -- orientation -----------------------------------------------------------------------------------
def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """A JPEG with an APP1 Exif segment holding only the orientation tag (little-endian TIFF)."""
    tiff = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
    tiff += struct.pack("<HHII", 0x0112, 3, 1, orientation) + struct.pack("<I", 0)
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_image_viewers(tmp_path, orientation):
    path = tmp_path / f"o{orientation}.jpg"
    path.write_bytes(with_exif_orientation(cv2.imencode(".jpg", _pixels(orientation))[1].tobytes(), orientation))
    upright = cv2.imread(str(path), cv2.IMREAD_COLOR)  # OpenCV's own EXIF handling: the reference
    got = read_image(path)
    assert got.shape == upright.shape and np.array_equal(got, upright)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_tiff_orientation_is_applied_once(tmp_path, orientation):
    """OpenCV's TIFF decoder turns the image upright itself: the tag must not be applied a second time."""
    pil = pytest.importorskip("PIL.Image")
    pixels = _pixels(orientation)
    path = tmp_path / f"o{orientation}.tif"
    pil.fromarray(pixels[..., ::-1]).save(path, tiffinfo={0x0112: orientation})
    assert path.read_bytes()[:4] == b"II*\x00"
    assert np.array_equal(read_image(path), apply_orientation(pixels, orientation))


def test_big_endian_tiff_orientation_is_applied_once(tmp_path):
    """Big-endian TIFF (``MM``, here 16-bit grey) is turned upright by the decoder as well."""
    pil = pytest.importorskip("PIL.Image")
    grey16 = (np.random.default_rng(6).random((24, 40)) * 65535).astype(">u2")
    path = tmp_path / "big_endian.tif"
    pil.frombytes("I;16B", (40, 24), grey16.tobytes()).save(path, tiffinfo={0x0112: 6})
    assert path.read_bytes()[:4] == b"MM\x00*"
    grey8 = (grey16.astype(np.float32) / 257.0).round().astype(np.uint8)
    got = read_image(path)
    assert got.shape == (40, 24, 3) and np.array_equal(got[..., 1], apply_orientation(grey8, 6))


# -- the pixel limit -------------------------------------------------------------------------------
def png_header_only(width: int, height: int) -> bytes:
    """The first bytes of a PNG claiming width x height pixels (what a bomb looks like to the header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    idat = zlib.compress(b"\x00" * 1000)
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + chunk + struct.pack(">I", zlib.crc32(chunk))
            + struct.pack(">I", len(idat)) + b"IDAT" + idat + struct.pack(">I", zlib.crc32(b"IDAT" + idat)))


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(20000, 20000))

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded an image above the pixel limit")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    with pytest.raises(ImageError, match=re.escape(f"{bomb}: 20000 x 20000 px (400.0 MP) is above the limit of "
                                                   "100 MP; set FACEALIGN_MAX_PIXELS")):
        read_image(bomb)


@pytest.mark.parametrize("suffix", [".png", ".ppm"])  # PPM: no header reader, checked after decoding
def test_pixel_limit_is_configurable(tmp_path, monkeypatch, suffix):
    path = tmp_path / f"image{suffix}"
    cv2.imwrite(str(path), _pixels(0))
    h, w = 24, 40
    monkeypatch.setenv("FACEALIGN_MAX_PIXELS", str(h * w - 1))
    with pytest.raises(ImageError, match=re.escape(f"{path}: 40 x 24 px (0.0 MP) is above the limit")):
        read_image(path)
    assert read_image(path, limit=h * w).shape == (h, w, 3)  # the argument wins over the setting
    monkeypatch.setenv("FACEALIGN_MAX_PIXELS", str(h * w))
    assert read_image(path).shape == (h, w, 3)
    with pytest.raises(ImageError, match="above the limit"):
        read_image(path, limit=h * w - 1)


def test_pixel_limit_setting(monkeypatch):
    monkeypatch.delenv("FACEALIGN_MAX_PIXELS", raising=False)
    assert max_pixels() == 100_000_000
    for text, value in (("1", 1), ("2.5e6", 2_500_000), (" 300 ", 300)):
        monkeypatch.setenv("FACEALIGN_MAX_PIXELS", text)
        assert max_pixels() == value and isinstance(max_pixels(), int)
    monkeypatch.setenv("FACEALIGN_MAX_PIXELS", "inf")
    assert max_pixels() > 10**15
    for bad in ("nan", "-inf", "0.5", "0", "lots"):
        monkeypatch.setenv("FACEALIGN_MAX_PIXELS", bad)
        with pytest.raises(ImageError, match=f"FACEALIGN_MAX_PIXELS='{bad}': expected a positive number"):
            max_pixels()


# -- files that cannot be used ---------------------------------------------------------------------
def test_unusable_files_are_image_errors_naming_the_file(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match=re.escape(f"{empty}: not a readable image")):
        read_image(empty)
    with pytest.raises(ImageError, match=re.escape(f"{tmp_path}: not a file")):
        read_image(tmp_path)
    with pytest.raises(ImageError, match="no such file"):
        read_image(tmp_path / "missing.png")
    hdr_like = tmp_path / "float.tif"  # a float TIFF in 0-255, not the [0, 1] a float image must have
    assert cv2.imwrite(str(hdr_like), np.full((4, 5, 3), 200.0, np.float32))
    with pytest.raises(ImageError, match=re.escape(f"{hdr_like}: float image has values in [200, 200]")):
        read_image(hdr_like)


# -- arrays ----------------------------------------------------------------------------------------
def test_array_shape_errors_and_the_smallest_image():
    for bad in (np.zeros((0, 3), np.uint8), np.zeros((2, 2, 2, 3), np.uint8)):
        with pytest.raises(ImageError, match=r"^image: expected an HxW or HxWxC image"):
            to_bgr8(bad)
    np.testing.assert_array_equal(to_bgr8(np.full((1, 1), 7, np.uint8)), [[[7, 7, 7]]])


def test_float_range_tolerance():
    """Rounding noise up to 1e-3 outside [0, 1] is clipped; anything beyond is another scale and refused."""
    at_tolerance = np.array([[-1e-3, 0.5, 1.0 + 1e-3]])
    np.testing.assert_array_equal(to_bgr8(at_tolerance)[0, :, 0], [0, 128, 255])
    for bad in (np.array([[0.0, 1.5]]), np.array([[-0.5, 1.0]])):
        with pytest.raises(ImageError, match="float images must be in"):
            to_bgr8(bad)
