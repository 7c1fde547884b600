"""Atomic file writes: a reader (Nuke, a resuming batch job, a restarted worker) sees either the old
file or the complete new one, never a partial file, even if the writer is killed mid-write."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import time
from typing import Any


def write_bytes_atomic(path: "str | os.PathLike[str]", data: bytes, *, durable: bool = True) -> None:
    """Write `data` to a hidden temporary file in the same folder, then rename it over `path`.

    durable: fsync the file and the folder, so the new content also survives a power cut (a killed
    process never loses data the kernel already has; per-frame tracking records skip this for speed).
    """
    folder, name = os.path.split(os.path.abspath(os.fspath(path)))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {os.fspath(path)!r}: folder {folder!r} does not exist")
    temp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.tmp")
    # 0o666 and the umask, like any new file (mkstemp would make it 0600, unreadable to others)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    if durable:
        fsync_folder(folder)


def write_json_atomic(path: "str | os.PathLike[str]", data: Any, *, indent: int | None = 1) -> None:
    """`data` as JSON (NaN refused), written atomically and durably."""
    write_bytes_atomic(path, (json.dumps(data, indent=indent, allow_nan=False) + "\n").encode("utf-8"))


def fsync_folder(folder: "str | os.PathLike[str]") -> None:
    """Make renames in `folder` durable (POSIX); folders cannot be opened this way on Windows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp$")


def remove_stale_temporaries(folder: "str | os.PathLike[str]", *, older_than_s: float = 0.0,
                             max_entries: int = 100_000) -> int:
    """Delete the temporary files `write_bytes_atomic` leaves when its writer is killed mid-write
    (`.<name>.<8 hex>.tmp`) in `folder` (not below it); only those older than `older_than_s`.
    Returns how many were removed. Nothing else is touched."""
    removed = 0
    now = time.time()
    try:
        entries = os.scandir(folder)
    except OSError:
        return 0
    with entries:
        for count, entry in enumerate(entries):
            if count >= max_entries:
                break
            if not _TEMP_NAME.match(entry.name):
                continue
            try:
                old = now - entry.stat(follow_symlinks=False).st_mtime >= older_than_s
                if old and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                continue
    return removed
