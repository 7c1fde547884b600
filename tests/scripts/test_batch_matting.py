"""The batch sidecar's `session.matting`: parsed strictly, run per shot, a missing checkpoint fails the shot."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
import torch

from samroto.core.matting import MattingModel, matting_preset
from samroto.core.outputs.mattes import read_matte
from samroto.core.sidecar import SidecarError, load_sidecar
from samroto.scripts.cli import main

from samroto.core.sidecar import save_sidecar, session_to_sidecar
from samroto.core.video_session import VideoSession

from .batch_support import MICRO, MICRO_CHECKPOINT, disc_center, make_sequence, micro_model


@pytest.fixture(scope="module")
def shot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 2-frame shot's sidecar, exported from a prompted session, with `session.matting` set."""
    root = tmp_path_factory.mktemp("batch")
    plate = make_sequence(root / "plate", first=1001, count=2, seed=1)
    (root / "jobs").mkdir()
    model = micro_model()
    with VideoSession(model, plate, state_dir=root / "prompting") as session:
        session.add_points(1002, 1, [list(disc_center(1))], [1])
        sidecar = session_to_sidecar(session, model=str(MICRO_CHECKPOINT), name="hero_shot")
    sidecar.setdefault("session", {})["matting"] = "vitmatte-small"  # session_to_sidecar gives the JSON dict
    save_sidecar(sidecar, root / "jobs" / "hero.json")
    return root / "jobs" / "hero.json"


def test_sidecar_matting_field_round_trips_and_is_checked(shot: Path, tmp_path: Path) -> None:
    sidecar = load_sidecar(shot)
    assert sidecar.session.matting == "vitmatte-small"
    assert sidecar.to_dict()["session"]["matting"] == "vitmatte-small"
    data = json.loads(shot.read_text())
    data["session"]["matting"] = "/some/file.pt"
    (tmp_path / "bad.json").write_text(json.dumps(data))
    with pytest.raises(SidecarError, match="session.matting"):
        load_sidecar(tmp_path / "bad.json")


def test_batch_runs_the_sidecars_matting_pass(shot: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SAMROTO_CACHE_DIR", str(cache))
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary), contextlib.redirect_stderr(summary):
        status = main(["batch", str(shot.parent), "--out", str(tmp_path / "missing"), *MICRO])
    assert status != 0 and "samroto download vitmatte-small" in summary.getvalue()

    # with vitmatte-small (random weights) in the cache the shot runs through the pass
    cache.mkdir()
    torch.manual_seed(0)
    model = MattingModel(matting_preset("vitmatte-small"))
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()},
               cache / "vitmatte-small.bin")
    del model
    assert main(["batch", str(shot.parent), "--out", str(tmp_path / "matted"), "--quiet", *MICRO]) == 0
    matted = sorted((tmp_path / "matted").rglob("*_matte.*.exr"))
    assert matted
    for path in matted:
        alpha = read_matte(path)
        assert alpha.shape == (120, 160) and 0.0 <= alpha.min() and alpha.max() <= 1.0
