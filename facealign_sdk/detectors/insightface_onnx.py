"""insightface SCRFD / RetinaFace detectors from a LOCAL ONNX file (optional extra ``[insightface]``).

insightface ships no models, and its model packs cannot be downloaded here (and are for
non-commercial research use): pass the path of a detection model you are allowed to use, e.g.
``InsightFaceDetector("/models/det_10g.onnx")``, then ``Aligner(detector=that)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import Detection


class InsightFaceDetector:
    """Wraps ``insightface.model_zoo.get_model(path)`` (SCRFD or RetinaFace) as a facealign detector."""

    def __init__(
        self,
        model_path: str | Path,
        score_threshold: float = 0.5,
        input_size: tuple[int, int] = (640, 640),
        providers: list[str] | None = None,
    ) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"insightface detection model not found: {path} (give a local .onnx file)")
        try:
            from insightface.model_zoo import model_zoo
        except ImportError as exc:
            raise ImportError("the insightface detector needs: pip install 'facealign-sdk[insightface]'") from exc
        self.model = model_zoo.get_model(str(path), providers=providers or ["CPUExecutionProvider"])
        if self.model is None or not hasattr(self.model, "detect"):
            raise InputError(f"{path}: not an insightface detection model (SCRFD / RetinaFace)")
        self.model.prepare(ctx_id=-1, input_size=tuple(input_size), det_thresh=score_threshold)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a uint8 BGR image, best score first (keypoints: image-left eye first)."""
        boxes, keypoints = self.model.detect(image, max_num=0)
        out = []
        for i, row in enumerate(np.asarray(boxes if boxes is not None else []).reshape(-1, 5)):
            kps = None
            if keypoints is not None and len(keypoints) > i:
                kps = tuple((float(x), float(y)) for x, y in np.asarray(keypoints[i]).reshape(-1, 2))
            out.append(Detection(box=tuple(float(v) for v in row[:4]), score=float(row[4]), keypoints=kps))
        return sorted(out, key=lambda d: -d.score)
