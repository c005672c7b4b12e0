"""Shared fixtures: a tiny random-weights model folder, the shared data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import json
import os
import shutil

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "samples"
# test files that load no model: under mutmut they run before the others
UNIT_TEST_FILES = ("test_geometry.py", "test_codec.py", "test_decode.py", "test_tracker_logic.py", "test_drawing.py",
                   "test_imageio.py")


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


def pytest_configure(config):
    """Under pytest-xdist (``-n auto``) each worker runs on one thread: the workers already fill the cores,
    and every runtime's own thread pool on top of them only spins against the other worker. Set before any
    test imports torch or starts a subprocess, so both inherit it; a test that sets its own count still can."""
    if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
        for name in ("FACEALIGN_THREADS", "OMP_NUM_THREADS"):
            os.environ.setdefault(name, "1")


@pytest.fixture(scope="session", autouse=True)
def _own_cache(tmp_path_factory):
    """The tests' backend choices and engines go to a temporary $FACEALIGN_CACHE, not the user's."""
    patch = pytest.MonkeyPatch()
    patch.setenv("FACEALIGN_CACHE", str(tmp_path_factory.mktemp("facealign_cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session", autouse=True)
def _export_each_network_once(tmp_path_factory):
    """torch's ONNX exporter takes ~10 s even for the tiny network and writes the same file for the same
    network: within one test process, each distinct network (class, weights, attributes, input shape,
    names) is exported once and later exports copy that file. The export code after it runs as usual.
    ``$FACEALIGN_TEST_EXPORT_CACHE`` keeps the files across test processes (benchmarks/mutation.py: one
    pytest run per mutant, none of them mutating the exporter)."""
    try:
        from facealign_sdk.export import onnx as onnx_export
    except ImportError:
        yield
        return
    import hashlib

    real = onnx_export._torch_export
    shared_store = os.environ.get("FACEALIGN_TEST_EXPORT_CACHE")
    store = Path(shared_store) if shared_store else tmp_path_factory.mktemp("exported_networks")
    store.mkdir(parents=True, exist_ok=True)

    def key(module, example, output_names, input_name) -> str:
        h = hashlib.sha256(f"{type(module).__qualname__}|{module!r}|{tuple(example.shape)}|{output_names}|{input_name}".encode())
        h.update(repr(sorted((k, v) for k, v in vars(module).items() if isinstance(v, (int, float, str, bool, tuple)))).encode())
        for name, tensor in module.state_dict().items():
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return h.hexdigest()

    def export_once(module, example, path, output_names, input_name=onnx_export.INPUT_NAME):
        cached = store / f"{key(module, example, output_names, input_name)}.onnx"
        if not cached.is_file():
            partial = cached.with_name(f"{cached.stem}.{os.getpid()}.part.onnx")
            real(module, example, partial, output_names, input_name)
            os.replace(partial, cached)  # whole files only, for the next process that looks
        shutil.copyfile(cached, path)

    patch = pytest.MonkeyPatch()
    patch.setattr(onnx_export, "_torch_export", export_once)
    yield
    patch.undo()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests using it skip when it is absent."""
    from facealign_sdk.resources import shared_data as shared_data_folder

    path = shared_data_folder()  # $FACEALIGN_SHARED/data when the tests run from a copy of the repo (mutation testing)
    if not path.is_dir():
        pytest.skip("../shared/data is not present")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A model folder with a width-8 random-init network (68 landmarks): fast, shape-correct, untrained."""
    torch = pytest.importorskip("torch")
    from facealign_sdk.nets import LandmarkNet, NetConfig
    from facealign_sdk.training.release import write_model_folder

    torch.manual_seed(0)
    net = LandmarkNet(NetConfig(width=8)).eval()
    out = tmp_path_factory.mktemp("tiny_model")
    write_model_folder(net, out, "tiny-test", ["random init"])
    return out


def model_copy(tiny_model, tmp_path, edit=None, weights=None):
    """A copy of the tiny model with its manifest edited and/or its weights replaced (hash updated)."""
    from facealign_sdk.model import sha256

    out = tmp_path / "model"
    shutil.copytree(tiny_model, out)
    manifest = json.loads((out / "manifest.json").read_text())
    if weights is not None:
        from safetensors.numpy import load_file, save_file

        state = load_file(str(out / "model.safetensors"))
        weights(state)
        save_file(state, str(out / "model.safetensors"))
        manifest["weights_sha256"] = sha256(out / "model.safetensors")
    if edit is not None:
        edit(manifest)
    (out / "manifest.json").write_text(json.dumps(manifest, allow_nan=True))
    return out


@pytest.fixture(scope="session")
def face_image() -> np.ndarray:
    """The bundled sample face image (uint8 BGR)."""
    from facealign_sdk.imageio import read_image

    return read_image(SAMPLES / "face.jpg")


def pytest_collection_modifyitems(config, items):
    """Under mutmut (benchmarks/mutation.py, which runs from ``mutants/``) a mutant's covering tests come in
    no useful order and ``-x`` stops at the first failure: run them file by file, the files that load no
    model first, then the others by their recorded duration, so a killed mutant costs little."""
    stats = REPO / "mutmut-stats.json"
    if not os.environ.get("MUTANT_UNDER_TEST") or not stats.is_file():
        return
    duration = json.loads(stats.read_text()).get("duration_by_test", {})
    per_file: dict[str, float] = {}
    for item in items:
        per_file[item.path.name] = per_file.get(item.path.name, 0.0) + duration.get(item.nodeid, 0.0)
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda it: (it.path.name not in UNIT_TEST_FILES, per_file[it.path.name], it.path.name,
                               order[id(it)]))
