"""Checkpoints are loaded with weights_only=True: a malicious pickle is refused and runs no code."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")


class _Payload:
    """Unpickling this calls Path.touch(marker): the stand-in for arbitrary code in a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _malicious_checkpoint(path: Path, marker: Path) -> Path:
    torch.save({"net": _Payload(marker), "ae": _Payload(marker), "config": {}}, path)
    return path


def test_malicious_pickle_runs_no_code(tmp_path):
    from facealign_sdk.errors import InputError
    from facealign_sdk.training.autoencoder import load_autoencoder
    from facealign_sdk.training.checkpoint import RunDir
    from facealign_sdk.training.landmarks import load_trained

    marker = tmp_path / "code_ran"
    run = tmp_path / "run"
    run.mkdir()
    evil = _malicious_checkpoint(run / "last.pt", marker)
    loaders = {
        "train release --checkpoint": lambda: load_trained(evil),
        "train --autoencoder (file)": lambda: load_autoencoder(evil),
        "train --autoencoder (run folder)": lambda: load_autoencoder(run),
        "resuming a run": lambda: RunDir(run).load(),
    }
    for what, load in loaders.items():
        with pytest.raises(InputError, match="not a loadable checkpoint"):
            load()
        assert not marker.exists(), f"{what}: the pickle's code ran"
    # the same file with weights_only=False would run it: the test's payload is real
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_cli_release_of_a_malicious_checkpoint_exits_2(tmp_path, capsys):
    from facealign_sdk.cli.main import main

    marker = tmp_path / "code_ran"
    evil = _malicious_checkpoint(tmp_path / "best.pt", marker)
    code = main(["train", "release", "--checkpoint", str(evil), "--out", str(tmp_path / "model"), "--name", "x"])
    assert code == 2 and not marker.exists()
    assert "not a loadable checkpoint" in capsys.readouterr().err
