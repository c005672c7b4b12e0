#!/usr/bin/env bash
# The Python packages facealign_sdk needs that the lent GPU machines' image lacks (pydantic and its own needs),
# as wheels for its Python 3.12 on x86-64, at the versions installed here: runs/gpu/wheels (git-ignored, carried
# by the device call with runs/gpu). The image already has torch, numpy, opencv-python-headless, onnxruntime,
# tqdm and safetensors.
set -euo pipefail
cd "$(dirname "$0")/.."
out=runs/gpu/wheels
rm -rf "$out" && mkdir -p "$out"
version() { python3 -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
for name in pydantic pydantic_core annotated_types typing_inspection typing_extensions; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$out" "$name==$(version "$name")"
done
ls -la "$out"
