"""VideoSession reproduces the official video predictor on the scripted scenarios, in both memory modes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from .conftest import FIXTURES, VARIANTS, assert_close
from .scenario import compare_step, open_fixture_session, run_step, scenario_model


@pytest.mark.parametrize("memory", ["in_memory", "on_disk"])
@pytest.mark.parametrize("occluded", [False, True], ids=["visible", "occluded"])
@pytest.mark.parametrize("variant", VARIANTS)
def test_scenario_matches_reference(variant: str, occluded: bool, memory: str, tmp_path: Path) -> None:
    model, spec = scenario_model(variant, occluded)
    ref = dict(np.load(FIXTURES / f"scenario_{variant}{'_occluded' if occluded else ''}.npz"))
    frames = np.load(FIXTURES / "video_frames.npy")
    height, width = spec["video_size_hw"]
    session = open_fixture_session(model, spec, frames, tmp_path / "state" if memory == "on_disk" else None)
    try:
        for i, step in enumerate(spec["steps"]):
            ours = run_step(session, step, height, width)
            compare_step(i, step, ours, ref, session, assert_close)
    finally:
        session.close()
