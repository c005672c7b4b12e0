"""Video from numpy frames in memory: lists, generators, arrays; a bad element is an error, not an early end."""

from __future__ import annotations

import numpy as np
import pytest

from facealign_sdk.video import VideoError, VideoReader

FPS = 25.0


def shifted(face_image: np.ndarray, n: int) -> list[np.ndarray]:
    return [np.roll(face_image, 3 * k, axis=1) for k in range(n)]


def test_a_list_of_frames_is_read_in_order_with_its_count(face_image):
    frames = shifted(face_image, 4)
    reader = VideoReader(frames, fps=FPS)
    assert reader.info.kind == "memory" and reader.info.frame_count == 4 and reader.expected_frames == 4
    assert (reader.info.width, reader.info.height) == (face_image.shape[1], face_image.shape[0])
    got = list(reader)
    assert [f.index for f in got] == [0, 1, 2, 3]
    np.testing.assert_allclose([f.timestamp for f in got], np.arange(4) / FPS)
    assert all(np.array_equal(f.image, src) for f, src in zip(got, frames))
    assert got[0].image is frames[0]  # uint8 BGR frames are passed on, not copied
    assert reader.stop_reason == "end" and not reader.truncated


def test_a_generator_and_an_array_of_frames(face_image):
    gray = face_image[..., 1]
    reader = VideoReader(frame for frame in [gray, gray, gray])
    assert reader.info.frame_count is None and reader.info.fps == 30.0
    images = [f.image for f in reader]
    assert len(images) == 3 and images[0].shape == face_image.shape  # grey -> BGR, as for images
    stacked = np.stack(shifted(face_image, 2))
    assert len(list(VideoReader(stacked))) == 2
    assert len(list(VideoReader(shifted(face_image, 5), max_frames=2))) == 2


@pytest.mark.parametrize("bad, message", [
    (None, "frame 1 is NoneType"),
    ("frame.jpg", "frame 1 is str"),
    (np.zeros((0, 5, 3), np.uint8), "frame 1: expected an HxW"),
    (np.zeros((4, 4, 2), np.uint8), "frame 1: expected 1, 3 or 4 channels"),
])
def test_a_bad_element_is_an_error_where_it_is(face_image, bad, message):
    reader = VideoReader([face_image, bad, face_image])
    frames = iter(reader)
    assert next(frames).index == 0
    with pytest.raises(VideoError, match=message):
        next(frames)


def test_bad_in_memory_sources_fail_at_once(face_image):
    with pytest.raises(VideoError, match="no frames"):
        VideoReader([])
    with pytest.raises(VideoError, match="frame 0 is NoneType"):
        VideoReader(iter([None, face_image]))
    with pytest.raises(VideoError, match=r"\(N, H, W\[, C\]\)"):
        VideoReader(np.zeros((8, 8), np.uint8))
    with pytest.raises(VideoError, match=r"one image\? pass \[image\]"):
        VideoReader(face_image)
    with pytest.raises(FileNotFoundError):
        VideoReader("no/such/video.mp4")  # a string is a path, never an iterable of characters


def test_aligner_tracks_frames_in_memory(tiny_model, face_image):
    pytest.importorskip("torch")
    from facealign_sdk import Aligner

    aligner = Aligner(tiny_model, backend="torch")
    frames = shifted(face_image, 5)
    video = aligner.track(iter(frames), fps=FPS, min_confidence=0.0, confirm_confidence=0.0, redetect_every=3)
    results = list(video)
    assert [r.frame for r in results] == list(range(5))
    assert [[f.face_id for f in r.faces] for r in results] == [[0]] * 5
    assert [r.faces[0].detected for r in results] == [True, False, False, True, False]
    assert video.report.frames_decoded == 5 and video.report.stop_reason == "end" and not video.report.truncated
    with pytest.raises(VideoError, match="frame 2 is NoneType"):
        list(aligner.track([face_image, face_image, None]))


def test_tracking_honours_the_aligners_colour_order(tiny_model, face_image):
    """RGB frames (in memory or pushed) with color="rgb", and PIL frames, track exactly as the BGR frames."""
    from PIL import Image

    from facealign_sdk import Aligner

    frames = shifted(face_image, 3)
    rgb = [np.ascontiguousarray(f[..., ::-1]) for f in frames]
    opts = dict(fps=FPS, min_confidence=0.0, confirm_confidence=0.0, redetect_every=2)

    def points(results):
        return [np.stack([t.landmarks.points for t in r.faces]) for r in results]

    bgr = points(Aligner(tiny_model, backend="torch").track(frames, **opts))
    assert all(len(p) for p in bgr)
    for got in (points(Aligner(tiny_model, backend="torch", color="rgb").track(rgb, **opts)),
                points(Aligner(tiny_model, backend="torch").track([Image.fromarray(f) for f in rgb], **opts))):
        for a, b in zip(got, bgr):
            np.testing.assert_array_equal(a, b)
    tracker = Aligner(tiny_model, backend="torch", color="rgb").tracker(**opts)
    pushed = points([tracker.update(f, i / FPS) for i, f in enumerate(rgb)])
    for a, b in zip(pushed, bgr):
        np.testing.assert_array_equal(a, b)
