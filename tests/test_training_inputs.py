"""Bad training input as a user types it: every case is exit 2 with a one-line message, before any step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from facealign_sdk import cli

from .test_exit_codes import annotated  # noqa: F401 - fixture

torch = pytest.importorskip("torch")

TINY = ["--steps", "2", "--batch-size", "2", "--threads", "1"]


def _bad_input(argv: list[str], capsys) -> str:
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip().splitlines()[-1].split("\r")[-1]


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
])
def test_bad_landmark_settings_are_exit_2(annotated, tmp_path, capsys, settings, message):  # noqa: F811
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"val": None, "autoencoder": None, "net": {"width": 8}, **settings}))
    argv = ["train", "landmarks", "--data", str(annotated), "--config", str(config), *TINY,
            "--run-dir", str(tmp_path / "run")]
    assert message in _bad_input(argv, capsys)


@pytest.mark.parametrize("settings, message", [
    ({"size": 64}, "size: Input should be 128 or 256"),  # was a ValueError traceback from the network
    ({"max_images": 0}, "max_images: Input should be greater than or equal to 1"),  # 0 meant all images
])
def test_bad_autoencoder_settings_are_exit_2(annotated, tmp_path, capsys, settings, message):  # noqa: F811
    config = tmp_path / "ae.json"
    config.write_text(json.dumps({"width": 8, **settings}))
    argv = ["train", "autoencoder", "--data", str(annotated), "--config", str(config), *TINY,
            "--run-dir", str(tmp_path / "ae")]
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
