"""The matting models in the checkpoint cache: names resolved to files, and `samroto download vitmatte-*`.

They share the SAM 2 checkpoints' cache folder (`samroto.core.model.cache.cache_dir`, see there) and
download machinery (temporary file, length check, recorded SHA-256). The files are the Hugging Face
`hustvl/vitmatte-*-composition-1k` weights, cached as `vitmatte-small.safetensors` (or `.bin` when a
repository only offers `pytorch_model.bin`). Licence: Apache-2.0 (the model cards); the original
code and weights (github.com/hustvl/ViTMatte) are MIT.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from samroto.core.model.cache import DownloadError, cache_dir, check_recorded_digest
from samroto.core.model.download import fetch_into_cache

from .checkpoint import MattingCheckpointError, load_matting_model
from .config import HF_REPOSITORIES, MattingConfigError, matting_preset

# tried in this order; the suffix is kept in the cache so the loader knows the format
HF_FILES = (("model.safetensors", ".safetensors"), ("pytorch_model.bin", ".bin"))


def download_url(name: str, file: str = "model.safetensors") -> str:
    return f"https://huggingface.co/{HF_REPOSITORIES[name]}/resolve/main/{file}"


def is_matting_name(text: str) -> bool:
    try:
        matting_preset(text)
    except MattingConfigError:
        return False
    return True


def cached_matting_checkpoint(name: str, directory: Path | None = None) -> Path | None:
    folder = directory or cache_dir()
    for _, suffix in HF_FILES:
        path = folder / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def missing_matting_message(name: str) -> str:
    target = cache_dir() / f"{name}.safetensors"
    return (
        f"matting model {name!r} is not in the cache ({target}). Run `samroto download {name}` on a machine "
        f"with internet access, or download {download_url(name)} (or {download_url(name, 'pytorch_model.bin')}, "
        f"saved as {name}.bin) yourself and put it at {target} (or pass the file's path instead of the name)."
    )


def resolve_matting_checkpoint(model: str | os.PathLike[str]) -> tuple[Path, str | None]:
    """A checkpoint file as is (config read from it); a model name (`vitmatte-small`) as its cached file
    and preset name. MattingCheckpointError (with how to get it) when a named model is not cached."""
    path = Path(model)
    if path.is_file():
        return path, None
    text = os.fspath(model)
    if is_matting_name(text):
        name = matting_preset(text).name
        cached = cached_matting_checkpoint(name)
        if cached is None:
            raise MattingCheckpointError(missing_matting_message(name))
        try:
            check_recorded_digest(cached)
        except DownloadError as exc:
            raise MattingCheckpointError(str(exc)) from None
        return cached, name
    raise MattingCheckpointError(
        f"{text}: no such file, and not a matting model name ({', '.join(HF_REPOSITORIES)})"
    )


def download_matting_checkpoint(
    name: str,
    *,
    directory: Path | None = None,
    force: bool = False,
    timeout: float = 30.0,
    progress: Callable[[int, "int | None"], None] | None = None,
) -> Path:
    """Fetch `vitmatte-small` / `vitmatte-base` into the cache (a no-op when cached); DownloadError if not."""
    try:
        name = matting_preset(name).name
    except MattingConfigError as exc:
        raise DownloadError(str(exc)) from None
    cached = cached_matting_checkpoint(name, directory)
    if cached is not None and not force:
        check_recorded_digest(cached)
        return cached
    folder = directory or cache_dir()

    def check(path: Path) -> None:
        try:
            load_matting_model(path, config=name)
        except MattingCheckpointError as exc:
            raise DownloadError(f"downloaded {name}: {exc}") from None

    failures: list[DownloadError] = []
    for file, suffix in HF_FILES:  # the safetensors file first; older repositories only have the .bin
        try:
            fetched: Path = fetch_into_cache(download_url(name, file), folder / f"{name}{suffix}", timeout=timeout,
                                             progress=progress, check=check)
            return fetched
        except DownloadError as exc:
            failures.append(exc)
    # a file that arrived but was wrong says more than a missing one; offline, the first says where to put it
    arrived = [f for f in failures if not str(f).startswith("cannot reach")]
    raise (arrived or failures)[0]
