"""The local cache of official checkpoints: where files live, and names resolved to cached files.

Files go to the user cache (`$SAMROTO_CACHE_DIR`, else `$XDG_CACHE_HOME/samroto/checkpoints`, else
`~/.cache/samroto/checkpoints`; `%LOCALAPPDATA%\\samroto\\checkpoints` on Windows). The SHA-256 of every
verified file is recorded next to it (`NAME.pt.sha256`) and checked again on later loads. Both the
loader (`checkpoint`) and the downloader (`download`) use this module, so neither imports the other
to find a file.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from .config import DOWNLOAD_URLS, ConfigError, preset

CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A checkpoint could not be fetched or is not in the cache; the message says what to do."""


def cache_dir() -> Path:
    env = os.environ.get("SAMROTO_CACHE_DIR")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
        return base / "samroto" / "checkpoints"
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "samroto" / "checkpoints"


def canonical_name(name: str) -> str:
    try:
        return preset(name).name
    except ConfigError as exc:
        raise DownloadError(str(exc)) from None


def missing_checkpoint_message(name: str) -> str:
    url = DOWNLOAD_URLS[name]
    return (
        f"checkpoint {name!r} is not in the cache ({cache_dir() / (name + '.pt')}). "
        f"Run `samroto download {name}` on a machine with internet access, or download {url} "
        f"yourself and put it at {cache_dir() / (name + '.pt')} (or pass the file's path instead of the name)."
    )


def resolve_checkpoint_path(path_or_name: "str | os.PathLike[str]") -> Path:
    """A file path as is; a model name (`sam2.1_hiera_tiny`) as its cached file."""
    path = Path(path_or_name)
    if path.exists() or path.suffix == ".pt" and len(path.parts) > 1:
        return path
    text = str(path_or_name)
    if text.removesuffix(".pt") in DOWNLOAD_URLS or text.startswith(("sam2_hiera_", "sam2.1_hiera_")):
        name = canonical_name(text)
        cached = cache_dir() / f"{name}.pt"
        if not cached.is_file():
            raise DownloadError(missing_checkpoint_message(name))
        check_recorded_digest(cached)
        return cached
    return path


def check_recorded_digest(path: Path) -> None:
    record = path.with_name(path.name + ".sha256")
    if not record.is_file():
        return
    expected = record.read_text().split()[0]
    actual = sha256_of(path)
    if actual != expected:
        raise DownloadError(
            f"{path} is corrupt (SHA-256 {actual} differs from the {expected} recorded when it was downloaded); "
            f"delete it and run `samroto download {path.stem}` again"
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()
