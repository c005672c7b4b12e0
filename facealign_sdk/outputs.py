"""Checks on output paths, made before any work so that a run never fails at its end for a path
that could have been caught at its start; and unique names for per-image outputs."""

from __future__ import annotations

import errno
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError


def _writable_folder(folder: Path, create: bool) -> None:
    """``folder`` exists and is writable, or (``create``) its nearest existing ancestor is."""
    folder = folder if str(folder) else Path(".")
    probe = folder
    if create:
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
    if not probe.exists():
        raise FileNotFoundError(f"{folder}: output folder does not exist")
    if not probe.is_dir():
        raise NotADirectoryError(f"{probe}: not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(f"{probe}: folder is not writable")


def check_output_file(path: Path, overwrite: bool = True, inputs: Iterable[Path] = (),
                      create_folder: bool = False, suffixes: Sequence[str] = (), what: str = "the output") -> Path:
    """The one output check, made before any work. Fail unless ``path`` can be written: its name ends in
    one of ``suffixes`` (when given), not a folder, not one of ``inputs``, absent unless ``overwrite``,
    in a writable folder (or one that can be created, with ``create_folder``)."""
    path = Path(path)
    if suffixes and not path.name.lower().endswith(tuple(suffixes)):  # also two-part suffixes (.tar.gz)
        names = ", ".join(suffixes[:-1]) + " or " + suffixes[-1] if len(suffixes) > 1 else suffixes[0]
        raise InputError(f"{path}: {what} must end in {names}")
    real = path.resolve()
    if any(real == Path(p).resolve() for p in inputs):
        raise InputError(f"{path}: output would overwrite an input")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, expected a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"{path}: not writable")
    _writable_folder(path.parent, create_folder)
    return path


def check_output_folder(folder: Path) -> Path:
    """Fail unless ``folder`` is a writable folder or can be created as one."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder}: exists and is not a folder")
    _writable_folder(folder, create=True)
    return folder


def unique_stems(paths: Sequence[Path]) -> list[str]:
    """A distinct name stem per input: its own stem, or (when several inputs share it) the stem with
    its suffix and, if still taken, a counter (``face``, ``face_png``, ``face_png_2``)."""
    counts: dict[str, int] = {}
    for p in paths:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    taken: set[str] = set()
    out = []
    for p in paths:
        base = p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower() or 'file'}"
        name, k = base, 1
        while name in taken or (name != p.stem and name in counts):
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        out.append(name)
    return out


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer to fill; renamed over ``path`` when the block ends
    and removed when it fails. An interruption or a full disk leaves the old file (or none), never half
    a new one. The file gets the mode of any new file (0o666 less the umask), also from a writer that makes
    its output private (safetensors writes 0o600)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")  # one per writer
    try:
        tmp.open("wb").close()  # created here, so that it has the umask's mode, without changing the umask
        mode = tmp.stat().st_mode & 0o777
        yield tmp
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_file_atomic(path: Path, data: bytes | str) -> Path:
    """Write a whole file or nothing (see :func:`replacing`)."""
    with replacing(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an image file (format from the suffix); an OSError, never a silent ``False``, when it fails."""
    ok, encoded = cv2.imencode(Path(path).suffix or ".png", image)
    if not ok:
        raise OSError(errno.EIO, "OpenCV could not encode the image", str(path))
    write_file_atomic(path, encoded.tobytes())
