"""Ghost faces in video: frames where tracking reports more faces than the detector finds anywhere
within +-WINDOW frames (issue 12 asks for <= 1 % of the frames of every clip).

For each clip, YuNet runs on every frame (the reference counts), then ``Aligner.track`` with the
default options (what ``facealign video`` does) reports its faces; a frame is a *ghost frame* when it
reports more faces than the most the detector found in the frames around it. Also counts frames
where two reported faces overlap (IoU > 0.5: one face tracked twice), and frames reporting fewer
faces than the detector finds in that very frame (what ending doubtful tracks costs). CPU-heavy: every frame goes
through the detector and the tracker, so use ``--max-frames`` and one thread::

    OMP_NUM_THREADS=1 python benchmarks/ghost_tracks.py --threads 1 --max-frames 150
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the checkout's facealign_sdk

from common import add_model_arguments, make_aligner  # noqa: E402  (benchmarks/common.py)
from video_real import VIDEOS  # noqa: E402  (the shared clips)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--videos", type=Path, default=VIDEOS, help="folder of clips")
    add_model_arguments(p)
    p.add_argument("--clips", default="", help="comma list of clip names (default: every .mp4 in --videos)")
    p.add_argument("--max-frames", type=int, default=150, help="frames per clip from the start (0: all)")
    p.add_argument("--window", type=int, default=15, help="+- frames in which the detector may find the face")
    p.add_argument("--json", type=Path, default=None, help="also write the per-clip rows here")
    return p.parse_args(argv)


def ghost_frames(reported: list[int], detected: list[int], window: int) -> list[int]:
    """Indices of frames reporting more faces than the detector found within +-window frames."""
    return [i for i, n in enumerate(reported)
            if n > max(detected[max(0, i - window): i + window + 1], default=0)]


def duplicate_frames(results) -> list[int]:
    """Indices of frames where two reported faces overlap with IoU > 0.5 (one face, two tracks)."""
    from facealign_sdk.boxes import box_iou

    out = []
    for i, r in enumerate(results):
        boxes = [f.landmarks.box for f in r.faces]
        if any(box_iou(a, b) > 0.5 for k, a in enumerate(boxes) for b in boxes[k + 1:]):
            out.append(i)
    return out


def measure_clip(aligner, clip: Path, max_frames: int | None, window: int) -> dict:
    from facealign_sdk.video import VideoReader

    detected = [len(aligner.detect(frame.image)) for frame in VideoReader(clip, max_frames=max_frames)]
    results = list(aligner.track(clip, max_frames=max_frames))
    reported = [len(r.faces) for r in results]
    n = min(len(detected), len(reported))
    ghosts = ghost_frames(reported[:n], detected[:n], window)
    dups = duplicate_frames(results[:n])
    under = [i for i in range(n) if reported[i] < detected[i]]  # the price: faces the detector sees, not reported
    return {"clip": clip.name, "frames": n, "ghost_frames": len(ghosts), "ghost_pct": round(100 * len(ghosts) / max(n, 1), 2),
            "duplicate_frames": len(dups), "under_reported_pct": round(100 * len(under) / max(n, 1), 2),
            "max_reported": max(reported, default=0),
            "max_detected": max(detected, default=0), "first_ghosts": ghosts[:5]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    aligner = make_aligner(args)
    names = [c.strip() for c in args.clips.split(",") if c.strip()]
    clips = [args.videos / c for c in names] if names else sorted(args.videos.glob("*.mp4"))
    rows = []
    print("| clip | frames | ghost frames | ghost % | duplicate frames | fewer than detected % | max reported / detected |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for clip in clips:
        row = measure_clip(aligner, clip, args.max_frames or None, args.window)
        rows.append(row)
        print(f"| {row['clip']} | {row['frames']} | {row['ghost_frames']} | {row['ghost_pct']} | "
              f"{row['duplicate_frames']} | {row['under_reported_pct']} | {row['max_reported']} / {row['max_detected']} |", flush=True)
    worst = max((r["ghost_pct"] for r in rows), default=0.0)
    print(f"worst clip: {worst} % ghost frames (limit 1 %)")
    if args.json:
        args.json.write_text(json.dumps({"max_frames": args.max_frames, "window": args.window, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
