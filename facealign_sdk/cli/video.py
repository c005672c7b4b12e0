"""facealign video INPUT --out landmarks.csv : tracked, smoothed landmarks for every frame (OpenFace-style CSV).

INPUT is a video file, a camera index (``0``) or a folder of images (sorted by name).

Outputs (at least one): ``--out`` CSV with the OpenFace 2 columns ``frame, face_id,
timestamp, confidence, success, x_0..x_{L-1}, y_0..y_{L-1}`` plus ``c_0..c_{L-1}``
(per-landmark confidence); ``frame`` is 1-based, ``timestamp`` in seconds from the
container. Every decoded frame has at least one row: a frame without a face has
``face_id -1``, ``success 0``, confidence 0 and empty landmark fields. ``--json`` writes the
same as JSON (with the annotation convention of the points), ``--draw`` an annotated mp4. Rows are
flushed frame by frame, so the files are complete up to the last frame processed even after Ctrl-C.

Exit codes: 0 every frame processed; 1 failure (a full disk: the outputs keep every
complete frame); 2 bad input (nothing written); 3 the stream broke: decoding stopped
before the container's duration, by more than 2 frames and 1 % (judged by time, since
many containers only estimate the frame count; all decoded frames are written); 130
interrupted (everything up to then written, each frame in every output or none).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path

from pydantic import ValidationError
from tqdm import tqdm

from .. import interrupts
from ..errors import InputError
from ..video import (
    CsvWriter,
    DrawWriter,
    JsonWriter,
    OneEuroConfig,
    SmoothingConfig,
    TrackOptions,
    TrackReport,
    VideoTrack,
    check_outputs,
    open_text_output,
)
from .flags import DECODER_FLAGS, MODEL_FLAGS, add_aligner_flags, add_overwrite_flag, aligner_from_args, invalid_flag

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_TRUNCATED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

_DEFAULTS = TrackOptions()
_SMOOTH = SmoothingConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``facealign video`` flags."""
    parser.description = __doc__
    parser.add_argument("input", help="video file, camera index (e.g. 0) or folder of images")
    out = parser.add_argument_group("outputs")
    out.add_argument("--out", type=Path, help="CSV file (OpenFace 2 columns + per-landmark confidence); a .json name "
                     "writes the JSON output instead")
    out.add_argument("--json", type=Path, help="JSON file: every frame with its faces, and a run report")
    out.add_argument("--draw", type=Path, metavar="MP4", help="annotated video (mp4v)")
    add_overwrite_flag(out)
    trk = parser.add_argument_group("tracking")
    trk.add_argument("--redetect-every", type=int, default=_DEFAULTS.redetect_every, metavar="N",
                     help="run the face detector every N frames (and whenever a face is lost; 0: only then)")
    trk.add_argument("--min-confidence", type=float, default=_DEFAULTS.min_confidence,
                     help="mean landmark confidence below which a face counts as lost (success=0)")
    trk.add_argument("--batch-frames", type=int, default=_DEFAULTS.batch_frames, metavar="K",
                     help="frames whose crops share one network call (faster on GPU; crops are taken "
                          "from landmarks up to K frames old)")
    trk.add_argument("--crop-deadband", type=float, default=_DEFAULTS.crop_deadband, metavar="F",
                     help="a still face keeps its crop until it drifts by this fraction of the crop (0: re-crop "
                     "every frame)")
    trk.add_argument("--fps", type=float, default=None, help="frame rate for image folders (default 30)")
    trk.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    smo = parser.add_argument_group("smoothing (One-Euro filters on the face pose and on its size-normalised shape)")
    smo.add_argument("--no-smooth", action="store_true", help="raw per-frame landmarks")
    smo.add_argument("--pose-cutoff", type=float, default=_SMOOTH.pose.min_cutoff,
                     help="Hz; pose (position, size, roll) smoothing at rest: lower = smoother")
    smo.add_argument("--pose-beta", type=float, default=_SMOOTH.pose.beta, help="pose: higher = less lag on fast motion")
    smo.add_argument("--shape-cutoff", type=float, default=_SMOOTH.shape.min_cutoff,
                     help="Hz; shape (expression) smoothing at rest: lower = smoother")
    smo.add_argument("--shape-beta", type=float, default=_SMOOTH.shape.beta,
                     help="shape: higher = less lag on fast expression changes")
    smo.add_argument("--d-cutoff", type=float, default=_SMOOTH.pose.d_cutoff, help="Hz; cutoff of the speed estimates")
    add_aligner_flags(parser, MODEL_FLAGS + DECODER_FLAGS + ("max_faces",))  # --max-faces caps detections and tracks


def options_from_args(args: argparse.Namespace) -> TrackOptions:
    """TrackOptions from parsed flags; a value out of range is a one-line ValueError (exit 2)."""
    try:
        return _options(args)
    except ValidationError as exc:
        raise invalid_flag(exc) from None


def _options(args: argparse.Namespace) -> TrackOptions:
    return TrackOptions(
        redetect_every=args.redetect_every, min_confidence=args.min_confidence, max_faces=args.max_faces,
        smooth=not args.no_smooth, batch_frames=args.batch_frames, fps=args.fps, max_frames=args.max_frames,
        crop_deadband=args.crop_deadband,
        smoothing=SmoothingConfig(
            pose=OneEuroConfig(min_cutoff=args.pose_cutoff, beta=args.pose_beta, d_cutoff=args.d_cutoff),
            shape=OneEuroConfig(min_cutoff=args.shape_cutoff, beta=args.shape_beta, d_cutoff=args.d_cutoff),
        ),
    )


def _summary(report: TrackReport, outputs: list[Path]) -> str:
    expected = f" of {report.frames_expected}" if report.frames_expected is not None else ""
    text = (f"{report.frames_decoded}{expected} frames, {report.frames_with_face} with a face, "
            f"{report.faces_seen} face id(s), {report.fps:.1f} frames/s -> {', '.join(map(str, outputs))}")
    if report.frames_unreadable:
        text += f"\nfacealign video: {report.frames_unreadable} unreadable image(s) skipped (rows with face_id -1)"
    if report.truncated:  # the library has logged a warning already
        text += "\nfacealign video: the stream is truncated; every decoded frame was written (exit 3)"
    if report.interrupted:
        text += "\nfacealign video: interrupted; the output holds every frame processed until then (exit 130)"
    return text


def _exit_code(report: TrackReport) -> int:
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_TRUNCATED if report.truncated else EXIT_OK


def output_by_suffix(args: argparse.Namespace) -> None:
    """``--out x.json`` is the JSON output (the suffix picks the format, as in ``facealign image``)."""
    if args.out is not None and args.out.suffix.lower() == ".json":
        if args.json is not None:
            raise InputError(f"--out {args.out} is a JSON name and --json {args.json} is given too: give one")
        args.out, args.json = None, args.out


def run(args: argparse.Namespace) -> int:
    """Check inputs and outputs, then track the video and stream the results to the outputs."""
    options = options_from_args(args)
    output_by_suffix(args)
    outputs = check_outputs([args.out, args.json, args.draw], args.overwrite, args.input)
    aligner = aligner_from_args(args)
    video = VideoTrack(aligner.tracker(options), args.input)  # opens the source: bad input raises here
    report = video.report
    with ExitStack() as stack:
        writers = _open_writers(args, video, aligner.num_landmarks, aligner.convention)
        bar = stack.enter_context(tqdm(total=video.reader.expected_frames, unit="frame", disable=not args.progress,
                                       desc=Path(str(args.input)).name, dynamic_ncols=True))
        try:
            for result, image in video.frames():
                with interrupts.deferred():  # a frame reaches every output or none
                    for w in writers:
                        w.write(result, image)
                bar.update(1)
        except KeyboardInterrupt:
            report.interrupted, report.stop_reason = True, "interrupted"
        except Exception:
            if not interrupts.was_interrupted():  # a library may re-raise Ctrl-C as another error
                raise
            report.interrupted, report.stop_reason = True, "interrupted"
        finally:
            with interrupts.deferred():
                _close_all(writers, report)
    if args.progress or report.truncated or report.interrupted or report.frames_unreadable:
        print(_summary(report, outputs), file=sys.stderr)
    return _exit_code(report)


def _close_all(writers: list, report: TrackReport) -> None:
    """Close every writer, even when one fails (a full disk); the first error is raised after."""
    error: BaseException | None = None
    for w in writers:
        try:
            w.close(report)
        except OSError as exc:
            error = error or exc
    if error is not None:
        raise error


def _open_writers(args: argparse.Namespace, video: VideoTrack, num_landmarks: int, convention: str | None) -> list:
    """Open every requested output; on failure, those already created are removed again."""
    writers: list = []
    created: list[Path] = []

    def cleanup() -> None:
        for w in writers:
            w.close()
        for path in created:
            path.unlink(missing_ok=True)

    try:
        if args.out is not None:
            stream = open_text_output(args.out, args.overwrite)
            created.append(args.out)
            writers.append(CsvWriter(stream, num_landmarks))
        if args.json is not None:
            stream = open_text_output(args.json, args.overwrite)
            created.append(args.json)
            writers.append(JsonWriter(stream, video.info, num_landmarks, convention))
        if args.draw is not None:
            writers.append(DrawWriter(args.draw, video.info))
            created.append(args.draw)
    except BaseException:
        cleanup()
        raise
    return writers
