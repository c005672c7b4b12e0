"""Matching face boxes: which detection is a given face (evaluation) or a tracked face (tracking).

Boxes are ``(x1, y1, x2, y2)``; overlap is :func:`box_iou`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["box_iou", "centre_distance", "match_box"]


def box_iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 for disjoint or empty boxes)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def centre_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """Distance of the box centres in units of box ``b``'s size (the square root of its area)."""
    size = math.sqrt(max((b[2] - b[0]) * (b[3] - b[1]), 1e-6))
    return math.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2) / size


def match_box(boxes: Sequence[Sequence[float]], reference: Sequence[float], min_iou: float) -> int | None:
    """Index of the box overlapping ``reference`` (IoU >= ``min_iou``) whose centre is nearest its centre, or
    ``None``; the first such box on a tie."""
    best, best_dist = None, math.inf
    for i, box in enumerate(boxes):
        if box_iou(box, reference) < min_iou:
            continue
        dist = centre_distance(box, reference)
        if dist < best_dist:
            best, best_dist = i, dist
    return best
