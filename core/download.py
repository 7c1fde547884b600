"""Official checkpoints: where they come from, where they are cached, and how they are downloaded.

Files go to the user cache (`$SAMROTO_CACHE_DIR`, else `$XDG_CACHE_HOME/samroto/checkpoints`, else
`~/.cache/samroto/checkpoints`; `%LOCALAPPDATA%\\samroto\\checkpoints` on Windows). A download is
written to a temporary file, checked (byte count against Content-Length, SHA-256 against the expected
digest when one is known, and the tensors against the layout of that checkpoint), then renamed into
place, so a cached file is always complete. The SHA-256 of every verified file is recorded next to it
(`NAME.pt.sha256`) and checked again on later loads.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from .config import DOWNLOAD_URLS, ConfigError, preset

# Meta publishes no digests for these files; pin them here (or pass `sha256=`) to check against a
# known value. Without one, the file is checked structurally and its digest recorded on first download.
KNOWN_SHA256: dict[str, str] = {}

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


def _canonical_name(name: str) -> str:
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
        name = _canonical_name(text)
        cached = cache_dir() / f"{name}.pt"
        if not cached.is_file():
            raise DownloadError(missing_checkpoint_message(name))
        _check_recorded_digest(cached)
        return cached
    return path


def _check_recorded_digest(path: Path) -> None:
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


ProgressCallback = Callable[[int, "int | None"], None]


def download_checkpoint(
    name: str,
    *,
    directory: Path | None = None,
    sha256: str | None = None,
    force: bool = False,
    timeout: float = 30.0,
    progress: ProgressCallback | None = None,
) -> Path:
    """Fetch an official checkpoint into the cache and return its path (a no-op when already cached)."""
    name = _canonical_name(name)
    target_dir = directory or cache_dir()
    target = target_dir / f"{name}.pt"
    if target.is_file() and not force:
        _check_recorded_digest(target)
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    url = DOWNLOAD_URLS[name]
    expected = (sha256 or KNOWN_SHA256.get(name) or "").lower() or None
    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError) as exc:
        raise DownloadError(
            f"cannot reach {url} ({getattr(exc, 'reason', exc)}). Download it on a machine with internet access "
            f"and put it at {target}, or pass its path instead of the model name."
        ) from None
    total = response.headers.get("Content-Length")
    total_bytes = int(total) if total and total.isdigit() else None
    digest = hashlib.sha256()
    received = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=target_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, response:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if progress is not None:
                    progress(received, total_bytes)
            out.flush()
            os.fsync(out.fileno())
        if total_bytes is not None and received != total_bytes:
            raise DownloadError(f"download of {url} stopped after {received} of {total_bytes} bytes; try again")
        actual = digest.hexdigest()
        if expected is not None and actual != expected:
            raise DownloadError(f"{url}: SHA-256 {actual} does not match the expected {expected}")
        _check_layout(tmp, name)
        os.replace(tmp, target)
        target.with_name(target.name + ".sha256").write_text(f"{actual}  {target.name}\n")
        return target
    finally:
        tmp.unlink(missing_ok=True)


def _check_layout(path: Path, name: str) -> None:
    """The downloaded tensors must be exactly those of the named checkpoint."""
    import torch

    from .checkpoint import CheckpointError, _read_state_dict, build_model, check_state_dict

    try:
        state_dict = _read_state_dict(path)
        with torch.device("meta"):
            model = build_model(name, device="meta")
        check_state_dict(model, state_dict, source=f"downloaded {name}")
    except CheckpointError as exc:
        raise DownloadError(str(exc)) from None
