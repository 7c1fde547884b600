"""Matting checkpoints in the shared cache: a real HTTP transfer on loopback, fallback to the .bin, the
offline and missing-file messages, and `samroto download vitmatte-small`."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest
import torch

from samroto.core.matting import MattingCheckpointError, MattingModel, matting_preset
from samroto.core.matting import download as matting_download
from samroto.core.matting.download import download_matting_checkpoint, resolve_matting_checkpoint
from samroto.core.matting_pass import load_matting_pass
from samroto.core.model.download import DownloadError
from samroto.scripts.cli import main as cli_main

from ...http_support import serve_folder


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like a Hugging Face repository that only has `pytorch_model.bin` (vitmatte-small, half)."""
    folder = tmp_path_factory.mktemp("hub")
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = MattingModel(matting_preset("vitmatte-small"))
    torch.save({k: (v.half() if v.is_floating_point() else v) for k, v in model.state_dict().items()},
               folder / "pytorch_model.bin")
    return folder


@pytest.fixture
def server(served: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with serve_folder(served) as base:
        monkeypatch.setattr(matting_download, "download_url", lambda name, file="model.safetensors": f"{base}/{file}")
        yield base


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAMROTO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_missing_model_says_how_to_get_it_and_where_to_put_it(cache: Path) -> None:
    with pytest.raises(MattingCheckpointError) as caught:
        load_matting_pass("vitmatte-small")
    message = str(caught.value)
    assert "samroto download vitmatte-small" in message
    assert str(cache / "vitmatte-small.safetensors") in message
    assert "huggingface.co/hustvl/vitmatte-small-composition-1k" in message


def test_download_falls_back_to_the_bin_and_loads_by_name(server: str, cache: Path, capsys) -> None:  # noqa: ANN001
    assert cli_main(["download", "vitmatte-small"]) == 0
    path = cache / "vitmatte-small.bin"
    assert path.is_file() and (cache / "vitmatte-small.bin.sha256").is_file()
    assert str(path) in capsys.readouterr().out
    assert resolve_matting_checkpoint("vitmatte-small") == (path, "vitmatte-small")
    matting = load_matting_pass("vitmatte-small")
    assert matting.model.config.name == "vitmatte-small"
    # a corrupted cached file is caught by its recorded digest
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(MattingCheckpointError, match="corrupt"):
        resolve_matting_checkpoint("vitmatte-small")


def test_wrong_size_download_is_refused(server: str, cache: Path) -> None:
    with pytest.raises(DownloadError, match="not vitmatte-base"):
        download_matting_checkpoint("vitmatte-base")
    assert not list(cache.glob("vitmatte-base*"))


def test_offline_download_says_where_to_put_the_file(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(matting_download, "download_url", lambda name, file="x": "http://127.0.0.1:9/" + file)
    with pytest.raises(DownloadError, match=r"cannot reach .*put it at .*vitmatte-small\.safetensors"):
        download_matting_checkpoint("vitmatte-small", timeout=2)
