"""The released model in models/: present, consistent, and the same on ONNX Runtime and PyTorch."""

import numpy as np
import pytest

from facealign_sdk.aligner import Aligner
from facealign_sdk.model import DEFAULT_MODEL, load_manifest, sha256
from facealign_sdk.resources import models_root

from .conftest import SAMPLES, has_module

MODEL_DIR = models_root() / DEFAULT_MODEL


def test_released_model_folder_is_complete():
    manifest = load_manifest(MODEL_DIR)
    assert manifest.num_landmarks == 68 and manifest.input_size == 256 and manifest.heatmap_size == 128
    assert sha256(MODEL_DIR / "model.safetensors") == manifest.weights_sha256
    assert (MODEL_DIR / "model.onnx").is_file() and (MODEL_DIR / "CARD.md").is_file()
    card = (MODEL_DIR / "CARD.md").read_text()
    assert "non-commercial" in card and "NME" in card


def test_default_aligner_uses_a_cpu_runtime_of_model_onnx():
    aligner = Aligner()
    assert aligner.backend_name.split(":")[0] in ("ort", "openvino")  # whichever is faster here
    faces = aligner.align(SAMPLES / "face.jpg")
    assert len(faces) == 1 and faces[0].points.shape == (68, 2)
    # the points lie on the face: inside the (slightly enlarged) detector box
    x1, y1, x2, y2 = faces[0].box
    pts = faces[0].points
    w, h = x2 - x1, y2 - y1
    assert (pts[:, 0] > x1 - 0.2 * w).all() and (pts[:, 0] < x2 + 0.2 * w).all()
    assert (pts[:, 1] > y1 - 0.2 * h).all() and (pts[:, 1] < y2 + 0.3 * h).all()


@pytest.mark.skipif(not has_module("torch"), reason="PyTorch not installed")
def test_onnx_runtime_and_torch_agree_within_0_05_px():
    ort_faces = Aligner(backend="ort").align(SAMPLES / "two_faces.jpg")
    torch_faces = Aligner(backend="torch").align(SAMPLES / "two_faces.jpg")
    assert len(ort_faces) == len(torch_faces) == 2
    for a, b in zip(ort_faces, torch_faces):
        assert np.abs(a.points - b.points).max() < 0.05
        assert np.abs(a.confidence - b.confidence).max() < 0.01


def test_onnx_metadata_carries_the_manifest():
    pytest.importorskip("onnx")
    from facealign_sdk.export.onnx import read_metadata

    meta = read_metadata(MODEL_DIR / "model.onnx")
    assert meta["num_landmarks"] == "68"
    assert meta["weights_sha256"] == load_manifest(MODEL_DIR).weights_sha256


def test_installed_wheel_finds_its_models(tmp_path, monkeypatch):
    """A package with its own _models (a wheel) finds released models there, not in any checkout."""
    import shutil

    from facealign_sdk import model as model_module
    from facealign_sdk import resources

    wheel_models = tmp_path / "_models"
    shutil.copytree(MODEL_DIR, wheel_models / "packed", ignore=shutil.ignore_patterns("*.onnx", "eval"))
    monkeypatch.setattr(resources, "_packaged", lambda name: tmp_path / name)
    assert model_module.resolve_model_dir("packed") == wheel_models / "packed"
    with pytest.raises(model_module.ModelError, match="released models: \\['packed'\\]"):
        model_module.resolve_model_dir("missing")
    # a released model's file by name: the int8 graph of a wheel install
    (wheel_models / "packed" / "model_int8.onnx").write_bytes(b"graph")
    assert model_module.resolve_model("packed/model_int8.onnx") == (wheel_models / "packed",
                                                                   wheel_models / "packed" / "model_int8.onnx")
    assert model_module.resolve_model("packed") == (wheel_models / "packed", None)
    # a file the folder lacks (the fp16 graph is made on demand): the error says what the folder has and what makes it
    with pytest.raises(model_module.ModelError, match="has no model_fp16.onnx \\(it has model_int8.onnx; "
                       "`facealign export"):
        model_module.resolve_model("packed/model_fp16.onnx")
    with pytest.raises(model_module.ModelError, match="has no model_fp16.onnx"):
        model_module.resolve_model(wheel_models / "packed" / "model_fp16.onnx")
    with pytest.raises(model_module.ModelError, match="released models: \\['packed'\\]"):
        model_module.resolve_model("missing/model.onnx")
