"""Fit geometry.POINTS_TO_BOX: how YuNet's box sits relative to the tight box of the 68 points.

    python benchmarks/calibrate_boxes.py ../shared/data/ytf68/train

Prints the median offsets/size (units of sqrt(w*h) of the tight point box) and YuNet's recall.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
from tqdm import tqdm

from facealign_sdk.detectors.yunet import YuNetDetector
from facealign_sdk.imageio import list_images, read_image
from facealign_sdk.pts import read_pts
from facealign_sdk.schemes import IBUG68


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("folder")
    ap.add_argument("--limit", type=int, default=1500)
    args = ap.parse_args()
    det = YuNetDetector()
    rows, missed, kp_err = [], 0, []
    files = list_images(args.folder)[:: max(1, len(list_images(args.folder)) // args.limit)]
    for f in tqdm(files):
        pts = read_pts(f.with_suffix(".pts"), 68)
        dets = det.detect(read_image(f))
        lo, hi = pts.min(0), pts.max(0)
        c = (lo + hi) / 2
        size = math.sqrt((hi - lo).prod())
        hits = [d for d in dets if np.hypot(*(np.array(d.box).reshape(2, 2).mean(0) - c)) < 0.5 * size]
        if not hits:
            missed += 1
            continue
        b = np.array(hits[0].box)
        bc = b.reshape(2, 2).mean(0)
        bsize = math.sqrt((b[2] - b[0]) * (b[3] - b[1]))
        rows.append([(bc[0] - c[0]) / size, (bc[1] - c[1]) / size, bsize / size])
        kp = np.array(hits[0].keypoints)
        eyes = np.array(IBUG68.eye_centers(pts))
        kp_err.append(np.hypot(*(kp[:2] - eyes).T).mean() / size)
    r = np.array(rows)
    print(f"images {len(files)}, detected {len(rows)}, missed {missed}")
    print("median dx, dy, size:", np.round(np.median(r, 0), 4), " IQR:", np.round(np.percentile(r, 75, 0) - np.percentile(r, 25, 0), 4))
    print("mean eye-keypoint distance / face size (first two keypoints = image-left, image-right eye):", round(float(np.mean(kp_err)), 4))


if __name__ == "__main__":
    main()
