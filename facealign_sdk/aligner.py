"""``Aligner``: face detector -> 256x256 crop -> heatmap network -> decoded landmarks in image pixels."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2
import numpy as np

from . import geometry
from .backends import load_backend
from .decode import REFINE_MODES, BLUR_SIGMA, Refine, decode_heatmaps
from .detectors.base import Detection, FaceDetector
from .errors import InputError
from .imageio import read_image, to_bgr8
from .model import ModelError, load_manifest, resolve_model_dir
from .results import FaceLandmarks
from .schemes import mirror_permutation

log = logging.getLogger("facealign_sdk")
DECODE_GRAPH_REFINE = "soft"  # what export's decode graph does (export.onnx._decoder_module)

BoxLike = Detection | Sequence[float]
ImageLike = np.ndarray | str | Path


# a face box corner farther than this from the image origin is not a face box (and overflows the crop maths)
MAX_BOX_COORDINATE = 1e6


def _as_detection(box: BoxLike) -> Detection:
    """A user's face box as a Detection; InputError unless it is four finite, ordered coordinates."""
    if isinstance(box, Detection):
        det = box
    else:
        try:
            values = [float(v) for v in box]
        except (TypeError, ValueError):
            raise InputError(f"a face box is four numbers (x1, y1, x2, y2), got {box!r}") from None
        if len(values) != 4:
            raise InputError(f"a face box is (x1, y1, x2, y2), got {list(box)}")
        det = Detection(box=tuple(values), score=1.0)
    x1, y1, x2, y2 = det.box
    if not (all(abs(v) <= MAX_BOX_COORDINATE for v in det.box) and x2 > x1 and y2 > y1):
        raise InputError(f"invalid face box {det.box}: need finite x1 < x2 and y1 < y2 within "
                         f"+-{MAX_BOX_COORDINATE:g} px")
    return det


class Aligner:
    """68-point (or any L-point) facial landmarks for faces in images.

    >>> aligner = Aligner()                      # bundled model, fastest backend, YuNet detector
    >>> faces = aligner.align("face.jpg")        # list of FaceLandmarks
    >>> faces[0].points.shape, faces[0].confidence.shape
    ((68, 2), (68,))

    Args:
        model: released model name, model folder, or one artifact in it (``.onnx``, ``.engine``).
            A folder's ``model_decode.onnx`` (decoding inside the graph) is used when present and
            the decoder settings are the defaults.
        backend: ``"auto"`` (fastest available; see ``backend_name``), ``"ort"``, ``"torch"`` or ``"trt"``.
        device: ``"auto"`` (a GPU when one is usable, else the CPU), ``"cpu"``, ``"cuda"`` / ``"cuda:N"``, or
            ``"tensorrt"`` (the ORT TensorRT EP). A GPU device without a usable GPU raises BackendError.
        detector: ``"yunet"`` (bundled), any object with ``detect(image) -> list[Detection]``,
            or ``None`` to always pass ``boxes``.
        refine: subpixel refinement of heatmap peaks: ``"soft"``, ``"quadratic"`` or ``"none"``.
        blur: seek each peak on the heatmap blurred with the target Gaussian (more accurate;
            costs a few ms per face on CPU, see ``facealign_sdk.decode.BLUR_SIGMA``).
        flip: also run each crop mirrored and average the (un-mirrored) heatmaps: twice the network
            time; more accurate for models trained with mirror augmentation, less accurate for models
            trained without it (``manifest.mirror_symmetric`` false: a warning is logged). Needs a
            landmark scheme with a known mirror order.
        max_faces: keep at most this many faces per image (highest detector score first).
        batch_size: crops per inference call.
        num_landmarks: if given, refuse a model with another landmark count.

    Thread-safety: one ``Aligner`` may be shared by several threads (a web server's workers) and
    gives each the same results as a single thread would. Each thread gets its own copy of a
    detector that offers ``fork()`` (the bundled YuNet does); other detectors and the network are
    called by one thread at a time (the backend already uses every core for one call).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        backend: str = "auto",
        device: str = "auto",
        detector: str | FaceDetector | None = "yunet",
        refine: Refine = "soft",
        blur: bool = True,
        flip: bool = False,
        max_faces: int | None = None,
        batch_size: int = 32,
        num_landmarks: int | None = None,
    ) -> None:
        if refine not in REFINE_MODES:
            raise InputError(f"refine must be one of {REFINE_MODES}, got {refine!r}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if max_faces is not None and (isinstance(max_faces, bool) or not isinstance(max_faces, int) or max_faces < 1):
            raise InputError(f"max_faces must be None (all faces) or an integer >= 1, got {max_faces!r}")
        self.model_dir = resolve_model_dir(model)
        self.manifest = load_manifest(self.model_dir)
        artifact = Path(model) if model is not None and Path(model).is_file() else None
        # a decode graph (model_decode.onnx) returns points: soft refinement on blurred peaks, built in
        needs_heatmaps = flip or refine != DECODE_GRAPH_REFINE or not blur
        try:
            self.backend = load_backend(self.model_dir, self.manifest, backend, device, artifact,
                                        decode_graph=not needs_heatmaps)
        except InputError:
            raise
        except ValueError as exc:  # the network cannot be built as the manifest describes it
            raise ModelError(f"{self.model_dir}: cannot build the network of the manifest ({exc})") from exc
        self.decodes_in_graph = bool(getattr(self.backend, "outputs_points", False))
        if self.decodes_in_graph and needs_heatmaps:
            raise ModelError(
                f"{artifact}: decodes inside the graph (refine='soft', blur=True); flip=True, other refine modes "
                f"and blur=False need the heatmaps of {self.model_dir / 'model.onnx'}"
            )
        if self.backend.num_landmarks != self.manifest.num_landmarks:
            raise ModelError(
                f"{self.model_dir}: network outputs {self.backend.num_landmarks} landmarks but the manifest says "
                f"{self.manifest.num_landmarks}"
            )
        if num_landmarks is not None and num_landmarks != self.manifest.num_landmarks:
            raise ModelError(f"{self.model_dir}: model has {self.manifest.num_landmarks} landmarks, expected {num_landmarks}")
        self._check_network()
        self.detector = self._make_detector(detector)
        self._network_lock = threading.Lock()
        self._detector_lock = threading.Lock()
        self._per_thread = threading.local()  # per-thread copies of a forkable detector
        self.refine: Refine = refine
        self.blur = blur
        self.flip = flip
        self._mirror = mirror_permutation(self.manifest.landmark_scheme, self.manifest.num_landmarks)
        if flip and self._mirror is None:
            raise ModelError(f"{self.model_dir}: flip needs the mirror order of the landmark scheme "
                             f"{self.manifest.landmark_scheme!r} ({self.manifest.num_landmarks} points), which is not known")
        if flip and not self.manifest.mirror_symmetric:
            log.warning("%s was trained without mirror augmentation (its annotation convention is not mirror-"
                        "symmetric): flip=True averages in the mirrored convention and usually costs accuracy",
                        self.model_dir)
        self.max_faces = max_faces
        self.batch_size = batch_size
        crop = self.manifest.crop
        self._crop_args = {"crop_scale": crop.crop_scale, "center_shift": crop.center_shift}
        log.info("facealign: model %s, backend %s", self.manifest.name, self.backend_name)

    def _check_network(self) -> None:
        """Run one grey crop: the output must have the manifest's shape and be finite. Catches a manifest
        whose input or heatmap size disagrees with the network, and corrupt (NaN / inf) weights."""
        size, hm, n = self.manifest.input_size, self.manifest.heatmap_size, self.manifest.num_landmarks
        probe = np.full((1, 3, size, size), 0.5, np.float32)
        try:
            if self.decodes_in_graph:
                out = self.backend.run_points(probe)[0]
                expected: tuple[int, ...] = (1, n, 2)
            else:
                out = self.backend.run(probe)
                expected = (1, n, hm, hm)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - any backend failure on a well-formed crop is the model's
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelError(f"{self.model_dir}: the network does not run on a {size}x{size} crop as the manifest "
                             f"says ({type(exc).__name__}: {first[:200]})") from exc
        if tuple(out.shape) != expected:
            raise ModelError(f"{self.model_dir}: the network outputs shape {tuple(out.shape)} for one crop but the "
                             f"manifest says {expected} (input_size {size}, heatmap_size {hm}, {n} landmarks)")
        if not np.isfinite(out).all():
            raise ModelError(f"{self.model_dir}: the network outputs NaN or inf (corrupt weights)")

    @staticmethod
    def _make_detector(detector: str | FaceDetector | None) -> FaceDetector | None:
        if detector is None or isinstance(detector, FaceDetector):
            return detector
        if detector == "yunet":
            from .detectors.yunet import YuNetDetector

            return YuNetDetector()
        raise InputError(f"unknown detector {detector!r}: use 'yunet', None or an object with detect(image)")

    @property
    def backend_name(self) -> str:
        return self.backend.name

    @property
    def num_landmarks(self) -> int:
        return self.manifest.num_landmarks

    # -- public API ---------------------------------------------------------------------------
    def align(self, image: ImageLike, boxes: Iterable[BoxLike] | None = None) -> list[FaceLandmarks]:
        """Landmarks of every face in one image (an empty list when there is no face)."""
        return self.align_batch([image], None if boxes is None else [boxes])[0]

    def align_batch(
        self, images: Sequence[ImageLike], boxes: Sequence[Iterable[BoxLike] | None] | None = None
    ) -> list[list[FaceLandmarks]]:
        """Landmarks for several images; all face crops go through the network in shared batches."""
        if boxes is not None and len(boxes) != len(images):
            raise InputError(f"got {len(boxes)} box lists for {len(images)} images")
        loaded = [self.load_image(im) for im in images]
        detections = [self.detect(im, None if boxes is None else boxes[i]) for i, im in enumerate(loaded)]
        jobs = [(i, det, self.frame_for(det)) for i, dets in enumerate(detections) for det in dets]
        points, conf = self.landmarks_in_frames([(loaded[i], frame) for i, _, frame in jobs])
        out: list[list[FaceLandmarks]] = [[] for _ in loaded]
        for (i, det, _), p, c in zip(jobs, points, conf):
            out[i].append(FaceLandmarks(box=det.box, score=det.score, points=p, confidence=c))
        return out

    # -- building blocks (used by video tracking) ------------------------------------------------
    @staticmethod
    def load_image(image: ImageLike) -> np.ndarray:
        """A file path or an array -> uint8 BGR (greyscale, BGRA, 16-bit and float are converted)."""
        if isinstance(image, (str, Path)):
            return read_image(image)
        return to_bgr8(image)

    def detect(self, image: np.ndarray, boxes: Iterable[BoxLike] | None = None) -> list[Detection]:
        """Faces to align: the given boxes, or the detector's, best first, at most ``max_faces``."""
        if boxes is not None:
            dets = [_as_detection(b) for b in boxes]
        elif self.detector is None:
            raise InputError("this Aligner has no detector: pass boxes=[(x1, y1, x2, y2), ...]")
        else:
            # best first whatever order a (custom) detector returns them in; ties keep their order
            dets = sorted(self._detect_faces(image), key=lambda d: -d.score)
        return dets[: self.max_faces] if self.max_faces else dets

    def _detect_faces(self, image: np.ndarray) -> list[Detection]:
        detector = self.detector
        if not callable(getattr(detector, "fork", None)):
            with self._detector_lock:
                return list(detector.detect(image))
        local = self._per_thread
        if getattr(local, "source", None) is not detector:  # first call in this thread (or a new detector)
            local.source, local.detector = detector, detector.fork()
        return list(local.detector.detect(image))

    def frame_for(self, detection: Detection) -> geometry.CropFrame:
        """The crop window of a detection (rolled upright with its eye keypoints when present)."""
        roll = 0.0
        if self.manifest.crop.use_roll and detection.keypoints:
            roll = geometry.roll_from_eyes(detection.keypoints[0], detection.keypoints[1])
        return geometry.frame_from_box(detection.box, roll, **self._crop_args)

    def frame_from_landmarks(self, points: np.ndarray) -> geometry.CropFrame:
        """The crop window a detector would give for a face with these landmarks (for tracking)."""
        return geometry.frame_from_points(points, self.manifest.crop.use_roll, **self._crop_args)

    def landmarks_in_frames(
        self, jobs: Sequence[tuple[np.ndarray, geometry.CropFrame]]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Run the network on crops ``(image, frame)``; points in image pixels and confidences."""
        size, hm = self.manifest.input_size, self.manifest.heatmap_size
        points: list[np.ndarray] = []
        conf: list[np.ndarray] = []
        for start in range(0, len(jobs), self.batch_size):
            chunk = jobs[start : start + self.batch_size]
            crops = np.stack([cv2.cvtColor(geometry.warp_crop(im, fr, size), cv2.COLOR_BGR2RGB) for im, fr in chunk])
            batch = crops.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
            if self.decodes_in_graph:
                with self._network_lock:
                    heat_pts, confidence = self.backend.run_points(batch)
            else:
                heat_pts, confidence = self.decode(self.heatmaps(batch))
            if not (np.isfinite(heat_pts).all() and np.isfinite(confidence).all()):
                raise ModelError(f"{self.model_dir}: the network gave NaN or inf for a face crop (a broken model); "
                                 "no landmarks are returned rather than NaN points")
            for (_, frame), p, c in zip(chunk, heat_pts, confidence):
                crop_pts = geometry.heatmap_to_crop(p, hm, size)
                points.append(geometry.crop_to_image(crop_pts, frame, size))
                conf.append(c)
        return points, conf

    def heatmaps(self, batch: np.ndarray) -> np.ndarray:
        """The network's heatmaps for (N, 3, S, S) crops (averaged with the mirrored crops' when ``flip``)."""
        with self._network_lock:
            heat = self.backend.run(batch)
            if self.flip:
                mirrored = self.backend.run(np.ascontiguousarray(batch[..., ::-1]))
        if self.flip:
            heat = (heat + mirrored[:, self._mirror, :, ::-1]) / 2
        return heat

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heatmap-pixel points (N, L, 2) and confidence (N, L) with this Aligner's decoder settings."""
        return decode_heatmaps(heatmaps, self.refine, blur_sigma=BLUR_SIGMA if self.blur else 0.0)

    # -- video ----------------------------------------------------------------------------------
    def track(self, video, **options):
        """Landmarks for every frame of a video (path, camera index, image folder, or numpy frames in memory).

        Yields one frame result per decoded frame; see :func:`facealign_sdk.video.track`
        for the options (re-detection interval, smoothing, max faces, batching).
        """
        from .video import track

        return track(self, video, **options)
