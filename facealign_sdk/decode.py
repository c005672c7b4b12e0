"""The one heatmap decoder: Gaussian blur, argmax, subpixel refinement and per-landmark confidence.

Points come out in heatmap pixel coordinates (pixel centres); map them to the
crop and the image with :mod:`facealign_sdk.geometry`.
"""

from __future__ import annotations

import functools
import threading
from typing import Literal, get_args

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

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
# Networks trained longer on more data make sharper peaks, and there the full blur costs precision: a release
# may set a weaker one or none in its manifest (``facealign train release --blur-sigma``; the cards give the
# measurements). This default stays what training validates with.
BLUR_SIGMA = TARGET_SIGMA
SOFT_WINDOW = 15
SOFT_POWER = 8.0
# The peak search blurs a window around each map's likely peak instead of the whole map when a bound proves
# that no pixel outside the window can beat the best blurred pixel inside (``_peaks_in_windows``); the other
# maps are blurred whole. Same values, same argmax: the window's blur does the same arithmetic per pixel.
# Bounds are kept per PEAK_TILE x PEAK_TILE tile; the window is searched over at least PEAK_SEARCH px a side
# and its width is a multiple of SIMD_PIXELS (OpenCV's filter loops then run no scalar tail, whose rounding
# could differ from the vector body's).
PEAK_TILE = 4
PEAK_SEARCH = 28
SIMD_PIXELS = 16
PEAK_CHUNK = 1024  # maps whose windows are blurred in one call (work arrays of 20 MB at most)


@functools.lru_cache(maxsize=16)
def _kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(np.ceil(3 * sigma)))
    r = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-(r**2) / (2 * sigma**2))
    kernel = (g / g.sum()).astype(np.float32)
    kernel.flags.writeable = False  # shared between calls
    return kernel


def blur_kernel(sigma: float) -> np.ndarray:
    """The 1-D Gaussian (sum 1, truncated at 3 sigma) that ``blur_heatmaps`` applies along x and y."""
    return _kernel(float(sigma)).copy()


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
    k = _kernel(float(sigma))
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


@functools.lru_cache(maxsize=16)
def expected_mass(window: int, sigma: float) -> float:
    """Mass of a peak-1 target Gaussian of ``sigma`` in a ``window`` square: the mass of a confidence of 1."""
    r = np.arange(window) - window // 2
    g = np.exp(-(r**2) / (2 * sigma**2))
    return float(g.sum() ** 2)


def _window_indices(ix: np.ndarray, iy: np.ndarray, radius: int, size: tuple[int, int],
                    edge: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows (M, k) and columns (M, k) of the k = 2r+1 square around each (ix, iy) in (H, W) maps, kept inside
    the map (mirrored about the border pixel when ``edge``, else clipped), and which pixels are in it (M, k, k)."""
    h, w = size
    offs = np.arange(-radius, radius + 1)
    xs = ix[:, None] + offs[None, :]
    ys = iy[:, None] + offs[None, :]
    valid = ((xs >= 0) & (xs < w))[:, None, :] & ((ys >= 0) & (ys < h))[:, :, None]
    if edge:
        xs, ys = _mirror(xs, w), _mirror(ys, h)
    return np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1), valid


def _window_values(hm: np.ndarray, ix: np.ndarray, iy: np.ndarray, radius: int, edge: bool = False) -> np.ndarray:
    """(M, 2r+1, 2r+1) values around (ix, iy) of (M, H, W) maps; outside the map counts as 0,
    or is mirrored about the border pixel when ``edge`` (refinement then errs by at most the
    distance to that pixel's centre instead of being pulled inwards)."""
    ys, xs, valid = _window_indices(ix, iy, radius, hm.shape[1:], edge)
    vals = hm[np.arange(hm.shape[0])[:, None, None], ys[:, :, None], xs[:, None, :]]
    return vals if edge else np.where(valid, vals, 0.0)


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    idx = np.abs(idx)
    return np.where(idx > n - 1, 2 * (n - 1) - idx, idx)


@functools.lru_cache(maxsize=16)
def _tile_weights(sigma: float, tile: int) -> np.ndarray:
    """``w[reach + d]``: the most blur-kernel mass (over a pixel's place in its tile) that falls into the tile
    ``d`` tiles away. A blurred pixel is then at most ``sum w[dy] w[dx] tilemax+`` over the tiles around its own."""
    k = _kernel(sigma).astype(np.float64)
    r = len(k) // 2
    reach = -(-r // tile)
    w = np.zeros(2 * reach + 1)
    for place in range(tile):
        mass = np.zeros(2 * reach + 1)
        np.add.at(mass, (place + np.arange(-r, r + 1)) // tile + reach, k)
        w = np.maximum(w, mass)
    weights = w.astype(np.float32)
    weights.flags.writeable = False  # shared between calls
    return weights


def _max_along(x: np.ndarray, axis: int) -> np.ndarray:
    """The maximum over a short axis, as elementwise maxima of its slices (numpy's reduction over a short
    axis costs several times more)."""
    parts = np.moveaxis(x, axis, 0)
    out = parts[0].copy()
    for part in parts[1:]:
        np.maximum(out, part, out=out)
    return out


def _tile_bounds(maps: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Upper bounds (M, H/t, W/t) of the blurred (M, H, W) maps in each PEAK_TILE square tile (up to float32
    rounding), and which maps are finite (the bounds of the others mean nothing)."""
    m, h, w = maps.shape
    t = PEAK_TILE
    th, tw = -(-h // t), -(-w // t)
    if h % t or w % t:  # partial tiles at the far edges: outside the map counts as 0
        whole = np.zeros((m, th * t, tw * t), np.float32)
        whole[:, :h, :w] = maps
        maps = whole
    tiles = _max_along(_max_along(maps.reshape(m, th, t, tw * t), 2).reshape(m, th, tw, t), 3)
    finite = np.isfinite(tiles).all(axis=(1, 2))
    weights = _tile_weights(sigma, t)
    reach = len(weights) // 2
    stack = np.zeros((m, th + reach, tw), np.float32)  # zero rows between maps: none bleeds into the next
    stack[:, :th] = np.where(finite[:, None, None], np.maximum(tiles, 0.0), 0.0)
    bounds = cv2.sepFilter2D(stack.reshape(-1, tw), -1, weights, weights, borderType=cv2.BORDER_CONSTANT)
    return bounds.reshape(m, th + reach, tw)[:, :th], finite


def _peaks_in_windows(maps: np.ndarray, sigma: float, radius: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """What ``_blurred_peaks`` returns for those (M, H, W) maps whose blur around the likely peak decides it,
    and which maps those are: (done (M,), ix (M,), iy (M,), patches of the done maps).

    Each map's blur is at most its tile bound (``_tile_bounds``) anywhere. A window is blurred around the tile
    of the highest bound; its best pixel in the searched middle is the map's blurred argmax when every tile
    whose bound reaches that value lies in the searched middle (pixels elsewhere are then lower)."""
    m, h, w = maps.shape
    k = _kernel(sigma)
    r, t = len(k) // 2, PEAK_TILE
    side = -(-(PEAK_SEARCH + 2 * radius + 2 * r) // SIMD_PIXELS) * SIMD_PIXELS  # the window, input pixels
    inner = side - 2 * r  # the pixels of it blurred as in the whole map
    n = (inner - 2 * radius) // t  # the tiles searched, each way
    if side > min(h, w) or 2 * side * side > h * w:  # a small map: the whole map costs little more
        none = np.zeros(m, np.int64)
        return np.zeros(m, bool), none, none, np.empty((0, 2 * radius + 1, 2 * radius + 1), np.float32)
    bounds, finite = _tile_bounds(maps, sigma)
    th, tw = bounds.shape[1:]
    cy, cx = np.divmod(bounds.reshape(m, -1).argmax(axis=1), tw)
    ty0, tx0 = np.clip(cy - n // 2, 0, h // t - n), np.clip(cx - n // 2, 0, w // t - n)  # the searched tiles
    sy0, sx0 = ty0 * t, tx0 * t
    # the blurred pixels: the searched ones and ``radius`` around them (refinement), inside the map
    by0, bx0 = np.clip(sy0 - radius, 0, h - inner), np.clip(sx0 - radius, 0, w - inner)
    oy, ox = np.clip(by0 - r, 0, h - side), np.clip(bx0 - r, 0, w - side)  # the window
    rows = np.arange(m)
    windows = _scratch_array("tall", (m, side + r, side))  # zero rows between windows, as outside a map
    windows[:, :side] = sliding_window_view(maps, (side, side), axis=(1, 2))[rows, oy, ox]
    windows[:, side:] = 0.0
    blurred = _scratch_array("blurred", (m, side + r, side))
    cv2.sepFilter2D(windows.reshape(-1, side), -1, k, k, dst=blurred.reshape(-1, side), borderType=cv2.BORDER_CONSTANT)
    searched = sliding_window_view(blurred, (n * t, n * t), axis=(1, 2))[rows, sy0 - oy, sx0 - ox].reshape(m, -1)
    best = searched.argmax(axis=1)  # the first of equal values in raster order, as over the whole map
    top = searched[rows, best]
    ly, lx = np.divmod(best, n * t)
    iy, ix = sy0 + ly, sx0 + lx
    # float32 rounding of the blur and the bounds (a rival within it would be a tie in the whole map's blur too)
    margin = 1e-3 * (np.abs(top) + bounds.max(axis=(1, 2)))
    rival = bounds >= (top - margin)[:, None, None]
    ty, tx = np.arange(th)[None, :, None], np.arange(tw)[None, None, :]
    searched_tiles = ((ty >= ty0[:, None, None]) & (ty < (ty0 + n)[:, None, None])
                      & (tx >= tx0[:, None, None]) & (tx < (tx0 + n)[:, None, None]))
    done = finite & ~(rival & ~searched_tiles).any(axis=(1, 2))
    pick = np.flatnonzero(done)
    ys, xs, _ = _window_indices(ix[pick], iy[pick], radius, (h, w), edge=True)
    patches = blurred[pick[:, None, None], (ys - oy[pick, None])[:, :, None], (xs - ox[pick, None])[:, None, :]]
    return done, ix, iy, patches


def _blurred_peaks(maps: np.ndarray, sigma: float, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The argmax (ix, iy) of each (M, H, W) map blurred with ``sigma`` (zero outside) and the blurred values
    within ``radius`` of it (M, 2 radius + 1, 2 radius + 1; mirrored about the border pixel).

    Most maps are decided by a window around their peak (``_peaks_in_windows``, PEAK_CHUNK maps at a time),
    the rest blurred whole: the same values either way."""
    m, h, w = maps.shape
    ix, iy = np.zeros(m, np.int64), np.zeros(m, np.int64)
    patches = np.empty((m, 2 * radius + 1, 2 * radius + 1), np.float32)
    done = np.zeros(m, bool)
    for start in range(0, m, PEAK_CHUNK):
        part = slice(start, start + PEAK_CHUNK)
        done[part], ix[part], iy[part], found = _peaks_in_windows(maps[part], sigma, radius)
        patches[start + np.flatnonzero(done[part])] = found
    rest = np.flatnonzero(~done)
    if rest.size:
        padded = _blur_padded(maps[rest], sigma)
        iy[rest], ix[rest] = np.divmod(padded.reshape(len(rest), -1).argmax(axis=1), w)
        patches[rest] = _window_values(padded[:, :h], ix[rest], iy[rest], radius, edge=True)
    return ix, iy, patches


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
    radius = {"none": 0, "quadratic": 1, "soft": soft_window // 2}[refine]
    if blur_sigma > 0 and flat.size:
        ix, iy, patches = _blurred_peaks(flat, blur_sigma, radius)
    else:
        iy, ix = np.divmod(flat.reshape(n * lm, -1).argmax(axis=1), w)
        patches = _window_values(flat, ix, iy, radius, edge=True)
    points = np.stack([ix, iy], axis=-1).astype(np.float64)
    if refine == "quadratic":
        points += _quadratic_offset(patches)
    elif refine == "soft":
        points += _soft_offset(patches, soft_power)
    mass = _window_values(flat, ix, iy, confidence_window // 2).sum(axis=(1, 2))
    confidence = np.clip(mass / expected_mass(confidence_window, sigma), 0.0, 1.0)
    return points.reshape(n, lm, 2), confidence.reshape(n, lm).astype(np.float32)
