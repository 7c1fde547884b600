"""The client runs inside Blender and Nuke: Python 3.9 syntax, no torch, numpy optional, relative
imports only (the add-ons bundle the client files as a sub-package)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from samroto.bridge import client_files

from .. import py39
from .bridge_support import InProcessWorker, token_of

BRIDGE = Path(__file__).resolve().parents[2] / "bridge"
CLIENT_FILES = client_files()
THIRD_PARTY_ALLOWED = {"zmq", "msgpack"}
def _problems(path: Path) -> list[str]:
    tree, problems = py39.parse(path)
    if tree is None:
        return problems
    if not py39.has_future_annotations(tree):
        problems.append(f"{path.name}: needs `from __future__ import annotations`")
    optional_imports: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id == "ImportError" for h in node.handlers):
            optional_imports.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    stdlib = set(sys.stdlib_module_names)
    for node, where, name, top in py39.absolute_imports(tree, path.name):
        if top == "samroto":
            problems.append(f"{where}: absolute import of {name}; use relative imports inside bridge")
        elif top not in stdlib and top not in THIRD_PARTY_ALLOWED and top != "__future__":
            if top == "numpy" and id(node) in optional_imports:
                continue
            problems.append(f"{where}: imports {name}, which the host may not have")
    return problems + py39.runtime_problems(tree, path.name)


@pytest.mark.parametrize("name", CLIENT_FILES)
def test_client_modules_are_python_39_and_host_safe(name: str) -> None:
    assert _problems(BRIDGE / name) == []


def test_the_checker_catches_what_it_looks_for(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\nfrom samroto.core import x\nimport numpy\n"
                   "y = isinstance(1, int | None)\nz = zip([1], [2], strict=True)\n")
    problems = "\n".join(_problems(bad))
    for expected in ("__future__", "imports torch", "absolute import", "imports numpy", "`X | Y`", "zip(strict=)"):
        assert expected in problems
    (tmp_path / "match.py").write_text("match 1:\n    case 1:\n        pass\n")
    assert "not Python 3.9 syntax" in _problems(tmp_path / "match.py")[0]


_SCRIPT = r'''
import importlib.abc, json, sys

BLOCKED = ("torch", "numpy", "cv2", "av", "OpenEXR", "samroto")

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError("blocked for this test: " + name)
        return None

sys.meta_path.insert(0, Blocker())
sys.path.insert(0, sys.argv[1])
from addon.bridge import client, codec, preview
from addon.bridge import Client

address, token = sys.argv[2], sys.argv[3]
out = {}
signer = codec.Signer(token)
parts = codec.encode(signer, "probe", body={"x": [1, 2]}, arrays={"m": codec.RawArray(b"\x01\x00\x01\x01", "uint8", (2, 2))})
msg = codec.decode(parts, signer)
out["decoded"] = [type(msg.arrays["m"]).__name__, list(msg.arrays["m"].shape), msg.body["x"]]

with Client(address, token=token, timeout=10) as c:
    out["model"] = c.hello().model
    shot = c.open_session("fake:plate", 1, 5)
    update = shot.add_points(2, 1, [(10, 12)], [1])
    out["preview"] = [type(update.preview_mask(1)).__name__, len(update.preview_mask(1))]
    mask = [[1 if 8 <= x < 12 and 8 <= y < 12 else 0 for x in range(32)] for y in range(24)]
    out["mask_prompt"] = shot.add_mask(3, 2, mask).obj_ids
    out["frames"] = [u.frame for u in shot.propagate(direction="both", credit=2)]
    mattes = shot.get_frame(4)
    first = mattes.matte(1)
    out["mattes"] = [type(mattes.mattes).__name__, list(mattes.mattes.shape), list(first.shape), sum(first.tobytes()) > 0]
out["modules"] = sorted(m for m in ("torch", "numpy", "cv2") if m in sys.modules)
print(json.dumps(out))
'''


def test_the_bundled_client_works_without_torch_or_numpy(fake_worker: InProcessWorker, tmp_path: Path) -> None:
    # bundle the client files the way the add-ons do: a sub-package of the add-on
    package = tmp_path / "addon" / "bridge"
    package.mkdir(parents=True)
    (tmp_path / "addon" / "__init__.py").write_text("")
    for name in CLIENT_FILES:
        shutil.copy(BRIDGE / name, package / name)
    script = tmp_path / "run_client.py"
    script.write_text(_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(script), str(tmp_path), fake_worker.address,
                           token_of(fake_worker.config.config_dir)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["decoded"] == ["RawArray", [2, 2], [1, 2]]
    assert out["model"] == "fake"
    assert out["preview"] == ["bytes", 24 * 32]
    assert out["mask_prompt"] == [1, 2]
    assert out["frames"] == [2, 3, 4, 5, 1]
    assert out["mattes"] == ["RawArray", [2, 24, 32], [24, 32], True]
    assert out["modules"] == []
