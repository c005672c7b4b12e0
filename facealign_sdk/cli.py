"""The ``facealign`` command line: image, video, bench, export, eval, train.

Each sub-command lives in the module that does the work; this file only wires
them up. Every command module exposes ``add_arguments(parser)`` and
``run(args) -> int``. Exit codes: 0 ok, 1 failure, 2 bad input (one-line
message), 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .backends import BackendError
from .imageio import ImageError
from .model import ModelError
from .pts import PtsError

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

# name -> (module, one-line help)
COMMANDS = {
    "image": ("facealign_sdk.commands.image", "landmarks for one or more images"),
    "video": ("facealign_sdk.video_cli", "landmarks for every frame of a video, as an OpenFace-style CSV"),
    "bench": ("facealign_sdk.commands.bench", "measure inference speed (ms/face, faces/s) per backend"),
    "export": ("export.cli", "export a model to ONNX (fp32/fp16/int8) and TensorRT, with a parity report"),
    "eval": ("facealign_sdk.evaluate", "NME / failure rate / AUC / CED on a folder of images with .pts"),
    "train": ("facealign_sdk.training.cli", "train the autoencoder or the landmark stage"),
}

# errors that mean "your input is wrong" rather than "the program failed"
BAD_INPUT_ERRORS = (ImageError, ModelError, PtsError, BackendError, FileNotFoundError, FileExistsError,
                    PermissionError, IsADirectoryError, NotADirectoryError, ValueError)


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, dict[str, object]]:
    """The parser; only the chosen command's module is imported (fast start, optional extras stay optional)."""
    parser = argparse.ArgumentParser(prog="facealign", description="68-point facial landmarks: CLI of facealign-sdk")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    modules: dict[str, object] = {}
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            modules[name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser, modules = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    try:
        return int(modules[args.command].run(args) or 0)
    except KeyboardInterrupt:
        print("facealign: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BAD_INPUT_ERRORS as exc:
        print(f"facealign {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
