"""The layout's import rules (../shared/docs/DESIGN.md, section Layout), read from the source tree.

Every import of every module is an arrow from its layer to another: imports inside functions and
under `if TYPE_CHECKING:` count too, since a lazy or type-only import is still a dependency. The
rules name the arrows that must not exist; the checker is also run on small made-up trees, so a
rule that stopped firing would fail here as well.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# folder -> dotted package its modules import as
PACKAGE_ROOTS = {"core": "samroto.core", "bridge": "samroto.bridge", "scripts": "samroto.scripts",
                 "plugins/blender": "samroto_blender", "plugins/nuke/samroto_nuke": "samroto_nuke"}

# Blender modules that must stay importable without bpy: their logic is tested outside Blender
BPY_FREE_BLENDER_MODULES = ("coords", "corrections", "keyframes", "plates", "previews", "prompts", "rasterize", "remote",
                            "tasks")
BLENDER_HOST_MODULES = ("bpy", "bmesh", "mathutils", "gpu", "gpu_extras", "bl_ui", "bpy_extras")


@dataclass(frozen=True)
class Arrow:
    source: str  # dotted module that imports
    target: str  # dotted module imported
    where: str  # file:line


def layer_of(module: str) -> str:
    """The architectural layer of a dotted module name (or its top-level package for third parties)."""
    if module.startswith("samroto.core.model"):
        return "model"
    if module.startswith("samroto.core.outputs"):
        return "outputs"
    if module == "samroto.core.matting" or module.startswith("samroto.core.matting."):
        return "matting"
    if module.startswith("samroto.core"):
        return "engine"
    if module.startswith("samroto.bridge.worker"):
        return "worker"
    if module.startswith("samroto.bridge"):
        return "client"
    if module.startswith("samroto.scripts"):
        return "scripts"
    if module.startswith("samroto_blender"):
        return "blender"
    if module.startswith("samroto_nuke") or module in ("init", "menu"):
        return "nuke"
    return module.split(".")[0]


def module_name(path: Path, root: Path) -> str:
    relative = path.relative_to(root)
    for folder, package in sorted(PACKAGE_ROOTS.items(), key=lambda kv: -len(kv[0])):
        folder_path = Path(folder)
        if relative.parts[: len(folder_path.parts)] == folder_path.parts:
            rest = list(relative.with_suffix("").parts[len(folder_path.parts):])
            if rest and rest[-1] == "__init__":
                rest = rest[:-1]
            return ".".join([package, *rest])
    return ".".join(relative.with_suffix("").parts[-1:])  # plugins/nuke/init.py, menu.py


def imports_of(path: Path, module: str) -> list[Arrow]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    arrows = []
    for node in ast.walk(tree):
        where = f"{path.name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            arrows += [Arrow(module, alias.name, where) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                parts = package.split(".")
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            # `from . import x` imports the module x
            targets = [f"{base}.{a.name}" for a in node.names] if node.module is None else [base]
            arrows += [Arrow(module, target, where) for target in targets]
    return arrows


def import_graph(root: Path) -> list[Arrow]:
    arrows: list[Arrow] = []
    for folder in ("core", "bridge", "scripts", "plugins"):
        for path in sorted((root / folder).rglob("*.py")):
            arrows += imports_of(path, module_name(path, root))
    return arrows


def forbidden(arrow: Arrow) -> str | None:
    """Why an arrow breaks the layout, or None when it is allowed."""
    src, dst = layer_of(arrow.source), layer_of(arrow.target)
    samroto = arrow.target == "samroto" or arrow.target.startswith("samroto.")
    if src == "model" and samroto and dst != "model":
        return "core/model imports nothing else of samroto (the network knows nothing of sessions)"
    if src == "matting" and samroto and dst not in ("matting", "model"):
        return "core/matting (the matting network) imports only torch, numpy and core/model"
    if src == "outputs" and dst == "torch":
        return "core/outputs never imports torch"
    if src == "client" and (dst in ("worker", "model", "outputs", "engine", "torch")):
        return "the bridge client side (bundled in the add-ons) never imports bridge/worker, core or torch"
    if src in ("model", "outputs", "engine") and dst in ("client", "worker", "scripts"):
        return "core never imports bridge or scripts"
    if src in ("blender", "nuke") and ((samroto and dst != "client") or dst == "torch"):
        return "plug-ins import only the (bundled) bridge client, never core, the worker or torch"
    if src == "blender" and dst in ("nuke", "samroto_nuke"):
        return "Blender never imports Nuke"
    if src == "nuke" and (dst in ("blender", "samroto_blender") or dst in BLENDER_HOST_MODULES):
        return "Nuke never imports Blender"
    return None


def violations(root: Path) -> list[str]:
    found = []
    for arrow in import_graph(root):
        reason = forbidden(arrow)
        if reason:
            found.append(f"{arrow.where}: {arrow.source} -> {arrow.target}: {reason}")
    return found


def test_the_source_tree_keeps_the_import_rules() -> None:
    assert violations(REPO) == []


# Each rule, shown to fire on a made-up tree: (file to add, its source).
FORBIDDEN_EXAMPLES = {
    "model -> engine": ("core/model/bad.py", "from ..video_session import VideoSession\n"),
    "model -> outputs (lazy)": ("core/model/bad.py", "def f():\n    from samroto.core.outputs import mattes\n"),
    "outputs -> torch": ("core/outputs/bad.py", "import torch\n"),
    "matting -> outputs": ("core/matting/bad.py", "from ..outputs import edges\n"),
    "client -> worker": ("bridge/bad.py", "from .worker import server\n"),
    "client -> core": ("bridge/bad.py", "from samroto.core import load_model\n"),
    "client -> torch": ("bridge/bad.py", "import torch.nn\n"),
    "core -> bridge": ("core/bad.py", "from ..bridge import protocol\n"),
    "core -> scripts (type-only)": ("core/outputs/bad.py",
                                    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                    "    from samroto.scripts import cli\n"),
    "plugins -> core": ("plugins/blender/bad.py", "from samroto.core.outputs import shapes\n"),
    "plugins -> worker": ("plugins/nuke/samroto_nuke/bad.py", "from samroto.bridge.worker import server\n"),
    "Blender -> Nuke": ("plugins/blender/bad.py", "import nuke\n"),
    "Nuke -> Blender": ("plugins/nuke/samroto_nuke/bad.py", "import bpy\n"),
}


@pytest.mark.parametrize("case", sorted(FORBIDDEN_EXAMPLES))
def test_each_rule_fires_on_a_forbidden_import(case: str, tmp_path: Path) -> None:
    for folder in ("core/model", "core/outputs", "core/matting", "bridge/worker", "scripts", "plugins/blender",
                   "plugins/nuke/samroto_nuke"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
    assert violations(tmp_path) == []
    relative, source = FORBIDDEN_EXAMPLES[case]
    (tmp_path / relative).write_text(source)
    found = violations(tmp_path)
    assert len(found) == 1, found


def test_allowed_arrows_are_not_flagged(tmp_path: Path) -> None:
    files = {
        "core/video_session.py": "from .model.sam2 import SAM2Model\nfrom .outputs import mattes\n",
        "core/outputs/mattes.py": "import numpy\nfrom ..frames import FramePattern\n",
        "bridge/worker/server.py": "from .. import codec\nfrom ...core import load_model\nimport torch\n",
        "bridge/client.py": "import zmq\nfrom . import codec\n",
        "scripts/cli.py": "from samroto.core import load_model\nfrom samroto.bridge import Client\n",
        "plugins/blender/ops.py": "import bpy\nfrom .bridge import Client\n",
        "plugins/nuke/samroto_nuke/host.py": "import nuke\nfrom .bridge import Client\n",
    }
    for relative, source in files.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(source)
    assert violations(tmp_path) == []


# --- what static reading cannot see: the transitive imports of a real interpreter -------------------

BLOCKER = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys
    BLOCKED = set(sys.argv[2].split(","))
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked: {name}")
            return None
    sys.meta_path.insert(0, Blocker())
    package = importlib.import_module(sys.argv[1])
    names = [package.__name__] + [m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")]
    for name in names:
        importlib.import_module(name)
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print(len(names))
""")


def _import_all_with(package: str, blocked: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCKER, package, blocked], capture_output=True, text=True,
                          timeout=120)


def test_every_outputs_module_imports_without_torch() -> None:
    done = _import_all_with("samroto.core.outputs", "torch")
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[-1]) >= 6  # the package and its modules were all imported


def test_the_import_blocker_catches_torch() -> None:
    done = _import_all_with("samroto.core.model", "torch")
    assert done.returncode != 0 and "blocked: torch" in done.stderr


def test_the_bridge_client_imports_without_torch_or_core() -> None:
    code = ("import sys, samroto.bridge as b, samroto.bridge.client, samroto.bridge.preview; "
            "assert 'torch' not in sys.modules and 'samroto.core' not in sys.modules, "
            "[m for m in sys.modules if m.startswith(('torch', 'samroto.core'))]")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]


def test_light_imports_stay_light() -> None:
    """`import samroto.core` and `samroto.bridge` load no torch until a name that needs it is used."""
    code = ("import sys, samroto.core, samroto.bridge; assert 'torch' not in sys.modules; "
            "from samroto.core import load_model; assert 'torch' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.parametrize("name", BPY_FREE_BLENDER_MODULES)
def test_listed_blender_modules_stay_bpy_free(name: str) -> None:
    path = REPO / "plugins" / "blender" / f"{name}.py"
    arrows = imports_of(path, module_name(path, REPO))
    host = [a for a in arrows if a.target.split(".")[0] in BLENDER_HOST_MODULES]
    assert host == [], f"{name}.py must stay importable without Blender: {host}"
    # and what it imports of the add-on is bpy-free too (or the bundled client)
    inner = {a.target.split(".")[1] for a in arrows if a.target.startswith("samroto_blender.")}
    assert inner <= set(BPY_FREE_BLENDER_MODULES) | {"bridge"}, inner
