"""The learned matting pass in a real worker: session option, per-request override, layered EXR, and the
message when the worker lacks the checkpoint (random vitmatte-small weights in a private cache)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from samroto.bridge import BadRequest
from samroto.core.matting import MattingModel, matting_preset
from samroto.core.outputs.mattes import read_matte, read_matte_layers

from ..bridge_support import WorkerProcess, running_worker
from .test_worker_process import connect, make_plate


@pytest.fixture(scope="module")
def matting_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    cache = tmp_path_factory.mktemp("cache")
    torch.manual_seed(0)
    model = MattingModel(matting_preset("vitmatte-small"))
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()},
               cache / "vitmatte-small.bin")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SAMROTO_CACHE_DIR", str(cache))  # the worker process inherits it
        with running_worker(tmp_path_factory.mktemp("worker")) as process:
            yield process


def test_session_matting_request_override_and_layered_exr(matting_worker: WorkerProcess, tmp_path: Path) -> None:
    plate = make_plate(tmp_path / "plate")
    with connect(matting_worker, timeout=120.0) as client:
        with pytest.raises(BadRequest, match=r"samroto download vitmatte-base"):
            client.open_session(plate, matting="vitmatte-base")
        with pytest.raises(BadRequest, match="matting must be one of"):
            client.open_session(plate, matting="/etc/passwd")
        shot = client.open_session(plate, name="hero", matte_dir=str(tmp_path / "matted"), matting="vitmatte-small")
        shot.add_points(1003, 1, [(80, 60)], [1])
        matted = list(shot.propagate(start=1003, last=1005, layered_exr=True))
        plain = list(shot.propagate(start=1003, last=1005, matting="none", matte_dir=str(tmp_path / "plain")))
    a, b = read_matte(plain[1].matte_paths[1]), read_matte(matted[1].matte_paths[1])
    assert a.shape == b.shape and (np.abs(a - b) > 1e-3).any()  # the micro tracker is unsure almost everywhere
    layers = read_matte_layers(tmp_path / "matted" / "hero_layers.1004.exr")
    np.testing.assert_allclose(layers["obj1"], b, atol=1e-3)
    assert not list((tmp_path / "plain").glob("*_layers.*"))
