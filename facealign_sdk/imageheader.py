"""Image size and EXIF orientation from the first bytes of an image file, without decoding it.

Used to refuse decompression bombs before ``cv2.imdecode`` allocates them, and to turn photos
upright as image viewers do. Reads JPEG, PNG, BMP, WebP and TIFF headers; the orientation tag
is read from JPEG (APP1 Exif), TIFF, WebP (EXIF chunk) and PNG (eXIf chunk) files.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic; not DHT/JPG/DAC)
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_TAG_WIDTH, _TAG_HEIGHT, _TAG_ORIENTATION = 0x0100, 0x0101, 0x0112


@dataclass(frozen=True)
class ImageHeader:
    """What the header says: size in stored pixels (before orientation) and the EXIF orientation (1-8)."""

    width: int
    height: int
    orientation: int = 1


def read_header(data: bytes | memoryview) -> ImageHeader | None:
    """The header of an encoded image, or None for a format (or a header) this module does not read."""
    data = bytes(data[: 1 << 20]) if len(data) > 1 << 20 else bytes(data)
    try:
        if data[:2] == b"\xff\xd8":
            return _jpeg(data)
        if data[:8] == b"\x89PNG\r\n\x1a\n":
            return _png(data)
        if data[:2] == b"BM":
            return _bmp(data)
        if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            return _webp(data)
        if data[:4] in (b"II*\x00", b"MM\x00*"):
            fields = _tiff_fields(data)
            if _TAG_WIDTH in fields and _TAG_HEIGHT in fields:
                return ImageHeader(fields[_TAG_WIDTH], fields[_TAG_HEIGHT], _orientation(fields))
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _orientation(fields: dict[int, int]) -> int:
    value = fields.get(_TAG_ORIENTATION, 1)
    return value if 1 <= value <= 8 else 1


def _exif_orientation(exif: bytes) -> int:
    if exif.startswith(b"Exif\x00\x00"):
        exif = exif[6:]
    try:
        return _orientation(_tiff_fields(exif))
    except (struct.error, IndexError, ValueError):
        return 1


def _tiff_fields(tiff: bytes) -> dict[int, int]:
    """Integer values of IFD0's width, height and orientation tags of a TIFF structure."""
    order = {b"II": "<", b"MM": ">"}.get(tiff[:2])
    if order is None:
        raise ValueError("not a TIFF structure")
    (ifd,) = struct.unpack_from(order + "I", tiff, 4)
    (count,) = struct.unpack_from(order + "H", tiff, ifd)
    fields = {}
    for k in range(min(count, 512)):
        tag, kind, _ = struct.unpack_from(order + "HHI", tiff, ifd + 2 + 12 * k)
        if tag in (_TAG_WIDTH, _TAG_HEIGHT, _TAG_ORIENTATION) and kind in (3, 4):  # SHORT or LONG
            fields[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), tiff, ifd + 10 + 12 * k)[0]
    return fields


def _jpeg(data: bytes) -> ImageHeader | None:
    pos, orientation = 2, 1
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            pos += 2
            continue
        (length,) = struct.unpack_from(">H", data, pos + 2)
        body = data[pos + 4 : pos + 2 + length]
        if marker == 0xE1 and body.startswith(b"Exif\x00\x00"):
            orientation = _exif_orientation(body)
        elif marker in _SOF_MARKERS:
            height, width = struct.unpack_from(">HH", body, 1)
            return ImageHeader(width, height, orientation)
        elif marker == 0xDA:  # start of scan before any frame header
            return None
        pos += 2 + length
    return None


def _png(data: bytes) -> ImageHeader:
    width, height = struct.unpack_from(">II", data, 16)
    orientation, pos = 1, 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"eXIf":
            orientation = _exif_orientation(data[pos + 8 : pos + 8 + length])
        if kind in (b"IDAT", b"IEND"):
            break
        pos += 12 + length
    return ImageHeader(width, height, orientation)


def _bmp(data: bytes) -> ImageHeader:
    (dib,) = struct.unpack_from("<I", data, 14)
    if dib == 12:
        width, height = struct.unpack_from("<HH", data, 18)
    else:
        width, height = struct.unpack_from("<ii", data, 18)
    return ImageHeader(abs(width), abs(height))


def _webp(data: bytes) -> ImageHeader | None:
    size, orientation, pos = None, 1, 12
    while pos + 8 <= len(data):
        kind, length = struct.unpack_from("<4sI", data, pos)
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"VP8X":
            w, h = int.from_bytes(body[4:7], "little") + 1, int.from_bytes(body[7:10], "little") + 1
            size = size or (w, h)
        elif kind == b"VP8 ":
            w, h = struct.unpack_from("<HH", body, 6)
            size = size or (w & 0x3FFF, h & 0x3FFF)
        elif kind == b"VP8L":
            (bits,) = struct.unpack_from("<I", body, 1)
            size = size or ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        elif kind == b"EXIF":
            orientation = _exif_orientation(body)
        pos += 8 + length + (length & 1)
    return ImageHeader(size[0], size[1], orientation) if size else None
