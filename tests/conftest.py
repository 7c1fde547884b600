"""Fixtures shared by every test folder."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private samroto config folder (token, worker address) for workers and clients started by a test."""
    folder = tmp_path / "config"
    monkeypatch.setenv("SAMROTO_CONFIG_DIR", str(folder))
    monkeypatch.delenv("SAMROTO_WORKER", raising=False)
    return folder
