"""``AlignerOptions``: the settings of an :class:`~facealign_sdk.aligner.Aligner` in one object.

The ``Aligner``'s keyword arguments and the CLI's model / decoder flags (``facealign_sdk.cli.flags``)
both come from these fields, so a default or a description is written once.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from .backends.base import DEVICES
from .decode import REFINE_MODES, Refine


class AlignerOptions(BaseModel):
    """How an ``Aligner`` runs its model and decodes its heatmaps."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_assignment=True)

    model: str | Path | None = Field(
        None, description="model name, folder or artifact (.onnx / .engine); default: the bundled model")
    # backend and device are checked by the backends (BackendError names what to install or fix)
    backend: str = Field("auto", description="inference backend (auto: the fastest available)")
    device: str = Field("auto", description=", ".join(DEVICES) + " (cuda:N; tensorrt: ONNX Runtime's TensorRT provider)")
    refine: Refine = Field("soft", description="subpixel refinement of each heatmap peak: " + ", ".join(REFINE_MODES))
    blur: bool = Field(True, description="seek heatmap peaks on maps blurred with the Gaussian the model's release "
                       "chose (manifest codec.blur_sigma: 1.75 px for the default model, none for the lite one)")
    flip: bool = Field(False, description="also run the mirrored crop and average (twice the network time; more "
                       "accurate with conventions fitted for it, manifest 'flip_conventions', or a model trained with "
                       "mirror augmentation; less accurate otherwise: see the model's card)")
    convention: str | None = Field(None, description="annotation convention of the points, one of the model's "
                                   "(manifest 'conventions', e.g. 300w, ytf68) or none (the network's own points); "
                                   "default: the model's default")
    max_faces: int | None = Field(None, ge=1, description="at most this many faces per image (best detector score "
                                  "first); default: all")
    batch_size: int = Field(32, ge=1, description="face crops per network call")

