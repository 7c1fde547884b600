"""Fixtures for the Nuke plug-in tests: the fake `nuke` module, a plate, a real worker process.

The plug-in folder (`plugins/nuke`) is put on sys.path as Nuke does with a NUKE_PATH entry, so
the tests import `samroto_nuke` exactly as Nuke would.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from ...bridge.bridge_support import REPO, WorkerProcess, running_worker
from . import fake_nuke

PLUGIN_DIR = REPO / "plugins" / "nuke"
FRAMES = REPO / "tests" / "fixtures" / "sam2_reference" / "video_frames.npy"
FIRST, LAST = 1001, 1008
WIDTH, HEIGHT = 160, 120

if str(PLUGIN_DIR) not in sys.path:
    sys.path.insert(0, str(PLUGIN_DIR))


@pytest.fixture
def nuke(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """The fake `nuke` (and `nuke.rotopaint`) in sys.modules, fresh for each test."""
    fake_nuke.control.reset()
    monkeypatch.setitem(sys.modules, "nuke", fake_nuke)
    monkeypatch.setitem(sys.modules, "nuke.rotopaint", fake_nuke.rotopaint)
    import samroto_nuke.host as host

    host._RUNNERS.clear()
    host.runner_options.clear()
    host.reset_state()
    try:
        yield fake_nuke
    finally:
        # let no background job outlive its test
        for runner in list(host._RUNNERS.values()):
            runner.cancel()
            runner.wait(60)
        host._RUNNERS.clear()
        host.runner_options.clear()
        host.reset_state()  # no quick send of this test fires into the next one
        fake_nuke.control.pump()


def write_plate(folder: Path, *, first: int = FIRST, last: int = LAST, ext: str = "png") -> str:
    """A short real clip (the reference bedroom frames at 160x120), numbered from `first`."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = np.load(FRAMES)
    for i, number in enumerate(range(first, last + 1)):
        small = cv2.resize(frames[i % len(frames)], (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"plate.{number:04d}.{ext}"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    return str(folder / f"plate.####.{ext}")


@pytest.fixture(scope="module")
def plate(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_plate(tmp_path_factory.mktemp("plate"))


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    with running_worker(tmp_path_factory.mktemp("worker")) as process:
        yield process


@pytest.fixture
def worker_env(worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch) -> WorkerProcess:
    """Point the plug-in's client at the worker: its address and its token folder."""
    monkeypatch.setenv("SAMROTO_WORKER", worker.address)
    monkeypatch.setenv("SAMROTO_CONFIG_DIR", str(worker.config_dir))
    return worker
