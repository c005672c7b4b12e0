"""Network definitions (PyTorch). Importing this package requires torch."""

from .autoencoder import FACE_MEAN, FACE_STD, AutoEncoder, Encoder, Generator
from .landmark_net import LandmarkNet, NetConfig

__all__ = ["AutoEncoder", "Encoder", "Generator", "LandmarkNet", "NetConfig", "FACE_MEAN", "FACE_STD"]
