"""Training as a careless or hostile user runs it: bad settings, changed settings on resume, the wrong
checkpoint, a diverging run, Ctrl-C mid-write. Each is a one-line exit 2 (or 130) and leaves every file
whole."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from facealign_sdk.cli import main as cli

from .test_exit_codes import annotated  # noqa: F401 - fixture

torch = pytest.importorskip("torch")

TINY = ["--steps", "2", "--batch-size", "2", "--threads", "1"]


def _bad_input(argv: list[str], capsys) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    messages = re.findall(r"facealign \w+: error: ([^\r\n]*)", err)
    assert len(messages) == 1, err
    return messages[0]


@pytest.fixture
def lm_config(tmp_path) -> Path:
    config = tmp_path / "lm.json"
    config.write_text(json.dumps({"val": None, "autoencoder": None, "augment": False, "net": {"width": 8}}))
    return config


@pytest.mark.parametrize("extra, message", [
    (["--data", "{ann}:abc"], "no such folder"),  # was a float() traceback
    (["--data", "{ann}:1.5"], "held_out: Input should be less than 1"),  # was 'no images left' traceback
    (["--batch-size", "0"], "batch_size: Input should be greater than or equal to 1"),
    (["--steps", "-1"], "steps: Input should be greater than or equal to 1"),  # was exit 0, '{}'
    (["--lr", "-1"], "lr: Input should be greater than or equal to 0"),  # was a run to loss 1e20
    (["--threads", "-2"], "threads: Input should be greater than or equal to 1"),
    (["--width", "4"], "net.width: Input should be greater than or equal to 8"),  # was a width-4 net
    (["--width", "0"], "net.width: Input should be greater than or equal to 8"),  # was silently width 8
])
def test_bad_landmark_options_are_exit_2(annotated, lm_config, tmp_path, capsys, extra, message):  # noqa: F811
    data = [] if "--data" in extra else ["--data", str(annotated)]
    argv = ["train", "landmarks", *data, "--config", str(lm_config), *TINY, "--run-dir", str(tmp_path / "run"),
            *[a.format(ann=annotated) for a in extra]]
    assert message in _bad_input(argv, capsys)
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("settings, message", [
    ({"checkpoint_every": 0}, "checkpoint_every: Input should be greater than or equal to 1"),  # was ZeroDivision
    ({"val_images": 0}, "val_images: Input should be greater than or equal to 1"),
    ({"train": []}, "train: List should have at least 1 item"),  # was a np.concatenate traceback
])
def test_bad_landmark_settings_are_exit_2(annotated, tmp_path, capsys, settings, message):  # noqa: F811
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"val": None, "autoencoder": None, "net": {"width": 8}, **settings}))
    data = [] if "train" in settings else ["--data", str(annotated)]
    argv = ["train", "landmarks", *data, "--config", str(config), *TINY, "--run-dir", str(tmp_path / "run")]
    assert message in _bad_input(argv, capsys)


@pytest.mark.parametrize("settings, message", [
    ({"size": 64}, "size: Input should be 128 or 256"),  # was a ValueError traceback from the network
    ({"max_images": 0}, "max_images: Input should be greater than or equal to 1"),  # 0 meant all images
    ({"data": []}, "data: List should have at least 1 item"),  # was a traceback from rng.integers(0, 0)
])
def test_bad_autoencoder_settings_are_exit_2(annotated, tmp_path, capsys, settings, message):  # noqa: F811
    config = tmp_path / "ae.json"
    config.write_text(json.dumps({"width": 8, **settings}))
    data = [] if "data" in settings else ["--data", str(annotated)]
    argv = ["train", "autoencoder", *data, "--config", str(config), *TINY, "--run-dir", str(tmp_path / "ae")]
    assert message in _bad_input(argv, capsys)


@pytest.mark.parametrize("sources, out, message", [
    ({}, "bank.zip", "a face bank is an .npz file"),  # was a ValueError traceback
    ({"crops": [], "annotated": [], "videos": []}, "bank.npz", "the face bank would be empty"),  # the same
    ({"annotated": ["{ann}:0.999"]}, "bank.npz", "the face bank would be empty"),
    ({"size": 0}, "bank.npz", "size: Input should be greater than or equal to 16"),  # was a cv2.error traceback
])
def test_bad_face_bank_input_is_exit_2(annotated, tmp_path, capsys, sources, out, message):  # noqa: F811
    settings = {"crops": [], "annotated": [str(annotated)], "videos": []}
    settings.update({k: [s.format(ann=annotated) for s in v] if isinstance(v, list) else v for k, v in sources.items()})
    config = tmp_path / "bank.json"
    config.write_text(json.dumps(settings))
    assert message in _bad_input(["train", "facebank", "--config", str(config), "--out", str(tmp_path / out)], capsys)
    assert not (tmp_path / out).exists()


def _train_landmarks(annotated: Path, config: Path, run: Path, *extra: str) -> list[str]:
    return ["train", "landmarks", "--data", str(annotated), "--config", str(config), *TINY, "--run-dir", str(run),
            *extra]


def test_resume_with_other_settings_is_refused_before_anything_changes(annotated, lm_config, tmp_path,  # noqa: F811
                                                                        capsys):
    run = tmp_path / "run"
    assert cli.main(_train_landmarks(annotated, lm_config, run)) == 0
    saved = {name: (run / name).read_bytes() for name in ("config.json", "last.pt")}
    # another width cannot load the weights (was a RuntimeError traceback that had already rewritten config.json,
    # which release reads); generator_lr adds an optimiser group (was a ValueError traceback)
    for extra, changed in ((["--width", "16"], "net.width 8 -> 16"), (["--lr", "0.5"], "lr 0.001 -> 0.5")):
        assert changed in _bad_input(_train_landmarks(annotated, lm_config, run, *extra), capsys)
        assert {name: (run / name).read_bytes() for name in saved} == saved
    config = json.loads(lm_config.read_text())
    lm_config.write_text(json.dumps({**config, "generator_lr": 1e-4}))
    assert "generator_lr None -> 0.0001" in _bad_input(_train_landmarks(annotated, lm_config, run), capsys)
    # how long it runs, and where, may change
    lm_config.write_text(json.dumps(config))
    assert cli.main([*_train_landmarks(annotated, lm_config, run), "--steps", "3", "--threads", "2"]) == 0
    assert [r["step"] for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())][-1] == 3


def test_autoencoder_resume_with_another_width_is_refused(annotated, tmp_path, capsys):  # noqa: F811
    config = tmp_path / "ae.json"
    config.write_text(json.dumps({"width": 8, "augment": False}))
    argv = ["train", "autoencoder", "--data", str(annotated), "--config", str(config), *TINY,
            "--run-dir", str(tmp_path / "ae")]
    assert cli.main(argv) == 0
    config.write_text(json.dumps({"width": 16, "augment": False}))
    assert "width 8 -> 16" in _bad_input(argv, capsys)


def test_warm_start_from_a_model_of_another_width_is_exit_2(annotated, lm_config, tiny_model, tmp_path,  # noqa: F811
                                                            capsys):
    argv = _train_landmarks(annotated, lm_config, tmp_path / "run", "--width", "16", "--init-model", str(tiny_model))
    assert "is not this run's net" in _bad_input(argv, capsys)  # was a load_state_dict traceback


def test_a_diverging_run_stops_before_nan_reaches_a_checkpoint(annotated, tmp_path, capsys):  # noqa: F811
    config = tmp_path / "div.json"
    config.write_text(json.dumps({"val": None, "autoencoder": None, "augment": False, "net": {"width": 8},
                                  "lr": 1e30, "encoder_lr": 1e30, "checkpoint_every": 1}))
    run = tmp_path / "run"
    assert "the run diverged" in _bad_input([*_train_landmarks(annotated, config, run), "--steps", "4"], capsys)
    from facealign_sdk.training.checkpoint import load_checkpoint

    state = load_checkpoint(run / "last.pt")  # the last good step; training on with NaN weights was exit 0
    assert state["step"] == 1 and all(torch.isfinite(v).all() for v in state["net"].values())


def test_training_output_without_validation_has_no_bare_nan(annotated, lm_config, tmp_path, capsys):  # noqa: F811
    assert cli.main(_train_landmarks(annotated, lm_config, tmp_path / "run")) == 0
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    for line in [printed, *(tmp_path / "run" / "log.jsonl").read_text().splitlines()]:
        assert json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in {line}"))[
            "val_nme_fixed_box_pct"] is None


def _half_then_interrupt(*args, **kwargs):
    """Stands in for a writer (torch.save, np.savez, save_file): leaves half a file, then Ctrl-C."""
    target = next(a for a in args if isinstance(a, (str, Path)) or hasattr(a, "write"))
    if hasattr(target, "write"):
        target.write(b"half a file")
    else:
        Path(target).write_bytes(b"half a file")
    raise KeyboardInterrupt


def _no_partial_files(folder: Path) -> None:
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix in (".tmp", ".part")]


def test_ctrl_c_during_a_checkpoint_write_leaves_every_checkpoint_whole(annotated, tmp_path, monkeypatch):  # noqa: F811
    from facealign_sdk.training.checkpoint import load_checkpoint

    config = tmp_path / "c.json"
    config.write_text(json.dumps({"val": str(annotated), "autoencoder": None, "augment": False,
                                  "net": {"width": 8}, "checkpoint_every": 1}))
    run = tmp_path / "run"
    monkeypatch.setattr(torch, "save", _half_then_interrupt)
    assert cli.main([*_train_landmarks(annotated, config, run), "--steps", "1"]) == 130
    for checkpoint in run.glob("*.pt"):  # best.pt was written in place: half a file
        load_checkpoint(checkpoint)
    _no_partial_files(run)


def test_ctrl_c_during_a_face_bank_write_leaves_no_bank(annotated, tmp_path, monkeypatch):  # noqa: F811
    import numpy as np

    config = tmp_path / "bank.json"
    config.write_text(json.dumps({"crops": [], "annotated": [str(annotated)], "videos": []}))
    monkeypatch.setattr(np, "savez", _half_then_interrupt)
    assert cli.main(["train", "facebank", "--config", str(config), "--out", str(tmp_path / "bank.npz")]) == 130
    assert not (tmp_path / "bank.npz").exists()
    _no_partial_files(tmp_path)


def _landmark_checkpoint(annotated: Path, lm_config: Path, run: Path) -> Path:
    assert cli.main(_train_landmarks(annotated, lm_config, run)) == 0
    return run / "last.pt"


def test_release_refuses_what_is_not_a_landmark_run(annotated, lm_config, tmp_path, capsys):  # noqa: F811
    ae_config = tmp_path / "ae.json"
    ae_config.write_text(json.dumps({"width": 8, "augment": False}))
    assert cli.main(["train", "autoencoder", "--data", str(annotated), "--config", str(ae_config), *TINY,
                     "--run-dir", str(tmp_path / "ae")]) == 0
    release = ["train", "release", "--out", str(tmp_path / "model"), "--checkpoint"]
    # an autoencoder checkpoint: was a pydantic ValidationError traceback
    assert "not a landmark run's checkpoint" in _bad_input([*release, str(tmp_path / "ae" / "last.pt")], capsys)
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    assert "not a landmark run's checkpoint" in _bad_input([*release, str(tmp_path / "other.pt")], capsys)  # KeyError
    # a landmark checkpoint beside another stage's config.json: was a ValidationError traceback
    checkpoint = _landmark_checkpoint(annotated, lm_config, tmp_path / "run")
    (tmp_path / "run" / "config.json").write_text((tmp_path / "ae" / "config.json").read_text())
    assert "not the settings of a landmark run" in _bad_input([*release, str(checkpoint)], capsys)


def test_release_over_an_exported_model_removes_the_stale_exports(annotated, lm_config, tmp_path,  # noqa: F811
                                                                  monkeypatch):
    from facealign_sdk import training
    from facealign_sdk.aligner import Aligner
    from facealign_sdk.model import record_artifacts

    checkpoint = _landmark_checkpoint(annotated, lm_config, tmp_path / "run")
    model = tmp_path / "model"
    release = ["train", "release", "--checkpoint", str(checkpoint), "--out", str(model)]
    assert cli.main(release) == 0
    (model / "model.onnx").write_bytes(b"exported from the first weights")
    record_artifacts(model, [model / "model.onnx"])
    weights = (model / "model.safetensors").read_bytes()
    # Ctrl-C while the new weights are written: the old folder stays whole
    monkeypatch.setattr(training.release, "save_file", _half_then_interrupt)
    assert cli.main(release) == 130
    assert (model / "model.safetensors").read_bytes() == weights
    _no_partial_files(model)
    monkeypatch.undo()
    # released again: the ONNX exported from the replaced weights would have been loaded instead of them
    assert cli.main(release) == 0
    assert not (model / "model.onnx").exists()
    assert Aligner(model, detector=None).backend_name.startswith("torch")


def test_an_npz_that_is_not_a_face_bank_is_exit_2(tmp_path, capsys):
    import numpy as np

    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    (tmp_path / "half.npz").write_bytes(b"PK\x03\x04 half a bank")
    config = tmp_path / "ae.json"
    config.write_text(json.dumps({"width": 8}))
    for bank in ("other.npz", "half.npz"):  # were KeyError and BadZipFile tracebacks
        argv = ["train", "autoencoder", "--data", str(tmp_path / bank), "--config", str(config), *TINY,
                "--run-dir", str(tmp_path / "ae")]
        assert "not a face bank" in _bad_input(argv, capsys)


def test_ctrl_c_while_a_resumed_run_records_its_settings_keeps_config_json(annotated, lm_config, tmp_path,  # noqa: F811
                                                                           monkeypatch):
    run = tmp_path / "run"
    assert cli.main(_train_landmarks(annotated, lm_config, run)) == 0
    before = (run / "config.json").read_text()

    def half_then_interrupt(self, data, *args, **kwargs):
        Path.open(self, "wb").write(b"{ half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_text", half_then_interrupt)
    monkeypatch.setattr(Path, "write_bytes", half_then_interrupt)
    assert cli.main([*_train_landmarks(annotated, lm_config, run), "--steps", "3"]) == 130
    monkeypatch.undo()
    assert (run / "config.json").read_text() == before  # release reads it: was half a file
    _no_partial_files(run)


def test_a_missing_autoencoder_is_named_before_the_data_is_loaded(annotated, tmp_path, capsys):  # noqa: F811
    unannotated = tmp_path / "unannotated"  # loading it would fail: the autoencoder must be checked first
    unannotated.mkdir()
    (unannotated / "f0.jpg").write_bytes((annotated / "f0.jpg").read_bytes())
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"val": None, "net": {"width": 8}}))  # the default autoencoder: runs/ae128
    argv = ["train", "landmarks", "--data", str(unannotated), "--config", str(config), *TINY,
            "--run-dir", str(tmp_path / "run"), "--autoencoder", str(tmp_path / "ae128")]
    assert "no autoencoder run or checkpoint to start from" in _bad_input(argv, capsys)  # was '[Errno 2] ...'


def test_a_face_bank_that_cannot_be_written_fails_before_any_cropping(tmp_path, capsys):
    (tmp_path / "file").write_text("a file, not a folder")
    config = tmp_path / "bank.json"
    config.write_text(json.dumps({"crops": [str(tmp_path / "missing")], "annotated": [], "videos": []}))
    argv = ["train", "facebank", "--config", str(config), "--out", str(tmp_path / "file" / "bank.npz")]
    assert "not a folder" in _bad_input(argv, capsys)  # was found only after cropping every source


def test_a_face_bank_with_no_face_large_enough_is_exit_2(annotated, tmp_path, capsys):  # noqa: F811
    bank_config = tmp_path / "bank.json"
    bank_config.write_text(json.dumps({"crops": [], "annotated": [str(annotated)], "videos": []}))
    assert cli.main(["train", "facebank", "--config", str(bank_config), "--out", str(tmp_path / "bank.npz")]) == 0
    config = tmp_path / "ae.json"
    config.write_text(json.dumps({"width": 8, "min_source_side": 100000}))
    argv = ["train", "autoencoder", "--data", str(tmp_path / "bank.npz"), "--config", str(config), *TINY,
            "--run-dir", str(tmp_path / "ae")]
    assert "no faces to learn from" in _bad_input(argv, capsys)  # was 'ValueError: high <= 0'


@pytest.mark.parametrize("loss", ["l1", "discriminator"])
def test_a_diverging_autoencoder_stops_before_nan_reaches_a_checkpoint(annotated, tmp_path, capsys,  # noqa: F811
                                                                        monkeypatch, loss):
    from facealign_sdk.training import autoencoder

    structural, gan = autoencoder.structural_loss, autoencoder.gan_loss
    if loss == "l1":
        monkeypatch.setattr(autoencoder, "structural_loss", lambda *a, **k: structural(*a, **k) * float("nan"))
    else:
        def nan_for_fakes(logits, real):  # gan_loss(..., real=False) is in the discriminator's loss alone
            return gan(logits, real) * (1.0 if real else float("nan"))

        monkeypatch.setattr(autoencoder, "gan_loss", nan_for_fakes)
    config = tmp_path / "ae.json"
    config.write_text(json.dumps({"width": 8, "augment": False, "checkpoint_every": 1}))
    argv = ["train", "autoencoder", "--data", str(annotated), "--config", str(config), *TINY,
            "--run-dir", str(tmp_path / "ae")]
    assert "the run diverged" in _bad_input(argv, capsys)
    assert not (tmp_path / "ae" / "last.pt").exists()  # the first step diverged: nothing to keep


def test_points_of_another_image_are_refused_before_training(annotated, lm_config, tmp_path, capsys):  # noqa: F811
    """Points far outside their image (another image's, or scaled twice) would train on a crop of the wrong
    place: the loader names the file, as eval does."""
    import shutil

    from facealign_sdk.pts import read_pts, write_pts

    data = tmp_path / "data"
    shutil.copytree(annotated, data)
    argv = ["train", "landmarks", "--data", str(data), "--config", str(lm_config), *TINY,
            "--run-dir", str(tmp_path / "run")]
    points = read_pts(data / "f1.pts")
    write_pts(data / "f1.pts", points * 4)  # the 512-px image's points x 4: up to 1.3k px
    assert re.search(r"f1\.pts: point \d+ \(.*\) lies far outside the 512x512 image", _bad_input(argv, capsys))
    write_pts(data / "f1.pts", np.full_like(points, 200.0) + np.linspace(0, 1, 68)[:, None])  # all in one place
    assert re.search(r"f1\.pts: its 68 points span .* px, not a face", _bad_input(argv, capsys))
    assert not (tmp_path / "run" / "last.pt").exists()
    # the face bank and the int8 calibration crops read the same files the same way
    config = tmp_path / "bank.json"
    config.write_text(json.dumps({"crops": [], "annotated": [str(data)], "videos": []}))
    assert "f1.pts: its 68 points span" in _bad_input(["train", "facebank", "--config", str(config), "--out",
                                                       str(tmp_path / "bank.npz")], capsys)
    from facealign_sdk.export.quantize import load_face_crops
    from facealign_sdk.pts import PtsError

    with pytest.raises(PtsError, match="f1.pts: its 68 points span"):
        load_face_crops(data, 2)
