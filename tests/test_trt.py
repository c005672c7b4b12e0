"""TensorRT: the engine sidecar check (pure, no TensorRT needed), the trtexec line, and - where
TensorRT and a CUDA GPU exist - building an engine and running it against ONNX Runtime."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from facealign_sdk.backends import BackendError, load_backend
from facealign_sdk.backends.trt import EngineSidecar, Profile, check_sidecar, read_sidecar, sidecar_path, write_sidecar
from facealign_sdk.model import load_manifest

HERE = {"tensorrt_version": "10.9.0.34", "gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
MANIFEST = {"weights_sha256": "abc", "num_landmarks": 68, "input_size": 256, "heatmap_size": 128}


def _sidecar(**changes) -> dict:
    return {**HERE, "manifest": dict(MANIFEST), **changes}


def test_sidecar_match_passes() -> None:
    check_sidecar(_sidecar(), HERE, MANIFEST)
    check_sidecar(_sidecar(manifest={}), HERE, MANIFEST)  # nothing recorded: only the machine is checked


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"tensorrt_version": "8.6.1"}, "TensorRT version: engine built with 8.6.1, running with 10.9.0.34"),
        ({"compute_capability": "8.9"}, "compute capability: engine built with 8.9"),
        ({"gpu_name": "NVIDIA GeForce RTX 4090"}, "GPU: engine built with NVIDIA GeForce RTX 4090"),
        ({"manifest": {**MANIFEST, "weights_sha256": "other"}}, "weights_sha256"),
        ({"manifest": {**MANIFEST, "num_landmarks": 98}}, "num_landmarks"),
    ],
)
def test_sidecar_mismatch_refused(changes: dict, expected: str) -> None:
    with pytest.raises(BackendError, match="not portable") as info:
        check_sidecar(_sidecar(**changes), HERE, MANIFEST)
    assert expected in str(info.value) and "facealign export" in str(info.value)


def test_sidecar_missing_fields_refused() -> None:
    with pytest.raises(BackendError, match="unknown"):
        check_sidecar({}, HERE)


def test_sidecar_file_roundtrip(tmp_path: Path) -> None:
    engine = tmp_path / "model_fp16_b1-8-64.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(BackendError, match="no sidecar"):
        read_sidecar(engine)
    sidecar = EngineSidecar(**HERE, profile=Profile(min=1, opt=8, max=64), manifest=MANIFEST)
    assert write_sidecar(engine, sidecar) == sidecar_path(engine) == tmp_path / "model_fp16_b1-8-64.json"
    assert read_sidecar(engine) == sidecar
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(BackendError, match="invalid engine sidecar"):
        read_sidecar(engine)


def test_trtexec_line_and_profile() -> None:
    from export.tensorrt import engine_name, parse_profile, trtexec_command

    profile = parse_profile("1,8,64")
    assert engine_name(profile) == "model_fp16_b1-8-64.engine"
    line = trtexec_command(Path("m/model.onnx"), Path("m") / engine_name(profile), 256, profile)
    assert line == ("trtexec --onnx=m/model.onnx --saveEngine=m/model_fp16_b1-8-64.engine --fp16 "
                    "--minShapes=image:1x3x256x256 --optShapes=image:8x3x256x256 --maxShapes=image:64x3x256x256")
    for bad in ("8,1,64", "1,8", "a,b,c", "0,1,2"):
        with pytest.raises(ValueError, match="--profile"):
            parse_profile(bad)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_backend_without_tensorrt(tiny_model: Path, tmp_path: Path) -> None:
    engine = tmp_path / "model_fp16_b1-8-64.engine"
    engine.write_bytes(b"\0")
    with pytest.raises(BackendError, match=r"pip install 'facealign-sdk\[trt\]'"):
        load_backend(tiny_model, load_manifest(tiny_model), "trt", artifact=engine)


def test_backend_missing_engine(tiny_model: Path) -> None:
    from facealign_sdk.model import ModelError

    with pytest.raises(ModelError, match="TensorRT engine"):
        load_backend(tiny_model, load_manifest(tiny_model), "trt")


def test_build_and_run_engine(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt", reason="building an engine needs TensorRT (pip install 'facealign-sdk[trt]')")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("building an engine needs a CUDA GPU")
    from export import cli as export_cli
    from facealign_sdk.backends.ort import OrtBackend
    from facealign_sdk.backends.trt import TrtBackend

    import argparse

    parser = argparse.ArgumentParser()
    export_cli.add_arguments(parser)
    args = parser.parse_args(["--model", str(tiny_model), "--to", "onnx,trt", "--out", str(tmp_path), "--profile", "1,2,4",
                              "--parity-faces", "4", "--bench-repeats", "1", "--warn-only", "--workspace-gb", "1"])
    assert export_cli.run(args) == 0
    engine = tmp_path / "model_fp16_b1-2-4.engine"
    assert engine.is_file() and sidecar_path(engine).is_file()
    manifest = load_manifest(tiny_model)
    backend = TrtBackend(engine, manifest)
    x = np.random.default_rng(0).random((9, 3, 256, 256), dtype=np.float32)  # 9 > max 4: chunked
    out = backend.run(x)
    ref = OrtBackend(tmp_path / "model.onnx", 256, "cpu").run(x)
    assert out.shape == ref.shape == (9, 68, 128, 128)
    assert np.abs(out - ref).max() < 1e-2
