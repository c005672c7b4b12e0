"""Video tracking: reading, One-Euro smoothing, CSV/JSON/draw outputs, bad input, broken streams, Ctrl-C.

Uses the random-weights ``tiny_model`` (landmarks are garbage, so every frame is re-detected;
the mechanics are real) on short videos generated in tmp from the sample face image.
"""

from __future__ import annotations

import csv
import json
import re
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from facealign_sdk.cli import main as cli
from facealign_sdk.video import (
    FrameResult,
    LandmarkSmoother,
    OneEuroConfig,
    OneEuroFilter,
    VideoError,
    VideoReader,
    csv_header,
    iou,
)

torch = pytest.importorskip("torch")

SIZE = 256  # frame side of the generated videos
FPS = 25.0


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: much faster than two on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def aligner(tiny_model):
    from facealign_sdk.aligner import Aligner

    return Aligner(model=tiny_model, backend="torch")


def face_frames(face_image: np.ndarray, n: int, black: tuple[int, ...] = ()) -> list[np.ndarray]:
    """``n`` frames of the sample face drifting right/down (frames in ``black`` are black)."""
    small = cv2.resize(face_image, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(n):
        m = np.float32([[1, 0, 2.0 * i], [0, 1, 1.0 * i]])
        frame = cv2.warpAffine(small, m, (SIZE, SIZE), borderMode=cv2.BORDER_REPLICATE)
        frames.append(np.zeros_like(frame) if i in black else frame)
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: float = FPS) -> Path:
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def faststart(data: bytes) -> bytes:
    """Move the ``moov`` atom of a flat mp4 (ftyp, free, mdat, moov) in front of ``mdat``,
    as a streamable file has it, fixing the chunk offsets (``stco``)."""
    atoms, pos = {}, 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        atoms[kind] = data[pos : pos + size]
        pos += size
    moov = bytearray(atoms[b"moov"])
    shift = len(moov) - len(atoms.get(b"free", b""))
    at = moov.find(b"stco")
    for k in range(struct.unpack(">I", moov[at + 8 : at + 12])[0]):
        o = at + 12 + 4 * k
        moov[o : o + 4] = struct.pack(">I", struct.unpack(">I", moov[o : o + 4])[0] + shift)
    return atoms[b"ftyp"] + bytes(moov) + atoms[b"mdat"]


def decodable_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    return n


def run_cli(*args: str) -> int:
    """``facealign video ...`` through ``cli.main`` (exit codes as a user sees them)."""
    return cli.main(["video", *args])


def model_args(tiny_model: Path) -> list[str]:
    return ["--model", str(tiny_model), "--backend", "torch", "--no-progress"]


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


# -- One-Euro filter ---------------------------------------------------------------------------


def run_filter(values: np.ndarray, fps: float = 30.0, **cfg: float) -> np.ndarray:
    f = OneEuroFilter(OneEuroConfig(**cfg))
    return np.array([f(np.array([v]), i / fps, scale=1.0)[0] for i, v in enumerate(values)])


def test_one_euro_keeps_a_constant_signal():
    out = run_filter(np.full(50, 3.25))
    np.testing.assert_allclose(out, 3.25, atol=1e-12)


def test_one_euro_follows_a_step():
    values = np.r_[np.zeros(30), np.ones(60)]
    out = run_filter(values, min_cutoff=1.0, beta=1.0)
    assert out[29] == 0.0
    assert 0.0 < out[30] <= 1.0
    assert abs(out[-1] - 1.0) < 1e-3  # converges
    fast = run_filter(values, min_cutoff=1.0, beta=10.0)
    assert fast[31] > out[31]  # the beta term cuts the lag on fast motion


def test_one_euro_reduces_noise():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 1.0, 300)
    out = run_filter(noise, min_cutoff=1.0, beta=0.0)
    assert out[30:].var() < 0.3 * noise[30:].var()


def test_one_euro_uses_timestamps_and_resets():
    f = OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=0.0))
    f(np.zeros(2), 0.0)
    slow = f(np.ones(2), 1.0)[0]  # one second later: filter mostly caught up
    g = OneEuroFilter(OneEuroConfig(min_cutoff=1.0, beta=0.0))
    g(np.zeros(2), 0.0)
    quick = g(np.ones(2), 0.01)[0]  # 10 ms later: barely moves
    assert slow > 0.8 and quick < 0.1
    assert g(np.full(2, 5.0), 0.01)[0] == quick  # repeated timestamp: no update
    g.reset()
    assert g(np.full(2, 7.0), 0.02)[0] == 7.0  # after reset the value passes through


def moving_shape(n: int, fps: float = 30.0, noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fixed 68-point shape translating, rotating and scaling smoothly; (n, 68, 2) truth and timestamps."""
    rng = np.random.default_rng(seed)
    shape = rng.uniform(-50, 50, size=(68, 2))
    t = np.arange(n) / fps
    truth = []
    for ti in t:
        a, s = 0.2 * np.sin(2 * np.pi * ti / 2), 1 + 0.1 * np.sin(2 * np.pi * ti / 1.5)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        truth.append(200 + 40 * np.sin(2 * np.pi * ti / 1.7) + s * shape @ rot.T)
    truth = np.stack(truth)
    return truth + rng.normal(0, noise, truth.shape), t


def test_landmark_smoother_constant_motion_and_noise():
    still, t = moving_shape(1)
    smoother = LandmarkSmoother()
    for k in range(20):
        out = smoother(still[0], k / 30)
    np.testing.assert_allclose(out, still[0], atol=1e-9)  # a still face stays put
    truth, t = moving_shape(90)
    smoother.reset()
    clean = np.stack([smoother(p, ti) for p, ti in zip(truth, t)])
    # rigid motion (up to ~1.5 face sizes/s) is followed closely: the pose filter has a high beta
    assert np.abs(clean - truth).max() < 2.5 and np.abs(clean - truth).mean() < 0.5
    noisy, _ = moving_shape(90, noise=2.0, seed=0)
    smoother.reset()
    smooth = np.stack([smoother(p, ti) for p, ti in zip(noisy, t)])
    jitter = lambda x: np.sqrt((np.diff(x - truth, axis=0) ** 2).sum(-1).mean())  # noqa: E731
    assert jitter(smooth) < 0.5 * jitter(noisy)  # frame-to-frame shaking at least halved
    assert np.abs(smooth - truth).mean() < np.abs(noisy - truth).mean()  # and closer to the truth


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert abs(iou((0, 0, 10, 10), (5, 0, 15, 10)) - 1 / 3) < 1e-9


# -- Python API --------------------------------------------------------------------------------


def test_track_api_yields_one_result_per_frame(aligner, face_image, tmp_path):
    video = write_video(tmp_path / "v.mp4", face_frames(face_image, 5))
    results = list(aligner.track(video))
    assert [r.frame for r in results] == list(range(5))
    assert all(isinstance(r, FrameResult) for r in results)
    np.testing.assert_allclose([r.timestamp for r in results], np.arange(5) / FPS, atol=1e-6)
    for r in results:
        assert [f.face_id for f in r.faces] == [0]
        assert r.faces[0].landmarks.points.shape == (aligner.num_landmarks, 2)
    with aligner.track(video, max_frames=2) as video_track:  # an iterator; stops and releases early
        first = next(video_track)
        assert first.frame == 0 and video_track.info.frame_count == 5
    assert video_track.report.frames_decoded == 1


@pytest.mark.parametrize("batch_frames", [1, 3])
def test_tracking_between_detections(aligner, face_image, tmp_path, batch_frames):
    """With every face counted as confident, the detector runs every N frames and the frames
    between are cropped from the previous landmarks; the id stays the same."""
    video = write_video(tmp_path / "v.mp4", face_frames(face_image, 7))
    results = list(aligner.track(video, min_confidence=0.0, confirm_confidence=0.0, redetect_every=3,
                                 batch_frames=batch_frames))
    assert [[f.face_id for f in r.faces] for r in results] == [[0]] * 7
    assert [r.faces[0].detected for r in results] == [True, False, False, True, False, False, True]
    assert all(r.faces[0].success for r in results)


def test_track_options_are_validated(aligner, face_image, tmp_path):
    video = write_video(tmp_path / "v.mp4", face_frames(face_image, 2))
    with pytest.raises(ValueError):
        aligner.track(video, redetect_every=-1)
    with pytest.raises(FileNotFoundError):
        aligner.track(tmp_path / "missing.mp4")


def test_reader_errors_and_folder(tmp_path, face_image):
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("not a video\n" * 100)
    with pytest.raises(VideoError, match="empty"):
        VideoReader(tmp_path / "empty.mp4")
    with pytest.raises(VideoError, match="not a video"):
        VideoReader(tmp_path / "text.mp4")
    (tmp_path / "none").mkdir()
    with pytest.raises(VideoError, match="no images"):
        VideoReader(tmp_path / "none")


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_csv_one_row_per_frame_and_stable_ids(tiny_model, face_image, tmp_path):
    # frames 3 and 4 are black: they must still get a row (face_id -1, success 0, empty coords),
    # and the face coming back keeps its id
    video = write_video(tmp_path / "v.mp4", face_frames(face_image, 7, black=(3, 4)))
    out, js, draw = tmp_path / "o.csv", tmp_path / "o.json", tmp_path / "o.mp4"
    rc = run_cli(str(video), "--out", str(out), "--json", str(js), "--draw", str(draw), *model_args(tiny_model))
    assert rc == 0
    header, rows = read_csv(out)
    assert header == csv_header(68)
    assert header[:7] == ["frame", "face_id", "timestamp", "confidence", "success", "x_0", "x_1"]
    assert header.index("y_0") == 5 + 68 and header[-1] == "c_67"
    assert [int(r["frame"]) for r in rows] == [1, 2, 3, 4, 5, 6, 7]
    assert [int(r["face_id"]) for r in rows] == [0, 0, 0, -1, -1, 0, 0]
    for r in rows:
        if r["face_id"] == "-1":
            assert r["success"] == "0" and r["x_0"] == "" and r["c_67"] == ""
        else:
            assert 0.0 <= float(r["confidence"]) <= 1.0 and r["success"] in ("0", "1")
            assert np.isfinite([float(r[f"x_{i}"]) for i in range(68)]).all()
    assert [float(r["timestamp"]) for r in rows] == pytest.approx(np.arange(7) / FPS, abs=1e-3)
    doc = json.loads(js.read_text())
    assert len(doc["frames"]) == 7 and doc["report"]["frames_decoded"] == 7 and doc["num_landmarks"] == 68
    assert doc["frames"][3]["faces"] == []
    assert decodable_frames(draw) == 7


def test_cli_two_faces_and_max_faces(tiny_model, tmp_path):
    image = cv2.imread(str(Path(__file__).resolve().parents[1] / "samples" / "two_faces.jpg"))
    video = write_video(tmp_path / "two.mp4", [image] * 3)
    out = tmp_path / "two.csv"
    assert run_cli(str(video), "--out", str(out), *model_args(tiny_model)) == 0
    _, rows = read_csv(out)
    assert [(r["frame"], r["face_id"]) for r in rows] == [("1", "0"), ("1", "1"), ("2", "0"), ("2", "1"),
                                                          ("3", "0"), ("3", "1")]
    assert run_cli(str(video), "--out", str(out), "--overwrite", "--max-faces", "1", *model_args(tiny_model)) == 0
    _, rows = read_csv(out)
    assert [(r["frame"], r["face_id"]) for r in rows] == [("1", "0"), ("2", "0"), ("3", "0")]


def test_cli_batch_frames_and_no_smooth(tiny_model, face_image, tmp_path):
    video = write_video(tmp_path / "v.mp4", face_frames(face_image, 5, black=(2,)))
    out = tmp_path / "b.csv"
    assert run_cli(str(video), "--out", str(out), "--batch-frames", "3", "--no-smooth", *model_args(tiny_model)) == 0
    _, rows = read_csv(out)
    assert [int(r["face_id"]) for r in rows] == [0, 0, -1, 0, 0]
    assert run_cli(str(video), "--out", str(out), "--overwrite", "--pose-beta", "8", "--shape-cutoff", "0.5",
                   "--redetect-every", "2", *model_args(tiny_model)) == 0
    _, rows = read_csv(out)
    assert [int(r["frame"]) for r in rows] == [1, 2, 3, 4, 5]
    assert [int(r["face_id"]) for r in rows] == [0, 0, -1, 0, 0]


def test_cli_overwrite(tiny_model, face_image, tmp_path):
    video = write_video(tmp_path / "v.mp4", face_frames(face_image, 2))
    out = tmp_path / "o.csv"
    out.write_text("keep me\n")
    assert run_cli(str(video), "--out", str(out), *model_args(tiny_model)) == 2
    assert out.read_text() == "keep me\n"  # untouched
    assert run_cli(str(video), "--out", str(out), "--overwrite", *model_args(tiny_model)) == 0
    assert len(read_csv(out)[1]) == 2


@pytest.mark.parametrize("case", ["missing", "zero_bytes", "not_a_video", "folder_without_images", "out_dir_missing",
                                  "out_under_a_file", "out_is_input", "out_is_folder", "no_output",
                                  "negative_deadband"])
def test_cli_bad_input_fails_before_work(case, tiny_model, face_image, tmp_path, capsys):
    video = write_video(tmp_path / "v.mp4", face_frames(face_image, 2))
    out = tmp_path / "o.csv"
    outputs = ["--out", str(out)]
    if case == "missing":
        video = tmp_path / "nope.mp4"
    elif case == "zero_bytes":
        video = tmp_path / "zero.mp4"
        video.write_bytes(b"")
    elif case == "not_a_video":
        video = tmp_path / "notes.mp4"
        video.write_text("hello\n" * 500)
    elif case == "folder_without_images":
        video = tmp_path / "folder"
        video.mkdir()
        (video / "readme.txt").write_text("x")
    elif case == "out_dir_missing":
        out = tmp_path / "no" / "such" / "dir" / "o.csv"
        outputs = ["--out", str(out)]
    elif case == "out_under_a_file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "o.csv"
        outputs = ["--out", str(out)]
    elif case == "out_is_input":
        out = video
        outputs = ["--out", str(out), "--overwrite"]
    elif case == "out_is_folder":
        out = tmp_path
        outputs = ["--out", str(out), "--overwrite"]
    elif case == "no_output":
        outputs = []
    elif case == "negative_deadband":
        outputs += ["--crop-deadband", "-0.1"]
    assert run_cli(str(video), *outputs, *model_args(tiny_model)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("facealign video: error:")
    if case not in ("out_is_input", "out_is_folder", "no_output"):
        assert not out.exists()


def test_cli_unwritable_output_after_checks(tiny_model, face_image, tmp_path, monkeypatch):
    """An output that passes the checks but cannot be opened: exit 2, nothing half-written."""
    video = write_video(tmp_path / "v.mp4", face_frames(face_image, 2))
    out, js = tmp_path / "o.csv", tmp_path / "o.json"
    import os

    real_open = os.open

    def deny_json(path, *a, **k):
        if str(path) == str(js):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", deny_json)
    assert run_cli(str(video), "--out", str(out), "--json", str(js), *model_args(tiny_model)) == 2
    assert not out.exists() and not js.exists()


def test_cli_truncated_stream_writes_all_decoded_frames(tiny_model, face_image, tmp_path, capsys):
    full = write_video(tmp_path / "full.mp4", face_frames(face_image, 12))
    data = faststart(full.read_bytes())
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(data[: len(data) * 6 // 10])
    decodable = decodable_frames(broken)
    assert 0 < decodable < 12
    out, js = tmp_path / "t.csv", tmp_path / "t.json"
    rc = run_cli(str(broken), "--out", str(out), "--json", str(js), *model_args(tiny_model))
    assert rc == 3
    _, rows = read_csv(out)
    assert [int(r["frame"]) for r in rows] == list(range(1, decodable + 1))
    report = json.loads(js.read_text())["report"]
    assert report["truncated"] is True and report["frames_decoded"] == decodable and report["frames_expected"] == 12
    assert "truncated" in capsys.readouterr().err


def test_cli_image_folder(tiny_model, face_image, tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, frame in enumerate(face_frames(face_image, 3)):
        cv2.imwrite(str(folder / f"img_{i + 1}.png"), frame)
    cv2.imwrite(str(folder / "img_10.png"), np.zeros((SIZE, SIZE, 3), np.uint8))  # natural order: last
    out = tmp_path / "f.csv"
    assert run_cli(str(folder), "--out", str(out), "--fps", "10", *model_args(tiny_model)) == 0
    _, rows = read_csv(out)
    assert [int(r["frame"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["timestamp"]) for r in rows] == pytest.approx([0.0, 0.1, 0.2, 0.3])
    assert [r["face_id"] for r in rows] == ["0", "0", "0", "-1"]


def test_cli_interrupt_keeps_what_was_written(tiny_model, face_image, tmp_path, monkeypatch):
    from facealign_sdk.video import FaceTracker

    video = write_video(tmp_path / "v.mp4", face_frames(face_image, 6))
    real = FaceTracker.process
    calls = {"n": 0}

    def interrupt_third(self, frames):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, frames)

    monkeypatch.setattr(FaceTracker, "process", interrupt_third)
    out, js = tmp_path / "i.csv", tmp_path / "i.json"
    assert run_cli(str(video), "--out", str(out), "--json", str(js), *model_args(tiny_model)) == 130
    _, rows = read_csv(out)
    assert [int(r["frame"]) for r in rows] == [1, 2]
    doc = json.loads(js.read_text())  # still a complete JSON document
    assert len(doc["frames"]) == 2 and doc["report"]["interrupted"] is True


def test_sample_clip_is_small_and_readable():
    clip = Path(__file__).resolve().parents[1] / "samples" / "clip.mp4"
    if not clip.exists():
        pytest.skip("samples/clip.mp4 not present")
    reader = VideoReader(clip)
    assert max(reader.info.width, reader.info.height) <= 640
    assert 3.0 <= reader.info.frame_count / reader.info.fps <= 4.0
    assert clip.stat().st_size < 1_000_000
    reader.close()


def test_shared_obama_clip_is_reported_truncated(shared_data):
    reader = VideoReader(shared_data / "videos" / "3ddfa_obama.mp4")
    n = sum(1 for _ in reader)
    assert n == 55 and reader.info.frame_count == 158 and reader.truncated


@pytest.mark.parametrize("deadband", [0.02, 0.0])
def test_still_face_keeps_its_crop(face_image, tmp_path, deadband):
    """With the released model on a still face, the crop deadband keeps the tracked crop fixed, so the raw
    landmarks do not change from frame to frame; with deadband 0 the crop follows every frame's landmarks."""
    from facealign_sdk.aligner import Aligner
    from facealign_sdk.video import TrackOptions, VideoFrame

    tracker = Aligner(backend="torch").tracker(TrackOptions(smooth=False, redetect_every=0, crop_deadband=deadband))
    crops, points = [], []
    for i in range(8):
        face = tracker.process([VideoFrame(i, i / FPS, face_image)])[0].faces[0]
        crops.append(tracker.tracks[0].crop)
        points.append(face.landmarks.points)
    if deadband:  # settles within a couple of frames (the first landmark crop replaces the detector's)
        assert all(c == crops[-4] for c in crops[-4:])
        for p in points[-3:]:
            np.testing.assert_array_equal(p, points[-4])
    else:
        assert len(set(crops)) > 1  # re-made from every frame's landmarks


@pytest.mark.parametrize("announced, truncated", [(12, False), (14, False), (20, True)])
def test_a_file_may_end_a_couple_of_frames_before_its_announced_count(face_image, tmp_path, announced, truncated):
    """Containers may estimate their frame count; falling short by <= 2 frames (or 1 %) is a normal end."""
    video = write_video(tmp_path / "v.mp4", face_frames(face_image, 12))
    reader = VideoReader(video)
    reader.info = reader.info.model_copy(update={"frame_count": announced})
    assert sum(1 for _ in reader) == 12
    assert reader.truncated is truncated
    assert reader.stop_reason == ("decode error" if truncated else "end")


# -- ghost and duplicate tracks (released model: the tiny one's confidence is meaningless) ------
def test_tracks_end_after_a_scene_cut(shared_data):
    """fschuang_Elon3.mp4 cuts from two people to one at frame 35; the network still gives the empty crops
    at the old positions confidence 0.4-0.5, so the two old tracks lived on there for the rest of the clip."""
    from facealign_sdk.aligner import Aligner
    from facealign_sdk.video import TrackOptions

    clip = shared_data / "videos" / "fschuang_Elon3.mp4"
    aligner = Aligner(backend="ort", device="cpu")
    tracker = aligner.tracker(TrackOptions())
    frames = list(VideoReader(clip, max_frames=75))
    detected = [len(aligner.detect(f.image)) for f in frames]
    reported = [len(tracker.process([f])[0].faces) for f in frames]
    assert detected[:30] == [2] * 30 and detected[36:] == [1] * (75 - 36)  # the clip is what the test expects
    assert reported[:30] == [2] * 30
    assert reported[35 + 15:] == detected[35 + 15:], reported  # within 15 frames of the cut, only the one face


@pytest.mark.parametrize("batch_frames", [1, 3])
def test_one_face_is_not_tracked_twice(face_image, batch_frames):
    """A detector that reports one face twice (a failed NMS) must not make two tracks of it."""
    from facealign_sdk.aligner import Aligner
    from facealign_sdk.detectors.base import Detection
    from facealign_sdk.detectors.yunet import YuNetDetector
    from facealign_sdk.video import TrackOptions, VideoFrame

    class Doubling:
        def __init__(self) -> None:
            self.inner = YuNetDetector()

        def detect(self, image):
            out = []
            for d in self.inner.detect(image):
                x1, y1, x2, y2 = d.box
                shift = 0.05 * (x2 - x1)
                out += [d, Detection(box=(x1 + shift, y1, x2 + shift, y2), score=d.score * 0.99, keypoints=d.keypoints)]
            return out

    tracker = Aligner(backend="ort", device="cpu", detector=Doubling()).tracker(TrackOptions())
    small = cv2.resize(face_image, (320, 240))
    for start in range(0, 12, batch_frames):
        group = [VideoFrame(i, i / FPS, small) for i in range(start, start + batch_frames)]
        for result in tracker.process(group):
            assert len(result.faces) == 1, f"frame {result.frame}: {len(result.faces)} faces"


# -- complete files whose container only estimates the frame count ------------------------------
_EBML_MASTERS = {0x18538067, 0x1F43B675, 0x1549A966}  # Segment, Cluster, Info
_EBML_SIMPLE_BLOCK, _EBML_DURATION = 0xA3, 0x4489


def _ebml_vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int]:
    length = 1
    while length <= 8 and not data[pos] & (0x80 >> (length - 1)):
        length += 1
    value = int.from_bytes(data[pos : pos + length], "big")
    return (value if keep_marker else value & ((1 << (7 * length)) - 1)), pos + length


def _mkv_with_a_pause(data: bytes, after_frame: int, pause_ms: int) -> bytes:
    """An MKV (one cluster, ms timecodes) whose frames from ``after_frame`` on are shown ``pause_ms`` later,
    with the duration to match: a complete variable-frame-rate file like a WebM with a pause."""
    out = bytearray(data)
    blocks: list[int] = []

    def walk(start: int, end: int) -> None:
        pos = start
        while pos < end:
            element, body = _ebml_vint(out, pos, True)
            size, body = _ebml_vint(out, body, False)
            stop = min(end, body + size)
            if element in _EBML_MASTERS:
                walk(body, stop)
            elif element == _EBML_SIMPLE_BLOCK:
                blocks.append(_ebml_vint(out, body, False)[1])  # after the track number: int16 timecode
            elif element == _EBML_DURATION and size == 8:
                (duration,) = struct.unpack(">d", out[body:stop])
                out[body:stop] = struct.pack(">d", duration + pause_ms)
            pos = stop

    walk(0, len(out))
    for at in blocks[after_frame:]:
        (timecode,) = struct.unpack(">h", out[at : at + 2])
        out[at : at + 2] = struct.pack(">h", timecode + pause_ms)
    assert len(blocks) > after_frame
    return bytes(out)


def test_complete_variable_frame_rate_file_is_not_truncated(face_image, tmp_path):
    """A 12-frame MKV with a 0.4 s pause: the container estimates 22 frames from its duration, but the
    decoder reaches the end of that duration, so the file is complete (it was reported truncated, exit 3)."""
    frames = face_frames(face_image, 12)
    plain = tmp_path / "plain.mkv"
    writer = cv2.VideoWriter(str(plain), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (SIZE, SIZE))
    for f in frames:
        writer.write(f)
    writer.release()
    paused = tmp_path / "paused.mkv"
    paused.write_bytes(_mkv_with_a_pause(plain.read_bytes(), 6, 400))
    reader = VideoReader(paused)
    assert reader.info.frame_count is not None and reader.info.frame_count >= 20  # the estimate
    stamps = [f.timestamp for f in reader]
    assert len(stamps) == 12 and stamps[6] - stamps[5] == pytest.approx(0.44)
    assert not reader.truncated and reader.stop_reason == "end"
    # the same file cut short is still a broken stream
    cut = tmp_path / "cut.mkv"
    data = paused.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    reader = VideoReader(cut)
    assert 0 < sum(1 for _ in reader) < 12 and reader.truncated


@pytest.mark.parametrize("bad", [0, 1])
def test_cli_folder_with_a_corrupt_image_goes_on(bad, tiny_model, face_image, tmp_path, capsys):
    """One corrupt image in a folder: warned about, its frame has a no-face row, the rest are processed."""
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, frame in enumerate(face_frames(face_image, 4)):
        cv2.imwrite(str(folder / f"img_{i + 1}.png"), frame)
    (folder / f"img_{bad + 1}.png").write_bytes(b"not a png")
    out, js, draw = tmp_path / "f.csv", tmp_path / "f.json", tmp_path / "f.mp4"
    assert run_cli(str(folder), "--out", str(out), "--json", str(js), "--draw", str(draw), *model_args(tiny_model)) == 0
    _, rows = read_csv(out)
    assert [int(r["frame"]) for r in rows] == [1, 2, 3, 4]
    assert [r["face_id"] == "-1" for r in rows] == [k == bad for k in range(4)]
    data = json.loads(js.read_text())
    assert [bool(f["error"]) for f in data["frames"]] == [k == bad for k in range(4)]
    assert data["report"]["frames_unreadable"] == 1 and data["report"]["truncated"] is False
    assert decodable_frames(draw) == 4
    assert "1 unreadable image(s) skipped" in capsys.readouterr().err


def test_cli_interrupt_lands_in_every_output_or_none(tiny_model, face_image, tmp_path, monkeypatch):
    """Ctrl-C right after a frame's CSV rows are written: the JSON gets that frame too (exit 130)."""
    import os
    import signal

    from facealign_sdk.video import CsvWriter

    video = write_video(tmp_path / "v.mp4", face_frames(face_image, 6))
    real, calls = CsvWriter.write, {"n": 0}

    def interrupt_after_third(self, result, image=None):
        real(self, result, image)
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(CsvWriter, "write", interrupt_after_third)
    out, js = tmp_path / "i.csv", tmp_path / "i.json"
    assert run_cli(str(video), "--out", str(out), "--json", str(js), *model_args(tiny_model)) == 130
    _, rows = read_csv(out)
    doc = json.loads(js.read_text())
    assert [int(r["frame"]) for r in rows] == [f["frame"] + 1 for f in doc["frames"]] == [1, 2, 3]
    assert doc["report"]["interrupted"] is True


def test_cli_disk_full_keeps_complete_outputs(tiny_model, face_image, tmp_path, monkeypatch, capsys):
    """The disk fills up in the middle of a frame: exit 1 with a clear message; the CSV holds complete
    rows only and the JSON is a complete document of the frames written."""
    import errno
    import os

    video = write_video(tmp_path / "v.mp4", face_frames(face_image, 8))
    real_write, budget = os.write, {"left": 9000}

    def small_disk(fd, data):
        """Bytes that extend a file use up the budget; overwriting a file's own bytes needs no space."""
        pos, size = os.lseek(fd, 0, os.SEEK_CUR), os.fstat(fd).st_size
        room = max(size - pos, 0) + budget["left"]
        if room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        n = real_write(fd, bytes(data[:room]))  # a partial write, as a filling disk gives
        budget["left"] -= max(pos + n - size, 0)
        return n

    monkeypatch.setattr(os, "write", small_disk)
    out, js = tmp_path / "d.csv", tmp_path / "d.json"
    assert run_cli(str(video), "--out", str(out), "--json", str(js), *model_args(tiny_model)) == 1
    assert "disk full" in capsys.readouterr().err
    header, rows = read_csv(out)
    assert rows and all(len(r) == len(header) and None not in r.values() and r["c_67"] for r in rows)
    assert [int(r["frame"]) for r in rows] == list(range(1, len(rows) + 1))
    doc = json.loads(js.read_text())
    assert [f["frame"] for f in doc["frames"]] == list(range(len(doc["frames"])))


# -- writers by value (no model) ---------------------------------------------------------------------
def _synthetic_result(frame: int = 0, box=(100.0, 120.0, 220.0, 260.0), points=None) -> FrameResult:
    from facealign_sdk.results import FaceLandmarks
    from facealign_sdk.video import TrackedFace

    if points is None:
        points = np.column_stack([np.linspace(box[0], box[2], 68), np.linspace(box[1], box[3], 68)]) + 1 / 3
    lm = FaceLandmarks(box=box, score=0.9, points=points, confidence=np.full(len(points), 0.8))
    return FrameResult(frame=frame, timestamp=frame / FPS, width=SIZE, height=SIZE,
                       faces=[TrackedFace(face_id=3, detected=True, success=True, landmarks=lm)])


def test_csv_row_of_a_frame_without_faces():
    from facealign_sdk.video.writers import csv_rows

    empty = FrameResult(frame=4, timestamp=0.25, width=SIZE, height=SIZE, faces=[])
    assert csv_rows(empty, 68) == [["5", "-1", "0.250", "0", "0"] + [""] * 204]
    assert len(csv_rows(empty, 68)[0]) == len(csv_header(68)) == len(csv_rows(_synthetic_result(), 68)[0])


def test_json_output_is_one_document_with_source_frames_and_report():
    import io

    from facealign_sdk.video import JsonWriter, SourceInfo, TrackReport

    info = SourceInfo(source="clip.mp4", kind="file", width=SIZE, height=SIZE, fps=FPS, frame_count=2)
    stream = io.StringIO()
    writer = JsonWriter(stream, info, 68, "300w")
    assert json.loads(stream.getvalue()) == {"source": info.model_dump(), "num_landmarks": 68, "convention": "300w",
                                             "frames": [], "report": None}
    for k in range(2):
        writer.write(_synthetic_result(k))
        assert [f["frame"] for f in json.loads(stream.getvalue())["frames"]] == list(range(k + 1))
    stream.close = lambda: None  # keep the text readable after close
    report = TrackReport(source="clip.mp4", frames_decoded=2, frames_with_face=2, face_rows=2, faces_seen=1)
    writer.close(report)
    doc = json.loads(stream.getvalue())
    assert doc["report"] == report.model_dump() and doc["source"]["source"] == "clip.mp4"
    np.testing.assert_allclose(doc["frames"][1]["faces"][0]["landmarks"]["points"],
                               _synthetic_result(1).faces[0].landmarks.points, atol=5e-4)  # 3 decimals


def test_json_writers_never_write_a_bare_nan():
    import io

    from facealign_sdk.video import JsonWriter, SourceInfo

    info = SourceInfo(source="x", kind="folder", width=10, height=10, fps=30.0, frame_count=1)
    stream = io.StringIO()
    writer = JsonWriter(stream, info, 2, None)
    with pytest.raises(ValueError):
        writer.write(_synthetic_result(points=np.full((2, 2), np.nan)))
    assert "NaN" not in stream.getvalue()


def test_writers_keep_only_complete_records_when_the_disk_fills():
    """A stream that takes part of a write and then refuses the rest: CSV and JSON keep complete records."""
    import errno
    import io

    from facealign_sdk.video import CsvWriter, JsonWriter, SourceInfo

    class FullDisk(io.StringIO):
        def __init__(self, budget: int) -> None:
            super().__init__()
            self.budget = budget

        def write(self, text: str) -> int:
            size, pos = len(self.getvalue()), self.tell()
            room = max(size - pos, 0) + self.budget  # overwriting its own bytes needs no new space
            n = super().write(text[:room])
            self.budget -= max(pos + n - size, 0)
            if n < len(text):
                raise OSError(errno.ENOSPC, "No space left on device")
            return n

        def close(self) -> None:  # keep the text readable after close
            pass

    info = SourceInfo(source="x", kind="folder", width=1, height=1, fps=30.0, frame_count=3)
    for make in (lambda s: CsvWriter(s, 68), lambda s: JsonWriter(s, info, 68, None)):
        stream = FullDisk(3500)  # the header and one frame fit, the second frame does not
        writer = make(stream)
        with pytest.raises(OSError):
            for k in range(3):
                writer.write(_synthetic_result(k))
        text = stream.getvalue()
        if isinstance(writer, JsonWriter):
            assert [f["frame"] for f in json.loads(text)["frames"]] == [0]
        else:
            assert len(text.splitlines()) == 2 and text.endswith("\n")  # header and one complete frame row


def test_drawing_of_a_resized_frame_scales_box_and_points():
    """Images of another size than the video are resized; their faces scale with them, x and y apart."""
    from facealign_sdk.video.writers import _scaled

    result = _synthetic_result()
    lm = result.faces[0].landmarks
    scaled = _scaled(result, (0.5, 2.0)).faces[0].landmarks
    assert scaled.box == (50.0, 240.0, 110.0, 520.0)
    np.testing.assert_allclose(scaled.points, lm.points * [0.5, 2.0])
    np.testing.assert_array_equal(scaled.confidence, lm.confidence)


def test_video_outputs_never_overwrite_the_images_of_an_input_folder(tmp_path, face_image):
    """`facealign video FOLDER --out FOLDER/a.jpg --overwrite` must not replace an input image with CSV."""
    from facealign_sdk.errors import InputError
    from facealign_sdk.video.writers import check_outputs

    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg"):
        cv2.imwrite(str(folder / name), face_image)
    with pytest.raises(InputError, match="must end in .csv"):
        check_outputs([folder / "a.jpg", None, None], True, folder)
    with pytest.raises(InputError, match="must end in .json"):
        check_outputs([None, folder / "b.csv", None], True, folder)
    (folder / "c.csv").write_text("not really an image, but a file of the input folder")
    with pytest.raises(InputError, match="overwrite an input"):
        check_outputs([folder / "c.csv", None, None], True, folder)
    assert check_outputs([tmp_path / "out.csv", tmp_path / "out.json", None], True, folder)
    # each output is checked, named by its flag, also after one that is not wanted
    (tmp_path / "old.json").write_text("{}")
    with pytest.raises(FileExistsError, match="old.json exists"):
        check_outputs([None, tmp_path / "old.json", None], False, folder)
    for outputs, flag in (([tmp_path / "x.txt", None, None], "CSV output (--out)"),
                          ([None, tmp_path / "x.txt", None], "JSON output (--json)"),
                          ([None, None, tmp_path / "x.txt"], "annotated video (--draw)")):
        with pytest.raises(InputError, match=re.escape(f"x.txt: the {flag} must end in")):
            check_outputs(outputs, True, folder)


def test_csv_face_rows_have_2_decimals_for_points_and_3_for_confidence():
    from facealign_sdk.video.writers import csv_rows

    row = dict(zip(csv_header(68), csv_rows(_synthetic_result(), 68)[0]))
    lm = _synthetic_result().faces[0].landmarks
    assert (row["x_0"], row["y_67"], row["c_5"]) == (f"{lm.points[0, 0]:.2f}", f"{lm.points[67, 1]:.2f}", "0.800")
    assert row["frame"] == "1" and row["face_id"] == "3" and row["success"] == "1"


def test_text_outputs_refuse_an_existing_file_and_are_not_executable(tmp_path):
    import os

    from facealign_sdk.video.writers import open_text_output

    old = tmp_path / "old.csv"
    old.write_text("keep")
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        open_text_output(old, False)
    assert old.read_text() == "keep"
    out = open_text_output(tmp_path / "new.csv", False)
    assert out.name == str(tmp_path / "new.csv")
    out.write("x,y\n")
    out.close()
    out.close()  # a second close does nothing: it must not close a descriptor the number now belongs to
    os.fstat(1)
    assert (tmp_path / "new.csv").read_text() == "x,y\n"
    assert os.stat(tmp_path / "new.csv").st_mode & 0o111 == 0
    replaced = open_text_output(old, True)
    replaced.close()
    assert old.read_text() == ""
