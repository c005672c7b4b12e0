"""facealign eval FOLDER... : NME / FR@10 / AUC@10 (and a CED plot) on folders of images with .pts.

See :mod:`facealign_sdk.evaluate` for the modes and how a detection is matched to the annotated face.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from ..errors import EvalItemError, MissingDependencyError
from ..evaluate import CED_SUFFIXES, MODES, TABLE_NOTE, evaluate_folder, format_table, parse_folder_spec, plot_ced, \
    select_images, write_json
from ..outputs import check_output_file
from .flags import add_aligner_flags, add_skip_bad_flag, aligner_from_args


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``facealign eval``."""
    parser.add_argument("folders", nargs="+", metavar="FOLDER",
                        help="folders of images with iBUG .pts beside them; PATH:FRACTION evaluates only the "
                        "held-out share FRACTION of that folder (e.g. ../shared/data/infanface/train:0.25)")
    parser.add_argument("--mode", choices=("end2end", "fixed", "both"), default="both",
                        help="end2end: the detector finds the face; fixed: a box from the GT points")
    parser.add_argument("--held-out-only", type=float, default=None, metavar="FRACTION",
                        help="evaluate only the held-out share of every folder without its own :FRACTION")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="at most N images per folder (evenly spaced)")
    parser.add_argument("--ced", type=Path, default=None, metavar="PNG", help="write a CED plot (extra [plots])")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="write per-image errors and summaries")
    add_skip_bad_flag(parser, "bad items (an unreadable image, a missing or bad .pts)")
    add_aligner_flags(parser)


def run(args: argparse.Namespace) -> int:
    """``facealign eval``: evaluate every folder in the chosen modes; print a table."""
    if args.ced is not None and importlib.util.find_spec("matplotlib") is None:
        raise MissingDependencyError("matplotlib", "plots", "--ced")
    # fail before the evaluation, not after it
    if args.ced is not None:
        check_output_file(args.ced, create_folder=True, suffixes=CED_SUFFIXES, what="--ced (the plot)")
    if args.json is not None:
        check_output_file(args.json, create_folder=True)
    sets = [parse_folder_spec(spec, args.held_out_only) for spec in args.folders]
    for folder, held_out in sets:
        select_images(folder, held_out, args.limit)  # fail fast on a missing/empty folder
    aligner = aligner_from_args(args)
    modes = MODES if args.mode == "both" else (args.mode,)
    try:
        results = [
            evaluate_folder(aligner, folder, mode, held_out, args.limit, args.progress, args.skip_bad)
            for folder, held_out in sets
            for mode in modes
        ]
    except EvalItemError as exc:
        print(f"facealign eval: failed: {exc}", file=sys.stderr)
        return 1
    print(f"model {aligner.manifest.name}, backend {aligner.backend_name}, refine {aligner.refine}, "
          f"blur {aligner.landmarker.blur_sigma:g} px, flip {aligner.flip}, "
          f"convention {aligner.convention or 'none'}")
    print(format_table(results))
    print(TABLE_NOTE)
    if args.json is not None:
        print(f"wrote {write_json(results, args.json)}")
    if args.ced is not None:
        print(f"wrote {plot_ced(results, args.ced)}")
    return 0
