"""The ``facealign`` command line: image, video, bench, export, eval, train.

One module per command in this package (``image``, ``video``, ``bench``, ``export``, ``eval``,
``train``), each with ``add_arguments(parser)`` and ``run(args) -> int``; the flags they share come
from :mod:`facealign_sdk.cli.flags`. Exit codes: 0 ok, 1 failure (an internal error prints its
traceback), 2 bad input or a missing optional dependency (one-line message), 3 a video stream broke
mid-way, 130 interrupted, 141 the reader of stdout went away (``facealign ... | head``).

Only the standard library is imported before ``main`` runs (the package's
``__init__`` is lazy), and ``main`` takes over Ctrl-C only once the command's
modules are imported, so Ctrl-C right after start-up exits 130 without a
traceback too.
"""

from __future__ import annotations

import os
import signal


def _interrupted_while_starting(signum: int, frame: object) -> None:
    """Ctrl-C before ``main`` can catch it (still importing): exit 130 quietly, nothing is written yet."""
    os._exit(130)


try:  # main() routes SIGINT through facealign_sdk.interrupts once it can handle KeyboardInterrupt
    signal.signal(signal.SIGINT, _interrupted_while_starting)
except ValueError:  # imported outside the main thread: signals stay as they are
    pass

import argparse  # noqa: E402  (after the handler: these imports take time on a loaded machine)
import errno  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import traceback  # noqa: E402

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141

# name -> (module, one-line help)
COMMANDS = {
    "image": ("facealign_sdk.cli.image", "landmarks for one or more images"),
    "video": ("facealign_sdk.cli.video", "landmarks for every frame of a video, as an OpenFace-style CSV"),
    "bench": ("facealign_sdk.cli.bench", "measure inference speed (ms/face, faces/s) per backend"),
    "export": ("facealign_sdk.cli.export", "export a model to ONNX (fp32/fp16/int8) and TensorRT, with a parity report"),
    "eval": ("facealign_sdk.cli.eval", "NME / failure rate / AUC / CED on a folder of images with .pts"),
    "train": ("facealign_sdk.cli.train", "train the autoencoder or the landmark stage"),
}

# OS errors about a path the user named; other OS errors (a full disk, I/O errors) are failures
USER_PATH_ERRORS = (FileNotFoundError, FileExistsError, PermissionError, IsADirectoryError, NotADirectoryError)


def bad_input_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "your input is wrong" (exit 2) rather than "the program failed"."""
    from ..errors import InputError

    return (InputError, *USER_PATH_ERRORS)


def build_parser(argv: list[str]) -> tuple[argparse.ArgumentParser, dict[str, object]]:
    """The parser; only the chosen command's module is imported (fast start, optional extras stay optional)."""
    from .. import __version__
    from .flags import HelpFormatter, add_progress_flag

    parser = argparse.ArgumentParser(prog="facealign", description="68-point facial landmarks: CLI of facealign-sdk")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    parser.add_argument("--version", action="version", version=f"facealign-sdk {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = next((a for a in argv if not a.startswith("-")), None)
    modules: dict[str, object] = {}
    for name, (module_name, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=HelpFormatter)
        add_progress_flag(p)
        if name == chosen:
            module = importlib.import_module(module_name)
            module.add_arguments(p)
            modules[name] = module
    return parser, modules


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code (see the module docstring)."""
    from .. import interrupts

    command = "?"
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        # the command's imports run under the start-up handler: a Ctrl-C inside a compiled extension's import
        # (pydantic-core's) surfaces as that extension's panic, not as a KeyboardInterrupt main could catch
        parser, modules = build_parser(argv)
        interrupts.install()
        args = parser.parse_args(argv)
        command = args.command
        logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
        code = int(modules[command].run(args) or 0)
        sys.stdout.flush()  # here, not at exit, so that a reader gone away (| head) is a BrokenPipeError we handle
        return code
    except KeyboardInterrupt:
        return _interrupted()
    except BrokenPipeError:
        return _broken_pipe()
    except Exception as exc:
        if interrupts.was_interrupted():  # a library re-raised the interrupt as another error
            return _interrupted()
        missing = missing_extra(exc, command)
        if missing:
            print(f"facealign {command}: error: {missing}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if isinstance(exc, bad_input_errors()):
            print(f"facealign {command}: error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if isinstance(exc, OSError):  # the system refused a read or write: a failure, not a bug
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            note = "disk full; the outputs hold what was written until then" if full else "the run stopped"
            print(f"facealign {command}: error: {exc} ({note})", file=sys.stderr)
            return EXIT_FAILURE
        traceback.print_exc()
        print(f"facealign {command}: internal error ({type(exc).__name__}); please report it with the traceback above",
              file=sys.stderr)
        return EXIT_FAILURE


# optional dependencies -> the extra that installs them; a command's own extra wins (torch for train is [train])
EXTRAS = {"torch": "torch", "onnx": "export", "onnxscript": "export", "matplotlib": "plots", "tensorrt": "trt",
          "insightface": "insightface", "mutmut": "mutation"}
COMMAND_EXTRAS = {"train": "train", "export": "export"}


def missing_extra(exc: BaseException, command: str) -> str | None:
    """The one-line message for an optional dependency that is not installed, else None."""
    from ..errors import MissingDependencyError

    if isinstance(exc, MissingDependencyError):
        return str(exc)
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    module = exc.name.split(".")[0]
    if module not in EXTRAS:
        return None
    extra = COMMAND_EXTRAS.get(command, EXTRAS[module])
    return f"{module} is not installed; it comes with the [{extra}] extra: pip install 'facealign-sdk[{extra}]'"


def _broken_pipe() -> int:
    """The reader of stdout went away (``| head``): stop quietly. Python would print a BrokenPipeError when it
    flushes stdout at exit, so stdout is pointed at /dev/null first."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout file (a test's capture): nothing will be flushed to a pipe
        pass
    return EXIT_BROKEN_PIPE


def _interrupted() -> int:
    print("facealign: interrupted", file=sys.stderr)
    return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
