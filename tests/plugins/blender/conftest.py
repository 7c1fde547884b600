"""Fixtures for the Blender add-on tests.

The add-on is staged exactly as the extension zip ships it (the build script's own staging step
copies the bridge client in as `bridge/`) into a temporary folder, and imported from there as
the package `samroto_blender`: the bpy-free modules are tested in this process; the bpy side runs
in a subprocess with real Blender (`test_blender_addon.py`).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Iterator

import pytest

from samroto.scripts.build_blender_extension import stage_extension

PACKAGE = "samroto_blender"


@pytest.fixture(scope="session")
def staged_addon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The staged add-on folder (without wheels), importable as `samroto_blender`."""
    root = tmp_path_factory.mktemp("addon")
    folder = stage_extension(root / PACKAGE)
    sys.path.insert(0, str(root))
    try:
        yield folder
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest.fixture(scope="session")
def addon_module(staged_addon: Path) -> Callable[[str], ModuleType]:
    """Import one of the add-on's modules: `addon_module("coords")`."""

    def load(name: str) -> ModuleType:
        return importlib.import_module("%s.%s" % (PACKAGE, name))

    return load


@pytest.fixture(scope="session")
def built_extension(tmp_path_factory: pytest.TempPathFactory):
    """The extension zip built like a release: pyzmq and msgpack wheels downloaded from PyPI for
    all four platforms (pip's cache makes repeated runs cheap)."""
    from samroto.scripts.build_blender_extension import build

    return build(tmp_path_factory.mktemp("extension"))
