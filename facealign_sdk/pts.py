"""Reading and writing iBUG / 300-W ``.pts`` landmark files (1-based on disk, 0-based in memory)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError


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
