"""``Landmarker``: face crop -> network -> heatmap codec -> points in image pixels.

The part of the pipeline after the detector, shared by :class:`~facealign_sdk.aligner.Aligner`
(images), :class:`~facealign_sdk.video.tracker.FaceTracker` (video) and :mod:`facealign_sdk.evaluate`:

1. :meth:`Landmarker.frame_for` / :meth:`Landmarker.frame_from_landmarks`: the crop window of a face
   (the model's ``manifest.crop``; :mod:`facealign_sdk.geometry`);
2. :meth:`Landmarker.landmarks_in_frames`: crops cut out and batched, :meth:`Landmarker.heatmaps` from
   the backend (averaged with the mirrored crop's when ``flip``), :meth:`Landmarker.decode` with the
   model's :class:`~facealign_sdk.codec.HeatmapCodec`, and the points mapped back to the image.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from . import geometry
from .backends import load_backend
from .decode import Refine
from .detectors.base import Detection
from .errors import InputError
from .model import ModelError, load_manifest, resolve_model
from .schemes import scheme_of

log = logging.getLogger("facealign_sdk")
DECODE_GRAPH_REFINE = "soft"  # what the export's decode graph does (HeatmapCodec.decoder_module)


class Landmarker:
    """The landmark network of one model with its decoder settings (see the module docstring).

    Args are those of :class:`~facealign_sdk.aligner.Aligner` (``model``, ``backend``, ``device``,
    ``refine``, ``blur``, ``flip``, ``batch_size``, ``convention``); they are checked there.
    Thread-safety: network calls are serialised (the backend already uses every core for one call).
    """

    def __init__(self, model: str | Path | None = None, backend: str = "auto", device: str = "auto",
                 refine: Refine = "soft", blur: bool = True, flip: bool = False, batch_size: int = 32,
                 convention: str | None = None) -> None:
        self.model_dir, artifact = resolve_model(model)
        self.manifest = load_manifest(self.model_dir)
        self.convention, offsets = self.manifest.convention_offsets(convention, flip)
        # added to every point in the crop: where this convention's annotators put it, on average
        self._crop_offsets = None if offsets is None else offsets * self.manifest.input_size
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
        self._check_network()
        self._network_lock = threading.Lock()
        self.refine: Refine = refine
        self.blur = blur
        self.flip = flip
        self.scheme = scheme_of(self.manifest.landmark_scheme, self.manifest.num_landmarks)
        self._mirror = self.scheme.mirror
        if flip and self._mirror is None:
            raise ModelError(f"{self.model_dir}: flip needs the mirror order of the landmark scheme "
                             f"{self.manifest.landmark_scheme!r} ({self.manifest.num_landmarks} points), which is not known")
        if flip and self.manifest.flip_mixes_conventions(self.convention):
            # the network's own points have no offsets to fit: no advice to fit them
            missing = ("" if self.convention is None else f" and has no offsets of convention {self.convention!r} "
                       "fitted for flip averaging (facealign train conventions --flip)")
            log.warning("%s was trained without mirror augmentation%s: flip=True averages in the mirrored convention "
                        "and usually costs accuracy", self.model_dir, missing)
        self.batch_size = batch_size
        self.codec = self.manifest.heatmap_codec()
        crop = self.manifest.crop
        self._crop_args = {"crop_scale": crop.crop_scale, "center_shift": crop.center_shift}

    @property
    def name(self) -> str:
        """The backend's name, e.g. ``ort:CPUExecutionProvider``."""
        return self.backend.name

    @property
    def num_landmarks(self) -> int:
        """Points per face."""
        return self.manifest.num_landmarks

    @property
    def blur_sigma(self) -> float:
        """The blur the decoder applies, heatmap pixels: the model's ``codec.blur_sigma`` with ``blur`` on, else 0."""
        return self.codec.blur_sigma if self.blur else 0.0

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

    def frame_for(self, detection: Detection) -> geometry.CropFrame:
        """The crop window of a detection (rolled upright with its eye keypoints when present)."""
        roll = 0.0
        if self.manifest.crop.use_roll and detection.keypoints:
            roll = geometry.roll_from_eyes(detection.keypoints[0], detection.keypoints[1])
        return geometry.frame_from_box(detection.box, roll, **self._crop_args)

    def frame_from_landmarks(self, points: np.ndarray, crop: geometry.CropFrame | None = None) -> geometry.CropFrame:
        """The crop window a detector would give for a face with these landmarks (for tracking). ``crop``: the
        window the points came from; the convention's offsets (with ``flip``, those fitted for flip averaging) are
        taken out in it first, so that the next window follows the network's own (flip-averaged) points whatever the
        convention, as the training crops did."""
        if self._crop_offsets is not None and crop is not None:
            size = self.manifest.input_size
            points = geometry.crop_to_image(geometry.image_to_crop(points, crop, size) - self._crop_offsets, crop, size)
        return geometry.frame_from_points(points, self.manifest.crop.use_roll, **self._crop_args)

    def landmarks_in_frames(
        self, jobs: Sequence[tuple[np.ndarray, geometry.CropFrame]]
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Run the network on crops ``(image, frame)``; points in image pixels and confidences."""
        size = self.manifest.input_size
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
                crop_points = self.codec.to_crop(p)
                if self._crop_offsets is not None:
                    crop_points = crop_points + self._crop_offsets
                points.append(geometry.crop_to_image(crop_points, frame, size))
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
        """Heatmap-pixel points (N, L, 2) and confidence (N, L) with this Landmarker's decoder settings."""
        return self.codec.decode(heatmaps, self.refine, self.blur)

