"""``backend="auto"`` on the CPU: the fastest of the CPU backends that run here, measured once and cached.

Each candidate (ONNX Runtime, OpenVINO) is created and timed on one face crop; the fastest wins. The
choice is kept in ``$FACEALIGN_CACHE/cpu_backend.json`` (default ``~/.cache/facealign``) under a key
made of the model file's sha256, the runtime versions, the thread count and the CPU model, so it is
measured again only when one of them changes. A candidate that cannot be created or run (a broken
install, say) is skipped with a warning; a cache file that cannot be read is measured over.
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from ..model import sha256
from ..outputs import write_file_atomic
from .base import Backend, BackendError
from .ort import cache_dir, env_threads

CACHE_FILE = "cpu_backend.json"
RUNTIMES = {"ort": "onnxruntime", "openvino": "openvino"}  # backend -> the package whose version keys the cache
TIMED_RUNS = 5
log = logging.getLogger("facealign_sdk")


class BackendChoice(BaseModel):
    """One measured choice: the winner and each candidate's median ms per face (None: it failed)."""

    backend: str
    ms_per_face: dict[str, float | None] = Field(default_factory=dict)
    measured: str = ""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def choice_key(onnx: Path, candidates: list[str]) -> str:
    """What the measurement depends on: model bytes, runtime versions, threads, CPU."""
    versions = ",".join(f"{RUNTIMES.get(c, c)}={_version(RUNTIMES.get(c, c))}" for c in sorted(candidates))
    threads = env_threads() or os.cpu_count() or 0
    return f"{sha256(onnx)}|{versions}|threads={threads}|{cpu_model()}"


def read_cache(path: Path) -> dict[str, BackendChoice]:
    """The cached choices; empty (with a warning) when the file is missing or unreadable."""
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
        if not isinstance(raw, dict):
            raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
        return {key: BackendChoice.model_validate(value) for key, value in raw.items()}
    except (OSError, ValueError, ValidationError) as exc:  # JSONDecodeError is a ValueError
        log.warning("%s: unreadable backend cache, measuring again (%s)", path, str(exc).splitlines()[0])
        return {}


def write_cache(path: Path, choices: dict[str, BackendChoice]) -> None:
    """Write the choices atomically; a cache that cannot be written costs a measurement next time, no more."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file_atomic(path, json.dumps({k: v.model_dump() for k, v in choices.items()}, indent=1) + "\n")
    except OSError as exc:
        log.warning("%s: cannot write the backend cache (%s)", path, exc)


def time_backend(backend: Backend, input_size: int, runs: int = TIMED_RUNS) -> float:
    """Median ms of one single-crop run, after a warm-up run."""
    crop = np.random.default_rng(0).random((1, 3, input_size, input_size), dtype=np.float32)
    backend.run(crop)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        backend.run(crop)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def _try_create(name: str, create: Callable[[str], Backend]) -> Backend | None:
    try:
        return create(name)
    except BackendError as exc:  # a runtime that cannot run here; a bad model (ModelError) is the caller's
        log.warning("backend=auto: %s cannot run here (%s: %s)", name, type(exc).__name__, str(exc)[:200])
        return None


def choose_cpu_backend(candidates: list[str], create: Callable[[str], Backend], onnx: Path, input_size: int,
                       cache: Path | None = None) -> Backend | None:
    """The fastest of ``candidates`` (created by ``create(name)``), from the cache or measured now.

    None when none of them can be created (the caller falls back to what else there is).
    """
    path = cache or cache_dir() / CACHE_FILE
    key = choice_key(onnx, candidates)
    choices = read_cache(path)
    cached = choices.get(key)
    if cached is not None and cached.backend in candidates:
        backend = _try_create(cached.backend, create)
        if backend is not None:
            log.info("backend=auto: %s (cached choice, %s)", cached.backend, path)
            return backend
    timings: dict[str, float | None] = {}
    best: tuple[float, str, Backend] | None = None
    for name in candidates:
        backend = _try_create(name, create)
        if backend is None:
            timings[name] = None
            continue
        try:
            ms = time_backend(backend, input_size)
        except Exception as exc:  # noqa: BLE001 - a backend that fails on a plain crop is not a candidate
            log.warning("backend=auto: %s failed on a test crop (%s: %s)", name, type(exc).__name__, str(exc)[:200])
            timings[name] = None
            continue
        timings[name] = round(ms, 3)
        if best is None or ms < best[0]:
            best = (ms, name, backend)
    if best is None:
        return None
    _, chosen, winner = best
    choices[key] = BackendChoice(backend=chosen, ms_per_face=timings,
                                 measured=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    write_cache(path, choices)
    log.info("backend=auto: %s, the fastest here (ms per face: %s)", chosen, timings)
    return winner
