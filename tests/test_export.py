"""Export to ONNX fp32 / fp16 / int8 (+ decoding graph), the parity report, and bad input.

The tiny random-weights model's heatmaps are noise, so its int8 landmarks are
meaningless: these tests check the mechanics (graphs, metadata, runtime loading,
report) and the fp32 / fp16 numbers, not the int8 parity limit.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

import onnx  # noqa: E402

from facealign_sdk.cli import export as export_cli  # noqa: E402
from facealign_sdk.export.onnx import (METADATA_KEY, OPSET, downgrade_to_opset17, load_fp32_graph,  # noqa: E402
                                      read_metadata)
from facealign_sdk.export.parity import ParityReport, landmark_stats, precision_of  # noqa: E402
from facealign_sdk.export import int8_gate, quantize  # noqa: E402
from facealign_sdk.export.quantize import load_face_crops, noise_crops, pick_evenly, sort_nodes  # noqa: E402
from facealign_sdk.model import Manifest, ModelError, load_manifest, resolve_model_dir, sha256  # noqa: E402


def _args(model: Path | str, *argv: str, **overrides) -> argparse.Namespace:
    """``facealign export --model MODEL ARGV...`` parsed, then ``overrides`` set on the result."""
    parser = argparse.ArgumentParser()
    export_cli.add_arguments(parser)
    args = parser.parse_args(["--model", str(model), *argv])
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


@pytest.fixture(scope="module")
def exported(tiny_model: Path, tmp_path_factory) -> Path:
    """The tiny model exported once to onnx, fp16, int8 and decode (in a separate folder)."""
    out = tmp_path_factory.mktemp("exported")
    args = _args(tiny_model, to="onnx,fp16,int8,decode", out=out, calib_count=8, parity_faces=8,
                 bench_repeats=1, warn_only=True, no_int8_gate=True)
    assert export_cli.run(args) == 0
    return out


def _input(n: int) -> np.ndarray:
    return np.random.default_rng(n).random((n, 3, 256, 256), dtype=np.float32)


def test_artifacts_and_report(exported: Path) -> None:
    for name in ("model.onnx", "model_fp16.onnx", "model_int8.onnx", "model_decode.onnx", "parity.json", "manifest.json"):
        assert (exported / name).is_file(), name
    report = ParityReport.model_validate_json((exported / "parity.json").read_text())
    rows = {r.artifact: r for r in report.rows}
    assert set(rows) == {"model.onnx", "model_fp16.onnx", "model_int8.onnx", "model_decode.onnx"}
    assert report.faces == 8 and "p99" in report.criterion
    fp32 = rows["model.onnx"]
    assert fp32.passed and fp32.landmark_p99_px <= 0.05 and fp32.heatmap_max_abs < 1e-4
    assert rows["model_fp16.onnx"].heatmap_max_abs < 1e-2
    assert rows["model_decode.onnx"].heatmap_max_abs is None and rows["model_decode.onnx"].landmark_p99_px < 0.05
    assert all(r.ms_per_face and r.ms_per_face > 0 for r in report.rows)
    int8 = rows["model_int8.onnx"]  # judged by the int8 gate, skipped here: not judged is not passed
    assert int8.limit_px is None and not int8.passed and "int8 gate" in int8.note and not report.passed
    assert report.int8_gate.note == "not judged: --no-int8-gate"
    recorded = load_manifest(exported).artifacts_sha256  # the runtime checks each file against these
    assert set(recorded) == set(rows) and recorded["model.onnx"] == sha256(exported / "model.onnx")
    assert set(report.reference_noise_px) == {"mean", "p99", "max"} and report.reference_noise_px["max"] >= 0


def test_fp32_graph(exported: Path, tiny_model: Path) -> None:
    model = onnx.load(str(exported / "model.onnx"))
    onnx.checker.check_model(model, full_check=True)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [OPSET]
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    (inp,), (out,) = model.graph.input, model.graph.output
    assert (inp.name, out.name) == ("image", "heatmaps")
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    assert isinstance(dims[0], str) and dims[1:] == [3, 256, 256]
    meta = read_metadata(exported / "model.onnx")
    manifest = Manifest.model_validate_json(meta[METADATA_KEY])
    assert manifest == load_manifest(tiny_model)
    assert meta["num_landmarks"] == "68" and meta["input_size"] == "256" and meta["heatmap_size"] == "128"
    assert json.loads(meta["mean"]) == list(manifest.mean) and meta["weights_sha256"] == manifest.weights_sha256


def test_weights_are_stored_in_fp16_and_computed_in_fp32(exported: Path, tmp_path: Path) -> None:
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, numpy_helper

    stored = onnx.load(str(exported / "model.onnx"))
    layers = [n for n in stored.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    casts = {n.output[0]: n.input[0] for n in stored.graph.node if n.op_type == "Cast"}
    half = {t.name: t for t in stored.graph.initializer if t.data_type == TensorProto.FLOAT16}
    assert layers and all(casts.get(n.input[1]) in half for n in layers)  # every layer's weights
    assert read_metadata(exported / "model.onnx")["weights"] == "fp16 storage, fp32 arithmetic"
    assert read_metadata(exported / "model_decode.onnx")["weights"] == "fp16 storage, fp32 arithmetic"
    # the tools that rewrite weights get them back as fp32 initializers, the same values, no casts left
    expanded = load_fp32_graph(exported / "model.onnx")
    values = {t.name: numpy_helper.to_array(t) for t in expanded.graph.initializer}
    assert not [n for n in expanded.graph.node if n.op_type == "Cast" and n.input[0] in half]
    for layer in layers:
        assert values[layer.input[1]].dtype == np.float32
        assert np.array_equal(values[layer.input[1]], numpy_helper.to_array(half[casts[layer.input[1]]]))
    onnx.save(expanded, str(tmp_path / "expanded.onnx"))
    x = noise_crops(2)
    outputs = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
               for p in (exported / "model.onnx", tmp_path / "expanded.onnx")]
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)


def test_load_fp32_graph_folds_an_initializer_read_by_several_nodes(tmp_path: Path) -> None:
    """An fp16 initializer read by two casts and by a node of its own: each cast becomes an fp32 initializer and
    the fp16 one stays for its other reader (folding by initializer name left a cast output undefined)."""
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(4, dtype=np.float16).reshape(2, 2) / 3, "w")
    nodes = [helper.make_node("Cast", ["w"], ["w_a"], to=TensorProto.FLOAT),
             helper.make_node("Cast", ["w"], ["w_b"], to=TensorProto.FLOAT),
             helper.make_node("MatMul", ["x", "w_a"], ["a"]), helper.make_node("MatMul", ["a", "w_b"], ["y"]),
             helper.make_node("Identity", ["w"], ["half"])]
    graph = helper.make_graph(nodes, "shared", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2]),
                               helper.make_tensor_value_info("half", TensorProto.FLOAT16, [2, 2])], [weights])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)]), str(tmp_path / "s.onnx"))
    folded = load_fp32_graph(tmp_path / "s.onnx")
    onnx.checker.check_model(folded, full_check=True)
    assert not [n for n in folded.graph.node if n.op_type == "Cast"]
    assert sorted(t.name for t in folded.graph.initializer) == ["w", "w_a", "w_b"]
    onnx.save(folded, str(tmp_path / "f.onnx"))
    x = np.eye(2, dtype=np.float32) * 2
    before, after = (ort.InferenceSession(str(tmp_path / name), providers=["CPUExecutionProvider"]).run(None, {"x": x})
                     for name in ("s.onnx", "f.onnx"))
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_ort_matches_torch_dynamic_batch(exported: Path, tiny_model: Path) -> None:
    import torch

    from facealign_sdk.backends.ort import OrtBackend
    from facealign_sdk.backends.torch_backend import load_network

    manifest = load_manifest(tiny_model)
    net = load_network(tiny_model, manifest)
    backend = OrtBackend(exported / "model.onnx", 256, "cpu")
    for n in (1, 3):
        x = _input(n)
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        out = backend.run(x)
        assert out.shape == (n, 68, 128, 128)
        np.testing.assert_allclose(out, ref, atol=1e-5, rtol=0)


def test_reduced_precision_graphs(exported: Path) -> None:
    import onnxruntime as ort

    from facealign_sdk.backends.ort import OrtBackend

    ref = OrtBackend(exported / "model.onnx", 256, "cpu").run(_input(2))
    for name, precision, tol in (("model_fp16.onnx", "fp16", 1e-2), ("model_int8.onnx", "int8-qdq", 5e-2)):
        path = exported / name
        onnx.checker.check_model(str(path))
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].type == "tensor(float)" and session.get_outputs()[0].type == "tensor(float)"
        meta = read_metadata(path)
        assert meta["precision"] == precision and METADATA_KEY in meta
        out = OrtBackend(path, 256, "cpu").run(_input(2))
        assert out.shape == ref.shape and np.abs(out - ref).max() < tol
    ops = {n.op_type for n in onnx.load(str(exported / "model_int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_meta = read_metadata(exported / "model_int8.onnx")
    assert int8_meta["int8_head"] == "fp32" and int8_meta["int8_subpixel"] == "true"
    assert "DepthToSpace" in ops  # the quantized stride-2 ConvTransposes rewritten as Conv + DepthToSpace
    graph = onnx.load(str(exported / "model_int8.onnx")).graph
    head = next(n for n in graph.node if graph.output[0].name in n.output)
    assert head.op_type == "ConvTranspose"  # the float head stays a ConvTranspose (faster on OpenVINO)


def test_decode_graph_matches_decoder(exported: Path) -> None:
    import onnxruntime as ort

    from facealign_sdk.decode import decode_heatmaps

    x = _input(2)
    heatmaps = ort.InferenceSession(str(exported / "model.onnx"), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    session = ort.InferenceSession(str(exported / "model_decode.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["points", "scores"]
    points, scores = session.run(None, {"image": x})
    ref_points, ref_scores = decode_heatmaps(heatmaps, "soft")
    assert points.shape == (2, 68, 2) and scores.shape == (2, 68)
    np.testing.assert_allclose(points, ref_points, atol=1e-3)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-4)


def test_runtime_uses_the_decode_graph(exported: Path, face_image) -> None:
    """A folder with model_decode.onnx: the Aligner takes it (points out) and gets the same landmarks."""
    from facealign_sdk.aligner import Aligner

    box = [(150.0, 90.0, 330.0, 300.0)]
    graph = Aligner(model=exported, backend="ort", device="cpu", detector=None)
    assert graph.decodes_in_graph and graph.backend.output_names == ["points", "scores"]
    numpy = Aligner(model=exported / "model.onnx", backend="ort", device="cpu", detector=None)
    assert not numpy.decodes_in_graph
    a, b = graph.align(face_image, box)[0], numpy.align(face_image, box)[0]
    np.testing.assert_allclose(a.points, b.points, atol=0.01)
    np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-3)
    assert not Aligner(model=exported, backend="ort", detector=None, flip=True).decodes_in_graph  # needs heatmaps
    with pytest.raises(ModelError, match="decodes inside the graph.* need the heatmaps of " + re.escape(str(exported / "model.onnx"))):
        Aligner(model=exported / "model_decode.onnx", backend="ort", detector=None, refine="quadratic")


def test_runtime_loads_artifacts(exported: Path) -> None:
    from facealign_sdk.aligner import Aligner

    for name in ("model.onnx", "model_fp16.onnx", "model_int8.onnx"):
        aligner = Aligner(model=exported / name, backend="ort", device="cpu", detector=None)
        assert aligner.backend.name.startswith("ort")
        assert aligner.backend.run(_input(1)).shape == (1, 68, 128, 128)
    auto = Aligner(model=exported, detector=None)  # folder with model.onnx: auto picks ONNX Runtime
    assert auto.backend.name.startswith("ort")


# ---------------------------------------------------------------------------------------------
# bad input


def test_unknown_target(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match="unknown --to target"):
        export_cli.run(_args(tiny_model, to="onnx,tflite"))
    assert export_cli.parse_targets("int8") == ["onnx", "int8"]
    assert export_cli.parse_targets("trt") == ["onnx", "fp16", "trt"]


def _copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.onnx", "*.engine", "parity.json"))
    return dst


def test_missing_corrupt_and_replaced_weights(tiny_model: Path, tmp_path: Path) -> None:
    missing = _copy_model(tiny_model, tmp_path / "missing")
    (missing / "model.safetensors").unlink()
    with pytest.raises(ModelError, match="missing"):
        export_cli.run(_args(missing, to="onnx"))

    replaced = _copy_model(tiny_model, tmp_path / "replaced")
    data = bytearray((replaced / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (replaced / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        export_cli.run(_args(replaced, to="onnx"))

    corrupt = _copy_model(tiny_model, tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"not a safetensors file")
    manifest = load_manifest(corrupt)
    (corrupt / "manifest.json").write_text(manifest.model_copy(update={"weights_sha256": ""}).model_dump_json())
    with pytest.raises(ModelError, match="cannot read weights"):
        export_cli.run(_args(corrupt, to="onnx"))


def test_wrong_input_size(tiny_model: Path, tmp_path: Path) -> None:
    folder = _copy_model(tiny_model, tmp_path / "wrong")
    manifest = load_manifest(folder)
    (folder / "manifest.json").write_text(manifest.model_copy(update={"input_size": 224}).model_dump_json())
    with pytest.raises(ModelError, match="input_size 224"):
        export_cli.run(_args(folder, to="onnx"))


def test_cli_exit_codes(tiny_model: Path, tmp_path: Path, capsys) -> None:
    from facealign_sdk.cli.main import main

    assert main(["export", "--model", str(tiny_model), "--to", "bogus"]) == 2
    assert "unknown --to target" in capsys.readouterr().err
    assert main(["export", "--model", str(tmp_path / "nope")]) == 2
    # a folder the user names must exist (only the default ../shared folders fall back to noise crops)
    out = tmp_path / "out"
    assert main(["export", "--model", str(tiny_model), "--to", "int8", "--calib", str(tmp_path / "nocalib"), "--out", str(out)]) == 2
    assert "--calib" in capsys.readouterr().err and not out.exists()
    assert main(["export", "--model", str(tiny_model), "--parity-data", str(tmp_path / "noval"), "--out", str(out)]) == 2
    assert "--parity-data" in capsys.readouterr().err and not out.exists()


def test_trt_without_tensorrt(tiny_model: Path, tmp_path: Path, capsys) -> None:
    import importlib.util

    from facealign_sdk.backends import BackendError

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    with pytest.raises(BackendError, match="TensorRT"):
        export_cli.run(_args(tiny_model, to="onnx,trt", out=tmp_path))
    printed = capsys.readouterr().out
    assert "trtexec --onnx=" in printed and "--fp16" in printed
    assert "--minShapes=image:1x3x256x256" in printed and "--maxShapes=image:64x3x256x256" in printed
    assert not (tmp_path / "model.onnx").exists()  # failed before doing any work


# ---------------------------------------------------------------------------------------------
# helpers


def test_downgrade_keeps_reduce_axes() -> None:
    from onnx import TensorProto, helper

    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1, noop_with_empty_axes=0)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 1, 1])],
        [helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    downgrade_to_opset17(model)
    onnx.checker.check_model(model)
    attrs = {a.name: helper.get_attribute_value(a) for a in model.graph.node[0].attribute}
    assert attrs == {"keepdims": 1, "axes": [2, 3]} and list(model.graph.node[0].input) == ["x"]


def test_sort_nodes() -> None:
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["a"], ["b"], name="second"), helper.make_node("Neg", ["x"], ["a"], name="first")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])])
    sort_nodes(graph)
    assert [n.name for n in graph.node] == ["first", "second"]


def test_parity_helpers() -> None:
    ref = np.zeros((1, 100, 2))
    moved = ref.copy()
    moved[0, 0] = [3.0, 4.0]  # one landmark 5 px off: the p99 is robust to it, the max is not
    stats = landmark_stats(ref, moved)
    assert stats["landmark_max_px"] == 5.0 and stats["landmark_mean_px"] == pytest.approx(0.05)
    assert stats["landmark_p99_px"] < 0.1
    assert [precision_of(Path(p)) for p in ("model.onnx", "model_fp16.onnx", "model_int8.onnx", "x.engine")] == [
        "fp32", "fp16", "int8", "fp16"]
    assert [p.name for p in pick_evenly([Path(f"{i}.jpg") for i in range(10)], 3)] == ["0.jpg", "4.jpg", "9.jpg"]
    assert noise_crops(2).shape == (2, 3, 256, 256)


def test_face_crops(shared_data: Path) -> None:
    crops = load_face_crops(shared_data / "ytf68" / "val", 2)
    assert crops.shape == (2, 3, 256, 256) and crops.dtype == np.float32 and 0.0 <= crops.min() and crops.max() <= 1.0


@pytest.mark.parametrize(("kernel", "pads", "bias"), [(4, 1, True), (2, 0, False)])
def test_convtranspose_to_subpixel_is_exact(kernel: int, pads: int, bias: bool) -> None:
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from facealign_sdk.export.quantize import convtranspose_to_subpixel

    rng = np.random.default_rng(kernel)
    inits = [numpy_helper.from_array(rng.standard_normal((3, 5, kernel, kernel)).astype(np.float32), "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(5).astype(np.float32), "b"))
        inputs.append("b")
    node = helper.make_node("ConvTranspose", inputs, ["y"], name="up", kernel_shape=[kernel, kernel], strides=[2, 2],
                            pads=[pads] * 4)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 7])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5, 12, 14])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    x = rng.standard_normal((1, 3, 6, 7)).astype(np.float32)
    ref = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert convtranspose_to_subpixel(model, keep={"up"}) == 0
    assert [n.op_type for n in model.graph.node] == ["ConvTranspose"]
    assert convtranspose_to_subpixel(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Conv", "DepthToSpace"]
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(out, ref, atol=1e-5)


def test_ort_worker_threads_do_not_spin_unless_asked(exported: Path, monkeypatch) -> None:
    """Spinning ORT threads slow the OpenCV / numpy work between runs (measured: 36.6 -> 31.2 ms per image)."""
    from facealign_sdk.backends.ort import OrtBackend

    key = "session.intra_op.allow_spinning"
    monkeypatch.delenv("FACEALIGN_ORT_SPIN", raising=False)
    assert OrtBackend(exported / "model.onnx", 256, "cpu").session.get_session_options().get_session_config_entry(key) == "0"
    monkeypatch.setenv("FACEALIGN_ORT_SPIN", "1")
    assert OrtBackend(exported / "model.onnx", 256, "cpu").session.get_session_options().get_session_config_entry(key) == "1"


# -- the command's wiring, without exporting: every flag reaches the function that uses it, the calibration /
# parity faces come from the named folder (or noise, said so), the int8 gate gets its sets, limits and threads

MANIFEST = load_manifest(resolve_model_dir(None))  # the released model's


def test_missing_face_folder_gives_noise_crops_and_says_so(tmp_path, caplog):
    missing = tmp_path / "no_faces"
    with caplog.at_level(logging.WARNING, logger="facealign_sdk"):
        crops, note = export_cli.face_crops(missing, 3, "parity", 64)
    assert np.array_equal(crops, quantize.noise_crops(3, 64))
    assert note.startswith(f"random-noise crops: {missing} not found")
    assert f"parity: random-noise crops: {missing} not found" in caplog.text


def test_face_folder_gives_its_runtime_crops(shared_data):
    folder = shared_data / "ytf68" / "val"
    crops, note = export_cli.face_crops(folder, 2, "parity", 128)
    assert crops.shape == (2, 3, 128, 128)
    assert np.array_equal(crops, quantize.load_face_crops(folder, 2, 128))
    assert note == f"2 runtime crops from {folder}"


class Recorder:
    """Stands in for the export functions: records each call and writes nothing but a marker file."""

    def __init__(self, monkeypatch):
        from facealign_sdk.export import onnx as onnx_export

        self.calls: dict[str, tuple] = {}
        for module, name, out_index in ((onnx_export, "export_onnx", 2), (quantize, "convert_fp16", 1),
                                        (quantize, "quantize_int8", 1), (onnx_export, "export_decode_onnx", 2)):
            monkeypatch.setattr(module, name, self._fake(name, out_index))

    def _fake(self, name: str, out_index: int):
        def fake(*args, **kwargs):
            self.calls[name] = (args, kwargs)
            Path(args[out_index]).write_text(name)
            return Path(args[out_index])
        return fake


def _written_through_a_temporary(path: Path, final: Path) -> bool:
    """``path`` is a temporary file beside ``final`` (``outputs.replacing``), now renamed away."""
    return path.parent == final.parent and path.name.startswith(f".{final.name}.") and not path.exists()


@pytest.mark.parametrize("flags, expected", [
    ([], {"keep_head_fp32": True, "method": "MinMax", "activations": "uint8", "reduce_range": False, "subpixel": True}),
    (["--int8-quantize-head", "--calib-method", "Entropy", "--int8-activations", "int8", "--int8-reduce-range",
      "--int8-no-subpixel"],
     {"keep_head_fp32": False, "method": "Entropy", "activations": "int8", "reduce_range": True, "subpixel": False}),
])
def test_every_int8_flag_reaches_the_quantizer(flags, expected, monkeypatch, tmp_path, caplog):
    calls = Recorder(monkeypatch).calls
    args = _args("unused", "--to", "onnx,fp16,int8,decode", "--calib", str(tmp_path / "no_calib"), "--calib-count", "3", *flags)
    manifest = MANIFEST
    with caplog.at_level(logging.WARNING, logger="facealign_sdk"):
        written = export_cli._export_onnx_targets("net", manifest, tmp_path, ["onnx", "fp16", "int8", "decode"], args)
    names = ("model.onnx", "model_fp16.onnx", "model_int8.onnx", "model_decode.onnx")
    assert written == [tmp_path / n for n in names]
    # each writer fills a temporary file that replaces the artifact when complete; the others read model.onnx
    assert [(tmp_path / n).read_text() for n in names] == ["export_onnx", "convert_fp16", "quantize_int8",
                                                           "export_decode_onnx"]
    assert calls["export_onnx"][0][:2] == ("net", manifest)
    assert _written_through_a_temporary(calls["export_onnx"][0][2], tmp_path / "model.onnx")
    assert calls["convert_fp16"][0][0] == tmp_path / "model.onnx"
    assert _written_through_a_temporary(calls["convert_fp16"][0][1], tmp_path / "model_fp16.onnx")
    assert calls["export_decode_onnx"][0][:2] == (tmp_path / "model.onnx", manifest)
    assert _written_through_a_temporary(calls["export_decode_onnx"][0][2], tmp_path / "model_decode.onnx")
    (source, target, crops), options = calls["quantize_int8"]
    assert source == tmp_path / "model.onnx" and _written_through_a_temporary(target, tmp_path / "model_int8.onnx")
    assert np.array_equal(crops, quantize.noise_crops(3, manifest.input_size)) and options == expected
    assert "int8 calibration: random-noise crops" in caplog.text


def test_only_the_named_targets_are_written(monkeypatch, tmp_path):
    calls = Recorder(monkeypatch).calls
    written = export_cli._export_onnx_targets("net", MANIFEST, tmp_path, ["onnx"],
                                              _args("unused", "--to", "onnx"))
    assert written == [tmp_path / "model.onnx"] and set(calls) == {"export_onnx"}


def test_a_failed_export_keeps_the_previous_artifact(monkeypatch, tmp_path):
    Recorder(monkeypatch)

    def broken(src, dst, *args, **kwargs):
        Path(dst).write_text("half an int8 graph")
        raise KeyboardInterrupt  # Ctrl-C mid-write

    monkeypatch.setattr(quantize, "quantize_int8", broken)
    (tmp_path / "model_int8.onnx").write_text("the previous int8 graph")
    with pytest.raises(KeyboardInterrupt):
        export_cli._export_onnx_targets("net", MANIFEST, tmp_path, ["onnx", "int8"],
                                        _args("unused", "--to", "onnx,int8", "--calib", str(tmp_path / "none")))
    assert (tmp_path / "model_int8.onnx").read_text() == "the previous int8 graph"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model_int8.onnx"]  # no partial file left


def test_the_gate_gets_its_sets_limits_and_threads(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(int8_gate, "run_gate", lambda *a: seen.append(a) or int8_gate.Int8Gate(note="ran"))
    args = _args("unused", "--int8-gate-sets", " a/val , b/val ,,", "--int8-gate-limit", "5", "--int8-gate-stills", "2",
                 "--int8-gate-seconds", "0.5")
    monkeypatch.setenv("FACEALIGN_THREADS", "3")
    assert export_cli._run_int8_gate(tmp_path, args).note == "ran"
    assert seen[-1] == (tmp_path / "model.onnx", tmp_path / "model_int8.onnx", [Path("a/val"), Path("b/val")], 5, 2,
                        3, 0.5)
    monkeypatch.delenv("FACEALIGN_THREADS")
    export_cli._run_int8_gate(tmp_path, _args("unused"))
    assert seen[-1][3:] == (None, int8_gate.DEFAULT_STILLS, os.cpu_count() or 1, 3.0)
    assert seen[-1][2] == [Path(s) for s in int8_gate.DEFAULT_GATE_SETS]


def test_no_int8_gate_runs_no_gate(monkeypatch, tmp_path):
    monkeypatch.setattr(int8_gate, "run_gate", lambda *a: pytest.fail("the gate ran"))
    gate = export_cli._run_int8_gate(tmp_path, _args("unused", "--no-int8-gate"))
    assert gate.note == "not judged: --no-int8-gate" and not gate.passed and not gate.rows


class FakeExport:
    """``facealign export`` with its heavy steps faked (network loading, the exports, parity, the int8 gate,
    TensorRT): each writes a small file and records what it was given; ``fail`` names the artifacts whose
    parity row fails."""

    def __init__(self, monkeypatch, fail: tuple[str, ...] = ()):
        from facealign_sdk.backends import torch_backend
        from facealign_sdk.export import tensorrt

        self.seen: dict[str, object] = {}
        self.fail = fail
        monkeypatch.setattr(torch_backend, "load_network", lambda model_dir, manifest: "net")
        monkeypatch.setattr(export_cli, "_export_onnx_targets", self._targets)
        monkeypatch.setattr(export_cli.parity, "run_parity", self._parity)
        monkeypatch.setattr(export_cli, "_run_int8_gate", self._gate)
        monkeypatch.setattr(tensorrt, "require_tensorrt", lambda: None)
        monkeypatch.setattr(tensorrt, "build_engine", self._engine)

    def _targets(self, net, manifest, out, targets, args):
        self.seen["out"] = out
        written = [out / export_cli.FILES[t] for t in targets if t in export_cli.FILES]
        for path in written:
            path.write_bytes(path.name.encode())
        return written

    def _parity(self, net, manifest, artifacts, crops, note, bench=True, repeats=5):
        from facealign_sdk.export.parity import ArtifactParity

        self.seen.update(crops=crops, note=note, bench=bench, repeats=repeats)
        rows = [ArtifactParity(artifact=p.name, precision=precision_of(p), runtime="fake", landmark_mean_px=0.5,
                               landmark_p99_px=1.0, landmark_max_px=1.5,
                               limit_px=None if precision_of(p) == "int8" else 0.5, passed=p.name not in self.fail)
                for p in artifacts]
        return ParityReport(model=manifest.name, weights_sha256=manifest.weights_sha256, faces=len(crops), data=note,
                            rows=rows, passed=all(r.passed for r in rows))

    def _gate(self, out, args):
        self.seen["gate_out"] = out
        return int8_gate.Int8Gate(passed="model_int8.onnx" not in self.fail, note="fake gate")

    def _engine(self, out, manifest, profile, workspace_gb):
        self.seen["engine"] = (out, manifest.name, profile, workspace_gb)
        path = out / "model.engine"
        path.write_bytes(b"engine")
        return path


@pytest.fixture
def manifest_only_model(tmp_path) -> Path:
    """A model folder holding only the released model's manifest (the fakes need nothing else)."""
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy2(resolve_model_dir(None) / "manifest.json", folder / "manifest.json")
    return folder


def _export(model: Path, *argv: str) -> int:
    return export_cli.run(_args(model, *argv, "--no-bench"))


def test_export_exit_code_follows_the_parity_verdict(manifest_only_model, tmp_path, monkeypatch, capsys):
    FakeExport(monkeypatch)
    assert _export(manifest_only_model, "--to", "onnx,fp16", "--out", str(tmp_path / "a")) == 0
    assert "parity check failed" not in capsys.readouterr().err
    FakeExport(monkeypatch, fail=("model_fp16.onnx", "model_int8.onnx"))
    assert _export(manifest_only_model, "--to", "fp16,int8", "--out", str(tmp_path / "b")) == 1
    err = capsys.readouterr().err
    assert ("parity check failed: model_fp16.onnx (p99 1.000 px > 0.5 px), model_int8.onnx (int8 gate);" in err
            and "model.onnx (" not in err)
    assert _export(manifest_only_model, "--to", "fp16,int8", "--out", str(tmp_path / "c"), "--warn-only") == 0
    assert ("warning: parity limits exceeded (--warn-only): model_fp16.onnx (p99 1.000 px > 0.5 px), "
            "model_int8.onnx (int8 gate)") in capsys.readouterr().out


def test_export_hands_its_options_on(manifest_only_model, tmp_path, monkeypatch, caplog):
    fake = FakeExport(monkeypatch)
    missing_default = tmp_path / "default_parity_faces"
    monkeypatch.setattr(export_cli, "DEFAULT_PARITY_DATA", missing_default)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="facealign_sdk"):
        rc = export_cli.run(_args(manifest_only_model, "--to", "int8", "--out", str(out),
                                    "--parity-data", str(missing_default), "--parity-faces", "3", "--bench-repeats", "2",
                                    "--calib", str(tmp_path)))
    assert rc == 0 and fake.seen["out"] == out and fake.seen["gate_out"] == out
    assert fake.seen["bench"] is True and fake.seen["repeats"] == 2
    assert np.array_equal(fake.seen["crops"], noise_crops(3, MANIFEST.input_size))
    assert f"parity: random-noise crops: {missing_default} not found" in caplog.text
    recorded = load_manifest(out).artifacts_sha256
    assert all(recorded[name] == sha256(out / name) for name in ("model.onnx", "model_int8.onnx"))
    _export(manifest_only_model, "--to", "onnx", "--out", str(tmp_path / "o2"))
    assert fake.seen["bench"] is False


def test_export_trt_builds_with_the_profile_and_prints_trtexec_for_the_output_folder(
        manifest_only_model, tmp_path, monkeypatch, capsys):
    from facealign_sdk.export.tensorrt import Profile

    fake = FakeExport(monkeypatch)
    assert _export(manifest_only_model, "--to", "trt", "--profile", "1,4,16", "--workspace-gb", "2") == 0
    out = capsys.readouterr().out
    assert fake.seen["engine"] == (manifest_only_model, MANIFEST.name, Profile(min=1, opt=4, max=16), 2.0)
    assert f"{manifest_only_model / 'model_fp16_b1-4-16.engine'}" in out
    assert load_manifest(manifest_only_model).artifacts_sha256["model.engine"] == sha256(manifest_only_model / "model.engine")
    elsewhere = tmp_path / "elsewhere"
    assert _export(manifest_only_model, "--to", "trt", "--out", str(elsewhere)) == 0
    assert f"{elsewhere / 'model_fp16_b1-8-64.engine'}" in capsys.readouterr().out


def test_trt_target_brings_the_fp16_graph():
    assert export_cli.parse_targets("trt") == ["onnx", "fp16", "trt"]
    assert export_cli.parse_targets("TRT, fp16") == ["onnx", "fp16", "trt"]


@pytest.mark.parametrize("option, value, accepted", [
    ("--int8-gate-limit", "1", True), ("--int8-gate-limit", "0", False),
    ("--int8-gate-seconds", "0.5", True), ("--int8-gate-seconds", "0", False),
])
def test_int8_gate_option_bounds(option, value, accepted, manifest_only_model, tmp_path, monkeypatch):
    from facealign_sdk.errors import InputError

    FakeExport(monkeypatch)
    argv = ("--to", "int8", "--out", str(tmp_path / "o"), option, value)
    if accepted:
        assert _export(manifest_only_model, *argv) == 0
    else:
        with pytest.raises(InputError, match=option):
            _export(manifest_only_model, *argv)


@pytest.mark.parametrize("option", ["--parity-data", "--calib"])
def test_a_missing_named_face_folder_is_named(option, manifest_only_model, tmp_path, monkeypatch):
    FakeExport(monkeypatch)
    with pytest.raises(FileNotFoundError, match=f"^{option} {tmp_path / 'nope'}: no such folder"):
        _export(manifest_only_model, "--to", "int8", "--out", str(tmp_path / "o"), option, str(tmp_path / "nope"))


def test_export_takes_only_its_own_flags():
    """``--model`` yes; the aligner's runtime flags (backend, decoding) would be silently ignored: refused."""
    assert _args("unused").model == "unused"
    for flag in (["--backend", "ort"], ["--refine", "soft"]):
        with pytest.raises(SystemExit):
            _args("unused", *flag)


def test_the_decode_graph_adds_the_convention_as_the_heatmap_path_does(exported: Path, face_image, tmp_path) -> None:
    """model_decode.onnx returns points: the convention's offsets are added to them just the same."""
    import json
    import shutil

    from facealign_sdk.aligner import Aligner

    model = shutil.copytree(exported, tmp_path / "model")
    offsets = np.random.default_rng(3).normal(0, 0.02, (68, 2))
    manifest = json.loads((model / "manifest.json").read_text())
    (model / "manifest.json").write_text(json.dumps({**manifest, "conventions": {"c": offsets.tolist()},
                                                     "default_convention": "c"}))
    box = [(150.0, 90.0, 330.0, 300.0)]
    graph = Aligner(model=model, backend="ort", device="cpu", detector=None)
    heat = Aligner(model=model / "model.onnx", backend="ort", device="cpu", detector=None)
    raw = Aligner(model=model, backend="ort", device="cpu", detector=None, convention="none")
    assert graph.decodes_in_graph and raw.decodes_in_graph and not heat.decodes_in_graph
    a, b, c = (x.align(face_image, box)[0].points for x in (graph, heat, raw))
    np.testing.assert_allclose(a, b, atol=0.01)
    assert np.abs(a - c).max() > 1.0
