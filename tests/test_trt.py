"""TensorRT: the engine sidecar check (pure, no TensorRT needed), the trtexec line, and - where
TensorRT and a CUDA GPU exist - building an engine and running it against ONNX Runtime."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from facealign_sdk.backends import BackendError, load_backend
from facealign_sdk.backends.trt import (EngineSidecar, Profile, check_sidecar, read_sidecar, select_engine, sidecar_path,
                                        write_sidecar)
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
    assert read_sidecar(engine) is None  # a trtexec engine: accepted, with a warning, by TrtBackend
    sidecar = EngineSidecar(**HERE, profile=Profile(min=1, opt=8, max=64), manifest=MANIFEST)
    assert write_sidecar(engine, sidecar) == sidecar_path(engine) == tmp_path / "model_fp16_b1-8-64.engine.json"
    assert read_sidecar(engine) == sidecar
    sidecar_path(engine).write_text("{not json")
    with pytest.raises(BackendError, match="invalid engine sidecar"):
        read_sidecar(engine)


def test_trtexec_line_and_profile() -> None:
    from facealign_sdk.export.tensorrt import engine_name, parse_profile, trtexec_command

    profile = parse_profile("1,8,64")
    assert engine_name(profile) == "model_fp16_b1-8-64.engine"
    line = trtexec_command(Path("m/model.onnx"), Path("m") / engine_name(profile), 256, profile)
    assert line == ("trtexec --onnx=m/model.onnx --saveEngine=m/model_fp16_b1-8-64.engine --fp16 "
                    "--minShapes=image:1x3x256x256 --optShapes=image:8x3x256x256 --maxShapes=image:64x3x256x256")
    for bad in ("8,1,64", "1,8", "a,b,c", "0,1,2"):
        with pytest.raises(ValueError, match="--profile"):
            parse_profile(bad)


def test_engine_name_says_tensorrt_and_gpu() -> None:
    from facealign_sdk.export.tensorrt import engine_name

    profile = Profile(min=1, opt=8, max=64)
    here = engine_name(profile, "fp16", HERE)
    assert here == "model_fp16_b1-8-64_trt10.9.0.34_sm90_nvidia-h100-80gb-hbm3.engine"
    other_gpu = engine_name(profile, "fp16", {**HERE, "gpu_name": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"})
    other_trt = engine_name(profile, "fp16", {**HERE, "tensorrt_version": "11.1.0.7"})
    assert len({here, other_gpu, other_trt}) == 3  # engines of two machines never overwrite each other
    assert sidecar_path(Path(here)).name == here + ".json"


def _engine(folder: Path, name: str, built_at: str | None, **changes) -> Path:
    """An engine file (contents irrelevant: selection reads only sidecars) with a sidecar unless built_at is None."""
    path = folder / name
    path.write_bytes(b"\0")
    if built_at is not None:
        write_sidecar(path, EngineSidecar(**{**HERE, **changes}, manifest=MANIFEST, built_at=built_at))
    return path


def test_select_engine_prefers_this_machine_then_newest(tmp_path: Path) -> None:
    _engine(tmp_path, "a_other_gpu.engine", "2026-12-03T10:00:00+00:00", gpu_name="NVIDIA A100")
    old = _engine(tmp_path, "b_old.engine", "2026-11-01T10:00:00+00:00")
    new = _engine(tmp_path, "c_new.engine", "2026-12-01T10:00:00+00:00")
    _engine(tmp_path, "0_trtexec.engine", None)  # first by name, but unchecked: only when nothing else fits
    engines = sorted(tmp_path.glob("*.engine"))
    assert select_engine(engines, HERE, MANIFEST) == new
    assert select_engine(list(reversed(engines)), HERE, MANIFEST) == new  # not the listing order
    _engine(tmp_path, "d_same_time.engine", "2026-12-01T10:00:00+00:00")
    assert select_engine(sorted(tmp_path.glob("*.engine")), HERE, MANIFEST).name == "d_same_time.engine"
    assert select_engine([old], HERE, MANIFEST) == old


def test_select_engine_without_sidecar_and_refusals(tmp_path: Path) -> None:
    other = _engine(tmp_path, "x_other.engine", "2026-12-03T10:00:00+00:00", tensorrt_version="10.13.0.35")
    weights = _engine(tmp_path, "y_weights.engine", "2026-12-03T10:00:00+00:00")
    with pytest.raises(BackendError) as info:
        select_engine([other, weights], HERE, {**MANIFEST, "weights_sha256": "retrained"})
    message = str(info.value)
    assert "x_other.engine" in message and "10.13.0.35" in message and "y_weights.engine" in message
    assert "weights_sha256" in message
    plain = _engine(tmp_path, "z_trtexec.engine", None)
    assert select_engine([other, plain, weights], HERE, {**MANIFEST, "weights_sha256": "retrained"}) == plain


def test_profile_batcher_pads_below_minimum_and_splits_above_maximum() -> None:
    from facealign_sdk.backends.base import ProfileBatcher

    seen = []

    def engine(chunk: np.ndarray) -> np.ndarray:  # a profile of 4..6 items, like set_input_shape's check
        assert 4 <= len(chunk) <= 6, f"batch {len(chunk)} outside the profile"
        seen.append(len(chunk))
        return chunk[:, :1] * 2.0

    batcher = ProfileBatcher(engine, min_batch=4, max_batch=6)
    for n in (1, 3, 4, 6, 7, 13):
        x = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1).repeat(2, axis=1)
        out = batcher.run(x)
        assert out.shape == (n, 1, 1, 1) and np.array_equal(out[:, 0, 0, 0], 2.0 * np.arange(n))
    assert seen == [4, 4, 4, 6, 6, 4, 6, 6, 4]
    points = ProfileBatcher(lambda c: (c[:, 0], c[:, 1]), min_batch=2, max_batch=2).run(np.ones((3, 2)))
    assert [p.shape for p in points] == [(3,), (3,)]
    with pytest.raises(BackendError, match="batch range"):
        ProfileBatcher(engine, min_batch=8, max_batch=4)


def test_profile_batcher_one_caller_at_a_time() -> None:
    import threading
    import time

    from facealign_sdk.backends.base import ProfileBatcher

    active, overlaps = [0], []

    def engine(chunk: np.ndarray) -> np.ndarray:  # one execution context: concurrent use corrupts its bindings
        active[0] += 1
        overlaps.append(active[0] > 1)
        time.sleep(0.002)
        active[0] -= 1
        return chunk

    batcher = ProfileBatcher(engine, 1, 2)
    threads = [threading.Thread(target=batcher.run, args=(np.zeros((6, 1)),)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(overlaps) == 12 and not any(overlaps)


def test_one_tensorrt_logger_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from facealign_sdk.backends import trt as trt_module

    created = []

    class Logger:  # stands in for tensorrt.Logger (no TensorRT here)
        WARNING = 2

        def __init__(self, severity: int) -> None:
            created.append(severity)

    fake = types.SimpleNamespace(Logger=Logger)
    monkeypatch.setattr(trt_module, "_LOGGER", None)
    first = trt_module.trt_logger(fake)
    assert trt_module.trt_logger(fake) is first and created == [Logger.WARNING]


def test_auto_falls_back_to_ort_when_no_engine_fits(tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    """backend="auto" with TensorRT and a GPU (faked: neither exists here) and only an engine built for another GPU."""
    import shutil

    import facealign_sdk.backends as backends
    from facealign_sdk.backends import trt as trt_module

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    shutil.copy(Path(__file__).resolve().parents[1] / "models" / "fabrec-scaf-w32" / "model.onnx", model / "model.onnx")
    _engine(model, "model_fp16_b1-8-64_other.engine", "2026-12-01T10:00:00+00:00", gpu_name="NVIDIA A100")
    real_has = backends._has
    monkeypatch.setattr(backends, "_has", lambda name: name == "tensorrt" or real_has(name))
    monkeypatch.setattr(backends, "_cuda_in_torch", lambda: True)
    monkeypatch.setattr(trt_module, "runtime_info", lambda device=0: dict(HERE))
    manifest = load_manifest(model)
    with caplog.at_level("WARNING", logger="facealign_sdk"):
        backend = load_backend(model, manifest, "auto", "auto")
    assert backend.name.startswith("ort:")
    assert "trt cannot run here" in caplog.text and "not portable" in caplog.text
    with pytest.raises(BackendError, match="not portable"):
        load_backend(model, manifest, "trt", "cuda")


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
    from facealign_sdk.cli import export as export_cli
    from facealign_sdk.backends.ort import OrtBackend
    from facealign_sdk.backends.trt import TrtBackend

    import argparse

    parser = argparse.ArgumentParser()
    export_cli.add_arguments(parser)
    args = parser.parse_args(["--model", str(tiny_model), "--to", "onnx,trt", "--out", str(tmp_path), "--profile", "1,2,4",
                              "--parity-faces", "4", "--bench-repeats", "1", "--warn-only", "--workspace-gb", "1"])
    assert export_cli.run(args) == 0
    (engine,) = tmp_path.glob("model_fp16_b1-2-4_trt*.engine")
    assert sidecar_path(engine).is_file()
    manifest = load_manifest(tiny_model)
    backend = load_backend(tmp_path, manifest, "trt", "cuda")
    assert isinstance(backend, TrtBackend) and backend.engine_path == engine
    x = np.random.default_rng(0).random((9, 3, 256, 256), dtype=np.float32)  # 9 > max 4: chunked
    out = backend.run(x)
    ref = OrtBackend(tmp_path / "model.onnx", 256, "cpu").run(x)
    assert out.shape == ref.shape == (9, 68, 128, 128)
    assert np.abs(out - ref).max() < 1e-2


def test_engine_below_profile_minimum(tiny_model: Path, tmp_path: Path) -> None:
    """An engine whose profile starts at 2 still takes one face (padded), and one from trtexec (no sidecar) loads."""
    pytest.importorskip("tensorrt", reason="building an engine needs TensorRT (pip install 'facealign-sdk[trt]')")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("building an engine needs a CUDA GPU")
    from facealign_sdk.export.onnx import export_onnx
    from facealign_sdk.export.tensorrt import build_engine, parse_profile
    from facealign_sdk.backends.ort import OrtBackend
    from facealign_sdk.backends.torch_backend import load_network
    from facealign_sdk.backends.trt import TrtBackend

    manifest = load_manifest(tiny_model)
    export_onnx(load_network(tiny_model, manifest), manifest, tmp_path / "model.onnx")
    from facealign_sdk.export.quantize import convert_fp16

    convert_fp16(tmp_path / "model.onnx", tmp_path / "model_fp16.onnx")
    engine = build_engine(tmp_path, manifest, parse_profile("2,4,4"), workspace_gb=1)
    sidecar_path(engine).unlink()  # as trtexec leaves it
    backend = TrtBackend(engine, manifest)
    assert (backend.min_batch, backend.max_batch) == (2, 4)
    x = np.random.default_rng(1).random((5, 3, 256, 256), dtype=np.float32)  # chunks 4 + 1 (padded to 2)
    ref = OrtBackend(tmp_path / "model.onnx", 256, "cpu").run(x)
    assert np.abs(backend.run(x) - ref).max() < 1e-2
    assert np.abs(backend.run(x[:1]) - ref[:1]).max() < 1e-2
