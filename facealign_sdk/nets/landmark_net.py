"""The landmark network: encoder + frozen generator with Interleaved Transfer Layers (3FabRec),
optionally with encoder-to-generator skip connections (SCAF).

``forward(image) -> heatmaps``: image (N, 3, S, S) RGB in [0, 1], heatmaps (N, L, S/2, S/2), for
S = 256 (the default model) or 128 (a lite model). The module keeps no state between calls, so it
traces for export.

At 128 input the encoder has no extra stage (its stem ends at 32 px, where the 256 network's extra stage
ends; the deeper stages run at the same 32 -> 4 px) and the generator feeds the head from 32 px instead of
64 (3 stages, so at most 3 ITLs and skips): every other tensor has the shape of the same-width 256 network's.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from ..schemes import IBUG68
from .autoencoder import Encoder, Generator
from .blocks import MultiScaleBlock


# input_size -> (heatmap_size, generator stages feeding the head: 4 -> 8 -> 16 -> 32 (-> 64))
GEOMETRY = {256: (128, 4), 128: (64, 3)}


class NetConfig(BaseModel):
    """Architecture of a landmark network (stored in the model manifest)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error, not silently ignored

    input_size: int = 256
    heatmap_size: int = 128
    width: int = Field(64, ge=8, description="channels of the first ResNet stage (64 in 3FabRec)")
    z_dim: int = 99
    num_landmarks: int = Field(IBUG68.num_points, ge=1)
    num_itl: int = Field(4, ge=0, le=4, description="ITLs after the last generator stages (at most 3 at 128 px input)")
    scaf: bool = Field(True, description="encoder->generator skip connections (SCAF)")

    @classmethod
    def for_input(cls, input_size: int, **settings: object) -> NetConfig:
        """The config of an ``input_size`` network (heatmaps of half its size, an ITL after every stage)."""
        heatmap_size, stages = GEOMETRY.get(input_size, (0, 0))
        return cls.model_validate({"input_size": input_size, "heatmap_size": heatmap_size, "num_itl": stages,
                                   **settings})

    @property
    def num_stages(self) -> int:
        """Generator stages that feed the heatmap head: 4 -> 8 -> 16 -> 32 (-> 64 at 256 input)."""
        return GEOMETRY[self.input_size][1]

    @model_validator(mode="after")
    def _supported_geometry(self) -> NetConfig:
        if GEOMETRY.get(self.input_size, (None,))[0] != self.heatmap_size:
            raise ValueError(f"input_size {self.input_size} with heatmap_size {self.heatmap_size}: LandmarkNet supports "
                             f"{' or '.join(f'{i} px input with {h} px heatmaps' for i, (h, _) in GEOMETRY.items())}")
        if self.num_itl > self.num_stages:
            raise ValueError(f"num_itl {self.num_itl}: a {self.input_size} px network has {self.num_stages} "
                             "generator stages to put ITLs after")
        return self


class LandmarkNet(nn.Module):
    """3FabRec/SCAF heatmap network."""

    def __init__(self, config: NetConfig | None = None) -> None:
        super().__init__()
        cfg = self.config = config or NetConfig()
        w = cfg.width
        self.encoder = Encoder(cfg.input_size, w, cfg.z_dim)
        self.generator = Generator(cfg.input_size, w, cfg.z_dim)
        stage_channels = [4 * w, 2 * w, w, w][: cfg.num_stages]  # outputs at 8, 16, 32 (, 64)
        first_itl = cfg.num_stages - cfg.num_itl
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
        return self.head(self.features(image))

    def features(self, image: torch.Tensor) -> torch.Tensor:
        """The map the heatmap head reads: (N, width, S/4, S/4) (training heads such as
        :class:`.MarginalHead` read it too)."""
        z, feats = self.encoder(image)
        x = self.generator.initial(z)
        for i in range(self.config.num_stages):
            x = self.generator.stages[i](x)
            key = str(i)
            if key in self.skips:
                x = x + self.skips[key](feats[x.shape[-1]])
            if key in self.itls:
                x = self.itls[key](x)
        return x
