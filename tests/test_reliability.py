"""Reliability and security: threads, broken model folders, hostile images and annotations."""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np
import pytest

from facealign_sdk.aligner import Aligner

from .conftest import SAMPLES, model_copy
from .test_imageio import png_header_only, with_exif_orientation


# -- one Aligner shared by threads ----------------------------------------------------------------
def _thread_images(face_image: np.ndarray) -> list[np.ndarray]:
    """Images of different sizes (the detector's input size changes between calls) and face counts."""
    two = cv2.imread(str(SAMPLES / "two_faces.jpg"))
    return [face_image, cv2.resize(face_image, (320, 240)), two, cv2.resize(two, (900, 700)),
            face_image[40:, 30:], np.full((200, 300, 3), 90, np.uint8)]


def _signature(faces) -> list:
    return [(f.box, f.score, f.points.tobytes(), f.confidence.tobytes()) for f in faces]


def test_one_aligner_from_8_threads_matches_one_thread(tiny_model, face_image):
    aligner = Aligner(tiny_model, backend="torch")
    images = _thread_images(face_image)
    expected = [_signature(aligner.align(im)) for im in images]
    assert sum(len(e) for e in expected) >= 5  # the detector found the faces
    rounds = 2
    results: dict[int, list] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def work(k: int) -> None:
        try:
            barrier.wait()
            order = [(k + i) % len(images) for i in range(len(images) * rounds)]
            results[k] = [(i, _signature(aligner.align(images[i]))) for i in order]
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    for k, got in results.items():
        for i, sig in got:
            assert sig == expected[i], f"thread {k}, image {i}"


def test_a_detector_without_fork_is_called_by_one_thread_at_a_time(tiny_model, face_image):
    import time

    from facealign_sdk.detectors.base import Detection

    class NotReentrant:
        busy = False

        def detect(self, image):
            assert not self.busy, "detect() entered by two threads at once"
            self.busy = True
            time.sleep(0.002)
            self.busy = False
            return [Detection(box=(150, 100, 350, 330), score=0.9)]

    aligner = Aligner(tiny_model, backend="torch", detector=NotReentrant())
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                aligner.detect(face_image)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# -- exit codes: user errors, internal bugs, Ctrl-C ----------------------------------------------
def test_an_internal_bug_is_not_reported_as_bad_input(tiny_model, tmp_path, monkeypatch, capsys):
    from facealign_sdk.cli.main import main

    def bug(self, image, boxes=None):
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(Aligner, "align", bug)
    code = main(["image", str(SAMPLES / "face.jpg"), "--model", str(tiny_model), "--backend", "torch"])
    err = capsys.readouterr().err
    assert code == 1 and "internal error" in err and "Traceback" in err


def test_user_errors_share_one_base_class():
    from facealign_sdk.backends.base import BackendError  # a RuntimeError too
    from facealign_sdk.errors import InputError
    from facealign_sdk.imageio import ImageError
    from facealign_sdk.model import ModelError
    from facealign_sdk.pts import PtsError
    from facealign_sdk.video import VideoError

    for cls in (ImageError, ModelError, PtsError, VideoError, BackendError):
        assert issubclass(cls, InputError) and issubclass(cls, ValueError)


def test_every_exception_class_of_the_package_is_a_facealign_error():
    """One hierarchy: an exception class defined anywhere in the package derives from FacealignError."""
    import importlib
    import inspect
    import pkgutil
    import signal

    import facealign_sdk
    from facealign_sdk.errors import FacealignError

    handler = signal.getsignal(signal.SIGINT)  # importing the CLI installs its own
    found = []
    try:
        for info in pkgutil.walk_packages(facealign_sdk.__path__, "facealign_sdk."):
            try:
                module = importlib.import_module(info.name)
            except ImportError:  # a module of an optional extra that is not installed
                continue
            found += [cls for _, cls in inspect.getmembers(module, inspect.isclass)
                      if issubclass(cls, BaseException) and cls.__module__ == module.__name__]
    finally:
        signal.signal(signal.SIGINT, handler)
    assert {"InputError", "ImageError", "BackendError", "PoseError"} <= {cls.__name__ for cls in found}
    assert [cls for cls in found if not issubclass(cls, FacealignError)] == []


def test_interrupt_inside_serialisation_exits_130(tiny_model, tmp_path, monkeypatch, capsys):
    """pydantic re-raises a KeyboardInterrupt from a serializer as a ValueError: still exit 130."""
    import os
    import signal

    from facealign_sdk.cli.main import main

    real_round, fired = np.round, []

    def round_then_interrupt(*args, **kwargs):
        if not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return real_round(*args, **kwargs)

    monkeypatch.setattr(np, "round", round_then_interrupt)
    out = tmp_path / "out.json"
    code = main(["image", str(SAMPLES / "face.jpg"), "--model", str(tiny_model), "--backend", "torch", "--out", str(out)])
    assert fired and code == 130
    assert not out.exists()  # nothing half-written


def test_ctrl_c_between_import_and_main_exits_130_without_traceback():
    """The window a loaded machine widens: the CLI module is imported, ``main`` has not run yet."""
    import signal
    import subprocess
    import sys

    from .conftest import REPO

    start = ("import sys, time; from facealign_sdk.cli.main import main; sys.stderr.write('ready\\n'); "
             "sys.stderr.flush(); time.sleep(30); sys.exit(main())")
    proc = subprocess.Popen([sys.executable, "-c", start, "--version"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline() == "ready\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err


@pytest.mark.parametrize("delay", [0.05, 0.3])
def test_ctrl_c_soon_after_start_exits_130_without_traceback(delay, tiny_model, tmp_path):
    """SIGINT while the command still imports its modules (the interpreter is up: it printed 'ready')."""
    import signal
    import subprocess
    import sys
    import time

    from .conftest import REPO

    start = ("import sys; sys.stderr.write('ready\\n'); sys.stderr.flush(); "
             "from facealign_sdk.cli.main import main; sys.exit(main())")
    proc = subprocess.Popen([sys.executable, "-c", start, "image", str(SAMPLES / "face.jpg"), "--model",
                             str(tiny_model), "--backend", "torch"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr.readline() == "ready\n"
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err


# -- broken model folders ------------------------------------------------------------------------
def _set(path: str, value):
    def edit(manifest):
        *parents, key = path.split(".")
        node = manifest
        for p in parents:
            node = node[p]
        if value is KeyError:
            del node[key]
        else:
            node[key] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set("heatmap_size", 64), "heatmap_size"),
    (_set("input_size", 128), "input_size"),
    (_set("crop.crop_scale", float("nan")), "crop_scale"),
    (_set("crop.crop_scale", 0.0), "crop_scale"),
    (_set("crop.crop_scale", -1.4), "crop_scale"),
    (_set("crop.center_shift", float("inf")), "center_shift"),
    (_set("mean", [float("nan"), 0.4, 0.3]), "mean"),
    (_set("heatmap_sise", 128), "heatmap_sise"),  # a misspelt key
    (_set("crop.scale", 1.2), "crop.scale"),
    (_set("input_size", 10 ** 9), "input_size"),
    (_set("num_landmarks", 10 ** 7), "num_landmarks"),
    (_set("net.width", 10 ** 6), "net.width"),
], ids=["heatmap_size", "input_size", "nan_scale", "zero_scale", "negative_scale", "inf_shift", "nan_mean",
        "unknown_key", "unknown_crop_key", "absurd_input", "absurd_landmarks", "absurd_width"])
def test_broken_manifest_is_refused_at_load_time(tiny_model, tmp_path, edit, message):
    from facealign_sdk.model import ModelError

    broken = model_copy(tiny_model, tmp_path, edit)
    with pytest.raises(ModelError, match=message):
        Aligner(broken, backend="torch")


def test_manifest_disagreeing_with_the_network_is_refused(tiny_model, tmp_path):
    """net{} says nothing of the heatmap size, the manifest says 64: the network's 128 gives it away."""
    from facealign_sdk.model import ModelError

    def edit(manifest):
        manifest["heatmap_size"] = 64
        del manifest["net"]["heatmap_size"]

    with pytest.raises(ModelError, match=r"outputs shape \(1, 68, 128, 128\).*heatmap_size 64"):
        Aligner(model_copy(tiny_model, tmp_path, edit), backend="torch")


def test_nan_weights_are_refused_at_load_time(tiny_model, tmp_path):
    from facealign_sdk.model import ModelError

    def poison(state):
        name = next(k for k in sorted(state) if k.endswith("weight") and state[k].ndim == 4)
        state[name] = state[name].copy()
        state[name].flat[0] = np.nan

    with pytest.raises(ModelError, match="NaN or inf"):
        Aligner(model_copy(tiny_model, tmp_path, weights=poison), backend="torch")


def test_nan_network_output_never_becomes_points(tiny_model, face_image, monkeypatch):
    from facealign_sdk.model import ModelError

    aligner = Aligner(tiny_model, backend="torch")
    monkeypatch.setattr(aligner.backend, "run", lambda batch: np.full((len(batch), 68, 128, 128), np.nan, np.float32))
    with pytest.raises(ModelError, match="NaN"):
        aligner.align(face_image)


# -- options out of range -------------------------------------------------------------------------
@pytest.mark.parametrize("max_faces", [0, -1, 1.5, True])
def test_max_faces_below_one_is_refused(tiny_model, max_faces):
    from facealign_sdk.errors import InputError

    with pytest.raises(InputError, match="max_faces"):
        Aligner(tiny_model, backend="torch", max_faces=max_faces)


@pytest.mark.parametrize("max_faces", ["0", "-2"])
def test_cli_max_faces_below_one_exits_2(tiny_model, tmp_path, max_faces, capsys, face_image):
    import cv2 as _cv2

    from facealign_sdk.cli.main import main

    assert main(["image", str(SAMPLES / "face.jpg"), "--model", str(tiny_model), "--backend", "torch",
                 "--max-faces", max_faces]) == 2
    _cv2.imwrite(str(tmp_path / "f.png"), face_image)
    assert main(["video", str(tmp_path), "--out", str(tmp_path / "o.csv"), "--model", str(tiny_model),
                 "--backend", "torch", "--max-faces", max_faces]) == 2
    assert "max-faces" in capsys.readouterr().err


@pytest.mark.parametrize("fps", ["inf", "1e308", "nan", "0", "-5"])
def test_absurd_fps_is_refused(tiny_model, tmp_path, fps, capsys, face_image):
    from facealign_sdk.cli.main import main
    from facealign_sdk.video import VideoError, VideoReader

    cv2.imwrite(str(tmp_path / "f.png"), face_image)
    out = tmp_path / "o.csv"
    assert main(["video", str(tmp_path), "--out", str(out), "--model", str(tiny_model), "--backend", "torch",
                 "--fps", fps]) == 2
    assert "--fps" in capsys.readouterr().err and not out.exists()
    with pytest.raises(VideoError, match="fps"):
        VideoReader(tmp_path, fps=float(fps))


# -- hostile image files (tests/test_imageio.py has the reading itself) ---------------------------
def test_sideways_phone_photo_gives_points_in_the_upright_image(tiny_model, face_image, tmp_path):
    """A photo stored sideways (pixels turned 90 deg counter-clockwise) with orientation 6 (turn clockwise)."""
    stored = cv2.rotate(face_image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    path = tmp_path / "phone.jpg"
    path.write_bytes(with_exif_orientation(cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 98])[1].tobytes(), 6))
    aligner = Aligner(tiny_model, backend="torch")
    upright = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert upright.shape == face_image.shape
    faces = aligner.align(path)
    expected = aligner.align(upright)
    assert len(faces) == len(expected) == 1
    assert np.array_equal(faces[0].points, expected[0].points)


def test_decompression_bomb_exits_2_naming_the_setting(tmp_path, capsys, tiny_model):
    from facealign_sdk.cli.main import main

    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_header_only(20000, 20000))
    assert main(["image", str(bomb), "--model", str(tiny_model), "--backend", "torch"]) == 2
    assert "FACEALIGN_MAX_PIXELS" in capsys.readouterr().err


# -- output paths ----------------------------------------------------------------------------------
def _image_cli(tiny_model, *args):
    from facealign_sdk.cli.main import main

    return main(["image", *map(str, args), "--model", str(tiny_model), "--backend", "torch"])


def test_image_outputs_are_checked_before_any_work(tiny_model, tmp_path, monkeypatch, capsys):
    a_file = tmp_path / "not_a_folder"
    a_file.write_text("x")
    face = tmp_path / "face.jpg"
    face.write_bytes((SAMPLES / "face.jpg").read_bytes())
    monkeypatch.setattr(Aligner, "__init__", lambda *a, **k: pytest.fail("work started before the output checks"))
    assert _image_cli(tiny_model, face, "--draw", a_file) == 2
    assert "not a folder" in capsys.readouterr().err
    assert _image_cli(tiny_model, face, "--draw", a_file / "sub") == 2
    (tmp_path / "dir.json").mkdir()
    assert _image_cli(tiny_model, face, "--out", tmp_path / "dir.json", "--overwrite") == 2
    assert "is a folder" in capsys.readouterr().err
    csv_input = tmp_path / "rows.csv"
    csv_input.write_text("x")
    assert _image_cli(tiny_model, face, csv_input, "--out", csv_input, "--overwrite") == 2
    assert "overwrite an input" in capsys.readouterr().err


def test_eval_outputs_are_checked_before_the_evaluation(tiny_model, tmp_path, monkeypatch, capsys):
    from facealign_sdk.cli import eval as eval_command
    from facealign_sdk.cli.main import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    # patched where the command looks it up: patching facealign_sdk.evaluate while the command module is first
    # imported would bind the stand-in into it for the rest of the process (a later eval test then fails)
    monkeypatch.setattr(eval_command, "evaluate_folder", lambda *a, **k: pytest.fail("evaluated before the checks"))
    base = ["eval", str(tmp_path), "--model", str(tiny_model), "--backend", "torch"]
    assert main(base + ["--json", str(blocker / "r.json")]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(base + ["--json", str(tmp_path)]) == 2
    if has_matplotlib():
        assert main(base + ["--ced", str(tmp_path / "ced.txt")]) == 2
        assert "must end in" in capsys.readouterr().err


def has_matplotlib() -> bool:
    from .conftest import has_module

    return has_module("matplotlib")


def test_failed_drawing_write_is_an_error(tiny_model, tmp_path, monkeypatch, capsys):
    from facealign_sdk import outputs

    monkeypatch.setattr(outputs.cv2, "imencode", lambda *a, **k: (False, None))
    assert _image_cli(tiny_model, SAMPLES / "face.jpg", "--draw", tmp_path / "d") == 1
    err = capsys.readouterr().err
    assert "could not encode" in err and "internal error" not in err


def test_same_stem_inputs_keep_separate_drawings(tiny_model, tmp_path, face_image):
    from facealign_sdk.outputs import unique_stems

    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "face.jpg"), face_image)
    cv2.imwrite(str(folder / "face.png"), face_image[:, ::-1])
    draw = tmp_path / "draw"
    assert _image_cli(tiny_model, folder, "--draw", draw) == 0
    names = sorted(p.name for p in draw.iterdir())
    assert names == ["face_jpg_landmarks.jpg", "face_png_landmarks.jpg"]
    assert unique_stems([folder / "a.jpg", folder / "b" / "a.jpg", folder / "a_jpg.png"]) == ["a_jpg_2", "a_jpg_3", "a_jpg"]


# -- memory ---------------------------------------------------------------------------------------
def test_decoder_work_arrays_stay_bounded_after_a_crowd(face_image):
    """A 50-face batch must not leave 50 faces' worth of work arrays behind in the thread."""
    from facealign_sdk import decode

    rng = np.random.default_rng(0)
    one = rng.random((1, 68, 128, 128), dtype=np.float32)
    crowd = np.repeat(one, 50, axis=0)
    decode.decode_heatmaps(one, "soft")
    small = decode.scratch_bytes()
    points, conf = decode.decode_heatmaps(crowd, "soft")
    assert decode.scratch_bytes() <= max(small, 2 * decode.SCRATCH_KEEP_BYTES)
    assert decode.scratch_bytes() < 0.2 * (2 * crowd.nbytes)  # far below what the crowd needed
    ref, ref_conf = decode.decode_heatmaps(one, "soft")
    assert np.array_equal(points[7], ref[0]) and np.array_equal(conf[7], ref_conf[0])


# -- integrity of every loaded file -----------------------------------------------------------------
def _onnx_model_copy(tmp_path):
    import shutil

    from facealign_sdk.model import models_root

    src, out = models_root() / "fabrec-scaf-w32", tmp_path / "m"
    out.mkdir()
    for name in ("manifest.json", "model.onnx"):
        shutil.copy(src / name, out / name)
    return out


def test_replaced_onnx_file_is_refused(tmp_path):
    from facealign_sdk.model import ModelError

    folder = _onnx_model_copy(tmp_path)
    assert Aligner(folder, backend="ort", detector=None).backend_name.startswith("ort")
    data = bytearray((folder / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in a weight: still a valid graph, other numbers
    (folder / "model.onnx").write_bytes(bytes(data))
    for kwargs in ({"backend": "ort"}, {"backend": "auto"}, {"model": folder / "model.onnx"}):
        with pytest.raises(ModelError, match="sha256 does not match"):
            Aligner(**{"model": folder, "detector": None, **kwargs})


def test_unrecorded_artifact_loads_with_a_warning(tmp_path, caplog):
    import json

    folder = _onnx_model_copy(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["artifacts_sha256"] = {}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with caplog.at_level("WARNING", logger="facealign_sdk"):
        Aligner(folder, backend="ort", detector=None)
    assert "records no sha256" in caplog.text


def test_replaced_detector_model_is_refused(tmp_path, monkeypatch):
    from facealign_sdk.detectors import yunet
    from facealign_sdk.model import ModelError

    fake = tmp_path / "yunet.onnx"
    fake.write_bytes(yunet._packaged_model().read_bytes()[:-1] + b"\x00")
    monkeypatch.setattr(yunet, "_packaged_model", lambda: fake)
    with pytest.raises(ModelError, match="sha256"):
        yunet.YuNetDetector()


# -- a full disk ------------------------------------------------------------------------------------
@pytest.mark.parametrize("out_name", ["r.json", "r.csv"])
def test_image_output_is_whole_or_absent_when_the_disk_fills(tiny_model, tmp_path, monkeypatch, capsys, out_name):
    import errno
    from pathlib import Path

    real = Path.write_bytes

    def half_then_full(self, data):
        real(self, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    out = tmp_path / out_name
    assert _image_cli(tiny_model, SAMPLES / "face.jpg", "--out", out) == 1
    assert "disk full" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither half a file nor a temporary one


@pytest.mark.parametrize("name", ["fabrec-scaf-w32", "fabrec-scaf-w16-lite"])
def test_every_released_artifact_is_the_one_its_manifest_records(name):
    """A re-export that replaced a file without its manifest (or the reverse) would make the model refuse to load."""
    from facealign_sdk.model import load_manifest, resolve_model_dir, sha256

    folder = resolve_model_dir(name)
    manifest = load_manifest(folder)
    assert manifest.artifacts_sha256, "no artifacts recorded"
    for file, digest in manifest.artifacts_sha256.items():
        assert sha256(folder / file) == digest, f"{name}/{file}"
    assert sha256(folder / "model.safetensors") == manifest.weights_sha256


# -- written files ----------------------------------------------------------------------------------
@pytest.mark.skipif(not hasattr(os, "umask") or os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_written_files_get_the_umasks_mode(tmp_path, umask):
    """Released weights, manifests and checkpoints are written atomically through a temporary file, and still
    get the mode of any new file (safetensors' writer makes its files 0o600)."""
    import torch

    from facealign_sdk.nets import LandmarkNet, NetConfig
    from facealign_sdk.training.checkpoint import save_checkpoint
    from facealign_sdk.training.release import write_model_folder

    before = os.umask(umask)
    try:
        write_model_folder(LandmarkNet(NetConfig(width=8)), tmp_path / "model", "mode-test", [])
        save_checkpoint({"step": torch.zeros(1)}, tmp_path / "last.pt")
    finally:
        os.umask(before)
    written = [tmp_path / "model" / "model.safetensors", tmp_path / "model" / "manifest.json", tmp_path / "last.pt"]
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in written} == {p.name: oct(0o666 & ~umask) for p in written}
