"""The channel order of images a caller passes: numpy BGR (OpenCV) by default, RGB arrays on request,
PIL images always as RGB.

OpenCV reads images as BGR; face-alignment, dlib, MediaPipe and PIL users hold RGB. The network sees
RGB crops made from a BGR image, so an RGB array passed as BGR swaps red and blue and moves points
(about 14 px on the sample face): say ``color="rgb"`` instead. PIL images carry their mode, so
they need no flag. Conversions keep values: 16-bit PIL images are scaled by 1/257 as 16-bit arrays
are, float (``F``) images must be in [0, 1] as float arrays must; nothing is clipped silently.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Literal, Union, get_args

import numpy as np

from .errors import InputError
from .imageio import ImageError, to_bgr8

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image as PILImage

ColorOrder = Literal["bgr", "rgb"]
COLOR_ORDERS: tuple[str, ...] = get_args(ColorOrder)
ArrayOrPIL = Union[np.ndarray, "PILImage"]

# PIL modes whose pixels numpy reads as they are; the rest go through PIL's own (value-keeping)
# conversion to 8-bit RGB: P (palette), CMYK, YCbCr, LAB, HSV, LA, RGBa, La, RGBX
_DIRECT_MODES = ("RGB", "RGBA", "L", "F")
_16BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
_MAX_16BIT = 65535


def check_color(color: object) -> ColorOrder:
    """``color`` if it is a known channel order, else an InputError naming the choices."""
    if color not in COLOR_ORDERS:
        raise InputError(f"color must be one of {COLOR_ORDERS} (the channel order of numpy images you pass: "
                         f"'bgr' as OpenCV reads them, 'rgb' as PIL, dlib and MediaPipe use), got {color!r}")
    return color  # type: ignore[return-value]


def is_pil_image(obj: object) -> bool:
    """Whether ``obj`` is a PIL image (without importing PIL: if it was never imported, nothing is one)."""
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(obj, pil.Image)


def pil_to_array(image: Any) -> np.ndarray:
    """A PIL image's pixels as a numpy array in RGB(A) order, of the dtype its mode holds (uint8,
    uint16 or float32); 1-bit images become 0 / 255, 32-bit integer (``I``) images are taken as
    16-bit (0-65535, how PIL opens some 16-bit files) and refused outside that range. A PIL image that
    cannot be read (closed, a truncated file: PIL decodes lazily) is an ImageError."""
    mode = image.mode
    try:
        return _pil_pixels(image, mode)
    except ImageError:
        raise
    except (ValueError, OSError) as exc:
        raise ImageError(f"PIL image of mode {mode!r} cannot be read ({exc})") from exc


def _pil_pixels(image: Any, mode: str) -> np.ndarray:
    if mode == "1":
        return np.asarray(image, dtype=np.uint8) * np.uint8(255)
    if mode == "I":
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > _MAX_16BIT):
            raise ImageError(f"PIL image of mode 'I' has values {values.min()}..{values.max()}; 32-bit integer "
                             f"images are taken as 16-bit (0-{_MAX_16BIT}): convert it to 'L' or 'I;16' yourself")
        return values.astype(np.uint16)
    if mode in _16BIT_MODES:
        return np.asarray(image).astype(np.uint16)  # native byte order (I;16B reads as big-endian)
    if mode in _DIRECT_MODES:
        return np.asarray(image)
    return np.asarray(image.convert("RGB"))  # PIL's own conversion: P, CMYK, YCbCr, LAB, HSV, LA, ...


def to_bgr(image: ArrayOrPIL, color: ColorOrder = "bgr", name: str = "image") -> np.ndarray:
    """A numpy image in channel order ``color``, or a PIL image (always RGB), as uint8 BGR.

    Greyscale, alpha, 16-bit and float pixels are converted as :func:`facealign_sdk.imageio.to_bgr8`
    does; only the order of the colour channels depends on ``color``.
    """
    rgb = is_pil_image(image) or check_color(color) == "rgb"
    pixels = pil_to_array(image) if is_pil_image(image) else image
    if not isinstance(pixels, np.ndarray):
        raise ImageError(f"{name}: expected a numpy array, a PIL image or a file path, got {type(image).__name__}")
    if rgb and pixels.ndim == 3 and pixels.shape[2] in (3, 4):
        pixels = pixels[..., [2, 1, 0, 3][: pixels.shape[2]]]  # RGB(A) -> BGR(A)
    return to_bgr8(pixels, name)
