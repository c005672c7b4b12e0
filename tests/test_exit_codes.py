"""Every exit code of every command, through ``facealign_sdk.cli.main`` as a user runs it.

0 ok, 1 the work failed (export parity, eval item failure), 2 bad input, 3 video stream broke
mid-way, 130 interrupted. Some codes are also covered in the command's own test file; this table is
the one place that shows all of them.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facealign_sdk.cli import main as cli
from facealign_sdk.pts import write_pts

from .conftest import SAMPLES

torch = pytest.importorskip("torch")


def model(tiny_model: Path) -> list[str]:
    return ["--model", str(tiny_model), "--backend", "torch"]


@pytest.fixture(scope="module")
def annotated(tmp_path_factory) -> Path:
    """Two annotated copies of the sample face (points roughly on the face)."""
    folder = tmp_path_factory.mktemp("annotated")
    face = cv2.imread(str(SAMPLES / "face.jpg"))
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = np.stack([256 + 80 * np.cos(t), 250 + 100 * np.sin(t)], axis=1)
    points[36], points[45] = (200, 220), (310, 220)
    for i in range(2):
        cv2.imwrite(str(folder / f"f{i}.jpg"), face)
        write_pts(folder / f"f{i}.pts", points)
    return folder


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


# -- image ------------------------------------------------------------------------------------------


def test_image_codes(tiny_model, tmp_path, monkeypatch, capsys):
    face = str(SAMPLES / "face.jpg")
    assert cli.main(["image", face, *model(tiny_model), "--out", str(tmp_path / "a.json")]) == 0
    assert cli.main(["image", str(tmp_path / "missing.jpg"), *model(tiny_model)]) == 2
    assert cli.main(["image", face, *model(tiny_model), "--out", str(tmp_path / "a.txt")]) == 2
    assert "error:" in capsys.readouterr().err
    from facealign_sdk.aligner import Aligner

    monkeypatch.setattr(Aligner, "align", _interrupt)
    assert cli.main(["image", face, *model(tiny_model), "--out", str(tmp_path / "b.json")]) == 130


def test_usage_error_is_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["image"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        cli.main(["nonsense"])
    assert exc.value.code == 2


# -- video (3 and 130 with real broken / interrupted streams are in test_video.py) --------------------


def test_video_codes(tiny_model, tmp_path):
    clip = str(SAMPLES / "clip.mp4")
    args = [*model(tiny_model), "--no-progress", "--max-frames", "3"]
    assert cli.main(["video", clip, *args, "--out", str(tmp_path / "v.csv")]) == 0
    assert cli.main(["video", str(tmp_path / "none.mp4"), *args, "--out", str(tmp_path / "w.csv")]) == 2
    assert cli.main(["video", clip, *args, "--out", str(tmp_path / "v.csv")]) == 2  # exists, no --overwrite


# -- bench ------------------------------------------------------------------------------------------


def test_bench_codes(tiny_model):
    base = ["bench", "--model", str(tiny_model), "--backends", "torch", "--batch", "1", "--iters", "1"]
    assert cli.main(base) == 0
    assert cli.main([*base[:-1], "0"]) == 2


# -- eval -------------------------------------------------------------------------------------------


def test_eval_codes(tiny_model, annotated, tmp_path, monkeypatch):
    args = ["eval", str(annotated), *model(tiny_model), "--mode", "fixed", "--no-progress"]
    assert cli.main([*args, "--json", str(tmp_path / "e.json")]) == 0
    assert json.loads((tmp_path / "e.json").read_text())
    assert cli.main(["eval", str(tmp_path / "nothing"), *model(tiny_model)]) == 2
    # a failure inside the work (not the input) names the item and exits 1
    from facealign_sdk.landmarker import Landmarker

    def broken(self, jobs):
        raise RuntimeError("backend exploded")

    monkeypatch.setattr(Landmarker, "landmarks_in_frames", broken)
    assert cli.main(args) == 1


# -- export -----------------------------------------------------------------------------------------


def test_export_codes(tiny_model, tmp_path, capsys):
    """fp32 passes its parity limit (0); int8 without its gate is not judged, a failure (1; --warn-only: 0, in
    test_export; the gate itself: test_int8_gate)."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    common = ["export", "--model", str(tiny_model), "--parity-faces", "4", "--no-bench"]
    assert cli.main([*common, "--to", "onnx", "--out", str(tmp_path / "fp32")]) == 0
    int8 = [*common, "--to", "int8", "--calib-count", "4", "--no-int8-gate"]
    assert cli.main([*int8, "--out", str(tmp_path / "int8")]) == 1
    assert "parity check failed" in capsys.readouterr().err
    assert cli.main([*common, "--to", "bogus"]) == 2


# -- train ------------------------------------------------------------------------------------------


def test_train_codes(tiny_model, annotated, tmp_path, monkeypatch):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"net": {"width": 8}, "val": None, "autoencoder": None, "augment": False,
                                  "checkpoint_every": 2, "threads": 1}))
    run = ["train", "landmarks", "--data", str(annotated), "--config", str(config), "--steps", "2",
           "--batch-size", "2", "--run-dir", str(tmp_path / "run")]
    assert cli.main(run) == 0
    assert (tmp_path / "run" / "last.pt").is_file()
    config.write_text(json.dumps({"stepz": 3}))
    assert cli.main(run) == 2
    config.write_text(json.dumps({"net": {"width": 8}, "val": None, "autoencoder": None, "threads": 1}))
    from facealign_sdk.training import landmarks

    monkeypatch.setattr(landmarks, "heatmap_loss", _interrupt)
    assert cli.main([*run[:-1], str(tmp_path / "run2")]) == 130


def test_train_on_a_missing_gpu_is_bad_input(annotated, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    run = ["train", "landmarks", "--data", str(annotated), "--steps", "1", "--run-dir", str(tmp_path / "r"),
           "--device", "cuda"]
    assert cli.main(run) == 2
    assert "sees no CUDA device" in capsys.readouterr().err
    assert cli.main([*run[:-1], "tpu"]) == 2


def test_bench_missing_target_and_bad_json_path_are_bad_input(tiny_model, tmp_path, capsys):
    base = ["bench", "--model", str(tiny_model), "--batch", "1", "--iters", "1"]
    assert cli.main([*base, "--backends", "ort-int8"]) == 2
    assert "model_int8.onnx is not in the model folder" in capsys.readouterr().err
    assert cli.main([*base, "--backends", "torch", "--json", str(tmp_path / "missing" / "b.json")]) == 2
    assert "output folder does not exist" in capsys.readouterr().err


def test_device_gpu_never_runs_on_the_cpu(tiny_model):
    from facealign_sdk.aligner import Aligner
    from facealign_sdk.errors import InputError

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(InputError):
        Aligner(tiny_model, device="gpu")


def test_bad_thread_count_names_the_variable(tiny_model, monkeypatch, capsys):
    monkeypatch.setenv("FACEALIGN_THREADS", "abc")
    assert cli.main(["image", str(SAMPLES / "face.jpg"), "--backend", "ort"]) == 2  # the bundled model (ONNX)
    assert "FACEALIGN_THREADS" in capsys.readouterr().err
