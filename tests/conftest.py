"""Shared test fixtures: paths to the SAM 2 reference fixtures copied into the repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "sam2_reference"
MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def micro_config() -> dict:
    return json.loads((FIXTURES / "micro_config.json").read_text())
