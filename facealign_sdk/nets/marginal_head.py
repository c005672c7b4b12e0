"""HybridMatch's 1-D heatmaps (Kang et al., IEEE Access 2023): a training-only head that predicts, per
landmark, an x-profile and a y-profile at the crop's full input resolution.

The 2-D maps quantise (a 128-px map on a 256 crop has 2-px cells); the 1-D profiles have one bin per crop
pixel, so a loss on them (:func:`facealign_sdk.training.losses.marginal_kl_loss`) asks the shared
features for sub-cell precision. The runtime and the exported model use the 2-D maps only: this head is
not part of :class:`.LandmarkNet`, and a release never holds it.
"""

from __future__ import annotations

import torch
from torch import nn

from .landmark_net import NetConfig

# logits = LOGIT_SCALE x the last layer's output: a peaked profile needs logits ~10 apart, which the default
# initialisation (outputs ~0.05) takes tens of Adam steps to grow to; RTMPose's SimCC loss (mmpose
# KLDiscretLoss, beta 10) scales its logits the same way
LOGIT_SCALE = 10.0


class _Axis(nn.Module):
    """(N, 2 * width, S/4) pooled features along one axis -> (N, L, S) logits."""

    def __init__(self, width: int, num_landmarks: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv1d(2 * width, width, 3, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose1d(width, width, 4, stride=2, padding=1), nn.ReLU(inplace=True),
            nn.ConvTranspose1d(width, num_landmarks, 4, stride=2, padding=1),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.layers(pooled)


class MarginalHead(nn.Module):
    """Features (N, width, S/4, S/4) of :meth:`.LandmarkNet.features` -> logits (N, L, 2, S): per landmark
    the x-profile (``[:, :, 0]``, bin ``i`` = crop column ``i``) and the y-profile (``[:, :, 1]``, crop rows).

    Each axis pools the other away (mean and max, concatenated: the mean carries what a linear head's
    marginal needs, the max where a peak is), then a 3-tap 1-D conv and two 1-D transposed convs (x2 each)
    reach the input resolution. Size, both axes, 68 landmarks (convs' multiply-adds per crop, counted with
    forward hooks): width 32 at 256 px, 38.2 k parameters and 3.5 M (the network: 5.86 M and 760 M); the
    lite width 16 at 128 px, 14.0 k and 0.72 M (the network: 1.46 M and 103 M). Training only.
    """

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        self.x = _Axis(config.width, config.num_landmarks)
        self.y = _Axis(config.width, config.num_landmarks)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        along_x = torch.cat([features.mean(dim=2), features.amax(dim=2)], dim=1)  # rows pooled away
        along_y = torch.cat([features.mean(dim=3), features.amax(dim=3)], dim=1)
        return torch.stack([self.x(along_x), self.y(along_y)], dim=2) * LOGIT_SCALE
