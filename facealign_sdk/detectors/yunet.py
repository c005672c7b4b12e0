"""YuNet face detector (OpenCV Zoo, MIT) through ``cv2.FaceDetectorYN``; the default detector."""

from __future__ import annotations

from collections import Counter, OrderedDict
from pathlib import Path

import cv2
import numpy as np

from ..errors import InputError
from ..model import ModelError, sha256
from ..resources import models_root
from .base import Detection
from .calibration import YUNET, BoxCalibration

MODEL_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
DEFAULT_MODEL_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"


RUNTIMES = ("auto", "opencv", "openvino")
TOP_K = 5000  # candidates kept for NMS (FaceDetectorYN's top_k)


class YuNetDetector:
    """Detects faces with YuNet.

    Images are resized so that their longer side lies in ``[min_side, max_side]``
    (small images are upsampled: YuNet misses faces that fill a tiny frame).

    ``runtime``: ``"opencv"`` (``cv2.FaceDetectorYN``), ``"openvino"`` (the same network in OpenVINO with its
    CPU's default precision, bf16 where the CPU has it, and FaceDetectorYN's decoding and NMS,
    :func:`decode_outputs`), or ``"auto"``: OpenVINO where it is installed and the CPU computes in bf16, else
    OpenCV. Measured on a 2-core AVX512-BF16 CPU, 720p frames (640x360 detector input): 4.2 ms vs OpenCV's
    6.1 (OpenVINO in fp32: 8.0); end to end the landmarks' NME moved by +0.007 points (300w/val 4.228 ->
    4.235 %, ytf68/val 4.816 -> 4.823 %), the faces found did not change.
    """

    calibration: BoxCalibration = YUNET  # where its boxes sit on a face (the released models are trained for it)

    def __init__(
        self,
        model_path: str | Path | None = None,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_side: int = 640,
        min_side: int = 320,
        runtime: str = "auto",
    ) -> None:
        path = Path(model_path) if model_path else _packaged_model()
        if not path.is_file():
            raise FileNotFoundError(f"YuNet model not found: {path}")
        if model_path is None and sha256(path) != DEFAULT_MODEL_SHA256:
            raise ModelError(f"{path}: sha256 does not match the bundled YuNet model (corrupt or replaced file)")
        if runtime not in RUNTIMES:
            raise InputError(f"YuNet runtime must be one of {RUNTIMES}, got {runtime!r}")
        self.model_path = path
        self.max_side, self.min_side = max_side, min_side
        self._settings = (score_threshold, nms_threshold)
        self.runtime = _openvino_or_opencv() if runtime == "auto" else runtime
        self._net: cv2.FaceDetectorYN | _OpenVinoYuNet
        if self.runtime == "openvino":
            self._net = _OpenVinoYuNet(path, score_threshold, nms_threshold)
            return
        if not hasattr(cv2, "FaceDetectorYN"):
            raise RuntimeError(f"OpenCV {cv2.__version__} has no FaceDetectorYN; install opencv-python-headless>=4.11")
        if hasattr(cv2, "utils") and hasattr(cv2.utils, "logging"):
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # silence a harmless backend note
        self._net = cv2.FaceDetectorYN.create(str(path), "", (320, 320), score_threshold, nms_threshold, TOP_K)

    def fork(self) -> YuNetDetector:
        """An independent detector with the same settings. ``cv2.FaceDetectorYN`` keeps the input
        size between calls (and an OpenVINO infer request serves one call), so one instance must not be
        used by two threads at once."""
        return YuNetDetector(self.model_path, *self._settings, max_side=self.max_side, min_side=self.min_side,
                             runtime=self.runtime)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in a uint8 BGR image, best score first."""
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
            what = (f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray)
                    else type(image).__name__)
            raise InputError(f"YuNet takes a uint8 BGR image of shape (H, W, 3), got a {what} "
                             "(Aligner converts gray, BGRA and 16-bit images)")
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
        if isinstance(self._net, _OpenVinoYuNet):
            faces = self._net.detect(work)
        else:
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


STRIDES = (8, 16, 32)
PAD_MULTIPLE = 32  # FaceDetectorYN pads the input at the bottom and right to a multiple of this


def _openvino_or_opencv() -> str:
    """``"openvino"`` where OpenVINO imports and the CPU plugin computes in bf16, else ``"opencv"`` (OpenVINO's
    fp32 YuNet is slower than OpenCV's here)."""
    try:
        from ..backends.openvino import _core

        return "openvino" if "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "opencv"
    except Exception:  # not installed, or a broken install: OpenCV runs YuNet everywhere
        return "opencv"


class _OpenVinoYuNet:
    """YuNet's network in OpenVINO (any input size) with ``cv2.FaceDetectorYN``'s decoding: ``detect(image)``
    returns its (N, 15) rows (box x, y, w, h, five keypoints, score), best first.

    One model compiled for any size serves every image; an input size seen ``STATIC_AFTER`` times (a video's
    frames) gets a model compiled for that size alone, which OpenVINO runs faster (640x384, 2 threads: 2.56 vs
    3.27 ms). The last ``STATIC_SIZES`` such sizes are kept; a folder of photos of many sizes stays on the first.
    """

    STATIC_AFTER = 3
    STATIC_SIZES = 4

    def __init__(self, path: Path, score_threshold: float, nms_threshold: float) -> None:
        from ..backends.ort import env_threads

        self._path = path
        self._config = {"PERFORMANCE_HINT": "LATENCY"}
        threads = env_threads()
        if threads:
            self._config["INFERENCE_NUM_THREADS"] = str(threads)
        self._any_size = self._compile([1, 3, -1, -1])  # fully convolutional: one model serves every size
        self._sized: OrderedDict[tuple[int, int], tuple] = OrderedDict()
        self._seen: Counter[tuple[int, int]] = Counter()
        self._settings = (score_threshold, nms_threshold)

    def _compile(self, shape: list[int]) -> tuple:
        """(infer request, output names in order) of YuNet compiled for ``shape`` (-1: any)."""
        from openvino import Layout, Type
        from openvino.preprocess import PrePostProcessor

        from ..backends.openvino import _core

        core = _core()
        model = core.read_model(str(self._path))
        model.reshape(shape)
        names = [sorted(out.get_names())[0] for out in model.outputs]  # the compiled outputs keep this order
        # the padded uint8 BGR image goes in as it is: the graph converts it to float NCHW, which saves a
        # float copy and a transpose in numpy per frame
        steps = PrePostProcessor(model)
        steps.input().tensor().set_element_type(Type.u8).set_layout(Layout("NHWC"))
        steps.input().model().set_layout(Layout("NCHW"))
        model = steps.build()
        return core.compile_model(model, "CPU", self._config).create_infer_request(), names

    def _model_for(self, size: tuple[int, int]) -> tuple:
        if size in self._sized:
            self._sized.move_to_end(size)
            return self._sized[size]
        self._seen[size] += 1
        if self._seen[size] < self.STATIC_AFTER:
            return self._any_size
        self._sized[size] = self._compile([1, 3, *size])
        del self._seen[size]
        if len(self._sized) > self.STATIC_SIZES:
            self._sized.popitem(last=False)
        if len(self._seen) > 64:  # sizes seen once or twice in a long run of photos: forget them
            self._seen.clear()
        return self._sized[size]

    def detect(self, image: np.ndarray) -> np.ndarray | None:
        h, w = image.shape[:2]
        padded_h, padded_w = -(-h // PAD_MULTIPLE) * PAD_MULTIPLE, -(-w // PAD_MULTIPLE) * PAD_MULTIPLE
        # raw BGR values, zero-padded at the bottom and right, as FaceDetectorYN feeds them
        padded = cv2.copyMakeBorder(image, 0, padded_h - h, 0, padded_w - w, cv2.BORDER_CONSTANT, value=0)
        request, names = self._model_for((padded_h, padded_w))
        request.infer({0: padded[None]})
        outputs = {name: request.get_output_tensor(i).data for i, name in enumerate(names)}
        faces = decode_outputs(outputs, padded_w, *self._settings)
        return faces if len(faces) else None


def decode_outputs(outputs: dict[str, np.ndarray], padded_w: int, score_threshold: float, nms_threshold: float,
                   top_k: int = TOP_K) -> np.ndarray:
    """FaceDetectorYN's post-processing of YuNet's outputs (``cls_8`` ... ``kps_32``) for a ``padded_w``-wide
    input: per cell score sqrt(cls * obj), the box and keypoints from the cell's offsets, NMS on the boxes
    truncated to integers. (N, 15) float32 rows, best score first."""
    rows = []
    for stride in STRIDES:
        cols = padded_w // stride
        cls, obj = (outputs[f"{kind}_{stride}"].reshape(-1) for kind in ("cls", "obj"))
        score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1)).astype(np.float32)
        keep = np.flatnonzero(score >= score_threshold)
        r, c = np.divmod(keep, cols)
        r, c = r.astype(np.float32), c.astype(np.float32)
        box = outputs[f"bbox_{stride}"].reshape(-1, 4)[keep].astype(np.float32)
        kps = outputs[f"kps_{stride}"].reshape(-1, 10)[keep].astype(np.float32)
        bw, bh = np.exp(box[:, 2]) * stride, np.exp(box[:, 3]) * stride
        x1, y1 = (c + box[:, 0]) * stride - bw / 2, (r + box[:, 1]) * stride - bh / 2
        points = np.empty_like(kps)
        points[:, 0::2] = (kps[:, 0::2] + c[:, None]) * stride
        points[:, 1::2] = (kps[:, 1::2] + r[:, None]) * stride
        rows.append(np.column_stack([x1, y1, bw, bh, points, score[keep]]))
    faces = np.concatenate(rows).astype(np.float32)
    if not len(faces):
        return faces
    rects = [[int(x), int(y), int(bw), int(bh)] for x, y, bw, bh in faces[:, :4]]
    kept = cv2.dnn.NMSBoxes(rects, faces[:, 14].tolist(), score_threshold, nms_threshold, top_k=top_k)
    return faces[np.asarray(kept, np.int64).reshape(-1)]
