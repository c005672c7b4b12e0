"""The lite model's pieces: a 128 -> 64 network through training, release, export and the Aligner, and
distillation data from a teacher (``facealign train pseudolabel``)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from .conftest import SAMPLES

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def lite_model(tmp_path_factory):
    """A released tiny 128 -> 64 model folder (width 8, random weights)."""
    from facealign_sdk.nets import LandmarkNet, NetConfig
    from facealign_sdk.training.release import write_model_folder

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("lite_model")
    write_model_folder(LandmarkNet(NetConfig.for_input(128, width=8)).eval(), out, "lite-test", ["random init"])
    return out


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory):
    """Three unlabelled face images (the sample face, shifted) and one without a face."""
    folder = tmp_path_factory.mktemp("faces")
    face = cv2.imread(str(SAMPLES / "face.jpg"))
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.jpg"), np.roll(face, 10 * i, axis=1))
    cv2.imwrite(str(folder / "blank.png"), np.full((200, 200, 3), 90, np.uint8))
    return folder


def test_128_network_shapes_and_limits():
    from pydantic import ValidationError

    from facealign_sdk.nets import LandmarkNet, NetConfig

    cfg = NetConfig.for_input(128, width=8)
    assert (cfg.input_size, cfg.heatmap_size, cfg.num_itl, cfg.num_stages) == (128, 64, 3, 3)
    assert NetConfig.for_input(256, width=8) == NetConfig(width=8)  # the released geometry, 4 ITLs
    net = LandmarkNet(cfg).eval()
    assert net(torch.rand(2, 3, 128, 128)).shape == (2, 68, 64, 64)
    with pytest.raises(ValidationError, match="num_itl 4: a 128 px network has 3"):
        NetConfig(input_size=128, heatmap_size=64)
    with pytest.raises(ValidationError, match="supports 256 px input with 128 px heatmaps or 128 px input"):
        NetConfig(input_size=128, heatmap_size=32, num_itl=3)
    with pytest.raises(ValidationError, match="input_size 192"):
        NetConfig.for_input(192)
    # same width: the 256 network has an extra encoder stage, a fourth ITL and skip, and a generator stage more
    # (64 -> 128, unused by either); every shared tensor has the same shape at both sizes
    big, small = LandmarkNet(NetConfig(width=8)).state_dict(), net.state_dict()
    extra = ("encoder.extra.", "itls.3", "skips.3", "generator.stages.4.")
    assert {k for k in big if k not in small} == {k for k in big if k.startswith(extra)}
    assert all(big[k].shape == v.shape for k, v in small.items())


def test_released_256_network_is_unchanged():
    """The default geometry builds the network the released weights were trained as: the same tensors."""
    from safetensors.torch import load_file

    from facealign_sdk.nets import LandmarkNet, NetConfig
    from facealign_sdk.resources import models_root

    released = load_file(str(models_root() / "fabrec-scaf-w32" / "model.safetensors"))
    net = LandmarkNet(NetConfig(width=32))
    assert set(net.state_dict()) == set(released)
    assert all(net.state_dict()[k].shape == v.shape for k, v in released.items())


def test_a_released_128_model_runs_end_to_end(lite_model, tmp_path):
    """Release -> Aligner (torch and ONNX Runtime, detector and all) -> the same points; the manifest carries the
    sizes and the codec of a 64-px map; the export's fp32 graph matches PyTorch."""
    from facealign_sdk.aligner import Aligner
    from facealign_sdk.cli.main import main
    from facealign_sdk.export.parity import ParityReport
    from facealign_sdk.model import load_manifest

    manifest = load_manifest(lite_model)
    assert (manifest.input_size, manifest.heatmap_size, manifest.net["input_size"]) == (128, 64, 128)
    assert (manifest.codec.blur_sigma, manifest.codec.soft_window, manifest.codec.confidence_window) == (1.75, 9, 5)
    faces = Aligner(model=lite_model, backend="torch").align(SAMPLES / "face.jpg")
    assert len(faces) == 1 and faces[0].points.shape == (68, 2) and np.isfinite(faces[0].points).all()
    x1, y1, x2, y2 = faces[0].box
    side = max(x2 - x1, y2 - y1)
    assert (np.abs(faces[0].points - [(x1 + x2) / 2, (y1 + y2) / 2]) < side).all()  # within the crop
    out = tmp_path / "exported"
    assert main(["export", "--model", str(lite_model), "--to", "onnx", "--out", str(out), "--parity-faces", "4",
                 "--bench-repeats", "1", "--no-progress"]) == 0
    report = ParityReport.model_validate_json((out / "parity.json").read_text())
    assert report.passed and report.rows[0].landmark_p99_px < 0.05
    ort_faces = Aligner(model=out / "model.onnx", backend="ort").align(SAMPLES / "face.jpg")
    assert np.abs(ort_faces[0].points - faces[0].points).max() < 0.05


def test_pseudolabel_keeps_confident_teacher_faces(tiny_model, face_folder, tmp_path):
    """Every kept image is copied with the teacher's own points as .pts (readable as an annotated set); a face
    below the threshold and an image without one are counted, not written; a used output folder is refused."""
    from facealign_sdk.aligner import Aligner
    from facealign_sdk.errors import InputError
    from facealign_sdk.training.data import load_annotated
    from facealign_sdk.training.pseudolabel import REPORT, PseudoLabelConfig, pseudo_label

    teacher = Aligner(model=tiny_model, max_faces=1)
    confidences = {p.name: float(teacher.align(p)[0].confidence.mean()) for p in sorted(face_folder.glob("f*.jpg"))}
    low, middle, _ = sorted(confidences.values())
    threshold = (low + middle) / 2  # keeps 2 of the 3 faces, with room for run-to-run differences in the last digits
    cfg = PseudoLabelConfig(data=[str(face_folder)], out=str(tmp_path / "pseudo"), teacher=str(tiny_model),
                            min_confidence=threshold)
    report = pseudo_label(cfg, progress=False)
    counts = report.sources[0]
    assert (counts.images, counts.no_face, counts.below_threshold, counts.kept) == (4, 1, 1, 2)
    written = tmp_path / "pseudo" / face_folder.name
    items = load_annotated(written)
    assert sorted(it.name for it in items) == sorted(n for n, c in confidences.items() if c >= threshold)
    for it in items:
        np.testing.assert_allclose(it.points, teacher.align(face_folder / it.name)[0].points, atol=1e-3)
    assert json.loads((tmp_path / "pseudo" / REPORT).read_text())["min_confidence"] == threshold
    with pytest.raises(InputError, match="already holds files"):
        pseudo_label(cfg, progress=False)


@pytest.mark.parametrize("args, message", [
    (["--data", "no-such-folder"], "no-such-folder: no such folder"),
    (["--min-confidence", "1.5"], "min_confidence: Input should be less than or equal to 1"),
    (["--limit", "0"], "limit: Input should be greater than or equal to 1"),
])
def test_pseudolabel_bad_input_is_exit_2_with_one_line(tmp_path, capsys, args, message):
    from facealign_sdk.cli.main import main

    assert main(["train", "pseudolabel", "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


def test_lite_smoke_run_loss_falls_and_releases(tiny_model, face_folder, tmp_path):
    """The lite recipe in miniature: pseudo-labels from a teacher, a 128 -> 64 student from scratch (generator
    trained too), its loss falls, and the release runs in the Aligner. The CLI route, flags as documented."""
    from facealign_sdk.aligner import Aligner
    from facealign_sdk.cli.main import main
    from facealign_sdk.model import load_manifest
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, train_landmarks

    pseudo = tmp_path / "pseudo"
    assert main(["train", "--no-progress", "pseudolabel", "--data", str(face_folder), "--out", str(pseudo),
                 "--model", str(tiny_model), "--min-confidence", "0"]) == 0
    cfg = LandmarkConfig(train=[DataSource(folder=str(pseudo / face_folder.name), flip_probability=0.0)], val=None,
                         autoencoder=None, run_dir=str(tmp_path / "run"), net={"input_size": 128, "heatmap_size": 64,
                                                                                "width": 8, "num_itl": 3},
                         batch_size=4, steps=30, checkpoint_every=10, augment=False, lr=3e-3, encoder_lr=1e-3,
                         generator_lr=1e-3, lr_decay_at=1.0, threads=1)
    train_landmarks(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30]
    assert log[-1]["loss"] < 0.7 * log[0]["loss"], log
    out = tmp_path / "model"
    assert main(["train", "release", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--out", str(out)]) == 0
    assert load_manifest(out).input_size == 128 and not load_manifest(out).mirror_symmetric
    assert len(Aligner(model=out, backend="torch").align(SAMPLES / "face.jpg")) == 1


def test_lite_config_is_valid_and_reads_the_pseudo_labels():
    """configs/lite_w16.json: the labelled sets of wild_lm7 plus the pseudo-labelled folders the pseudolabel stage
    writes by default, a 128 -> 64 network of width 16."""
    from pathlib import Path

    from facealign_sdk.training.landmarks import LandmarkConfig
    from facealign_sdk.training.pseudolabel import PseudoLabelConfig

    repo = Path(__file__).resolve().parents[1]
    lite = LandmarkConfig.model_validate_json((repo / "configs" / "lite_w16.json").read_text())
    wild = LandmarkConfig.model_validate_json((repo / "configs" / "wild_lm7.json").read_text())
    assert (lite.net.input_size, lite.net.heatmap_size, lite.net.width) == (128, 64, 16)
    assert lite.train[: len(wild.train)] == wild.train and lite.val == wild.val
    pseudo = PseudoLabelConfig()
    assert [s.folder for s in lite.train[len(wild.train):]] == [
        str(Path(pseudo.out) / Path(folder).name) for folder in pseudo.data]
