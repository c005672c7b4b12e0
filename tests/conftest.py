"""Shared fixtures: a tiny random-weights model folder, the shared data (skipped when absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import os

REPO = Path(__file__).resolve().parents[1]
# FACEALIGN_SHARED: where ../shared is when the tests run from a copy of the repo (mutation testing)
SHARED = Path(os.environ.get("FACEALIGN_SHARED", REPO.parent / "shared"))
SAMPLES = REPO / "samples"


def has_module(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


@pytest.fixture(scope="session", autouse=True)
def _own_cache(tmp_path_factory):
    """The tests' backend choices and engines go to a temporary $FACEALIGN_CACHE, not the user's."""
    patch = pytest.MonkeyPatch()
    patch.setenv("FACEALIGN_CACHE", str(tmp_path_factory.mktemp("facealign_cache")))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests using it skip when it is absent."""
    path = SHARED / "data"
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


@pytest.fixture(scope="session")
def face_image() -> np.ndarray:
    """The bundled sample face image (uint8 BGR)."""
    from facealign_sdk.imageio import read_image

    return read_image(SAMPLES / "face.jpg")
