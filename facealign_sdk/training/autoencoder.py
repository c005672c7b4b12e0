"""Stage 1: unsupervised adversarial autoencoder on unlabelled faces (3FabRec).

Loss = w_l1 * L1 + w_cs * structural SSIM + w_z * latent GAN (z vs N(0, I))
       + w_img * image GAN (after ``image_gan_after`` steps, as the reference introduces it late).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from tqdm import tqdm

from ..errors import InputError
from ..nets import AutoEncoder
from .checkpoint import RunDir, check_finite_loss, load_checkpoint
from .device import training_device
from .data import augment_face, load_faces
from .losses import ImageDiscriminator, LatentDiscriminator, gan_loss, structural_loss


class AutoEncoderConfig(BaseModel):
    """Settings of the autoencoder stage."""

    model_config = ConfigDict(extra="forbid")  # a misspelt setting is an error, not silently ignored

    data: list[str] = Field(default_factory=lambda: ["../shared/data/faces/real", "../shared/data/faces/synthetic"],
                            min_length=1,
                            description="folders of face images and/or face banks (.npz, `facealign train facebank`)")
    run_dir: str = "runs/ae128"
    init_from: str | None = Field(None, description="autoencoder run or checkpoint to start from (e.g. the 128-px "
                                  "run for the 256-px stage: every tensor of matching shape is copied)")
    min_source_side: int = Field(0, ge=0, description="leave out bank faces smaller than this in their source")
    size: Literal[128, 256] = Field(128, description="side of the faces the autoencoder learns (128 or 256 px)")
    width: int = Field(32, ge=8)
    z_dim: int = Field(99, ge=1)
    batch_size: int = Field(32, ge=1)
    steps: int = Field(3000, ge=1)
    lr: float = Field(2e-4, ge=0)
    w_l1: float = 1.0
    w_cs: float = 1.0
    w_z: float = 0.05
    w_img: float = 0.01
    image_gan_after: int = Field(1000, ge=0)
    checkpoint_every: int = Field(200, ge=1)
    max_images: int | None = Field(None, ge=1)
    augment: bool = True
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    device: str = Field("cpu", description="torch device to train on (cpu, cuda, cuda:1)")


def train_autoencoder(cfg: AutoEncoderConfig, progress: bool = True) -> dict[str, float]:
    """Train (or resume) the autoencoder; returns the mean losses of the last log window."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = training_device(cfg.device)
    run = RunDir(cfg.run_dir)
    state = run.resume(cfg)
    faces = load_faces(cfg.data, cfg.size, cfg.min_source_side, progress)
    if not len(faces):
        raise InputError(f"no faces to learn from: the face banks of {cfg.data} hold none at least "
                         f"{cfg.min_source_side} px in their source (min_source_side)")
    if cfg.max_images:
        faces = faces[: cfg.max_images]
    torch.manual_seed(cfg.seed)
    ae = AutoEncoder(cfg.size, cfg.width, cfg.z_dim)
    d_z, d_img = LatentDiscriminator(cfg.z_dim), ImageDiscriminator(width=16)
    for module in (ae, d_z, d_img):  # before the optimisers, so that their (resumed) state follows the device
        module.to(device)
    opt_ae = torch.optim.Adam(ae.parameters(), lr=cfg.lr, betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(list(d_z.parameters()) + list(d_img.parameters()), lr=cfg.lr, betas=(0.0, 0.999))
    step = 0
    if state:
        ae.load_state_dict(state["ae"])
        d_z.load_state_dict(state["d_z"])
        d_img.load_state_dict(state["d_img"])
        opt_ae.load_state_dict(state["opt_ae"])
        opt_d.load_state_dict(state["opt_d"])
        step = state["step"]
    elif cfg.init_from:
        own = ae.state_dict()
        matched = {k: v for k, v in load_autoencoder(cfg.init_from).items() if k in own and own[k].shape == v.shape}
        ae.load_state_dict(matched, strict=False)
        print(f"initialised {len(matched)} of {len(own)} tensors from {cfg.init_from}")
    rng = np.random.default_rng(cfg.seed + step)
    ae.train()
    window: dict[str, list[float]] = {}
    last: dict[str, float] = {}
    bar = tqdm(total=cfg.steps, initial=step, desc="autoencoder", disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    while step < cfg.steps:
        idx = rng.integers(0, len(faces), cfg.batch_size)
        batch = np.stack([(augment_face(faces[i], rng) if cfg.augment else faces[i])[:, :, ::-1] for i in idx])  # BGR -> RGB
        x = torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous().float().div_(255.0).to(device)
        target = x * 2 - 1
        use_img_gan = step >= cfg.image_gan_after and cfg.w_img > 0

        recon, z = ae(x)
        losses = {
            "l1": (recon - target).abs().mean(),
            "cs": structural_loss((recon + 1) / 2, x, window=cfg.size // 8 - 1),
            "z_adv": gan_loss(d_z(z), real=True),
        }
        total = cfg.w_l1 * losses["l1"] + cfg.w_cs * losses["cs"] + cfg.w_z * losses["z_adv"]
        if use_img_gan:
            losses["img_adv"] = gan_loss(d_img(recon), real=True)
            total = total + cfg.w_img * losses["img_adv"]
        check_finite_loss(total, step, run)
        opt_ae.zero_grad(set_to_none=True)
        total.backward()
        opt_ae.step()

        d_loss = gan_loss(d_z(torch.randn_like(z)), True) + gan_loss(d_z(z.detach()), False)
        if use_img_gan:
            d_loss = d_loss + gan_loss(d_img(target), True) + gan_loss(d_img(recon.detach()), False)
        check_finite_loss(d_loss, step, run)  # the discriminators' weights are saved too
        opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        opt_d.step()
        losses["d"] = d_loss

        step += 1
        for k, v in losses.items():
            window.setdefault(k, []).append(float(v.detach()))
        bar.update(1)
        if step % 20 == 0:
            bar.set_postfix(l1=f"{np.mean(window['l1'][-20:]):.4f}", cs=f"{np.mean(window['cs'][-20:]):.3f}")
        if step % cfg.checkpoint_every == 0 or step == cfg.steps:
            means = {k: round(float(np.mean(v)), 5) for k, v in window.items()}
            run.log({"stage": "autoencoder", "step": step, "images": step * cfg.batch_size,
                     "wall_s": round(time.time() - t0, 1), **means})
            run.save({"ae": ae.state_dict(), "d_z": d_z.state_dict(), "d_img": d_img.state_dict(),
                      "opt_ae": opt_ae.state_dict(), "opt_d": opt_d.state_dict(), "step": step,
                      "config": cfg.model_dump()})
            last, window = means, {}
    bar.close()
    return last


def load_autoencoder(path: str | Path) -> dict[str, torch.Tensor]:
    """State dict of a trained autoencoder from a run folder or a ``last.pt``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no autoencoder run or checkpoint to start from (train one with facealign "
                                "train autoencoder, start from a model with --init-model, or set autoencoder to null)")
    state = RunDir(path).load() if path.is_dir() else load_checkpoint(path)
    if not state or "ae" not in state:
        raise FileNotFoundError(f"{path}: no autoencoder checkpoint")
    return state["ae"]
