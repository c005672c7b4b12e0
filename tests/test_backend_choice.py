"""backend="auto" on the CPU: measured once per key, cached as JSON, broken candidates and caches survived."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from facealign_sdk.backends import BackendError, choice
from facealign_sdk.backends.choice import BackendChoice, choice_key, choose_cpu_backend, read_cache


class Fake:
    """A backend whose run takes about ``seconds``."""

    num_landmarks = 68

    def __init__(self, name: str, seconds: float = 0.0, fails: bool = False) -> None:
        self.name, self.seconds, self.fails, self.runs = name, seconds, fails, 0

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.fails:
            raise RuntimeError("kernel crashed")
        self.runs += 1
        if self.seconds:
            import time

            time.sleep(self.seconds)
        return np.zeros((len(batch), 68, 4, 4), np.float32)


@pytest.fixture
def onnx(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"graph bytes")
    return path


def factory(backends: dict, created: list | None = None):
    def create(name: str):
        if created is not None:
            created.append(name)
        value = backends[name]
        if isinstance(value, Exception):
            raise value
        return value

    return create


def test_the_fastest_wins_and_is_cached(onnx, tmp_path):
    cache = tmp_path / "cache" / "cpu_backend.json"
    created: list[str] = []
    backends = {"ort": Fake("ort", 0.004), "openvino": Fake("openvino", 0.0)}
    chosen = choose_cpu_backend(["ort", "openvino"], factory(backends, created), onnx, 8, cache)
    assert chosen is backends["openvino"] and created == ["ort", "openvino"]
    stored = json.loads(cache.read_text())
    key = choice_key(onnx, ["ort", "openvino"])
    assert list(stored) == [key] and stored[key]["backend"] == "openvino"
    assert stored[key]["ms_per_face"]["ort"] > stored[key]["ms_per_face"]["openvino"]
    created.clear()
    again = choose_cpu_backend(["ort", "openvino"], factory(backends, created), onnx, 8, cache)
    assert again is backends["openvino"] and created == ["openvino"]  # from the cache: nothing timed


def test_the_key_follows_model_threads_and_runtimes(onnx, monkeypatch):
    monkeypatch.delenv("FACEALIGN_THREADS", raising=False)  # conftest sets it under pytest-xdist
    key = choice_key(onnx, ["ort", "openvino"])
    assert key == choice_key(onnx, ["openvino", "ort"])
    assert choice.cpu_model() in key
    monkeypatch.setenv("FACEALIGN_THREADS", "1")
    one_thread = choice_key(onnx, ["ort", "openvino"])
    assert one_thread != key and "threads=1" in one_thread
    onnx.write_bytes(b"other graph")
    assert choice_key(onnx, ["ort", "openvino"]) not in (key, one_thread)
    monkeypatch.setattr(choice, "_version", lambda package: "9.9")
    assert "openvino=9.9" in choice_key(onnx, ["ort", "openvino"])


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"k": {"ms_per_face": {}}}', ""])
def test_a_corrupt_cache_is_measured_over(onnx, tmp_path, content, caplog):
    cache = tmp_path / "cpu_backend.json"
    cache.write_text(content)
    with caplog.at_level(logging.WARNING, logger="facealign_sdk"):
        assert read_cache(cache) == {}
        chosen = choose_cpu_backend(["ort", "openvino"], factory({"ort": Fake("ort"), "openvino": Fake("openvino", 0.004)}),
                                    onnx, 8, cache)
    assert chosen.name == "ort" and "unreadable backend cache" in caplog.text
    assert read_cache(cache)[choice_key(onnx, ["ort", "openvino"])].backend == "ort"


def test_a_broken_candidate_does_not_stop_the_other(onnx, tmp_path, caplog):
    cache = tmp_path / "cpu_backend.json"
    broken = {"ort": Fake("ort", 0.004), "openvino": BackendError("openvino: libopenvino.so: cannot open")}
    with caplog.at_level(logging.WARNING, logger="facealign_sdk"):
        assert choose_cpu_backend(["ort", "openvino"], factory(broken), onnx, 8, cache).name == "ort"
    assert "openvino cannot run here" in caplog.text
    assert read_cache(cache)[choice_key(onnx, ["ort", "openvino"])].ms_per_face["openvino"] is None
    crashing = {"ort": Fake("ort", 0.004), "openvino": Fake("openvino", fails=True)}
    assert choose_cpu_backend(["ort", "openvino"], factory(crashing), onnx, 8, tmp_path / "b.json").name == "ort"
    assert choose_cpu_backend(["ort", "openvino"], factory({"ort": BackendError("x"), "openvino": BackendError("y")}),
                              onnx, 8, tmp_path / "c.json") is None


def test_a_cached_choice_that_broke_since_is_measured_again(onnx, tmp_path):
    cache = tmp_path / "cpu_backend.json"
    key = choice_key(onnx, ["ort", "openvino"])
    cache.write_text(json.dumps({key: BackendChoice(backend="openvino").model_dump()}))
    backends = {"ort": Fake("ort"), "openvino": BackendError("uninstalled")}
    assert choose_cpu_backend(["ort", "openvino"], factory(backends), onnx, 8, cache).name == "ort"
    assert read_cache(cache)[key].backend == "ort"


def test_a_model_error_is_not_swallowed(onnx, tmp_path):
    from facealign_sdk.model import ModelError

    with pytest.raises(ModelError, match="sha256"):
        choose_cpu_backend(["ort"], factory({"ort": ModelError("model.onnx: sha256 does not match")}), onnx, 8,
                           tmp_path / "c.json")


def test_auto_says_which_and_uses_the_cache_folder(tmp_path, monkeypatch, face_image):
    pytest.importorskip("openvino")
    pytest.importorskip("onnxruntime")
    from facealign_sdk import Aligner

    monkeypatch.setenv("FACEALIGN_CACHE", str(tmp_path))
    aligner = Aligner(detector=None)
    stored = read_cache(tmp_path / choice.CACHE_FILE)
    (entry,) = stored.values()
    assert aligner.backend_name == {"ort": "ort:CPUExecutionProvider", "openvino": "openvino:CPU"}[entry.backend]
    assert set(entry.ms_per_face) == {"ort", "openvino"} and all(v and v > 0 for v in entry.ms_per_face.values())


def test_a_graph_named_as_the_model_is_run_by_a_backend_that_runs_it_or_refused():
    """Aligner(model=".../model_int8.onnx", backend="torch") ran the PyTorch fp32 weights and said nothing."""
    from facealign_sdk import Aligner
    from facealign_sdk.model import resolve_model_dir

    int8 = resolve_model_dir(None) / "model_int8.onnx"
    if not int8.is_file():
        pytest.skip("the released model has no int8 graph here")
    with pytest.raises(BackendError, match="backend='torch' does not run model_int8.onnx: a .onnx file runs with "
                       "backend 'ort' or 'openvino'"):
        Aligner(model=int8, backend="torch", detector=None)
    with pytest.raises(BackendError, match="does not run model_int8.onnx"):
        Aligner(model=int8, backend="trt", device="cuda", detector=None)
    assert Aligner(model=int8, backend="ort", detector=None).backend_name.startswith("ort:")
