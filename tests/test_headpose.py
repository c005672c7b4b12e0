"""Head pose by value: synthetic views of the mean face at known poses come back; signs read as documented;
bad landmarks are PoseErrors; the mean face table is what its derivation gives."""

from __future__ import annotations

import importlib.util
import itertools
import json

import numpy as np
import pytest

from facealign_sdk import Aligner
from facealign_sdk.errors import InputError
from facealign_sdk.geometry import eye_centers_68, roll_from_eyes
from facealign_sdk.headpose import (PoseError, angles_from_rotation, camera_matrix, estimate_head_pose,
                                    head_pose_or_none, project_mean_face, rotation_from_angles)
from facealign_sdk.meanface import MEAN_FACE_68
from facealign_sdk.schemes import FLIP_68

from .conftest import REPO

SIZE = (640, 480)
TRANSLATION = (15.0, -10.0, 500.0)  # mm: eye corners ~115 px apart at f = 640
POSES = list(itertools.product([-75, -40, 0, 30, 60], [-30, 0, 25], [-20, 0, 15]))


def _view(yaw: float, pitch: float, roll: float, size=SIZE, focal=None) -> np.ndarray:
    return project_mean_face(rotation_from_angles(yaw, pitch, roll), TRANSLATION, camera_matrix(size, focal))


def _angles(pose) -> np.ndarray:
    return np.array([pose.yaw, pose.pitch, pose.roll])


def test_exact_views_give_their_pose_back():
    for yaw, pitch, roll in POSES:
        pose = estimate_head_pose(_view(yaw, pitch, roll), SIZE)
        np.testing.assert_allclose(_angles(pose), [yaw, pitch, roll], atol=1e-4)
        np.testing.assert_allclose(pose.translation_vector, TRANSLATION, atol=1e-3)
        np.testing.assert_allclose(pose.rotation_matrix, rotation_from_angles(yaw, pitch, roll), atol=1e-6)


def test_noisy_views_within_half_a_degree():
    rng = np.random.default_rng(0)
    worst = 0.0
    for yaw, pitch, roll in POSES:
        points = _view(yaw, pitch, roll) + rng.normal(0.0, 0.3, (68, 2))
        worst = max(worst, np.abs(_angles(estimate_head_pose(points, SIZE)) - [yaw, pitch, roll]).max())
    assert worst < 0.5


def test_focal_length_is_the_image_width_unless_given():
    points = _view(20, -10, 5, focal=1500.0)
    np.testing.assert_allclose(_angles(estimate_head_pose(points, SIZE, focal_length=1500.0)), [20, -10, 5], atol=1e-4)
    assert np.abs(_angles(estimate_head_pose(points, SIZE)) - [20, -10, 5]).max() > 0.01  # another camera


def test_signs_read_as_a_viewer_sees_them():
    def nose_from_jaw_ends(view: np.ndarray) -> np.ndarray:
        return view[30] - view[[0, 16]].mean(0)

    front = nose_from_jaw_ends(_view(0, 0, 0))
    assert nose_from_jaw_ends(_view(30, 0, 0))[0] > front[0] + 10  # yaw > 0: the nose moves right
    assert nose_from_jaw_ends(_view(0, 20, 0))[1] < front[1] - 10  # pitch > 0: looking up
    tilted = _view(0, 0, 12)
    assert tilted[45, 1] > tilted[36, 1]  # roll > 0: the image-right eye lower
    assert np.degrees(roll_from_eyes(*eye_centers_68(tilted))) == pytest.approx(12, abs=0.5)


def test_angles_and_rotation_round_trip():
    for angles in [(0, 0, 0), (89, -45, 170), (-30, 60, -100), (10, 20, 30)]:
        np.testing.assert_allclose(angles_from_rotation(rotation_from_angles(*angles)), angles, atol=1e-9)


@pytest.mark.parametrize("points, message", [
    (np.full((68, 2), 50.0), "degenerate"),
    (np.full((68, 2), np.nan), "NaN"),
    (np.zeros((5, 2)), r"\(68, 2\)"),
    (np.random.default_rng(0).uniform(0, 200, (68, 2)), "not a face"),
    (np.stack([np.linspace(10, 190, 68), np.linspace(20, 100, 68)], 1), "not a face"),
    ("no points", r"\(68, 2\)"),
])
def test_degenerate_landmarks_are_pose_errors(points, message):
    with pytest.raises(PoseError, match=message):
        estimate_head_pose(points, (200, 200))
    assert head_pose_or_none(points if isinstance(points, np.ndarray) else np.zeros(3), (200, 200)) is None


def test_bad_camera_is_a_pose_error():
    assert issubclass(PoseError, InputError)
    with pytest.raises(PoseError, match="image_size"):
        estimate_head_pose(_view(0, 0, 0), (0, 480))
    with pytest.raises(PoseError, match="focal_length"):
        estimate_head_pose(_view(0, 0, 0), SIZE, focal_length=float("nan"))


def test_mean_face_is_symmetric_with_its_origin_at_the_nose_tip():
    np.testing.assert_allclose(MEAN_FACE_68[FLIP_68] * [-1, 1, 1], MEAN_FACE_68, atol=1e-9)
    np.testing.assert_array_equal(MEAN_FACE_68[30], [0, 0, 0])
    assert np.linalg.norm(MEAN_FACE_68[45] - MEAN_FACE_68[36]) == pytest.approx(90.0, abs=0.1)
    assert (MEAN_FACE_68[:, 2] >= 0).all()  # the nose tip is the point nearest to the camera


def test_mean_face_table_is_its_derivation(shared_data):
    folder = shared_data / "aflw2000" / "train"
    if not folder.is_dir():
        pytest.skip("aflw2000/train is not present")
    spec = importlib.util.spec_from_file_location("derive_mean_face", REPO / "benchmarks" / "derive_mean_face.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    np.testing.assert_allclose(module.derive(folder), MEAN_FACE_68, atol=0.051)


def test_aligner_results_carry_their_pose(face_image):
    face = Aligner().align(face_image)[0]
    height, width = face_image.shape[:2]
    assert face.pose == estimate_head_pose(face.points, (width, height))
    assert abs(face.pose.yaw) < 30 and abs(face.pose.pitch) < 30 and abs(face.pose.roll) < 10  # a frontal face
    doc = json.loads(json.dumps(face.to_dict(), allow_nan=False))
    assert doc["pose"]["yaw"] == round(face.pose.yaw, 3)
    np.testing.assert_allclose(doc["pose"]["translation_vector"], face.pose.translation_vector, atol=1e-5)


def test_the_pose_is_estimated_when_first_read_and_then_kept(face_image, monkeypatch):
    """Results estimate their head pose (a cv2.solvePnP) only when it is read, once; a given pose is kept."""
    from facealign_sdk import results

    calls = []

    def counted(points, size):
        calls.append(size)
        return head_pose_or_none(points, size)

    monkeypatch.setattr(results, "head_pose_or_none", counted)
    face = Aligner().align(face_image)[0]
    assert calls == []
    height, width = face_image.shape[:2]
    first = face.pose
    assert face.pose is first and first == estimate_head_pose(face.points, (width, height))
    assert face.to_dict()["pose"] == first.model_dump() and calls == [(width, height)]
    given = results.FaceLandmarks(box=face.box, score=face.score, points=face.points, confidence=face.confidence,
                                  image_size=(width, height), pose=None)
    assert given.pose is None and given.to_dict()["pose"] is None and len(calls) == 1
    assert results.FaceLandmarks(box=face.box, score=face.score, points=face.points,
                                 confidence=face.confidence).pose is None  # no image size: no camera, no pose


def test_tracked_faces_carry_their_pose():
    results = list(Aligner().track(REPO / "samples" / "clip.mp4", max_frames=3))
    faces = [(r, f) for r in results for f in r.faces]
    assert faces
    for result, face in faces:
        lm = face.landmarks
        assert lm.pose == estimate_head_pose(lm.points, (result.width, result.height))


@pytest.mark.parametrize("yaw, pitch", [(0, 0), (30, 0), (45, 20), (-50, -15)])
def test_mirrored_points_are_pose_errors(yaw, pitch):
    # a flipped image with its points not swapped: was a pose of a face seen from behind (pitch ~ -176,
    # roll ~ 180) that passed the reprojection check
    view = _view(yaw, pitch, 0)
    mirrored = np.stack([2 * view[:, 0].mean() - view[:, 0], view[:, 1]], 1)
    with pytest.raises(PoseError, match="turned away from the camera"):
        estimate_head_pose(mirrored, SIZE)
    assert head_pose_or_none(mirrored, SIZE) is None
    assert head_pose_or_none(view, SIZE) is not None


def test_faces_turned_away_are_pose_errors_and_profiles_are_not():
    assert estimate_head_pose(_view(89, 0, 0), SIZE).yaw == pytest.approx(89, abs=1e-4)
    for yaw in (125, 180):
        with pytest.raises(PoseError, match="turned away"):
            estimate_head_pose(_view(yaw, 0, 0), SIZE)


@pytest.mark.parametrize("size, focal, message", [
    (("640", "x"), None, "image_size"),  # were ValueError / TypeError from float()
    (None, None, "image_size"),
    ((True, True), None, "image_size"),  # was a 1 x 1 image
    (SIZE, "x", "focal_length"),
    (SIZE, True, "focal_length"),  # was a focal length of 1 px
])
def test_camera_arguments_of_the_wrong_type_are_pose_errors(size, focal, message):
    with pytest.raises(PoseError, match=message):
        estimate_head_pose(_view(0, 0, 0), size, focal_length=focal)


def test_every_annotated_face_of_the_shared_sets_has_a_pose(shared_data):
    """The bounds that tell points from non-faces (reprojection error, view angle) pass every real face."""
    from facealign_sdk.imageheader import read_header
    from facealign_sdk.pts import read_pts

    folders = [shared_data / name for name in ("aflw2000/train", "300w/val", "ytf68/val")]
    if not all(f.is_dir() for f in folders):
        pytest.skip("the annotated sets are not all present")
    for folder in folders:
        for pts in sorted(folder.glob("*.pts")):
            header = read_header(pts.with_suffix(".jpg").read_bytes())
            assert head_pose_or_none(read_pts(pts), (header.width, header.height)) is not None, pts
