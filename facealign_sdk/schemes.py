"""Landmark schemes: what is known about a model's point order beyond the point count."""

from __future__ import annotations

import numpy as np

# iBUG 68-point mirror permutation: point i of a mirrored face is point FLIP_68[i] of the original
FLIP_68 = np.array(
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46]  # eyes
    + [39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]  # outer lips
    + [64, 63, 62, 61, 60, 67, 66, 65]  # inner lips
)

MIRROR_PERMUTATIONS: dict[str, np.ndarray] = {"ibug68": FLIP_68}


def mirror_permutation(scheme: str, num_landmarks: int) -> np.ndarray | None:
    """The point permutation of a horizontally mirrored face, or None when the scheme has none."""
    perm = MIRROR_PERMUTATIONS.get(scheme)
    return perm if perm is not None and len(perm) == num_landmarks else None
