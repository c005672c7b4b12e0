"""Build hook: a wheel carries what the runtime needs inside the package, copied from the checkout:
the released models (``models/`` -> ``facealign_sdk/_models``, ONNX Runtime's files only: one copy of
the weights) and the sample image ``facealign bench`` times (``samples/`` -> ``facealign_sdk/_samples``).

Everything else is configured in pyproject.toml. Editable installs (``pip install -e .``) read
``models/`` and ``samples/`` in the checkout directly (:mod:`facealign_sdk.resources`), so nothing is
copied for them.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
# evaluation plots/logs; engines (+ sidecars) are built per GPU; the float YuNet serves the C++ library only;
# the PyTorch weights repeat model.onnx's (training and the torch backend run from a checkout). The int8 graph
# ships: it is the CPU speed choice (--model <name>/model_int8.onnx)
SKIP = ("eval", "*.engine", "*.engine.json", "*_float.onnx", "model.safetensors", "model_fp16.onnx")
SAMPLES = ("face.jpg",)  # facealign_sdk.resources.BUNDLED_SAMPLES


class BuildPyWithModels(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False) or not (ROOT / "models").is_dir():
            return
        package = Path(self.build_lib) / "facealign_sdk"
        shutil.rmtree(package / "_models", ignore_errors=True)
        shutil.copytree(ROOT / "models", package / "_models", ignore=shutil.ignore_patterns(*SKIP))
        (package / "_samples").mkdir(exist_ok=True)
        for name in SAMPLES:
            shutil.copy2(ROOT / "samples" / name, package / "_samples" / name)


setup(cmdclass={"build_py": BuildPyWithModels})
