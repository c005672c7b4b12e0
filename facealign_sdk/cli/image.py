"""facealign image PATH... : landmarks for one or many images (JSON or CSV out, optional drawings)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from ..csvformat import csv_text, landmark_cells, landmark_columns
from ..imageio import ImageError, list_images
from ..outputs import check_output_file, check_output_folder, unique_stems, write_file_atomic, write_image
from ..results import ImageLandmarks, draw_faces
from .flags import (DECODER_FLAGS, MODEL_FLAGS, add_aligner_flags, add_overwrite_flag, add_skip_bad_flag,
                    aligner_from_args)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``facealign image`` flags."""
    parser.add_argument("paths", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument("--out", type=Path, help="write results to .json or .csv (default: JSON to stdout)")
    parser.add_argument("--draw", type=Path, metavar="DIR", help="write annotated copies of the images here")
    add_overwrite_flag(parser, "--out file (drawings in --draw are replaced always)")
    add_skip_bad_flag(parser, "unreadable images")
    add_aligner_flags(parser, MODEL_FLAGS + DECODER_FLAGS + ("max_faces",))


def expand_paths(paths: list[Path]) -> list[Path]:
    """Files as given; folders expanded to their images (sorted). Missing paths are an error."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += list_images(p)
        elif p.exists():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return files


def check_output(out: Path | None, overwrite: bool, inputs: list[Path] = ()) -> None:
    """Fail before any work when the output cannot be written."""
    if out is None:
        return
    check_output_file(out, overwrite, inputs, suffixes=(".json", ".csv"), what="--out")


def write_csv(path: Path, results: list[ImageLandmarks], num_landmarks: int) -> None:
    """One row per face: image, face_id, box, score, confidence, x_0..x_{L-1}, y_0.., c_0.. (no face: a row with
    face_id -1); see :mod:`facealign_sdk.csvformat`."""
    header = ["image", "face_id", "x1", "y1", "x2", "y2", "score", "confidence", *landmark_columns(num_landmarks)]
    rows: list[list[object]] = [header]
    for res in results:
        if not res.faces:
            rows.append([res.source, -1] + [""] * (len(header) - 2))
        for k, face in enumerate(res.faces):
            rows.append([res.source, k, *(f"{v:.2f}" for v in face.box), f"{face.score:.4f}",
                         f"{face.mean_confidence:.4f}", *landmark_cells(face, 3, 4)])
    write_file_atomic(path, csv_text(rows))  # the whole file or none (Ctrl-C, a full disk)


def run(args: argparse.Namespace) -> int:
    """``facealign image``: check paths and outputs, align every image, write JSON / CSV and drawings."""
    files = expand_paths(args.paths)
    check_output(args.out, args.overwrite, files)
    drawings = [None] * len(files)
    if args.draw:
        check_output_folder(args.draw)
        drawings = [args.draw / f"{stem}_landmarks.jpg" for stem in unique_stems(files)]
        args.draw.mkdir(parents=True, exist_ok=True)
    aligner = aligner_from_args(args)
    print(f"facealign: model {aligner.manifest.name}, backend {aligner.backend_name}, "
          f"convention {aligner.convention or 'none'}", file=sys.stderr)
    results, skipped = [], []
    for path, drawing in tqdm(list(zip(files, drawings)), desc="images", unit="img", disable=len(files) < 2 or not args.progress,
                              file=sys.stderr):
        try:
            image = aligner.load_image(path)
        except ImageError as exc:
            if not args.skip_bad:
                hint = " (--skip-bad goes on with the other images)" if len(files) > 1 else ""
                raise ImageError(f"{exc}{hint}") from exc
            skipped.append(path)
            tqdm.write(f"facealign image: skipped {exc}", file=sys.stderr)
            continue
        faces = aligner.align(image)
        results.append(ImageLandmarks(source=str(path), width=image.shape[1], height=image.shape[0],
                                      convention=aligner.convention, faces=faces))
        if drawing is not None:
            write_image(drawing, draw_faces(image, faces))
    if args.out and args.out.suffix.lower() == ".csv":
        write_csv(args.out, results, aligner.num_landmarks)
    else:
        text = json.dumps([r.to_dict() for r in results], indent=1, allow_nan=False)  # strict JSON: never a bare NaN
        if args.out:
            write_file_atomic(args.out, text)
        else:
            print(text)
    n_faces = sum(len(r.faces) for r in results)
    print(f"facealign: {len(results)} image(s), {n_faces} face(s)" + (f", {len(skipped)} unreadable skipped" if skipped else "")
          + (f" -> {args.out}" if args.out else ""), file=sys.stderr)
    return 0
