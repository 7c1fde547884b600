"""Checkpoint download into the cache: a real HTTP transfer on loopback, checks, and the offline message."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterator

import pytest
import torch

from samroto.core.model import config as config_module
from samroto.core.model.checkpoint import build_model, load_model
from samroto.core.model.download import DownloadError, cache_dir, download_checkpoint, resolve_checkpoint_path
from samroto.scripts.cli import main as cli_main

from ...http_support import serve_folder

NAME = "sam2.1_hiera_tiny"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = build_model(NAME)
    path = tmp_path_factory.mktemp("served") / f"{NAME}.pt"
    torch.save({"model": {k: v.half() for k, v in model.state_dict().items()}}, path)
    return path


@pytest.fixture
def server(tiny_checkpoint: Path) -> Iterator[str]:
    """A loopback HTTP server serving the served folder; yields its base URL."""
    with serve_folder(tiny_checkpoint.parent) as base:
        yield base


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SAMROTO_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_download_then_load_by_name(
    server: str, cache: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(config_module.DOWNLOAD_URLS, NAME, f"{server}/{NAME}.pt")
    seen: list[tuple[int, int | None]] = []
    path = download_checkpoint(NAME, progress=lambda done, total: seen.append((done, total)))
    assert path == cache / f"{NAME}.pt" == cache_dir() / f"{NAME}.pt"
    assert path.read_bytes() == tiny_checkpoint.read_bytes()
    assert seen[-1] == (tiny_checkpoint.stat().st_size, tiny_checkpoint.stat().st_size)
    digest = hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
    assert (cache / f"{NAME}.pt.sha256").read_text().split()[0] == digest
    assert not list(cache.glob("*.part")), "no temporary file may remain"
    model = load_model(NAME)
    assert model.config.name == NAME


def test_wrong_checksum_is_refused_and_nothing_is_cached(
    server: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(config_module.DOWNLOAD_URLS, NAME, f"{server}/{NAME}.pt")
    with pytest.raises(DownloadError, match="does not match the expected 00000"):
        download_checkpoint(NAME, sha256="0" * 64)
    assert not (cache / f"{NAME}.pt").exists()
    assert not list(cache.glob("*.part"))


def test_file_with_another_layout_is_refused(
    server: str, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # serving the tiny weights under the small model's name: the layout check catches it
    monkeypatch.setitem(config_module.DOWNLOAD_URLS, "sam2.1_hiera_small", f"{server}/{NAME}.pt")
    with pytest.raises(DownloadError, match="does not match the model configuration"):
        download_checkpoint("sam2.1_hiera_small")
    assert not (cache / "sam2.1_hiera_small.pt").exists()


def test_corrupted_cached_file_is_detected(server: str, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(config_module.DOWNLOAD_URLS, NAME, f"{server}/{NAME}.pt")
    path = download_checkpoint(NAME)
    with open(path, "r+b") as f:
        f.seek(1000)
        f.write(b"\x00garbage")
    with pytest.raises(DownloadError, match="corrupt"):
        resolve_checkpoint_path(NAME)


def test_offline_fails_at_once_with_instructions(cache: Path) -> None:
    # the real address: this machine has no internet, so this is the offline path
    with pytest.raises(DownloadError) as info:
        download_checkpoint(NAME, timeout=10)
    message = str(info.value)
    assert "dl.fbaipublicfiles.com" in message and str(cache / f"{NAME}.pt") in message


def test_missing_from_cache_says_how_to_get_it(cache: Path) -> None:
    with pytest.raises(DownloadError, match=r"samroto download sam2\.1_hiera_tiny"):
        load_model("sam2.1_hiera_tiny")


def test_cli_download(server: str, cache: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # noqa: ANN001
    monkeypatch.setitem(config_module.DOWNLOAD_URLS, NAME, f"{server}/{NAME}.pt")
    assert cli_main(["download", NAME]) == 0
    assert str(cache / f"{NAME}.pt") in capsys.readouterr().out
    assert cli_main(["download", "sam9_hiera_huge"]) == 1
    assert "unknown model" in capsys.readouterr().err
