"""`facealign image` and `facealign bench` through the CLI entry point: outputs and exit codes."""

import csv
import json
import shutil

import pytest

from facealign_sdk.cli.main import main

from .conftest import SAMPLES


def test_image_json_csv_and_drawing(tiny_model, tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = main(["image", str(SAMPLES / "face.jpg"), str(SAMPLES / "two_faces.jpg"), "--model", str(tiny_model),
               "--backend", "torch", "--out", str(out), "--draw", str(tmp_path / "draw")])
    assert rc == 0
    data = json.loads(out.read_text())
    assert [len(r["faces"]) for r in data] == [1, 2]
    assert len(data[0]["faces"][0]["points"]) == 68
    assert sorted(p.name for p in (tmp_path / "draw").iterdir()) == ["face_landmarks.jpg", "two_faces_landmarks.jpg"]
    assert "backend torch:cpu" in capsys.readouterr().err

    rows_path = tmp_path / "r.csv"
    assert main(["image", str(SAMPLES), "--model", str(tiny_model), "--backend", "torch", "--out", str(rows_path)]) == 0
    rows = list(csv.DictReader(rows_path.open()))
    assert len(rows) == 3 and "x_67" in rows[0] and "c_0" in rows[0]


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.jpg"], "no such file"),
        (["{bad}"], "not a readable image"),
        (["{face}", "--backend", "onnx"], "invalid choice"),
        (["{face}", "--model", "no-such-model"], "not found"),
        (["{face}", "--out", "{tmp}/r.txt"], ".json or .csv"),
        (["{face}", "--out", "{tmp}/nodir/r.json"], "does not exist"),
        (["{face}", "--convention", ""], "no annotation convention ''"),  # not the default (the C++ sample alike)
    ],
)
def test_image_bad_input_exits_2_with_one_line(tiny_model, tmp_path, capsys, args, message):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"nope")
    fmt = {"bad": str(bad), "face": str(SAMPLES / "face.jpg"), "tmp": str(tmp_path)}
    argv = ["image"] + [a.format(**fmt) for a in args]
    if "--model" not in argv:
        argv += ["--model", str(tiny_model)]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse rejects unknown choices itself, also with exit 2
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1]


def test_unreadable_image_among_good_ones_stops_or_is_skipped(tiny_model, tmp_path, capsys):
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "r.json"
    argv = ["image", str(SAMPLES / "face.jpg"), str(bad), "--model", str(tiny_model), "--backend", "torch", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "corrupt.jpg: not a readable image" in err[-1] and "--skip-bad" in err[-1]
    assert not out.exists()
    assert main(argv + ["--skip-bad"]) == 0
    assert [r["source"] for r in json.loads(out.read_text())] == [str(SAMPLES / "face.jpg")]
    err = capsys.readouterr().err
    assert "skipped" in err and "corrupt.jpg" in err and "1 unreadable skipped" in err


def test_existing_output_needs_overwrite(tiny_model, tmp_path, capsys):
    out = tmp_path / "r.json"
    out.write_text("keep me")
    assert main(["image", str(SAMPLES / "face.jpg"), "--model", str(tiny_model), "--out", str(out)]) == 2
    assert out.read_text() == "keep me"
    assert "--overwrite" in capsys.readouterr().err


def test_bench_reports_each_backend(tiny_model, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--model", str(tiny_model), "--backends", "torch", "--batch", "1,2", "--iters", "1",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())["results"][0]
    assert result["target"] == "torch" and result["net_ms_per_face_b2"] > 0 and result["end_to_end_ms_per_image"] > 0
    assert result["decode_ms_per_face"] > 0
    assert main(["bench", "--model", str(tiny_model), "--backends", "tensorflow"]) == 2


@pytest.mark.parametrize("args, message", [(["--batch", "0"], "positive integers"), (["--batch", "a,b"], "positive integers"),
                                           (["--iters", "0"], "at least 1"),
                                           (["--convention", "lfpw"], "no annotation convention 'lfpw'")])
def test_bench_rejects_bad_numbers_before_any_work(tiny_model, capsys, args, message):
    assert main(["bench", "--model", str(tiny_model), "--backends", "torch", *args]) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]


def test_image_and_video_csvs_end_every_line_with_newline_alone(tiny_model, tmp_path):
    """One line ending (csvformat.LINE_END) in every CSV the CLI writes, so no diff or parser sees mixed ones."""
    folder = tmp_path / "frames"
    folder.mkdir()
    shutil.copy(SAMPLES / "face.jpg", folder / "a.jpg")
    shutil.copy(SAMPLES / "two_faces.jpg", folder / "b.jpg")
    image_csv, video_csv = tmp_path / "image.csv", tmp_path / "video.csv"
    model = ["--model", str(tiny_model), "--backend", "torch", "--no-progress"]
    assert main(["image", str(folder), "--out", str(image_csv), *model]) == 0
    assert main(["video", str(folder), "--out", str(video_csv), *model]) == 0
    for path in (image_csv, video_csv):
        data = path.read_bytes()
        assert b"\r" not in data and data.endswith(b"\n"), path.name
        assert data.count(b"\n") == len(list(csv.reader(path.open(newline="")))), path.name
