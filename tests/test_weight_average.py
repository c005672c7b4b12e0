"""The weight average (``weight_average_decay``): its update rule, and runs that validate, resume and release it."""

import json

import pytest

from .test_training import annotated_folder  # noqa: F401 - the module-scoped fixture

torch = pytest.importorskip("torch")


def test_the_average_follows_the_weights_with_a_rising_decay():
    from facealign_sdk.training.averaging import WeightAverage

    net = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    average = WeightAverage(net, decay=0.9)
    assert average.current_decay() == pytest.approx(0.1)  # (1 + 0) / (10 + 0): the first update mostly replaces
    with torch.no_grad():
        net[0].weight.fill_(3.0)
    net[1].num_batches_tracked.fill_(7)
    average.update(net)
    assert torch.allclose(average.state["0.weight"], torch.full((1, 2), 0.1 * 1.0 + 0.9 * 3.0))
    assert int(average.state["1.num_batches_tracked"]) == 7  # integer buffers are copied
    for _ in range(200):
        average.update(net)
    assert average.current_decay() == 0.9  # the warm-up ends at the decay asked for
    assert torch.allclose(average.state["0.weight"], torch.full((1, 2), 3.0), atol=1e-6)
    # the average is a copy: the network's own weights stay where the optimiser put them
    with torch.no_grad():
        net[0].weight.fill_(-5.0)
    assert float(average.state["0.weight"][0, 0]) == pytest.approx(3.0)
    other = average.copy_to(torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1)))
    assert torch.equal(other[0].weight, average.state["0.weight"])
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, decay=1.0)
    with pytest.raises(ValueError, match="other tensors"):
        WeightAverage(net, decay=0.9, state={"0.weight": torch.zeros(1, 2)})


def _log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_a_run_validates_resumes_and_releases_the_average(annotated_folder, tmp_path):  # noqa: F811
    from facealign_sdk.errors import InputError
    from facealign_sdk.nets import NetConfig
    from facealign_sdk.training.data import load_annotated
    from facealign_sdk.training.landmarks import DataSource, LandmarkConfig, load_trained, train_landmarks, validate

    run = tmp_path / "run"
    cfg = LandmarkConfig(train=[DataSource(folder=str(annotated_folder))], val=str(annotated_folder),
                         autoencoder=None, run_dir=str(run), net=NetConfig(width=8), batch_size=4, steps=30,
                         checkpoint_every=10, augment=False, lr=3e-3, encoder_lr=1e-3, lr_decay_at=1.0, threads=1,
                         weight_average_decay=0.8)
    train_landmarks(cfg, progress=False)
    log = _log(run)
    assert log[-1]["loss"] < 0.7 * log[0]["loss"]
    state = torch.load(run / "last.pt", weights_only=True)
    assert state["weight_average_updates"] == 30
    moved = max(float((state["weight_average"][k] - state["net"][k]).abs().max()) for k in state["net"]
                if state["net"][k].is_floating_point())
    assert moved > 1e-4  # the average is not the raw weights
    # the logged validation NME is the average's, and the average is what a release of last.pt takes
    averaged = load_trained(run / "last.pt")
    assert torch.equal(averaged.state_dict()["head.weight"], state["weight_average"]["head.weight"])
    items = load_annotated(str(annotated_folder), 68, progress=False)
    assert validate(averaged, items) == pytest.approx(log[-1]["val_nme_fixed_box_pct"], abs=6e-4)
    best = torch.load(run / "best.pt", weights_only=True)
    assert best["val_nme"] == pytest.approx(min(r["val_nme_fixed_box_pct"] for r in log), abs=6e-4)
    # resume: the average continues from its saved state and count
    train_landmarks(cfg.model_copy(update={"steps": 31}), progress=False)
    assert torch.load(run / "last.pt", weights_only=True)["weight_average_updates"] == 31
    # the option cannot be switched on (or off) in a run that trained otherwise
    with pytest.raises(InputError, match="weight_average_decay 0.8 -> None"):
        train_landmarks(cfg.model_copy(update={"weight_average_decay": None, "steps": 32}), progress=False)
