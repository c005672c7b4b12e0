"""Detectors: YuNet on the samples, the insightface adapter (against a stand-in module), the protocol."""

import sys
import types

import numpy as np
import pytest

from facealign_sdk.detectors.base import Detection, FaceDetector
from facealign_sdk.detectors.yunet import YuNetDetector
from facealign_sdk.imageio import read_image

from .conftest import SAMPLES


def test_yunet_finds_both_sample_faces_with_keypoints():
    dets = YuNetDetector().detect(read_image(SAMPLES / "two_faces.jpg"))
    assert len(dets) == 2 and all(d.score > 0.6 for d in dets)
    for d in dets:
        x1, y1, x2, y2 = d.box
        (lx, ly), (rx, ry) = d.keypoints[:2]
        assert x1 < lx < rx < x2 and y1 < ly < y2  # image-left eye first, inside the box
    assert isinstance(YuNetDetector(), FaceDetector)


def test_yunet_missing_model_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="YuNet model not found"):
        YuNetDetector(tmp_path / "nope.onnx")


@pytest.fixture
def fake_insightface(monkeypatch):
    """A stand-in for insightface.model_zoo with the 0.7 detection API (get_model / prepare / detect)."""
    calls = {}

    class FakeScrfd:
        def prepare(self, ctx_id, input_size, det_thresh):
            calls["prepare"] = (ctx_id, input_size, det_thresh)

        def detect(self, image, max_num=0):
            boxes = np.array([[10, 20, 110, 140, 0.7], [200, 30, 300, 150, 0.95]], np.float32)
            kps = np.array([[[40, 60], [80, 60], [60, 90], [45, 115], [75, 115]]] * 2, np.float32)
            return boxes, kps

    zoo = types.ModuleType("insightface.model_zoo.model_zoo")
    zoo.get_model = lambda path, providers=None: calls.setdefault("get_model", (path, providers)) and FakeScrfd()
    pkg = types.ModuleType("insightface")
    sub = types.ModuleType("insightface.model_zoo")
    sub.model_zoo = zoo
    pkg.model_zoo = sub
    monkeypatch.setitem(sys.modules, "insightface", pkg)
    monkeypatch.setitem(sys.modules, "insightface.model_zoo", sub)
    monkeypatch.setitem(sys.modules, "insightface.model_zoo.model_zoo", zoo)
    return calls


def test_insightface_adapter_converts_detections(fake_insightface, tmp_path):
    from facealign_sdk.detectors.insightface_onnx import InsightFaceDetector

    model = tmp_path / "det.onnx"
    model.write_bytes(b"stand-in")
    det = InsightFaceDetector(model, score_threshold=0.4)
    assert fake_insightface["prepare"] == (-1, (640, 640), 0.4)
    out = det.detect(np.zeros((200, 320, 3), np.uint8))
    assert [d.score for d in out] == pytest.approx([0.95, 0.7])
    assert out[0].box == (200.0, 30.0, 300.0, 150.0) and len(out[0].keypoints) == 5
    assert isinstance(det, FaceDetector)


def test_insightface_adapter_needs_a_local_file(tmp_path):
    from facealign_sdk.detectors.insightface_onnx import InsightFaceDetector

    with pytest.raises(FileNotFoundError, match="local .onnx"):
        InsightFaceDetector(tmp_path / "missing.onnx")


def test_detection_model_is_immutable():
    d = Detection(box=(0, 0, 1, 1))
    with pytest.raises(Exception):
        d.score = 0.5
