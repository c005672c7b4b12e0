"""Building blocks shared by the encoder, the generator and the skip connections."""

from __future__ import annotations

import torch
from torch import nn


def conv3x3(cin: int, cout: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    """3x3 convolution with padding 1 (same size at stride 1)."""
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=bias)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs), optionally strided."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, cout, stride)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.shortcut(x))


class InvBasicBlock(nn.Module):
    """Inverted basic block: a 4x4 stride-2 transposed conv doubles the resolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1 = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = conv3x3(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, 2, stride=2, bias=False), nn.BatchNorm2d(cout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.act(y + self.shortcut(x))


class MultiScaleBlock(nn.Module):
    """Hierarchical, parallel, multi-scale bottleneck (Bulat & Tzimiropoulos), used by SCAF skips.

    Three chained 3x3 convs with C/2, C/4, C/4 channels; their outputs are
    concatenated back to C channels and added to the input.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        c2, c4 = channels // 2, channels // 4
        widths = [(channels, c2), (c2, c4), (c4, channels - c2 - c4)]
        self.convs = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=False), conv3x3(cin, cout)) for cin, cout in widths
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs, y = [], x
        for conv in self.convs:
            y = conv(y)
            outs.append(y)
        return x + torch.cat(outs, dim=1)
