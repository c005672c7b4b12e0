"""Ctrl-C handling for the command line: exit 130 however the interrupt surfaces, and never in the
middle of writing one record of an output.

Libraries may catch the ``KeyboardInterrupt`` that Python raises and re-raise it as something else
(pydantic turns one raised inside a serializer into a ``PydanticSerializationError``, a
``ValueError``), so the CLI records that SIGINT arrived and asks :func:`was_interrupted` instead of
trusting the exception type. Inside :func:`deferred` a SIGINT is only recorded and raised when the
block ends, so a frame's rows reach every output or none.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_state = {"interrupted": False, "deferring": 0, "pending": False}


def _on_sigint(signum: int, frame: object) -> None:
    _state["interrupted"] = True
    if _state["deferring"]:
        _state["pending"] = True
        return
    raise KeyboardInterrupt


def install() -> None:
    """Route SIGINT through this module (main thread only; elsewhere Python's default stays)."""
    _state.update(interrupted=False, deferring=0, pending=False)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def was_interrupted() -> bool:
    """Whether SIGINT arrived since :func:`install`."""
    return bool(_state["interrupted"])


@contextmanager
def deferred() -> Iterator[None]:
    """Hold a SIGINT that arrives inside the block until the block is done (then raise it)."""
    _state["deferring"] += 1
    try:
        yield
    finally:
        _state["deferring"] -= 1
        if not _state["deferring"] and _state["pending"]:
            _state["pending"] = False
            raise KeyboardInterrupt
