"""Network time per face of candidate landmark networks (issue #15's lite model: <= 2 ms on 2 cores).

Each candidate is a randomly initialised ``LandmarkNet`` (speed does not depend on the weights), written
as a model folder and exported to ONNX as a release would be (``write_model_folder`` + ``export_onnx``),
then timed at batch 1 with ONNX Runtime and OpenVINO (when importable) through the SDK's own backends,
for each thread count. The released default model's ``model.onnx`` is timed alongside as the reference.

    python benchmarks/lite_speed.py --candidates 128:32 128:24 128:16 --threads 1 2 --json runs/lite_speed.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from facealign_sdk.model import DEFAULT_MODEL, load_manifest, resolve_model_dir


def parse_candidate(text: str) -> tuple[int, int]:
    """``"128:16"`` -> (input size 128, width 16)."""
    size, _, width = text.partition(":")
    if not (size.isdigit() and width.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected INPUT_SIZE:WIDTH, e.g. 128:16")
    return int(size), int(width)


def export_candidate(size: int, width: int, folder: Path) -> Path:
    """A random ``size``-px network of ``width`` exported as ``folder/model.onnx``."""
    import torch

    from facealign_sdk.export.onnx import export_onnx
    from facealign_sdk.nets import LandmarkNet, NetConfig
    from facealign_sdk.training.release import write_model_folder

    torch.manual_seed(0)
    net = LandmarkNet(NetConfig.for_input(size, width=width)).eval()
    manifest = write_model_folder(net, folder, f"candidate-{size}-w{width}", [])
    return export_onnx(net, manifest, folder / "model.onnx")


def time_backend(backend, size: int, runs: int, warmup: int = 5) -> dict[str, float]:
    """Median and minimum ms of ``backend.run`` on one random crop."""
    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    for _ in range(warmup):
        backend.run(x)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        backend.run(x)
        times.append((time.perf_counter() - t) * 1000)
    return {"median_ms": round(float(np.median(times)), 3), "min_ms": round(float(np.min(times)), 3)}


def make_backend(runtime: str, onnx_path: Path, size: int, threads: int):
    """The SDK's ONNX Runtime (CPU) or OpenVINO backend for ``onnx_path``."""
    if runtime == "ort":
        from facealign_sdk.backends.ort import OrtBackend

        return OrtBackend(onnx_path, size, device="cpu", threads=threads)
    from facealign_sdk.backends.openvino import OpenVinoBackend

    return OpenVinoBackend(onnx_path, size, threads=threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", nargs="+", type=parse_candidate, default=[(128, 32), (128, 24), (128, 16)],
                        help="INPUT_SIZE:WIDTH of each network to time")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="released model timed as the reference")
    parser.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runtimes", nargs="+", choices=["ort", "openvino"], default=["ort", "openvino"])
    parser.add_argument("--runs", type=int, default=50, help="timed runs per (network, runtime, threads)")
    parser.add_argument("--json", type=Path, help="write the rows here too")
    args = parser.parse_args()
    runtimes = list(args.runtimes)
    if "openvino" in runtimes:
        try:
            import openvino  # noqa: F401
        except ImportError:
            print("openvino not importable: timing ONNX Runtime only")
            runtimes.remove("openvino")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = resolve_model_dir(args.model)
        networks = [(model_dir.name, load_manifest(model_dir).input_size, model_dir / "model.onnx")]
        for size, width in args.candidates:
            folder = Path(tmp) / f"{size}-w{width}"
            networks.append((f"{size} px, width {width}", size, export_candidate(size, width, folder)))
        for name, size, onnx_path in networks:
            for runtime in runtimes:
                for threads in args.threads:
                    timing = time_backend(make_backend(runtime, onnx_path, size, threads), size, args.runs)
                    row = {"network": name, "input_size": size, "runtime": runtime, "threads": threads, **timing}
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    print("\n| network | runtime | threads | median ms | min ms |\n|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['network']} | {r['runtime']} | {r['threads']} | {r['median_ms']} | {r['min_ms']} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
