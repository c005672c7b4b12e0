"""GPU device handling without a GPU: ONNX Runtime provider choice and options, the check that a requested
GPU provider really runs the graph, and the clear error (exit 2 in the CLI) for device="cuda" with no usable GPU.

ONNX Runtime's GPU providers are faked where they need a GPU: ``get_available_providers`` lists them, and the
session (a real CPU session) falls back to the CPU as ONNX Runtime does when their libraries cannot be loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import pytest

from facealign_sdk.backends import BackendError
from facealign_sdk.backends import ort as ort_backend
from facealign_sdk.backends.ort import CPU, CUDA, TENSORRT, OrtBackend, choose_providers, tensorrt_options

REAL_SESSION = onnxruntime.InferenceSession
ONNX = Path(__file__).resolve().parents[1] / "models" / "fabrec-scaf-w32" / "model.onnx"
ALL = [TENSORRT, CUDA, CPU]


def _gpu_usable_here() -> bool:
    if CUDA in onnxruntime.get_available_providers():
        return True
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def test_auto_prefers_cuda_over_tensorrt() -> None:
    assert choose_providers(ALL, "auto") == [(CUDA, {"device_id": "0"}), CPU]
    assert choose_providers([CPU], "auto") == [CPU]
    assert choose_providers(ALL, "cpu") == [CPU]
    assert choose_providers(ALL, "cuda:1") == [(CUDA, {"device_id": "1"}), CPU]
    with pytest.raises(BackendError, match="CUDAExecutionProvider.*GPU build"):
        choose_providers([CPU], "cuda")
    with pytest.raises(BackendError, match="unknown device"):
        choose_providers(ALL, "cuda:x")


def test_tensorrt_provider_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEALIGN_CACHE", str(tmp_path))
    options = tensorrt_options(ONNX, 256, device_id=1)
    providers = choose_providers(ALL, "tensorrt:1", options)
    assert [p if isinstance(p, str) else p[0] for p in providers] == ALL  # CUDA runs what TensorRT cannot
    trt = providers[0][1]
    assert trt["device_id"] == "1" and trt["trt_fp16_enable"] == "True" and trt["trt_engine_cache_enable"] == "True"
    assert (trt["trt_profile_min_shapes"], trt["trt_profile_opt_shapes"], trt["trt_profile_max_shapes"]) == (
        "image:1x3x256x256", "image:8x3x256x256", "image:64x3x256x256")
    cache = Path(trt["trt_engine_cache_path"])
    assert cache.parent == tmp_path / "ort-tensorrt" and cache.name.startswith("model-")  # per graph and versions
    assert f"ort{onnxruntime.__version__}" in cache.name


class _FallbackSession:
    """ONNX Runtime's behaviour when a listed GPU provider's libraries are missing: a CPU-only session."""

    def __init__(self, claim: list[str] | None = None) -> None:
        self.claim, self.requested, self.runs = claim, [], []

    def __call__(self, path, opts, providers):
        self.requested = providers
        session = REAL_SESSION(path, opts, providers=[CPU])
        if self.claim is None:
            return session
        parent = self

        class Claimed:  # reports the providers in ``claim`` and records the batch sizes it is given
            def __getattr__(self, name):
                return getattr(session, name)

            def get_providers(self):
                return parent.claim

            def run(self, names, feeds):
                parent.runs.append(len(next(iter(feeds.values()))))
                return session.run(names, feeds)

        return Claimed()


@pytest.fixture
def gpu_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: list(ALL))


def test_requested_gpu_provider_not_in_use_is_an_error(gpu_listed, monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEALIGN_CACHE", str(tmp_path))
    fake = _FallbackSession()
    monkeypatch.setattr(onnxruntime, "InferenceSession", fake)
    for device in ("cuda", "tensorrt"):
        with pytest.raises(BackendError, match=f"device='{device}': no usable GPU: ONNX Runtime did not enable"):
            OrtBackend(ONNX, 256, device)
    assert fake.requested[0][0] == TENSORRT and fake.requested[0][1]["trt_fp16_enable"] == "True"
    with caplog.at_level("WARNING", logger="facealign_sdk"):
        backend = OrtBackend(ONNX, 256, "auto")  # auto: the CPU, said aloud
    assert backend.name == "ort:CPUExecutionProvider" and "did not enable CUDAExecutionProvider" in caplog.text


def test_tensorrt_provider_batches_within_its_profile(gpu_listed, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FACEALIGN_CACHE", str(tmp_path))
    fake = _FallbackSession(claim=ALL)
    monkeypatch.setattr(onnxruntime, "InferenceSession", fake)
    monkeypatch.setattr(ort_backend, "TRT_PROFILE", (1, 2, 3))
    backend = OrtBackend(ONNX, 256, "tensorrt")
    assert backend.name == f"ort:{TENSORRT}"
    x = np.random.default_rng(0).random((5, 3, 256, 256), dtype=np.float32)
    assert backend.run(x).shape == (5, 68, 128, 128)
    assert fake.runs == [3, 2]  # the profile's max 3: no engine rebuild for a larger batch


@pytest.mark.skipif(_gpu_usable_here(), reason="a GPU is usable here")
def test_aligner_cuda_without_gpu_is_a_clear_error() -> None:
    from facealign_sdk.aligner import Aligner

    for backend in ("auto", "ort", "torch"):
        with pytest.raises(BackendError, match="no usable GPU|needs a usable NVIDIA GPU"):
            Aligner(backend=backend, device="cuda", detector=None)
    with pytest.raises(BackendError, match="needs a usable NVIDIA GPU.*ONNX Runtime.*PyTorch"):
        Aligner(device="cuda", detector=None)


def test_aligner_cuda_never_runs_silently_on_cpu(gpu_listed, monkeypatch: pytest.MonkeyPatch) -> None:
    """ORT lists CUDA but cannot load it, PyTorch has no GPU: device="cuda" is an error, not a CPU run."""
    from facealign_sdk.aligner import Aligner
    import facealign_sdk.backends as backends

    monkeypatch.setattr(onnxruntime, "InferenceSession", _FallbackSession())
    monkeypatch.setattr(backends, "_cuda_in_torch", lambda: False)
    with pytest.raises(BackendError, match="no usable GPU"):
        Aligner(backend="ort", device="cuda", detector=None)
    with pytest.raises(BackendError, match="no usable GPU"):
        Aligner(device="cuda", detector=None)


@pytest.mark.skipif(_gpu_usable_here(), reason="a GPU is usable here")
def test_cli_device_cuda_without_gpu_exits_2(capsys: pytest.CaptureFixture) -> None:
    from facealign_sdk.cli.main import main

    sample = Path(__file__).resolve().parents[1] / "samples" / "face.jpg"
    assert main(["image", str(sample), "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("facealign image: error: device='cuda' needs a usable NVIDIA GPU")
    assert "Traceback" not in "\n".join(err)


def test_gpu_suite_without_gpu_exits_2() -> None:
    import subprocess
    import sys

    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is usable here: the suite would run")
    suite = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_suite.py"
    done = subprocess.run([sys.executable, str(suite)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("gpu_suite: no usable CUDA GPU here (PyTorch") and done.stderr.count("\n") == 1
