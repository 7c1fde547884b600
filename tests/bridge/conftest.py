"""Fixtures for the bridge tests (helpers live in bridge_support.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from .bridge_support import InProcessWorker, start_in_process


@pytest.fixture
def fake_worker(config_dir: Path, tmp_path: Path) -> Iterator[InProcessWorker]:
    handle = start_in_process(config_dir, tmp_path / "sessions", keepalive_interval_s=0.2)
    try:
        yield handle
    finally:
        if handle.thread.is_alive():
            handle.stop()


