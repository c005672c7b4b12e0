"""The README's examples run as written (from the repository root, as the README's commands do)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from .conftest import REPO


def python_block(heading: str) -> str:
    """The first ```python block after ``heading`` in README.md."""
    text = (REPO / "README.md").read_text()
    start = text.index(heading)
    return re.search(r"```python\n(.*?)```", text[start:], re.S).group(1)


def test_colour_pose_crop_drawing_example_runs(monkeypatch):
    pytest.importorskip("PIL")
    monkeypatch.chdir(REPO)
    scope: dict = {}
    exec(compile(python_block("### Colour order, head pose, face crops, drawings"), "README.md", "exec"), scope)
    assert scope["crop"].shape == (112, 112, 3) and scope["matrix"].shape == (2, 3)
    assert scope["drawing"].shape == scope["image"].shape
    assert np.isfinite([scope["face"].pose.yaw, scope["face"].pose.pitch, scope["face"].pose.roll]).all()
