"""Resumable training state: one ``last.pt`` per run folder, plus a JSON-lines log."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ValidationError

from ..errors import InputError
from ..outputs import replacing, write_file_atomic

# settings a resumed run may change: how long and where it runs, how often it saves, what it validates on,
# and the starting weights (used only when there is no checkpoint yet)
RESUMABLE_SETTINGS = frozenset({"steps", "checkpoint_every", "threads", "device", "run_dir", "val", "val_images",
                                "autoencoder", "init_model", "init_from", "workers", "amp", "time_limit_minutes"})


class CheckpointError(InputError):
    """A checkpoint file that cannot be loaded safely; the message names it."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write a checkpoint whole or not at all (Ctrl-C or a full disk mid-write keeps the previous one)."""
    with replacing(Path(path)) as tmp:
        torch.save(state, tmp)


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_resume(state: dict[str, Any], cfg: BaseModel, path: str | Path) -> None:
    """InputError when ``cfg`` changes a setting of the run saved in ``state`` (its ``config``) other than
    :data:`RESUMABLE_SETTINGS`: another network cannot load the weights, another optimiser set-up cannot
    load the optimiser state, and other data or rates would make the run's record describe a run that never
    happened. Settings the saved run did not have yet take their defaults."""
    saved = state.get("config")
    if not isinstance(saved, dict):
        return
    fields = type(cfg).model_fields
    try:
        before = type(cfg).model_validate({k: v for k, v in saved.items() if k in fields}).model_dump()
    except ValidationError:
        before = saved
    now = _flat(cfg.model_dump())
    fixed = _flat({k: v for k, v in before.items() if k not in RESUMABLE_SETTINGS})
    changed = [f"{key} {_short(value)} -> {_short(now[key])}" for key, value in fixed.items()
               if key in now and now[key] != value]
    if changed:
        raise InputError(f"{path} was trained with other settings ({'; '.join(changed)}): resume with the run's own "
                         "settings (its config.json), or start a new --run-dir (--init-model, --autoencoder or "
                         "--init-from start it from trained weights)")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A ``.pt`` checkpoint holding only tensors and plain data. ``weights_only=True``: a pickle that would
    build other objects (and so could run code) is refused with :class:`CheckpointError`, never executed."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, ... for bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a loadable checkpoint of tensors and plain data ({first[:300]})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, got {type(state).__name__}")
    return state


class RunDir:
    """A training run folder: ``last.pt`` (full state), ``log.jsonl`` (one line per log step)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def checkpoint(self) -> Path:
        """The run's resumable checkpoint, ``last.pt``."""
        return self.path / "last.pt"

    def save(self, state: dict[str, Any]) -> None:
        """Atomically write the checkpoint (a crash mid-write keeps the previous one)."""
        save_checkpoint(state, self.checkpoint)

    def resume(self, cfg: BaseModel) -> dict[str, Any] | None:
        """The run's saved state, if any, once :func:`check_resume` finds ``cfg`` keeps its settings; then
        ``config.json`` records ``cfg`` (release reads it)."""
        state = self.load()
        if state is not None:
            check_resume(state, cfg, self.checkpoint)
        write_file_atomic(self.path / "config.json", cfg.model_dump_json(indent=2))
        return state

    def load(self) -> dict[str, Any] | None:
        """The state in ``last.pt``, or None when the run has none yet."""
        if not self.checkpoint.exists():
            return None
        return load_checkpoint(self.checkpoint)

    def log(self, record: dict[str, Any]) -> None:
        """Append one timestamped record to ``log.jsonl``."""
        record = {"time": round(time.time(), 1), **record}
        with open(self.path / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def records(self) -> list[dict[str, Any]]:
        """The records of ``log.jsonl``, oldest first (none when it does not exist)."""
        path = self.path / "log.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class TrainingDiverged(InputError):
    """The loss became NaN or inf: the settings (a learning rate too high for the data) made the run diverge."""


def check_finite_loss(loss: torch.Tensor, step: int, run: RunDir) -> None:
    """TrainingDiverged before a non-finite loss reaches the weights; the run's checkpoint stays as it was."""
    if not bool(torch.isfinite(loss.detach()).all()):
        kept = f"{run.checkpoint} keeps the last good state" if run.checkpoint.exists() else "nothing was saved"
        raise TrainingDiverged(f"the loss is {float(loss.detach())} at step {step + 1}: the run diverged (lower the "
                               f"learning rates); {kept}")
