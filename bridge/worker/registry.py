"""The session registry: every session the worker knows (on disk and loaded), loading and reopening
them, and the cap on loaded sessions. Used by the handlers and the scheduler on the compute thread;
`status`-style reads come from the I/O thread, so the table is guarded by a lock."""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

from .. import protocol
from ...core.fileio import write_json_atomic
from . import logs
from .backend import Engine
from .errors import RequestError, bad
from .sessions import (PUSHED_DIR, SESSION_FILE, SESSION_ID_RE, STATE_DIR, SessionRecord, default_matte_dir,
                       read_record)

log = logging.getLogger("samroto.worker")

# ends a session's stream (cancelled, with the reason) so the session can be unloaded
ReleaseStream = Callable[[SessionRecord, str], None]


class SessionRegistry:
    """Sessions by id. At most `max_loaded` are in memory; a session whose stream waits for credit
    counts like any other and is the next to go after idle ones (its stream is cancelled: the
    client can propagate again), a session whose stream is computing is never unloaded."""

    def __init__(self, *, session_dir: Path, backend: Engine, max_loaded: int,
                 release_stream: Optional[ReleaseStream] = None) -> None:
        self.session_dir = session_dir
        self.backend = backend
        self.max_loaded = max(1, int(max_loaded))
        self.release_stream = release_stream
        self._records: dict[str, SessionRecord] = {}
        self._lock = threading.RLock()

    # --- reads (any thread) ----------------------------------------------------------------

    def loaded(self) -> list[SessionRecord]:
        with self._lock:
            return [r for r in self._records.values() if r.session is not None]

    def loaded_ids(self) -> list[str]:
        return [r.id for r in self.loaded()]

    def on_disk(self, *, limit: int = 10_000) -> Iterator[SessionRecord]:
        """Every readable session folder (at most `limit` folders are looked at)."""
        folder = self.session_dir
        if not folder.is_dir():
            return
        with os.scandir(folder) as entries:
            names = sorted(e.name for _, e in zip(range(limit), entries))
        for name in names:
            try:
                yield read_record(folder / name)
            except (OSError, ValueError, TypeError):
                continue  # a half-created or foreign folder

    def list_records(self) -> list[dict]:
        """Sessions on disk (and in memory), newest first."""
        with self._lock:
            loaded = {r.id: r.info() for r in self._records.values()}
        out = []
        for record in self.on_disk():
            out.append(loaded.pop(record.id) if record.id in loaded else dict(record.info(), loaded=False))
        out.extend(loaded.values())
        return sorted(out, key=lambda info: -float(info.get("created") or 0))

    # --- the compute thread ----------------------------------------------------------------

    def record(self, session_id: Optional[str]) -> SessionRecord:
        """The session named in a request, loaded into memory (reopened from disk if needed)."""
        if not session_id:
            raise bad("this request needs a session id (open a session first)")
        if not SESSION_ID_RE.match(session_id):
            raise RequestError(protocol.E_NO_SESSION, "invalid session id %r" % session_id)
        with self._lock:
            record = self._records.get(session_id)
        if record is None:
            folder = self.session_dir / session_id
            if not (folder / SESSION_FILE).is_file():
                raise RequestError(protocol.E_NO_SESSION, "no session %r in %s" % (session_id, self.session_dir))
            record = read_record(folder)
            with self._lock:
                self._records[session_id] = record
        if record.session is None:
            self.make_room(record)
            record.frames = self._frames_for(record)
            record.session = self.backend.reopen_session(record.folder / STATE_DIR, record.frames)
            logs.session_event("loaded", record.id)
            if record.frames is None:
                record.frames = record.session.frames
        record.last_used = time.monotonic()
        return record

    def new_record(self, *, name: str, plate: Any, numbers: Sequence[int], height: int, width: int,
                   matte_dir: Optional[str], matte_format: str, source: Optional[dict] = None,
                   track_resolution: Optional[int] = None, matting: Optional[str] = None,
                   memory_mode: str = "sam2") -> SessionRecord:
        """A new session folder (private: 0700) and its `session.json`."""
        if not len(numbers):
            raise bad("the plate has no frames")
        session_id = "%s-%s" % (name, uuid.uuid4().hex[:8])
        folder = self.session_dir / session_id
        self.session_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
        os.chmod(folder, 0o700)  # whatever the umask
        if matte_dir is None:
            matte_dir = str(default_matte_dir(plate, folder, session_id))
        record = SessionRecord(id=session_id, name=name, plate=plate, first=int(numbers[0]),
                               last=int(numbers[-1]), frame_count=len(numbers), height=int(height),
                               width=int(width), matte_dir=matte_dir, matte_format=matte_format,
                               created=time.time(), source=source, folder=folder,
                               track_resolution=track_resolution, matting=matting, memory_mode=memory_mode)
        write_json_atomic(folder / SESSION_FILE, record.persisted())
        return record

    def register(self, record: SessionRecord) -> None:
        with self._lock:
            self._records[record.id] = record
        logs.session_event("opened", record.id, plate=record.source or record.plate, frames="%d-%d" % (
            record.first, record.last), size="%dx%d" % (record.width, record.height))

    def forget(self, record: SessionRecord) -> None:
        with self._lock:
            self._records.pop(record.id, None)

    def save(self, record: SessionRecord) -> None:
        if record.session is not None:
            record.session.save()

    def unload(self, record: SessionRecord) -> None:
        """Save and close a session (it stays known and reopens on demand)."""
        if record.session is None:
            return
        logs.session_event("unloaded", record.id)
        try:
            record.session.save()
            record.session.close()
        except Exception:
            log.error("closing session %s failed:\n%s", record.id, traceback.format_exc())
        finally:
            record.session = None
            record.outputs = {}
            if record.frames is not None:
                try:
                    record.frames.close()
                except Exception:
                    pass
                record.frames = None

    def unload_all(self) -> None:
        for record in self.loaded():
            self.unload(record)

    def make_room(self, keep: SessionRecord) -> None:
        """Unload sessions until `keep` fits under the cap: idle ones first (least recently used),
        then those whose stream waits for credit. Refused (`busy`) when every other loaded session
        is computing a stream."""
        loaded = [r for r in self.loaded() if r is not keep]
        excess = len(loaded) + 1 - self.max_loaded
        if excess <= 0:
            return
        idle = sorted((r for r in loaded if r.stream is None), key=lambda r: r.last_used)
        parked = sorted((r for r in loaded if r.stream is not None and r.stream.credit <= 0),
                        key=lambda r: r.last_used)
        for record in idle + parked:
            if excess <= 0:
                break
            if record.stream is not None:
                if self.release_stream is None:
                    continue
                self.release_stream(record, "session unloaded: more than %d sessions were loaded and this "
                                    "stream was waiting for credit; propagate again to continue" % self.max_loaded)
            self.unload(record)
            excess -= 1
        if excess > 0:
            raise RequestError(protocol.E_BUSY, "%d sessions are loaded and propagating (limit %d, "
                               "--max-loaded-sessions); try again when one finishes" % (len(loaded), self.max_loaded))

    def writer_for(self, record: SessionRecord, out_dir: Optional[str] = None, fmt: Optional[str] = None,
                   options: Optional[dict] = None) -> Any:
        """The session's matte output for a folder, format and options (kept while the session is
        loaded, so its confidence report covers every pass)."""
        folder = out_dir or record.matte_dir
        fmt = fmt or record.matte_format
        key = (folder, fmt, tuple(sorted((options or {}).items())))
        if key not in record.outputs:
            record.outputs[key] = self.backend.matte_writer(Path(folder), record.matte_name, fmt,
                                                            frames=record.frames, options=options)
        return record.outputs[key]

    def _frames_for(self, record: SessionRecord) -> Any:
        plate = record.plate
        if isinstance(plate, dict) and plate.get("kind") == "pushed":
            numbers = list(range(record.first, record.last + 1))
            return self.backend.pushed_frames(record.folder / PUSHED_DIR, numbers, record.height, record.width)
        if record.source:
            return self.backend.open_frames(record.source, record.first, record.last)
        return self.backend.open_frames(plate, record.first, record.last)
