"""Network definitions (PyTorch). Importing this package requires torch."""

from .autoencoder import FACE_MEAN, FACE_STD, AutoEncoder, Encoder, Generator
from .landmark_net import LandmarkNet, NetConfig
from .marginal_head import MarginalHead

__all__ = ["AutoEncoder", "Encoder", "Generator", "LandmarkNet", "MarginalHead", "NetConfig", "FACE_MEAN", "FACE_STD"]
