"""HeatmapCodec: one object encodes targets, decodes heatmaps and scales heatmap <-> crop, with the
parameters of the manifest (defaults for manifests that have none)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facealign_sdk import decode
from facealign_sdk.codec import CodecSpec, HeatmapCodec
from facealign_sdk.model import load_manifest
from facealign_sdk.resources import models_root


def test_a_manifest_without_codec_gets_the_training_values(tmp_path):
    """A manifest without ``codec`` (written before it existed) decodes with the codec training validates with;
    the released model's differs from it only in the blur its release chose (``train release --blur-sigma``)."""
    data = json.loads((models_root() / "fabrec-scaf-w32" / "manifest.json").read_text())
    released = data.pop("codec")
    (tmp_path / "manifest.json").write_text(json.dumps(data))
    codec = load_manifest(tmp_path).heatmap_codec()
    assert (codec.sigma, codec.blur_sigma, codec.soft_window, codec.soft_power, codec.confidence_window) == (
        3.5, 3.5, 15, 8.0, 7)
    assert (codec.input_size, codec.heatmap_size) == (256, 128)
    defaults = {"sigma": codec.sigma, "blur_sigma": codec.blur_sigma, "soft_window": codec.soft_window,
                "soft_power": codec.soft_power, "confidence_window": codec.confidence_window}
    assert {k: v for k, v in released.items() if k != "blur_sigma"} == {k: v for k, v in defaults.items()
                                                                       if k != "blur_sigma"}
    assert 0 <= released["blur_sigma"] <= codec.blur_sigma


@pytest.mark.parametrize("name, blur", [("fabrec-scaf-w32", 1.75), ("fabrec-scaf-w16-lite", 0.0)])
def test_released_models_decode_with_the_blur_measured_for_them(name, blur):
    """The blur each release chose on the validation sets (cards, session 15): a manifest reverted by accident
    would silently decode differently from what the cards report."""
    assert load_manifest(models_root() / name).heatmap_codec().blur_sigma == blur


def test_decode_is_the_decoder_with_the_codec_parameters():
    rng = np.random.default_rng(0)
    maps = rng.random((2, 5, 32, 32)).astype(np.float32)
    codec = HeatmapCodec(input_size=64, heatmap_size=32)
    for refine in decode.REFINE_MODES:
        for blur in (True, False):
            got = codec.decode(maps, refine, blur)
            want = decode.decode_heatmaps(maps, refine, blur_sigma=decode.BLUR_SIGMA if blur else 0.0,
                                          sigma=decode.TARGET_SIGMA * 32 / 128)
            np.testing.assert_array_equal(got[0], want[0])
            np.testing.assert_array_equal(got[1], want[1])
    other = HeatmapCodec(input_size=64, heatmap_size=32, soft_window=5, confidence_window=3)
    assert not np.array_equal(other.decode(maps)[1], codec.decode(maps)[1])
    # every manifest parameter reaches the decoder, not only the defaults
    custom = HeatmapCodec(input_size=64, heatmap_size=32, soft_window=7, soft_power=2.0, confidence_window=5,
                          sigma=2.0, blur_sigma=1.5)
    got = custom.decode(maps, "soft", True)
    want = decode.decode_heatmaps(maps, "soft", soft_window=7, soft_power=2.0, confidence_window=5, sigma=2.0 / 4,
                                  blur_sigma=1.5)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])


def test_training_targets_are_unit_gaussians_at_the_points():
    """Peak 1 at the point, exp(-d^2 / (2 sigma^2)) around it, separable in x and y, in the points' dtype."""
    torch = pytest.importorskip("torch")
    from facealign_sdk.codec import gaussian_heatmaps

    points = torch.tensor([[[10.0, 20.0], [3.5, 7.25]]], dtype=torch.float64)
    maps = gaussian_heatmaps(points, 32, sigma=2.5)
    assert maps.shape == (1, 2, 32, 32) and maps.dtype == torch.float64
    assert maps[0, 0, 20, 10] == 1.0 and torch.argmax(maps[0, 0]).item() == 20 * 32 + 10
    yy, xx = np.mgrid[0:32, 0:32]
    for k, (x, y) in enumerate(points[0].tolist()):
        want = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 2.5**2))
        np.testing.assert_allclose(maps[0, k].numpy(), want, rtol=1e-12, atol=1e-15)


def test_encode_then_decode_gives_the_points_back():
    pytest.importorskip("torch")
    codec = HeatmapCodec(input_size=256, heatmap_size=128)
    points = np.array([[[40.3, 100.7], [128.0, 128.0], [201.25, 30.5]]])
    targets = codec.encode(points).numpy()
    assert targets.shape == (1, 3, 128, 128) and targets.max() <= 1.0
    decoded, confidence = codec.decode(targets, "soft")
    np.testing.assert_allclose(codec.to_crop(decoded), points, atol=0.05)
    assert (confidence > 0.95).all()


def test_target_sigma_scales_with_the_map_as_training_did():
    assert HeatmapCodec(input_size=256, heatmap_size=128).target_sigma == 3.5
    assert HeatmapCodec(input_size=256, heatmap_size=64).target_sigma == 1.75


def test_codec_for_a_64_px_map_scales_every_pixel_parameter():
    """A 128 -> 64 network's codec: targets, blur and windows cover the share of the face they cover at 128, and a
    target decodes with confidence 1 (the confidence's reference Gaussian is the target's, not a 128-px map's)."""
    pytest.importorskip("torch")
    assert HeatmapCodec.for_sizes(256, 128) == HeatmapCodec(input_size=256, heatmap_size=128)  # the released model's
    codec = HeatmapCodec.for_sizes(128, 64)
    assert (codec.target_sigma, codec.blur_sigma, codec.soft_window, codec.confidence_window) == (1.75, 1.75, 9, 5)
    points = np.array([[[20.3, 50.7], [64.0, 64.0], [100.25, 15.5]]])
    decoded, confidence = codec.decode(codec.encode(points).numpy(), "soft")
    np.testing.assert_allclose(codec.to_crop(decoded), points, atol=0.05)
    assert (confidence > 0.95).all()  # against a 128-px map's sigma-3.5 Gaussian it would be about 0.66


def test_crop_scaling_convention():
    codec = HeatmapCodec(input_size=256, heatmap_size=128)
    assert np.allclose(codec.to_crop([[0.0, 0.0]]), [[0.5, 0.5]])  # heatmap pixel 0 covers crop pixels 0 and 1
    pts = np.array([[3.0, 7.5], [127.0, 0.0]])
    np.testing.assert_allclose(codec.from_crop(codec.to_crop(pts)), pts)


def test_codec_sizes_and_float64_coordinates():
    small = HeatmapCodec.for_sizes(128, 64)
    assert (small.input_size, small.heatmap_size, small.scale) == (128, 64, 2.0)
    codec = HeatmapCodec(input_size=256, heatmap_size=128)
    for convert in (codec.from_crop, codec.to_crop):  # float32 input loses no precision
        assert convert(np.float32([[100.3, 7.1]])).dtype == np.float64
    np.testing.assert_allclose(codec.from_crop([[100.3, 7.1]]), [[49.9, 3.3]])


def test_manifest_codec_is_read_strictly(tmp_path):
    from facealign_sdk.model import ModelError

    folder = tmp_path / "m"
    folder.mkdir()
    doc = json.loads((models_root() / "fabrec-scaf-w32" / "manifest.json").read_text())
    doc["codec"] = {"soft_window": 9}
    (folder / "manifest.json").write_text(json.dumps(doc))
    assert load_manifest(folder).heatmap_codec().soft_window == 9
    doc["codec"] = {"soft_windw": 9}
    (folder / "manifest.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="soft_windw"):
        load_manifest(folder)
    assert CodecSpec().soft_window == 15


@pytest.mark.parametrize("blur_sigma", [1.75, 0.0])
def test_decode_graph_module_matches_numpy(blur_sigma):
    """The decode graph's module decodes as numpy does, with the blur and without (a release may choose none)."""
    torch = pytest.importorskip("torch")
    codec = HeatmapCodec(input_size=256, heatmap_size=64, soft_window=9, blur_sigma=blur_sigma)
    maps = np.random.default_rng(1).random((2, 4, 64, 64)).astype(np.float32)
    with torch.no_grad():
        points, scores = codec.decoder_module(4)(torch.from_numpy(maps))
    want_points, want_scores = codec.decode(maps, "soft")
    np.testing.assert_allclose(points.numpy(), want_points, atol=1e-3)
    np.testing.assert_allclose(scores.numpy(), want_scores, atol=1e-4)
