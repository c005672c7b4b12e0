"""Losses: 3FabRec structural (contrast x correlation) SSIM term, GAN terms, LaplaceKL, HybridMatch 1-D profiles
(2-D heatmap targets: facealign_sdk.codec)."""

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
    return _mean_kl(log_target, pred.reshape(n, l, h * w) / temperature, point_weights)


def marginal_kl_loss(
    profiles: torch.Tensor, points: torch.Tensor, sigma: float = 2.5, point_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """HybridMatch's 1-D heatmap loss (Kang et al., IEEE Access 2023): KL(target || softmax(profile)) per
    landmark and axis, mean.

    ``profiles`` (N, L, 2, S): x- and y-profile logits (:class:`facealign_sdk.nets.MarginalHead`), bin ``i``
    = crop pixel ``i``; ``points`` (N, L, 2) crop-pixel coordinates (pixel centres, as the crops'). The
    target of each axis is the marginal of a 2-D Gaussian of ``sigma`` crop pixels at the point: a 1-D
    Gaussian sampled at the bins and normalised, so a point between bins moves the target and the loss is
    least for a profile centred at the exact sub-pixel coordinate. ``point_weights`` (N, L) scale each
    landmark's term.
    """
    bins = torch.arange(profiles.shape[-1], dtype=profiles.dtype, device=profiles.device)
    offset = bins - points.to(profiles)[..., None]
    return _mean_kl(torch.log_softmax(-0.5 * (offset / sigma) ** 2, dim=-1), profiles, point_weights)


def _mean_kl(log_target: torch.Tensor, logits: torch.Tensor, point_weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of KL(target || softmax(logits)) over the last axis of (N, L, ..., K) tensors; ``point_weights``
    (N, L) scale each landmark's terms."""
    kl = (log_target.exp() * (log_target - torch.log_softmax(logits, dim=-1))).sum(dim=-1)
    if point_weights is not None:
        kl = kl * point_weights.reshape(point_weights.shape + (1,) * (kl.dim() - 2))
    return kl.mean()
