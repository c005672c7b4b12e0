"""The data pack for a GPU machine (facealign train pack): faces cut with their points, splits kept, size bound."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from facealign_sdk import geometry
from facealign_sdk.cli.main import main
from facealign_sdk.errors import InputError
from facealign_sdk.pts import read_pts, write_pts
from facealign_sdk.training.data import is_held_out
from facealign_sdk.training.pack import PackOptions, cut_face, pack_folders


def _face_points(cx: float, cy: float, size: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    return np.stack([cx + size * np.cos(t), cy + size * 1.2 * np.sin(t)], axis=1)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """root/set/train: 12 faces with a bright dot under every point (so a crop can be checked against its
    points); root/set/val: 2 faces."""
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, count in (("train", 12), ("val", 2)):
        folder = root / "set" / split
        folder.mkdir(parents=True)
        for i in range(count):
            image = np.full((600, 800, 3), 40, np.uint8)
            points = _face_points(rng.uniform(150, 650), rng.uniform(150, 450), rng.uniform(40, 120))
            for x, y in points:
                cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
            cv2.imwrite(str(folder / f"face{i:02d}.png"), image)
            write_pts(folder / f"face{i:02d}.pts", points)
    return root


def test_cut_face_keeps_points_on_their_pixels_and_shrinks_large_faces(data_root):
    path = data_root / "set" / "train" / "face00.png"
    image, points = cv2.imread(str(path)), read_pts(path.with_suffix(".pts"))
    frame = geometry.frame_from_box(geometry.box_from_points(points))
    for crop_pixels in (1000, 64):  # kept as it is / shrunk
        crop, moved = cut_face(image, points, 1.5, crop_pixels)
        scale = min(1.0, crop_pixels / frame.side)
        assert crop.shape[0] == crop.shape[1] == pytest.approx(frame.side * 1.5 * scale, abs=2)
        values = [crop[int(round(y)), int(round(x))].mean() for x, y in moved]
        assert min(values) > 120  # every point still sits on its bright dot
        assert np.allclose(moved[5] - moved[0], (points[5] - points[0]) * crop.shape[0] / np.ceil(frame.side * 1.5),
                           atol=0.01)
    # a face at the image border: the part outside is black, the points stay right
    edge = np.full((200, 200, 3), 90, np.uint8)
    crop, moved = cut_face(edge, _face_points(20, 100, 40), 1.5, 1000)
    assert crop[0, 0].max() == 0 and crop[int(moved[0][1]), int(moved[0][0])].max() == 90


def test_pack_leaves_out_held_out_faces_thins_and_round_trips(data_root, tmp_path):
    train, val = str(data_root / "set" / "train"), str(data_root / "set" / "val")
    out = tmp_path / "pack.tar.gz"
    report = pack_folders([(train, 0.3), (val, None)], data_root, out, PackOptions(every={val: 2}), progress=False)
    kept = [p.stem for p in sorted(Path(train).glob("*.png")) if not is_held_out(p, 0.3)]
    assert 0 < len(kept) < 12 and report.faces == {"set/train": len(kept), "set/val": 1}
    assert report.megabytes == pytest.approx(out.stat().st_size / 1e6, abs=0.01)
    unpacked = tmp_path / "unpacked"
    with tarfile.open(out) as tar:
        tar.extractall(unpacked, filter="data")
    assert sorted(p.stem for p in (unpacked / "set" / "train").glob("*.webp")) == kept
    for stem in kept:  # the same face (its dots under its points) in the unpacked copy, the .pts 1-based as ever
        crop = cv2.imread(str(unpacked / "set" / "train" / f"{stem}.webp"))
        moved = read_pts(unpacked / "set" / "train" / f"{stem}.pts")
        assert min(crop[int(round(y)), int(round(x))].mean() for x, y in moved) > 110
    again = tmp_path / "again.tar.gz"
    pack_folders([(train, 0.3), (val, None)], data_root, again, PackOptions(every={val: 2}), progress=False)
    assert again.read_bytes() == out.read_bytes()  # the same data packs to the same bytes
    with pytest.raises(InputError, match="not under the pack's root"):
        pack_folders([(train, None)], data_root / "set" / "val", tmp_path / "x.tar.gz", progress=False)
    with pytest.raises(InputError, match="every: nowhere"):
        pack_folders([(train, None)], data_root, tmp_path / "x.tar.gz", PackOptions(every={"nowhere": 2}), progress=False)


def test_pack_command_packs_a_runs_folders_and_keeps_its_size_bound(data_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(data_root)  # the config names its folders relative to where it runs, as on the GPU machine
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"train": [{"folder": "set/train", "held_out": 0.25}], "val": "set/val",
                                  "autoencoder": None}))
    out = tmp_path / "p.tar.gz"
    assert main(["train", "--no-progress", "pack", "--config", str(config), "--out", str(out), "--root", ".",
                 "--quality", "60"]) == 0
    assert "set/val 2" in capsys.readouterr().out and out.is_file()
    assert main(["train", "--no-progress", "pack", "--config", str(config), "--out", str(out), "--root", ".",
                 "--max-mb", "0.001"]) == 2


def test_pack_holds_the_faces_a_source_with_max_faces_trains_on(data_root, tmp_path, monkeypatch):
    """A few-label source (max_faces) packs only the faces training takes, and a run on the unpacked copy takes
    the same ones."""
    from facealign_sdk.training.data import first_by_hash, load_annotated

    monkeypatch.chdir(data_root)
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"train": [{"folder": "set/train", "held_out": 0.25, "max_faces": 3}], "val": None,
                                  "autoencoder": None}))
    out = tmp_path / "p.tar.gz"
    assert main(["train", "--no-progress", "pack", "--config", str(config), "--out", str(out), "--root", "."]) == 0

    def trained_on(folder):
        faces = first_by_hash(load_annotated(folder, held_out=0.25, progress=False), 3)
        return sorted(Path(it.name).stem for it in faces)

    unpacked = tmp_path / "unpacked"
    with tarfile.open(out) as tar:
        tar.extractall(unpacked, filter="data")
    packed = sorted(p.stem for p in (unpacked / "set" / "train").glob("*.webp"))
    assert packed == trained_on("set/train") == trained_on(unpacked / "set" / "train") and len(packed) == 3


def test_every_takes_any_path_to_a_folder_and_a_folder_used_twice_is_packed_once(data_root, tmp_path):
    train = str(data_root / "set" / "train")
    out = tmp_path / "p.tar.gz"
    for spelling in (train + "/", str(Path(os.path.relpath(train)))):
        report = pack_folders([(train, None)], data_root, out, PackOptions(every={spelling: 4}), progress=False)
        assert report.faces == {"set/train": 3}, spelling
    # validated on the training folder: packed once, with every face (the train source's split is made there again)
    report = pack_folders([(train, 0.3), (train + "/", None)], data_root, out, progress=False)
    with tarfile.open(out) as tar:
        names = tar.getnames()
    assert report.faces == {"set/train": 12} and len(names) == len(set(names)) == 24


def test_pack_command_refuses_absolute_folders(data_root, tmp_path, capsys):
    """The GPU machine unpacks the pack under its own ../shared/data: a path of this machine would not be there."""
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"train": [{"folder": str(data_root / "set" / "train")}], "val": None,
                                  "autoencoder": None}))
    assert main(["train", "--no-progress", "pack", "--config", str(config), "--out", str(tmp_path / "p.tar.gz"),
                 "--root", str(data_root)]) == 2
    assert "absolute paths" in capsys.readouterr().err and not (tmp_path / "p.tar.gz").exists()


def test_a_failed_pack_leaves_the_one_before(data_root, tmp_path):
    """A bad image half-way or the size bound: the pack already at ``out`` stays as it was, nothing half-written
    (it was truncated, or removed, and gpu_train.sh check would have sent what was left)."""
    import shutil

    folder = tmp_path / "set" / "train"
    shutil.copytree(data_root / "set" / "train", folder)
    out = tmp_path / "pack.tar.gz"
    pack_folders([(str(folder), None)], tmp_path, out, progress=False)
    before = out.read_bytes()
    (folder / "face05.png").write_bytes(b"not an image")
    with pytest.raises(InputError, match="face05.png"):
        pack_folders([(str(folder), None)], tmp_path, out, progress=False)
    assert out.read_bytes() == before
    shutil.copy2(data_root / "set" / "train" / "face05.png", folder / "face05.png")
    with pytest.raises(InputError, match="more than 0.001 MB"):
        pack_folders([(str(folder), None)], tmp_path, out, PackOptions(quality=90), progress=False, max_mb=0.001)
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["pack.tar.gz", "set"]
