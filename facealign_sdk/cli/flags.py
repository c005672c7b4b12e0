"""The flags every command shares, generated from :class:`facealign_sdk.options.AlignerOptions`.

A field becomes ``--name`` (``--no-name`` for a flag that is on by default); its description is the
help text and its default is shown by :class:`HelpFormatter`. ``aligner_from_args`` builds the
``Aligner`` from the parsed flags, so no command lists the model options itself.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, get_args

from pydantic import ValidationError

from ..errors import InputError
from ..options import AlignerOptions

if TYPE_CHECKING:  # pragma: no cover
    from ..aligner import Aligner

MODEL_FLAGS = ("model", "backend", "device")
DECODER_FLAGS = ("refine", "blur", "flip", "convention")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps descriptions as written and shows each option's default (not for on/off flags or None)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False, True, argparse.SUPPRESS) or isinstance(action, argparse._StoreConstAction):
            return action.help or ""
        return super()._get_help_string(action)


def _choices(name: str) -> Sequence[str] | None:
    if name == "backend":
        from ..backends import BACKENDS

        return BACKENDS
    if name == "refine":
        return get_args(AlignerOptions.model_fields[name].annotation)
    return None


def add_aligner_flags(parser: argparse.ArgumentParser, names: Sequence[str] = MODEL_FLAGS + DECODER_FLAGS,
                      title: str = "model") -> None:
    """Add the ``AlignerOptions`` fields ``names`` as flags, in one argument group."""
    group = parser.add_argument_group(title)
    for name in names:
        field = AlignerOptions.model_fields[name]
        flag = "--" + name.replace("_", "-")
        if field.annotation is bool:
            if field.default:
                group.add_argument(f"--no-{name.replace('_', '-')}", dest=name, action="store_false",
                                   help=f"switch off (on by default): {field.description}")
            else:
                group.add_argument(flag, dest=name, action="store_true", help=field.description)
            continue
        kind = int if name in ("max_faces", "batch_size") else str
        group.add_argument(flag, dest=name, type=kind, default=field.default, choices=_choices(name),
                           help=field.description)


def add_progress_flag(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: the one switch for progress bars and progress summaries, in every command."""
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar or summary")


def add_overwrite_flag(parser: argparse._ActionsContainer, outputs: str = "output files") -> None:
    """``--overwrite``: replace existing ``outputs``; without it an existing one is bad input (exit 2)."""
    parser.add_argument("--overwrite", action="store_true",
                        help=f"replace existing {outputs}; without it an existing one is an error (exit 2)")


def add_skip_bad_flag(parser: argparse._ActionsContainer, items: str) -> None:
    """``--skip-bad``: report bad input ``items`` on stderr and go on with the rest instead of stopping (exit 2)."""
    parser.add_argument("--skip-bad", action="store_true",
                        help=f"report {items} on stderr and go on with the rest (default: stop with exit 2)")


def options_from_args(args: argparse.Namespace) -> AlignerOptions:
    """The ``AlignerOptions`` the parsed flags set (fields without a flag keep their defaults)."""
    given = {name: getattr(args, name) for name in AlignerOptions.model_fields if hasattr(args, name)}
    try:
        return AlignerOptions(**given)
    except ValidationError as exc:
        raise invalid_flag(exc) from None


def invalid_flag(exc: ValidationError) -> InputError:
    """A flag's value that its options object refused, as one line naming the flag (exit 2)."""
    err = exc.errors()[0]
    name = "-".join(str(p) for p in err["loc"]).replace("_", "-")
    flag = f"smoothing {name}" if exc.title == "OneEuroConfig" else f"--{name}"
    return InputError(f"{flag}: {err['msg'].lower()} (got {err.get('input')!r})")


def aligner_from_args(args: argparse.Namespace, **overrides: object) -> Aligner:
    """The ``Aligner`` the parsed flags ask for."""
    from ..aligner import Aligner

    options = options_from_args(args)
    return Aligner.from_options(options.model_copy(update=overrides) if overrides else options)
