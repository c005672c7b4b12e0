"""Annotation conventions: manifest checks, the runtime offsets, tracking crops, fitting, the training shift, the CLI."""

import json

import numpy as np
import pytest

from facealign_sdk import Aligner, geometry
from facealign_sdk.detectors.base import Detection
from facealign_sdk.errors import InputError
from facealign_sdk.landmarker import Landmarker
from facealign_sdk.model import ModelError
from facealign_sdk.pts import write_pts

from .conftest import SAMPLES, model_copy

BOX = (180.0, 150.0, 330.0, 330.0)


def _offsets(seed: int, scale: float = 0.02) -> list[list[float]]:
    return (np.random.default_rng(seed).normal(0, scale, (68, 2))).tolist()


@pytest.fixture(scope="module")
def convention_model(tiny_model, tmp_path_factory):
    """The tiny model with two conventions, ``a`` the default."""
    conventions = {"a": _offsets(1), "b": _offsets(2)}
    return model_copy(tiny_model, tmp_path_factory.mktemp("conv"),
                      lambda m: m.update(conventions=conventions, default_convention="a")), conventions


def _crop_points(aligner, image, box=BOX):
    face = aligner.align(image, boxes=[box])[0]
    frame = aligner.landmarker.frame_for(Detection(box=box))
    return geometry.image_to_crop(face.points, frame, aligner.manifest.input_size)


def test_each_convention_moves_the_points_by_its_offsets_in_the_crop(convention_model, face_image):
    folder, conventions = convention_model
    size = 256
    raw = _crop_points(Aligner(folder, backend="torch", detector=None, convention="none"), face_image)
    default = Aligner(folder, backend="torch", detector=None)
    assert default.convention == "a" and default.options.convention is None
    np.testing.assert_allclose(_crop_points(default, face_image) - raw, np.asarray(conventions["a"]) * size, atol=1e-6)
    other = Aligner(folder, backend="torch", detector=None, convention="b")
    np.testing.assert_allclose(_crop_points(other, face_image) - raw, np.asarray(conventions["b"]) * size, atol=1e-6)
    assert Aligner(folder, backend="torch", detector=None, convention="none").convention is None


def test_flip_averaging_adds_the_offsets_fitted_for_it(convention_model, tiny_model, tmp_path, face_image, caplog):
    """flip=True adds a convention's flip offsets where the manifest has them, its plain ones otherwise; a model
    trained without mirroring warns only where flip averaging has no offsets of its own."""
    _, conventions = convention_model
    flip_a = _offsets(3)
    folder = model_copy(tiny_model, tmp_path, lambda m: m.update(
        conventions=conventions, default_convention="a", flip_conventions={"a": flip_a}, mirror_symmetric=False))
    size = 256
    raw = _crop_points(Aligner(folder, backend="torch", detector=None, convention="none", flip=True), face_image)
    # the network's own points cannot have flip offsets: warned, without advice to fit them
    assert "trained without mirror augmentation: flip=True" in caplog.text and "--flip" not in caplog.text
    caplog.clear()
    flipped_a = _crop_points(Aligner(folder, backend="torch", detector=None, flip=True), face_image)
    assert "trained without mirror augmentation" not in caplog.text
    np.testing.assert_allclose(flipped_a - raw, np.asarray(flip_a) * size, atol=1e-6)
    flipped_b = _crop_points(Aligner(folder, backend="torch", detector=None, convention="b", flip=True), face_image)
    assert "no offsets of convention 'b' fitted for flip averaging (facealign train conventions --flip)" in caplog.text
    np.testing.assert_allclose(flipped_b - raw, np.asarray(conventions["b"]) * size, atol=1e-6)
    plain = _crop_points(Aligner(folder, backend="torch", detector=None), face_image)
    plain_raw = _crop_points(Aligner(folder, backend="torch", detector=None, convention="none"), face_image)
    np.testing.assert_allclose(plain - plain_raw, np.asarray(conventions["a"]) * size, atol=1e-6)


def test_a_model_without_conventions_gives_the_network_points(tiny_model, face_image):
    plain = Aligner(tiny_model, backend="torch", detector=None)
    assert plain.convention is None
    np.testing.assert_array_equal(_crop_points(plain, face_image),
                                  _crop_points(Aligner(tiny_model, backend="torch", detector=None, convention="none"),
                                               face_image))
    with pytest.raises(ModelError, match="no annotation convention '300w' .*it has: none"):
        Aligner(tiny_model, backend="torch", detector=None, convention="300w")


def test_an_unknown_convention_names_the_ones_there_are(convention_model):
    with pytest.raises(ModelError, match="no annotation convention 'ytf68' .*it has: a, b"):
        Aligner(convention_model[0], backend="torch", detector=None, convention="ytf68")


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(conventions={"a": _offsets(1)[:67]}), "need 68"),
    (lambda m: m.update(conventions={"a": [[float("nan"), 0.0]] * 68}), "finite number"),
    (lambda m: m.update(conventions={"a": [[0.9, 0.0]] * 68}), "less than half"),
    (lambda m: m.update(conventions={"none": _offsets(1)}), "reserved"),
    (lambda m: m.update(conventions={"a": _offsets(1)}, default_convention="b"), "not one of the conventions"),
    (lambda m: m.update(conventions={"a": _offsets(1)}, flip_conventions={"b": _offsets(2)}), "flip convention 'b'"),
    (lambda m: m.update(conventions={"a": _offsets(1)}, flip_conventions={"a": _offsets(2)[:5]}), "need 68"),
])
def test_bad_conventions_in_a_manifest_are_refused(tiny_model, tmp_path, edit, message):
    with pytest.raises(ModelError, match=message):
        Landmarker(model_copy(tiny_model, tmp_path, edit), backend="torch")


@pytest.mark.parametrize("flip", [False, True])
def test_tracking_crops_follow_the_network_points(convention_model, tiny_model, tmp_path, face_image, flip):
    """The next frame's crop comes from the network's own points, whichever convention the output follows; with
    flip=True from the flip-averaged points, the convention's flip offsets taken out (not its plain ones)."""
    folder, conventions = convention_model
    if flip:
        folder = model_copy(tiny_model, tmp_path, lambda m: m.update(
            conventions=conventions, flip_conventions={"b": _offsets(3, 0.05)}))
    raw = Landmarker(folder, backend="torch", convention="none", flip=flip)
    shifted = Landmarker(folder, backend="torch", convention="b", flip=flip)
    crop = raw.frame_for(Detection(box=BOX))
    (raw_points,), _ = raw.landmarks_in_frames([(face_image, crop)])
    (points,), _ = shifted.landmarks_in_frames([(face_image, crop)])
    assert np.abs(points - raw_points).max() > 1.0  # the offsets do move the output
    want, got = raw.frame_from_landmarks(raw_points), shifted.frame_from_landmarks(points, crop)
    for field in ("center_x", "center_y", "side", "roll"):
        assert getattr(got, field) == pytest.approx(getattr(want, field), abs=1e-6)


def test_shift_to_moves_points_by_the_offset_difference_in_their_crop():
    from facealign_sdk.training.conventions import shift_to

    rng = np.random.default_rng(0)
    points = np.stack([200 + 60 * np.cos(np.linspace(0, 6, 68)), 220 + 80 * np.sin(np.linspace(0, 6, 68))], 1)
    source, target = rng.normal(0, 0.02, (68, 2)), rng.normal(0, 0.02, (68, 2))
    moved = shift_to(points, source, target)
    frame = geometry.frame_from_box(geometry.box_from_points(points))
    np.testing.assert_allclose(geometry.image_to_crop(moved, frame, 100) - geometry.image_to_crop(points, frame, 100),
                               (target - source) * 100, atol=1e-9)
    np.testing.assert_allclose(shift_to(points, source, source), points, atol=1e-9)


@pytest.fixture(scope="module")
def bundled_copy(tmp_path_factory):
    """The files of the bundled model that the ONNX Runtime backend loads, in a folder a test may change."""
    import shutil

    from facealign_sdk.model import resolve_model_dir

    out = tmp_path_factory.mktemp("bundled") / "model"
    out.mkdir()
    for name in ("manifest.json", "model.safetensors", "model.onnx"):
        shutil.copy(resolve_model_dir(None) / name, out / name)
    return out


@pytest.fixture(scope="module")
def self_annotated(bundled_copy, tmp_path_factory):
    """The sample images annotated with the bundled model's own points (so a fit on them gives small offsets)."""
    folder = tmp_path_factory.mktemp("self_annotated")
    aligner = Aligner(bundled_copy, backend="ort", convention="none")
    for name in ("face.jpg", "two_faces.jpg"):
        (folder / name).write_bytes((SAMPLES / name).read_bytes())
        write_pts((folder / name).with_suffix(".pts"), aligner.align(str(SAMPLES / name))[0].points)
    return folder


def test_fitting_measures_the_mean_offset_and_it_lowers_the_error(bundled_copy, self_annotated):
    from facealign_sdk.training.conventions import crop_points, fit_convention

    folder = self_annotated
    aligner = Aligner(bundled_copy, backend="ort", detector=None, convention="none")
    fitted = fit_convention(aligner, "mine", folder, progress=False)
    predicted, annotated = crop_points(aligner, folder, progress=False)
    assert fitted.faces == 2 and len(fitted.offsets) == 68
    assert fitted.model.name == aligner.manifest.name and fitted.model.weights_sha256 == aligner.manifest.weights_sha256
    np.testing.assert_allclose(fitted.offsets, (annotated - predicted).mean(axis=0), atol=5e-7)  # 6 decimals
    assert fitted.nme_with <= fitted.nme_without
    with pytest.raises(FileNotFoundError, match="no such folder"):
        fit_convention(aligner, "mine", folder / "missing", progress=False)
    with pytest.raises(InputError, match="adds convention '300w'"):  # the default: offsets on top of offsets
        fit_convention(Aligner(bundled_copy, backend="ort", detector=None), "mine", folder, progress=False)
    with pytest.raises(InputError, match="with flip=True, got .* with flip=False"):  # flip offsets = plain ones
        fit_convention(aligner, "mine", folder, progress=False, flip_aligner=aligner)


def test_fitting_refuses_points_that_annotate_no_face_of_their_image(bundled_copy, self_annotated, tmp_path):
    """Points far outside their image (another image's) would put one face's crop elsewhere and move the mean
    offsets of every point: the fit names the file, as training and eval do."""
    import shutil

    from facealign_sdk.pts import PtsError, read_pts
    from facealign_sdk.training.conventions import fit_convention

    folder = tmp_path / "data"
    shutil.copytree(self_annotated, folder)
    write_pts(folder / "face.pts", read_pts(folder / "face.pts") * 4)
    aligner = Aligner(bundled_copy, backend="ort", detector=None, convention="none")
    with pytest.raises(PtsError, match=r"face\.pts: point \d+ .* lies far outside the"):
        fit_convention(aligner, "mine", folder, progress=False)


def test_training_moves_named_sources_into_the_target_convention(tmp_path):
    from facealign_sdk.training.conventions import FittedConvention, shift_to
    from facealign_sdk.training.data import Annotated
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, _move_into_target_convention

    def fitted(name, seed):
        return FittedConvention(name=name, folder="x", faces=1, offsets=[tuple(o) for o in _offsets(seed)],
                                nme_without=1.0, nme_with=1.0)

    conv = {"300w": fitted("300w", 3), "ytf68": fitted("ytf68", 4)}
    path = tmp_path / "conventions.json"
    path.write_text(json.dumps({k: v.model_dump() for k, v in conv.items()}))
    points = np.stack([200 + 60 * np.cos(np.linspace(0, 6, 68)), 220 + 80 * np.sin(np.linspace(0, 6, 68))], 1)
    sources = [DataSource(folder="a", convention="ytf68"), DataSource(folder="b", convention="300w"), DataSource(folder="c"),
               DataSource(folder="d", convention="none")]
    cfg = LandmarkConfig(train=sources, conventions=str(path), target_convention="300w")
    items = [[Annotated(np.zeros((4, 4, 3), np.uint8), points.copy(), "f")] for _ in sources]
    _move_into_target_convention(cfg, items)
    np.testing.assert_allclose(items[0][0].points, shift_to(points, conv["ytf68"].offsets, conv["300w"].offsets))
    np.testing.assert_array_equal(items[1][0].points, points)
    np.testing.assert_array_equal(items[2][0].points, points)
    np.testing.assert_allclose(items[3][0].points, shift_to(points, np.zeros((68, 2)), conv["300w"].offsets))
    with pytest.raises(InputError, match="no conventions file"):
        _move_into_target_convention(LandmarkConfig(train=sources), items)
    with pytest.raises(InputError, match="no convention 'lfpw'"):
        _move_into_target_convention(LandmarkConfig(train=[DataSource(folder="a", convention="lfpw")],
                                                     conventions=str(path)), items)
    path.write_text("[1, 2")
    with pytest.raises(InputError, match="not a conventions file"):
        _move_into_target_convention(cfg, items)


def test_a_conventions_file_of_another_model_than_the_runs_start_warns(tmp_path, caplog):
    """A conventions file records the model it was fitted on; a run starting from another model uses it with a
    warning, and a file from before the record loads without one."""
    from facealign_sdk.training.conventions import FittedConvention, ModelIdentity
    from facealign_sdk.training.data import Annotated
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, _move_into_target_convention

    fitted_on = ModelIdentity(name="m", weights_sha256="ab" * 32)
    other = ModelIdentity(name="m", weights_sha256="cd" * 32)  # the same name, retrained
    conv = {name: FittedConvention(name=name, model=fitted_on, folder="x", faces=1, nme_without=1.0, nme_with=1.0,
                                   offsets=[tuple(o) for o in _offsets(seed)])
            for name, seed in (("300w", 3), ("ytf68", 4))}
    path = tmp_path / "conventions.json"
    cfg = LandmarkConfig(train=[DataSource(folder="a", convention="ytf68")], conventions=str(path), init_model="m2")
    points = np.stack([200 + 60 * np.cos(np.linspace(0, 6, 68)), 220 + 80 * np.sin(np.linspace(0, 6, 68))], 1)
    moved = {}
    for case, records, start in (("same", True, fitted_on), ("other", True, other), ("old file", False, other)):
        path.write_text(json.dumps({k: v.model_dump(exclude=set() if records else {"model"}) for k, v in conv.items()}))
        caplog.clear()
        items = [[Annotated(np.zeros((4, 4, 3), np.uint8), points.copy(), "f")]]
        _move_into_target_convention(cfg, items, start)
        moved[case] = items[0][0].points
        assert ("was fitted on model m (weights abababababab), this run starts from m (weights cdcdcdcdcdcd)"
                in caplog.text) is (case == "other"), case
    np.testing.assert_array_equal(moved["same"], moved["other"])
    np.testing.assert_array_equal(moved["same"], moved["old file"])


def test_cli_fits_writes_the_file_and_the_manifest(bundled_copy, self_annotated, tmp_path, capsys):
    import shutil

    from facealign_sdk.cli.main import main

    folder = self_annotated
    model = shutil.copytree(bundled_copy, tmp_path / "model")
    out = tmp_path / "conventions.json"
    assert main(["train", "--no-progress", "conventions", "--model", str(model), "--set", f"mine={folder}",
                 "--set", f"other={folder}", "--json", str(out), "--write-manifest", "--default", "mine"]) == 0
    assert "mine: 2 faces" in capsys.readouterr().out
    written = json.loads(out.read_text())
    manifest = json.loads((model / "manifest.json").read_text())
    assert set(written) == {"mine", "other"} and manifest["default_convention"] == "mine"
    assert written["mine"]["model"] == {"name": manifest["name"], "weights_sha256": manifest["weights_sha256"]}
    np.testing.assert_allclose(manifest["conventions"]["mine"], written["mine"]["offsets"])
    # fitting again measures the network's points, not the points with the stored default's offsets
    assert main(["train", "--no-progress", "conventions", "--model", str(model), "--set", f"mine={folder}",
                 "--json", str(out)]) == 0
    np.testing.assert_allclose(json.loads(out.read_text())["mine"]["offsets"], written["mine"]["offsets"], atol=1e-9)


def test_cli_fits_flip_offsets_that_lower_the_flip_averaged_error(bundled_copy, self_annotated, tmp_path, capsys):
    """--flip fits each convention on the flip-averaged points too; a refit without it drops those offsets, which
    belonged to the offsets it replaces."""
    import shutil

    from facealign_sdk.cli.main import main

    model = shutil.copytree(bundled_copy, tmp_path / "model")
    out = tmp_path / "conventions.json"
    assert main(["train", "--no-progress", "conventions", "--model", str(model), "--set", f"mine={self_annotated}",
                 "--json", str(out), "--write-manifest", "--flip"]) == 0
    printed = capsys.readouterr().out
    assert "flip-averaged" in printed
    flip_fitted = printed.split("fitted for flip averaging too: ")[1].split("\n")[0]
    assert "mine" in flip_fitted.split(", ")
    fitted = json.loads(out.read_text())["mine"]
    assert fitted["nme_with_flip"] < fitted["nme_without"]
    assert not np.allclose(fitted["flip_offsets"], fitted["offsets"], atol=1e-4)
    manifest = json.loads((model / "manifest.json").read_text())
    np.testing.assert_allclose(manifest["flip_conventions"]["mine"], fitted["flip_offsets"])
    assert main(["train", "--no-progress", "conventions", "--model", str(model), "--set", f"mine={self_annotated}",
                 "--write-manifest"]) == 0
    assert "mine" not in json.loads((model / "manifest.json").read_text())["flip_conventions"]
    printed = capsys.readouterr().out
    assert "mine" not in printed.split("fitted for flip averaging too: ")[1].split("\n")[0].split(", ")


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "nofolder"], "NAME=FOLDER"),
    (["--set", "a=x", "--set", "a=y", "--json", "o.json"], "must differ"),
    (["--set", "a=x", "--json", "o.json", "--default", "b"], "not one of the --set names"),
    (["--set", "a=x", "--json", "o.json", "--default", "a"], "add --write-manifest"),
    (["--set", "a=x"], "nothing to write"),
    (["--set", "none=x", "--json", "o.json"], "reserved"),
    (["--set", "a=x", "--json", "no-such-folder/o.json"], "no-such-folder"),
])
def test_cli_refuses_bad_requests(tiny_model, args, message, capsys):
    from facealign_sdk.cli.main import main

    assert main(["train", "conventions", "--model", str(tiny_model), *args]) == 2
    assert message in capsys.readouterr().err


def test_pseudo_labels_are_the_teacher_networks_own_points_unless_asked(convention_model, tmp_path):
    """``DataSource(convention="none")`` takes pseudo-labels as the teacher network's own points: the teacher must
    not add its default convention's offsets to them (they would be moved into the target convention twice)."""
    from facealign_sdk.training.data import load_annotated
    from facealign_sdk.training.pseudolabel import REPORT, PseudoLabelConfig, pseudo_label

    folder, _ = convention_model
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "face.jpg").write_bytes((SAMPLES / "face.jpg").read_bytes())
    for convention, expected, flip in ((None, "none", False), ("b", "b", False), ("b", "b", True)):
        out = tmp_path / f"pseudo_{expected}_{flip}"
        extra = {} if convention is None else {"convention": convention}
        report = pseudo_label(PseudoLabelConfig(data=[str(faces)], out=str(out), teacher=str(folder),
                                                min_confidence=0, flip=flip, **extra), progress=False)
        assert report.convention == expected and report.flip == flip
        assert json.loads((out / REPORT).read_text())["flip"] == flip
        (item,) = load_annotated(out / "faces")
        want = Aligner(folder, max_faces=1, convention=expected, flip=flip).align(str(faces / "face.jpg"))[0].points
        np.testing.assert_allclose(item.points, want, atol=1e-3)
        plain = Aligner(folder, max_faces=1, convention=expected).align(str(faces / "face.jpg"))[0].points
        assert (np.abs(item.points - plain).max() > 0.01) == flip  # the flip option reached the teacher


def test_flipped_pseudo_labels_need_offsets_fitted_for_flip(convention_model, tiny_model, tmp_path):
    """A teacher trained without mirror augmentation: its flip-averaged points follow neither its own points
    (convention none) nor a convention without flip offsets, so pseudo-labels written as either are refused;
    a convention with flip offsets is labelled."""
    from facealign_sdk.training.pseudolabel import PseudoLabelConfig, pseudo_label

    _, conventions = convention_model
    folder = model_copy(tiny_model, tmp_path / "model", lambda m: m.update(
        conventions=conventions, default_convention="a", flip_conventions={"a": _offsets(3)}, mirror_symmetric=False))
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "face.jpg").write_bytes((SAMPLES / "face.jpg").read_bytes())
    for convention in ("none", "b"):
        out = tmp_path / f"pseudo_{convention}"
        with pytest.raises(InputError, match=f"convention {convention} has no offsets fitted for flip averaging.*: a;"):
            pseudo_label(PseudoLabelConfig(data=[str(faces)], out=str(out), teacher=str(folder), min_confidence=0,
                                           convention=convention, flip=True), progress=False)
        assert not out.exists() or not any(out.iterdir())
    report = pseudo_label(PseudoLabelConfig(data=[str(faces)], out=str(tmp_path / "pseudo_a"), teacher=str(folder),
                                            min_confidence=0, convention="a", flip=True), progress=False)
    assert report.flip and report.sources[0].kept == 1


def test_an_evaluation_records_the_convention_it_was_measured_in(convention_model, tmp_path, capsys):
    """NME depends on the convention (the same points are 4.23 % in one and 4.82 % in another): the JSON and the
    printed header say which one."""
    from facealign_sdk import evaluate
    from facealign_sdk.cli.main import main

    folder, _ = convention_model
    data = tmp_path / "set"
    data.mkdir()
    (data / "face.jpg").write_bytes((SAMPLES / "face.jpg").read_bytes())
    write_pts(data / "face.pts", Aligner(folder, max_faces=1).align(str(SAMPLES / "face.jpg"))[0].points)
    for convention, expected in ((None, "a"), ("b", "b"), ("none", None)):
        result = evaluate.evaluate_folder(Aligner(folder, convention=convention), data, "fixed", progress=False)
        assert result.convention == expected
    out = tmp_path / "eval.json"
    assert main(["eval", str(data), "--mode", "fixed", "--model", str(folder), "--convention", "b",
                 "--json", str(out), "--no-progress"]) == 0
    assert "convention b" in capsys.readouterr().out
    assert json.loads(out.read_text())["results"][0]["convention"] == "b"


@pytest.mark.parametrize(("flags", "expected"), [([], "a"), (["--convention", "b"], "b"), (["--convention", "none"], None),
                                               (["--flip"], "a")])
def test_image_video_and_bench_json_record_the_convention_of_their_points(convention_model, tmp_path, flags, expected):
    """Each image record, the video document's head and the bench report say which convention the points follow
    (null: the network's own); the CSVs have no place for it."""
    from facealign_sdk.cli.main import main

    folder, _ = convention_model
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "face.jpg").write_bytes((SAMPLES / "face.jpg").read_bytes())
    image_json, video_json = tmp_path / "image.json", tmp_path / "video.json"
    model = ["--model", str(folder), "--backend", "torch", "--no-progress", *flags]
    assert main(["image", str(frames / "face.jpg"), "--out", str(image_json), *model]) == 0
    assert main(["video", str(frames), "--json", str(video_json), *model]) == 0
    assert [r["convention"] for r in json.loads(image_json.read_text())] == [expected]
    assert json.loads(video_json.read_text())["convention"] == expected
    bench_json = tmp_path / "bench.json"
    assert main(["bench", "--model", str(folder), "--backends", "torch", "--batch", "1", "--iters", "1",
                 "--image", str(frames / "face.jpg"), "--json", str(bench_json), *flags]) == 0
    report = json.loads(bench_json.read_text())
    assert report["convention"] == expected and report["flip"] is ("--flip" in flags)


@pytest.mark.parametrize(("text", "message"), [
    ("[1, 2]", "not a conventions file"),
    ('{"300w": {"name": "300w", "folder": "x", "faces": 1, "offsets": [[0, 0]], "nme_without": 1, "nme_with": 1}}',
     "68 landmarks"),
])
def test_a_conventions_file_that_does_not_fit_the_run_is_bad_input(tmp_path, text, message):
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, _move_into_target_convention

    path = tmp_path / "conventions.json"
    path.write_text(text)
    cfg = LandmarkConfig(train=[DataSource(folder="a", convention="none")], conventions=str(path))
    with pytest.raises(InputError, match=message):
        _move_into_target_convention(cfg, [[]])


def test_a_set_with_every_face_held_out_is_bad_input(tiny_model, self_annotated, capsys):
    from facealign_sdk.cli.main import main

    assert main(["train", "--no-progress", "conventions", "--model", str(tiny_model), "--set",
                 f"a={self_annotated}:1.0", "--json", "o.json"]) == 2
    assert "no annotated images to fit a convention on" in capsys.readouterr().err


def test_writing_a_fitted_convention_keeps_the_manifests_others_and_its_default(convention_model, tmp_path):
    """Refitting one set must not drop the other conventions or the default: the runtime's output would
    silently change convention."""
    import shutil

    from facealign_sdk.model import load_manifest
    from facealign_sdk.training.conventions import FittedConvention, write_conventions

    folder, conventions = convention_model
    model = shutil.copytree(folder, tmp_path / "model")
    new = FittedConvention(name="c", folder="x", faces=1, offsets=[tuple(o) for o in _offsets(7)], nme_without=1,
                           nme_with=1)
    write_conventions([new], model)
    manifest = load_manifest(model)
    assert sorted(manifest.conventions) == ["a", "b", "c"] and manifest.default_convention == "a"
    np.testing.assert_allclose(manifest.conventions["b"], conventions["b"])
    write_conventions([new.model_copy(update={"name": "a"})], model, default="c")
    manifest = load_manifest(model)
    assert manifest.default_convention == "c"
    np.testing.assert_allclose(manifest.conventions["a"], new.offsets)


def test_a_tracked_video_gets_the_same_crops_in_every_convention():
    """Tracking end to end: with the convention's offsets the points of each frame differ from the network's own
    by the offsets mapped through one similarity (the same crop), and never by anything else."""
    def track(convention):
        aligner = Aligner(backend="ort", device="cpu", convention=convention)
        return [[face.landmarks.points for face in frame.faces]
                for frame in aligner.track(str(SAMPLES / "clip.mp4"), max_frames=12, smooth=False)]

    offsets = np.asarray(Aligner(backend="ort", device="cpu", detector=None).manifest.conventions["ytf68"])
    shifted, raw = track("ytf68"), track("none")
    assert [len(f) for f in shifted] == [len(f) for f in raw] and sum(map(len, raw)) >= 12
    for frame_shifted, frame_raw in zip(shifted, raw):
        for a, b in zip(frame_shifted, frame_raw):
            moved = a - b
            # moved = offsets @ M for the crop's scale-and-rotation M: solved by least squares, exact if one crop
            m, *_ = np.linalg.lstsq(offsets, moved, rcond=None)
            assert np.abs(offsets @ m - moved).max() < 1e-6
            assert np.abs(moved).max() > 0.5
