"""The one error hierarchy of the SDK, rooted in :class:`FacealignError`.

* :class:`InputError` (a ``ValueError``): what the user gave cannot be used (an image, a model folder,
  an annotation, an option, an output path); exit code 2 in the CLI. Subclasses, defined beside the
  code that raises them: ``ImageError``, ``ModelError``, ``PtsError``, ``VideoError``, ``BackendError``,
  ``CheckpointError``.
* :class:`MissingDependencyError` (an ``ImportError``): an optional dependency is not installed; the
  message names the extra that installs it; exit code 2.
* :class:`EvalItemError` (a ``RuntimeError``): one evaluation item failed unexpectedly; exit code 1.

A bare ``ValueError`` or ``TypeError`` escaping the SDK is a bug.
"""

from __future__ import annotations


class FacealignError(Exception):
    """Base class of every error the SDK raises on purpose."""


class InputError(FacealignError, ValueError):
    """Input that cannot be used (an option, a path, a file); the message says which and why."""


class MissingDependencyError(FacealignError, ImportError):
    """An optional dependency is missing; the message says which extra installs it."""

    def __init__(self, module: str, extra: str, needed_for: str) -> None:
        super().__init__(f"{needed_for} needs {module}, which is not installed: pip install 'facealign-sdk[{extra}]'")
        self.module, self.extra = module, extra


class EvalItemError(FacealignError, RuntimeError):
    """An unexpected failure while evaluating one item; the message names the file."""
