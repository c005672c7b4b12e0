"""The tracker's decisions on a scripted world: when it re-detects, when lost faces expire, ids.

A fake aligner stands in for the detector and the network only: it reports the scripted faces
(their points, confidence and detections); the tracker under test is the real ``FaceTracker``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facealign_sdk import geometry
from facealign_sdk.detectors.base import Detection
from facealign_sdk.video import FaceTracker, TrackOptions, VideoFrame

FPS = 10.0
TEMPLATE = np.random.default_rng(0).uniform(-0.5, 0.5, (68, 2))


@dataclass
class Face:
    centre: tuple[float, float]
    size: float = 60.0
    confidence: float = 0.9
    detectable: bool = True
    score: float = 0.9

    @property
    def points(self) -> np.ndarray:
        return np.asarray(self.centre) + self.size * TEMPLATE


@dataclass
class ScriptedAligner:
    """Faces per frame index; counts detector calls per frame."""

    world: dict[int, list[Face]]
    max_faces: int | None = None
    detect_calls: list[int] = field(default_factory=list)

    @staticmethod
    def frame_index(image: np.ndarray) -> int:
        return int(image[0, 0, 0])

    def detect(self, image: np.ndarray) -> list[Detection]:
        idx = self.frame_index(image)
        self.detect_calls.append(idx)
        dets = [Detection(box=geometry.box_from_points(f.points), score=f.score)
                for f in self.world.get(idx, []) if f.detectable]
        return sorted(dets, key=lambda d: -d.score)  # best first, as Aligner.detect returns them

    def frame_for(self, det: Detection) -> geometry.CropFrame:
        return geometry.frame_from_box(det.box)

    def frame_from_landmarks(self, points: np.ndarray) -> geometry.CropFrame:
        return geometry.frame_from_points(points)

    def landmarks_in_frames(self, jobs):
        points, conf = [], []
        for image, crop in jobs:
            inside = [f for f in self.world.get(self.frame_index(image), [])
                      if np.hypot(f.centre[0] - crop.center_x, f.centre[1] - crop.center_y) < crop.side / 3]
            if inside:
                points.append(inside[0].points)
                conf.append(np.full(68, inside[0].confidence))
            else:  # nothing in the crop: scattered points, low confidence
                points.append(np.array([crop.center_x, crop.center_y]) + crop.side * TEMPLATE)
                conf.append(np.full(68, 0.05))
        return points, conf


def run(aligner: ScriptedAligner, frames: int, **options) -> list[list[int]]:
    """Face ids reported per frame."""
    return [[f.face_id for f in result.faces] for result in track(aligner, frames, **options)]


def track(aligner: ScriptedAligner, frames: int, **options):
    tracker = FaceTracker(aligner, aligner.detect, TrackOptions(**options), aligner.max_faces)
    for i in range(frames):
        image = np.full((240, 320, 3), i, np.uint8)
        yield from tracker.process([VideoFrame(i, i / FPS, image)])


def test_a_still_confident_face_is_not_re_detected():
    aligner = ScriptedAligner({i: [Face((160, 120))] for i in range(8)})
    ids = run(aligner, 8, redetect_every=0)
    assert ids == [[0]] * 8
    assert aligner.detect_calls == [0]


def test_periodic_re_detection():
    aligner = ScriptedAligner({i: [Face((160, 120))] for i in range(12)})
    run(aligner, 12, redetect_every=5)
    assert aligner.detect_calls == [0, 5, 10]


def test_a_weak_face_forces_re_detection_on_the_next_frame():
    """Confidence below min_confidence while the detector still sees the face: re-detect next frame."""
    world = {i: [Face((160, 120), confidence=0.2 if i == 3 else 0.9)] for i in range(7)}
    aligner = ScriptedAligner(world)
    ids = run(aligner, 7, redetect_every=0)
    assert ids == [[0]] * 7
    # frame 3: the tracked crop failed, the detector is asked in that frame; frame 4: because it was weak
    assert aligner.detect_calls == [0, 3, 4]


def test_lost_face_found_again_soon_keeps_its_id():
    world = {i: [Face((160, 120))] for i in range(14) if not 4 <= i < 9}  # gone for 0.5 s
    ids = run(ScriptedAligner(world), 14, redetect_every=0, reacquire_seconds=1.0)
    assert ids[:4] == [[0]] * 4 and ids[4:9] == [[]] * 5 and ids[9:] == [[0]] * 5


def test_lost_face_expires_after_reacquire_seconds():
    world = {i: [Face((160, 120))] for i in range(30) if not 4 <= i < 24}  # gone for 2 s
    ids = run(ScriptedAligner(world), 30, redetect_every=0, reacquire_seconds=1.0)
    assert ids[:4] == [[0]] * 4 and ids[4:24] == [[]] * 20
    assert ids[24:] == [[1]] * 6, "a face lost for longer than reacquire_seconds must start a new track"


def test_max_faces_tracks_the_best_scoring_faces():
    """The tracker keeps the first ``max_faces`` of ``Aligner.detect``'s best-first list (that the real
    ``Aligner.detect`` sorts is tested in test_values)."""
    world = {i: [Face((60, 60), score=0.6), Face((250, 170), score=0.95)] for i in range(3)}
    results = list(track(ScriptedAligner(world, max_faces=1), 3, redetect_every=0))
    for result in results:
        assert len(result.faces) == 1
        np.testing.assert_allclose(result.faces[0].landmarks.points.mean(axis=0), world[0][1].points.mean(axis=0))


def test_push_frames_one_by_one_equals_processing_them():
    """``update(frame, timestamp)`` (push mode) gives what the video path gives for the same frames."""
    world = {i: [Face((160 + 3 * i, 120)), Face((60, 60 + 2 * i), confidence=0.5 if i == 4 else 0.9)]
             for i in range(10)}
    expected = run(ScriptedAligner(world), 10, redetect_every=3)
    aligner = ScriptedAligner(world)
    tracker = FaceTracker(aligner, aligner.detect, TrackOptions(redetect_every=3))
    got = []
    for i in range(10):
        result = tracker.update(np.full((240, 320, 3), i, np.uint8), i / FPS)
        assert result.frame == i and abs(result.timestamp - i / FPS) < 1e-9
        got.append([f.face_id for f in result.faces])
    assert got == expected
