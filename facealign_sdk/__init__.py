"""facealign-sdk: 68-point facial landmarks (3FabRec/SCAF heatmap model).

>>> from facealign_sdk import Aligner
>>> faces = Aligner().align("samples/face.jpg")

The public names are imported on first use, so ``import facealign_sdk.cli`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Aligner": ".aligner",
    "AlignerOptions": ".options",
    "Landmarker": ".landmarker",
    "HeatmapCodec": ".codec",
    "FacealignError": ".errors",
    "Detection": ".detectors.base",
    "FaceDetector": ".detectors.base",
    "FaceLandmarks": ".results",
    "ImageLandmarks": ".results",
    "draw_faces": ".results",
    "InputError": ".errors",
    "HeadPose": ".headpose",
    "estimate_head_pose": ".headpose",
    "align_face": ".facecrop",
}
__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .aligner import Aligner
    from .codec import HeatmapCodec
    from .errors import FacealignError
    from .landmarker import Landmarker
    from .options import AlignerOptions
    from .detectors.base import Detection, FaceDetector
    from .errors import InputError
    from .facecrop import align_face
    from .headpose import HeadPose, estimate_head_pose
    from .results import FaceLandmarks, ImageLandmarks, draw_faces


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'facealign_sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
