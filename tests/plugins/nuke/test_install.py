"""The install script: the plug-in folder for NUKE_PATH, the bundled client, per-Python dependencies.

One test runs pip for real (for this Python and machine only, which the package index serves)
and then runs the installed plug-in in a bare interpreter: no site-packages, torch, numpy or
samroto, as inside Nuke.
"""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from samroto.scripts import install_nuke_plugin as installer

from ...bridge.bridge_support import start_in_process, token_of
from .conftest import PLUGIN_DIR

THIS_PYTHON = "%d.%d" % sys.version_info[:2]


class FakePip:
    """Records pip commands and fills the target like a successful install."""

    def __init__(self, returncode: int = 0, stderr: str = "") -> None:
        self.commands: List[List[str]] = []
        self.returncode, self.stderr = returncode, stderr

    def __call__(self, command: List[str]) -> "subprocess.CompletedProcess[str]":
        self.commands.append(command)
        target = Path(command[command.index("--target") + 1])
        for name in ("zmq", "msgpack", "pyzmq-27.3.0.dist-info", "msgpack-1.1.2.dist-info"):
            (target / name).mkdir(parents=True, exist_ok=True)
        return subprocess.CompletedProcess(command, self.returncode, "", self.stderr)


def test_the_plugin_folder_holds_init_menu_the_package_and_the_client(tmp_path: Path) -> None:
    pip = FakePip()
    report = installer.install(tmp_path / "nuke", pythons=["3.9", "3.11"], platforms=["linux-x86_64", "windows-x86_64"],
                               run=pip)
    dest = report.dest
    assert (dest / "init.py").read_text() == (PLUGIN_DIR / "init.py").read_text()
    assert (dest / "menu.py").read_text() == (PLUGIN_DIR / "menu.py").read_text()
    assert sorted(p.name for p in (dest / "samroto_nuke").glob("*.py")) == sorted(
        p.name for p in (PLUGIN_DIR / "samroto_nuke").glob("*.py"))
    bundled = dest / "samroto_nuke" / "bridge"
    for name in installer.CLIENT_FILES:
        assert filecmp.cmp(bundled / name, installer.BRIDGE_SOURCE / name, shallow=False)
    assert not (bundled / "server.py").exists()  # the worker side stays out of Nuke
    assert sorted(report.dependencies) == sorted(str(dest / "site-packages" / p / v) for p in
                                                 ("linux-x86_64", "windows-x86_64") for v in ("py39", "py311"))


def test_pip_is_asked_for_each_nuke_python_and_platform(tmp_path: Path) -> None:
    pip = FakePip()
    installer.install(tmp_path / "nuke", platforms=["linux-x86_64"], run=pip, extra=["--index-url=https://x/simple"])
    assert [c[c.index("--python-version") + 1] for c in pip.commands] == ["3.9", "3.10", "3.11"]
    first = pip.commands[0]
    assert first[:4] == [sys.executable, "-m", "pip", "install"]
    assert Path(first[first.index("--target") + 1]) == tmp_path.resolve() / "nuke" / "site-packages" / "linux-x86_64" / "py39"
    platforms = [first[i + 1] for i, arg in enumerate(first) if arg == "--platform"]
    assert platforms == ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    assert "--only-binary=:all:" in first and "--index-url=https://x/simple" in first
    assert first[-2:] == ["pyzmq>=25", "msgpack>=1.0"]
    assert not any("torch" in arg for arg in first)


def test_bad_requests_and_pip_failures_say_what_to_fix(tmp_path: Path) -> None:
    with pytest.raises(installer.InstallError, match="unknown platform 'amiga'"):
        installer.install(tmp_path / "a", platforms=["amiga"], run=FakePip())
    with pytest.raises(installer.InstallError, match="versions like 3.9"):
        installer.install(tmp_path / "a", pythons=["2.7"], run=FakePip())
    with pytest.raises(installer.InstallError, match="inside the plug-in's source folder"):
        installer.install(PLUGIN_DIR / "out", run=FakePip())
    with pytest.raises(installer.InstallError, match="(?s)for Python 3.9 on linux-x86_64.*No matching distribution"):
        installer.install(tmp_path / "b", pythons=["3.9"], platforms=["linux-x86_64"],
                          run=FakePip(returncode=1, stderr="ERROR: No matching distribution found for pyzmq"))
    assert installer.main(["--dest", str(tmp_path / "c"), "--platform", "amiga"]) == 1


def test_the_script_and_the_plugin_agree_on_folder_names(tmp_path: Path) -> None:
    import samroto_nuke

    assert installer.this_platform() == samroto_nuke.platform_key()
    for system, machine, key in (("Windows", "AMD64", "windows-x86_64"), ("Darwin", "arm64", "macos-arm64"),
                                 ("Linux", "aarch64", "linux-arm64")):
        assert samroto_nuke.platform_key(system, machine) == key
    assert set(installer.PLATFORM_TAGS) >= {"linux-x86_64", "windows-x86_64", "macos-arm64", "macos-x86_64"}
    for python in installer.NUKE_PYTHONS:
        version = tuple(int(p) for p in python.split("."))
        assert installer.dependency_dir(tmp_path, "linux-x86_64", python) == Path(
            samroto_nuke.dependency_folder(str(tmp_path), version, "linux-x86_64"))  # type: ignore[arg-type]


_IN_NUKE = r'''
import importlib.abc, json, sys

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "numpy", "cv2", "av", "OpenEXR", "samroto"):
            raise ImportError("not inside Nuke: " + name)
        return None

sys.meta_path.insert(0, Blocker())
plugin_dir, address, config_dir = sys.argv[1:4]
sys.path.insert(0, plugin_dir)  # Nuke puts every NUKE_PATH folder on sys.path
exec(open(plugin_dir + "/init.py").read(), {"__name__": "__main__"})

from samroto_nuke import connection
from samroto_nuke.jobs import JobRunner, WorkerJob
from samroto_nuke.plate import PlateSource
from samroto_nuke.prompts import KnobPrompts
from samroto_nuke.settings import ConnectionSettings, PluginSettings

calls = []
settings = PluginSettings(connection=ConnectionSettings(address=address, config_dir=config_dir))
plate = PlateSource(plate="fake:plate", first=1, last=5)
job = WorkerJob(action="prompts", node_name="SamRoto1", plate=plate, nuke_frame=2,
                knob_prompts=KnobPrompts(obj_id=1, frame=2, positive=((10.0, 12.0),)), settings=settings)
sent = JobRunner(job, run_on_main=lambda fn, *args: calls.append(fn.__name__)).run()
job = WorkerJob(action="forward", node_name="SamRoto1", plate=plate, nuke_frame=2, session_id=sent.session_id,
                settings=settings)
result = JobRunner(job, run_on_main=lambda fn, *args: calls.append(fn.__name__)).run()
print(json.dumps({
    "client": connection.load_client().__name__,
    "zmq": sys.modules["zmq"].__file__,
    "state": result.state, "message": result.message, "frames": result.tracked_frames,
    "prompted": sent.prompted, "calls": calls,
    "blocked": sorted(m for m in ("torch", "numpy", "samroto") if m in sys.modules),
}))
'''


def test_the_installed_plugin_runs_in_a_bare_python_like_nukes(tmp_path: Path) -> None:
    report = installer.install(tmp_path / "nuke", pythons=[THIS_PYTHON])
    folder = installer.dependency_dir(report.dest, installer.this_platform(), THIS_PYTHON)
    assert (folder / "zmq").is_dir() and (folder / "msgpack").is_dir(), report.dependencies
    worker = start_in_process(tmp_path / "config", tmp_path / "sessions", keepalive_interval_s=0.2)
    try:
        script = tmp_path / "in_nuke.py"
        script.write_text(_IN_NUKE)
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SAMROTO_WORKER")}
        # -S -I: no site-packages, no user paths; only the stdlib and the plug-in folder
        done = subprocess.run([sys.executable, "-S", "-I", str(script), str(report.dest), worker.address,
                               str(tmp_path / "config")], capture_output=True, text=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        worker.stop()
    assert token_of(tmp_path / "config")
    assert out["client"] == "samroto_nuke.bridge.client"
    assert out["zmq"].startswith(str(folder))
    assert (out["state"], out["frames"], out["prompted"]) == ("done", [2, 3, 4, 5], [[1, 2]]), out["message"]
    assert out["calls"][0] == "session_opened" and out["calls"][-1] == "job_finished"
    assert out["blocked"] == []
