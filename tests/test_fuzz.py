"""Bounded-time fuzzing (hypothesis) of the public API with hostile images, boxes, files and manifests.

Every input must either give finite landmarks (confidence in [0, 1], strict JSON) or raise one of the
SDK's input errors (``facealign_sdk.errors.InputError``): never another exception, never NaN.
Derandomized and with a fixed number of examples, so a CI run takes the same bounded time (~20 s).
"""

from __future__ import annotations

import json
import math
import shutil
import struct

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from facealign_sdk.aligner import Aligner  # noqa: E402
from facealign_sdk.errors import InputError  # noqa: E402

FUZZ = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def aligner(tiny_model):
    return Aligner(tiny_model, backend="torch")


def _check_faces(faces) -> None:
    for face in faces:
        assert face.points.shape == (68, 2) and np.isfinite(face.points).all()
        assert np.isfinite(face.confidence).all() and ((face.confidence >= 0) & (face.confidence <= 1)).all()
        assert all(math.isfinite(v) for v in face.box)
        json.dumps(face.to_dict(), allow_nan=False)


@st.composite
def images(draw):
    dtype = draw(st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int32, np.bool_]))
    h, w = draw(st.integers(1, 160)), draw(st.integers(1, 160))
    channels = draw(st.sampled_from([None, 1, 2, 3, 4, 5]))
    shape = (h, w) if channels is None else (h, w, channels)
    kind = draw(st.sampled_from(["noise", "constant", "special"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if kind == "noise":
        data = rng.random(shape)
        data = data * (65535 if dtype == np.uint16 else 255 if dtype in (np.uint8, np.int32) else 1)
    elif kind == "constant":
        data = np.full(shape, draw(st.floats(0, 1)))
    else:
        data = np.full(shape, draw(st.sampled_from([np.nan, np.inf, -1.0, 1e30, 300.0])))
    with np.errstate(invalid="ignore", over="ignore"):
        return data.astype(dtype)


coordinate = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-500, 1500),
                       st.integers(-10**12, 10**12))
boxes = st.lists(st.lists(coordinate, min_size=0, max_size=5), max_size=3)


@FUZZ
@given(image=images(), box_list=st.one_of(st.none(), boxes))
def test_fuzz_images_and_boxes(aligner, face_image, image, box_list):
    try:
        faces = aligner.align(image, boxes=box_list)
    except InputError:
        return
    _check_faces(faces)


@FUZZ
@given(box=st.tuples(st.floats(-400, 800), st.floats(-400, 800), st.floats(1, 2000), st.floats(1, 2000)))
def test_fuzz_boxes_on_a_real_face(aligner, face_image, box):
    x, y, w, h = box
    _check_faces(aligner.align(face_image, boxes=[(x, y, x + w, y + h)]))


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    import zlib

    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@FUZZ
@given(prefix=st.sampled_from([b"", b"\xff\xd8\xff\xe1", b"\x89PNG\r\n\x1a\n", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 ",
                               b"II*\x00", b"MM\x00*"]),
       body=st.binary(max_size=400), width=st.integers(0, 2**31), height=st.integers(0, 2**31))
def test_fuzz_image_files(aligner, tmp_path_factory, prefix, body, width, height):
    from facealign_sdk.imageheader import read_header

    data = prefix + body
    if prefix.startswith(b"\x89PNG"):  # a well-formed header claiming any size, then garbage
        data = prefix + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + body
    header = read_header(data)  # never raises
    assert header is None or (header.width >= 0 and header.height >= 0 and 1 <= header.orientation <= 8)
    path = tmp_path_factory.mktemp("fuzz") / "image.png"
    path.write_bytes(data)
    try:
        faces = aligner.align(path)
    except InputError:
        return
    _check_faces(faces)


MANIFEST_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10**9, 10**9),
                            st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                            st.lists(st.floats(-2, 2), max_size=4), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
MANIFEST_KEYS = ["name", "architecture", "num_landmarks", "landmark_scheme", "input_size", "heatmap_size", "mean", "std",
                 "crop", "crop.crop_scale", "crop.center_shift", "crop.use_roll", "net", "net.width", "net.num_landmarks",
                 "net.heatmap_size", "mirror_symmetric", "weights_sha256", "artifacts_sha256", "unknown_key"]


@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(st.sampled_from(MANIFEST_KEYS), MANIFEST_VALUES), min_size=1, max_size=3))
def test_fuzz_manifests(tiny_model, tmp_path_factory, face_image, edits):
    folder = tmp_path_factory.mktemp("model")
    for name in ("model.safetensors", "manifest.json"):
        shutil.copy(tiny_model / name, folder / name)
    manifest = json.loads((folder / "manifest.json").read_text())
    for key, value in edits:
        node, *rest = key.split(".")
        if rest and isinstance(manifest.get(node), dict):
            manifest[node][rest[0]] = value
        else:
            manifest[node] = value
    (folder / "manifest.json").write_text(json.dumps(manifest))
    try:
        aligner = Aligner(folder, backend="torch", detector=None)
    except InputError:
        return
    _check_faces(aligner.align(face_image, boxes=[(150, 100, 350, 330)]))
