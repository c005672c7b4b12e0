"""benchmarks/speed.py without MediaPipe or dlib: timing helpers, targets, ratios, a facealign-only run."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import time

import cv2
import numpy as np
import pytest

from .conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
_spec = importlib.util.spec_from_file_location("speed", REPO / "benchmarks" / "speed.py")
speed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(speed)


def test_rows_ratios_and_table():
    rows = [speed.make_row("mediapipe", "image", "static", [0.010, 0.002, 0.004], [1, 1, 0], 0),
            speed.make_row("facealign", "image", "ort fp32", [0.5, 0.012, 0.016], [2, 2, 2], 1),
            speed.make_row("facealign", "video", "ort fp32", [0.008, 0.006], [1, 2], 0)]
    assert rows[0].ms_median == 4.0 and rows[0].ms_mean == pytest.approx(5.33, abs=0.01)
    assert rows[1].frames == 2 and rows[1].ms_median == 14.0 and rows[1].faces_per_frame == 2.0  # warm-up left out
    speed.add_ratios(rows)
    assert rows[1].ratio_to_mediapipe == 3.5 and rows[2].ratio_to_mediapipe is None  # no MediaPipe video row
    table = speed.markdown(rows).splitlines()
    assert table[2].startswith("| facealign | image | ort fp32 | 14.00 |") and table[2].endswith("| 3.50 | - |")
    assert table[-1].endswith("| - | - |")


def test_rounds_take_each_ratio_within_its_round():
    """A host twice as slow in round 2 doubles every time there but leaves that round's ratio as it was."""
    def round_rows(scale):
        return [speed.make_row("mediapipe", "image", "static", [0.004 * scale] * 3, [1] * 3, 0),
                speed.make_row("facealign", "image", "ort fp32", [0.012 * scale] * 3, [1] * 3, 0),
                speed.make_row("facealign", "video", "ort fp32", [0.01 * scale] * 2, [2, 1], 0)]

    merged = {(r.method, r.mode): r for r in speed.merge_rounds([round_rows(1), round_rows(2), round_rows(1.25)])}
    face = merged[("facealign", "image")]
    assert face.rounds == 3 and face.frames == 9 and face.round_medians_ms == [12.0, 24.0, 15.0]
    assert face.ms_median == 15.0 and face.ms_mean == pytest.approx(17.0)
    assert face.round_ratios == [3.0, 3.0, 3.0] and face.ratio_to_mediapipe == 3.0
    assert merged[("facealign", "video")].ratio_to_mediapipe is None and merged[("facealign", "video")].faces_per_frame == 1.5
    assert speed.markdown(list(merged.values())).splitlines()[2].endswith("| 3.00 | 3.00 / 3.00 / 3.00 |")


def test_per_result_times_each_item_of_an_iterator():
    def slow():
        for n in (1, 0, 2):
            time.sleep(0.001)  # some work between results
            yield [None] * n

    times, faces = speed.per_result(slow(), len)
    assert faces == [1, 0, 2] and len(times) == 3 and all(t >= 0 for t in times)


def test_targets_follow_the_runtimes_and_artifacts(tmp_path, monkeypatch):
    monkeypatch.setattr(speed.importlib.util, "find_spec", lambda name: None if name == "openvino" else object())
    assert [t[0] for t in speed.facealign_targets(tmp_path, None)] == ["ort fp32"]
    (tmp_path / "model_int8.onnx").write_bytes(b"")
    assert [t[:2] for t in speed.facealign_targets(tmp_path, None)] == [("ort fp32", "ort"), ("ort int8", "ort")]
    other = tmp_path / "head" / "model_int8.onnx"
    assert [t[0] for t in speed.facealign_targets(tmp_path, [other])] == ["ort fp32", "ort int8"]
    both = speed.facealign_targets(tmp_path, [tmp_path / "model_int8.onnx", other])  # --int8 given twice
    assert [(t[0], t[2]) for t in both] == [("ort fp32", tmp_path), (f"ort int8 {tmp_path.name}/model_int8.onnx",
                                            tmp_path / "model_int8.onnx"), ("ort int8 head/model_int8.onnx", other)]


@pytest.fixture
def restore_threads(monkeypatch):
    """speed.main sets FACEALIGN_THREADS and OpenCV's / torch's thread counts for the process: put them back."""
    monkeypatch.setenv("FACEALIGN_THREADS", "")
    cv2_threads = cv2.getNumThreads()
    torch = importlib.import_module("torch") if importlib.util.find_spec("torch") else None
    torch_threads = torch.get_num_threads() if torch else None
    yield
    cv2.setNumThreads(cv2_threads)
    if torch is not None:
        torch.set_num_threads(torch_threads)


@pytest.mark.parametrize("flip", [False, True])
def test_a_facealign_only_run_on_a_video(face_image, tmp_path, restore_threads, flip):
    """--flip times flip averaging and names it in each facealign row."""
    path = tmp_path / "v.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (face_image.shape[1], face_image.shape[0]))
    for k in range(4):
        writer.write(np.roll(face_image, 2 * k, axis=1))
    writer.release()
    out = tmp_path / "speed.json"
    assert speed.main(["--video", str(path), "--frames", "3", "--methods", "facealign", "--threads", "1",
                       "--rounds", "2", "--json", str(out)] + ["--flip"] * flip) == 0
    report = json.loads(out.read_text())
    assert report["setup"]["frames"] == 3 and report["setup"]["threads"] == 1 and report["setup"]["rounds"] == 2
    assert all(r["rounds"] == 2 and r["frames"] == 6 for r in report["rows"])
    modes = {(r["mode"], r["detail"].split(" (")[0]) for r in report["rows"]}
    label = "ort fp32 flip" if flip else "ort fp32"
    assert ("image", label) in modes and ("video", label) in modes
    assert all(r["faces_per_frame"] == 1.0 and r["ms_median"] > 0 for r in report["rows"])
