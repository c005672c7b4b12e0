"""End-to-end video throughput and coverage on real clips (../shared/data/videos).

For each clip: frames processed per second end to end (decode + detection + tracking +
landmarks + smoothing + CSV writing, on the threads given, 2 by default), the share of
frames with a face, mean landmark confidence, number of face ids, and whether the stream
was truncated. Prints a markdown table. Run with the released model::

    python benchmarks/video_real.py --backend ort
    python benchmarks/video_real.py --model /path/to/tiny --backend torch --max-frames 20   # mechanics only
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common import add_model_arguments, make_aligner  # noqa: E402  (benchmarks/common.py)

VIDEOS = REPO.parent / "shared" / "data" / "videos"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_arguments(p)
    p.add_argument("--videos", type=Path, default=VIDEOS, help="folder of clips")
    p.add_argument("--limit", type=int, default=None, help="at most this many clips (by name)")
    p.add_argument("--max-frames", type=int, default=60, help="frames per clip (0: all)")
    p.add_argument("--redetect-every", type=int, default=10)
    p.add_argument("--batch-frames", type=int, default=1)
    p.add_argument("--no-smooth", action="store_true")
    return p.parse_args(argv)


def run_clip(aligner, path: Path, args: argparse.Namespace, out_dir: Path) -> dict:
    """Track one clip, writing the CSV as the CLI does; timing covers the whole loop."""
    from facealign_sdk.video import CsvWriter, track

    options = dict(redetect_every=args.redetect_every, batch_frames=args.batch_frames, smooth=not args.no_smooth,
                   max_frames=args.max_frames or None)
    start = time.perf_counter()
    video = track(aligner, path, **options)
    conf: list[float] = []
    with open(out_dir / f"{path.stem}.csv", "w", newline="") as stream:
        writer = CsvWriter(stream, aligner.num_landmarks)
        for result in video:
            writer.write(result)
            conf += [f.confidence for f in result.faces]
    seconds = time.perf_counter() - start
    rep = video.report
    return {
        "clip": path.name,
        "size": f"{video.info.width}x{video.info.height}",
        "frames": rep.frames_decoded,
        "expected": rep.frames_expected,
        "fps": rep.frames_decoded / seconds if seconds > 0 else float("nan"),
        "with_face": rep.frames_with_face / max(rep.frames_decoded, 1),
        "confidence": float(np.mean(conf)) if conf else float("nan"),
        "ids": rep.faces_seen,
        "truncated": rep.truncated,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    clips = sorted(args.videos.glob("*.mp4"))[: args.limit]
    if not clips:
        raise SystemExit(f"{args.videos}: no .mp4 clips")
    aligner = make_aligner(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for path in clips:
            rows.append(run_clip(aligner, path, args, Path(tmp)))
            r = rows[-1]
            print(f"  {r['clip']}: {r['frames']} frames, {r['fps']:.1f} frames/s", file=sys.stderr)
    limit = f", first {args.max_frames} frames per clip" if args.max_frames else ""
    print(f"\n### Video end to end ({aligner.manifest.name}, backend {aligner.backend_name}, {args.threads} threads"
          f"{limit}, re-detect every {args.redetect_every}, batch {args.batch_frames} frames)\n")
    print("| clip | size | frames | frames/s | frames with a face | mean confidence | face ids | stream |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        stream = f"truncated ({r['frames']} of {r['expected']})" if r["truncated"] else "ok"
        print(f"| {r['clip']} | {r['size']} | {r['frames']} | {r['fps']:.1f} | {100 * r['with_face']:.1f} % "
              f"| {r['confidence']:.3f} | {r['ids']} | {stream} |")
    total_frames = sum(r["frames"] for r in rows)
    total_time = sum(r["frames"] / r["fps"] for r in rows if r["fps"] > 0)
    mean_face = np.mean([r["with_face"] for r in rows])
    print(f"| **all** | | {total_frames} | {total_frames / total_time:.1f} | {100 * mean_face:.1f} % | "
          f"{np.nanmean([r['confidence'] for r in rows]):.3f} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
