"""Resumable training state: one ``last.pt`` per run folder, plus a JSON-lines log."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError


class CheckpointError(InputError):
    """A checkpoint file that cannot be loaded safely; the message names it."""


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
        return self.path / "last.pt"

    def save(self, state: dict[str, Any]) -> None:
        """Atomically write the checkpoint (a crash mid-write keeps the previous one)."""
        tmp = self.checkpoint.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, self.checkpoint)

    def load(self) -> dict[str, Any] | None:
        if not self.checkpoint.exists():
            return None
        return load_checkpoint(self.checkpoint)

    def log(self, record: dict[str, Any]) -> None:
        record = {"time": round(time.time(), 1), **record}
        with open(self.path / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def records(self) -> list[dict[str, Any]]:
        path = self.path / "log.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
