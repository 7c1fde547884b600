"""The add-on's split between bpy-free modules (tested outside Blender) and the bpy glue stays honest."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ADDON = Path(__file__).resolve().parents[3] / "plugins" / "blender"
HOST = {"bpy", "bmesh", "mathutils", "gpu", "gpu_extras", "bl_ui", "bpy_extras"}


def _lists() -> tuple:
    tree = ast.parse((ADDON / "__init__.py").read_text())
    values = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            if node.targets[0].id in ("BPY_FREE_MODULES", "BPY_MODULES"):
                values[node.targets[0].id] = tuple(ast.literal_eval(node.value))
    return values["BPY_FREE_MODULES"], values["BPY_MODULES"]


def _imports(path: Path) -> set:
    """Every module a file imports, anywhere in it (also inside functions): `bpy`, `.controller`, ..."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found |= {"." + (node.module or alias.name).split(".")[0] for alias in node.names}
            else:
                found.add((node.module or "").split(".")[0])
    return found


def test_every_module_is_listed_once() -> None:
    free, glue = _lists()
    modules = {p.stem for p in ADDON.glob("*.py") if p.stem != "__init__"}
    assert set(free) | set(glue) == modules and not set(free) & set(glue)


@pytest.mark.parametrize("name", _lists()[0])
def test_bpy_free_modules_import_no_blender_and_no_glue(name: str) -> None:
    imports = _imports(ADDON / f"{name}.py")
    assert not imports & HOST, f"{name}.py imports Blender: {imports & HOST}"
    _, glue = _lists()
    assert not {"." + g for g in glue} & imports, f"{name}.py imports bpy glue modules"


def test_the_architecture_list_is_a_subset() -> None:
    """tests/test_architecture.py (the lead's) checks a list of its own: it must not claim more."""
    from tests import test_architecture

    assert set(test_architecture.BPY_FREE_BLENDER_MODULES) <= set(_lists()[0])
