"""Detectors: YuNet on the samples, the insightface adapter (against a stand-in module), the protocol."""

import sys
import types

import numpy as np
import pytest

from facealign_sdk.detectors.base import Detection, FaceDetector
from facealign_sdk.detectors.yunet import YuNetDetector
from facealign_sdk.errors import InputError
from facealign_sdk.imageio import read_image

from .conftest import SAMPLES, has_module


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
    with pytest.raises(InputError, match="runtime must be one of"):
        YuNetDetector(runtime="tflite")


def test_yunet_decoding_is_face_detector_yn_s():
    """decode_outputs on the raw network outputs (OpenCV's DNN, the bundled model) gives FaceDetectorYN's faces."""
    import cv2

    from facealign_sdk.detectors import yunet

    for name, size in (("two_faces.jpg", (640, 448)), ("face.jpg", (320, 320)), ("face.jpg", (480, 352))):
        image = cv2.resize(read_image(SAMPLES / name), size)
        reference = cv2.FaceDetectorYN.create(str(yunet._packaged_model()), "", size, 0.6, 0.3, yunet.TOP_K)
        _, want = reference.detect(image)
        net = cv2.dnn.readNet(str(yunet._packaged_model()))
        net.setInput(np.ascontiguousarray(image.transpose(2, 0, 1)[None], np.float32))
        names = [f"{kind}_{stride}" for kind in ("cls", "obj", "bbox", "kps") for stride in yunet.STRIDES]
        got = yunet.decode_outputs(dict(zip(names, net.forward(names))), size[0], 0.6, 0.3)
        assert want is not None and got.shape == want.shape
        np.testing.assert_allclose(got, want, atol=1e-3)
    empty = {f"{kind}_{s}": np.zeros((1, (64 // s) ** 2, n)) for kind, n in (("cls", 1), ("obj", 1), ("bbox", 4), ("kps", 10))
             for s in yunet.STRIDES}
    assert yunet.decode_outputs(empty, 64, 0.6, 0.3).shape == (0, 15)


@pytest.mark.skipif(not has_module("openvino"), reason="needs openvino (pip install 'facealign-sdk[openvino]')")
def test_yunet_on_openvino_finds_the_faces_opencv_finds():
    opencv, openvino = YuNetDetector(runtime="opencv"), YuNetDetector(runtime="openvino")
    assert openvino.fork().runtime == "openvino" and opencv.fork().runtime == "opencv"
    for name in ("two_faces.jpg", "face.jpg"):
        image = read_image(SAMPLES / name)
        want, got = opencv.detect(image), openvino.detect(image)
        assert len(got) == len(want) > 0
        for a, b in zip(got, want):  # bf16 where the CPU has it: a pixel or two on these faces
            assert np.abs(np.subtract(a.box, b.box)).max() < 2.0 and abs(a.score - b.score) < 0.02
            assert np.abs(np.subtract(a.keypoints, b.keypoints)).max() < 2.0
    assert openvino.detect(np.zeros((200, 300, 3), np.uint8)) == []


@pytest.mark.skipif(not has_module("openvino"), reason="needs openvino (pip install 'facealign-sdk[openvino]')")
def test_yunet_on_openvino_compiles_a_size_seen_often_and_finds_the_same_faces():
    """A size seen STATIC_AFTER times (a video's frames) gets its own compiled model; the faces stay the same; at
    most STATIC_SIZES sizes are kept, and sizes seen once stay on the model for any size."""
    detector = YuNetDetector(runtime="openvino")
    net = detector._net
    image = read_image(SAMPLES / "two_faces.jpg")
    runs = [detector.detect(image) for _ in range(net.STATIC_AFTER + 1)]
    assert len(net._sized) == 1  # the sample's padded size, compiled for it
    for got in runs[net.STATIC_AFTER - 1:]:  # from the static model
        assert len(got) == len(runs[0]) == 2
        for a, b in zip(got, runs[0]):
            assert np.abs(np.subtract(a.box, b.box)).max() < 0.5 and abs(a.score - b.score) < 1e-3
    for side in range(320, 320 + 32 * (net.STATIC_SIZES + 2), 32):  # more sizes, each seen often
        for _ in range(net.STATIC_AFTER):
            net.detect(np.zeros((side, side, 3), np.uint8))
    assert len(net._sized) == net.STATIC_SIZES
    net.detect(np.zeros((64, 96, 3), np.uint8))  # seen once: no compiled model of its own
    assert (64, 96) not in net._sized and net._seen[(64, 96)] == 1


def test_yunet_auto_runtime_takes_openvino_only_where_it_computes_in_bf16(monkeypatch):
    from facealign_sdk.backends import openvino as ov_backend
    from facealign_sdk.detectors import yunet

    class FakeCore:
        def __init__(self, capabilities):
            self.capabilities = capabilities

        def get_property(self, device, name):
            assert (device, name) == ("CPU", "OPTIMIZATION_CAPABILITIES")
            return self.capabilities

    monkeypatch.setattr(ov_backend, "_core", lambda: FakeCore(["FP32", "BF16", "INT8"]))
    assert yunet._openvino_or_opencv() == "openvino"
    monkeypatch.setattr(ov_backend, "_core", lambda: FakeCore(["FP32", "INT8"]))
    assert yunet._openvino_or_opencv() == "opencv"

    def broken():
        raise RuntimeError("no CPU plugin")

    monkeypatch.setattr(ov_backend, "_core", broken)
    assert yunet._openvino_or_opencv() == "opencv"


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


@pytest.mark.parametrize("runtime", ["opencv", "openvino"])
def test_yunet_refuses_what_it_cannot_read_and_takes_any_layout_of_a_bgr_image(runtime):
    """Gray, BGRA and float images get a clear InputError (Aligner converts them first); a strided view and
    sizes that are not multiples of 32 give the same faces as a contiguous copy."""
    if runtime == "openvino":
        pytest.importorskip("openvino")
    detector = YuNetDetector(runtime=runtime)
    image = read_image(SAMPLES / "face.jpg")
    for bad in (image[:, :, 0], np.dstack([image, image[:, :, :1]]), image.astype(np.float32)):
        with pytest.raises(InputError, match="uint8 BGR image"):
            detector.detect(bad)
    odd = image[: image.shape[0] - 7, : image.shape[1] - 5]
    mirrored = odd[:, ::-1]  # a negative-stride view
    for view in (odd, mirrored):
        got = detector.detect(view)
        want = detector.detect(np.ascontiguousarray(view))
        assert len(got) == len(want) >= 1
        assert [d.box for d in got] == [d.box for d in want]
