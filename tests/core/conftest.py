"""Fixtures for the model tests: the two reduced reference models and their recorded outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samroto.core.model.checkpoint import load_model
from samroto.core.model.config import load_config_file
from samroto.core.model.sam2 import SAM2Model

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sam2_reference"
VARIANTS = ("sam2.1", "sam2")
TOLERANCE = 1e-3


def micro_model(variant: str) -> SAM2Model:
    config = load_config_file(str(FIXTURES / "micro_config.json"), variant=variant)
    return load_model(FIXTURES / f"micro_{variant}.pt", config=config)


@pytest.fixture(scope="session", params=VARIANTS)
def variant(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def model(variant: str) -> SAM2Model:
    torch.manual_seed(0)
    return micro_model(variant)


@pytest.fixture(scope="session")
def video_frames() -> np.ndarray:
    return np.load(FIXTURES / "video_frames.npy")


def assert_close(actual: "torch.Tensor | np.ndarray", expected: np.ndarray, what: str) -> None:
    if isinstance(actual, torch.Tensor):
        actual = actual.detach().float().cpu().numpy()
    actual = np.asarray(actual).reshape(expected.shape)
    diff = float(np.abs(actual - expected).max()) if expected.size else 0.0
    assert diff <= TOLERANCE, f"{what}: max abs difference {diff:.3g} > {TOLERANCE}"
