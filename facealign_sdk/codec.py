"""``HeatmapCodec``: landmarks <-> heatmaps, in one object (like mmpose's codecs).

* :meth:`HeatmapCodec.encode`: crop-pixel points -> Gaussian target heatmaps (training; torch);
* :meth:`HeatmapCodec.decode`: heatmaps -> heatmap-pixel points and confidence (numpy;
  :func:`facealign_sdk.decode.decode_heatmaps` with the codec's parameters);
* :meth:`HeatmapCodec.decoder_module`: the same decoding as a torch module, which the export turns into
  the ONNX decode graph (``model_decode.onnx``);
* :meth:`HeatmapCodec.to_crop` / :meth:`HeatmapCodec.from_crop`: heatmap pixels <-> crop pixels.

Its parameters are the manifest's ``codec`` section (:class:`CodecSpec`; a manifest without one gets
the values training validates with; a release may choose its own blur), and the sizes are the manifest's
``input_size`` and ``heatmap_size``: ``manifest.heatmap_codec()`` builds the codec of a model.

Heatmaps of size ``h`` on a crop of size ``s`` cover it exactly: heatmap pixel ``i`` spans crop pixels
``[i*s/h, (i+1)*s/h)`` (pixel-centre coordinates, as in :mod:`facealign_sdk.geometry`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from . import decode
from .decode import Refine

if TYPE_CHECKING:  # pragma: no cover
    import torch

# the heatmap size the target sigma is given for: training scales it with the map (7 px of a 256 crop)
REFERENCE_HEATMAP_SIZE = 128


# A positive blur sigma must be at least this: far narrower ones underflow to a kernel of NaNs (and anything
# under about 0.3 px leaves a map as it is: the kernel's side taps vanish).
MIN_BLUR_SIGMA = 0.01


class CodecSpec(BaseModel):
    """The codec's parameters, as a manifest records them (``manifest.codec``)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)

    sigma: float = Field(decode.TARGET_SIGMA, gt=0, le=64, description=(
        "target Gaussian sigma in heatmap pixels of a 128-pixel map (training and the confidence scale it with "
        "the map size); the confidence compares each peak's mass with that of the target Gaussian"))
    blur_sigma: float = Field(decode.BLUR_SIGMA, ge=0, le=64, description=(
        "peaks are sought on maps blurred with this Gaussian (heatmap pixels of the model's map; decode.BLUR_SIGMA "
        f"at 128; 0: none, else at least {MIN_BLUR_SIGMA}); Aligner(blur=False) skips it"))
    soft_window: int = Field(decode.SOFT_WINDOW, ge=1, le=255, description="soft-argmax window (heatmap pixels)")
    soft_power: float = Field(decode.SOFT_POWER, gt=0, le=64, description="soft-argmax sharpening exponent")
    confidence_window: int = Field(decode.CONFIDENCE_WINDOW, ge=1, le=255,
                                   description="window whose heatmap mass is the confidence")

    @field_validator("blur_sigma")
    @classmethod
    def _blur_off_or_wide_enough(cls, value: float) -> float:
        if 0 < value < MIN_BLUR_SIGMA:
            raise ValueError(f"must be 0 (no blur) or at least {MIN_BLUR_SIGMA}")
        return value + 0.0  # -0.0 -> 0.0

    @classmethod
    def for_heatmap_size(cls, heatmap_size: int) -> CodecSpec:
        """The default parameters scaled to a map of ``heatmap_size`` (the defaults themselves at 128): the blur
        sigma in proportion, each window's radius in proportion rounded up, so they cover the same share of the
        face (64-px maps: blur 1.75, windows 9 and 5)."""
        scale = heatmap_size / REFERENCE_HEATMAP_SIZE
        default = cls()
        return cls(blur_sigma=default.blur_sigma * scale,
                   soft_window=2 * math.ceil(default.soft_window // 2 * scale) + 1,
                   confidence_window=2 * math.ceil(default.confidence_window // 2 * scale) + 1)


class HeatmapCodec(CodecSpec):
    """A :class:`CodecSpec` with the crop and heatmap sizes of one model."""

    input_size: int = Field(256, ge=1)
    heatmap_size: int = Field(128, ge=1)

    @property
    def scale(self) -> float:
        """Crop pixels per heatmap pixel."""
        return self.input_size / self.heatmap_size

    @classmethod
    def for_sizes(cls, input_size: int, heatmap_size: int) -> HeatmapCodec:
        """The codec a network of these sizes is trained with (:meth:`CodecSpec.for_heatmap_size`)."""
        spec = CodecSpec.for_heatmap_size(heatmap_size)
        return cls(**spec.model_dump(), input_size=input_size, heatmap_size=heatmap_size)

    @property
    def target_sigma(self) -> float:
        """The sigma of the training targets at this heatmap size (also the confidence's reference)."""
        return self.sigma * self.heatmap_size / REFERENCE_HEATMAP_SIZE

    # -- coordinates ---------------------------------------------------------------------------
    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Heatmap pixel coordinates -> crop pixel coordinates (pixel-centre convention)."""
        return (np.asarray(points, dtype=np.float64) + 0.5) * self.scale - 0.5

    def from_crop(self, points: np.ndarray) -> np.ndarray:
        """Crop pixel coordinates -> heatmap pixel coordinates (inverse of :meth:`to_crop`)."""
        return (np.asarray(points, dtype=np.float64) + 0.5) / self.scale - 0.5

    # -- encoding (training) -------------------------------------------------------------------
    def encode(self, points: np.ndarray, device: Any = "cpu") -> torch.Tensor:
        """(N, L, 2) crop-pixel points -> (N, L, H, W) float32 Gaussian targets with peak 1, made on ``device``."""
        import torch

        return gaussian_heatmaps(torch.from_numpy(self.from_crop(points)).float().to(device), self.heatmap_size,
                                 self.target_sigma)

    # -- decoding ------------------------------------------------------------------------------
    def decode(self, heatmaps: np.ndarray, refine: Refine = "soft", blur: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(N, L, H, W) heatmaps -> points (N, L, 2) in heatmap pixels and confidence (N, L) in [0, 1]."""
        return decode.decode_heatmaps(
            heatmaps, refine, soft_window=self.soft_window, soft_power=self.soft_power,
            confidence_window=self.confidence_window, sigma=self.target_sigma,
            blur_sigma=self.blur_sigma if blur else 0.0)

    def decoder_module(self, num_landmarks: int) -> Any:
        """:meth:`decode` (``refine="soft"``, blurred) as a torch module ``heatmaps -> (points, scores)``, for
        the ONNX decode graph."""
        from .export.onnx import decoder_module

        return decoder_module(num_landmarks, self)


def gaussian_heatmaps(points: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """(N, L, 2) heatmap-pixel coordinates -> (N, L, size, size) Gaussians with peak 1."""
    import torch

    grid = torch.arange(size, dtype=points.dtype, device=points.device)
    gx = torch.exp(-((grid[None, None, :] - points[..., 0:1]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((grid[None, None, :] - points[..., 1:2]) ** 2) / (2 * sigma**2))
    return gy[..., :, None] * gx[..., None, :]
