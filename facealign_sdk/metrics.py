"""Landmark accuracy metrics: NME (inter-ocular), failure rate, AUC and the CED curve."""

from __future__ import annotations

import numpy as np

from .errors import InputError
from .schemes import IBUG68

# outer eye corners of the iBUG 68-point scheme (0-based), the 300-W / 3FabRec normaliser
OUTER_EYE_CORNERS = IBUG68.outer_eye_corners


def nme(pred: np.ndarray, gt: np.ndarray, normaliser: tuple[int, int] = OUTER_EYE_CORNERS) -> np.ndarray:
    """Per-face normalised mean error: (N, L, 2) predictions and ground truth -> (N,) fractions."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != gt.shape or pred.ndim != 3:
        raise InputError(f"pred and gt must both be (N, L, 2), got {pred.shape} and {gt.shape}")
    dist = np.linalg.norm(gt[:, normaliser[0]] - gt[:, normaliser[1]], axis=-1)
    return np.linalg.norm(pred - gt, axis=-1).mean(axis=-1) / np.maximum(dist, 1e-6)


def ced(errors: np.ndarray, limit: float = 0.10, steps: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: thresholds in [0, limit] and the share of faces below each."""
    thresholds = np.linspace(0.0, limit, steps + 1)
    errs = np.sort(np.asarray(errors, np.float64))
    return thresholds, np.searchsorted(errs, thresholds, side="right") / max(len(errs), 1)


def auc(errors: np.ndarray, limit: float = 0.10) -> float:
    """Area under the CED curve up to ``limit``, normalised to [0, 1]."""
    x, y = ced(errors, limit)
    return float(np.trapezoid(y, x) / limit)


def failure_rate(errors: np.ndarray, limit: float = 0.10) -> float:
    """Share of faces whose NME is above ``limit``."""
    errs = np.asarray(errors, np.float64)
    return float((errs > limit).mean()) if len(errs) else float("nan")


def summary(errors: np.ndarray, limit: float = 0.10) -> dict[str, float]:
    """NME (mean), FR and AUC at ``limit``, as percentages / fractions."""
    errs = np.asarray(errors, np.float64)
    return {
        "faces": int(len(errs)),
        "nme_pct": float(errs.mean() * 100) if len(errs) else float("nan"),
        "fr_pct": failure_rate(errs, limit) * 100,
        "auc": auc(errs, limit),
    }
