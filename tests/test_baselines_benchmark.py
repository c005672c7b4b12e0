"""benchmarks/baselines.py without MediaPipe or dlib: the turn breakdown of the error table."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from facealign_sdk.meanface import MEAN_FACE_68

from .conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
_spec = importlib.util.spec_from_file_location("baselines", REPO / "benchmarks" / "baselines.py")
baselines = importlib.util.module_from_spec(_spec)
sys.modules["baselines"] = baselines  # its dataclasses look their module up
_spec.loader.exec_module(baselines)


def _projected(yaw_deg: float) -> np.ndarray:
    """The 3-D mean face turned by ``yaw_deg`` and projected orthographically (image y down)."""
    a = math.radians(yaw_deg)
    rot = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    return (np.asarray(MEAN_FACE_68, np.float64) @ rot.T)[:, :2] * 100


def test_turn_ratio_falls_as_the_face_turns():
    ratios = [baselines.turn_ratio(_projected(yaw)) for yaw in (0, 30, 60, 85)]
    assert 0.5 < ratios[0] < 0.9  # frontal: in the top bin
    assert ratios == sorted(ratios, reverse=True)
    assert ratios[-1] < 0.35  # near-profile: in the strongly turned bin
    # scale-free
    assert baselines.turn_ratio(_projected(30) * 3.7) == pytest.approx(ratios[1])


def test_turn_breakdown_counts_failures_and_box_errors_per_bin():
    ratios = [0.2, 0.3, 0.4, 0.6, 0.7]
    errors = {"a": [0.5, math.inf, 0.05, 0.04, 0.2], "b": [0.05, 0.08, math.inf, 0.02, 0.03]}
    rows = baselines.turn_breakdown(errors, ratios)
    assert [r["faces"] for r in rows] == [2, 1, 2]
    # strongly turned: a fails both (one missed), b none; a's box NME is over its one found face
    assert rows[0]["a"]["fr_pct"] == 100.0 and rows[0]["b"]["fr_pct"] == 0.0
    assert rows[0]["a"]["box_nme_median_pct"] == pytest.approx(0.5 * 0.2 * 100)
    assert rows[0]["b"]["box_nme_median_pct"] == pytest.approx(np.median([0.05 * 0.2, 0.08 * 0.3]) * 100)
    assert rows[1]["b"]["fr_pct"] == 100.0 and math.isnan(rows[1]["b"]["box_nme_median_pct"])  # missed only
    assert rows[2]["a"]["fr_pct"] == 50.0
    table = baselines.turn_markdown({"set": rows}, ["a", "b"]).splitlines()
    assert table[-3:][0].startswith("| set | 0-0.35 | 2 | 100.0 | 10.00 | 0.0 |")


def test_turn_table_marks_an_empty_bin_instead_of_printing_nan():
    rows = baselines.turn_breakdown({"a": [0.05, 0.04]}, [0.6, 0.7])
    table = baselines.turn_markdown({"set": rows}, ["a"])
    assert "nan" not in table
    assert "| set | 0-0.35 | 0 | - | - |" in table.splitlines()


def test_results_json_has_null_for_every_non_finite_value():
    report = {"a": math.nan, "b": [1.0, math.nan, {"c": math.nan, "d": "x"}], "e": (2, math.nan),
              "per_image": baselines._json_errors([0.0312345678, math.inf])}
    safe = baselines.json_safe(report)
    assert safe == {"a": None, "b": [1.0, None, {"c": None, "d": "x"}], "e": [2, None], "per_image": [0.031235, None]}
    assert json.loads(json.dumps(safe, allow_nan=False)) == safe


def test_own_convention_rows_follow_the_data_set_of_each_folder():
    assert baselines.data_set_name(Path("../shared/data/300w/val")) == "300w"
    assert baselines.data_set_name(Path("/x/aflw2000/train")) == "aflw2000"
    assert baselines.data_set_name(Path("/x/my_photos")) == "my_photos"
    # a set without facealign-own rows (the model has no convention for it) gets dashes in the turn table
    rows = baselines.turn_breakdown({"facealign": [0.05, 0.04]}, [0.6, 0.7])
    table = baselines.turn_markdown({"set": rows}, ["facealign", baselines.OWN])
    assert "| set | 0.5-inf | 2 | 0.0 | " in table and table.splitlines()[-1].endswith("| - | - |")


def test_every_facealign_row_gets_the_bgr_image_and_the_peers_rgb(tmp_path):
    import shutil

    from facealign_sdk.imageio import read_image
    from facealign_sdk.pts import write_pts

    from .conftest import SAMPLES

    shutil.copy(SAMPLES / "face.jpg", tmp_path / "face.jpg")
    write_pts(tmp_path / "face.pts", MEAN_FACE_68[:, :2] + 250)
    seen = {}

    def record(name):
        def run(model, image, gt, mode, tally):
            seen[name] = image
            tally.errors.append(0.01)
        return run

    runners = {m: (record(m), None) for m in ("facealign", baselines.OWN, "dlib")}
    baselines.evaluate_set(runners, tmp_path, None, ["end2end"], None)
    bgr = read_image(tmp_path / "face.jpg")
    np.testing.assert_array_equal(seen["facealign"], bgr)
    np.testing.assert_array_equal(seen[baselines.OWN], bgr)
    np.testing.assert_array_equal(seen["dlib"], bgr[..., ::-1])



def test_a_run_of_facealign_alone_writes_its_settings_and_errors(tmp_path):
    """--methods facealign runs without the peers' packages; --flip averages each crop with its mirror image,
    which moves the points and is named in the report."""
    import shutil

    from facealign_sdk import Aligner
    from facealign_sdk.pts import write_pts

    from .conftest import SAMPLES

    folder = tmp_path / "faces"
    folder.mkdir()
    shutil.copy(SAMPLES / "face.jpg", folder / "face.jpg")
    write_pts(folder / "face.pts", Aligner(convention="none").align(str(SAMPLES / "face.jpg"))[0].points)
    errors = []
    for flip in (False, True):
        out = tmp_path / f"out{flip}"
        args = [str(folder), "--methods", "facealign", "--mode", "fixed", "--out", str(out), "--no-ced"]
        assert baselines.main(args + ["--flip"] * flip) == 0
        report = json.loads((out / "results.json").read_text())
        assert ("flip-averaged" in report["facealign_model"]) is flip
        (per_set,) = report["per_image_nme"].values()
        errors += per_set["fixed"]["facealign"]
    assert all(0 < e < 0.1 for e in errors) and errors[0] != errors[1]
