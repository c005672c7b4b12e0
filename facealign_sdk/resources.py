"""Where the files that travel with the package are: released models and the bench's sample image.

A wheel carries them inside the package (``_models/``, ``_samples/``; ``setup.py`` copies them at build
time) and they are found with :mod:`importlib.resources`. An editable install (a checkout) has no
copies; there they are the checkout's ``models/`` and ``samples/``. The packaged copy is looked up
first, so a wheel never picks up a stray ``models/`` folder beside site-packages.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

PACKAGED_MODELS = "_models"
PACKAGED_SAMPLES = "_samples"
# what setup.py copies into _samples (everything the commands need, nothing more)
BUNDLED_SAMPLES = ("face.jpg",)


def checkout_root() -> Path | None:
    """The repository folder when the package runs from a checkout (``pip install -e .``), else None."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() and (root / "facealign_sdk").is_dir() else None


def _packaged(name: str) -> Path:
    return Path(str(resources.files("facealign_sdk").joinpath(name)))


def _find(packaged: str, checkout_folder: str) -> Path:
    inside = _packaged(packaged)
    root = checkout_root()
    if inside.is_dir() or root is None:
        return inside
    return root / checkout_folder


def models_root() -> Path:
    """The folder of released models (``<name>/manifest.json`` ...)."""
    return _find(PACKAGED_MODELS, "models")


def sample_image(name: str = "face.jpg") -> Path:
    """A bundled sample image (``facealign bench``'s default input)."""
    return _find(PACKAGED_SAMPLES, "samples") / name


def shared_data(*parts: str) -> Path:
    """A folder of the shared data sets (``$FACEALIGN_SHARED/data/...``, default ``../shared`` beside the
    checkout; may not exist): where ``facealign export`` takes its default calibration and parity faces."""
    if os.environ.get("FACEALIGN_SHARED"):
        return Path(os.environ["FACEALIGN_SHARED"]).joinpath("data", *parts)
    root = checkout_root()
    return (root.parent if root is not None else Path("..")).joinpath("shared", "data", *parts)
