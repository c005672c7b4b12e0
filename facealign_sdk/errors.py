"""The one error hierarchy for problems with what the user gave (exit code 2 in the CLI).

Every error the SDK raises because of its input (an image, a model folder, an annotation, an
option, an output path) is an :class:`InputError`, so a caller can tell "your input is wrong"
from a bug in the SDK: a bare ``ValueError`` or ``TypeError`` escaping the SDK is a bug. The
subclasses keep their old names (``ImageError``, ``ModelError``, ``PtsError``, ``VideoError``)
and are still ``ValueError``s, as before.
"""

from __future__ import annotations


class InputError(ValueError):
    """Input that cannot be used (an option, a path, a file); the message says which and why."""
