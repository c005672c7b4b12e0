"""``facealign eval`` and :mod:`facealign_sdk.evaluate`: metrics, matching, the evaluation loop, bad input."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from facealign_sdk import evaluate, geometry, metrics
from facealign_sdk.boxes import box_iou, match_box
from facealign_sdk.cli import main as cli
from facealign_sdk.detectors.base import Detection
from facealign_sdk.pts import write_pts

from .conftest import SAMPLES, has_module

SCALES = (0.5, 0.6, 0.7)


def face_shape(box: tuple[float, float, float, float]) -> np.ndarray:
    """68 fake points whose ``box_from_points`` is (about) ``box``: a detector-like box in, GT out."""
    side = math.sqrt((box[2] - box[0]) * (box[3] - box[1])) / geometry.POINTS_TO_BOX["size"]
    cx = (box[0] + box[2]) / 2 - geometry.POINTS_TO_BOX["dx"] * side
    cy = (box[1] + box[3]) / 2 - geometry.POINTS_TO_BOX["dy"] * side
    t = np.linspace(0, 2 * math.pi, 68, endpoint=False)
    pts = np.stack([np.cos(t), np.sin(t)], axis=1) * side / 2 + (cx, cy)
    pts[36], pts[45] = (cx - 0.3 * side, cy - 0.1 * side), (cx + 0.3 * side, cy - 0.1 * side)
    return pts


@pytest.fixture(scope="module")
def face_folder(tmp_path_factory) -> Path:
    """Three resized copies of samples/face.jpg with fake 68-point .pts matching YuNet's face box."""
    from facealign_sdk.detectors.yunet import YuNetDetector

    folder = tmp_path_factory.mktemp("faces")
    image = cv2.imread(str(SAMPLES / "face.jpg"))
    detector = YuNetDetector()
    for i, scale in enumerate(SCALES):
        img = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        dets = detector.detect(img)
        assert dets, f"YuNet finds no face in face.jpg at scale {scale}"
        cv2.imwrite(str(folder / f"face{i}.jpg"), img)
        write_pts(folder / f"face{i}.pts", face_shape(dets[0].box))
    return folder


@pytest.fixture
def eval_cli(monkeypatch):
    """``facealign_sdk.cli.main`` with only the eval sub-command wired (other commands may not import here)."""
    monkeypatch.setattr(cli, "COMMANDS", {"eval": cli.COMMANDS["eval"]})
    return cli.main


class FakeAligner:
    """Returns the GT points plus a fixed offset; the GT is found by image size (every image differs)."""

    num_landmarks = 68
    backend_name = "fake"
    refine = "soft"
    blur = True
    flip = False

    class manifest:  # noqa: N801 - mimics Aligner.manifest
        name = "fake"

    @property
    def landmarker(self) -> FakeAligner:  # mimics Aligner.landmarker (frame_for, landmarks_in_frames)
        return self

    def __init__(self, folder: Path, offset: tuple[float, float] = (0.0, 0.0), miss: str = "") -> None:
        from facealign_sdk.pts import read_pts

        self.gt = {}
        self.miss_shape = None
        for f in sorted(folder.glob("*.jpg")):
            shape = cv2.imread(str(f)).shape[:2]
            self.gt[shape] = read_pts(f.with_suffix(".pts"))
            if f.name == miss:
                self.miss_shape = shape
        self.offset = np.array(offset)

    def load_image(self, path):
        return cv2.imread(str(path))

    def detect(self, image):
        if image.shape[:2] == self.miss_shape:
            return []
        box = geometry.box_from_points(self.gt[image.shape[:2]])
        return [Detection(box=(0, 0, 5, 5)), Detection(box=box)]  # a far-away face first, then the right one

    def frame_for(self, det):
        return det

    def landmarks_in_frames(self, jobs):
        pts = [self.gt[image.shape[:2]] + self.offset for image, _ in jobs]
        return pts, [np.ones(68) for _ in jobs]


# -- metrics ---------------------------------------------------------------------------------------------
def test_perfect_prediction_has_zero_nme_and_full_auc():
    gt = np.random.default_rng(0).uniform(0, 100, (5, 68, 2))
    errs = metrics.nme(gt, gt)
    assert np.allclose(errs, 0)
    s = evaluate.summarise(errs)
    assert s.nme_pct == 0 and s.fr_pct == 0 and s.auc == pytest.approx(1.0) and s.detection_rate_pct == 100


def test_known_offset_gives_known_nme():
    gt = np.zeros((2, 68, 2))
    gt[:, 45, 0] = 100.0  # outer eye corners 100 px apart
    pred = gt + np.array([3.0, 4.0])  # 5 px everywhere -> 5 %
    assert np.allclose(metrics.nme(pred, gt), 0.05)
    s = evaluate.summarise(metrics.nme(pred, gt))
    assert s.nme_pct == pytest.approx(5.0) and s.fr_pct == 0
    assert s.auc == pytest.approx(0.5, abs=2e-3)  # CED is a step at 5 % of a 10 % range


def test_missed_faces_count_as_failures_but_not_in_mean_nme():
    s = evaluate.summarise(np.array([0.02, 0.04, math.inf, 0.2]))
    assert s.faces == 4 and s.detected == 3 and s.detection_rate_pct == 75
    assert s.nme_pct == pytest.approx((2 + 4 + 20) / 3)
    assert s.fr_pct == 50  # the miss and the 20 % face
    assert 0 < s.auc < 0.5


def test_match_box_prefers_overlapping_nearest_centre():
    ref = (100, 100, 200, 200)
    boxes = [(0, 0, 50, 50), (120, 110, 220, 210), (102, 98, 198, 202)]
    assert match_box(boxes, ref, evaluate.MATCH_IOU) == 2
    assert match_box([(0, 0, 50, 50)], ref, evaluate.MATCH_IOU) is None
    assert box_iou(ref, ref) == 1.0


def test_parse_folder_spec_and_held_out(face_folder):
    assert evaluate.parse_folder_spec("a/b:0.25") == (Path("a/b"), 0.25)
    assert evaluate.parse_folder_spec("a/b", 0.5) == (Path("a/b"), 0.5)
    assert evaluate.parse_folder_spec(str(face_folder)) == (face_folder, None)
    from facealign_sdk.training.data import is_held_out

    files = evaluate.select_images(face_folder)
    held = [f for f in files if is_held_out(f, 0.9)]
    if held:
        assert evaluate.select_images(face_folder, 0.9) == held
    assert len(evaluate.select_images(face_folder, limit=2)) == 2


# -- the evaluation loop with a fake aligner: exact numbers ------------------------------------------------
def test_evaluate_folder_exact_with_fake_aligner(face_folder):
    for mode in evaluate.MODES:
        r = evaluate.evaluate_folder(FakeAligner(face_folder), face_folder, mode, progress=False)
        assert r.summary.faces == 3 and r.summary.nme_pct == 0 and r.summary.auc == pytest.approx(1.0)
    # shift by 3 % of the outer-eye-corner distance (0.6 * side, see face_shape)
    fake = FakeAligner(face_folder)
    eye = np.linalg.norm(fake.gt[next(iter(fake.gt))][45] - fake.gt[next(iter(fake.gt))][36])
    r = evaluate.evaluate_folder(FakeAligner(face_folder, (0.03 * eye, 0.0)), face_folder, "fixed", progress=False)
    assert r.items[0].nme == pytest.approx(0.03)


def test_missed_detection_is_reported(face_folder):
    r = evaluate.evaluate_folder(FakeAligner(face_folder, miss="face1.jpg"), face_folder, "end2end", progress=False)
    missed = [it for it in r.items if not it.detected]
    assert [it.image for it in missed] == ["face1.jpg"] and missed[0].nme is None
    assert r.summary.detected == 2 and r.summary.fr_pct == pytest.approx(100 / 3)
    assert math.isinf(r.errors()[1])


# -- the command line with the tiny (random-weight) model ---------------------------------------------------
def test_cli_eval_writes_table_json_and_ced(face_folder, tiny_model, tmp_path, eval_cli, capsys):
    out_json, out_png = tmp_path / "eval.json", tmp_path / "ced.png"
    args = ["eval", str(face_folder), "--model", str(tiny_model), "--backend", "torch", "--json", str(out_json),
            "--no-progress"]
    if has_module("matplotlib"):
        args += ["--ced", str(out_png)]
    assert eval_cli(args) == 0
    stdout = capsys.readouterr().out
    assert "| set | faces | detected % | NME % (detected) | FR@10 % | AUC@10 |" in stdout
    assert "(end2end)" in stdout and "(fixed)" in stdout
    report = json.loads(out_json.read_text())
    assert [r["mode"] for r in report["results"]] == ["end2end", "fixed"]
    for r in report["results"]:
        assert r["summary"]["faces"] == 3 and len(r["items"]) == 3
        assert {it["image"] for it in r["items"]} == {"face0.jpg", "face1.jpg", "face2.jpg"}
        assert all(it["nme"] is None or it["nme"] >= 0 for it in r["items"])
    if has_module("matplotlib"):
        assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_ced_from_errors(tmp_path):
    pytest.importorskip("matplotlib")
    path = evaluate.plot_ced({"a": [0.01, 0.05, math.inf], "b": [0.02]}, tmp_path / "sub" / "c.png")
    assert path.stat().st_size > 1000


def _copy_folder(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _bad_case(kind: str, good: Path, tmp: Path) -> tuple[Path, str]:
    """A broken copy of the face folder and the file name the error must mention."""
    folder = _copy_folder(good, tmp / kind)
    if kind == "wrong_count":
        write_pts(folder / "face1.pts", np.zeros((5, 2)))
        return folder, "face1.pts"
    if kind == "unreadable_image":
        (folder / "face2.jpg").write_bytes(b"not an image")
        return folder, "face2.jpg"
    if kind in ("coinciding_eye_corners", "points_outside"):
        from facealign_sdk.pts import read_pts

        pts = read_pts(folder / "face1.pts")
        if kind == "coinciding_eye_corners":
            pts[45] = pts[36]
        else:
            pts[8] = (pts[8, 0], 1e5)  # far below the image
        write_pts(folder / "face1.pts", pts)
        return folder, "face1.pts"
    if kind == "missing_pts":
        (folder / "face0.pts").unlink()
        return folder, "face0.jpg"
    if kind in ("n_points_not_a_number", "one_column_pts"):  # both were tracebacks (exit 1)
        lines = (folder / "face1.pts").read_text().splitlines()
        if kind == "n_points_not_a_number":
            lines[1] = "n_points: sixty-eight"
        else:
            lines[3:-1] = [line.split()[0] for line in lines[3:-1]]
        (folder / "face1.pts").write_text("\n".join(lines) + "\n")
        return folder, "face1.pts"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["wrong_count", "unreadable_image", "missing_pts", "coinciding_eye_corners",
                                  "points_outside", "n_points_not_a_number", "one_column_pts"])
def test_bad_item_exits_2_naming_the_file(kind, face_folder, tiny_model, tmp_path, eval_cli, capsys):
    folder, name = _bad_case(kind, face_folder, tmp_path)
    args = ["eval", str(folder), "--model", str(tiny_model), "--backend", "torch", "--no-progress", "--mode", "fixed"]
    assert eval_cli(args) == 2
    err = capsys.readouterr().err
    assert name in err and "error" in err
    # --skip-bad: the bad item is reported and the rest evaluated
    assert eval_cli(args + ["--skip-bad", "--json", str(tmp_path / "r.json")]) == 0
    assert name in capsys.readouterr().err
    result = json.loads((tmp_path / "r.json").read_text())["results"][0]
    assert result["summary"]["faces"] == 2 and name in result["skipped"][0]


def test_empty_and_missing_folder_exit_2(tmp_path, tiny_model, eval_cli, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    for folder, words in ((empty, "no images"), (tmp_path / "missing", "no such folder")):
        assert eval_cli(["eval", str(folder), "--model", str(tiny_model), "--backend", "torch"]) == 2
        err = capsys.readouterr().err
        assert str(folder) in err and words in err


def test_a_bad_held_out_share_names_both_ways_to_give_it(face_folder, tiny_model, eval_cli, capsys):
    assert eval_cli(["eval", f"{face_folder}:2", "--model", str(tiny_model), "--backend", "torch"]) == 2
    assert "FOLDER:FRACTION or --held-out-only" in capsys.readouterr().err  # named only --held-out-only


def test_dlib_baseline_helpers_without_dlib(monkeypatch):
    """The benchmark's pure helpers: upsampling rule and the dlib-like box (dlib itself is not needed)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("baselines", SAMPLES.parent / "benchmarks" / "baselines.py")
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "baselines", mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    assert mod.upsample_for(np.zeros((150, 120, 3))) == 2
    assert mod.upsample_for(np.zeros((250, 200, 3))) == 1
    assert mod.upsample_for(np.zeros((480, 640, 3))) == 0
    pts = face_shape((100, 100, 200, 200))
    x1, y1, x2, y2 = mod.dlib_box_from_points(pts)
    assert x2 - x1 == pytest.approx(y2 - y1) and x1 < pts[36, 0] < pts[45, 0] < x2


@pytest.mark.parametrize("span, shown", [(1.0, "1 x 0"), (1.996, "1.99 x 0")])
def test_points_in_one_place_say_a_span_below_the_limit(span, shown):
    """The refusal's span is rounded down: a span just under the limit never reads as the limit itself."""
    from facealign_sdk.pts import MIN_SPAN_PX, PtsError, check_points_in_image

    points = np.full((68, 2), 100.0)
    points[:, 0] += np.linspace(0, span, 68)
    with pytest.raises(PtsError, match=f"x\\.pts: its 68 points span {shown} px, not a face \\(at least "
                                       f"{MIN_SPAN_PX:g} px\\)"):
        check_points_in_image(points, np.zeros((200, 200, 3), np.uint8), Path("x.jpg"))
