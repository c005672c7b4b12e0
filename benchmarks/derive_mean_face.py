"""Derive ``facealign_sdk.meanface.MEAN_FACE_68``: a 3-D mean face from 2-D iBUG-68 points of many poses.

    python benchmarks/derive_mean_face.py ../shared/data/aflw2000/train > table.txt

Method (rigid structure from motion under weak perspective, no 3-D data used):

1. every face's points, centred: one 2 x 68 block each of a (2F x 68) matrix ``W``;
2. Tomasi-Kanade: the rank-3 SVD ``W ~ M S``, made metric by the ``Q`` for which every face's two
   rows of ``M Q`` are orthogonal and of equal length (a linear least-squares problem in ``Q Q^T``);
3. alternating least squares: each face's scaled-orthographic pose (orthogonal Procrustes) given the
   shape, then the shape given the poses (one shared 3 x 3 normal matrix), until it settles;
4. a canonical frame: x along the mirror-pair differences (image right), y from the outer-eye-corner
   midpoint to the mouth-corner midpoint (down) and orthogonal to x, z = x cross y (away from the
   camera); the depth sign (the one ambiguity of weak perspective) set so the nose tip is nearer to
   the camera than the eye corners; averaged with its mirror image (iBUG mirror order) so that it is
   exactly symmetric; origin at the nose tip (point 30);
5. scale: the outer eye corners (36, 45) 90 mm apart, about the adult biocular width (ex-ex) of
   anthropometric tables; only the translation of a head pose depends on this number.

AFLW2000-3D's 2-D points are its fitted 3-D landmarks projected (the jaw follows the 3-D contour on
turned faces), so they are views of one rigid point set per face, as the factorisation assumes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facealign_sdk.pts import read_pts
from facealign_sdk.schemes import FLIP_68

EYE_CORNER_DISTANCE_MM = 90.0
NOSE_TIP, OUTER_EYE_CORNERS, MOUTH_CORNERS = 30, (36, 45), (48, 54)


def load_points(folder: Path) -> np.ndarray:
    """(F, 68, 2) points of every ``.pts`` file of ``folder``, sorted by name."""
    files = sorted(Path(folder).glob("*.pts"))
    if not files:
        raise SystemExit(f"{folder}: no .pts files")
    return np.stack([read_pts(f, 68) for f in files])


def _metric_upgrade(motion: np.ndarray) -> np.ndarray:
    """The 3 x 3 ``Q`` that makes each face's two rows of ``motion @ Q`` orthogonal and of equal length."""

    def sym_row(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # a^T L b for symmetric L, in L's 6 unknowns
        return np.array([a[0] * b[0], a[0] * b[1] + a[1] * b[0], a[0] * b[2] + a[2] * b[0],
                         a[1] * b[1], a[1] * b[2] + a[2] * b[1], a[2] * b[2]])

    rows = []
    for a, b in zip(motion[0::2], motion[1::2]):
        rows.append(sym_row(a, a) - sym_row(b, b))
        rows.append(sym_row(a, b))
    # homogeneous system: the right singular vector of the smallest singular value
    v = np.linalg.svd(np.array(rows))[2][-1]
    lmat = np.array([[v[0], v[1], v[2]], [v[1], v[3], v[4]], [v[2], v[4], v[5]]])
    if np.trace(lmat) < 0:
        lmat = -lmat
    w, vec = np.linalg.eigh(lmat)
    return vec @ np.diag(np.sqrt(np.clip(w, 1e-12, None)))


def _poses(points: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Per face, the scaled 2 x 3 projection ``s * P`` (orthonormal rows) best mapping ``shape`` to its points."""
    out = np.empty((len(points), 2, 3))
    for f, w in enumerate(points):
        a = w.T @ shape  # 2 x 3
        u, _, vt = np.linalg.svd(a, full_matrices=False)
        p = u @ vt
        proj = p @ shape.T
        out[f] = p * (np.sum(proj * w.T) / np.sum(proj * proj))
    return out


def factorise(points: np.ndarray, iterations: int = 50) -> np.ndarray:
    """(68, 3) shape, up to a similarity and the depth sign, from (F, 68, 2) views (weak perspective)."""
    centred = points - points.mean(axis=1, keepdims=True)
    w = centred.transpose(0, 2, 1).reshape(-1, points.shape[1])  # (2F, 68)
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    motion, shape = u[:, :3] * np.sqrt(s[:3]), (vt[:3].T * np.sqrt(s[:3]))
    q = _metric_upgrade(motion)
    shape = shape @ np.linalg.inv(q).T
    for _ in range(iterations):
        poses = _poses(centred, shape)
        normal = np.einsum("fij,fik->jk", poses, poses)
        shape = np.linalg.solve(normal, np.einsum("fij,fpi->jp", poses, centred)).T
    return shape


def canonical(shape: np.ndarray) -> np.ndarray:
    """``shape`` in the head frame of the module docstring, mirror-symmetric, in millimetres."""
    pairs = [(i, int(j)) for i, j in enumerate(FLIP_68) if i < j]
    diffs = np.array([shape[j] - shape[i] for i, j in pairs])
    x = np.linalg.eigh(diffs.T @ diffs)[1][:, -1]
    if x @ (shape[OUTER_EYE_CORNERS[1]] - shape[OUTER_EYE_CORNERS[0]]) < 0:
        x = -x
    down = shape[list(MOUTH_CORNERS)].mean(0) - shape[list(OUTER_EYE_CORNERS)].mean(0)
    y = down - (down @ x) * x
    y /= np.linalg.norm(y)
    head = shape @ np.stack([x, y, np.cross(x, y)]).T
    if head[NOSE_TIP, 2] > head[list(OUTER_EYE_CORNERS), 2].mean():
        head[:, 2] = -head[:, 2]  # the depth-reversed solution: the nose must point at the camera
    mirrored = head[FLIP_68] * np.array([-1.0, 1.0, 1.0])
    head = (head + mirrored) / 2
    head -= head[NOSE_TIP]
    scale = EYE_CORNER_DISTANCE_MM / np.linalg.norm(head[OUTER_EYE_CORNERS[1]] - head[OUTER_EYE_CORNERS[0]])
    return head * scale


def derive(folder: Path) -> np.ndarray:
    """The mean face (68, 3) in mm, rounded to 0.1 mm, from a folder of ``.pts`` files."""
    return np.round(canonical(factorise(load_points(folder))), 1) + 0.0  # + 0.0: no "-0.0"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path, help="a folder of iBUG-68 .pts files of many head poses")
    args = ap.parse_args()
    table = derive(args.folder)
    for i, (x, y, z) in enumerate(table):
        print(f"    ({x:6.1f}, {y:6.1f}, {z:6.1f}),  # {i}")


if __name__ == "__main__":
    main()
