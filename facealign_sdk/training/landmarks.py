"""Stage 2: landmark heatmaps with ITLs (+ SCAF skips) on a frozen generator.

SCAF schedule: ITLs, skips and head (``lr``) are trained jointly with the encoder
(``encoder_lr``) from the start. Targets are Gaussians of sigma 7 px at 256
(3.5 at the 128 heatmap). The loss is MSE weighted by ``1 + foreground_weight * target``:
plain MSE sits for hundreds of steps on the all-zero solution (the peaks are a tiny share of
the pixels); weighting the peaks gets past it at once (ytf68/val, width 16, 200 steps: NME
30 % vs 133 %). ``laplace_kl_weight`` adds the LaplaceKL term (:func:`.losses.laplace_kl_loss`);
``hybrid_1d_weight`` adds HybridMatch's 1-D profiles (:func:`.losses.marginal_kl_loss`) from a training-only
:class:`~facealign_sdk.nets.MarginalHead`, which the run's ``last.pt`` keeps (``marginal_head``) and
``best.pt`` and a release do not.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from tqdm import tqdm

from .. import geometry
from ..codec import HeatmapCodec
from ..errors import InputError
from ..metrics import nme
from ..model import NETWORK_CONVENTION
from ..nets import LandmarkNet, MarginalHead, NetConfig
from .autoencoder import load_autoencoder
from .averaging import WeightAverage
from .checkpoint import CheckpointError, RunDir, check_finite_loss, load_checkpoint, save_checkpoint
from .conventions import FittedConvention, ModelIdentity, shift_to
from .device import training_device
from .batches import LandmarkBatches, batch_stream
from .data import Annotated, LandmarkAugment, first_by_hash, landmark_sample, load_annotated
from .losses import laplace_kl_loss, marginal_kl_loss

log = logging.getLogger("facealign_sdk")


class DataSource(BaseModel):
    """An annotated folder; ``held_out`` excludes a deterministic share of it (for later evaluation)."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error, not silently ignored

    folder: str
    held_out: float | None = Field(None, ge=0, lt=1, description="share of the folder left out (by file name hash)")
    max_faces: int | None = Field(None, ge=1, description="train on only this many of the faces left, chosen by "
                                  "name hash (few-label runs, e.g. 50)")
    weight: float = Field(1.0, gt=0, description="sampling share relative to the other sources (per source, not per face)")
    flip_probability: float | None = Field(
        None, ge=0, le=1, description="mirror augmentation for this source (None: the stage's flip_probability)")
    turned_jaw_weight: float = Field(
        1.0, ge=0, le=1, description="loss weight of the jaw points on strongly turned faces (sets whose jaw "
        "follows the 3-D contour, e.g. AFLW2000-3D)")
    convention: str | None = Field(
        None, description="the annotation convention of this set, a name in the run's conventions file, or none "
        "for pseudo-labels of the model the file was fitted on (its own points): the points are moved into the "
        "run's target_convention (None: taken as they are)")


def _move_into_target_convention(cfg: "LandmarkConfig", per_source: list[list[Annotated]],
                                 start_model: ModelIdentity | None = None) -> None:
    """Shift, in place, the points of every source that names a convention into ``cfg.target_convention``.

    A conventions file fitted on another model than the one the run starts from (``start_model``, its
    ``init_model``) is used with a warning, not refused: the shift between two named conventions is the
    difference of their offsets, in which much of the fitted model's own bias cancels, but a source taken as
    the model's own points (``none``) moves by the fitted model's offsets. Files without the record load as before."""
    named = [src.convention for src in cfg.train if src.convention is not None]
    if not named:
        return
    if cfg.conventions is None:
        raise InputError(f"sources name conventions ({', '.join(named)}) but the run has no conventions file")
    try:
        fitted = TypeAdapter(dict[str, FittedConvention]).validate_json(Path(cfg.conventions).read_bytes())
    except (OSError, ValueError) as exc:
        raise InputError(f"{cfg.conventions}: not a conventions file ({exc})") from None
    for name in [*named, cfg.target_convention]:
        if name not in fitted and name != NETWORK_CONVENTION:
            raise InputError(f"{cfg.conventions}: no convention {name!r} (it has: {', '.join(sorted(fitted))})")
        if name in fitted and len(fitted[name].offsets) != cfg.net.num_landmarks:
            # a file fitted on a model with another scheme: its offsets would broadcast silently
            raise InputError(f"{cfg.conventions}: convention {name!r} has {len(fitted[name].offsets)} offsets, the "
                             f"run's network {cfg.net.num_landmarks} landmarks")
    others = sorted({str(fitted[name].model) for name in [*named, cfg.target_convention]
                     if name in fitted and fitted[name].model not in (None, start_model)})
    if others and start_model is not None:
        log.warning("%s was fitted on model %s, this run starts from %s: its offsets describe the other model's "
                    "points (refit it: facealign train conventions --model %s --json ...)",
                    cfg.conventions, ", ".join(others), start_model, cfg.init_model)

    def offsets(name: str) -> np.ndarray:
        # "none": points that are the fitted model's own (its pseudo-labels): no offset from its points
        if name == NETWORK_CONVENTION:
            return np.zeros((cfg.net.num_landmarks, 2))
        return np.asarray(fitted[name].offsets)

    target = offsets(cfg.target_convention)
    for src, items in zip(cfg.train, per_source):
        if src.convention is not None and src.convention != cfg.target_convention:
            for item in items:
                item.points = shift_to(item.points, offsets(src.convention), target)
            print(f"{src.folder}: points moved from convention {src.convention} into {cfg.target_convention}")


class LandmarkConfig(BaseModel):
    """Settings of the landmark stage."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error, not silently ignored

    train: list[DataSource] = Field(
        min_length=1,
        default_factory=lambda: [
            DataSource(folder="../shared/data/ytf68/train"),
            DataSource(folder="../shared/data/infanface/train", held_out=0.25),
        ]
    )
    val: str | None = "../shared/data/ytf68/val"
    val_images: int = Field(128, ge=1)
    autoencoder: str | None = "runs/ae128"
    autoencoder_parts: list[Literal["encoder", "generator"]] = Field(
        default_factory=lambda: ["encoder", "generator"],
        description="what the autoencoder initialises (compared in the model card's pretraining ablation)")
    init_model: str | None = Field(None, description="model folder to warm-start from (e.g. a released model)")
    conventions: str | None = Field(
        None, description="JSON of fitted annotation conventions (facealign train conventions --json), which the "
        "sources' convention names refer to; fitted on another model than init_model, it is used with a warning")
    target_convention: str = Field("300w", description="the convention every source with a convention is moved "
                                   "into, so that the network learns one")
    run_dir: str = "runs/lm"
    net: NetConfig = Field(default_factory=lambda: NetConfig(width=32))
    batch_size: int = Field(16, ge=1)
    steps: int = Field(4000, ge=1)
    lr: float = Field(1e-3, ge=0)
    encoder_lr: float = Field(1e-4, ge=0)
    generator_lr: float | None = Field(
        None, gt=0, description="also train the generator's weights at this rate (None: frozen, as in 3FabRec); "
        "its BatchNorm statistics stay fixed either way")
    lr_decay_at: float = Field(0.75, ge=0, description="divide both lrs by 10 after this share of the steps")
    foreground_weight: float = Field(20.0, ge=0, description="extra MSE weight on the Gaussian peaks (0: plain MSE)")
    laplace_kl_weight: float = Field(
        0.0, ge=0, description="weight of the LaplaceKL term added to the MSE (0: off); the MSE stays because the "
        "decoder's confidence reads the Gaussian peak height the MSE trains")
    laplace_scale: float = Field(1.0, gt=0, description="LaplaceKL target scale (heatmap pixels)")
    laplace_temperature: float = Field(0.1, gt=0, description="LaplaceKL softmax temperature on the heatmaps")
    hybrid_1d_weight: float = Field(
        0.0, ge=0, description="weight of HybridMatch's 1-D heatmap term (0: off): per landmark an x- and a "
        "y-profile at the crop's resolution from a training-only head on the 2-D head's features, whose finer "
        "bins ask for sub-cell precision; the released model keeps the 2-D maps only")
    hybrid_1d_ramp: float = Field(
        0.5, ge=0, le=1, description="share of the steps over which the 1-D weight rises linearly from 0 to "
        "hybrid_1d_weight (0: full weight from the first step); the 2-D maps lead early training")
    hybrid_1d_sigma: float = Field(
        2.5, gt=0, description="sigma of the 1-D Gaussian targets, in crop pixels (RTMPose's SimCC codec: "
        "4.9-5.66 bins at 2 bins per pixel)")
    checkpoint_every: int = Field(200, ge=1)
    weight_average_decay: float | None = Field(
        None, gt=0, lt=1, description="validate, keep and release an exponential moving average of the weights "
        "with this decay per step (e.g. 0.998: about the last 500 steps) instead of the raw weights (None: off)")
    augment: bool = True
    flip_probability: float = Field(
        0.5, ge=0, le=1,
        description="mirror augmentation (with landmark index swap); 0 when the data's annotation convention is "
        "not mirror-symmetric: ytf68's x coordinates sit ~0.9 px right of the mirror-averaged estimate",
    )
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    device: str = Field("cpu", description="torch device to train on (cpu, cuda, cuda:1)")
    workers: int = Field(0, ge=0, description="processes that cut and augment the crops ahead of the network (0: "
                         "the training process does it between steps); on a GPU machine most of its CPU cores")
    amp: bool = Field(False, description="bf16 autocast for the network on CUDA (the losses stay fp32)")
    time_limit_minutes: float | None = Field(
        None, gt=0, description="wall-clock budget of the run (summed over resumes): the schedule runs on whichever of "
        "steps and time is spent first, so lr_decay_at and hybrid_1d_ramp also apply to the time, and the run stops "
        "with a checkpoint when it is spent (a GPU machine lent for minutes)")

    @model_validator(mode="after")
    def _amp_needs_cuda(self) -> "LandmarkConfig":
        if self.amp and not self.device.startswith("cuda"):
            raise ValueError(f"amp (bf16 autocast) is for CUDA devices, not {self.device!r}")
        return self

    def progress(self, step: int, seconds: float) -> float:
        """The share of the run's budget spent after ``step`` steps and ``seconds`` of training (1: done)."""
        time_share = seconds / (60 * self.time_limit_minutes) if self.time_limit_minutes else 0.0
        return max(step / self.steps, time_share)

    def hybrid_1d_weight_at(self, step: int, seconds: float = 0.0) -> float:
        """The 1-D term's weight after ``step`` steps and ``seconds`` of training: 0 at the start, then linearly up
        to ``hybrid_1d_weight`` at ``hybrid_1d_ramp`` of the run (:meth:`progress`: steps or time), constant after."""
        if self.hybrid_1d_ramp == 0:
            return self.hybrid_1d_weight
        return self.hybrid_1d_weight * min(1.0, self.progress(step, seconds) / self.hybrid_1d_ramp)


def init_from_autoencoder(net: LandmarkNet, ae_state: dict[str, torch.Tensor],
                          parts: tuple[str, ...] = ("encoder", "generator")) -> int:
    """Copy matching weights of the named parts (``encoder``, ``generator``) from an autoencoder (e.g. trained
    at 128); returns how many tensors were copied."""
    own = net.state_dict()
    matched = {k: v for k, v in ae_state.items()
               if k.split(".", 1)[0] in parts and k in own and own[k].shape == v.shape}
    net.load_state_dict(matched, strict=False)
    return len(matched)


def image_batch(crops: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """(N, S, S, 3) RGB uint8 crops -> the network's (N, 3, S, S) float input in [0, 1] on ``device`` (the crops
    travel there as uint8, a quarter of the bytes)."""
    return torch.from_numpy(np.ascontiguousarray(crops)).to(device).permute(0, 3, 1, 2).contiguous().float().div_(255.0)


def heatmap_batch(crops: np.ndarray, points: np.ndarray, cfg: NetConfig, device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, S, S, 3) RGB uint8 crops and (N, L, 2) crop-pixel points -> (image tensor, target heatmaps), both made
    on ``device`` (the targets are computed there)."""
    return image_batch(crops, device), codec_of(cfg).encode(points, device)


def codec_of(cfg: NetConfig) -> HeatmapCodec:
    """The heatmap codec training uses (the release records its parameters in the manifest)."""
    return HeatmapCodec.for_sizes(cfg.input_size, cfg.heatmap_size)


def heatmap_loss(
    pred: torch.Tensor, target: torch.Tensor, foreground_weight: float, point_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Foreground-weighted MSE (x100 for readable numbers); ``point_weights`` (N, L) scale each heatmap."""
    err = (pred - target) ** 2 * (1 + foreground_weight * target)
    if point_weights is not None:
        err = err * point_weights[:, :, None, None]
    return torch.mean(err) * 100


def point_weight_batch(items: list[Annotated]) -> torch.Tensor | None:
    """(N, L) per-point loss weights of a batch, or None when every weight is 1.

    The weights keep the annotation's point order also for mirrored samples: that is right for the
    jaw weights of :func:`.data.contour_weights`, which are the same for both sides of the face.
    """
    if all(it.point_weights is None for it in items):
        return None
    rows = [it.point_weights if it.point_weights is not None else np.ones(len(it.points), np.float32) for it in items]
    return torch.from_numpy(np.stack(rows).astype(np.float32))


def _device_of(net: torch.nn.Module) -> torch.device:
    return next(net.parameters()).device


@torch.no_grad()
def validate(net: LandmarkNet, items: list[Annotated], batch: int = 32) -> float:
    """Mean NME (%) with crops from the point-derived box (fixed-box mode)."""
    net.eval()
    cfg = net.config
    preds, gts = [], []
    for i in range(0, len(items), batch):
        chunk = items[i : i + batch]
        crops = [landmark_sample(it, cfg.input_size, None)[0] for it in chunk]
        codec = codec_of(cfg)
        pts, _ = codec.decode(net(image_batch(np.stack(crops), _device_of(net))).cpu().numpy(), "soft")
        for it, p in zip(chunk, pts):
            crop_pts = codec.to_crop(p)
            frame = geometry.frame_from_box(geometry.box_from_points(it.points))
            preds.append(geometry.crop_to_image(crop_pts, frame, cfg.input_size))
            gts.append(it.points)
    net.train()
    return float(nme(np.stack(preds), np.stack(gts)).mean() * 100)


def _optimizer(net: LandmarkNet, cfg: LandmarkConfig, head: MarginalHead | None = None
               ) -> tuple[torch.optim.Adam, list[float]]:
    """Adam with one parameter group per learning rate: encoder, new layers (with the 1-D ``head``, if any),
    and the generator if trained."""
    if cfg.generator_lr is not None:
        for p in net.generator.parameters():
            p.requires_grad_(True)
    groups = {"encoder": (list(net.encoder.parameters()), cfg.encoder_lr)}
    if cfg.generator_lr is not None:
        groups["generator"] = (list(net.generator.parameters()), cfg.generator_lr)
    taken = {id(p) for params, _ in groups.values() for p in params}
    new = [p for p in net.parameters() if p.requires_grad and id(p) not in taken]
    groups["new"] = (new + ([] if head is None else list(head.parameters())), cfg.lr)
    opt = torch.optim.Adam([{"params": params, "lr": lr} for params, lr in groups.values()])
    return opt, [lr for _, lr in groups.values()]


def _weight_average(net: LandmarkNet, cfg: LandmarkConfig, state: dict | None, run: RunDir
                    ) -> WeightAverage | None:
    """The run's weight average (``weight_average_decay``), resumed from ``state`` when it holds one."""
    if cfg.weight_average_decay is None:
        return None
    if state is None:
        return WeightAverage(net, cfg.weight_average_decay)
    if "weight_average" not in state:
        raise CheckpointError(f"{run.checkpoint}: holds no weight average to resume the weight_average_decay run with")
    try:
        return WeightAverage(net, cfg.weight_average_decay, int(state["weight_average_updates"]),
                             state["weight_average"])
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"{run.checkpoint}: its weight average does not fit this network ({exc})") from None


def train_landmarks(cfg: LandmarkConfig, progress: bool = True) -> dict[str, float]:
    """Train (or resume) the landmark stage; returns the last logged record."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = training_device(cfg.device)
    run = RunDir(cfg.run_dir)
    state = run.resume(cfg)
    # the starting weights before the data: a wrong path fails in seconds, not after loading every image
    torch.manual_seed(cfg.seed)
    net = LandmarkNet(cfg.net)
    start_model = None
    if state is None and cfg.init_model:
        from ..backends.torch_backend import load_network
        from ..model import load_manifest

        model_dir = Path(cfg.init_model)
        manifest = load_manifest(model_dir)
        start_model = ModelIdentity.of(manifest)
        model = load_network(model_dir, manifest)
        if model.config != cfg.net:
            raise InputError(f"{model_dir}: its network ({model.config.model_dump()}) is not this run's net "
                             f"({cfg.net.model_dump()}): set net to the model's to start from it")
        net.load_state_dict(model.state_dict())
        print(f"initialised from model {model_dir}")
    elif state is None and cfg.autoencoder:
        n = init_from_autoencoder(net, load_autoencoder(cfg.autoencoder), tuple(cfg.autoencoder_parts))
        print(f"initialised {n} tensors from autoencoder {cfg.autoencoder}")
    per_source = [first_by_hash(load_annotated(src.folder, cfg.net.num_landmarks, src.held_out, False,
                                               src.turned_jaw_weight, progress), src.max_faces)
                  for src in cfg.train]
    for src, got in zip(cfg.train, per_source):
        if not got:
            raise InputError(f"{src.folder}: no annotated images left for training (held_out {src.held_out})")
    _move_into_target_convention(cfg, per_source, start_model)
    items = [it for got in per_source for it in got]
    source_of = np.concatenate([np.full(len(got), k) for k, got in enumerate(per_source)])
    # each source gets its share of the samples whatever its size
    shares = np.array([src.weight for src in cfg.train]) / sum(src.weight for src in cfg.train)
    sample_p = shares[source_of] / np.array([len(got) for got in per_source])[source_of]
    val_items = load_annotated(cfg.val, cfg.net.num_landmarks, progress=progress)[: cfg.val_images] if cfg.val else []
    net.to(device)
    # the 1-D head is the run's, never the model's: it starts fresh also from init_model or an autoencoder
    head = MarginalHead(cfg.net).to(device) if cfg.hybrid_1d_weight > 0 else None
    opt, base_lrs = _optimizer(net, cfg, head)
    step, best = 0, float("inf")
    if state:
        net.load_state_dict(state["net"])
        if head is not None:
            if "marginal_head" not in state:
                raise CheckpointError(f"{run.checkpoint}: holds no 1-D head (marginal_head) to resume the "
                                      "hybrid_1d_weight run with")
            head.load_state_dict(state["marginal_head"])
        opt.load_state_dict(state["opt"])
        step, best = state["step"], state["best_nme"]
    average = _weight_average(net, cfg, state, run)
    judged = net if average is None else LandmarkNet(cfg.net).to(device)  # the weights validated and kept
    augs = [LandmarkAugment(p_flip=cfg.flip_probability if src.flip_probability is None else src.flip_probability)
            if cfg.augment else LandmarkAugment.none() for src in cfg.train]
    batches = LandmarkBatches(items, source_of, sample_p, augs, cfg.net.input_size, cfg.batch_size, cfg.seed)
    codec = codec_of(cfg.net)
    net.train()
    losses: list[float] = []
    losses_1d: list[float] = []
    record: dict[str, float] = {}
    bar = tqdm(total=cfg.steps, initial=step, desc="landmarks", disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    spent_before = float(state.get("train_seconds", 0.0)) if state else 0.0  # the run's earlier sessions
    seconds = spent_before  # training time so far, read once per step (at its end)
    last = cfg.steps if cfg.progress(step, seconds) < 1.0 else step  # a resumed run whose time is spent: done
    for batch in batch_stream(batches, step, last, cfg.workers):
        factor = 0.1 if cfg.progress(step, seconds) >= cfg.lr_decay_at else 1.0
        for group, lr in zip(opt.param_groups, base_lrs):
            group["lr"] = lr * factor
        x, target = heatmap_batch(batch.crops, batch.points, cfg.net, device)
        weights = point_weight_batch([items[i] for i in batch.picks])
        weights = None if weights is None else weights.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.amp):
            features = net.features(x)
            pred = net.head(features)
            marginals = head(features) if head is not None else None
        pred = pred.float()  # the losses in fp32 (softmax, small differences of heatmaps)
        loss = heatmap_loss(pred, target, cfg.foreground_weight, weights)
        if cfg.laplace_kl_weight > 0:
            points = torch.from_numpy(codec.from_crop(batch.points)).float()
            loss = loss + cfg.laplace_kl_weight * laplace_kl_loss(
                pred, points.to(device), cfg.laplace_scale, cfg.laplace_temperature, weights)
        if marginals is not None:
            loss_1d = marginal_kl_loss(marginals.float(), torch.from_numpy(batch.points).float().to(device),
                                       cfg.hybrid_1d_sigma, weights)
            loss = loss + cfg.hybrid_1d_weight_at(step, seconds) * loss_1d
            losses_1d.append(float(loss_1d.detach()))
        check_finite_loss(loss, step, run)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if average is not None:
            average.update(net)
        step += 1
        losses.append(float(loss.detach()))
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        seconds = spent_before + time.time() - t0
        out_of_time = cfg.progress(step, seconds) >= 1.0
        if step % cfg.checkpoint_every == 0 or step == cfg.steps or out_of_time:
            if average is not None:
                average.copy_to(judged)
            val_nme = validate(judged, val_items) if val_items else None  # JSON null, never a bare NaN
            record = {"stage": "landmarks", "step": step, "images": step * cfg.batch_size,
                      "wall_s": round(seconds - spent_before, 1), "loss": round(float(np.mean(losses)), 5),
                      "val_nme_fixed_box_pct": None if val_nme is None else round(val_nme, 3)}
            if head is not None:  # the unweighted 1-D term: is the head learning while its weight ramps up?
                record["loss_1d"] = round(float(np.mean(losses_1d)), 5)
            if out_of_time and step < cfg.steps:
                record["stopped"] = f"time limit ({cfg.time_limit_minutes:g} min) spent"
            run.log(record)
            bar.write(str(record))
            losses, losses_1d = [], []
            if val_nme is not None and val_nme < best:
                best = val_nme
                save_checkpoint({"net": judged.state_dict(), "config": cfg.net.model_dump(), "step": step,
                                 "val_nme": val_nme}, run.path / "best.pt")
            run.save({"net": net.state_dict(), "opt": opt.state_dict(), "step": step, "best_nme": best,
                      "train_seconds": seconds, "config": cfg.model_dump(),
                      **({} if head is None else {"marginal_head": head.state_dict()}),
                      **({} if average is None else {"weight_average": average.state,
                                                     "weight_average_updates": average.updates})})
        if out_of_time:
            break
    bar.close()
    return record


def load_trained(path: str | Path) -> LandmarkNet:
    """A LandmarkNet from a run's ``best.pt`` / ``last.pt`` (the weight average in a ``last.pt`` that has one)."""
    state = load_checkpoint(path)
    cfg = state.get("config")
    if "net" not in state or not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: not a landmark run's checkpoint (best.pt or last.pt of facealign train "
                              f"landmarks); it holds {sorted(state)}")
    try:
        net = LandmarkNet(NetConfig.model_validate(cfg["net"] if "net" in cfg else cfg))
        net.load_state_dict(state.get("weight_average", state["net"]))
    except (ValidationError, ValueError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: not a landmark network checkpoint ({first[:200]})") from None
    return net.eval()
