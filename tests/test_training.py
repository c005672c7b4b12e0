"""Training: both stages learn on a handful of images, checkpoints resume, data checks."""

import json

import cv2
import numpy as np
import pytest

from facealign_sdk.errors import InputError
from facealign_sdk.pts import PtsError, read_pts, write_pts

from .conftest import SAMPLES

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def annotated_folder(tmp_path_factory):
    """Four small annotated images (the sample face, shifted) with a plausible 68-point layout."""
    folder = tmp_path_factory.mktemp("annotated")
    face = cv2.imread(str(SAMPLES / "face.jpg"))
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    base = np.stack([256 + 90 * np.cos(t), 250 + 110 * np.sin(t)], axis=1)
    for i in range(4):
        shift = np.array([i * 6.0, -i * 4.0])
        img = cv2.warpAffine(face, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (512, 512))
        cv2.imwrite(str(folder / f"img{i}.jpg"), img)
        write_pts(folder / f"img{i}.pts", base + shift)
    return folder


def test_landmark_stage_loss_falls_and_resumes(annotated_folder, tmp_path):
    from facealign_sdk.nets import NetConfig
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, load_trained, train_landmarks

    cfg = LandmarkConfig(train=[DataSource(folder=str(annotated_folder))], val=str(annotated_folder), autoencoder=None,
                         run_dir=str(tmp_path / "run"), net=NetConfig(width=8), batch_size=4, steps=30,
                         checkpoint_every=10, augment=False, lr=3e-3, encoder_lr=1e-3, lr_decay_at=1.0, threads=1)
    train_landmarks(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30]
    assert log[-1]["loss"] < 0.7 * log[0]["loss"]
    # resume: a longer schedule continues from step 30, not from scratch
    train_landmarks(cfg.model_copy(update={"steps": 40}), progress=False)
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [10, 20, 30, 40]
    net = load_trained(tmp_path / "run" / "best.pt")
    assert net(torch.zeros(1, 3, 256, 256)).shape == (1, 68, 128, 128)


def test_autoencoder_stage_loss_falls(tmp_path):
    from facealign_sdk.training.autoencoder import AutoEncoderConfig, train_autoencoder

    faces = tmp_path / "faces"
    faces.mkdir()
    img = cv2.imread(str(SAMPLES / "face.jpg"))
    for i in range(4):
        cv2.imwrite(str(faces / f"f{i}.png"), np.roll(img, 8 * i, axis=1))
    cfg = AutoEncoderConfig(data=[str(faces)], run_dir=str(tmp_path / "ae"), width=8, batch_size=4, steps=60,
                            checkpoint_every=20, image_gan_after=1000, lr=3e-3, augment=False, threads=1)
    train_autoencoder(cfg, progress=False)
    log = [json.loads(line) for line in (tmp_path / "ae" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["l1"] < 0.8 * log[0]["l1"], log


def test_autoencoder_weights_initialise_the_landmark_net(tmp_path):
    from facealign_sdk.nets import AutoEncoder, LandmarkNet, NetConfig
    from facealign_sdk.training.landmarks import init_from_autoencoder

    ae = AutoEncoder(128, width=8)
    net = LandmarkNet(NetConfig(width=8))
    n = init_from_autoencoder(net, ae.state_dict())
    assert n > 50
    assert torch.equal(net.encoder.layer4[0].conv1.weight, ae.encoder.layer4[0].conv1.weight)
    assert torch.equal(net.generator.stages[0][0].conv1.weight, ae.generator.stages[0][0].conv1.weight)


def test_generator_stays_frozen_in_train_mode():
    from facealign_sdk.nets import LandmarkNet, NetConfig

    net = LandmarkNet(NetConfig(width=8)).train()
    assert not net.generator.training
    assert not any(p.requires_grad for p in net.generator.parameters())
    assert all(p.requires_grad for p in net.itls.parameters())


def test_flip_permutation_is_an_involution():
    from facealign_sdk.schemes import FLIP_68

    assert sorted(FLIP_68) == list(range(68))
    assert np.array_equal(FLIP_68[FLIP_68], np.arange(68))


def test_pts_reader_errors_name_the_file(tmp_path):
    p = tmp_path / "x.pts"
    write_pts(p, np.zeros((5, 2)))
    with pytest.raises(PtsError, match="x.pts.*expected 68"):
        read_pts(p, 68)
    p.write_text("version: 1\nn_points: 3\n{\n1 2\n}\n")
    with pytest.raises(PtsError, match="header says 3"):
        read_pts(p)
    p.write_text("garbage")
    with pytest.raises(PtsError, match="not a valid"):
        read_pts(p)
    assert np.allclose(read_pts(SAMPLES.parent / "tests" / "data" / "one_based.pts"), [[0, 0], [9, 19]])


def test_landmark_stage_warm_starts_from_a_model_folder(annotated_folder, tiny_model, tmp_path):
    from facealign_sdk.backends.torch_backend import load_network
    from facealign_sdk.model import load_manifest
    from facealign_sdk.nets import NetConfig
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, load_trained, train_landmarks

    cfg = LandmarkConfig(train=[DataSource(folder=str(annotated_folder))], val=None, autoencoder="does-not-matter",
                         init_model=str(tiny_model), run_dir=str(tmp_path / "run"), net=NetConfig(width=8),
                         batch_size=2, steps=1, checkpoint_every=1, lr=0.0, encoder_lr=0.0, threads=1)
    train_landmarks(cfg, progress=False)
    trained = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["net"]
    reference = load_network(tiny_model, load_manifest(tiny_model)).state_dict()
    assert torch.equal(trained["head.weight"], reference["head.weight"])
    assert load_trained(tmp_path / "run" / "last.pt").config.width == 8


def test_flip_probability_controls_mirroring(annotated_folder):
    """p_flip 0 never mirrors (the runtime crop comes back), 1 always does (points mirrored, indices swapped);
    the landmark config bounds the rate."""
    from dataclasses import replace

    from pydantic import ValidationError

    from facealign_sdk.schemes import FLIP_68
    from facealign_sdk.training.data import LandmarkAugment, landmark_sample, load_annotated
    from facealign_sdk.training.landmarks import LandmarkConfig

    item = load_annotated(annotated_folder)[0]
    plain = LandmarkAugment.none()
    ref_crop, ref_pts = landmark_sample(item, 64, None)
    crop, pts = landmark_sample(item, 64, np.random.default_rng(0), plain)
    np.testing.assert_allclose(pts, ref_pts, atol=1e-6)
    assert np.abs(crop.astype(int) - ref_crop).max() <= 1
    crop, pts = landmark_sample(item, 64, np.random.default_rng(0), replace(plain, p_flip=1.0))
    np.testing.assert_allclose(pts[:, 0], 63 - ref_pts[FLIP_68, 0], atol=1e-6)
    np.testing.assert_allclose(pts[:, 1], ref_pts[FLIP_68, 1], atol=1e-6)
    assert np.abs(crop.astype(int) - ref_crop[:, ::-1]).max() <= 1
    assert LandmarkConfig(flip_probability=0).flip_probability == 0
    with pytest.raises(ValidationError):
        LandmarkConfig(flip_probability=1.5)


def test_release_without_the_runs_settings_warns_that_it_takes_the_model_as_mirror_symmetric(tmp_path, caplog):
    """Without config.json beside the checkpoint nothing says whether the run mirrored its data: the release
    says what it assumes (a wrong true hides flip=True's warning)."""
    from facealign_sdk.model import load_manifest
    from facealign_sdk.nets import LandmarkNet, NetConfig
    from facealign_sdk.training.checkpoint import save_checkpoint
    from facealign_sdk.training.release import release_model

    net = LandmarkNet(NetConfig(width=8))
    save_checkpoint({"net": net.state_dict(), "config": net.config.model_dump()}, tmp_path / "best.pt")
    with caplog.at_level("WARNING"):
        release_model(tmp_path / "best.pt", tmp_path / "model", "m", [])
    assert "no config.json beside the checkpoint" in caplog.text
    assert load_manifest(tmp_path / "model").mirror_symmetric


def test_release_records_mirror_symmetry_and_flip_warns(annotated_folder, tiny_model, tmp_path, caplog):
    """A run trained without mirror augmentation releases a manifest with mirror_symmetric false, and
    Aligner(flip=True) on it logs a warning; the default run stays mirror-symmetric."""
    from facealign_sdk.aligner import Aligner
    from facealign_sdk.model import load_manifest
    from facealign_sdk.nets import NetConfig
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, train_landmarks
    from facealign_sdk.training.release import release_model

    # a source without mirror augmentation (its own flip_probability 0) makes the model not symmetric
    for flip_probability, source_flip, symmetric in ((0.0, None, False), (0.5, None, True), (0.5, 0.0, False)):
        run = tmp_path / f"run{flip_probability}{source_flip}"
        sources = [DataSource(folder=str(annotated_folder)), DataSource(folder=str(annotated_folder), flip_probability=source_flip)]
        cfg = LandmarkConfig(train=sources, val=None, init_model=str(tiny_model),
                             run_dir=str(run), net=NetConfig(width=8), batch_size=2, steps=1, checkpoint_every=1,
                             lr=0.0, encoder_lr=0.0, threads=1, flip_probability=flip_probability)
        train_landmarks(cfg, progress=False)
        out = tmp_path / f"model{flip_probability}{source_flip}"
        release_model(run / "last.pt", out, "m", [])
        assert load_manifest(out).mirror_symmetric is symmetric
        caplog.clear()
        with caplog.at_level("WARNING", logger="facealign_sdk"):
            Aligner(model=out, backend="torch", detector=None, flip=True)
        assert ("without mirror augmentation" in caplog.text) is not symmetric


@pytest.mark.parametrize(
    "content, message",
    [
        ('{"stepz": 5}', "stepz: Extra inputs are not permitted"),  # a typo must not be silently ignored
        ('{"steps": "many"}', "steps: Input should be a valid integer"),
        ('{"net": {"widht": 16}}', "net.widht: Extra inputs are not permitted"),
        ("not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (None, "no such config file"),
    ],
)
def test_train_config_errors_are_one_line_and_exit_2(tmp_path, capsys, content, message):
    from facealign_sdk.cli.main import main

    config = tmp_path / "config.json"
    if content is not None:
        config.write_text(content)
    for stage in ("landmarks", "autoencoder"):
        if stage == "autoencoder" and "net" in (content or ""):
            continue
        assert main(["train", stage, "--config", str(config), "--run-dir", str(tmp_path / "run")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "run").exists()


# -- face bank, progressive autoencoder, wild-data options ---------------------------------------


def test_face_bank_collects_crops_annotated_faces_and_video_faces(annotated_folder, tmp_path):
    from facealign_sdk.training.facebank import FaceBankConfig, build_face_bank, load_face_bank

    crops = tmp_path / "crops"
    crops.mkdir()
    face = cv2.imread(str(SAMPLES / "face.jpg"))
    for i in range(3):
        cv2.imwrite(str(crops / f"c{i}.png"), cv2.resize(face, (100, 100)))
    video = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (512, 512))
    for _ in range(4):
        writer.write(cv2.resize(face, (512, 512)))
    writer.release()
    cfg = FaceBankConfig(crops=[str(crops)], annotated=[str(annotated_folder)], videos=[str(video)], video_stride=2)
    counts = build_face_bank(cfg, tmp_path / "bank.npz", progress=False)
    assert counts == {"crops": 3, "annotated": 4, "videos": 2}
    faces = load_face_bank(tmp_path / "bank.npz", 64)
    assert faces.shape == (9, 64, 64, 3) and faces.dtype == np.uint8
    # the 100-px crops are left out when only faces of at least 150 source pixels are wanted
    assert len(load_face_bank(tmp_path / "bank.npz", 64, min_source_side=150)) == 6
    # an annotated face is the runtime crop of its point-derived box (up to JPEG)
    from facealign_sdk import geometry
    from facealign_sdk.training.data import load_annotated

    item = load_annotated(annotated_folder)[0]
    expected = geometry.warp_crop(item.image, geometry.frame_from_box(geometry.box_from_points(item.points)), 64)
    assert np.abs(faces[3].astype(int) - expected.astype(int)).mean() < 6
    with pytest.raises(ValueError, match="npz"):
        build_face_bank(cfg, tmp_path / "bank.zip", progress=False)
    # FOLDER:FRACTION leaves out the share evaluation holds out
    from facealign_sdk.training.data import is_held_out

    kept = sum(not is_held_out(p, 0.5) for p in annotated_folder.glob("*.jpg"))
    held = FaceBankConfig(crops=[], annotated=[f"{annotated_folder}:0.5"], videos=[])
    assert build_face_bank(held, tmp_path / "held.npz", progress=False)["annotated"] == kept
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(FileNotFoundError, match="not a readable video"):
        build_face_bank(FaceBankConfig(crops=[], annotated=[], videos=[str(broken)]), tmp_path / "b.npz", progress=False)


def test_autoencoder_256_starts_from_the_128_run(tmp_path, annotated_folder):
    from facealign_sdk.training.autoencoder import AutoEncoderConfig, load_autoencoder, train_autoencoder

    common = dict(data=[str(annotated_folder)], width=8, batch_size=2, steps=2, checkpoint_every=2, augment=False,
                  threads=1)
    train_autoencoder(AutoEncoderConfig(run_dir=str(tmp_path / "ae128"), size=128, **common), progress=False)
    train_autoencoder(AutoEncoderConfig(run_dir=str(tmp_path / "ae256"), size=256, init_from=str(tmp_path / "ae128"),
                                        lr=0.0, **common), progress=False)
    small, large = load_autoencoder(tmp_path / "ae128"), load_autoencoder(tmp_path / "ae256")
    # lr 0: shared tensors are exactly the 128-px run's (BatchNorm statistics still move)
    assert torch.equal(small["encoder.layer4.0.conv1.weight"], large["encoder.layer4.0.conv1.weight"])
    assert torch.equal(small["generator.stages.0.0.conv1.weight"], large["generator.stages.0.0.conv1.weight"])
    assert "encoder.extra.0.conv1.weight" in large and "encoder.extra.0.conv1.weight" not in small


def test_turned_faces_get_lower_jaw_weights():
    from facealign_sdk.training.data import contour_weights, turned_face_ratio

    t = np.linspace(0, np.pi, 17)
    frontal = np.zeros((68, 2))
    frontal[:17] = np.stack([100 - 60 * np.cos(t), 100 + 70 * np.sin(t)], axis=1)
    frontal[17:] = [100, 90]
    frontal[36], frontal[45] = [70, 90], [130, 90]
    frontal[30] = [100, 110]
    assert turned_face_ratio(frontal) == pytest.approx(1.0, abs=0.05)
    assert contour_weights(frontal, 0.3) is None
    turned = frontal.copy()
    turned[30, 0] = 55  # nose tip near the image-left cheek: turned to the left
    assert turned_face_ratio(turned) < 0.5
    w = contour_weights(turned, 0.3)
    assert w is not None and (w[:17] == 0.3).all() and (w[17:] == 1).all()
    assert contour_weights(turned, 1.0) is None
    # a 3-D contour jaw: the nose tip has passed the far cheek point (a profile), and a rolled copy
    profile = frontal.copy()
    profile[30, 0] = 35
    assert turned_face_ratio(profile) == 0.0
    angle = np.radians(40)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert turned_face_ratio(turned @ rot.T) == pytest.approx(turned_face_ratio(turned))
    assert turned_face_ratio(profile @ rot.T) == 0.0


def test_point_weights_scale_the_heatmap_loss():
    from facealign_sdk.training.landmarks import heatmap_loss

    pred, target = torch.rand(2, 68, 8, 8), torch.rand(2, 68, 8, 8)
    full = heatmap_loss(pred, target, 20.0)
    assert torch.allclose(heatmap_loss(pred, target, 20.0, torch.ones(2, 68)), full)
    half = torch.ones(2, 68)
    half[:, :34] = 0
    partial = heatmap_loss(pred, target, 20.0, half)
    assert 0 < partial < full
    assert heatmap_loss(pred, target, 20.0, torch.zeros(2, 68)) == 0


def test_degradations_change_pixels_not_points(annotated_folder):
    from facealign_sdk.training.data import LandmarkAugment, landmark_sample, load_annotated

    item = load_annotated(annotated_folder)[0]
    geometric_only = LandmarkAugment.none()
    for name in ("p_low_resolution", "p_jpeg", "p_noise", "p_gray"):
        degraded = LandmarkAugment(**{**geometric_only.__dict__, name: 1.0})
        base_crop, base_pts = landmark_sample(item, 128, np.random.default_rng(3), geometric_only)
        crop, pts = landmark_sample(item, 128, np.random.default_rng(3), degraded)
        np.testing.assert_array_equal(pts, base_pts)
        assert np.abs(crop.astype(int) - base_crop.astype(int)).mean() > 0.5, name
    # the projective warp moves the pixels and the points alike: a dot drawn at a point stays on it
    perspective = LandmarkAugment(**{**geometric_only.__dict__, "p_perspective": 1.0, "perspective": 0.06})
    dark = item.image * 0
    for k in (0, 8, 16, 30, 36, 45, 48, 54):
        x, y = np.round(item.points[k]).astype(int)
        dotted = dark.copy()
        dotted[y - 1 : y + 2, x - 1 : x + 2] = 255
        shifted = type(item)(dotted, np.round(item.points).astype(float), item.name)
        crop, pts = landmark_sample(shifted, 128, np.random.default_rng(5), perspective)
        _, base_pts = landmark_sample(shifted, 128, np.random.default_rng(5), geometric_only)
        assert np.abs(pts - base_pts).max() > 0.5  # the warp did something
        heat = crop[..., 0].astype(float)
        ys, xs = np.nonzero(heat > 0)
        centroid = np.array([(xs * heat[ys, xs]).sum(), (ys * heat[ys, xs]).sum()]) / heat[ys, xs].sum()
        np.testing.assert_allclose(centroid, pts[k], atol=0.35)


def test_sources_are_sampled_by_their_weight(annotated_folder, tmp_path):
    """A source's weight sets its share of the samples whatever its size; per-source mirror rates apply."""
    from facealign_sdk.nets import NetConfig
    from facealign_sdk.training import batches
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, train_landmarks

    seen: list[str] = []
    original = batches.landmark_sample

    def spy(item, size, rng, aug=None):
        seen.append((item.name, aug.p_flip))
        return original(item, size, rng, aug)

    small = tmp_path / "small"
    small.mkdir()
    for suffix in (".jpg", ".pts"):
        (small / f"one{suffix}").write_bytes((annotated_folder / f"img0{suffix}").read_bytes())
    cfg = LandmarkConfig(train=[DataSource(folder=str(annotated_folder), weight=1.0, flip_probability=0.0),
                                DataSource(folder=str(small), weight=3.0, flip_probability=1.0)],
                         val=None, autoencoder=None, run_dir=str(tmp_path / "run"), net=NetConfig(width=8),
                         batch_size=8, steps=4, checkpoint_every=4, augment=True, threads=1)
    import unittest.mock

    with unittest.mock.patch.object(batches, "landmark_sample", spy):
        train_landmarks(cfg, progress=False)
    share_small = np.mean([name == "one.jpg" for name, _ in seen])
    assert 0.6 < share_small < 0.9  # 3 / 4 of 32 samples, though the folder holds 1 of 5 faces
    assert {flip for name, flip in seen if name == "one.jpg"} == {1.0}
    assert {flip for name, flip in seen if name != "one.jpg"} == {0.0}


@pytest.mark.parametrize("generator_lr", [None, 1e-3])
def test_generator_lr_decides_whether_the_generator_learns(annotated_folder, tmp_path, generator_lr):
    from facealign_sdk.nets import NetConfig
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, load_trained, train_landmarks

    cfg = LandmarkConfig(train=[DataSource(folder=str(annotated_folder))], val=None, autoencoder=None,
                         run_dir=str(tmp_path / "run"), net=NetConfig(width=8), batch_size=2, steps=3,
                         checkpoint_every=3, augment=False, generator_lr=generator_lr, threads=1)
    torch.manual_seed(cfg.seed)
    from facealign_sdk.nets import LandmarkNet

    start = LandmarkNet(cfg.net).state_dict()  # same seed: the weights training starts from
    train_landmarks(cfg, progress=False)
    trained = load_trained(tmp_path / "run" / "last.pt").state_dict()
    conv = "generator.stages.0.0.conv1.weight"
    assert torch.equal(trained[conv], start[conv]) == (generator_lr is None)
    # BatchNorm statistics stay fixed either way
    stats = [k for k in start if k.startswith("generator.") and k.endswith("running_mean")]
    assert stats and all(torch.equal(trained[k], start[k]) for k in stats)


@pytest.mark.parametrize("body, message", [
    ("version: 1\nn_points: sixty\n{\n1 2\n}\n", "not a valid .pts file.*sixty"),  # was a bare ValueError
    ("version: 1\nn_points: 2\n{\n1\n2\n}\n", "expected 'x y'"),  # one column: was an (N, 1) array
    ("version: 1\nn_points: 2\n{\n1 2\n3\n}\n", "expected 'x y'"),
])
def test_malformed_pts_files_are_pts_errors(tmp_path, body, message):
    p = tmp_path / "bad.pts"
    p.write_text(body)
    with pytest.raises(PtsError, match=message):
        read_pts(p)


def test_laplace_kl_is_zero_at_its_target_and_grows_with_the_offset():
    from facealign_sdk.training.losses import laplace_kl_loss

    points = torch.tensor([[[10.0, 12.0], [20.5, 5.0]]])
    ys, xs = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")

    def laplace_logits(centre, scale=1.0, temperature=0.1):
        # softmax(logits / T) of these logits is exactly the normalised Laplace target
        dist = torch.sqrt((xs - centre[0]) ** 2 + (ys - centre[1]) ** 2)
        return -dist / scale * temperature

    exact = torch.stack([laplace_logits(p) for p in points[0]])[None]
    assert laplace_kl_loss(exact, points).item() == pytest.approx(0.0, abs=1e-5)
    losses = [laplace_kl_loss(torch.stack([laplace_logits(p + torch.tensor([d, 0.0])) for p in points[0]])[None],
                              points).item() for d in (0.5, 1.0, 3.0)]
    assert 0 < losses[0] < losses[1] < losses[2]
    # the per-point weights scale each map's term: zero weight on the shifted map leaves only the exact one
    shifted = torch.stack([laplace_logits(points[0, 0] + torch.tensor([3.0, 0.0])), exact[0, 1]])[None]
    assert laplace_kl_loss(shifted, points, point_weights=torch.tensor([[0.0, 1.0]])).item() == pytest.approx(0, abs=1e-5)
    assert laplace_kl_loss(shifted, points, point_weights=torch.tensor([[2.0, 1.0]])).item() == pytest.approx(
        2 * laplace_kl_loss(shifted, points).item(), rel=1e-4)


def test_landmark_stage_trains_with_the_laplace_kl_term(annotated_folder, tmp_path, capsys):
    from facealign_sdk.nets import NetConfig
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, train_landmarks

    cfg = LandmarkConfig(train=[DataSource(folder=str(annotated_folder))], val=str(annotated_folder), autoencoder=None,
                         run_dir=str(tmp_path / "run"), net=NetConfig(width=8), batch_size=4, steps=30,
                         checkpoint_every=10, augment=False, lr=3e-3, encoder_lr=1e-3, lr_decay_at=1.0, threads=1,
                         laplace_kl_weight=0.5)
    train_landmarks(cfg, progress=False)
    assert "loading" not in capsys.readouterr().err  # no data-loading bars either without progress
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert log[-1]["loss"] < 0.7 * log[0]["loss"]
    plain = LandmarkConfig(**{**cfg.model_dump(), "laplace_kl_weight": 0.0, "run_dir": str(tmp_path / "plain")})
    train_landmarks(plain.model_copy(update={"steps": 10}), progress=False)
    first_plain = json.loads((tmp_path / "plain" / "log.jsonl").read_text().splitlines()[0])
    assert log[0]["loss"] > first_plain["loss"]  # the KL term is in the logged loss


def test_max_faces_trains_on_a_fixed_few(annotated_folder, tmp_path):
    """``max_faces`` keeps the same N faces every run (name hash), whatever order the folder lists them in."""
    import unittest.mock

    from facealign_sdk.nets import NetConfig
    from facealign_sdk.training import batches
    from facealign_sdk.training.data import first_by_hash, load_annotated
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, train_landmarks

    items = load_annotated(annotated_folder, progress=False)
    two = [it.name for it in first_by_hash(items, 2)]
    assert len(set(two)) == 2 and two == [it.name for it in first_by_hash(items[::-1], 2)]
    assert first_by_hash(items, None) == items and first_by_hash(items, 10) == items
    seen: list[str] = []
    original = batches.landmark_sample

    def spy(item, size, rng, aug=None):
        seen.append(item.name)
        return original(item, size, rng, aug)

    cfg = LandmarkConfig(train=[DataSource(folder=str(annotated_folder), max_faces=2)], val=None, autoencoder=None,
                         run_dir=str(tmp_path / "run"), net=NetConfig(width=8), batch_size=8, steps=3,
                         checkpoint_every=3, augment=False, threads=1)
    with unittest.mock.patch.object(batches, "landmark_sample", spy):
        train_landmarks(cfg, progress=False)
    assert set(seen) == set(two)
    with pytest.raises(ValueError):
        DataSource(folder="x", max_faces=0)


def test_autoencoder_parts_choose_what_is_initialised():
    """``autoencoder_parts=["encoder"]`` copies the encoder and leaves the generator at its own init."""
    from facealign_sdk.nets import AutoEncoder, LandmarkNet, NetConfig
    from facealign_sdk.training.landmarks import LandmarkConfig, init_from_autoencoder

    ae = AutoEncoder(128, width=8)
    net = LandmarkNet(NetConfig(width=8))
    before = net.generator.stages[0][0].conv1.weight.clone()
    n = init_from_autoencoder(net, ae.state_dict(), ("encoder",))
    assert n == sum(k.startswith("encoder.") and k in net.state_dict() for k in ae.state_dict())
    assert torch.equal(net.encoder.layer4[0].conv1.weight, ae.encoder.layer4[0].conv1.weight)
    assert torch.equal(net.generator.stages[0][0].conv1.weight, before)
    assert LandmarkConfig().autoencoder_parts == ["encoder", "generator"]
    with pytest.raises(ValueError):
        LandmarkConfig(autoencoder_parts=["decoder"])


# -- batches, workers and the time budget (the GPU machine's settings) ------------------------------------


def _batches(folder, seed=0):
    from facealign_sdk.training.batches import LandmarkBatches
    from facealign_sdk.training.data import LandmarkAugment, load_annotated

    items = load_annotated(folder, progress=False)
    return LandmarkBatches(items, np.zeros(len(items), int), np.full(len(items), 1 / len(items)),
                           [LandmarkAugment()], 64, 3, seed)


def test_a_steps_batch_is_the_same_with_workers_and_on_resume(annotated_folder):
    """The batch of a step depends on (seed, step) alone: worker processes and resuming at any step draw the
    same crops and points; another seed draws others."""
    from facealign_sdk.training.batches import batch_stream

    batches = _batches(annotated_folder)
    here = list(batch_stream(batches, 0, 4, workers=0))
    in_workers = list(batch_stream(batches, 0, 4, workers=2))
    resumed = list(batch_stream(batches, 2, 4, workers=1))
    assert len(here) == len(in_workers) == 4 and len(resumed) == 2
    for a, b in zip(here, in_workers):
        assert np.array_equal(a.crops, b.crops) and np.array_equal(a.points, b.points)
        assert np.array_equal(a.picks, b.picks)
    assert all(np.array_equal(a.crops, b.crops) for a, b in zip(here[2:], resumed))
    assert here[0].crops.shape == (3, 64, 64, 3) and here[0].crops.dtype == np.uint8
    assert here[0].points.shape == (3, 68, 2) and here[0].points.dtype == np.float32
    assert not np.array_equal(here[0].crops, here[1].crops)
    assert not np.array_equal(here[0].crops, _batches(annotated_folder, seed=1).draw(0).crops)


def test_a_run_from_init_model_warns_of_a_conventions_file_fitted_on_another_model(annotated_folder, tiny_model,
                                                                                  tmp_path, caplog):
    from facealign_sdk.nets import NetConfig
    from facealign_sdk.training.conventions import FittedConvention, ModelIdentity
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, train_landmarks

    other = ModelIdentity(name="another-model", weights_sha256="ab" * 32)
    path = tmp_path / "conventions.json"
    path.write_text(json.dumps({"ytf68": FittedConvention(name="ytf68", model=other, folder="x", faces=1,
                                                          offsets=[(0.01, 0.0)] * 68, nme_without=1.0,
                                                          nme_with=1.0).model_dump()}))
    cfg = LandmarkConfig(train=[DataSource(folder=str(annotated_folder), convention="ytf68")], val=None,
                         autoencoder=None, init_model=str(tiny_model), conventions=str(path), target_convention="none",
                         run_dir=str(tmp_path / "run"), net=NetConfig(width=8), batch_size=2, steps=1, threads=1)
    train_landmarks(cfg, progress=False)
    assert "was fitted on model another-model (weights abababababab), this run starts from tiny-test" in caplog.text


def test_a_bad_face_in_a_worker_is_the_same_error_as_without_workers():
    """Points that no crop can hold fail when a batch is cut: with worker processes the training process raises
    the same project error, naming the face, not the loader's multi-process traceback. (The loader refuses such
    .pts files; faces built in memory still reach the batches.)"""
    from facealign_sdk.training.batches import LandmarkBatches, batch_stream
    from facealign_sdk.training.data import Annotated, LandmarkAugment

    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    points = np.stack([64 + 30 * np.cos(t), 64 + 30 * np.sin(t)], axis=1)
    image = np.full((128, 128, 3), 100, np.uint8)
    items = [Annotated(image, points, "good.png"), Annotated(image, points + 1e300, "broken.png")]
    messages = []
    for workers in (0, 1):
        batches = LandmarkBatches(items, np.zeros(2, int), np.full(2, 0.5), [LandmarkAugment.none()], 256, 4, 0)
        with pytest.raises(InputError) as caught:
            for _ in batch_stream(batches, 0, 3, workers):
                pass
        messages.append(str(caught.value))
    assert messages[0] == messages[1] and messages[0].startswith("training face broken.png: invalid face box")


def test_time_limit_stops_the_run_with_a_checkpoint_and_holds_on_resume(annotated_folder, tmp_path):
    from facealign_sdk.nets import NetConfig
    from facealign_sdk.training.checkpoint import load_checkpoint
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, train_landmarks

    run = tmp_path / "run"
    cfg = LandmarkConfig(train=[DataSource(folder=str(annotated_folder))], val=str(annotated_folder), val_images=2,
                         autoencoder=None, run_dir=str(run), net=NetConfig(width=8), batch_size=2, steps=50,
                         checkpoint_every=50, threads=1, workers=1, time_limit_minutes=1e-4)
    record = train_landmarks(cfg, progress=False)
    state = load_checkpoint(run / "last.pt")
    assert record["step"] == state["step"] == 1 and record["stopped"] == "time limit (0.0001 min) spent"
    assert state["train_seconds"] >= 0.006 and (run / "best.pt").is_file()
    assert train_landmarks(cfg, progress=False) == {}  # resumed with its time spent: nothing more
    assert load_checkpoint(run / "last.pt")["step"] == 1
    more = cfg.model_copy(update={"time_limit_minutes": None, "steps": 3})  # a longer budget resumes it
    assert train_landmarks(more, progress=False)["step"] == 3


def test_the_training_loop_reads_the_clock_once_per_step(annotated_folder, tmp_path, monkeypatch):
    """One clock reading per step serves the schedule, the time limit and the log."""
    import time
    import types

    from facealign_sdk.nets import NetConfig
    from facealign_sdk.training import landmarks

    reads = []
    monkeypatch.setattr(landmarks, "time", types.SimpleNamespace(time=lambda: reads.append(1) or time.time()))
    cfg = landmarks.LandmarkConfig(train=[landmarks.DataSource(folder=str(annotated_folder))], val=None,
                                   autoencoder=None, run_dir=str(tmp_path / "run"), net=NetConfig(width=8),
                                   batch_size=2, steps=4, checkpoint_every=2, threads=1, time_limit_minutes=60)
    record = landmarks.train_landmarks(cfg, progress=False)
    assert record["step"] == 4 and record["wall_s"] >= 0
    assert len(reads) == 1 + 4  # the start, then each step's


def test_schedule_runs_on_steps_or_time_whichever_is_spent_first():
    from facealign_sdk.training.landmarks import LandmarkConfig

    cfg = LandmarkConfig(steps=1000, time_limit_minutes=10)
    assert cfg.progress(100, 0) == 0.1 and cfg.progress(100, 300) == 0.5 and cfg.progress(1000, 1) == 1.0
    assert LandmarkConfig(steps=1000).progress(500, 1e9) == 0.5
    with pytest.raises(ValueError, match="amp"):
        LandmarkConfig(amp=True, device="cpu")
    assert LandmarkConfig(amp=True, device="cuda:1").amp


def test_release_blur_sigma_goes_into_the_manifest_and_the_decoder_uses_it(tmp_path, capsys):
    """``train release --blur-sigma`` sets the codec's blur (the other codec values stay the training ones); the
    Landmarker then decodes with it, and a negative value is refused with exit 2, no model folder written."""
    import numpy as np

    from facealign_sdk.cli.main import main
    from facealign_sdk.codec import CodecSpec
    from facealign_sdk.landmarker import Landmarker
    from facealign_sdk.model import load_manifest
    from facealign_sdk.nets import LandmarkNet, NetConfig
    from facealign_sdk.training.checkpoint import save_checkpoint

    net = LandmarkNet(NetConfig(width=8))
    save_checkpoint({"net": net.state_dict(), "config": net.config.model_dump()}, tmp_path / "best.pt")
    for blur, expected in ((None, CodecSpec().blur_sigma), ("0", 0.0), ("1.25", 1.25)):
        out = tmp_path / f"model{blur}"
        flags = [] if blur is None else ["--blur-sigma", blur]
        assert main(["train", "release", "--checkpoint", str(tmp_path / "best.pt"), "--out", str(out), *flags]) == 0
        codec = load_manifest(out).heatmap_codec()
        assert codec.blur_sigma == expected
        assert codec.soft_window == CodecSpec().soft_window  # only the blur changes
    # the decoder reads it: an off-centre two-pixel peak decodes differently with and without the blur
    maps = np.zeros((1, 1, 32, 32), np.float32)
    maps[0, 0, 10, 10], maps[0, 0, 10, 20] = 1.0, 0.9
    maps[0, 0, 11:14, 18:23] = 0.8  # more mass around the lower peak: the blur prefers it
    sharp = Landmarker(tmp_path / "model0", backend="torch").decode(maps)[0][0, 0]
    blurred = Landmarker(tmp_path / "model1.25", backend="torch").decode(maps)[0][0, 0]
    assert abs(sharp[0] - 10) < 1 and abs(blurred[0] - 20) < 2
    capsys.readouterr()
    for bad in ("-1", "nan", "inf", "65", "1e-200"):  # 1e-200: a kernel that underflows to NaN points
        assert main(["train", "release", "--checkpoint", str(tmp_path / "best.pt"), "--out", str(tmp_path / "bad"),
                     "--blur-sigma", bad]) == 2
        assert f"blur sigma {float(bad)!r}" in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()
    # a refused value leaves an existing model folder as it was
    before = (tmp_path / "model0" / "manifest.json").read_bytes()
    assert main(["train", "release", "--checkpoint", str(tmp_path / "best.pt"), "--out", str(tmp_path / "model0"),
                 "--blur-sigma", "-2"]) == 2
    assert (tmp_path / "model0" / "manifest.json").read_bytes() == before
    assert load_manifest(tmp_path / "model0").heatmap_codec().blur_sigma == 0.0
