"""facealign-sdk: 68-point facial landmarks (3FabRec/SCAF heatmap model).

>>> from facealign_sdk import Aligner
>>> faces = Aligner().align("samples/face.jpg")
"""

from .aligner import Aligner
from .detectors.base import Detection, FaceDetector
from .results import FaceLandmarks, ImageLandmarks, draw_faces

__version__ = "0.1.0"
__all__ = ["Aligner", "Detection", "FaceDetector", "FaceLandmarks", "ImageLandmarks", "draw_faces", "__version__"]
