"""The landmark network: encoder + frozen generator with Interleaved Transfer Layers (3FabRec),
optionally with encoder-to-generator skip connections (SCAF).

``forward(image) -> heatmaps``: image (N, 3, 256, 256) RGB in [0, 1], heatmaps
(N, L, 128, 128). The module keeps no state between calls, so it traces for export.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ..schemes import IBUG68
from .autoencoder import Encoder, Generator
from .blocks import MultiScaleBlock


class NetConfig(BaseModel):
    """Architecture of a landmark network (stored in the model manifest)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error, not silently ignored

    input_size: int = 256
    heatmap_size: int = 128
    width: int = Field(64, ge=8, description="channels of the first ResNet stage (64 in 3FabRec)")
    z_dim: int = 99
    num_landmarks: int = Field(IBUG68.num_points, ge=1)
    num_itl: int = Field(4, ge=0, le=4, description="ITLs after the last generator stages")
    scaf: bool = Field(True, description="encoder->generator skip connections (SCAF)")


class LandmarkNet(nn.Module):
    """3FabRec/SCAF heatmap network."""

    # generator stages used for landmarks: 4 -> 8 -> 16 -> 32 -> 64; the heatmap head makes 128
    NUM_STAGES = 4

    def __init__(self, config: NetConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or NetConfig()
        if cfg.input_size != 256 or cfg.heatmap_size != 128:
            raise ValueError("LandmarkNet supports 256x256 input and 128x128 heatmaps")
        w = cfg.width
        self.encoder = Encoder(cfg.input_size, w, cfg.z_dim)
        self.generator = Generator(cfg.input_size, w, cfg.z_dim)
        stage_channels = [4 * w, 2 * w, w, w]  # outputs at 8, 16, 32, 64
        first_itl = self.NUM_STAGES - cfg.num_itl
        self.itls = nn.ModuleDict()
        for i, c in enumerate(stage_channels):
            if i >= first_itl:
                itl = nn.Conv2d(c, c, 3, padding=1, bias=False)
                nn.init.dirac_(itl.weight)  # start as identity: the pretrained generator path
                self.itls[str(i)] = itl
        self.skips = nn.ModuleDict()
        if cfg.scaf:
            for i, c in enumerate(stage_channels):
                self.skips[str(i)] = MultiScaleBlock(c)
        self.head = nn.ConvTranspose2d(w, cfg.num_landmarks, 4, stride=2, padding=1)
        self.freeze_generator()

    def freeze_generator(self) -> None:
        """Generator weights and BatchNorm statistics stay fixed during landmark training."""
        for p in self.generator.parameters():
            p.requires_grad_(False)
        self.generator.eval()

    def train(self, mode: bool = True) -> "LandmarkNet":
        super().train(mode)
        self.generator.eval()  # keep BatchNorm statistics frozen
        return self

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        z, feats = self.encoder(image)
        x = self.generator.initial(z)
        for i in range(self.NUM_STAGES):
            x = self.generator.stages[i](x)
            key = str(i)
            if key in self.skips:
                x = x + self.skips[key](feats[x.shape[-1]])
            if key in self.itls:
                x = self.itls[key](x)
        return self.head(x)
