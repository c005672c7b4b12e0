"""Landmark smoothing over time: One-Euro filters on each face's pose and shape."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class OneEuroConfig(BaseModel):
    """One-Euro filter parameters (Casiez et al. 2012), with the speed in face sizes per second.

    ``min_cutoff`` (Hz): smoothing at rest (lower = smoother, more lag on slow drifts);
    ``beta``: how fast the cutoff rises with speed (higher = less lag on fast motion);
    ``d_cutoff`` (Hz): cutoff of the speed estimate itself.
    """

    model_config = ConfigDict(frozen=True)

    min_cutoff: float = Field(1.0, gt=0)
    beta: float = Field(1.0, ge=0)
    d_cutoff: float = Field(1.0, gt=0)


class SmoothingConfig(BaseModel):
    """Landmark smoothing: the face's pose and its shape get their own One-Euro filter.

    Each frame's landmarks are split into a pose (centre, size, roll: a similarity transform)
    and a shape (the landmarks in the face's own frame, centred, divided by the face size and
    rolled upright, i.e. coordinates normalised by face size). Head motion then moves only the
    pose, which is estimated from all points at once (little noise) and filtered lightly with a
    high ``beta`` (no lag); the shape, which only expressions change, is filtered strongly.
    Speeds are in face sizes (and radians) per second.
    """

    model_config = ConfigDict(frozen=True)

    pose: OneEuroConfig = Field(default_factory=lambda: OneEuroConfig(min_cutoff=4.0, beta=32.0, d_cutoff=1.0))
    shape: OneEuroConfig = Field(default_factory=lambda: OneEuroConfig(min_cutoff=0.3, beta=4.0, d_cutoff=1.0))


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """One-Euro low-pass filter over an array of coordinates (e.g. (L, 2) landmarks).

    The speed that opens the filter is measured in *face sizes per second* (divide by
    ``scale``), as MediaPipe's landmark smoothing does, so the same parameters work for
    small and large faces. ``dt`` comes from timestamps, not frame numbers.
    """

    def __init__(self, config: OneEuroConfig | None = None) -> None:
        self.config = config or OneEuroConfig()
        self.reset()

    def reset(self) -> None:
        """Forget the history: the next value passes through unchanged."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t = 0.0

    def __call__(self, value: np.ndarray, timestamp: float, scale: float | np.ndarray = 1.0) -> np.ndarray:
        """Filtered ``value`` at ``timestamp`` (s); the speed is divided by ``scale`` (per component or one)."""
        x = np.asarray(value, dtype=np.float64)
        if self._x is None or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), timestamp
            return x.copy()
        dt = timestamp - self._t
        if not dt > 0:  # repeated / out-of-order timestamp: keep the state, no update
            return self._x.copy()
        cfg = self.config
        speed = (x - self._x) / dt / np.maximum(scale, 1e-6)
        a_d = _alpha(cfg.d_cutoff, dt)
        self._dx = a_d * speed + (1 - a_d) * self._dx
        a = _alpha(cfg.min_cutoff + cfg.beta * np.abs(self._dx), dt)
        self._x = a * x + (1 - a) * self._x
        self._t = timestamp
        return self._x.copy()


def _rotation(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


class LandmarkSmoother:
    """Smooths the landmarks of one face over time (see :class:`SmoothingConfig`).

    ``points = centre + size * R(roll) @ shape``: centre is the mean point, size the RMS
    distance to it, roll the rotation that best fits the previous smoothed shape to the new
    points (least squares). Pose ``(cx, cy, log size, roll)`` and shape go through
    :class:`OneEuroFilter` with timestamps for dt; the result is put back together.
    """

    def __init__(self, config: SmoothingConfig | None = None) -> None:
        self.config = config or SmoothingConfig()
        self.pose = OneEuroFilter(self.config.pose)
        self.shape = OneEuroFilter(self.config.shape)
        self._ref: np.ndarray | None = None

    def reset(self) -> None:
        """Start afresh (a new or re-acquired face): the next points pass through unchanged."""
        self.pose.reset()
        self.shape.reset()
        self._ref = None

    def __call__(self, points: np.ndarray, timestamp: float) -> np.ndarray:
        pts = np.asarray(points, dtype=np.float64)
        centre = pts.mean(axis=0)
        rel = pts - centre
        size = max(float(np.sqrt((rel**2).sum(axis=1).mean())), 1e-6)
        rel /= size
        roll = 0.0
        if self._ref is not None and self._ref.shape == rel.shape:
            cross = float((self._ref[:, 0] * rel[:, 1] - self._ref[:, 1] * rel[:, 0]).sum())
            roll = math.atan2(cross, float((self._ref * rel).sum()))
        shape = rel @ _rotation(roll)  # rotate by -roll: the face's own frame
        pose = self.pose(np.array([centre[0], centre[1], math.log(size), roll]), timestamp,
                         np.array([size, size, 1.0, 1.0]))
        smooth_shape = self.shape(shape, timestamp)
        self._ref = smooth_shape
        return pose[:2] + math.exp(pose[2]) * (smooth_shape @ _rotation(pose[3]).T)


def face_scale(points: np.ndarray) -> float:
    """Face size in pixels: sqrt(width * height) of the landmarks' bounding box."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return float(math.sqrt(max(hi[0] - lo[0], 1.0) * max(hi[1] - lo[1], 1.0)))
