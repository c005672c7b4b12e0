"""The float YuNet that the C++ library runs: what cpp/tools/yunet_float.py makes from the vendored int8 model,
and computing what the int8 model computes."""

from __future__ import annotations

import importlib.util

import numpy as np
import onnx
import pytest

from .conftest import REPO

_spec = importlib.util.spec_from_file_location("yunet_float", REPO / "cpp" / "tools" / "yunet_float.py")
yunet_float = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(yunet_float)


def test_committed_float_model_is_the_conversion(tmp_path):
    out = tmp_path / "yunet_float.onnx"
    assert yunet_float.main(["--output", str(out)]) == 0
    assert out.read_bytes() == yunet_float.FLOAT_MODEL.read_bytes()
    assert out.stat().st_size < 300_000


def test_float_model_computes_what_the_int8_model_computes():
    pytest.importorskip("cv2")
    assert yunet_float.check(yunet_float.FLOAT_MODEL, yunet_float.INT8_MODEL) < 1e-4


def test_dequantize_follows_the_operator():
    q = np.array([[-128, 0, 5, 127], [1, 2, 3, 4]], dtype=np.int8)
    scale = np.array([[0.5, 2.0], [1.0, 0.25]], dtype=np.float32)  # blocks of 2 along axis 1
    zero = np.array([[0, 1], [2, 0]], dtype=np.int8)
    got = yunet_float.dequantize(q, scale, zero, axis=1, block_size=2)
    assert np.array_equal(got, [[-64.0, 0.0, 8.0, 252.0], [-1.0, 0.0, 0.75, 1.0]])
    assert np.array_equal(yunet_float.dequantize(q, np.float32(0.5), None, axis=1, block_size=0), q * np.float32(0.5))


def test_refuses_a_model_without_quantised_weights():
    with pytest.raises(ValueError, match="no constant DequantizeLinear"):
        yunet_float.to_float(onnx.load(str(yunet_float.FLOAT_MODEL)))
