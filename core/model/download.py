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
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from .cache import (CHUNK, DownloadError, cache_dir, canonical_name, check_recorded_digest, missing_checkpoint_message,
                    resolve_checkpoint_path, sha256_of)
from .config import DOWNLOAD_URLS

__all__ = ["DownloadError", "KNOWN_SHA256", "cache_dir", "download_checkpoint", "fetch_into_cache",
           "missing_checkpoint_message", "resolve_checkpoint_path", "sha256_of"]

# Meta publishes no digests for these files; pin them here (or pass `sha256=`) to check against a
# known value. Without one, the file is checked structurally and its digest recorded on first download.
KNOWN_SHA256: dict[str, str] = {}

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
    name = canonical_name(name)
    target_dir = directory or cache_dir()
    target = target_dir / f"{name}.pt"
    if target.is_file() and not force:
        check_recorded_digest(target)
        return target
    url = DOWNLOAD_URLS[name]
    expected = (sha256 or KNOWN_SHA256.get(name) or "").lower() or None
    return fetch_into_cache(url, target, sha256=expected, timeout=timeout, progress=progress,
                            check=lambda path: _check_layout(path, name))


def fetch_into_cache(
    url: str,
    target: Path,
    *,
    sha256: str | None = None,
    timeout: float = 30.0,
    progress: ProgressCallback | None = None,
    check: Callable[[Path], None] | None = None,
) -> Path:
    """Stream `url` to a temporary file beside `target`, check it (length, `sha256` if given, then
    `check(path)`, which raises DownloadError), rename it into place and record its SHA-256.
    Shared with other models' downloads (the matting models) so every cached file is made the same way."""
    target.parent.mkdir(parents=True, exist_ok=True)
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
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".part", dir=target.parent)
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
        if sha256 is not None and actual != sha256.lower():
            raise DownloadError(f"{url}: SHA-256 {actual} does not match the expected {sha256}")
        if check is not None:
            check(tmp)
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
