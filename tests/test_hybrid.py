"""HybridMatch's 1-D heatmaps: the profile loss, its ramp, the training-only head, runs with and without it."""

import json

import pytest

from .test_training import annotated_folder  # noqa: F401 - the module-scoped fixture

torch = pytest.importorskip("torch")

SIGMA = 2.5


def gaussian_logits(centre: float, size: int = 256, sigma: float = SIGMA) -> "torch.Tensor":
    """Logits whose softmax is the loss's target for a point at ``centre``."""
    return -0.5 * ((torch.arange(size, dtype=torch.float64) - centre) / sigma) ** 2


def profiles_at(points: "torch.Tensor") -> "torch.Tensor":
    """(N, L, 2) points -> (N, L, 2, 256) profiles centred on them."""
    return torch.stack([torch.stack([torch.stack([gaussian_logits(float(c)) for c in p]) for p in face])
                        for face in points])


def test_marginal_kl_is_least_at_the_subpixel_point():
    from facealign_sdk.training.losses import marginal_kl_loss

    points = torch.tensor([[[100.3, 40.0], [7.6, 200.2]]], dtype=torch.float64)
    exact = profiles_at(points)
    assert marginal_kl_loss(exact, points, SIGMA).item() == pytest.approx(0.0, abs=1e-9)

    def with_x0(centre: float) -> float:
        moved = exact.clone()
        moved[0, 0, 0] = gaussian_logits(centre)
        return marginal_kl_loss(moved, points, SIGMA).item()

    # sub-cell precision: 100.3 beats the nearest bins, and the nearer bin beats the farther one
    assert 0 < with_x0(100.0) < with_x0(101.0)
    # away from the edges the KL of a shift d is the continuous d^2 / (2 sigma^2), here 1 of the 4 terms
    for d in (0.3, 1.0, 3.0):
        assert with_x0(100.3 + d) == pytest.approx(d**2 / (2 * SIGMA**2) / 4, rel=1e-4)
    # the per-point weights scale each landmark's terms (both axes)
    moved = exact.clone()
    moved[0, 0, 1] = gaussian_logits(43.0)
    plain = marginal_kl_loss(moved, points, SIGMA).item()
    assert marginal_kl_loss(moved, points, SIGMA, torch.tensor([[0.0, 1.0]])).item() == pytest.approx(0, abs=1e-9)
    assert marginal_kl_loss(moved, points, SIGMA, torch.tensor([[2.0, 1.0]])).item() == pytest.approx(2 * plain)
    # a wider target than the profile costs too: sigma is part of the target
    assert marginal_kl_loss(exact, points, 2 * SIGMA).item() > 0.1


def test_hybrid_weight_ramps_linearly_then_stays():
    from facealign_sdk.training.landmarks import LandmarkConfig

    cfg = LandmarkConfig(steps=1000, hybrid_1d_weight=2.0, hybrid_1d_ramp=0.5)
    assert [cfg.hybrid_1d_weight_at(s) for s in (0, 100, 250, 500, 501, 999)] == [0.0, 0.4, 1.0, 2.0, 2.0, 2.0]
    assert cfg.model_copy(update={"hybrid_1d_ramp": 0.0}).hybrid_1d_weight_at(0) == 2.0
    # with a time limit the ramp runs on whichever of steps and time is spent first, as the lr schedule does
    timed = cfg.model_copy(update={"time_limit_minutes": 10.0})
    assert timed.hybrid_1d_weight_at(100, 0.0) == 0.4 and timed.hybrid_1d_weight_at(100, 150.0) == 1.0
    assert timed.hybrid_1d_weight_at(100, 300.0) == 2.0
    assert LandmarkConfig().hybrid_1d_weight == 0.0  # off unless asked for
    with pytest.raises(ValueError):
        LandmarkConfig(hybrid_1d_ramp=1.5)


@pytest.mark.parametrize("input_size, width", [(256, 8), (128, 16)])
def test_marginal_head_profiles_have_one_bin_per_crop_pixel(input_size, width):
    from facealign_sdk.nets import LandmarkNet, MarginalHead, NetConfig

    cfg = NetConfig.for_input(input_size, width=width)
    net = LandmarkNet(cfg).eval()
    x = torch.rand(2, 3, input_size, input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = net.features(x)
        assert features.shape == (2, width, input_size // 4, input_size // 4)
        assert MarginalHead(cfg)(features).shape == (2, 68, 2, input_size)
        assert torch.equal(net.head(features), net(x))  # forward is the 2-D head on the same features


def _tiny(folder, run_dir, **settings):
    from facealign_sdk.nets import NetConfig
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig

    base = dict(train=[DataSource(folder=str(folder))], val=None, autoencoder=None, run_dir=str(run_dir),
                net=NetConfig(width=8), batch_size=4, steps=30, checkpoint_every=10, augment=False, lr=3e-3,
                encoder_lr=1e-3, lr_decay_at=1.0, threads=1)
    return LandmarkConfig(**{**base, **settings})


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_landmark_stage_trains_and_resumes_with_the_1d_term(annotated_folder, tmp_path):  # noqa: F811
    from facealign_sdk.training.landmarks import train_landmarks

    run = tmp_path / "run"
    cfg = _tiny(annotated_folder, run, steps=40, hybrid_1d_weight=1.0, hybrid_1d_ramp=0.0)
    train_landmarks(cfg, progress=False)
    log = _log(run)
    assert log[-1]["loss"] < 0.7 * log[0]["loss"]
    assert log[-1]["loss_1d"] < 0.7 * log[0]["loss_1d"]
    saved = torch.load(run / "last.pt", weights_only=True)
    head_keys = {"x.layers.0.weight", "y.layers.4.bias"}
    assert head_keys <= set(saved["marginal_head"])
    # resume one step: the head continues from its saved weights (a fresh one would be ~0.1 away)
    train_landmarks(cfg.model_copy(update={"steps": 41}), progress=False)
    assert [r["step"] for r in _log(run)] == [10, 20, 30, 40, 41]
    resumed = torch.load(run / "last.pt", weights_only=True)["marginal_head"]
    moved = max(float((resumed[k] - saved["marginal_head"][k]).abs().max()) for k in resumed)
    assert 0 < moved < 0.02


def test_option_off_leaves_the_run_as_it_was(annotated_folder, tmp_path):  # noqa: F811
    from facealign_sdk.errors import InputError
    from facealign_sdk.nets import LandmarkNet
    from facealign_sdk.training.landmarks import train_landmarks

    run = tmp_path / "run"
    cfg = _tiny(annotated_folder, run, steps=2, checkpoint_every=2)
    train_landmarks(cfg, progress=False)
    state = torch.load(run / "last.pt", weights_only=True)
    assert set(state) == {"net", "opt", "step", "best_nme", "train_seconds", "config"}
    assert list(state["net"]) == list(LandmarkNet(cfg.net).state_dict())
    trainable = sum(1 for p in LandmarkNet(cfg.net).parameters() if p.requires_grad)
    assert sum(len(g["params"]) for g in state["opt"]["param_groups"]) == trainable
    assert "loss_1d" not in _log(run)[-1]
    # the option cannot be switched on in a run that trained without it
    with pytest.raises(InputError, match="hybrid_1d_weight 0.0 -> 1.0"):
        train_landmarks(cfg.model_copy(update={"hybrid_1d_weight": 1.0}), progress=False)


def test_init_model_and_release_with_the_1d_head(annotated_folder, tiny_model, tmp_path, capsys):  # noqa: F811
    """A released model starts a run with the option on (the head starts fresh), and the release of that run
    holds the network's tensors only."""
    from safetensors.torch import load_file

    from facealign_sdk.backends.torch_backend import load_network
    from facealign_sdk.model import WEIGHTS, load_manifest
    from facealign_sdk.nets import LandmarkNet
    from facealign_sdk.training.landmarks import train_landmarks
    from facealign_sdk.training.release import release_model

    run = tmp_path / "run"
    cfg = _tiny(annotated_folder, run, init_model=str(tiny_model), batch_size=2, steps=1, checkpoint_every=1,
                lr=0.0, encoder_lr=0.0, hybrid_1d_weight=1.0)
    train_landmarks(cfg, progress=False)
    assert "initialised from model" in capsys.readouterr().out
    state = torch.load(run / "last.pt", weights_only=True)
    reference = load_network(tiny_model, load_manifest(tiny_model)).state_dict()
    assert torch.equal(state["net"]["head.weight"], reference["head.weight"])
    assert state["marginal_head"]
    out = tmp_path / "released"
    release_model(run / "last.pt", out, "hybrid", [])
    assert set(load_file(str(out / WEIGHTS))) == set(LandmarkNet(cfg.net).state_dict())
    assert load_network(out, load_manifest(out)).config == cfg.net


def test_the_hybrid_ablation_config_changes_only_the_1d_term():
    from facealign_sdk.training.landmarks import LandmarkConfig

    from .conftest import REPO

    def settings(name):
        return LandmarkConfig.model_validate_json((REPO / "configs" / name).read_text()).model_dump()

    base, hybrid = settings("wild_lm8_laplacekl.json"), settings("wild_lm9_hybrid.json")
    changed = {k for k in base if base[k] != hybrid[k]}
    # init_model: the session-7 release that run started from (`git archive 324d083 models/fabrec-scaf-w32`),
    # since models/ now holds the weights that run produced
    assert changed == {"run_dir", "hybrid_1d_weight", "hybrid_1d_ramp", "init_model"}
    assert hybrid["hybrid_1d_weight"] > 0
