"""How a detector's face boxes sit on a face: the calibration that makes training crops match runtime crops.

A model is trained on crops cut from detector-like boxes that are derived from the annotated points
(:func:`facealign_sdk.geometry.box_from_points`), and runs on crops cut from the detector's boxes; both
must be the same box, so each detector owns the mapping from the tight box of the 68 points to its own
box. The manifest records which detector's boxes a model was trained for (``manifest.crop.detector``).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BoxCalibration(BaseModel):
    """The box a detector reports for a face, relative to the tight box of its 68 points: centre offset
    (``dx``, ``dy``) and side (``size``) in units of sqrt(w * h) of the tight box."""

    model_config = ConfigDict(frozen=True)

    detector: str = Field(description="the detector's name, as manifests record it (crop.detector)")
    dx: float
    dy: float
    size: float = Field(gt=0)


# fitted by benchmarks/calibrate_boxes.py on ytf68/train (medians over 866 faces)
YUNET = BoxCalibration(detector="yunet", dx=-0.009, dy=-0.173, size=1.103)
