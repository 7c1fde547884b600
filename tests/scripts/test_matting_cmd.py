"""`samroto matte --matting`: the learned matting pass on the micro SAM 2 model's masks (random ViTMatte)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samroto.core.matting import MattingModel
from samroto.core.outputs.mattes import read_matte, read_matte_attributes, read_matte_layers
from samroto.scripts.cli import main

from ..core.test_matting_pass import TINY
from .test_matte_cmd import MICRO, make_plate


def test_matte_with_matting_and_layered_exr(tmp_path: Path) -> None:
    torch.manual_seed(0)
    checkpoint = tmp_path / "tiny_vitmatte.pt"
    torch.save(MattingModel(TINY).state_dict(), checkpoint)
    plate = make_plate(tmp_path / "plate", count=2)
    plain, matted = tmp_path / "plain", tmp_path / "matted"
    assert main(["matte", plate, "--point", "60,60", "--out", str(plain), *MICRO]) == 0
    assert main(["matte", plate, "--point", "60,60", "--matting", str(checkpoint), "--layered-exr",
                 "--out", str(matted), *MICRO]) == 0
    a = read_matte(plain / "plate_obj1_matte.1002.exr")
    b = read_matte(matted / "plate_obj1_matte.1002.exr")
    assert a.shape == b.shape == (120, 160)
    changed = np.abs(a - b) > 1e-3
    assert 0 < changed.sum() < 0.5 * a.size  # the band around the edge, not the whole frame
    # one layered EXR per frame beside the per-object files, with the confidence attributes
    layers = read_matte_layers(matted / "plate_layers.1002.exr")
    assert set(layers) == {"obj1"}
    np.testing.assert_allclose(layers["obj1"], b, atol=1e-3)
    attributes = read_matte_attributes(matted / "plate_layers.1002.exr")
    assert "obj1/samroto/objectScore" in attributes
    assert sorted(p.name for p in matted.glob("plate_layers.*.exr")) == [f"plate_layers.{f}.exr" for f in (1001, 1002)]


def test_missing_matting_checkpoint_fails_before_tracking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setenv("SAMROTO_CACHE_DIR", str(tmp_path / "cache"))
    plate = make_plate(tmp_path / "plate", count=2)
    status = main(["matte", plate, "--point", "60,60", "--matting", "vitmatte-base", "--out", str(tmp_path / "out"),
                   *MICRO])
    assert status == 2
    error = capsys.readouterr().err
    assert "samroto download vitmatte-base" in error and str(tmp_path / "cache") in error
    assert not list(tmp_path.glob("out/**/*.exr"))  # nothing tracked or written
