"""``Aligner``: image -> face detector -> :class:`~facealign_sdk.landmarker.Landmarker` (crop -> network ->
heatmap codec) -> :class:`~facealign_sdk.results.FaceLandmarks` in image pixels.

Follow one image: :meth:`Aligner.align` -> :meth:`Aligner.align_batch` (load, :meth:`Aligner.detect`,
``landmarker.frame_for`` each face) -> :meth:`Landmarker.landmarks_in_frames
<facealign_sdk.landmarker.Landmarker.landmarks_in_frames>` -> results.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import geometry
from .backends import Backend
from .color import ArrayOrPIL, ColorOrder, check_color, to_bgr
from .decode import REFINE_MODES, Refine
from .detectors.base import Detection, FaceDetector
from .errors import InputError
from .imageio import read_image
from .landmarker import Landmarker
from .model import ModelError
from .options import AlignerOptions
from .results import FaceLandmarks

if TYPE_CHECKING:  # pragma: no cover
    from .video.tracker import FaceTracker, TrackOptions, VideoTrack

log = logging.getLogger("facealign_sdk")

BoxLike = Detection | Sequence[float]
ImageLike = ArrayOrPIL | str | Path


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


def _from_landmarker(name: str, doc: str) -> property:
    """A read-only attribute of the Aligner that is its landmarker's."""
    return property(lambda self: getattr(self.landmarker, name), doc=doc)


class Aligner:
    """68-point (or any L-point) facial landmarks for faces in images.

    >>> aligner = Aligner()                      # bundled model, fastest backend, YuNet detector
    >>> faces = aligner.align("face.jpg")        # list of FaceLandmarks
    >>> faces[0].points.shape, faces[0].confidence.shape
    ((68, 2), (68,))

    Args:
        model: released model name, model folder, or one artifact in it (``.onnx``, ``.engine``;
            ``"fabrec-scaf-w32/model_int8.onnx"`` names a released model's int8 graph).
            A folder's ``model_decode.onnx`` (decoding inside the graph) is used when present and
            the decoder settings are the defaults.
        backend: ``"auto"`` (fastest available; see ``backend_name``), ``"ort"``, ``"torch"`` or ``"trt"``.
        device: ``"auto"`` (a GPU when one is usable, else the CPU), ``"cpu"``, ``"cuda"`` / ``"cuda:N"``, or
            ``"tensorrt"`` (the ORT TensorRT EP). A GPU device without a usable GPU raises BackendError.
        detector: ``"yunet"`` (bundled), any object with ``detect(image) -> list[Detection]``,
            or ``None`` to always pass ``boxes``.
        refine: subpixel refinement of heatmap peaks: ``"soft"``, ``"quadratic"`` or ``"none"``.
        blur: seek each peak on the heatmap blurred with the Gaussian its release chose
            (``manifest.codec.blur_sigma``, measured per model; 0: no blur, and then this has no effect).
        flip: also run each crop mirrored and average the (un-mirrored) heatmaps: twice the network
            time; more accurate when the convention has offsets fitted for it (``manifest.flip_conventions``)
            or the model was trained with mirror augmentation, less accurate otherwise (a warning is logged).
            Needs a landmark scheme with a known mirror order.
        convention: the annotation convention of the points: a name from the model's ``manifest.conventions``
            (data sets place some points differently, e.g. ``"300w"``, ``"ytf68"``); ``None``: the model's
            ``default_convention``; ``"none"``: the network's own points (fitted by ``facealign train conventions``).
        max_faces: keep at most this many faces per image (highest detector score first).
        batch_size: crops per inference call.
        num_landmarks: if given, refuse a model with another landmark count.
        color: channel order of the numpy images you pass: ``"bgr"`` (OpenCV's ``imread``) or
            ``"rgb"`` (PIL, face-alignment, dlib, MediaPipe). PIL images are always taken as RGB and
            image files are read as they are, whatever ``color`` says (see ``facealign_sdk.color``).

    The arguments other than ``detector``, ``num_landmarks`` and ``color`` (how *your* arrays are laid
    out, not how the model runs) are :class:`~facealign_sdk.options.AlignerOptions`
    (``Aligner.from_options``); ``aligner.options`` holds them.

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
        convention: str | None = None,
        max_faces: int | None = None,
        batch_size: int = 32,
        num_landmarks: int | None = None,
        color: ColorOrder = "bgr",
    ) -> None:
        self.color = check_color(color)
        if refine not in REFINE_MODES:
            raise InputError(f"refine must be one of {REFINE_MODES}, got {refine!r}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if max_faces is not None and (isinstance(max_faces, bool) or not isinstance(max_faces, int) or max_faces < 1):
            raise InputError(f"max_faces must be None (all faces) or an integer >= 1, got {max_faces!r}")
        self.landmarker = Landmarker(model, backend, device, refine, blur, flip, batch_size, convention)
        if num_landmarks is not None and num_landmarks != self.manifest.num_landmarks:
            raise ModelError(f"{self.model_dir}: model has {self.manifest.num_landmarks} landmarks, expected {num_landmarks}")
        self.detector = self._make_detector(detector)
        self._detector_lock = threading.Lock()
        self._per_thread = threading.local()  # per-thread copies of a forkable detector
        self.max_faces = max_faces
        self.options = AlignerOptions(model=model, backend=backend, device=device, refine=refine, blur=blur,
                                      flip=flip, convention=convention, max_faces=max_faces, batch_size=batch_size)
        log.info("facealign: model %s, backend %s", self.manifest.name, self.backend_name)

    @classmethod
    def from_options(cls, options: AlignerOptions, **kwargs: object) -> Aligner:
        """An ``Aligner`` with these options (``kwargs``: the arguments that are not options, e.g. ``detector``)."""
        return cls(**options.model_dump(), **kwargs)

    def _make_detector(self, detector: str | FaceDetector | None) -> FaceDetector | None:
        if detector == "yunet":
            from .detectors.yunet import YuNetDetector

            detector = YuNetDetector()
        elif detector is not None and not isinstance(detector, FaceDetector):
            raise InputError(f"unknown detector {detector!r}: use 'yunet', None or an object with detect(image)")
        calibration = getattr(detector, "calibration", None)
        if calibration is not None and calibration.detector != self.manifest.crop.detector:
            log.warning("%s was trained on crops from %s boxes; %s boxes sit differently on a face, so its crops "
                        "differ from the training crops (less accurate)", self.model_dir,
                        self.manifest.crop.detector, calibration.detector)
        return detector

    # -- the landmarker's parts, as attributes of the Aligner ----------------------------------------
    @property
    def backend(self) -> Backend:
        """The landmarker's backend (settable: tests and benchmarks swap in another)."""
        return self.landmarker.backend

    @backend.setter
    def backend(self, backend: Backend) -> None:
        self.landmarker.backend = backend

    backend_name = _from_landmarker("name", "the backend's name, e.g. ``ort:CPUExecutionProvider``")
    manifest = _from_landmarker("manifest", "the model's :class:`~facealign_sdk.model.Manifest`")
    model_dir = _from_landmarker("model_dir", "the model folder")
    num_landmarks = _from_landmarker("num_landmarks", "points per face")
    decodes_in_graph = _from_landmarker("decodes_in_graph", "the backend runs a decode graph (points, no heatmaps)")
    refine = _from_landmarker("refine", "subpixel refinement of the heatmap peaks")
    blur = _from_landmarker("blur", "peaks sought on blurred heatmaps")
    flip = _from_landmarker("flip", "mirrored crops averaged in")
    convention = _from_landmarker("convention", "the annotation convention the points follow (None: the network's own)")
    batch_size = _from_landmarker("batch_size", "face crops per network call")

    def frame_for(self, detection: Detection) -> geometry.CropFrame:
        """The crop window of a detection (:meth:`Landmarker.frame_for`)."""
        return self.landmarker.frame_for(detection)

    def landmarks_in_frames(self, jobs: Sequence[tuple[np.ndarray, geometry.CropFrame]]
                            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Points and confidences of crops ``(image, frame)`` (:meth:`Landmarker.landmarks_in_frames`)."""
        return self.landmarker.landmarks_in_frames(jobs)

    def heatmaps(self, batch: np.ndarray) -> np.ndarray:
        """The network's heatmaps for (N, 3, S, S) crops (:meth:`Landmarker.heatmaps`)."""
        return self.landmarker.heatmaps(batch)

    def decode(self, heatmaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Heatmap-pixel points and confidence (:meth:`Landmarker.decode`)."""
        return self.landmarker.decode(heatmaps)

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
        jobs = [(i, det, self.landmarker.frame_for(det)) for i, dets in enumerate(detections) for det in dets]
        points, conf = self.landmarker.landmarks_in_frames([(loaded[i], frame) for i, _, frame in jobs])
        out: list[list[FaceLandmarks]] = [[] for _ in loaded]
        for (i, det, _), p, c in zip(jobs, points, conf):
            size = (loaded[i].shape[1], loaded[i].shape[0])
            out[i].append(FaceLandmarks(box=det.box, score=det.score, points=p, confidence=c, image_size=size))
        return out

    # -- building blocks (used by video tracking) ------------------------------------------------
    def load_image(self, image: ImageLike) -> np.ndarray:
        """A file path, an array (in this Aligner's ``color`` order) or a PIL image -> uint8 BGR
        (greyscale, alpha, 16-bit and float are converted)."""
        if isinstance(image, (str, Path)):
            return read_image(image)
        return to_bgr(image, self.color)

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

    # -- video ----------------------------------------------------------------------------------
    def tracker(self, options: TrackOptions | None = None, **kwargs: Any) -> FaceTracker:
        """A push-frame face tracker: ``result = tracker.update(frame, timestamp_s)`` per frame, in order.

        ``options`` (or ``kwargs``, its fields) are :class:`~facealign_sdk.video.tracker.TrackOptions`.
        """
        from .video.tracker import FaceTracker, TrackOptions

        options = options if options is not None else TrackOptions(**kwargs)
        return FaceTracker(self.landmarker, self.detect, options, max_faces=self.max_faces, load_image=self.load_image)

    def track(self, video: Any, **options: Any) -> VideoTrack:
        """Landmarks for every frame of a video (path, camera index, image folder, or numpy frames in memory).

        Yields one frame result per decoded frame; see :func:`facealign_sdk.video.track`
        for the options (re-detection interval, smoothing, max faces, batching).
        """
        from .video import track

        return track(self, video, **options)
