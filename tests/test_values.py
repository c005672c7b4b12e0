"""Values, not shapes: outputs equal the Python API's numbers, conversions and drawings by value,
the mirror order against a real face, training crops equal runtime crops.

Each test here was written against a specific wrong change (named in its docstring) that the rest of
the suite did not notice.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from facealign_sdk import Aligner, geometry
from facealign_sdk.cli import main as cli
from facealign_sdk.detectors.base import Detection
from facealign_sdk.imageio import to_bgr8
from facealign_sdk.results import FaceLandmarks, draw_faces
from facealign_sdk.schemes import FLIP_68

from .conftest import SAMPLES

CLIP = SAMPLES / "clip.mp4"


@pytest.fixture(scope="module")
def released() -> Aligner:
    return Aligner()


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _points_from_row(row: dict[str, str], n: int = 68) -> np.ndarray:
    return np.array([[float(row[f"x_{i}"]), float(row[f"y_{i}"])] for i in range(n)])


# -- image command outputs ---------------------------------------------------------------------


def test_image_csv_and_json_equal_the_api(released, tmp_path):
    """x and y in the right columns (not swapped, not x twice), to the printed precision; no rounding to integers."""
    image = SAMPLES / "two_faces.jpg"
    faces = released.align(image)
    assert len(faces) == 2
    out_csv, out_json = tmp_path / "r.csv", tmp_path / "r.json"
    assert cli.main(["image", str(image), "--out", str(out_csv)]) == 0
    assert cli.main(["image", str(image), "--out", str(out_json)]) == 0
    rows = _csv_rows(out_csv)
    assert [int(r["face_id"]) for r in rows] == [0, 1]
    for row, face in zip(rows, faces):
        np.testing.assert_allclose(_points_from_row(row), face.points, atol=5e-4)
        np.testing.assert_allclose([float(row[f"c_{i}"]) for i in range(68)], face.confidence, atol=5e-5)
        np.testing.assert_allclose([float(row[k]) for k in ("x1", "y1", "x2", "y2")], face.box, atol=5e-3)
    doc = json.loads(out_json.read_text())
    assert len(doc) == 1 and len(doc[0]["faces"]) == len(faces) == len(rows)
    for got, face in zip(doc[0]["faces"], faces):
        pts = np.array(got["points"])
        np.testing.assert_allclose(pts, face.points, atol=5e-4)
        np.testing.assert_allclose(got["confidence"], face.confidence, atol=5e-4)
        assert np.abs(pts - np.round(pts)).max() > 0.05, "points were rounded to integers"


def test_image_drawing_shows_the_points(released, tmp_path):
    """The --draw file is the image with the API's points drawn where they are."""
    image_path = SAMPLES / "face.jpg"
    assert cli.main(["image", str(image_path), "--draw", str(tmp_path), "--out", str(tmp_path / "r.json")]) == 0
    drawn = cv2.imread(str(tmp_path / "face_landmarks.jpg"))
    original = cv2.imread(str(image_path))
    face = released.align(original)[0]
    assert drawn.shape == original.shape

    def greenness(img: np.ndarray) -> np.ndarray:
        img = img.astype(int)
        return img[..., 1] - np.maximum(img[..., 0], img[..., 2])

    confident = face.points[face.confidence >= 0.3].round().astype(int)
    assert len(confident) > 40
    at_points_drawn = greenness(drawn)[confident[:, 1], confident[:, 0]]
    at_points_original = greenness(original)[confident[:, 1], confident[:, 0]]
    assert np.median(at_points_drawn) > 80 and np.median(at_points_original) < 30


@pytest.mark.parametrize("side", [200, 600, 800])
def test_draw_faces_pixels(side):
    """Points in green where confident (from 0.3 up), red where not, the box in its colour; dots and lines
    grow with the image (radius 2 and line 1 px below 600 px, radius 3 and 2 px from 600 to 1000 px); the
    input untouched."""
    k = side // 200
    image = np.full((side, side, 3), 40, np.uint8)
    points = np.array([[50.0, 60.0], [150.0, 140.0], [100.0, 60.0]]) * k
    face = FaceLandmarks(box=(20 * k, 30 * k, 180 * k, 170 * k), score=0.9, points=points,
                         confidence=np.array([0.9, 0.1, 0.3]))
    out = draw_faces(image, [face])
    assert (image == 40).all()
    x, y = (int(v) for v in points[0])
    np.testing.assert_array_equal(out[y, x], [0, 255, 0])
    np.testing.assert_array_equal(out[int(points[1, 1]), int(points[1, 0])], [0, 0, 255])
    np.testing.assert_array_equal(out[int(points[2, 1]), int(points[2, 0])], [0, 255, 0])  # 0.3 counts as confident
    radius = 2 if side < 600 else 3
    np.testing.assert_array_equal(out[y, x + radius], [0, 255, 0])
    np.testing.assert_array_equal(out[y, x + radius + 2], [40, 40, 40])
    line = 1 if side < 600 else 2
    mid = 100 * k
    np.testing.assert_array_equal(out[30 * k + line - 1, mid], [255, 160, 0])  # top edge of the box
    np.testing.assert_array_equal(out[30 * k + line + 1, mid], [40, 40, 40])
    np.testing.assert_array_equal(out[100 * k, mid], [40, 40, 40])  # nothing drawn inside


# -- video command outputs ---------------------------------------------------------------------


def test_push_frame_tracker_equals_track(released):
    """``aligner.tracker().update(frame, timestamp)`` gives exactly what ``aligner.track(path)`` gives."""
    import cv2

    expected = list(released.track(CLIP, max_frames=5))
    capture = cv2.VideoCapture(str(CLIP))
    tracker = released.tracker()
    for result in expected:
        ok, frame = capture.read()
        assert ok
        got = tracker.update(frame, result.timestamp)
        assert [f.face_id for f in got.faces] == [f.face_id for f in result.faces]
        for g, e in zip(got.faces, result.faces):
            np.testing.assert_array_equal(g.landmarks.points, e.landmarks.points)
    capture.release()


def test_video_csv_and_json_equal_the_api(released, tmp_path):
    """The video CSV/JSON rows are the ``track`` results: x in x_*, y in y_*, frame numbers 1-based in CSV."""
    frames = 6
    expected = list(released.track(CLIP, max_frames=frames))
    out_csv, out_json = tmp_path / "v.csv", tmp_path / "v.json"
    assert cli.main(["video", str(CLIP), "--out", str(out_csv), "--json", str(out_json), "--max-frames", str(frames),
                     "--no-progress"]) == 0
    rows = _csv_rows(out_csv)
    doc = json.loads(out_json.read_text())
    assert len(doc["frames"]) == frames
    faces = [(r, f) for r in expected for f in r.faces]
    assert len(rows) == len(faces) > 0
    for row, (result, face) in zip(rows, faces):
        assert int(row["frame"]) == result.frame + 1 and int(row["face_id"]) == face.face_id
        np.testing.assert_allclose(_points_from_row(row), face.landmarks.points, atol=5e-3)
        assert float(row["timestamp"]) == pytest.approx(result.timestamp, abs=5e-4)
    for got, result in zip(doc["frames"], expected):
        assert len(got["faces"]) == len(result.faces)
        for gface, face in zip(got["faces"], result.faces):
            np.testing.assert_allclose(np.array(gface["landmarks"]["points"]), face.landmarks.points, atol=5e-4)


# -- conversions by value ----------------------------------------------------------------------


def test_16bit_float_and_grey_conversions_by_value():
    """16-bit full scale stays full scale (not /256 wrapping 65535 to 0); float [0, 1] -> 0..255; grey -> 3 equal channels."""
    u16 = np.array([[0, 257, 32896, 65535]], np.uint16)
    np.testing.assert_array_equal(to_bgr8(u16)[0, :, 0], [0, 1, 128, 255])
    f = np.array([[0.0, 0.5, 1.0]], np.float32)
    np.testing.assert_array_equal(to_bgr8(f)[0, :, 1], [0, 128, 255])
    grey = np.array([[3, 200]], np.uint8)
    out = to_bgr8(grey)
    assert out.shape == (1, 2, 3) and (out == grey[..., None]).all()
    bgra = np.array([[[10, 20, 30, 0]]], np.uint8)
    np.testing.assert_array_equal(to_bgr8(bgra)[0, 0], [10, 20, 30])  # alpha dropped, channel order kept
    rgb16 = np.zeros((1, 1, 3), np.uint16)
    rgb16[..., 2] = 65535
    np.testing.assert_array_equal(to_bgr8(rgb16)[0, 0], [0, 0, 255])


# -- max_faces -----------------------------------------------------------------------------------


class _ScriptedDetector:
    """Returns fixed detections, deliberately not sorted by score."""

    def __init__(self, detections: list[Detection]) -> None:
        self.detections = detections

    def detect(self, image: np.ndarray) -> list[Detection]:
        return list(self.detections)


def test_max_faces_keeps_the_best_scoring_faces(tiny_model):
    dets = [Detection(box=(0, 0, 40, 40), score=0.5), Detection(box=(60, 0, 100, 40), score=0.95),
            Detection(box=(0, 60, 40, 100), score=0.7)]
    aligner = Aligner(tiny_model, backend="torch", detector=_ScriptedDetector(dets), max_faces=2)
    kept = aligner.detect(np.zeros((120, 120, 3), np.uint8))
    assert [d.score for d in kept] == [0.95, 0.7]
    faces = aligner.align(np.zeros((120, 120, 3), np.uint8))
    assert [f.score for f in faces] == [0.95, 0.7]


# -- mirror order ----------------------------------------------------------------------------------


def _frontal_faces(shared_data: Path, count: int = 40) -> list[np.ndarray]:
    from facealign_sdk.pts import read_pts
    from facealign_sdk.training.data import turned_face_ratio

    faces = []
    for pts in sorted((shared_data / "300w" / "val").glob("*.pts")):
        points = read_pts(pts, 68)
        if turned_face_ratio(points) > 0.8:
            faces.append(points)
        if len(faces) == count:
            break
    return faces


def test_mirror_order_matches_a_real_face(shared_data):
    """Mirroring a near-frontal annotated face and re-ordering its points with FLIP_68 must give back
    (nearly) the same face: each point lands on its own counterpart (e.g. nostril 31 <-> 35)."""
    faces = _frontal_faces(shared_data)
    assert len(faces) >= 10
    errors = []
    for points in faces:
        mirrored = points[FLIP_68] * [-1, 1]
        # the best similarity transform onto the original absorbs the face's roll and position
        m, _ = cv2.estimateAffinePartial2D(mirrored.astype(np.float32), points.astype(np.float32), method=cv2.LMEDS)
        aligned = mirrored @ m[:, :2].T + m[:, 2]
        errors.append(np.linalg.norm(aligned - points, axis=1) / np.linalg.norm(points[36] - points[45]))
    per_point = np.mean(errors, axis=0)
    # measured with the right order: jaw <= 0.09, other points <= 0.043 inter-ocular distances; nostrils
    # mapped to themselves give 0.36, two eye corners or two lip points swapped 0.11-0.14
    limits = np.where(np.arange(68) < 17, 0.12, 0.06)
    wrong = np.where(per_point > limits)[0].tolist()
    assert not wrong, f"points {wrong} do not mirror onto their pairs ({per_point[wrong].round(3).tolist()})"
    assert sorted(FLIP_68.tolist()) == list(range(68))
    assert (FLIP_68[FLIP_68] == np.arange(68)).all()


# -- training crops are runtime crops ------------------------------------------------------------


class _CapturingBackend:
    """Wraps a backend and keeps the last batch it was given."""

    def __init__(self, inner) -> None:
        self.inner, self.last = inner, None
        self.name, self.num_landmarks = inner.name, inner.num_landmarks
        self.outputs_points = False

    def run(self, batch: np.ndarray) -> np.ndarray:
        self.last = batch.copy()
        return self.inner.run(batch)


def test_training_crop_equals_runtime_crop(tiny_model, face_image):
    """The same face box gives the same network input in training (landmark_sample + heatmap_batch) and at
    run time (Aligner): same geometry, same RGB order, same scaling."""
    from facealign_sdk.nets import NetConfig
    from facealign_sdk.training.data import Annotated, landmark_sample
    from facealign_sdk.training.landmarks import heatmap_batch

    aligner = Aligner(tiny_model, backend="torch", detector=None)
    capture = _CapturingBackend(aligner.backend)
    aligner.backend = capture
    # any 68 points will do: the crop depends only on the box derived from them
    rng = np.random.default_rng(0)
    h, w = face_image.shape[:2]
    points = np.column_stack([rng.uniform(0.3 * w, 0.7 * w, 68), rng.uniform(0.3 * h, 0.7 * h, 68)])
    item = Annotated(face_image, points, "face")
    crop, crop_points = landmark_sample(item, 256, None)
    x, _ = heatmap_batch([crop], [crop_points], NetConfig(width=8))
    aligner.align(face_image, boxes=[geometry.box_from_points(points)])
    np.testing.assert_allclose(capture.last, x.numpy(), atol=1e-6)
    # and the colour order is RGB: the first channel is the image's red
    frame = geometry.frame_from_box(geometry.box_from_points(points))
    bgr = geometry.warp_crop(face_image, frame, 256)
    np.testing.assert_allclose(capture.last[0, 0], bgr[..., 2] / 255.0, atol=1e-6)


# -- video drawing ----------------------------------------------------------------------------------


def _frame_result(width: int, height: int, box=(100.0, 120.0, 220.0, 260.0), face_id: int = 7):
    from facealign_sdk.video import FrameResult
    from facealign_sdk.video.results import TrackedFace

    points = np.column_stack([np.linspace(box[0] + 10, box[2] - 10, 68), np.linspace(box[1] + 10, box[3] - 10, 68)])
    lm = FaceLandmarks(box=box, score=0.9, points=points, confidence=np.full(68, 0.9))
    return FrameResult(frame=0, timestamp=0.0, width=width, height=height,
                       faces=[TrackedFace(face_id=face_id, detected=True, success=True, landmarks=lm)])


@pytest.mark.parametrize("side, top", [(400, 120.0), (600, 120.0), (1600, 480.0), (400, 4.0), (1600, 4.0)])
def test_video_face_id_label_exactly(side, top):
    """The label by value: 'id N' in Hershey simplex at scale max(0.5, side/800), strokes max(1, round(side/400))
    px, anti-aliased, in the box colour, its baseline 8 px above the box but at least 20*scale px from the top."""
    from facealign_sdk.video.writers import draw_frame

    image = np.full((side, side, 3), 40, np.uint8)
    box = (side / 4, top, side / 2, side / 2)
    result = _frame_result(side, side, box)
    scale = max(0.5, side / 800)
    expected = draw_faces(image, [result.faces[0].landmarks])
    cv2.putText(expected, "id 7", (int(box[0]), max(int(20 * scale), int(top) - 8)), cv2.FONT_HERSHEY_SIMPLEX,
                scale, (255, 160, 0), max(1, round(side / 400)), cv2.LINE_AA)
    np.testing.assert_array_equal(draw_frame(image, result), expected)


def test_draw_writer_writes_every_frame_at_its_size(tmp_path):
    """The --draw video has one frame per result, at the source size; a frame whose image is missing
    (an unreadable file in a folder) is black; images of another size are fitted with their points."""
    from facealign_sdk.video import SourceInfo
    from facealign_sdk.video.writers import DrawWriter

    info = SourceInfo(source="x", kind="folder", width=320, height=240, fps=10.0, frame_count=3)
    path = tmp_path / "out.mp4"
    writer = DrawWriter(path, info)
    bright = np.full((240, 320, 3), 200, np.uint8)
    writer.write(_frame_result(320, 240, (40.0, 40.0, 140.0, 160.0)), bright)
    writer.write(_frame_result(320, 240), None)
    writer.write(_frame_result(640, 480, (80.0, 80.0, 280.0, 320.0)), np.full((480, 640, 3), 200, np.uint8))
    writer.close()
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    assert len(frames) == 3 and all(f.shape == (240, 320, 3) for f in frames)
    assert frames[1].mean() < 40  # black, apart from the drawing
    assert frames[0].mean() > 150
    # the resized frame's drawing (box and points scaled by 1/2) is the first frame's drawing
    from facealign_sdk.video.writers import draw_frame

    expected = draw_frame(bright, _frame_result(320, 240, (40.0, 40.0, 140.0, 160.0)))
    box_colour = (expected[..., 0] > 200) & (expected[..., 1] > 120) & (expected[..., 2] < 60)
    green = (expected[..., 1] > 200) & (expected[..., 0] < 60) & (expected[..., 2] < 60)
    for frame in (frames[0], frames[2]):
        got = (frame[..., 0] > 170) & (frame[..., 1] > 100) & (frame[..., 2] < 110)
        assert (got & box_colour).sum() > 0.6 * box_colour.sum()
        got_green = (frame[..., 1] > 170) & (frame[..., 0] < 110) & (frame[..., 2] < 110)
        assert (got_green & green).sum() > 0.6 * green.sum()


def test_csv_text_ends_lines_with_newline_and_quotes_where_needed():
    from facealign_sdk.csvformat import csv_text

    assert csv_text([["frame", "x_0"], [1, 'a,"b"']]) == 'frame,x_0\n1,"a,""b"""\n'


def test_a_given_pose_is_kept_and_none_means_unknown():
    """``FaceLandmarks(..., pose=...)`` (a HeadPose or its dict, as JSON gives it back) is not re-estimated."""
    from facealign_sdk.facecrop import template_points
    from facealign_sdk.headpose import HeadPose

    args = dict(box=(100.0, 100.0, 300.0, 300.0), score=0.9, points=template_points("68", 200) + 100,
                confidence=np.ones(68), image_size=(400, 400))
    estimated = FaceLandmarks(**args).pose
    assert isinstance(estimated, HeadPose)
    given = HeadPose(yaw=10.0, pitch=-5.0, roll=2.0, rotation_vector=(0.1, 0.2, 0.0),
                     translation_vector=(0.0, 0.0, 500.0))
    assert FaceLandmarks(**args, pose=given.model_dump()).pose == given
    assert FaceLandmarks(**args, pose=None).pose is None
