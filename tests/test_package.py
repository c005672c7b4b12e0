"""The package as a whole: every module imports alone, the wheel, the CLI's shared conventions and the
messages users get for missing extras, broken pipes and misnamed outputs."""

from __future__ import annotations

import inspect
import json
import pkgutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import facealign_sdk
from facealign_sdk.cli.main import main

from .conftest import REPO, SAMPLES

OPTIONAL = {"torch", "onnx", "onnxscript", "tensorrt", "insightface", "matplotlib", "onnxruntime.quantization"}


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(facealign_sdk.__path__, "facealign_sdk."))


def test_every_module_imports_on_its_own():
    """Each module imported first, in a fresh set of facealign_sdk modules: an import cycle fails here."""
    script = """
import importlib, sys
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m == "facealign_sdk" or m.startswith("facealign_sdk.")]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in {%s}:
            continue
        failed.append(f"{name}: {exc!r}")
    except Exception as exc:
        failed.append(f"{name}: {exc!r}")
print("\\n".join(failed))
sys.exit(1 if failed else 0)
""" % ", ".join(repr(m) for m in OPTIONAL)
    names = _modules()
    assert "facealign_sdk.cli.main" in names and "facealign_sdk.export.onnx" in names
    done = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_no_top_level_export_package():
    assert not (REPO / "export").exists()
    from facealign_sdk.export import onnx  # noqa: F401 - the export lives inside the package


def test_tracker_does_not_import_the_aligner():
    source = (REPO / "facealign_sdk" / "video" / "tracker.py").read_text()
    assert "aligner import" not in source and "import Aligner" not in source


# -- options: one object, the Aligner's arguments and the CLI's flags ---------------------------------


def test_aligner_arguments_are_the_options():
    from facealign_sdk.aligner import Aligner
    from facealign_sdk.options import AlignerOptions

    params = inspect.signature(Aligner.__init__).parameters
    for name, field in AlignerOptions.model_fields.items():
        assert name in params, name
        assert params[name].default == field.default, name


@pytest.mark.parametrize("command", ["image", "video", "eval", "bench"])
def test_commands_share_the_model_flags(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    for flag in ("--model", "--device", "--refine", "--no-blur", "--flip", "--no-progress"):
        assert flag in text, (command, flag)
    assert "(default: soft)" in text  # help shows defaults
    assert "more accurate" not in text.split("--flip", 1)[1].split("\n  --", 1)[0]
    assert "--quiet" not in text


@pytest.mark.parametrize("command", ["export", "train"])
def test_every_command_takes_no_progress(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--no-progress" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"facealign-sdk {facealign_sdk.__version__}"


def test_bad_option_value_is_one_line(tiny_model, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["image", str(SAMPLES / "face.jpg"), "--model", str(tiny_model), "--refine", "bogus"])
    assert exc.value.code == 2


# -- missing optional dependencies: one line naming the extra, exit 2 ---------------------------------


def _run_without(module: str, *argv: str) -> subprocess.CompletedProcess:
    script = (f"import sys; sys.modules[{module!r}] = None\n"
              "from facealign_sdk.cli.main import main; sys.exit(main(sys.argv[1:]))")
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("module", "argv", "extra"), [
    ("torch", ["train", "landmarks", "--data", "nowhere"], "[train]"),
    ("torch", ["train", "autoencoder", "--data", "nowhere"], "[train]"),
    ("onnx", ["export", "--to", "onnx", "--no-bench"], "[export]"),
])
def test_missing_extra_names_it(module, argv, extra, tmp_path):
    done = _run_without(module, *argv, *(["--out", str(tmp_path / "m")] if argv[0] == "export" else []))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and extra in lines[0] and module in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_ced_without_matplotlib_names_plots(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((SAMPLES / "face.jpg").read_bytes())
    done = _run_without("matplotlib", "eval", str(folder), "--ced", str(tmp_path / "c.png"))
    assert done.returncode == 2, done.stderr
    assert "[plots]" in done.stderr and "Traceback" not in done.stderr


# -- outputs --------------------------------------------------------------------------------------------


def test_video_out_json_writes_json(tiny_model, tmp_path):
    out = tmp_path / "v.json"
    rc = main(["video", str(SAMPLES / "clip.mp4"), "--out", str(out), "--model", str(tiny_model), "--backend", "torch",
               "--max-frames", "2", "--no-progress"])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert len(doc["frames"]) == 2


def test_video_out_json_and_json_is_refused(tiny_model, tmp_path, capsys):
    rc = main(["video", str(SAMPLES / "clip.mp4"), "--out", str(tmp_path / "a.json"), "--json", str(tmp_path / "b.json"),
               "--model", str(tiny_model), "--no-progress"])
    assert rc == 2
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()


def test_image_and_video_csv_share_face_id_and_confidence(tiny_model, tmp_path):
    import csv

    model = ["--model", str(tiny_model), "--backend", "torch", "--no-progress"]
    assert main(["image", str(SAMPLES / "face.jpg"), "--out", str(tmp_path / "i.csv"), *model]) == 0
    assert main(["video", str(SAMPLES / "clip.mp4"), "--out", str(tmp_path / "v.csv"), "--max-frames", "1", *model]) == 0
    for name in ("i.csv", "v.csv"):
        header = next(csv.reader((tmp_path / name).open()))
        assert "face_id" in header and "confidence" in header and "x_0" in header and "c_67" in header, name


def test_bench_missing_artifact_is_exit_2(tiny_model, capsys):
    rc = main(["bench", "--model", str(tiny_model), "--backends", "ort-int8", "--iters", "1", "--batch", "1"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "model_int8.onnx" in err and "facealign export" in err


def test_bench_uses_the_bundled_image_without_a_checkout(tiny_model, tmp_path, monkeypatch, capsys):
    """As from a wheel: no checkout, the sample image inside the package (facealign_sdk/_samples)."""
    from facealign_sdk import resources

    import shutil

    packaged = tmp_path / "pkg"
    (packaged / "_samples").mkdir(parents=True)
    (packaged / "_samples" / "face.jpg").write_bytes((SAMPLES / "face.jpg").read_bytes())
    shutil.copytree(resources.models_root() / "yunet", packaged / "_models" / "yunet")
    monkeypatch.setattr(resources, "checkout_root", lambda: None)
    monkeypatch.setattr(resources, "_packaged", lambda name: packaged / name)
    monkeypatch.chdir(tmp_path)
    assert resources.sample_image() == packaged / "_samples" / "face.jpg"
    rc = main(["bench", "--model", str(tiny_model), "--backends", "torch", "--iters", "1", "--batch", "1"])
    assert rc == 0, capsys.readouterr().err
    assert "end_to_end_ms_per_image" in capsys.readouterr().out


def test_shared_data_is_beside_the_checkout_unless_facealign_shared_says(tmp_path, monkeypatch):
    from facealign_sdk import resources

    monkeypatch.delenv("FACEALIGN_SHARED", raising=False)
    assert resources.shared_data("300w", "val") == REPO.parent / "shared" / "data" / "300w" / "val"
    monkeypatch.setenv("FACEALIGN_SHARED", str(tmp_path))
    assert resources.shared_data("300w", "val") == tmp_path / "data" / "300w" / "val"


def test_broken_pipe_ends_quietly():
    """``facealign image ... | head -c 20``: the reader goes away; no traceback, exit 141."""
    # ~20 faces of JSON: more than a pipe holds (64 KiB), so the writer meets the closed pipe
    images = [str(SAMPLES / "two_faces.jpg")] * 10
    proc = subprocess.Popen([sys.executable, "-m", "facealign_sdk.cli.main", "image", *images, "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    assert proc.stdout.read(20)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err


# -- the wheel ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "-w", str(out), "--no-deps",
                           "--no-build-isolation", "-q"], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.skip(f"cannot build a wheel here: {done.stderr.strip()[-300:]}")
    return next(out.glob("facealign_sdk-*.whl"))


def test_wheel_carries_the_onnx_graphs_once_and_the_bench_image(wheel):
    assert wheel.stat().st_size <= 30 * 1024 * 1024
    names = zipfile.ZipFile(wheel).namelist()
    assert "facealign_sdk/py.typed" in names
    assert "facealign_sdk/_samples/face.jpg" in names
    assert "facealign_sdk/_models/fabrec-scaf-w32/model.onnx" in names
    assert "facealign_sdk/_models/yunet/face_detection_yunet_2023mar_int8bq.onnx" in names
    released = sorted(p.name for p in (REPO / "models").iterdir() if (p / "manifest.json").is_file())
    weights = sorted(n for n in names if n.endswith((".onnx", ".safetensors")) and "/yunet/" not in n)
    # the fp32 graph and, where released, the int8 one; no PyTorch weights, no fp16 graph (made on demand)
    expected = [f"facealign_sdk/_models/{name}/{file}" for name in released for file in ("model.onnx", "model_int8.onnx")
                if (REPO / "models" / name / file).is_file()]
    assert weights == sorted(expected) and len(expected) > len(released)
    assert not [n for n in names if n.split("/")[0] in ("export", "models", "samples")]


# -- the detector's box calibration -----------------------------------------------------------------------


def test_a_detector_calibrated_for_other_boxes_is_warned_about(caplog):
    from facealign_sdk.aligner import Aligner
    from facealign_sdk.detectors.base import Detection
    from facealign_sdk.detectors.calibration import YUNET, BoxCalibration
    from facealign_sdk.detectors.yunet import YuNetDetector

    class Other:
        calibration = BoxCalibration(detector="other", dx=0.0, dy=0.0, size=1.0)

        def detect(self, image) -> list[Detection]:
            return []

    assert YuNetDetector.calibration == YUNET
    with caplog.at_level("WARNING", logger="facealign_sdk"):
        aligner = Aligner(backend="ort")
        assert aligner.manifest.crop.detector == "yunet" and "boxes sit differently" not in caplog.text
        Aligner(backend="ort", detector=Other())
    assert "trained on crops from yunet boxes; other boxes" in caplog.text


def test_video_tracking_flags_default_to_track_options():
    """The tracking flags of ``facealign video`` give exactly the default ``TrackOptions``."""
    import argparse

    from facealign_sdk.cli import video
    from facealign_sdk.video import TrackOptions

    parser = argparse.ArgumentParser()
    video.add_arguments(parser)
    args = parser.parse_args(["in.mp4", "--out", "o.csv"])
    assert video.options_from_args(args) == TrackOptions()


def test_every_error_class_derives_from_facealign_error():
    import importlib

    from facealign_sdk.errors import FacealignError

    found = []
    for name in _modules():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in {m.split(".")[0] for m in OPTIONAL}:
                continue
            raise
        for obj in vars(module).values():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__.startswith("facealign_sdk"):
                found.append(obj)
    assert {c.__name__ for c in found} >= {"InputError", "ModelError", "ImageError", "VideoError", "BackendError",
                                            "PtsError", "EvalItemError", "MissingDependencyError"}
    assert [c for c in found if not issubclass(c, FacealignError)] == []
