"""The generic top-level package names must resolve inside this repo, not to PyPI namesakes."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["pipeline", "stages", "filters", "captioners", "manifests"])
def test_top_level_package_is_ours(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert Path(module.__file__).resolve().parent == REPO / name


def test_console_script_is_declared() -> None:
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "laionface"]
    assert script.value == "pipeline.cli:main"
