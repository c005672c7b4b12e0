"""Reading and writing iBUG / 300-W ``.pts`` landmark files (1-based on disk, 0-based in memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError


# points farther outside the image than this share of its larger side are not annotations of that image
# (InfAnFace's crops leave points up to 0.2 outside)
MAX_OUTSIDE_FRACTION = 0.5
# points that all lie within this many pixels of each other annotate no face
MIN_SPAN_PX = 2.0


class PtsError(InputError):
    """A ``.pts`` file that cannot be used; the message names the file."""


def read_pts(path: str | Path, expected_points: int | None = None) -> np.ndarray:
    """Read a ``.pts`` file into an (N, 2) float array of 0-based pixel-centre coordinates."""
    path = Path(path)
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise PtsError(f"{path}: cannot read landmark file ({exc})") from exc
    try:
        start, end = lines.index("{"), lines.index("}")
        header = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[:start] if ":" in ln)}
        rows = [ln.split() for ln in lines[start + 1 : end]]
        short = next((ln for ln in rows if len(ln) < 2), None)
        if short is not None:
            raise ValueError(f"a point line holds {' '.join(short)!r}, expected 'x y'")
        points = np.array([[float(v) for v in ln[:2]] for ln in rows], dtype=np.float64).reshape(-1, 2)
        declared = int(header.get("n_points", len(points)))
    except (ValueError, IndexError) as exc:
        raise PtsError(f"{path}: not a valid .pts file ({exc})") from exc
    if len(points) != declared:
        raise PtsError(f"{path}: header says {declared} points but the file has {len(points)}")
    if expected_points is not None and len(points) != expected_points:
        raise PtsError(f"{path}: has {len(points)} points, expected {expected_points}")
    if not np.isfinite(points).all():
        raise PtsError(f"{path}: contains non-finite coordinates")
    return points - 1.0


def pts_text(points: np.ndarray) -> str:
    """(N, 2) 0-based points as the text of a 1-based ``.pts`` file."""
    pts = np.asarray(points, dtype=np.float64) + 1.0
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in pts)
    return f"version: 1\nn_points: {len(pts)}\n{{\n{body}\n}}\n"


def write_pts(path: str | Path, points: np.ndarray) -> None:
    """Write (N, 2) 0-based points as a 1-based ``.pts`` file."""
    Path(path).write_text(pts_text(points))


def check_points_in_image(points: np.ndarray, image: np.ndarray, image_path: Path) -> None:
    """PtsError naming the .pts when points lie far outside the image they annotate, or all in (nearly) one
    place (no face's annotation: its crop would be a pixel wide)."""
    span = points.max(axis=0) - points.min(axis=0) if len(points) else np.zeros(2)
    if len(points) > 1 and span.max() < MIN_SPAN_PX:
        shown = np.floor(span * 100) / 100  # rounded down: a span just under the limit must not read as the limit
        raise PtsError(f"{image_path.with_suffix('.pts')}: its {len(points)} points span {shown[0]:g} x "
                       f"{shown[1]:g} px, not a face (at least {MIN_SPAN_PX:g} px)")
    h, w = image.shape[:2]
    margin = MAX_OUTSIDE_FRACTION * max(h, w)
    x, y = points[:, 0], points[:, 1]
    outside = (x < -margin) | (x > w - 1 + margin) | (y < -margin) | (y > h - 1 + margin)
    if outside.any():
        k = int(np.argmax(outside))
        raise PtsError(f"{image_path.with_suffix('.pts')}: point {k} ({x[k]:.1f}, {y[k]:.1f}) lies far outside the "
                       f"{w}x{h} image (more than {MAX_OUTSIDE_FRACTION:g} of its size)")
