"""Aligner: the pipeline on real images, input conversion and every bad-input path."""

import json
import shutil

import cv2
import numpy as np
import pytest

from facealign_sdk.aligner import Aligner
from facealign_sdk.backends import BackendError
from facealign_sdk.detectors.base import Detection
from facealign_sdk.imageio import ImageError
from facealign_sdk.model import ModelError

from .conftest import SAMPLES, model_copy


@pytest.fixture(scope="module")
def aligner(tiny_model):
    return Aligner(tiny_model, backend="torch")


def test_sample_image_gives_68_points_per_face(aligner):
    faces = aligner.align(SAMPLES / "face.jpg")
    assert len(faces) == 1
    f = faces[0]
    assert f.points.shape == (68, 2) and f.confidence.shape == (68,)
    assert np.isfinite(f.points).all() and ((f.confidence >= 0) & (f.confidence <= 1)).all()
    assert f.score > 0.5


def test_two_faces_are_batched_into_one_call(tiny_model):
    calls = []
    a = Aligner(tiny_model, backend="torch")
    run = a.backend.run
    a.backend.run = lambda batch: calls.append(len(batch)) or run(batch)
    faces = a.align(SAMPLES / "two_faces.jpg")
    assert len(faces) == 2 and calls == [2]


def test_align_batch_shares_inference_calls(tiny_model, face_image):
    calls = []
    a = Aligner(tiny_model, backend="torch")
    run = a.backend.run
    a.backend.run = lambda batch: calls.append(len(batch)) or run(batch)
    out = a.align_batch([face_image, face_image, np.zeros((64, 64, 3), np.uint8)])
    assert [len(r) for r in out] == [1, 1, 0] and calls == [2]
    assert np.allclose(out[0][0].points, out[1][0].points)


def test_user_boxes_skip_the_detector(tiny_model, face_image):
    a = Aligner(tiny_model, backend="torch", detector=None)
    faces = a.align(face_image, boxes=[(150, 100, 350, 330)])
    assert len(faces) == 1 and faces[0].box == (150.0, 100.0, 350.0, 330.0)
    with pytest.raises(ValueError, match="no detector"):
        a.align(face_image)
    with pytest.raises(ValueError, match="x1, y1, x2, y2"):
        a.align(face_image, boxes=[(1, 2, 3)])
    with pytest.raises(ValueError, match="invalid face box"):
        a.align(face_image, boxes=[(10, 10, 5, 5)])


def test_custom_detector_protocol(tiny_model, face_image):
    class Fixed:
        def detect(self, image):
            return [Detection(box=(150, 100, 350, 330), score=0.9)]

    faces = Aligner(tiny_model, backend="torch", detector=Fixed()).align(face_image)
    assert len(faces) == 1 and faces[0].score == pytest.approx(0.9)


@pytest.mark.parametrize(
    "convert",
    [
        lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY),
        lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY)[:, :, None],
        lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2BGRA),
        lambda im: im.astype(np.uint16) * 257,
        lambda im: im.astype(np.float32) / 255.0,
    ],
    ids=["gray", "gray1", "bgra", "16bit", "float"],
)
def test_image_kinds_are_converted(aligner, face_image, convert):
    faces = aligner.align(convert(face_image))
    assert len(faces) == 1 and faces[0].points.shape == (68, 2)


def test_tiny_and_huge_images(aligner, face_image):
    assert aligner.align(np.zeros((1, 1, 3), np.uint8)) == []
    huge = cv2.resize(face_image, (3000, 3000))
    faces = aligner.align(huge)
    assert len(faces) == 1 and faces[0].box[2] > 1000  # coordinates in the huge image's pixels


def test_no_face_is_an_empty_result_not_an_error(aligner):
    assert aligner.align(np.full((300, 400, 3), 127, np.uint8)) == []


def test_bad_image_inputs(aligner, tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        aligner.align(tmp_path / "missing.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="not a readable image"):
        aligner.align(bad)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageError, match="not a readable image"):
        aligner.align(empty)
    with pytest.raises(ImageError, match="shape"):
        aligner.align(np.zeros((4, 4, 4, 4), np.uint8))
    with pytest.raises(ImageError, match="channels"):
        aligner.align(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(ImageError, match="pixel type"):
        aligner.align(np.zeros((10, 10, 3), np.int64))
    with pytest.raises(ImageError, match="NaN or inf"):
        aligner.align(np.full((10, 10, 3), np.nan, np.float32))
    with pytest.raises(ImageError, match=r"\[0, 1\]"):  # a float image still in 0-255: no silent all-white image
        aligner.align(np.full((10, 10, 3), 200.0, np.float32))


def test_bad_model_and_backend_names(tiny_model, tmp_path):
    with pytest.raises(BackendError, match="unknown backend"):
        Aligner(tiny_model, backend="tensorflow")
    with pytest.raises(ModelError, match="not found"):
        Aligner(tmp_path / "nope")
    with pytest.raises(ModelError, match="manifest"):
        Aligner(tmp_path)  # a folder that is not a model
    with pytest.raises(ValueError, match="refine"):
        Aligner(tiny_model, refine="cubic")


def test_missing_or_corrupt_weights(tiny_model, tmp_path):
    broken = tmp_path / "m"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="missing"):
        Aligner(broken, backend="torch")
    (broken / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="sha256"):
        Aligner(broken, backend="torch")


def test_wrong_landmark_count(tiny_model, tmp_path):
    with pytest.raises(ModelError, match="expected 98"):
        Aligner(tiny_model, backend="torch", num_landmarks=98)
    lying = tmp_path / "m"
    shutil.copytree(tiny_model, lying)
    manifest = json.loads((lying / "manifest.json").read_text())
    manifest["net"]["num_landmarks"] = 5
    (lying / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="num_landmarks 68 disagrees with net.num_landmarks 5"):  # caught in the manifest
        Aligner(lying, backend="torch")


def test_custom_landmark_scheme(tmp_path):
    torch = pytest.importorskip("torch")
    from facealign_sdk.nets import LandmarkNet, NetConfig
    from facealign_sdk.training.release import write_model_folder

    torch.manual_seed(0)
    write_model_folder(LandmarkNet(NetConfig(width=8, num_landmarks=5)).eval(), tmp_path, "five", [])
    a = Aligner(tmp_path, backend="torch")
    faces = a.align(SAMPLES / "face.jpg")
    assert faces[0].points.shape == (5, 2) and a.num_landmarks == 5
    with pytest.raises(ModelError, match="mirror order"):
        Aligner(tmp_path, backend="torch", flip=True)


def test_flip_averaging_is_mirror_equivariant(tiny_model, face_image):
    """With flip=True a mirrored image gives exactly the mirrored landmarks, even from an untrained net."""
    from facealign_sdk.schemes import FLIP_68

    a = Aligner(tiny_model, backend="torch", detector=None, flip=True)
    w = face_image.shape[1]
    x1, y1, x2, y2 = 150.0, 90.0, 330.0, 300.0
    face = a.align(face_image, boxes=[(x1, y1, x2, y2)])[0]
    mirrored = a.align(face_image[:, ::-1], boxes=[(w - 1 - x2, y1, w - 1 - x1, y2)])[0]
    expected = face.points[FLIP_68].copy()
    expected[:, 0] = w - 1 - expected[:, 0]
    assert np.abs(mirrored.points - expected).max() < 0.05
    plain = Aligner(tiny_model, backend="torch", detector=None).align(face_image, boxes=[(x1, y1, x2, y2)])[0]
    assert np.abs(plain.points - face.points).max() > 0.05  # the averaging did something


def test_results_serialise(aligner):
    d = aligner.align(SAMPLES / "face.jpg")[0].to_dict()
    assert len(d["points"]) == 68 and len(d["confidence"]) == 68 and len(d["box"]) == 4
    json.dumps(d)


# -- Landmarker: the part after the detector ---------------------------------------------------------
def test_landmarker_without_arguments_runs_as_the_aligner(tiny_model):
    """Landmarker documents its arguments as the Aligner's: with none given it decodes and runs alike."""
    from facealign_sdk.landmarker import Landmarker

    own, aligner = Landmarker(tiny_model), Aligner(tiny_model, detector=None).landmarker
    assert own.backend.name == aligner.backend.name
    for lm in (own, aligner):
        assert (lm.refine, lm.blur, lm.flip, lm.batch_size) == ("soft", True, False, 32)


def test_landmarker_crops_as_its_manifest_says(tiny_model, tmp_path):
    from facealign_sdk import geometry
    from facealign_sdk.facecrop import template_points
    from facealign_sdk.landmarker import Landmarker

    crop = {"crop_scale": 1.7, "center_shift": 0.05, "use_roll": True}
    lm = Landmarker(model_copy(tiny_model, tmp_path, lambda m: m["crop"].update(crop)), backend="torch")
    box = (100.0, 80.0, 220.0, 200.0)
    assert lm.frame_for(Detection(box=box)) == geometry.frame_from_box(box, 0.0, crop_scale=1.7, center_shift=0.05)
    tilted = template_points("68", 200) @ np.array([[0.94, 0.34], [-0.34, 0.94]])  # turned by 20 degrees
    frame = lm.frame_from_landmarks(tilted)
    assert frame == geometry.frame_from_points(tilted, True, crop_scale=1.7, center_shift=0.05)
    assert abs(frame.roll) > 0.3


def test_flip_averages_the_mirrored_heatmaps(tiny_model):
    from facealign_sdk.landmarker import Landmarker
    from facealign_sdk.schemes import FLIP_68

    lm = Landmarker(tiny_model, backend="torch", flip=True)
    batch = np.random.default_rng(0).random((2, 3, lm.manifest.input_size, lm.manifest.input_size), np.float32)
    plain, mirrored = lm.backend.run(batch), lm.backend.run(np.ascontiguousarray(batch[..., ::-1]))
    np.testing.assert_allclose(lm.heatmaps(batch), (plain + mirrored[:, FLIP_68, :, ::-1]) / 2, rtol=1e-6)


def test_landmarker_decodes_with_its_blur_setting(tiny_model):
    from facealign_sdk.landmarker import Landmarker

    lm = Landmarker(tiny_model, backend="torch", blur=False)
    size = lm.manifest.input_size
    heat = lm.heatmaps(np.random.default_rng(1).random((1, 3, size, size), np.float32))
    points, _ = lm.decode(heat)
    np.testing.assert_array_equal(points, lm.codec.decode(heat, "soft", False)[0])
    assert np.abs(points - lm.codec.decode(heat, "soft", True)[0]).max() > 1e-3


@pytest.mark.parametrize("symmetric, flip, warns", [(False, True, True), (False, False, False), (True, True, False)])
def test_flip_on_a_model_trained_without_mirroring_warns(tiny_model, tmp_path, caplog, symmetric, flip, warns):
    from facealign_sdk.landmarker import Landmarker

    edited = model_copy(tiny_model, tmp_path, lambda m: m.update(mirror_symmetric=symmetric))
    Landmarker(edited, backend="torch", flip=flip)
    assert ("trained without mirror augmentation" in caplog.text) is warns


class _FakeBackend:
    """A backend whose network has ``num_landmarks`` outputs and fails with ``message`` when run."""

    def __init__(self, num_landmarks: int, message: str) -> None:
        self.num_landmarks, self.message = num_landmarks, message

    def run(self, batch: np.ndarray) -> np.ndarray:
        raise RuntimeError(self.message)


@pytest.mark.parametrize("message, shown", [("first line\nsecond line", "first line"), ("", "")])
def test_a_network_that_cannot_run_is_a_model_error_with_the_first_line(tiny_model, monkeypatch, message, shown):
    import re

    from facealign_sdk import landmarker

    monkeypatch.setattr(landmarker, "load_backend", lambda *args, **kwargs: _FakeBackend(68, message))
    with pytest.raises(ModelError, match=re.escape(f"as the manifest says (RuntimeError: {shown})")):
        landmarker.Landmarker(tiny_model)
    monkeypatch.setattr(landmarker, "load_backend", lambda *args, **kwargs: _FakeBackend(5, message))
    with pytest.raises(ModelError, match="network outputs 5 landmarks but the manifest says 68"):
        landmarker.Landmarker(tiny_model)


def test_nan_confidence_alone_is_refused_too(aligner, face_image, monkeypatch):
    lm = aligner.landmarker
    real_decode = lm.decode

    def nan_confidence(heat):
        points, confidence = real_decode(heat)
        return points, np.full_like(confidence, np.nan)

    monkeypatch.setattr(lm, "decode", nan_confidence)
    with pytest.raises(ModelError, match="NaN or inf for a face crop"):
        aligner.align(face_image, boxes=[(150.0, 90.0, 330.0, 300.0)])
