"""C++ library (cpp/, sample ``facealign-cpp``) against the Python ``Aligner``: same points for the same
boxes within 0.1 px, and the same faces from its own YuNet detector, for every backend the build has.

Skips when the C++ build is absent: build it with ``bash cpp/build.sh build-cpp`` (or point
``FACEALIGN_CPP`` at a ``facealign-cpp`` executable).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from facealign_sdk.aligner import Aligner

from .conftest import REPO, SAMPLES

BUILD_DIRS = ("build-cpp", "build")
POINT_TOLERANCE_PX = 0.1  # measured: below 0.001 px (same crop to the bit but for ~1e-5 of its values)
DETECTOR_TOLERANCE_PX = 1.0


def _executable() -> Path | None:
    if os.environ.get("FACEALIGN_CPP"):
        return Path(os.environ["FACEALIGN_CPP"])
    for name in BUILD_DIRS:
        path = REPO / name / "samples" / "cpp" / "facealign-cpp"
        if path.is_file():
            return path
    return None


EXE = _executable()
pytestmark = pytest.mark.skipif(EXE is None or not EXE.is_file(), reason="C++ build absent (bash cpp/build.sh build-cpp)")


def _backends() -> list[str]:
    """The backends the build has, from its usage line; TensorRT needs an engine built on this GPU."""
    if EXE is None or not EXE.is_file():
        return []
    usage = subprocess.run([str(EXE), "--help"], capture_output=True, text=True, check=True).stdout
    names = re.search(r"--backend ([a-z|]+)\]", usage).group(1).split("|")
    return [n for n in names if n != "tensorrt"]


def run_cpp(*args: str) -> dict:
    proc = subprocess.run([str(EXE), *args, "--json"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def python_aligner() -> Aligner:
    """The Python pipeline with YuNet in OpenCV: the C++ detector reproduces FaceDetectorYN in fp32 (the Python
    default on a bf16 CPU runs it in OpenVINO's bf16, a pixel or so away)."""
    from facealign_sdk.detectors.yunet import YuNetDetector

    return Aligner(backend="ort", device="cpu", detector=YuNetDetector(runtime="opencv"))


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("image, boxes", [
    ("face.jpg", [(200.0, 118.0, 395.0, 398.0)]),
    ("two_faces.jpg", [(650.5, 100.25, 880.0, 390.0), (190.0, 105.0, 415.0, 400.0)]),
    ("face.jpg", [(-40.0, 250.0, 300.0, 600.0)]),  # the crop runs off the image: black border
])
def test_same_points_for_the_same_boxes(python_aligner, backend, image, boxes):
    args = [str(SAMPLES / image), "--backend", backend]
    for box in boxes:
        args += ["--box", ",".join(str(v) for v in box)]
    cpp = run_cpp(*args)["faces"]
    py = python_aligner.align(str(SAMPLES / image), boxes=boxes)
    assert len(cpp) == len(py) == len(boxes)
    for c, p in zip(cpp, py):
        assert np.allclose(c["box"], p.box)
        err = np.linalg.norm(np.asarray(c["points"]) - p.points, axis=1)
        assert err.max() < POINT_TOLERANCE_PX, f"{backend}: largest point difference {err.max():.4f} px"
        assert np.abs(np.asarray(c["confidence"]) - p.confidence).max() < 1e-3


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("image", ["face.jpg", "two_faces.jpg"])
def test_detector_finds_the_same_faces(python_aligner, backend, image):
    out = run_cpp(str(SAMPLES / image), "--backend", backend)
    assert out["convention"] == python_aligner.convention == "300w"  # the manifest's default, as in Python
    cpp = out["faces"]
    py = python_aligner.align(str(SAMPLES / image))
    assert len(cpp) == len(py) > 0
    for c, p in zip(cpp, py):  # both best score first
        assert np.abs(np.asarray(c["box"]) - p.box).max() < DETECTOR_TOLERANCE_PX
        assert abs(c["score"] - p.score) < 1e-3
        err = np.linalg.norm(np.asarray(c["points"]) - p.points, axis=1)
        assert err.max() < DETECTOR_TOLERANCE_PX, f"{backend}: largest point difference {err.max():.4f} px"


@pytest.mark.parametrize("convention", ["ytf68", "none"])
def test_a_named_convention_gives_the_python_points(convention):
    """Both runtimes read the manifest's conventions and add the same offsets ("none": the network's points)."""
    box = (200.0, 118.0, 395.0, 398.0)
    out = run_cpp(str(SAMPLES / "face.jpg"), "--box", ",".join(map(str, box)), "--convention", convention)
    cpp = out["faces"]
    aligner = Aligner(backend="ort", device="cpu", convention=convention)
    py = aligner.align(str(SAMPLES / "face.jpg"), boxes=[box])
    assert out["convention"] == aligner.convention == (None if convention == "none" else convention)
    default = Aligner(backend="ort", device="cpu").align(str(SAMPLES / "face.jpg"), boxes=[box])
    err = np.linalg.norm(np.asarray(cpp[0]["points"]) - py[0].points, axis=1)
    assert err.max() < POINT_TOLERANCE_PX, f"{convention}: largest point difference {err.max():.4f} px"
    assert np.abs(py[0].points - default[0].points).max() > 1.0  # a convention other than the default moves them


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize("model, convention", [("fabrec-scaf-w32", None), ("fabrec-scaf-w16-lite", "ytf68")])
def test_flip_averaging_gives_the_python_points(backend, model, convention):
    """flip: both runtimes average with the mirrored crop in the scheme's mirror order and add the offsets fitted
    for flip averaging (the manifest's flip_conventions)."""
    box = (200.0, 118.0, 395.0, 398.0)
    folder = REPO / "models" / model
    named = [] if convention is None else ["--convention", convention]
    cpp = run_cpp(str(SAMPLES / "face.jpg"), "--model", str(folder), "--backend", backend,
                  "--box", ",".join(map(str, box)), "--flip", *named)["faces"]
    aligner = Aligner(model=folder, backend="ort", device="cpu", detector=None, convention=convention, flip=True)
    py = aligner.align(str(SAMPLES / "face.jpg"), boxes=[box])
    err = np.linalg.norm(np.asarray(cpp[0]["points"]) - py[0].points, axis=1)
    assert err.max() < POINT_TOLERANCE_PX, f"{model}: largest point difference {err.max():.4f} px"
    assert np.abs(np.asarray(cpp[0]["confidence"]) - py[0].confidence).max() < 1e-3
    plain = Aligner(model=folder, backend="ort", device="cpu", detector=None, convention=convention).align(
        str(SAMPLES / "face.jpg"), boxes=[box])
    assert np.abs(py[0].points - plain[0].points).max() > 0.1  # flip moves the points: the check can fail


def test_flip_without_fitted_offsets_warns_as_python_does(tmp_path):
    """A model trained without mirror augmentation and no offsets fitted for flip: the C++ sample says so on stderr
    (Python logs the same warning) and still averages."""
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(REPO / "models" / "fabrec-scaf-w32", folder, ignore=shutil.ignore_patterns("*.safetensors", "eval"))
    shutil.copytree(REPO / "models" / "yunet", tmp_path / "yunet")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["flip_conventions"] = {}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    proc = subprocess.run([str(EXE), str(SAMPLES / "face.jpg"), "--model", str(folder), "--box", "200,118,395,398",
                           "--flip"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "warning: " in proc.stderr and "no offsets of convention 300w fitted for flip averaging" in proc.stderr


def test_the_128_px_lite_model_adds_its_conventions_as_python_does():
    """The released 128-px model (a 64-px heatmap): offsets are fractions of the 128-px crop in both runtimes."""
    box = (200.0, 118.0, 395.0, 398.0)
    model = REPO / "models" / "fabrec-scaf-w16-lite"
    for convention in ("ytf68", "none"):
        cpp = run_cpp(str(SAMPLES / "face.jpg"), "--model", str(model), "--box", ",".join(map(str, box)),
                      "--convention", convention)["faces"]
        py = Aligner(model=model, backend="ort", device="cpu", detector=None, convention=convention).align(
            str(SAMPLES / "face.jpg"), boxes=[box])
        err = np.linalg.norm(np.asarray(cpp[0]["points"]) - py[0].points, axis=1)
        assert err.max() < POINT_TOLERANCE_PX, f"{convention}: largest point difference {err.max():.4f} px"


@pytest.mark.parametrize(("offset", "message"), [([0.9, 0.0], "less than half"), ([0.1, 0.0, 0.0], "(dx, dy) pairs")])
def test_a_manifest_convention_python_refuses_is_refused_too(tmp_path, offset, message):
    """A hand-edited manifest that the Python Manifest refuses is bad input (exit 2) for the C++ library too."""
    manifest = json.loads((REPO / "models" / "fabrec-scaf-w32" / "manifest.json").read_text())
    manifest["conventions"]["300w"][5] = offset
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    proc = subprocess.run([str(EXE), str(SAMPLES / "face.jpg"), "--model", str(tmp_path)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr, (proc.returncode, proc.stderr)


def test_missing_inputs_exit_2_with_a_message(tmp_path):
    for args, message in [
        ([str(tmp_path / "none.jpg")], "no such file"),
        ([str(SAMPLES / "face.jpg"), "--model", str(tmp_path)], "no manifest"),
        ([str(SAMPLES / "face.jpg"), "--backend", "tensorrt"], "tensorrt"),
        ([str(SAMPLES / "face.jpg"), "--convention", "lfpw"], "no annotation convention lfpw"),
        ([str(SAMPLES / "face.jpg"), "--convention", ""], "--convention needs a convention name"),  # as Python: not the default
    ]:
        proc = subprocess.run([str(EXE), *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.returncode, proc.stderr)


def test_a_128_px_model_gives_the_python_points(tmp_path):
    """A 128 -> 64 model (tiny, random weights, exported): the C++ crop, decoder (the manifest's codec for a 64-px
    map, its target sigma scaled from 128) and confidence give the Python Aligner's numbers."""
    import shutil

    torch = pytest.importorskip("torch")
    from facealign_sdk.cli.main import main
    from facealign_sdk.nets import LandmarkNet, NetConfig
    from facealign_sdk.training.release import write_model_folder

    torch.manual_seed(0)
    model = tmp_path / "lite"
    write_model_folder(LandmarkNet(NetConfig.for_input(128, width=8)).eval(), model, "lite-test", [])
    assert main(["export", "--model", str(model), "--to", "onnx", "--no-bench", "--parity-faces", "2",
                 "--no-progress"]) == 0
    shutil.copytree(REPO / "models" / "yunet", tmp_path / "yunet")  # the C++ sample looks for it beside the model
    box = (200.0, 118.0, 395.0, 398.0)
    py = Aligner(model=model, backend="ort", device="cpu", detector=None).align(str(SAMPLES / "face.jpg"), boxes=[box])
    for backend in _backends():
        cpp = run_cpp(str(SAMPLES / "face.jpg"), "--model", str(model), "--backend", backend,
                      "--box", ",".join(str(v) for v in box))["faces"]
        err = np.linalg.norm(np.asarray(cpp[0]["points"]) - py[0].points, axis=1)
        assert err.max() < POINT_TOLERANCE_PX, f"{backend}: largest point difference {err.max():.4f} px"
        assert np.abs(np.asarray(cpp[0]["confidence"]) - py[0].confidence).max() < 1e-3
