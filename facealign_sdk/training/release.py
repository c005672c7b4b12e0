"""Turn a trained checkpoint into a released model folder (fp16 safetensors + manifest)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors.torch import save_file

from ..codec import CodecSpec
from ..errors import InputError
from ..model import MANIFEST, WEIGHTS, CropSpec, Manifest, describe_validation_error, sha256, write_manifest
from ..nets import FACE_MEAN, FACE_STD, LandmarkNet
from ..outputs import replacing
from .checkpoint import CheckpointError
from .landmarks import LandmarkConfig, load_trained

log = logging.getLogger(__name__)


def release_model(checkpoint: str | Path, out_dir: str | Path, name: str, training_data: list[str],
                  blur_sigma: float | None = None) -> Manifest:
    """Write a trained checkpoint as ``out_dir/model.safetensors`` (fp16) + ``manifest.json``.

    ``blur_sigma``: the decoder's blur for this network (``CodecSpec.blur_sigma``, heatmap pixels; None: the
    default scaled to its maps, what training validated with). A well-trained network's peaks are sharp enough
    that a weaker blur or none places them better; measure it on the validation sets before choosing.

    The run's ``config.json`` beside the checkpoint, when there, tells whether the network was
    trained with mirror augmentation on every source (``Manifest.mirror_symmetric``): one source
    without it (an annotation convention that is not mirror-symmetric) makes the model not symmetric."""
    _checked_blur(blur_sigma)  # before the checkpoint is read
    net = load_trained(checkpoint)
    run_config = Path(checkpoint).parent / "config.json"
    mirror = True
    if run_config.is_file():
        try:
            cfg = LandmarkConfig.model_validate_json(run_config.read_text())
        except ValidationError as exc:
            raise CheckpointError(f"{run_config}: not the settings of a landmark run ({describe_validation_error(exc)})"
                                  "; release reads them to know whether the model was trained with mirror "
                                  "augmentation") from None
        mirror = all((cfg.flip_probability if src.flip_probability is None else src.flip_probability) > 0
                     for src in cfg.train)
    else:
        # nothing tells: a model trained without mirroring would release as symmetric, and flip=True on it would
        # average in the mirrored convention without the warning
        log.warning("%s: no config.json beside the checkpoint; the model is taken as trained with mirror "
                    "augmentation (manifest mirror_symmetric true)", checkpoint)
    return write_model_folder(net, out_dir, name, training_data, mirror_symmetric=mirror, blur_sigma=blur_sigma)


def _remove_stale_artifacts(out: Path) -> None:
    """Delete the files a previous release in ``out`` was exported to (its manifest's ``artifacts_sha256``):
    made from the weights being replaced, they would be loaded instead of the new ones."""
    try:
        recorded = json.loads((out / MANIFEST).read_text()).get("artifacts_sha256", {})
    except (OSError, ValueError, AttributeError):
        return
    for name in recorded if isinstance(recorded, dict) else ():
        stale = out / name
        if Path(name).name == name and stale.is_file():
            stale.unlink()
            log.warning("%s: removed, it was exported from the weights this release replaces (run facealign "
                        "export again)", stale)


def write_model_folder(net: LandmarkNet, out_dir: str | Path, name: str, training_data: list[str],
                       mirror_symmetric: bool = True, blur_sigma: float | None = None) -> Manifest:
    """Write a network as a model folder (fp16 safetensors + manifest); returns the manifest. ``blur_sigma``:
    as in :func:`release_model`."""
    cfg = net.config
    codec = _codec(cfg.heatmap_size, blur_sigma)  # checked before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_artifacts(out)
    state = {k: v.detach().half().contiguous() if v.is_floating_point() else v.contiguous() for k, v in net.state_dict().items()}
    with replacing(out / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"name": name, "format": "pt"})
    manifest = Manifest(
        name=name,
        net=cfg.model_dump(),
        num_landmarks=cfg.num_landmarks,
        input_size=cfg.input_size,
        heatmap_size=cfg.heatmap_size,
        mean=FACE_MEAN,
        std=FACE_STD,
        crop=CropSpec(),
        codec=codec,
        training_data=training_data,
        mirror_symmetric=mirror_symmetric,
        weights_sha256=sha256(out / WEIGHTS),
    )
    write_manifest(out, manifest)
    return manifest


def _checked_blur(blur_sigma: float | None) -> float | None:
    """``blur_sigma`` when a codec accepts it (None: the training default); InputError otherwise."""
    if blur_sigma is None:
        return None
    try:
        return CodecSpec(blur_sigma=blur_sigma).blur_sigma
    except ValidationError as exc:
        raise InputError(f"blur sigma {blur_sigma!r}: {describe_validation_error(exc)}") from None


def _codec(heatmap_size: int, blur_sigma: float | None) -> CodecSpec:
    """The codec training encoded and validated with (``landmarks.codec_of``), with the release's blur."""
    codec = CodecSpec.for_heatmap_size(heatmap_size)
    blur_sigma = _checked_blur(blur_sigma)
    return codec if blur_sigma is None else CodecSpec(**{**codec.model_dump(), "blur_sigma": blur_sigma})


def fp16_roundtrip_error(checkpoint: str | Path) -> float:
    """Max heatmap change from storing weights in fp16 (sanity check for the release)."""
    net = load_trained(checkpoint)
    size = net.config.input_size
    x = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = net(x)
        net.load_state_dict({k: v.half().float() if v.is_floating_point() else v for k, v in net.state_dict().items()})
        return float((net(x) - ref).abs().max())
