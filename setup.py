"""Build hook: a wheel carries the released models (``models/``) inside the package as ``facealign_sdk/_models``.

Everything else is configured in pyproject.toml. Editable installs (``pip install -e .``) read
``models/`` in the checkout directly, so nothing is copied for them.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

MODELS = Path(__file__).resolve().parent / "models"
# evaluation plots/logs; engines (+ sidecars) are built per GPU; the float YuNet serves the C++ library only
SKIP = ("eval", "*.engine", "*.engine.json", "*_float.onnx")


class BuildPyWithModels(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or not MODELS.is_dir():
            return
        target = Path(self.build_lib) / "facealign_sdk" / "_models"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(MODELS, target, ignore=shutil.ignore_patterns(*SKIP))


setup(cmdclass={"build_py": BuildPyWithModels})
