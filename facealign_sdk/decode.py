"""The one heatmap decoder: Gaussian blur, argmax, subpixel refinement and per-landmark confidence.

Points come out in heatmap pixel coordinates (pixel centres); map them to the
crop and the image with :mod:`facealign_sdk.geometry`.
"""

from __future__ import annotations

import threading
from typing import Literal, get_args

import cv2
import numpy as np

from .errors import InputError

Refine = Literal["none", "quadratic", "soft"]
REFINE_MODES: tuple[str, ...] = get_args(Refine)

# Target heatmaps are Gaussians of this sigma (heatmap pixels) with peak 1: sigma 7 px at 256 -> 3.5 at 128.
TARGET_SIGMA = 3.5
# Side of the window around the peak whose mass is the confidence (SCAF's NNM window).
CONFIDENCE_WINDOW = 7
# The peak is sought on heatmaps blurred with a Gaussian of the target's sigma (the matched filter, as
# in DARK): it picks the mode with the most mass rather than the highest noisy pixel. Measured on
# ytf68/val (fixed box, fabrec-scaf-w32 of session 1): NME 7.34 % without, 6.99 % with it.
# Refinement reads the blurred maps too: raw maps carry pixel-level noise that moves a sharpened
# centre of mass (fabrec-scaf-w32 of session 3, ytf68/val fixed box: NME 4.04 % refining the raw
# maps in a 9-px window, 4.00 % the blurred ones in a 15-px window; the int8 graph's landmarks
# move p99 1.77 px from the fp32 graph's with the first, 1.06 px with the second).
BLUR_SIGMA = TARGET_SIGMA
SOFT_WINDOW = 15
SOFT_POWER = 8.0


def blur_kernel(sigma: float) -> np.ndarray:
    """The 1-D Gaussian (sum 1, truncated at 3 sigma) that ``blur_heatmaps`` applies along x and y."""
    radius = max(1, int(np.ceil(3 * sigma)))
    r = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(r**2) / (2 * sigma**2))
    return (g / g.sum()).astype(np.float32)


def blur_heatmaps(heatmaps: np.ndarray, sigma: float = BLUR_SIGMA) -> np.ndarray:
    """Gaussian-blur every (H, W) map of (..., H, W) heatmaps; outside the map counts as 0."""
    hm = np.ascontiguousarray(heatmaps, dtype=np.float32)
    if sigma <= 0 or hm.size == 0:
        return hm
    h, w = hm.shape[-2:]
    return np.ascontiguousarray(_blur_padded(hm.reshape(-1, h, w), sigma)[:, :h]).reshape(hm.shape)


_scratch = threading.local()
# Work arrays up to this size are kept for the next call; a larger batch gets fresh ones that are
# freed after it (one face needs 2 x 4.7 MB; a 50-face image 2 x 235 MB, which must not stay
# allocated for the life of every thread that once saw it).
SCRATCH_KEEP_BYTES = 64 << 20


def _scratch_array(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 work array kept between calls (one buffer per thread and name, grown up to
    ``SCRATCH_KEEP_BYTES``). Fresh multi-MB arrays are mapped from the OS and page-faulted in on every
    call, which cost more than the blur itself (2 cores: blur 5-9 ms per face with fresh arrays,
    2.4 ms with reused ones)."""
    buffers = _scratch.__dict__.setdefault("buffers", {})
    size = int(np.prod(shape))
    if size * 4 > SCRATCH_KEEP_BYTES:
        return np.empty(shape, np.float32)
    if name not in buffers or buffers[name].size < size:
        buffers[name] = np.empty(size, np.float32)
    return buffers[name][:size].reshape(shape)


def scratch_bytes() -> int:
    """Bytes of work arrays this thread keeps between calls (at most 2 x ``SCRATCH_KEEP_BYTES``)."""
    return sum(b.nbytes for b in _scratch.__dict__.get("buffers", {}).values())


def _blur_padded(maps: np.ndarray, sigma: float) -> np.ndarray:
    """Blur (M, H, W) float32 maps into a reused (M, H + gap, W) array whose gap rows hold -inf (so an
    argmax over a whole padded map lands inside it). Valid until the next call in this thread."""
    k = blur_kernel(sigma)
    m, h, w = maps.shape
    gap = len(k) // 2  # zero rows between maps: one filter call for all maps, none bleeding into the next
    tall = _scratch_array("tall", (m, h + gap, w))
    tall[:, :h] = maps
    tall[:, h:] = 0.0
    out = _scratch_array("blurred", (m * (h + gap), w))
    cv2.sepFilter2D(tall.reshape(-1, w), -1, k, k, dst=out, borderType=cv2.BORDER_CONSTANT)
    padded = out.reshape(m, h + gap, w)
    padded[:, h:] = -np.inf
    return padded


def expected_mass(window: int, sigma: float) -> float:
    """Mass of a peak-1 target Gaussian of ``sigma`` in a ``window`` square: the mass of a confidence of 1."""
    r = np.arange(window) - window // 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    return float(g.sum() ** 2)


def _window_values(hm: np.ndarray, ix: np.ndarray, iy: np.ndarray, radius: int, edge: bool = False) -> np.ndarray:
    """(M, 2r+1, 2r+1) values around (ix, iy) of (M, H, W) maps; outside the map counts as 0,
    or is mirrored about the border pixel when ``edge`` (refinement then errs by at most the
    distance to that pixel's centre instead of being pulled inwards)."""
    m, h, w = hm.shape
    offs = np.arange(-radius, radius + 1)
    xs = ix[:, None] + offs[None, :]
    ys = iy[:, None] + offs[None, :]
    valid = ((xs >= 0) & (xs < w))[:, None, :] & ((ys >= 0) & (ys < h))[:, :, None]
    if edge:
        xs, ys = _mirror(xs, w), _mirror(ys, h)
    vals = hm[np.arange(m)[:, None, None], np.clip(ys, 0, h - 1)[:, :, None], np.clip(xs, 0, w - 1)[:, None, :]]
    return vals if edge else np.where(valid, vals, 0.0)


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    idx = np.abs(idx)
    return np.where(idx > n - 1, 2 * (n - 1) - idx, idx)


def _quadratic_offset(patch: np.ndarray) -> np.ndarray:
    """Newton step of the log-heatmap around the centre of (M, 3, 3) patches (exact for Gaussians)."""
    f = np.log(np.maximum(patch, 1e-10))
    dx = (f[:, 1, 2] - f[:, 1, 0]) / 2
    dy = (f[:, 2, 1] - f[:, 0, 1]) / 2
    dxx = f[:, 1, 2] - 2 * f[:, 1, 1] + f[:, 1, 0]
    dyy = f[:, 2, 1] - 2 * f[:, 1, 1] + f[:, 0, 1]
    dxy = (f[:, 2, 2] - f[:, 0, 2] - f[:, 2, 0] + f[:, 0, 0]) / 4
    det = dxx * dyy - dxy**2
    ok = (det > 1e-12) & (dxx < 0)  # a proper maximum
    safe = np.where(ok, det, 1.0)
    ox = np.where(ok, -(dyy * dx - dxy * dy) / safe, 0.0)
    oy = np.where(ok, -(dxx * dy - dxy * dx) / safe, 0.0)
    return np.clip(np.stack([ox, oy], axis=-1), -1.0, 1.0)


def _soft_offset(patch: np.ndarray, power: float) -> np.ndarray:
    """Centre of mass of sharpened (M, k, k) patches relative to their centre.

    Raising a Gaussian to ``power`` narrows it by sqrt(power), so the window
    truncates almost nothing and the centre of mass is nearly unbiased.
    """
    k = patch.shape[-1]
    peak = np.maximum(patch.max(axis=(1, 2), keepdims=True), 1e-12)
    w = (np.maximum(patch, 0.0) / peak) ** power
    total = np.maximum(w.sum(axis=(1, 2)), 1e-12)
    r = np.arange(k) - k // 2
    ox = (w.sum(axis=1) * r).sum(axis=1) / total
    oy = (w.sum(axis=2) * r).sum(axis=1) / total
    return np.stack([ox, oy], axis=-1)


def decode_heatmaps(
    heatmaps: np.ndarray,
    refine: Refine = "quadratic",
    soft_window: int = SOFT_WINDOW,
    soft_power: float = SOFT_POWER,
    confidence_window: int = CONFIDENCE_WINDOW,
    sigma: float = TARGET_SIGMA,
    blur_sigma: float = BLUR_SIGMA,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode (N, L, H, W) heatmaps into points (N, L, 2) in heatmap pixels and confidence (N, L).

    The heatmaps are blurred with a Gaussian of ``blur_sigma`` (0: not blurred; see ``BLUR_SIGMA``);
    the integer peak is the argmax of the blurred maps and refinement reads them too.
    ``refine``: ``"none"`` integer argmax; ``"quadratic"`` Newton step on the log
    heatmap (2nd-order Taylor expansion around the peak: DARK); ``"soft"`` soft-argmax of the
    heatmap raised to ``soft_power`` in a ``soft_window`` square around the peak. Confidence is
    the mass of the heatmaps as given (not blurred) in a ``confidence_window`` square around the
    peak divided by that of an ideal target Gaussian, clipped to [0, 1].
    """
    hm = np.asarray(heatmaps, dtype=np.float32)
    if hm.ndim != 4:
        raise InputError(f"heatmaps must be (N, L, H, W), got shape {hm.shape}")
    if refine not in REFINE_MODES:
        raise InputError(f"refine must be one of {REFINE_MODES}, got {refine!r}")
    n, lm, h, w = hm.shape
    flat = np.ascontiguousarray(hm.reshape(n * lm, h, w))
    if blur_sigma > 0 and flat.size:
        padded = _blur_padded(flat, blur_sigma)
        iy, ix = np.divmod(padded.reshape(n * lm, -1).argmax(axis=1), w)
        blurred = padded[:, :h]
    else:
        blurred = flat
        iy, ix = np.divmod(flat.reshape(n * lm, -1).argmax(axis=1), w)
    points = np.stack([ix, iy], axis=-1).astype(np.float64)
    if refine == "quadratic":
        points += _quadratic_offset(_window_values(blurred, ix, iy, 1, edge=True))
    elif refine == "soft":
        points += _soft_offset(_window_values(blurred, ix, iy, soft_window // 2, edge=True), soft_power)
    mass = _window_values(flat, ix, iy, confidence_window // 2).sum(axis=(1, 2))
    confidence = np.clip(mass / expected_mass(confidence_window, sigma), 0.0, 1.0)
    return points.reshape(n, lm, 2), confidence.reshape(n, lm).astype(np.float32)
