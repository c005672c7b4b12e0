"""Heatmap decoding: subpixel accuracy on synthetic Gaussians, confidence, input checks."""

import numpy as np
import pytest

from facealign_sdk.decode import SOFT_WINDOW, TARGET_SIGMA, decode_heatmaps

SOFT_WINDOW_RADIUS = SOFT_WINDOW // 2


def gaussians(points: np.ndarray, size: int = 128, sigma: float = TARGET_SIGMA, peak: float = 1.0) -> np.ndarray:
    grid = np.arange(size, dtype=np.float64)
    gx = np.exp(-((grid[None, None] - points[..., 0:1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((grid[None, None] - points[..., 1:2]) ** 2) / (2 * sigma**2))
    return (peak * gy[..., :, None] * gx[..., None, :]).astype(np.float32)


@pytest.fixture(scope="module")
def subpixel_points():
    return np.random.default_rng(0).uniform(8, 120, (3, 68, 2))


def error(pred, gt):
    return np.linalg.norm(pred - gt, axis=-1)


def test_argmax_is_quantised(subpixel_points):
    pts, _ = decode_heatmaps(gaussians(subpixel_points), "none")
    err = error(pts, subpixel_points)
    assert 0.2 < err.mean() < 0.71  # integer grid: up to sqrt(0.5) px


@pytest.mark.parametrize("refine", ["quadratic", "soft"])
def test_refinement_is_well_below_quantisation(subpixel_points, refine):
    pts, _ = decode_heatmaps(gaussians(subpixel_points), refine)
    err = error(pts, subpixel_points)
    assert err.mean() < 0.1 and err.max() < 0.1


@pytest.mark.parametrize("refine", ["quadratic", "soft"])
def test_refinement_with_noise_beats_argmax(subpixel_points, refine):
    rng = np.random.default_rng(3)
    hm = gaussians(subpixel_points) + rng.normal(0, 0.01, (3, 68, 128, 128)).astype(np.float32)
    refined = error(decode_heatmaps(hm, refine)[0], subpixel_points).mean()
    argmax = error(decode_heatmaps(hm, "none")[0], subpixel_points).mean()
    assert refined < 0.2 and refined < argmax / 2


def test_confidence_is_high_for_sharp_peaks_and_low_for_flat_maps(subpixel_points):
    _, conf = decode_heatmaps(gaussians(subpixel_points), "soft")
    assert conf.min() > 0.95 and conf.max() <= 1.0
    _, weak = decode_heatmaps(gaussians(subpixel_points, peak=0.2), "soft")
    assert np.allclose(weak, conf * 0.2, atol=0.01)
    _, flat = decode_heatmaps(np.zeros((1, 5, 128, 128), np.float32), "soft")
    assert np.all(flat == 0)


def test_peaks_at_the_border_do_not_crash():
    pts = np.array([[[0.0, 0.0], [127.0, 127.0], [0.3, 126.8]]])
    out, conf = decode_heatmaps(gaussians(pts), "soft")
    assert np.abs(out - pts).max() < 0.6 and np.isfinite(conf).all()


def test_bad_inputs():
    with pytest.raises(ValueError, match="N, L, H, W"):
        decode_heatmaps(np.zeros((68, 128, 128)))
    with pytest.raises(ValueError, match="refine"):
        decode_heatmaps(np.zeros((1, 68, 128, 128)), "bogus")


def test_blur_picks_the_mode_with_the_most_mass():
    """A broad true peak and a taller one-pixel spike elsewhere: the blurred argmax finds the broad one."""
    true = np.array([[[40.3, 70.6]]])
    hm = gaussians(true, peak=0.8)
    hm[0, 0, 100, 20] = 1.0  # spurious spike
    blurred, _ = decode_heatmaps(hm, "soft")
    plain, _ = decode_heatmaps(hm, "soft", blur_sigma=0)
    assert np.abs(blurred - true).max() < 0.1
    assert np.abs(plain - [[[20, 100]]]).max() < 1.0


def test_blur_keeps_the_peak_in_place():
    from facealign_sdk.decode import blur_heatmaps

    hm = gaussians(np.array([[[0.0, 0.0], [64.0, 64.0], [127.0, 90.0]]]))
    out = blur_heatmaps(hm)
    assert out.shape == hm.shape and out.dtype == np.float32
    assert np.unravel_index(out[0, 1].argmax(), (128, 128)) == (64, 64)
    assert np.allclose(out.sum(axis=(-2, -1))[0, 1], hm.sum(axis=(-2, -1))[0, 1], rtol=1e-3)  # kernel sums to 1
    assert np.array_equal(blur_heatmaps(hm, 0), hm)



def test_soft_refinement_averages_pixel_noise():
    """Refinement reads the blurred maps: under i.i.d. pixel noise of 5 % of the peak the points stay
    within 0.07 px on average (refining the raw maps in a 9-px window: 0.12 px)."""
    rng = np.random.default_rng(1)
    pts = rng.uniform(20, 108, (1, 200, 2))
    hm = gaussians(pts) + rng.normal(0, 0.05, (1, 200, 128, 128)).astype(np.float32)
    err = error(decode_heatmaps(hm, "soft")[0], pts)
    assert err.mean() < 0.07 and np.percentile(err, 99) < 0.15


def test_work_arrays_are_not_shared_between_results_or_threads(subpixel_points):
    """The blur reuses per-thread work arrays: returned maps must stay intact, and threads must not mix."""
    from concurrent.futures import ThreadPoolExecutor

    from facealign_sdk.decode import blur_heatmaps

    a_maps, b_maps = gaussians(subpixel_points[:1]), gaussians(subpixel_points[1:2])
    a = blur_heatmaps(a_maps)
    a_copy = a.copy()
    blur_heatmaps(b_maps)
    assert np.array_equal(a, a_copy)
    batches = [gaussians(subpixel_points[i : i + 1]) + 0.01 * i for i in range(3)] * 4
    serial = [decode_heatmaps(hm, "soft")[0] for hm in batches]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda hm: decode_heatmaps(hm, "soft")[0], batches))
    assert all(np.array_equal(s, t) for s, t in zip(serial, threaded))


def whole_map_decode(hm: np.ndarray, refine: str) -> tuple[np.ndarray, np.ndarray]:
    """The decoder as it reads on paper: blur every whole map, argmax, refine on the blurred window."""
    from facealign_sdk.decode import (CONFIDENCE_WINDOW, SOFT_POWER, SOFT_WINDOW, _quadratic_offset,
                                      _soft_offset, _window_values, blur_heatmaps, expected_mass)

    n, lm, h, w = hm.shape
    flat = hm.reshape(n * lm, h, w)
    blurred = blur_heatmaps(flat)
    iy, ix = np.divmod(blurred.reshape(n * lm, -1).argmax(axis=1), w)
    points = np.stack([ix, iy], axis=-1).astype(np.float64)
    if refine == "soft":
        points += _soft_offset(_window_values(blurred, ix, iy, SOFT_WINDOW // 2, edge=True), SOFT_POWER)
    elif refine == "quadratic":
        points += _quadratic_offset(_window_values(blurred, ix, iy, 1, edge=True))
    mass = _window_values(flat, ix, iy, CONFIDENCE_WINDOW // 2).sum(axis=(1, 2))
    conf = np.clip(mass / expected_mass(CONFIDENCE_WINDOW, TARGET_SIGMA), 0.0, 1.0)
    return points.reshape(n, lm, 2), conf.reshape(n, lm).astype(np.float32)


def awkward_maps(size: tuple[int, int] = (128, 128)) -> np.ndarray:
    """Maps that test the window search: peaks at borders and corners, two equal or nearly equal modes far
    apart or close, a broad mode beside a taller narrow one, negative and flat maps, noise."""
    rng = np.random.default_rng(5)
    h, w = size
    maps = []
    for x, y in [(0, 0), (w - 1, h - 1), (0.4, h - 1.3), (w - 1, 3), (5, 60), (64, 1), (40.5, 70.2)]:
        maps.append(gaussians(np.array([[[x, y]]]), max(h, w))[0, 0, :h, :w])
    two = gaussians(np.array([[[20.0, 30.0], [100.0, 90.0]]]), max(h, w))[0, :, :h, :w]
    maps += [two.sum(0), two[0] + 0.999 * two[1], 0.999 * two[0] + two[1], two[0] + 0.5 * two[1]]
    near = gaussians(np.array([[[50.0, 50.0], [63.0, 55.0]]]), max(h, w))[0, :, :h, :w]
    maps += [near.sum(0), near[0] + 0.97 * near[1]]
    broad = gaussians(np.array([[[30.0, 40.0]]]), max(h, w), sigma=8.0)[0, 0, :h, :w]
    spike = np.zeros((h, w), np.float32)
    spike[h * 7 // 10, w * 4 // 5] = 3.0
    maps += [broad + spike, -broad, np.zeros((h, w), np.float32), np.full((h, w), -0.2, np.float32)]
    noisy = [gaussians(rng.uniform(0, 127, (1, 1, 2)), max(h, w))[0, 0, :h, :w] + rng.normal(0, s, (h, w))
             for s in (0.01, 0.05, 0.2, 1.0)]
    maps += noisy + [rng.random((h, w)) for _ in range(3)]
    return np.stack(maps).astype(np.float32)[None]


@pytest.mark.parametrize("refine", ["soft", "quadratic", "none"])
@pytest.mark.parametrize("size", [(128, 128), (130, 126), (64, 64)])
def test_the_window_search_gives_the_whole_map_result(refine, size):
    """Peaks sought in a window around each map's likely peak (where a bound allows it) give exactly the
    points and confidences of blurring the whole maps, for every kind of map (the rest are blurred whole)."""
    hm = awkward_maps(size)
    points, conf = decode_heatmaps(hm, refine)
    ref_points, ref_conf = whole_map_decode(hm, refine)
    assert np.array_equal(points, ref_points) and np.array_equal(conf, ref_conf)


def test_most_network_like_maps_are_decided_in_their_window():
    """The saving is real: single noisy peaks (what a face's maps mostly are) need no whole-map blur, while
    maps whose second mode could win do."""
    from facealign_sdk.decode import _peaks_in_windows

    rng = np.random.default_rng(2)
    pts = rng.uniform(0, 127, (1, 200, 2))
    hm = gaussians(pts) + rng.normal(0, 0.02, (1, 200, 128, 128)).astype(np.float32)
    assert _peaks_in_windows(hm[0], TARGET_SIGMA, SOFT_WINDOW_RADIUS)[0].mean() > 0.95
    two = gaussians(np.array([[[20.0, 30.0], [100.0, 90.0]]]))[0].sum(0, keepdims=True)
    assert not _peaks_in_windows(two, TARGET_SIGMA, SOFT_WINDOW_RADIUS)[0].any()


def test_maps_with_nan_are_left_to_the_whole_map_decode():
    hm = gaussians(np.array([[[40.0, 50.0], [80.0, 20.0]]]))
    hm[0, 1, 100, 100] = np.nan
    from facealign_sdk.decode import _peaks_in_windows

    assert _peaks_in_windows(hm[0], TARGET_SIGMA, SOFT_WINDOW_RADIUS)[0].tolist() == [True, False]
    points, _ = decode_heatmaps(hm, "soft")
    ref, _ = whole_map_decode(hm, "soft")
    assert np.array_equal(points, ref, equal_nan=True)

def rotated_gaussian(centre: tuple[float, float], sigmas: tuple[float, float], angle: float, size: int = 64) -> np.ndarray:
    """One (1, 1, size, size) anisotropic Gaussian of peak 1, its axes turned by ``angle``."""
    y, x = np.mgrid[:size, :size].astype(np.float64)
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * (x - centre[0]) + s * (y - centre[1]), -s * (x - centre[0]) + c * (y - centre[1])
    return np.exp(-0.5 * ((u / sigmas[0]) ** 2 + (v / sigmas[1]) ** 2))[None, None].astype(np.float32)


@pytest.mark.parametrize("angle", [0.0, 0.6, -1.0])
def test_quadratic_refinement_is_exact_for_any_gaussian(angle):
    """The Newton step on the log map, with its cross term, recovers the centre of a tilted, elongated
    Gaussian (DARK's premise) to float32 precision; blurring keeps it a Gaussian."""
    centre = (30.37, 27.81)
    hm = rotated_gaussian(centre, (4.0, 2.0), angle)
    for blur_sigma in (0.0, TARGET_SIGMA):
        pts, _ = decode_heatmaps(hm, "quadratic", blur_sigma=blur_sigma)
        np.testing.assert_allclose(pts[0, 0], centre, atol=2e-3)


def test_quadratic_refinement_leaves_a_flat_or_tiny_peak_on_its_pixel():
    """No proper maximum (a ridge along a whole row, or a map of zeros): the integer argmax stands, nothing
    is NaN."""
    hm = np.zeros((1, 2, 32, 32), np.float32)
    hm[0, 0, 10, :] = 0.5  # argmax: the row's first pixel, where the log map has no curvature along x
    pts, conf = decode_heatmaps(hm, "quadratic", blur_sigma=0)
    np.testing.assert_array_equal(pts[0, 0], [0.0, 10.0])
    np.testing.assert_array_equal(pts[0, 1], [0.0, 0.0])
    assert np.isfinite(conf).all()


@pytest.mark.parametrize("refine", ["quadratic", "soft"])
def test_peak_on_a_border_pixel_is_not_pulled_inwards(refine):
    """At the border the window is mirrored about the border pixel: a peak exactly on a border pixel's
    centre comes back exactly there (zeros outside would pull it inwards)."""
    pts = np.array([[[0.0, 50.0], [127.0, 60.0], [40.0, 0.0], [70.0, 127.0], [0.0, 127.0]]])
    out, _ = decode_heatmaps(gaussians(pts), refine, blur_sigma=0)
    np.testing.assert_allclose(out, pts, atol=1e-3)


def test_confidence_is_the_mass_near_the_peak_over_a_full_targets():
    """Confidence: the mass of the maps as given in the confidence window around the peak, over that of a
    peak-1 target Gaussian; outside the map counts as nothing (a target centred on a corner pixel keeps
    a quarter-plus of it)."""
    from facealign_sdk.decode import CONFIDENCE_WINDOW, expected_mass

    r = np.arange(CONFIDENCE_WINDOW) - CONFIDENCE_WINDOW // 2
    assert expected_mass(CONFIDENCE_WINDOW, TARGET_SIGMA) == pytest.approx(np.exp(-r**2 / (2 * TARGET_SIGMA**2)).sum() ** 2)
    g = np.exp(-np.arange(4) ** 2 / (2 * TARGET_SIGMA**2))
    corner = g.sum() ** 2 / expected_mass(CONFIDENCE_WINDOW, TARGET_SIGMA)
    pts = np.array([[[64.0, 64.0], [0.0, 0.0], [127.0, 127.0]]])
    for peak in (1.0, 0.4):  # not blurred: the blur would move a corner peak's argmax inwards
        _, conf = decode_heatmaps(gaussians(pts, peak=peak), "soft", blur_sigma=0)
        np.testing.assert_allclose(conf[0], [peak, peak * corner, peak * corner], rtol=1e-4)
    # a wider window with a target of the same sigma: still 1; a sharper target of peak 1: less
    _, conf9 = decode_heatmaps(gaussians(pts[:, :1]), "soft", confidence_window=9)
    _, sharp = decode_heatmaps(gaussians(pts[:, :1], sigma=1.5), "soft")
    assert conf9[0, 0] == pytest.approx(1.0, abs=1e-4) and sharp[0, 0] < 0.5


def test_blur_kernel_and_blur_values():
    """A normalised Gaussian truncated at 3 sigma (at least 1 px each side), applied along x and y with
    zeros outside: map by map, nothing bleeds from one map into the next."""
    import cv2

    from facealign_sdk.decode import blur_heatmaps, blur_kernel

    k = blur_kernel(2.0)
    r = np.arange(-6, 7)
    np.testing.assert_allclose(k, np.exp(-r**2 / 8.0) / np.exp(-r**2 / 8.0).sum(), rtol=1e-6)
    assert k.dtype == np.float32 and len(blur_kernel(0.2)) == 3
    rng = np.random.default_rng(4)
    maps = rng.random((2, 3, 20, 16)).astype(np.float32)
    maps[0, 0, -1, :] = 50.0  # a bright bottom row: must not reach the top of the next map
    out = blur_heatmaps(maps, 2.0)
    for m, o in zip(maps.reshape(-1, 20, 16), out.reshape(-1, 20, 16)):
        want = cv2.sepFilter2D(m, -1, k, k, borderType=cv2.BORDER_CONSTANT)
        np.testing.assert_allclose(o, want, atol=1e-5)
    assert blur_heatmaps(np.zeros((0, 4, 8, 8)), 2.0).shape == (0, 4, 8, 8)


def test_large_batches_leave_no_work_arrays_behind(monkeypatch):
    """Work arrays up to SCRATCH_KEEP_BYTES are kept and reused; a batch above it gets fresh ones that go
    with it, and its results equal those of the same maps decoded one by one."""
    import threading

    from facealign_sdk import decode

    monkeypatch.setattr(decode, "_scratch", threading.local())  # none kept from earlier tests
    monkeypatch.setattr(decode, "SCRATCH_KEEP_BYTES", 1 << 20)  # 1 MB: one 3-landmark 64x64 map set is ~0.06 MB
    assert decode.scratch_bytes() == 0  # a thread that has not decoded yet holds nothing
    small = np.random.default_rng(5).random((1, 3, 64, 64), dtype=np.float32)
    decode.decode_heatmaps(small, "soft")
    kept = decode.scratch_bytes()
    assert 0 < kept <= 2 * (1 << 20)
    decode.decode_heatmaps(small[:, :2], "soft")  # smaller: the kept arrays serve it
    assert decode.scratch_bytes() == kept
    crowd = np.repeat(small, 20, axis=0)  # ~1.6 MB of work per array: above the limit
    pts, conf = decode.decode_heatmaps(crowd, "soft")
    assert decode.scratch_bytes() == kept
    ref_pts, ref_conf = decode.decode_heatmaps(small, "soft")
    assert np.array_equal(pts[13], ref_pts[0]) and np.array_equal(conf[13], ref_conf[0])


def _log_quadratic_patch(fx: float, fy: float, cx: float, cy: float, fxy: float = 0.0) -> np.ndarray:
    """(1, 3, 3) patch whose log is ``fx (x - cx)^2 + fy (y - cy)^2 + fxy x y`` at x, y in {-1, 0, 1}."""
    y, x = np.mgrid[-1:2, -1:2].astype(np.float64)
    return np.exp(fx * (x - cx) ** 2 + fy * (y - cy) ** 2 + fxy * x * y)[None]


def test_quadratic_step_is_clipped_to_one_pixel_each_way():
    """A Newton step that lands beyond the patch (a vertex 3 px away) stops at +-1 px in each direction."""
    from facealign_sdk.decode import _quadratic_offset

    for cx, cy in [(3.0, -3.0), (-3.0, 3.0), (0.4, -0.25)]:
        want = np.clip([cx, cy], -1.0, 1.0)
        np.testing.assert_allclose(_quadratic_offset(_log_quadratic_patch(-0.3, -0.3, cx, cy))[0], want, atol=1e-9)


def test_quadratic_step_is_zero_without_a_proper_maximum():
    """A saddle (a maximum along x, a minimum along y) and a minimum have no peak to step to: offset 0."""
    from facealign_sdk.decode import _quadratic_offset

    saddle = _log_quadratic_patch(-0.5, 0.5, 0.3, 0.2)
    minimum = _log_quadratic_patch(0.25, 0.25, 0.3, 0.2)
    np.testing.assert_array_equal(_quadratic_offset(np.concatenate([saddle, minimum])), np.zeros((2, 2)))


def test_default_refinement_and_result_types():
    """``refine`` defaults to the quadratic step; points come back as float64, confidences as float32, whatever
    the maps' dtype; a blur under 1 px still blurs."""
    from facealign_sdk.decode import blur_heatmaps

    hm = gaussians(np.array([[[30.3, 41.7], [90.6, 20.2]]]))
    pts, conf = decode_heatmaps(hm)
    ref_pts, ref_conf = decode_heatmaps(hm, "quadratic")
    assert np.array_equal(pts, ref_pts) and np.array_equal(conf, ref_conf)
    pts64, conf64 = decode_heatmaps(hm.astype(np.float64), "soft")
    assert pts64.dtype == np.float64 and conf64.dtype == np.float32
    assert blur_heatmaps(hm.astype(np.float64), 0).dtype == np.float32
    assert blur_heatmaps(hm.astype(np.float64)).dtype == np.float32
    spike = np.zeros((1, 1, 16, 16), np.float32)
    spike[0, 0, 8, 8] = 1.0
    assert blur_heatmaps(spike, 0.5)[0, 0, 8, 8] < 0.9  # sigma 0.5: the spike spreads to its neighbours
    # the decoder blurs with a small sigma too: a one-pixel spike beside a 2 x 2 block of nearly its height loses
    pair = np.zeros((1, 1, 16, 16), np.float32)
    pair[0, 0, 3, 3] = 1.0
    pair[0, 0, 10:12, 10:12] = 0.9
    pts, _ = decode_heatmaps(pair, "none", blur_sigma=0.8)
    assert pts[0, 0].tolist() in ([10.0, 10.0], [11.0, 10.0], [10.0, 11.0], [11.0, 11.0])


def test_scratch_arrays_up_to_the_limit_are_kept_and_reused(monkeypatch):
    """A work array of exactly SCRATCH_KEEP_BYTES is kept, one byte-step above is not; a request that fits the
    kept array reuses its memory instead of allocating again."""
    import threading

    from facealign_sdk import decode

    monkeypatch.setattr(decode, "_scratch", threading.local())
    monkeypatch.setattr(decode, "SCRATCH_KEEP_BYTES", 4 * 100)
    a = decode._scratch_array("a", (10, 10))
    assert decode.scratch_bytes() == 400
    assert np.shares_memory(decode._scratch_array("a", (10, 10)), a)
    assert np.shares_memory(decode._scratch_array("a", (5, 4)), a)
    decode._scratch_array("b", (101,))
    assert decode.scratch_bytes() == 400


def test_window_search_and_whole_map_blur_share_two_work_arrays(monkeypatch):
    """The windowed search and the whole-map blur draw on the same two per-thread work arrays (the bound of
    ``scratch_bytes``), not two each."""
    import threading

    from facealign_sdk import decode

    monkeypatch.setattr(decode, "_scratch", threading.local())
    hm = awkward_maps()
    assert 0 < decode._peaks_in_windows(hm[0], TARGET_SIGMA, SOFT_WINDOW_RADIUS)[0].mean() < 1  # both paths run
    decode_heatmaps(hm, "soft")
    decode.blur_heatmaps(hm)
    assert sorted(decode._scratch.buffers) == ["blurred", "tall"]


def test_tile_bounds_are_the_weighted_tile_maxima():
    """Each tile's bound: the positive parts of the tile maxima (partial tiles padded with 0) weighted by
    ``_tile_weights`` over the tiles around it, nothing outside the map (per map, none bleeding into the next),
    and never below the blurred map in that tile."""
    import cv2

    from facealign_sdk.decode import PEAK_TILE as t
    from facealign_sdk.decode import _tile_bounds, _tile_weights, blur_heatmaps

    rng = np.random.default_rng(7)
    maps = (rng.random((3, 42, 37)) ** 8 * 4 - 0.1).astype(np.float32)
    maps[1, -1, :] = 9.0  # a bright last row: must not raise the bounds of the next map's first tiles
    bounds, finite = _tile_bounds(maps, TARGET_SIGMA)
    assert finite.all() and bounds.shape == (3, 11, 10)
    padded = np.zeros((3, 44, 40), np.float32)
    padded[:, :42, :37] = maps
    tiles = np.maximum(padded.reshape(3, 11, t, 10, t).max(axis=(2, 4)), 0.0)
    wt = _tile_weights(TARGET_SIGMA, t)
    for got, tile in zip(bounds, tiles):
        want = cv2.sepFilter2D(tile, -1, wt, wt, borderType=cv2.BORDER_CONSTANT)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)
    blurred = np.zeros((3, 44, 40), np.float32)
    blurred[:, :42, :37] = blur_heatmaps(maps)
    assert (bounds >= blurred.reshape(3, 11, t, 10, t).max(axis=(2, 4)) * (1 - 1e-5)).all()


@pytest.mark.parametrize("size", [(128, 130), (130, 128), (48, 200)])
def test_odd_shaped_maps_give_the_whole_map_result(size):
    """Maps with partial tiles on one side only, or too short for the window: the whole-map result, and
    single noisy peaks on maps with room for a window are still decided in it."""
    from facealign_sdk.decode import _peaks_in_windows

    rng = np.random.default_rng(8)
    h, w = size
    pts = rng.uniform(0, min(h, w) - 1, (1, 20, 2))
    hm = gaussians(pts, max(h, w))[:, :, :h, :w] + rng.normal(0, 0.02, (1, 20, h, w)).astype(np.float32)
    for refine in ("soft", "quadratic"):
        points, conf = decode_heatmaps(hm, refine)
        ref_points, ref_conf = whole_map_decode(hm, refine)
        assert np.array_equal(points, ref_points) and np.array_equal(conf, ref_conf)
    if h > 64:
        assert _peaks_in_windows(hm[0], TARGET_SIGMA, SOFT_WINDOW_RADIUS)[0].mean() > 0.9


def test_window_search_takes_peak_chunk_maps_at_a_time(monkeypatch):
    """Maps go to the window search PEAK_CHUNK at a time, each map once and in order."""
    from facealign_sdk import decode

    seen = []
    real = decode._peaks_in_windows

    def spy(maps, sigma, radius):
        seen.append(maps[:, 0, 0].copy())
        return real(maps, sigma, radius)

    monkeypatch.setattr(decode, "_peaks_in_windows", spy)
    hm = np.zeros((1, decode.PEAK_CHUNK + 6, 8, 8), np.float32)
    hm[0, :, 0, 0] = np.arange(decode.PEAK_CHUNK + 6)
    decode_heatmaps(hm, "soft")
    assert [len(s) for s in seen] == [decode.PEAK_CHUNK, 6]
    assert np.array_equal(np.concatenate(seen), hm[0, :, 0, 0])


def test_a_peak_in_a_partial_last_tile_row_is_not_missed():
    """A map 130 px high: its last tile row (rows 128-129) lies below every searched window, so a peak there is
    left to the whole-map blur rather than taken as the window's best row 127."""
    from facealign_sdk.decode import _peaks_in_windows

    hm = np.zeros((1, 1, 130, 128), np.float32)
    hm[0, 0, 128:, 60:68] = 1.0
    assert not _peaks_in_windows(hm[0], TARGET_SIGMA, SOFT_WINDOW_RADIUS)[0][0]
    points, _ = decode_heatmaps(hm, "none")
    assert points[0, 0].tolist() == [63.0, 128.0]


def test_one_undecided_or_louder_map_leaves_the_others_decided_in_their_window():
    """Each map's decision is its own: a map with two far modes, or one a thousand times louder, in the same
    batch does not send the single-peak maps to the whole-map blur."""
    from facealign_sdk.decode import _peaks_in_windows

    rng = np.random.default_rng(9)
    hm = gaussians(rng.uniform(10, 117, (1, 10, 2)))[0] + rng.normal(0, 0.02, (10, 128, 128)).astype(np.float32)
    two = gaussians(np.array([[[20.0, 30.0], [100.0, 90.0]]]))[0].sum(0, keepdims=True)
    loud = 1000 * gaussians(np.array([[[64.0, 64.0]]]))[0]
    done = _peaks_in_windows(np.concatenate([hm, two, loud]), TARGET_SIGMA, SOFT_WINDOW_RADIUS)[0]
    assert done.tolist() == [True] * 10 + [False, True]
