"""The tracker's decisions on a scripted world: when it re-detects, when lost faces expire, ids.

A fake aligner stands in for the detector and the network only: it reports the scripted faces
(their points, confidence and detections); the tracker under test is the real ``FaceTracker``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import numpy as np
import pytest

from facealign_sdk import geometry
from facealign_sdk.detectors.base import Detection
from facealign_sdk.video import FaceTracker, TrackOptions, VideoFrame
from facealign_sdk.video import track as track_video

FPS = 10.0
TEMPLATE = np.random.default_rng(0).uniform(-0.5, 0.5, (68, 2))


@dataclass
class Face:
    centre: tuple[float, float]
    size: float | tuple[float, float] = 60.0  # (width, height) for a collapsed, thin ghost
    confidence: float = 0.9
    detectable: bool = True
    score: float = 0.9

    @property
    def points(self) -> np.ndarray:
        return np.asarray(self.centre) + np.asarray(self.size) * TEMPLATE


@dataclass
class ScriptedAligner:
    """Faces per frame index; counts detector calls per frame."""

    world: dict[int, list[Face]]
    max_faces: int | None = None
    detect_calls: list[int] = field(default_factory=list)
    crops: list[tuple[int, geometry.CropFrame]] = field(default_factory=list)  # (frame, crop) the network got
    manifest: SimpleNamespace = field(default_factory=lambda: SimpleNamespace(confirm_confidence=None))

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

    def frame_from_landmarks(self, points: np.ndarray, crop: geometry.CropFrame | None = None) -> geometry.CropFrame:
        return geometry.frame_from_points(points)

    def landmarks_in_frames(self, jobs):
        points, conf = [], []
        for image, crop in jobs:
            self.crops.append((self.frame_index(image), crop))
            inside = [f for f in self.world.get(self.frame_index(image), [])
                      if np.hypot(f.centre[0] - crop.center_x, f.centre[1] - crop.center_y) < crop.side / 3]
            if inside:  # the face nearest the crop's centre
                face = min(inside, key=lambda f: np.hypot(f.centre[0] - crop.center_x, f.centre[1] - crop.center_y))
                points.append(face.points)
                conf.append(np.full(68, face.confidence))
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


def test_unreadable_frame_gets_an_empty_result_and_tracking_goes_on():
    aligner = ScriptedAligner({i: [Face((160, 120))] for i in range(3)})
    tracker = FaceTracker(aligner, aligner.detect, TrackOptions(redetect_every=0))
    frames = [VideoFrame(i, i / FPS, np.full((240, 320, 3), i, np.uint8)) for i in range(3)]
    frames[1] = VideoFrame(1, 0.1, None, error="bad.jpg: not a readable image")
    results = tracker.process(frames)
    assert [(r.width, r.height, r.error) for r in results] == [(320, 240, ""), (0, 0, frames[1].error),
                                                               (320, 240, "")]
    assert [[f.face_id for f in r.faces] for r in results] == [[0], [], [0]]


def test_redetect_every_frame_and_the_detected_flag():
    aligner = ScriptedAligner({i: [Face((160, 120))] for i in range(4)})
    results = list(track(aligner, 4, redetect_every=1))
    assert aligner.detect_calls == [0, 1, 2, 3]
    assert all(r.faces[0].detected and r.faces[0].success for r in results)
    aligner = ScriptedAligner({i: [Face((160, 120))] for i in range(7)})
    assert [r.faces[0].detected for r in track(aligner, 7, redetect_every=3)] == [True, False, False] * 2 + [True]


def test_ids_count_up_and_a_face_gets_one_id():
    world = {i: [Face((60, 60))] + [Face((160, 120))] * (i >= 2) + [Face((260, 180))] * (i >= 4) for i in range(6)}
    aligner = ScriptedAligner(world)
    tracker = FaceTracker(aligner, aligner.detect, TrackOptions(redetect_every=1))
    ids = [[f.face_id for f in tracker.update(np.full((240, 320, 3), i, np.uint8), i / FPS).faces] for i in range(6)]
    assert ids == [[0], [0], [0, 1], [0, 1], [0, 1, 2], [0, 1, 2]]
    assert tracker.faces_seen == 3


def test_a_face_the_detector_no_longer_finds_ends_after_unconfirmed_seconds():
    """The network still sees it (a poster, a ghost), the detector does not (from 0.2 s): gone after 0.5 s."""
    world = {i: [Face((160, 120), detectable=i < 2)] for i in range(12)}
    ids = run(ScriptedAligner(world), 12, redetect_every=1)
    assert ids[:7] == [[0]] * 7 and ids[8:] == [[]] * 4


def test_a_doubtful_face_the_detector_misses_ends_at_once():
    world = {i: [Face((160, 120), detectable=i < 2, confidence=0.9 if i < 2 else 0.5)] for i in range(5)}
    assert run(ScriptedAligner(world), 5, redetect_every=1) == [[0], [0], [], [], []]


@pytest.mark.parametrize("model_says, option, ends_at_once", [
    (None, None, True),  # 0.5 < the default 0.6
    (0.4, None, False),  # the model's scale: 0.5 is confident enough, the detector gets unconfirmed_seconds
    (0.4, 0.6, True),  # the option overrides the model
])
def test_the_confirm_threshold_is_the_models_unless_asked(model_says, option, ends_at_once):
    world = {i: [Face((160, 120), detectable=i < 2, confidence=0.9 if i < 2 else 0.5)] for i in range(5)}
    aligner = ScriptedAligner(world, manifest=SimpleNamespace(confirm_confidence=model_says))
    ids = run(aligner, 5, redetect_every=1, confirm_confidence=option)
    assert ids == ([[0], [0], [], [], []] if ends_at_once else [[0]] * 5)


@pytest.mark.parametrize("thin", [(0.5, 20.0), (20.0, 0.5)])
def test_landmarks_collapsed_to_a_line_end_the_track(thin):
    """Points spanning less than MIN_FACE_PX (sqrt of the box area) are a ghost, however confident."""
    world = {i: [Face((160, 120), detectable=i < 2, size=60.0 if i < 2 else thin)] for i in range(4)}
    assert run(ScriptedAligner(world), 4, redetect_every=0) == [[0], [0], [], []]


def test_max_faces_the_best_scoring_face_takes_over():
    """max_faces=1: a better-scoring face does not join while the tracked one is detected; the tracked one is
    no longer among the best max_faces detections, so it ends after unconfirmed_seconds and the better one
    is tracked."""
    world = {i: [Face((60, 60), score=0.6)] + [Face((250, 170), score=0.95)] * (i >= 2) for i in range(12)}
    ids = run(ScriptedAligner(world, max_faces=1), 12, redetect_every=1)
    assert ids[:7] == [[0]] * 7 and ids[10:] == [[1]] * 2


def test_max_faces_a_new_face_waits_while_the_tracked_one_is_seen():
    world = {i: [Face((60, 60), detectable=i < 2)] + [Face((250, 170))] * (i >= 2) for i in range(12)}
    ids = run(ScriptedAligner(world, max_faces=1), 12, redetect_every=1)
    assert ids[:7] == [[0]] * 7 and ids[10:] == [[1]] * 2


def _box_size() -> float:
    return float(np.sqrt(np.prod(np.ptp(Face((0, 0)).points, axis=0))))


@pytest.mark.parametrize("shift, same_id", [(0.6, True), (1.2, False)])
def test_a_lost_face_is_found_again_near_where_it_was(shift, same_id):
    """Found again within 0.75 face sizes of where it was lost (though its box overlaps little): same id,
    its points start afresh (no smoothing towards the old place); farther: another face, a new id."""
    dx = shift * _box_size()
    world = {i: [Face((100 + dx * (i >= 6), 120))] for i in range(8) if not 3 <= i < 6}
    results = list(track(ScriptedAligner(world), 8, redetect_every=0, reacquire_seconds=1.0))
    assert [[f.face_id for f in r.faces] for r in results] == [[0]] * 3 + [[]] * 3 + [[0 if same_id else 1]] * 2
    np.testing.assert_allclose(results[6].faces[0].landmarks.points, world[6][0].points)


def test_a_lost_face_is_found_again_while_another_is_tracked():
    world = {i: [Face((60, 60), score=0.95)] + [Face((250, 170), score=0.6)] * (not 3 <= i < 6) for i in range(8)}
    ids = run(ScriptedAligner(world), 8, redetect_every=1, reacquire_seconds=1.0)
    assert ids == [[0, 1]] * 3 + [[0]] * 3 + [[0, 1]] * 2


def test_two_overlapping_faces_keep_their_ids():
    """Detections go to the tracked face they overlap most, not to the first one that overlaps enough."""
    world = {i: [Face((140, 120)), Face((166, 120))] for i in range(5)}
    for result in track(ScriptedAligner(world), 5, redetect_every=1):
        x_by_id = {f.face_id: f.landmarks.points[:, 0].mean() for f in result.faces}
        assert sorted(x_by_id) == [0, 1] and x_by_id[0] < x_by_id[1]


def test_a_low_confidence_detected_face_is_reported_unsuccessful():
    world = {i: [Face((160, 120), confidence=0.2 if i == 2 else 0.9)] for i in range(4)}
    results = list(track(ScriptedAligner(world), 4, redetect_every=1))
    assert [(r.faces[0].face_id, r.faces[0].success) for r in results] == [(0, True), (0, True), (0, False),
                                                                           (0, True)]


@pytest.mark.parametrize("band_per_step, recropped", [(1.5, [True] * 6), (2.5, [False, False, True] * 2)])
def test_crop_deadband(band_per_step, recropped):
    """A face moving more than half the deadband per frame is re-cropped every frame; a slower one keeps its
    crop until the landmarks call for one more than the deadband away."""
    step = 1.0
    moving = geometry.frame_from_points(Face((100 + step, 120)).points)
    change = geometry.frame_change(geometry.frame_from_points(Face((100, 120)).points), moving)
    world = {i: [Face((100 + step * i, 120))] for i in range(8)}
    aligner = ScriptedAligner(world)
    run(aligner, 8, redetect_every=0, crop_deadband=band_per_step * change)
    crops = [crop for _, crop in aligner.crops]
    assert [crops[i + 1] != crops[i] for i in range(1, 7)] == recropped
    for i in range(1, 8):
        if crops[i] != crops[i - 1]:  # a new crop is where the last landmarks call for
            assert crops[i] == geometry.frame_from_points(world[i - 1][0].points)


# -- VideoTrack: iterating a source, its report ----------------------------------------------------
@dataclass
class ScriptedApp:
    """What ``track()`` needs of an Aligner: ``tracker(options)`` and, optionally, ``color``."""

    scripted: ScriptedAligner

    def tracker(self, options: TrackOptions) -> FaceTracker:
        return FaceTracker(self.scripted, self.scripted.detect, options)


@dataclass
class ScriptedRgbApp(ScriptedApp):
    color: str = "rgb"


def _frames(count: int) -> list[np.ndarray]:
    return [np.full((240, 320, 3), i, np.uint8) for i in range(count)]


def test_video_track_report_counts_frames_faces_and_ids():
    world = {i: [Face((100, 120))] * (i < 5) + [Face((250, 120))] * (i < 2) for i in range(6)}
    video = track_video(ScriptedApp(ScriptedAligner(world)), _frames(6), fps=FPS)
    first = next(video)
    assert len(first.faces) == 2 and 0 <= video.report.seconds < 60
    results = [first, *video]
    assert [len(r.faces) for r in results] == [2, 2, 1, 1, 1, 0]
    report = video.report
    assert (report.frames_decoded, report.frames_with_face, report.face_rows, report.faces_seen) == (6, 5, 7, 2)
    assert report.stop_reason == "end" and not report.interrupted and 0 <= report.seconds < 60


def test_video_track_stopped_early_or_interrupted():
    world = {i: [Face((100, 120))] for i in range(4)}
    track_video(ScriptedApp(ScriptedAligner(world)), _frames(4)).close()  # closing before iterating is fine
    video = track_video(ScriptedApp(ScriptedAligner(world)), _frames(4))
    next(video)
    video.close()
    assert video.report.stop_reason == "stopped by the caller" and not video.report.interrupted

    def ctrl_c_after_two():
        yield from _frames(2)
        raise KeyboardInterrupt

    video = track_video(ScriptedApp(ScriptedAligner(world)), ctrl_c_after_two())
    with pytest.raises(KeyboardInterrupt):
        list(video)
    assert video.report.interrupted and video.report.stop_reason == "interrupted"
    assert video.report.frames_decoded == 2


def test_track_reads_frames_in_the_aligners_colour_order():
    world = {i: [Face((100, 120))] for i in range(3)}
    rgb = [np.dstack([np.full((240, 320), 250, np.uint8), frame[..., 1], frame[..., 0]]) for frame in _frames(3)]
    faces = [len(r.faces) for r in track_video(ScriptedRgbApp(ScriptedAligner(world)), rgb)]
    assert faces == [1, 1, 1]  # frame i seen as BGR i, not as frame 250
    assert [len(r.faces) for r in track_video(ScriptedApp(ScriptedAligner(world)), _frames(3))] == [1, 1, 1]


def test_a_face_that_jumps_out_of_its_crop_is_found_again_in_the_same_frame():
    """The crop from the last landmarks misses it (the network sees nothing there), the detector's box of that
    frame still overlaps where it was: the crop is redone from the detection, the face keeps its id."""
    world = {i: [Face((100 + 33 * (i >= 3), 120)), Face((260, 60))] for i in range(5)}
    results = list(track(ScriptedAligner(world), 5, redetect_every=0))
    assert [[f.face_id for f in r.faces] for r in results] == [[0, 1]] * 5
    face = results[3].faces[0]
    assert face.success and face.detected
    np.testing.assert_allclose(face.landmarks.points.mean(axis=0), world[3][0].points.mean(axis=0), atol=2.0)  # smoothed


def test_a_tracked_face_matches_detections_by_overlap_only():
    """``match_iou`` decides for a tracked face: a detection 0.7 face sizes away (IoU 0.2) is another face."""
    world = {i: [Face((100 + 45 * (i >= 2), 120))] for i in range(4)}
    assert run(ScriptedAligner(world), 4, redetect_every=1) == [[0], [0], [1], [1]]


def test_the_tracks_smooth_with_the_given_smoothing():
    from facealign_sdk.video import OneEuroConfig, SmoothingConfig

    world = {i: [Face((100 + 4 * i, 120))] for i in range(6)}
    strong = SmoothingConfig(pose=OneEuroConfig(min_cutoff=0.05, beta=0.0))
    default, smoothed = (list(track(ScriptedAligner(world), 6, **options)) for options in ({}, {"smoothing": strong}))
    lag = [world[5][0].points[:, 0].mean() - r[5].faces[0].landmarks.points[:, 0].mean() for r in (default, smoothed)]
    assert lag[1] > lag[0] + 1.0


def test_default_options_and_the_frame_size_for_the_pose():
    aligner = ScriptedAligner({0: [Face((160, 120))]})
    tracker = FaceTracker(aligner, aligner.detect)
    assert tracker.options == TrackOptions()
    face = tracker.update(np.full((240, 320, 3), 0, np.uint8), 0.0).faces[0]
    assert face.landmarks.image_size == (320, 240)  # the head pose's camera


def test_a_face_that_ends_does_not_hide_the_others():
    world = {i: [Face((60, 60), score=0.9)] * (i < 2) + [Face((250, 170), score=0.8)] for i in range(4)}
    assert run(ScriptedAligner(world), 4, redetect_every=0) == [[0, 1], [0, 1], [1], [1]]


def test_a_face_lost_within_a_group_of_frames_stays_lost_in_it():
    """Frames processed together (``batch_frames``) have their crops planned before any runs: a face lost in
    the group's 2nd frame is not reported in its 3rd, though it is in its crop there again."""
    world = {i: [Face((60, 60), score=0.9)] * (i != 1) + [Face((250, 170), score=0.8)] for i in range(3)}
    aligner = ScriptedAligner(world)
    tracker = FaceTracker(aligner, aligner.detect, TrackOptions(redetect_every=0))
    group = [VideoFrame(i, i / FPS, np.full((240, 320, 3), i, np.uint8)) for i in range(3)]
    assert [[f.face_id for f in r.faces] for r in tracker.process(group)] == [[0, 1], [1], [1]]


def test_one_face_tracked_twice_keeps_the_most_recently_confirmed_track():
    """B's crop latches onto A when B leaves: two tracks on A. The one the detector confirmed last (A's) is
    kept, B's ends; C, tracked but not confirmed since frame 0, is not a duplicate and stays."""
    c = [Face((260, 60), score=0.9, detectable=False)]
    world = {0: [Face((100, 120), score=0.8), Face((260, 60), score=0.9)],
             1: [Face((100, 120), score=0.8), Face((125, 120), score=0.7)] + c,
             2: [Face((100, 120), score=0.8), Face((125, 120), score=0.7)] + c,
             3: [Face((125, 120), score=0.7)] + c}
    assert run(ScriptedAligner(world), 4, redetect_every=1) == [[0, 1], [0, 1, 2], [0, 1, 2], [0, 2]]
    # B confirmed only in the first frame (t = 0), A confirmed since, comes close when B leaves: A's track is kept
    b = Face((100, 120), score=0.8, detectable=False)
    world = {0: [Face((100, 120), score=0.8)], 1: [b, Face((140, 120), score=0.7)], 2: [Face((125, 120), score=0.7)]}
    assert run(ScriptedAligner(world), 3, redetect_every=1) == [[0], [0, 1], [1]]


def test_decisions_do_not_depend_on_where_the_clock_starts():
    """A confirmation at t = 0.0 is a confirmation (not "never"): with the clock starting at frame 1 (t = -0.1, 0.0,
    0.1) the duplicate kept is the one confirmed last (B's, at frame 1), as with the clock starting at frame 0."""
    a = Face((100, 120), score=0.8)
    world = {0: [a], 1: [replace(a, detectable=False), Face((140, 120), score=0.7)],
             2: [Face((120, 120), detectable=False)]}  # both tracks end up on one face, neither confirmed there
    ids = {}
    for start in (0, 1):
        aligner = ScriptedAligner(world)
        tracker = FaceTracker(aligner, aligner.detect, TrackOptions(redetect_every=1))
        ids[start] = [[f.face_id for f in tracker.update(np.full((240, 320, 3), i, np.uint8), (i - start) / FPS).faces]
                      for i in range(3)]
    assert ids[0] == [[0], [0, 1], [1]]
    assert ids[1] == ids[0]
