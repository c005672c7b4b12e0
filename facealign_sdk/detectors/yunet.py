"""YuNet face detector (OpenCV Zoo, MIT) through ``cv2.FaceDetectorYN``; the default detector."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..model import ModelError, sha256
from ..resources import models_root
from .base import Detection
from .calibration import YUNET, BoxCalibration

MODEL_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
DEFAULT_MODEL_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"


class YuNetDetector:
    """Detects faces with YuNet.

    Images are resized so that their longer side lies in ``[min_side, max_side]``
    (small images are upsampled: YuNet misses faces that fill a tiny frame).
    """

    calibration: BoxCalibration = YUNET  # where its boxes sit on a face (the released models are trained for it)

    def __init__(
        self,
        model_path: str | Path | None = None,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_side: int = 640,
        min_side: int = 320,
    ) -> None:
        path = Path(model_path) if model_path else _packaged_model()
        if not path.is_file():
            raise FileNotFoundError(f"YuNet model not found: {path}")
        if model_path is None and sha256(path) != DEFAULT_MODEL_SHA256:
            raise ModelError(f"{path}: sha256 does not match the bundled YuNet model (corrupt or replaced file)")
        if not hasattr(cv2, "FaceDetectorYN"):
            raise RuntimeError(f"OpenCV {cv2.__version__} has no FaceDetectorYN; install opencv-python-headless>=4.11")
        self.model_path = path
        self.max_side, self.min_side = max_side, min_side
        self._settings = (score_threshold, nms_threshold)
        if hasattr(cv2, "utils") and hasattr(cv2.utils, "logging"):
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # silence a harmless backend note
        self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold, 5000)

    def fork(self) -> YuNetDetector:
        """An independent detector with the same settings. ``cv2.FaceDetectorYN`` keeps the input
        size between calls, so one instance must not be used by two threads at once."""
        return YuNetDetector(self.model_path, *self._settings, max_side=self.max_side, min_side=self.min_side)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a uint8 BGR image, best score first."""
        h, w = image.shape[:2]
        longest = max(h, w)
        scale = 1.0
        if longest > self.max_side:
            scale = self.max_side / longest
        elif longest < self.min_side:
            scale = self.min_side / longest
        work = image
        if scale != 1.0:
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            work = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        self._net.setInputSize((work.shape[1], work.shape[0]))
        _, faces = self._net.detect(work)
        if faces is None:
            return []
        out = []
        for row in faces:
            # pixel-centre coordinates of the original image
            x, y, bw, bh = (float(v) for v in row[:4])
            sx = w / work.shape[1]
            sy = h / work.shape[0]
            box = (x * sx, y * sy, (x + bw) * sx, (y + bh) * sy)
            kps = tuple((float(row[4 + 2 * k]) * sx, float(row[5 + 2 * k]) * sy) for k in range(5))
            out.append(Detection(box=box, score=float(row[14]), keypoints=kps))
        return sorted(out, key=lambda d: -d.score)


def _packaged_model() -> Path:
    """The vendored model (:func:`facealign_sdk.resources.models_root`: a wheel's copy or the checkout's)."""
    return models_root() / "yunet" / MODEL_FILE
