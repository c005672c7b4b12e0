"""scripts/gpu_train.sh run: the lent-GPU training call, here on the CPU with a tiny config in a bare checkout
(no ../shared: the pack is all the data), as the device machine runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facealign_sdk.pts import write_pts
from facealign_sdk.training.pack import PackOptions, pack_folders

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("git") is None, reason="needs bash, git")


def _faces(folder: Path, count: int) -> None:
    import cv2

    folder.mkdir(parents=True)
    rng = np.random.default_rng(count)
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    for i in range(count):
        image = rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"f{i:02d}.png"), image)
        write_pts(folder / f"f{i:02d}.pts", np.stack([80 + 40 * np.cos(t), 80 + 50 * np.sin(t)], axis=1))


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    """tmp/repo: the script and the package as a device call sends them; tmp/data: the folders the packs hold."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "gpu_train.sh", repo / "scripts")
    shutil.copytree(REPO / "facealign_sdk", repo / "facealign_sdk",
                    ignore=shutil.ignore_patterns("__pycache__", "_models", "_samples"))
    (repo / "configs").mkdir()
    # no run_dir: the default one (runs/lm) is where the script finds the checkpoint
    (repo / "configs" / "tiny.json").write_text(json.dumps({
        "train": [{"folder": "../shared/data/set/train", "held_out": 0.25}], "val": "../shared/data/set/val",
        "val_images": 2, "autoencoder": None, "net": {"width": 8}, "batch_size": 2, "steps": 2,
        "checkpoint_every": 2, "threads": 1, "device": "cpu", "augment": False}))
    _faces(tmp_path / "data" / "set" / "train", 8)
    _faces(tmp_path / "data" / "set" / "val", 2)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    return repo


def _pack(checkout: Path, every: int) -> None:
    data = checkout.parent / "data"
    (checkout / "runs" / "gpu").mkdir(parents=True, exist_ok=True)
    pack_folders([(str(data / "set" / "train"), 0.25), (str(data / "set" / "val"), None)], data,
                 checkout / "runs" / "gpu" / "pack.tar.gz", PackOptions(every={str(data / "set" / "train"): every}),
                 progress=False)


def _run(checkout: Path, out: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "OMP_NUM_THREADS": "1",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    return subprocess.run(["bash", "scripts/gpu_train.sh", "run", "configs/tiny.json"], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=300)


def test_run_trains_from_the_pack_and_a_warm_machine_takes_a_new_pack(checkout: Path, tmp_path: Path) -> None:
    _pack(checkout, every=1)
    done = _run(checkout, tmp_path / "out")  # $OUT not made yet: the script makes it
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = tmp_path / "out"
    assert (out / "model" / "manifest.json").is_file() and (out / "log.jsonl").is_file()
    assert (out / "config.json").is_file() and "val_nme_fixed_box_pct" in (out / "train.log").read_text()
    unpacked = tmp_path / "shared" / "data" / "set" / "train"
    first = sorted(p.name for p in unpacked.glob("*.webp"))
    # the machine is still warm (../shared/data is there) and the call carries another pack: that one is used
    _pack(checkout, every=2)
    done = _run(checkout, tmp_path / "out2")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.name for p in unpacked.glob("*.webp")) == first[::2] and len(first) > 2


def test_run_leaves_data_it_did_not_unpack_alone(checkout: Path, tmp_path: Path) -> None:
    """A machine with the data sets themselves (../shared/data, no pack unpacked there) trains on them."""
    _pack(checkout, every=1)
    shutil.copytree(tmp_path / "data", tmp_path / "shared" / "data")
    done = _run(checkout, tmp_path / "out")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert sorted(p.suffix for p in (tmp_path / "shared" / "data" / "set" / "val").iterdir()) == [".png", ".png",
                                                                                                 ".pts", ".pts"]
