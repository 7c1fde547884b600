"""The plug-in runs inside Nuke 14 to 16: Python 3.9 syntax, no torch/numpy/core, `nuke` imported
by one module only, and type-clean against the `types-nuke` stubs (mypy --strict)."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, List, Set

import pytest

from samroto.bridge import client_files

from ... import py39
from .conftest import PLUGIN_DIR

PACKAGE = PLUGIN_DIR / "samroto_nuke"
FILES = sorted(PACKAGE.glob("*.py")) + [PLUGIN_DIR / "init.py", PLUGIN_DIR / "menu.py"]
HOST_MODULE = "host.py"
ALLOWED_TOP_LEVEL = {"__future__", "samroto_nuke", "nuke"}
CLIENT_FILES = client_files()


def _inside(tree: ast.AST, predicate: Callable[[ast.AST], bool]) -> Set[int]:
    ids: Set[int] = set()
    for node in ast.walk(tree):
        if predicate(node):
            ids.update(id(n) for n in ast.walk(node))
    return ids


def _problems(path: Path) -> List[str]:
    tree, problems = py39.parse(path)
    if tree is None:
        return problems
    is_script = path.parent == PLUGIN_DIR
    if not is_script and not py39.has_future_annotations(tree):
        problems.append(f"{path.name}: needs `from __future__ import annotations`")
    type_checking = _inside(tree, lambda n: isinstance(n, ast.If) and isinstance(n.test, ast.Name)
                            and n.test.id == "TYPE_CHECKING")
    stdlib = set(sys.stdlib_module_names)
    for node, where, name, top in py39.absolute_imports(tree, path.name):
        if top == "nuke" and path.name != HOST_MODULE:
            problems.append(f"{where}: imports nuke; only {HOST_MODULE} may")
        elif top == "samroto" and id(node) not in type_checking:
            problems.append(f"{where}: imports {name} at run time (Nuke has the bundled client only)")
        elif top not in stdlib and top not in ALLOWED_TOP_LEVEL | {"samroto"}:
            problems.append(f"{where}: imports {name}, which Nuke does not have")
    return problems + py39.runtime_problems(tree, path.name)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_plugin_files_are_python_39_and_host_safe(path: Path) -> None:
    assert _problems(path) == []


def test_the_checker_catches_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import nuke\nimport numpy\nfrom samroto.core import shapes\nx: int = 1\n"
                   "y = isinstance(1, int | None)\nz = zip([1], [2], strict=True)\nw = list[int]\n")
    problems = "\n".join(_problems(bad))
    for expected in ("__future__", "only host.py may", "imports numpy", "at run time (Nuke has", "`X | Y`",
                     "zip(strict=)", "list[...]"):
        assert expected in problems
    (tmp_path / "match.py").write_text("match 1:\n    case 1:\n        pass\n")
    assert "not Python 3.9 syntax" in _problems(tmp_path / "match.py")[0]


def _mypy(tmp_path: Path, *targets: str, cwd: Path) -> "subprocess.CompletedProcess[str]":
    if importlib.util.find_spec("mypy") is None:
        raise AssertionError("mypy is missing: `pip install mypy types-nuke`")
    if not any((Path(p) / "nuke-stubs" / "__init__.pyi").is_file() for p in sys.path):
        raise AssertionError("the types-nuke stubs are missing: `pip install types-nuke`")
    # samroto is installed editable through an import hook mypy cannot follow: give it the
    # bridge client (the only samroto module the plug-in names, for types) as a plain package
    root = tmp_path / "mypypath"
    (root / "samroto" / "bridge").mkdir(parents=True)
    (root / "samroto" / "__init__.py").write_text("")
    bridge = PLUGIN_DIR.parents[1] / "bridge"
    for name in CLIENT_FILES:
        shutil.copy(bridge / name, root / "samroto" / "bridge" / name)
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")  # not the repository's config: it ignores missing imports
    env = {"MYPYPATH": str(root), "PATH": "", "HOME": str(tmp_path)}
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config), "--strict",
                           "--python-version", "3.10", "--cache-dir", str(tmp_path / "cache"), "--follow-imports=silent",
                           "--no-error-summary", *targets], capture_output=True, text=True, cwd=str(cwd), env=env,
                          timeout=300)


def test_mypy_strict_is_clean_against_the_types_nuke_stubs(tmp_path: Path) -> None:
    done = _mypy(tmp_path, "samroto_nuke", "init.py", "menu.py", cwd=PLUGIN_DIR)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


def test_mypy_uses_the_stubs_and_would_catch_a_wrong_nuke_call(tmp_path: Path) -> None:
    bad = tmp_path / "bad_glue.py"
    bad.write_text("import nuke\nimport nuke.rotopaint as rp\n"
                   "node = nuke.createNode(kind='NoOp')\n"
                   "nuke.notAFunction()\n"
                   "rp.Shape(node['curves']).append(1, 2)\n")
    done = _mypy(tmp_path, str(bad), cwd=tmp_path)
    assert done.returncode == 1
    assert 'Unexpected keyword argument "kind" for "createNode"' in done.stdout
    assert 'Module has no attribute "notAFunction"' in done.stdout
    assert 'Too many arguments for "append" of "Shape"' in done.stdout
