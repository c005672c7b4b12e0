"""Losses: 3FabRec structural (contrast x correlation) SSIM term, GAN terms, LaplaceKL (targets: facealign_sdk.codec)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def structural_loss(a: torch.Tensor, b: torch.Tensor, window: int = 15, c2: float = 0.03**2) -> torch.Tensor:
    """1 - mean SSIM contrast*structure term (no luminance) over ``window`` box windows; images in [0, 1]."""
    pad = window // 2
    mu_a = F.avg_pool2d(a, window, 1, pad, count_include_pad=False)
    mu_b = F.avg_pool2d(b, window, 1, pad, count_include_pad=False)
    var_a = F.avg_pool2d(a * a, window, 1, pad, count_include_pad=False) - mu_a**2
    var_b = F.avg_pool2d(b * b, window, 1, pad, count_include_pad=False) - mu_b**2
    cov = F.avg_pool2d(a * b, window, 1, pad, count_include_pad=False) - mu_a * mu_b
    cs = (2 * cov + c2) / (var_a.clamp_min(0) + var_b.clamp_min(0) + c2)
    return 1.0 - cs.mean()


class LatentDiscriminator(nn.Module):
    """Tells encoder latents from samples of N(0, I)."""

    def __init__(self, z_dim: int = 99, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ImageDiscriminator(nn.Module):
    """DCGAN-style discriminator on RGB images in [-1, 1] (any size >= 32)."""

    def __init__(self, width: int = 32, depth: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(depth - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        layers += [nn.Conv2d(c, 1, 3, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).mean(dim=(1, 2, 3))


def gan_loss(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """Non-saturating GAN loss."""
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits.view(-1), target.view(-1))


def laplace_kl_loss(
    pred: torch.Tensor, points: torch.Tensor, scale: float = 1.0, temperature: float = 0.1,
    point_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """LaplaceKL (Robinson et al. 2019): KL(Laplace target || softmax(pred / temperature)) per heatmap, mean.

    ``points`` (N, L, 2) are heatmap-pixel coordinates; the target is the isotropic 2-D Laplace
    ``exp(-|p - point| / scale)`` normalised over the map. The temperature turns the network's
    peak-1 heatmaps into a distribution: at 0.1 the softmax of the codec's Gaussian target (sigma
    3.5) is about as wide as a Laplace of scale 1, so this term and the MSE term agree on where the
    mass belongs while the KL punishes mass away from the point, which the peak-weighted MSE barely sees.
    ``point_weights`` (N, L) scale each heatmap's term.
    """
    n, l, h, w = pred.shape
    xs = torch.arange(w, dtype=pred.dtype, device=pred.device)
    ys = torch.arange(h, dtype=pred.dtype, device=pred.device)
    px = points[..., 0].to(pred)[:, :, None, None]
    py = points[..., 1].to(pred)[:, :, None, None]
    dist = torch.sqrt((xs[None, None, None, :] - px) ** 2 + (ys[None, None, :, None] - py) ** 2)
    log_target = torch.log_softmax((-dist / scale).reshape(n, l, h * w), dim=-1)
    log_pred = torch.log_softmax(pred.reshape(n, l, h * w) / temperature, dim=-1)
    kl = (log_target.exp() * (log_target - log_pred)).sum(dim=-1)
    if point_weights is not None:
        kl = kl * point_weights
    return kl.mean()
