"""Resumable training state: one ``last.pt`` per run folder, plus a JSON-lines log."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import torch


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
        return torch.load(self.checkpoint, map_location="cpu", weights_only=True)

    def log(self, record: dict[str, Any]) -> None:
        record = {"time": round(time.time(), 1), **record}
        with open(self.path / "log.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def records(self) -> list[dict[str, Any]]:
        path = self.path / "log.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
