"""Sessions on disk: the session folder, its `session.json`, session ids and default folders.

    <session_dir>/<session id>/
        session.json   plate, frame range, size, matte folder (this module)
        state/         the VideoSession's own state (prompts, per-frame records)
        frames/        frames a client pushed (pushed plates only)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Protocol

from .. import auth

if TYPE_CHECKING:
    from .backend import SessionLike


class StreamLike(Protocol):
    """What a session's record knows of the propagation running on it (scheduler.Stream)."""

    request_id: str
    credit: int

SESSION_FILE = "session.json"
STATE_DIR = "state"
PUSHED_DIR = "frames"
SESSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")


def default_session_dir() -> Path:
    """`$SAMROTO_SESSION_DIR`, else a `sessions` folder in the user's data folder."""
    override = os.environ.get("SAMROTO_SESSION_DIR")
    if override:
        return Path(override).expanduser()
    if sys.platform.startswith("win"):
        base = os.environ.get("LOCALAPPDATA")
        return (Path(base) if base else Path.home() / "AppData" / "Local") / "samroto" / "sessions"
    if sys.platform == "darwin":
        return auth.config_dir() / "sessions"
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg) if xdg else Path.home() / ".local" / "share") / "samroto" / "sessions"


@dataclass
class SessionRecord:
    """A session's identity and plate (persisted as `session.json`) plus its runtime state."""

    id: str
    name: str
    plate: Any                 # what the client sent: a path/pattern, or {"kind": "pushed", ...}
    first: int
    last: int
    frame_count: int
    height: int
    width: int
    matte_dir: str
    matte_format: str
    created: float
    source: Optional[dict] = None  # the frame source's describe(): how to reopen the plate
    track_resolution: Optional[int] = None  # a PREVIEW session tracks at this internal size
    matting: Optional[str] = None  # the learned matting pass its mattes get by default (vitmatte-small, ...)
    memory_mode: str = "sam2"  # which tracked frames enter memory (core.memory_modes)
    folder: Path = field(repr=False, default=Path("."))
    session: Optional[SessionLike] = field(repr=False, default=None)
    frames: Any = field(repr=False, default=None)
    outputs: dict = field(repr=False, default_factory=dict)  # (folder, format, options) -> matte output
    stream: Optional[StreamLike] = field(repr=False, default=None)
    last_used: float = 0.0

    @property
    def live(self) -> SessionLike:
        """The loaded session (`Scheduler.record` loads it before handlers run)."""
        if self.session is None:
            raise RuntimeError("session %s is not loaded" % self.id)
        return self.session

    def info(self) -> dict:
        return {
            "session": self.id, "name": self.name, "plate": self.plate, "first": self.first, "last": self.last,
            "frame_count": self.frame_count, "height": self.height, "width": self.width,
            "matte_dir": self.matte_dir, "matte_format": self.matte_format, "created": self.created,
            "loaded": self.session is not None,
            "track_resolution": self.track_resolution, "preview": self.preview, "matting": self.matting,
            "memory_mode": self.memory_mode,
            "obj_ids": [int(o) for o in self.session.obj_ids] if self.session is not None else None,
            "propagating": self.stream.request_id if self.stream is not None else None,
            # every colour choice made for the plate (config, colourspace, display, view)
            "colour": dict((self.source or {}).get("colour") or {}),
        }

    def persisted(self) -> dict:
        return {
            "id": self.id, "name": self.name, "plate": self.plate, "first": self.first, "last": self.last,
            "frame_count": self.frame_count, "height": self.height, "width": self.width,
            "matte_dir": self.matte_dir, "matte_format": self.matte_format, "created": self.created,
            "source": self.source, "track_resolution": self.track_resolution, "matting": self.matting,
            "memory_mode": self.memory_mode,
        }

    @property
    def preview(self) -> bool:
        """Tracked at a lower internal resolution: its results and mattes are a preview."""
        return self.track_resolution is not None

    @property
    def matte_name(self) -> str:
        """File-name stem of the session's mattes; preview mattes say so in their names."""
        return self.name + "_preview" if self.preview else self.name


def read_record(folder: Path) -> SessionRecord:
    data = json.loads((folder / SESSION_FILE).read_text(encoding="utf-8"))
    names = {f.name for f in dataclasses.fields(SessionRecord)} - {"folder", "session", "frames", "outputs",
                                                                  "stream", "last_used"}
    return SessionRecord(**{k: v for k, v in data.items() if k in names}, folder=folder)


def slug(text: str, *, is_path: bool = True) -> str:
    """A safe short name from a plate path (`/x/shot.####.exr` -> `shot`) or a user's name."""
    base = os.path.basename(str(text)) if is_path else str(text)
    stem = re.sub(r"[#@%].*$", "", base) if is_path else base
    if is_path and stem == base and re.search(r"\.[A-Za-z0-9]{2,4}$", base):
        stem = os.path.splitext(base)[0]  # a video file or a still
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem.rstrip("._-")).strip("._-")[:40]
    return stem or "session"


def default_matte_dir(plate: Any, folder: Path, session_id: str) -> Path:
    """Next to the shot when its folder is writable, else inside the session folder."""
    if isinstance(plate, dict):
        plate = plate.get("pattern") or plate.get("path")
    if isinstance(plate, str) and os.path.isabs(os.path.expanduser(plate)):
        plate_dir = Path(plate).expanduser().resolve().parent
        if plate_dir.is_dir() and os.access(plate_dir, os.W_OK):
            return plate_dir / "samroto_mattes" / session_id
    return folder / "mattes"
