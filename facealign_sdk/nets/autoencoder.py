"""3FabRec adversarial autoencoder: ResNet-18-style encoder and inverted-ResNet generator.

Shapes for width ``w`` (64 in the paper) and a 256 input::

    encoder: 256 -conv/2-> 128 -maxpool-> 64 -extra stage-> 32 (w) -> 16 (2w) -> 8 (4w) -> 4 (8w) -> z
    generator: z -> 4x4x8w -> 8 (4w) -> 16 (2w) -> 32 (w) -> 64 (w) -> 128 (w) -> 256 RGB (tanh)

At 128 input the encoder has no extra stage and the generator no 128 stage, so
weights trained at 128 load into the 256 networks (the new stages start fresh).
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import BasicBlock, InvBasicBlock

# RGB mean of face crops in [0, 1] (3FabRec reference demo), subtracted inside the encoder.
FACE_MEAN = (0.518, 0.418, 0.361)
FACE_STD = (1.0, 1.0, 1.0)


def _stage(cin: int, cout: int, stride: int, blocks: int = 2) -> nn.Sequential:
    layers = [BasicBlock(cin, cout, stride)] + [BasicBlock(cout, cout) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class Encoder(nn.Module):
    """Image (N, 3, S, S) RGB in [0, 1] -> latent z and multi-scale feature maps."""

    def __init__(self, input_size: int = 256, width: int = 64, z_dim: int = 99) -> None:
        super().__init__()
        if input_size not in (128, 256):
            raise ValueError(f"input_size must be 128 or 256, got {input_size}")
        self.input_size = input_size
        w = width
        self.register_buffer("mean", torch.tensor(FACE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(FACE_STD).view(1, 3, 1, 1), persistent=False)
        self.stem = nn.Sequential(
            nn.Conv2d(3, w, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self.extra = _stage(w, w, stride=2) if input_size == 256 else None
        self.layer1 = _stage(w, w, 1)
        self.layer2 = _stage(w, 2 * w, 2)
        self.layer3 = _stage(2 * w, 4 * w, 2)
        self.layer4 = _stage(4 * w, 8 * w, 2)
        self.fc = nn.Linear(8 * w, z_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Return ``(z, features)``; ``features`` maps spatial size -> feature map."""
        x = self.stem((image - self.mean) / self.std)
        feats: dict[int, torch.Tensor] = {}
        if self.extra is not None:
            feats[x.shape[-1]] = x
            x = self.extra(x)
        for layer in (self.layer1, self.layer2, self.layer3):
            x = layer(x)
            feats[x.shape[-1]] = x
        x = self.layer4(x)
        z = self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))
        return z, feats


class Generator(nn.Module):
    """Latent z -> RGB image in [-1, 1] (``output_size`` 128 or 256)."""

    def __init__(self, output_size: int = 256, width: int = 64, z_dim: int = 99) -> None:
        super().__init__()
        if output_size not in (128, 256):
            raise ValueError(f"output_size must be 128 or 256, got {output_size}")
        w = width
        self.fc = nn.Linear(z_dim, 8 * w)
        self.start = nn.Sequential(
            nn.ConvTranspose2d(8 * w, 8 * w, 4, bias=False), nn.BatchNorm2d(8 * w), nn.ReLU(inplace=True)
        )
        chans = [8 * w, 4 * w, 2 * w, w, w] + ([w] if output_size == 256 else [])
        # stages[i] doubles the resolution: 4 -> 8 -> 16 -> 32 -> 64 (-> 128)
        self.stages = nn.ModuleList(
            nn.Sequential(InvBasicBlock(cin, cout), BasicBlock(cout, cout)) for cin, cout in zip(chans[:-1], chans[1:])
        )
        self.to_rgb = nn.ConvTranspose2d(w, 3, 4, stride=2, padding=1)

    def initial(self, z: torch.Tensor) -> torch.Tensor:
        """z -> 4x4 feature map."""
        return self.start(self.fc(z)[:, :, None, None])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.initial(z)
        for stage in self.stages:
            x = stage(x)
        return torch.tanh(self.to_rgb(x))


class AutoEncoder(nn.Module):
    """Encoder + generator; ``forward`` returns ``(reconstruction, z)``."""

    def __init__(self, size: int = 128, width: int = 64, z_dim: int = 99) -> None:
        super().__init__()
        self.encoder = Encoder(size, width, z_dim)
        self.generator = Generator(size, width, z_dim)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, _ = self.encoder(image)
        return self.generator(z), z
