"""The OpenVINO backend: parity with ONNX Runtime on the released model, fp32, threads, thread-safety."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from facealign_sdk import Aligner
from facealign_sdk.backends import BackendError
from facealign_sdk.model import resolve_model_dir

pytest.importorskip("openvino")
pytest.importorskip("onnxruntime")
from facealign_sdk.backends.openvino import OpenVinoBackend  # noqa: E402

RELEASED = resolve_model_dir(None)


@pytest.fixture(scope="module")
def released_onnx():
    path = RELEASED / "model.onnx"
    if not path.is_file():
        pytest.skip("the released model.onnx is not present")
    return path


def test_points_match_onnx_runtime_on_the_sample(released_onnx, face_image):
    ort = Aligner(RELEASED, backend="ort")
    ov = Aligner(RELEASED, backend="openvino")
    assert ov.backend_name == "openvino:CPU" and ov.backend.precision == "f32"
    a, b = ort.align(face_image), ov.align(face_image)
    assert len(a) == len(b) == 1
    assert np.abs(a[0].points - b[0].points).max() < 0.01
    assert np.abs(a[0].confidence - b[0].confidence).max() < 1e-3


def test_threads_come_from_the_environment(released_onnx, monkeypatch):
    monkeypatch.setenv("FACEALIGN_THREADS", "1")
    backend = OpenVinoBackend(released_onnx)
    assert int(backend.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    monkeypatch.setenv("FACEALIGN_THREADS", "two")
    with pytest.raises(BackendError, match="FACEALIGN_THREADS"):
        OpenVinoBackend(released_onnx)


def test_threads_share_one_backend(released_onnx):
    backend = OpenVinoBackend(released_onnx, threads=1)
    rng = np.random.default_rng(0)
    crops = [rng.random((n, 3, 256, 256), dtype=np.float32) for n in (1, 2, 1, 3)]
    expected = [backend.run(c) for c in crops]
    got: dict[int, list[np.ndarray]] = {}

    def work(k: int) -> None:
        got[k] = [backend.run(c) for c in crops]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for outs in got.values():
        for out, ref in zip(outs, expected):
            assert out.shape == ref.shape
            np.testing.assert_array_equal(out, ref)


def test_bad_inputs(released_onnx, tmp_path):
    backend = OpenVinoBackend(released_onnx)
    with pytest.raises(ValueError, match="input batch must be"):
        backend.run(np.zeros((1, 3, 128, 128), np.float32))
    with pytest.raises(BackendError, match="not found"):
        OpenVinoBackend(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(BackendError, match="OpenVINO cannot load it"):
        OpenVinoBackend(tmp_path / "junk.onnx")
    with pytest.raises(BackendError, match="runs on the CPU"):
        Aligner(RELEASED, backend="openvino", device="cuda")
