"""The resident worker: one model, many clients, many sessions (one per shot).

Threads:

- the **I/O thread** (the caller of `Worker.serve`, normally the main thread) owns the ROUTER
  socket. It checks and decodes every message, answers cheap requests itself (`hello`, `ping`,
  `status`, `list_sessions`, `cancel`, `credit`) and queues the rest. It never runs model work,
  so cancel and status are served while a propagation computes.
- the **compute thread** (`Scheduler`) owns the model and the sessions. It runs queued
  requests one at a time (model work is serialised) and advances propagations one frame per
  step, round-robin between streams. A stream only advances while its client has credit;
  without credit it is parked (no memory grows) and is cancelled if its client stays silent
  longer than `client_timeout_s` or turns out to be gone.

Outgoing messages from the compute thread go through an inproc PUSH/PULL pair to the I/O
thread, since a ZeroMQ socket must only be used by one thread.
"""

from __future__ import annotations

import collections
import dataclasses
import errno
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence

import numpy as np
import zmq

from . import auth, codec, protocol
from . import preview as preview_rle
from .codec import Message, ProtocolError

log = logging.getLogger("samroto.worker")

SESSION_FILE = "session.json"
STATE_DIR = "state"
PUSHED_DIR = "frames"
_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$")

# requests that change a session: refused while that session propagates
_MUTATING = frozenset({
    protocol.PUSH_FRAMES, protocol.ADD_POINTS, protocol.ADD_BOX, protocol.ADD_MASK, protocol.ADD_STROKE,
    protocol.CLEAR_PROMPTS, protocol.REMOVE_OBJECT, protocol.RESET, protocol.PROPAGATE, protocol.CLOSE,
    protocol.DELETE_SESSION,
})


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
class WorkerConfig:
    """How the worker runs (the model itself is the engine's business)."""

    bind: str = protocol.DEFAULT_ADDRESS
    session_dir: Path = field(default_factory=default_session_dir)
    # None: read (or create) the token file in the user's config folder
    token: Optional[str] = None
    config_dir: Optional[Path] = None
    limits: protocol.Limits = protocol.DEFAULT_LIMITS
    # a stream without credit is cancelled when its client is silent this long
    client_timeout_s: float = 60.0
    # while a stream waits for credit, probe its client this often to notice when it is gone
    keepalive_interval_s: float = 2.0
    max_pending_jobs: int = 64
    max_loaded_sessions: int = 8
    # flush a propagating session's state to disk every N frames (bounds work lost to a crash)
    save_every_frames: int = 8
    # write `worker.json` (address, pid) into the config folder for clients to find
    announce: bool = True


class RequestError(Exception):
    """A request that cannot be served; becomes an `error` reply with `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _bad(message: str) -> RequestError:
    return RequestError(protocol.E_BAD_REQUEST, message)


# ---------------------------------------------------------------------------------------------
# What the worker needs from the model side. `ModelEngine` is the real one; tests use fakes.


class SessionLike(Protocol):
    frames: Any
    obj_ids: list

    def add_points(self, frame: int, obj_id: int, points: Any, labels: Any, *, clear: bool = True) -> Any: ...
    def add_box(self, frame: int, obj_id: int, box: Any, *, points: Any = None, labels: Any = None) -> Any: ...
    def add_mask(self, frame: int, obj_id: int, mask: Any) -> Any: ...
    def clear_prompts(self, frame: int, obj_id: int) -> Any: ...
    def remove_object(self, obj_id: int) -> None: ...
    def reset(self) -> None: ...
    def propagate(self, start: Optional[int] = None, max_frames: Optional[int] = None,
                  reverse: bool = False) -> Iterator[Any]: ...
    def frame_result(self, frame: int) -> Any: ...
    def save(self) -> None: ...
    def close(self) -> None: ...


class Engine(Protocol):
    model_name: str
    device: str

    def open_frames(self, plate: Any, first: Optional[int], last: Optional[int], view: Optional[dict] = None) -> Any: ...
    def pushed_frames(self, folder: Path, frame_numbers: Sequence[int], height: int, width: int) -> Any: ...
    def create_session(self, frames: Any, state_dir: Path) -> SessionLike: ...
    def reopen_session(self, state_dir: Path, frames: Any) -> SessionLike: ...
    def matte_writer(self, out_dir: Path, name: str, fmt: str) -> Any: ...


class ModelEngine:
    """The real engine: a SAM 2 model loaded once, `VideoSession`s, frame sources and matte writers."""

    def __init__(self, model: str, *, config: Optional[str] = None, device: Optional[str] = None) -> None:
        import torch

        from ..core.checkpoint import load_model
        from ..core.config import load_config_file

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model_config = load_config_file(config) if config else None
        self.model = load_model(model, config=model_config, device=self.device)
        self.model_name = str(model)

    def open_frames(self, plate: Any, first: Optional[int], last: Optional[int], view: Optional[dict] = None) -> Any:
        from ..core.frames import open_frames

        return open_frames(plate, first=first, last=last, view=view)

    def pushed_frames(self, folder: Path, frame_numbers: Sequence[int], height: int, width: int) -> Any:
        return make_pushed_frames(folder, frame_numbers, height, width)

    def create_session(self, frames: Any, state_dir: Path) -> SessionLike:
        from ..core.video_session import VideoSession

        # the model already sits on the device; the session follows it
        return VideoSession(self.model, frames, state_dir=state_dir)

    def reopen_session(self, state_dir: Path, frames: Any) -> SessionLike:
        from ..core.video_session import VideoSession

        return VideoSession.open(state_dir, self.model, frames=frames)

    def matte_writer(self, out_dir: Path, name: str, fmt: str) -> Any:
        from ..core.mattes import MatteSequenceWriter

        return MatteSequenceWriter(out_dir=out_dir, shot=name, format=fmt)


def make_pushed_frames(folder: Path, frame_numbers: Sequence[int], height: int, width: int) -> Any:
    """A frame source over frames a client pushed (stored as .npy in the session folder)."""
    from ..core.frames import FrameError, FrameSource

    class PushedFrames(FrameSource):
        def __init__(self) -> None:
            self.frame_numbers = range(int(frame_numbers[0]), int(frame_numbers[-1]) + 1)
            self.height, self.width = int(height), int(width)
            self._folder = Path(folder)

        def path_of(self, frame: int) -> Path:
            return self._folder / f"{frame}.npy"

        def read(self, frame: int) -> np.ndarray:
            self.index_of(frame)
            path = self.path_of(frame)
            if not path.is_file():
                raise FrameError(f"frame {frame} has not been pushed yet")
            return np.load(path, allow_pickle=False)

        def describe(self) -> dict:
            return {"kind": "pushed", "first": self.frame_numbers[0], "last": self.frame_numbers[-1],
                    "height": self.height, "width": self.width}

        def close(self) -> None:
            pass

    return PushedFrames()


# ---------------------------------------------------------------------------------------------
# Sessions on disk and in memory


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
    folder: Path = field(repr=False, default=Path("."))
    session: Optional[SessionLike] = field(repr=False, default=None)
    frames: Any = field(repr=False, default=None)
    writer: Any = field(repr=False, default=None)
    stream: Optional["Stream"] = field(repr=False, default=None)
    last_used: float = 0.0

    def info(self) -> dict:
        return {
            "session": self.id, "name": self.name, "plate": self.plate, "first": self.first, "last": self.last,
            "frame_count": self.frame_count, "height": self.height, "width": self.width,
            "matte_dir": self.matte_dir, "matte_format": self.matte_format, "created": self.created,
            "loaded": self.session is not None,
            "obj_ids": [int(o) for o in self.session.obj_ids] if self.session is not None else None,
            "propagating": self.stream.request_id if self.stream is not None else None,
        }

    def persisted(self) -> dict:
        return {
            "id": self.id, "name": self.name, "plate": self.plate, "first": self.first, "last": self.last,
            "frame_count": self.frame_count, "height": self.height, "width": self.width,
            "matte_dir": self.matte_dir, "matte_format": self.matte_format, "created": self.created,
            "source": self.source,
        }


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp-%d" % os.getpid())
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _read_record(folder: Path) -> SessionRecord:
    data = json.loads((folder / SESSION_FILE).read_text(encoding="utf-8"))
    names = {f.name for f in dataclasses.fields(SessionRecord)} - {"folder", "session", "frames", "writer",
                                                                  "stream", "last_used"}
    return SessionRecord(**{k: v for k, v in data.items() if k in names}, folder=folder)


def _slug(text: str) -> str:
    stem = re.sub(r"[#@%].*$", "", os.path.basename(str(text))).rstrip("._-")
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:40]
    return stem or "session"


# ---------------------------------------------------------------------------------------------
# Streams (propagations) and jobs


@dataclass
class Stream:
    """One running propagation, advanced a frame at a time by the compute thread."""

    identity: bytes
    request_id: str
    record: SessionRecord
    iterator: Iterator[Any]
    total: int
    credit: int
    write_mattes: bool
    preview_size: int
    writer: Any
    started: float = field(default_factory=time.monotonic)
    last_heard: float = field(default_factory=time.monotonic)
    last_probe: float = 0.0
    sent: int = 0
    cancel_reason: Optional[str] = None

    def status(self) -> dict:
        return {"request": self.request_id, "session": self.record.id, "sent": self.sent, "total": self.total,
                "credit": self.credit, "paused": self.credit <= 0, "cancelling": self.cancel_reason is not None}


@dataclass
class Job:
    identity: bytes
    msg: Message


class Outbox:
    """The compute thread's end of the inproc pipe to the I/O thread."""

    def __init__(self, context: zmq.Context, endpoint: str, signer: codec.Signer) -> None:
        self._socket = context.socket(zmq.PUSH)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.connect(endpoint)
        self._signer = signer

    def send(self, identity: bytes, mtype: str, reply_to: Optional[str], body: Optional[dict] = None,
             arrays: Optional[dict] = None, session: Optional[str] = None, *, cache: bool = False) -> None:
        parts = codec.encode(self._signer, mtype, body=body, arrays=arrays, session=session, reply_to=reply_to)
        flag = b"c" if cache else b"-"
        self._socket.send_multipart([identity, (reply_to or "").encode(), flag] + parts, copy=False)

    def probe(self, identity: bytes) -> None:
        parts = codec.encode(self._signer, protocol.KEEPALIVE, body={})
        self._socket.send_multipart([identity, b"", b"-"] + parts, copy=False)

    def close(self) -> None:
        self._socket.close(linger=0)


class Scheduler:
    """The compute thread: runs jobs (serialised model work) and advances streams."""

    def __init__(self, worker: "Worker") -> None:
        self.worker = worker
        self.config = worker.config
        self.engine = worker.engine
        self._cond = threading.Condition()
        self._jobs: "collections.deque[Job]" = collections.deque()
        self._streams: "collections.OrderedDict[tuple, Stream]" = collections.OrderedDict()
        self._records: dict[str, SessionRecord] = {}
        self._stopping = False
        self._busy_with: Optional[str] = None
        self._thread = threading.Thread(target=self._run, name="samroto-compute", daemon=True)
        self._outbox: Optional[Outbox] = None

    # --- called from the I/O thread -------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: Optional[float] = None) -> None:
        self._thread.join(timeout)

    def begin_stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()

    def submit(self, job: Job) -> None:
        with self._cond:
            if self._stopping:
                raise RequestError(protocol.E_STOPPING, "the worker is shutting down")
            if len(self._jobs) >= self.config.max_pending_jobs:
                raise RequestError(protocol.E_BUSY, "the worker has %d requests queued; try again shortly"
                                   % len(self._jobs))
            self._jobs.append(job)
            self._cond.notify_all()

    def add_credit(self, identity: bytes, request_id: str, amount: int) -> None:
        with self._cond:
            stream = self._streams.get((identity, request_id))
            if stream is not None:
                # cap: a client cannot make the worker run arbitrarily far ahead
                stream.credit = min(stream.credit + amount, 4096)
                stream.last_heard = time.monotonic()
                self._cond.notify_all()

    def touch(self, identity: bytes) -> None:
        with self._cond:
            now = time.monotonic()
            for stream in self._streams.values():
                if stream.identity == identity:
                    stream.last_heard = now

    def cancel(self, identity: bytes, *, request_id: Optional[str], session: Optional[str]) -> list[str]:
        """Cancel streams (and queued propagate requests) by request id, or all of a session's."""
        cancelled: list[str] = []
        with self._cond:
            for stream in self._streams.values():
                if (request_id and stream.request_id == request_id) or (
                        not request_id and session and stream.record.id == session):
                    if stream.cancel_reason is None:
                        stream.cancel_reason = "cancelled by request"
                    cancelled.append(stream.request_id)
            for job in list(self._jobs):
                if job.msg.type != protocol.PROPAGATE:
                    continue
                if (request_id and job.msg.request_id == request_id) or (
                        not request_id and session and job.msg.session == session):
                    self._jobs.remove(job)
                    cancelled.append(job.msg.request_id)
                    self.worker.send_direct(job.identity, protocol.CANCELLED, job.msg.request_id,
                                            {"reason": "cancelled before it started", "sent": 0})
            self._cond.notify_all()
        return cancelled

    def client_gone(self, identity: bytes) -> None:
        with self._cond:
            for stream in self._streams.values():
                if stream.identity == identity and stream.cancel_reason is None:
                    stream.cancel_reason = "client disconnected"
            self._cond.notify_all()

    def status(self) -> dict:
        with self._cond:
            return {
                "queued": len(self._jobs),
                "running": self._busy_with,
                "streams": [s.status() for s in self._streams.values()],
                "loaded_sessions": [r.id for r in self._records.values() if r.session is not None],
                "stopping": self._stopping,
            }

    # --- the compute thread ---------------------------------------------------------------

    def _run(self) -> None:
        self._outbox = Outbox(self.worker.context, self.worker.outbox_endpoint, self.worker.signer)
        try:
            while True:
                job, stream = self._next_work()
                if job is None and stream is None:
                    break
                if job is not None:
                    self._run_job(job)
                elif stream is not None:
                    self._step(stream)
        except Exception:  # never expected; keep the process exiting cleanly
            log.error("compute thread failed:\n%s", traceback.format_exc())
        finally:
            self._shutdown()
            self._outbox.close()

    def _next_work(self) -> tuple[Optional[Job], Optional[Stream]]:
        with self._cond:
            while True:
                if self._stopping:
                    return None, None
                if self._jobs:
                    return self._jobs.popleft(), None
                for key, stream in self._streams.items():
                    if stream.cancel_reason is not None or stream.credit > 0:
                        self._streams.move_to_end(key)  # round-robin between streams
                        return None, stream
                self._check_parked_streams()
                if any(s.cancel_reason is not None for s in self._streams.values()):
                    continue
                self._cond.wait(timeout=min(0.25, self.config.keepalive_interval_s))

    def _check_parked_streams(self) -> None:
        """Streams without credit: probe their clients, cancel the silent ones (lock held)."""
        now = time.monotonic()
        for stream in self._streams.values():
            if stream.credit > 0 or stream.cancel_reason is not None:
                continue
            if now - stream.last_heard > self.config.client_timeout_s:
                stream.cancel_reason = "client silent for %.0f s without granting credit" % (now - stream.last_heard)
            elif now - stream.last_probe >= self.config.keepalive_interval_s:
                stream.last_probe = now
                assert self._outbox is not None
                self._outbox.probe(stream.identity)

    def _reply(self, job: Job, body: Optional[dict] = None, arrays: Optional[dict] = None) -> None:
        assert self._outbox is not None
        self._outbox.send(job.identity, protocol.REPLY, job.msg.request_id, body or {}, arrays,
                          session=job.msg.session, cache=not arrays)

    def _error(self, identity: bytes, request_id: str, code: str, message: str) -> None:
        assert self._outbox is not None
        self._outbox.send(identity, protocol.ERROR, request_id, {"code": code, "message": message}, cache=True)

    def _run_job(self, job: Job) -> None:
        handler = _HANDLERS.get(job.msg.type)
        with self._cond:
            self._busy_with = job.msg.type
        try:
            if handler is None:
                raise RequestError(protocol.E_UNKNOWN_TYPE, "unknown request type %r" % job.msg.type)
            result = handler(self, job)
            if result is not None:
                body, arrays = result
                self._reply(job, body, arrays)
        except RequestError as exc:
            self._error(job.identity, job.msg.request_id, exc.code, exc.message)
        except ProtocolError as exc:
            self._error(job.identity, job.msg.request_id, exc.code, exc.message)
        except (ValueError, KeyError, IndexError, TypeError, FileNotFoundError) as exc:
            # user errors from core (FrameError, StrokeError, ...) are ValueErrors with clear messages
            self._error(job.identity, job.msg.request_id, protocol.E_BAD_REQUEST, _describe(exc))
        except Exception as exc:
            log.error("request %s failed:\n%s", job.msg.type, traceback.format_exc())
            self._error(job.identity, job.msg.request_id, protocol.E_INTERNAL,
                        "the worker failed on %s: %s" % (job.msg.type, _describe(exc)))
        finally:
            with self._cond:
                self._busy_with = None

    # --- streams --------------------------------------------------------------------------

    def _step(self, stream: Stream) -> None:
        assert self._outbox is not None
        if stream.cancel_reason is not None:
            self._end_stream(stream, protocol.CANCELLED, {"reason": stream.cancel_reason})
            return
        with self._cond:
            self._busy_with = protocol.PROPAGATE
        try:
            result = next(stream.iterator)
        except StopIteration:
            self._end_stream(stream, protocol.DONE, {})
            return
        except Exception as exc:
            if not isinstance(exc, ValueError):
                log.error("propagation %s failed:\n%s", stream.request_id, traceback.format_exc())
            self._end_stream(stream, protocol.ERROR, {"code": protocol.E_BAD_REQUEST if isinstance(exc, ValueError)
                                                      else protocol.E_INTERNAL, "message": _describe(exc)})
            return
        finally:
            with self._cond:
                self._busy_with = None
        paths: dict[int, str] = {}
        if stream.write_mattes and len(result.obj_ids):
            paths = self._write_mattes(stream.writer, result)
        body = _frame_body(result, stream.preview_size, paths)
        with self._cond:
            stream.sent += 1
            stream.credit -= 1
            body["progress"] = {"done": stream.sent, "total": stream.total}
        self._outbox.send(stream.identity, protocol.FRAME, stream.request_id, body, session=stream.record.id)
        if self.config.save_every_frames > 0 and stream.sent % self.config.save_every_frames == 0:
            self._save(stream.record)

    def _end_stream(self, stream: Stream, kind: str, body: dict) -> None:
        assert self._outbox is not None
        try:
            close = getattr(stream.iterator, "close", None)
            if close is not None:
                close()  # stop iterating = cancel: the session stays consistent
        except Exception:
            log.error("closing propagation %s failed:\n%s", stream.request_id, traceback.format_exc())
        with self._cond:
            self._streams.pop((stream.identity, stream.request_id), None)
            stream.record.stream = None
        try:
            self._save(stream.record)
        except Exception as exc:
            log.error("saving session %s failed: %s", stream.record.id, exc)
        body = dict(body, sent=stream.sent, total=stream.total)
        self._outbox.send(stream.identity, kind, stream.request_id, body, session=stream.record.id)

    def _write_mattes(self, writer: Any, result: Any) -> dict[int, str]:
        obj_ids = [int(o) for o in result.obj_ids]
        scores = np.asarray(result.scores, dtype=np.float32).reshape(-1)
        ious = np.asarray(getattr(result, "ious", np.full(len(obj_ids), np.nan)), dtype=np.float32).reshape(-1)
        attributes = {
            obj: {"samroto/object_score": float(scores[i]), "samroto/predicted_iou": float(ious[i])}
            for i, obj in enumerate(obj_ids)
        }
        written = writer.write(int(result.frame), obj_ids, np.asarray(result.logits), attributes=attributes)
        return {int(k): str(v) for k, v in written.items()}

    def _shutdown(self) -> None:
        """Stop: end streams after the frame in flight, refuse queued jobs, flush sessions."""
        with self._cond:
            streams = list(self._streams.values())
            jobs = list(self._jobs)
            self._jobs.clear()
        for stream in streams:
            stream.cancel_reason = "the worker is stopping"
            try:
                self._end_stream(stream, protocol.CANCELLED, {"reason": stream.cancel_reason})
            except Exception:
                log.error("ending stream failed:\n%s", traceback.format_exc())
        for job in jobs:
            self._error(job.identity, job.msg.request_id, protocol.E_STOPPING, "the worker is shutting down")
        for record in list(self._records.values()):
            self._unload(record)

    # --- sessions -------------------------------------------------------------------------

    def _save(self, record: SessionRecord) -> None:
        if record.session is not None:
            record.session.save()

    def _unload(self, record: SessionRecord) -> None:
        if record.session is None:
            return
        try:
            record.session.save()
            record.session.close()
        except Exception:
            log.error("closing session %s failed:\n%s", record.id, traceback.format_exc())
        finally:
            record.session = None
            record.writer = None
            if record.frames is not None:
                try:
                    record.frames.close()
                except Exception:
                    pass
                record.frames = None

    def _evict_if_needed(self, keep: SessionRecord) -> None:
        loaded = [r for r in self._records.values() if r.session is not None and r is not keep]
        excess = len(loaded) + 1 - self.config.max_loaded_sessions
        for record in sorted(loaded, key=lambda r: r.last_used):
            if excess <= 0:
                break
            if record.stream is None:
                self._unload(record)
                excess -= 1

    def record(self, session_id: Optional[str]) -> SessionRecord:
        """The session named in a request, loaded into memory (reopened from disk if needed)."""
        if not session_id:
            raise _bad("this request needs a session id (open a session first)")
        if not _SESSION_ID_RE.match(session_id):
            raise RequestError(protocol.E_NO_SESSION, "invalid session id %r" % session_id)
        record = self._records.get(session_id)
        if record is None:
            folder = self.config.session_dir / session_id
            if not (folder / SESSION_FILE).is_file():
                raise RequestError(protocol.E_NO_SESSION, "no session %r in %s" % (session_id, self.config.session_dir))
            record = _read_record(folder)
            with self._cond:
                self._records[session_id] = record
        if record.session is None:
            self._evict_if_needed(record)
            record.frames = self._frames_for(record)
            state = record.folder / STATE_DIR
            record.session = self.engine.reopen_session(state, record.frames)
            if record.frames is None:
                record.frames = record.session.frames
        record.last_used = time.monotonic()
        return record

    def _frames_for(self, record: SessionRecord) -> Any:
        plate = record.plate
        if isinstance(plate, dict) and plate.get("kind") == "pushed":
            numbers = list(range(record.first, record.last + 1))
            return self.engine.pushed_frames(record.folder / PUSHED_DIR, numbers, record.height, record.width)
        if record.source:
            return self.engine.open_frames(record.source, record.first, record.last)
        return self.engine.open_frames(plate, record.first, record.last)

    def writer_for(self, record: SessionRecord, out_dir: Optional[str] = None,
                   fmt: Optional[str] = None) -> Any:
        if out_dir is None and fmt is None:
            if record.writer is None:
                record.writer = self.engine.matte_writer(Path(record.matte_dir), record.name, record.matte_format)
            return record.writer
        return self.engine.matte_writer(Path(out_dir or record.matte_dir), record.name, fmt or record.matte_format)

    def new_record(self, *, name: str, plate: Any, numbers: Sequence[int], height: int, width: int,
                   matte_dir: Optional[str], matte_format: str, source: Optional[dict] = None) -> SessionRecord:
        if not len(numbers):
            raise _bad("the plate has no frames")
        session_id = "%s-%s" % (_slug(name), uuid.uuid4().hex[:8])
        folder = self.config.session_dir / session_id
        folder.mkdir(parents=True, exist_ok=False)
        if matte_dir is None:
            matte_dir = str(_default_matte_dir(plate, folder, session_id))
        record = SessionRecord(id=session_id, name=_slug(name), plate=plate, first=int(numbers[0]),
                               last=int(numbers[-1]), frame_count=len(numbers), height=int(height),
                               width=int(width), matte_dir=matte_dir, matte_format=matte_format,
                               created=time.time(), source=source, folder=folder)
        _write_json_atomic(folder / SESSION_FILE, record.persisted())
        return record

    def check_not_streaming(self, record: SessionRecord, mtype: str) -> None:
        if record.stream is not None and mtype in _MUTATING:
            raise RequestError(protocol.E_BUSY, "session %s is propagating (request %s); cancel it first"
                               % (record.id, record.stream.request_id))

    def start_stream(self, job: Job, record: SessionRecord, iterator: Iterator[Any], total: int, credit: int,
                     write_mattes: bool, preview_size: int, writer: Any) -> Stream:
        stream = Stream(identity=job.identity, request_id=job.msg.request_id, record=record, iterator=iterator,
                        total=total, credit=credit, write_mattes=write_mattes, preview_size=preview_size,
                        writer=writer)
        with self._cond:
            self._streams[(job.identity, job.msg.request_id)] = stream
            record.stream = stream
        return stream

    def forget(self, record: SessionRecord) -> None:
        with self._cond:
            self._records.pop(record.id, None)

    def list_records(self) -> list[dict]:
        """Sessions on disk (and in memory), newest first."""
        with self._cond:
            loaded = {r.id: r.info() for r in self._records.values()}
        out = []
        folder = self.config.session_dir
        if folder.is_dir():
            for child in sorted(folder.iterdir())[:10_000]:
                if child.name in loaded:
                    out.append(loaded.pop(child.name))
                    continue
                try:
                    out.append(dict(_read_record(child).info(), loaded=False))
                except (OSError, ValueError, TypeError):
                    continue  # a half-created or foreign folder
        out.extend(loaded.values())
        return sorted(out, key=lambda info: -float(info.get("created") or 0))


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError):
        text = "missing %s" % text
    return text if len(text) <= 2000 else text[:1997] + "..."


def _default_matte_dir(plate: Any, folder: Path, session_id: str) -> Path:
    """Next to the shot when its folder is writable, else inside the session folder."""
    if isinstance(plate, dict):
        plate = plate.get("pattern") or plate.get("path")
    if isinstance(plate, str) and os.path.isabs(os.path.expanduser(plate)):
        plate_dir = Path(plate).expanduser().resolve().parent
        if plate_dir.is_dir() and os.access(plate_dir, os.W_OK):
            return plate_dir / "samroto_mattes" / session_id
    return folder / "mattes"


def _frame_body(result: Any, preview_size: int, paths: dict[int, str]) -> dict:
    """The msgpack body describing one FrameResult: ids, scores, previews, matte paths."""
    obj_ids = [int(o) for o in result.obj_ids]
    logits = np.asarray(result.logits)
    scores = np.asarray(result.scores, dtype=np.float32).reshape(-1)
    ious = np.asarray(getattr(result, "ious", np.full(len(obj_ids), np.nan)), dtype=np.float32).reshape(-1)
    body: dict[str, Any] = {
        "frame": int(result.frame),
        "obj_ids": obj_ids,
        "scores": [float(s) for s in scores],
        "ious": [None if not np.isfinite(v) else float(v) for v in ious],
        "areas": [int((logits[i] > 0).sum()) for i in range(len(obj_ids))],
        "matte_paths": [paths.get(o) for o in obj_ids],
    }
    if preview_size > 0:
        body["previews"] = [_preview(logits[i], preview_size) for i in range(len(obj_ids))]
    return body


def _preview(logits: np.ndarray, max_side: int) -> dict:
    import cv2

    height, width = logits.shape
    h, w = preview_rle.preview_size(height, width, max_side)
    mask = (logits > 0).astype(np.float32)
    if (h, w) != (height, width):
        mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_AREA)
    return preview_rle.encode(mask >= 0.5)


# ---------------------------------------------------------------------------------------------
# Request handlers (compute thread). Each returns (body, arrays) or None (already answered).

_Handler = Callable[[Scheduler, Job], Optional[tuple]]
_HANDLERS: dict[str, _Handler] = {}


def _handles(*types: str) -> Callable[[_Handler], _Handler]:
    def register(fn: _Handler) -> _Handler:
        for t in types:
            _HANDLERS[t] = fn
        return fn
    return register


_MISSING = object()
_FILE_KINDS = ("video", "image", "image_sequence")


def _get(body: dict, name: str, kinds: Any, default: Any = _MISSING) -> Any:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise _bad("missing field %r" % name)
        return default
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise _bad("field %r must be %s, got a boolean" % (name, _kind_names(kinds)))
    if not isinstance(value, kinds):
        raise _bad("field %r must be %s, got %s" % (name, _kind_names(kinds), type(value).__name__))
    return value


def _kind_names(kinds: Any) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(k.__name__ for k in kinds)


def _int(body: dict, name: str, default: Any = _MISSING) -> Any:
    return _get(body, name, int, default)


def _number_array(body: dict, arrays: dict, name: str, *, columns: Optional[int], default: Any = _MISSING,
                  dtype: Any = np.float32) -> Any:
    """A small array sent either as a msgpack list or as a raw buffer of the same name."""
    if name in arrays:
        value = np.asarray(arrays[name])
    else:
        raw = body.get(name)
        if raw is None:
            if default is _MISSING:
                raise _bad("missing field %r" % name)
            return default
        try:
            value = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise _bad("field %r must be numbers" % name) from None
    if columns is not None and (value.ndim != 2 or value.shape[1] != columns):
        raise _bad("field %r must be shaped N*%d, got %s" % (name, columns, list(value.shape)))
    if columns is None and value.ndim != 1:
        raise _bad("field %r must be a flat list, got shape %s" % (name, list(value.shape)))
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise _bad("field %r must be finite numbers" % name)
    return value.astype(dtype)


def _frame_of(record: SessionRecord, body: dict) -> int:
    frame = _int(body, "frame")
    if not record.first <= frame <= record.last:
        raise _bad("frame %d is outside the plate's frames %d-%d" % (frame, record.first, record.last))
    return frame


def _obj_id(body: dict) -> int:
    obj = _int(body, "obj_id")
    if not 0 <= obj < 2 ** 31:
        raise _bad("obj_id must be a non-negative integer, got %d" % obj)
    return obj


def _prompt_reply(record: SessionRecord, result: Any, body: dict) -> tuple:
    preview_size = _int(body, "preview_size", protocol.DEFAULT_PREVIEW_SIZE)
    out = _frame_body(result, max(0, preview_size), {})
    arrays = None
    if body.get("return_masks"):
        arrays = {"masks": (np.asarray(result.logits) > 0).astype(np.uint8)}
    return dict(out, session=record.id, obj_ids_all=[int(o) for o in record.session.obj_ids]), arrays


@_handles(protocol.OPEN_SESSION)
def _open_session(s: Scheduler, job: Job) -> tuple:
    body, arrays = job.msg.body, job.msg.arrays
    resume = _get(body, "resume", str, None)
    if resume:
        record = s.record(resume)
        return dict(record.info(), resumed=True), None
    plate = body.get("plate")
    first = _get(body, "first", int, None)
    last = _get(body, "last", int, None)
    matte_format = _get(body, "matte_format", str, "exr")
    if matte_format not in ("exr", "png"):
        raise _bad("matte_format must be 'exr' or 'png', got %r" % matte_format)
    matte_dir = _get(body, "matte_dir", str, None)
    if matte_dir is not None and not os.path.isabs(matte_dir):
        raise _bad("matte_dir must be an absolute path, got %r" % matte_dir)
    if isinstance(plate, str) or (isinstance(plate, dict) and plate.get("kind") in _FILE_KINDS):
        if isinstance(plate, str) and (not plate or "\x00" in plate):
            raise _bad("plate path is empty or invalid")
        view = _get(body, "view", dict, None)
        frames = s.engine.open_frames(plate, first, last, view)
        name = _get(body, "name", str, None) or (plate if isinstance(plate, str) else
                                                 str(plate.get("pattern") or plate.get("path") or "plate"))
        try:
            source = frames.describe()
            json.dumps(source)
        except Exception:
            source = None
        record = s.new_record(name=name, plate=plate, numbers=list(frames.frame_numbers), height=frames.height,
                              width=frames.width, matte_dir=matte_dir, matte_format=matte_format, source=source)
        record.frames = frames
    elif isinstance(plate, dict) and plate.get("kind") == "pushed":
        first_p, last_p = _int(plate, "first"), _int(plate, "last")
        height, width = _int(plate, "height"), _int(plate, "width")
        if not (last_p >= first_p and last_p - first_p < 1_000_000 and 0 < height <= 65536 and 0 < width <= 65536):
            raise _bad("pushed plate needs first <= last (at most 1e6 frames) and a size of 1 to 65536 pixels")
        numbers = list(range(first_p, last_p + 1))
        spec = {"kind": "pushed", "first": first_p, "last": last_p, "height": height, "width": width}
        record = s.new_record(name=_get(body, "name", str, None) or "pushed", plate=spec, numbers=numbers,
                              height=height, width=width, matte_dir=matte_dir, matte_format=matte_format)
        (record.folder / PUSHED_DIR).mkdir()
        record.frames = s.engine.pushed_frames(record.folder / PUSHED_DIR, numbers, height, width)
    else:
        raise _bad("plate must be a file path or pattern (str), a frame source description, or "
                   "{'kind': 'pushed', 'first', 'last', 'height', 'width'}")
    s._evict_if_needed(record)
    try:
        record.session = s.engine.create_session(record.frames, record.folder / STATE_DIR)
        record.session.save()
    except Exception:
        shutil.rmtree(record.folder, ignore_errors=True)
        raise
    with s._cond:
        s._records[record.id] = record
    record.last_used = time.monotonic()
    return dict(record.info(), resumed=False), None


@_handles(protocol.PUSH_FRAMES)
def _push_frames(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    if not (isinstance(record.plate, dict) and record.plate.get("kind") == "pushed"):
        raise _bad("session %s reads its plate from files; frames can only be pushed to a pushed plate" % record.id)
    frames = job.msg.body.get("frames")
    if not isinstance(frames, list) or not all(isinstance(f, int) and not isinstance(f, bool) for f in frames):
        raise _bad("field 'frames' must be a list of frame numbers, one per buffer image_<i>")
    written = []
    for i, frame in enumerate(frames):
        if not record.first <= frame <= record.last:
            raise _bad("frame %d is outside the plate's frames %d-%d" % (frame, record.first, record.last))
        image = job.msg.arrays.get("image_%d" % i)
        if image is None:
            raise _bad("buffer image_%d is missing" % i)
        image = np.asarray(image)
        if image.shape != (record.height, record.width, 3) or image.dtype.name not in ("uint8", "uint16", "float32"):
            raise _bad("pushed frame %d must be %dx%dx3 uint8, uint16 or float32, got %s %s"
                       % (frame, record.height, record.width, list(image.shape), image.dtype.name))
        folder = record.folder / PUSHED_DIR
        tmp = folder / (".%d.npy.tmp" % frame)
        with open(tmp, "wb") as handle:
            np.save(handle, np.ascontiguousarray(image), allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, folder / ("%d.npy" % frame))
        written.append(frame)
    return {"written": written}, None


@_handles(protocol.ADD_POINTS)
def _add_points(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    body = job.msg.body
    points = _number_array(body, job.msg.arrays, "points", columns=2)
    labels = _number_array(body, job.msg.arrays, "labels", columns=None, dtype=np.int32)
    if len(points) != len(labels) or len(points) == 0:
        raise _bad("points and labels must have the same, non-zero length (%d vs %d)" % (len(points), len(labels)))
    if not np.isin(labels, (0, 1)).all():
        raise _bad("labels must be 1 (include) or 0 (exclude)")
    result = record.session.add_points(_frame_of(record, body), _obj_id(body), points, labels,
                                       clear=bool(body.get("clear", True)))
    s._save(record)
    return _prompt_reply(record, result, body)


@_handles(protocol.ADD_BOX)
def _add_box(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    body = job.msg.body
    box = _number_array(body, job.msg.arrays, "box", columns=None)
    if box.shape != (4,) or not (box[2] > box[0] and box[3] > box[1]):
        raise _bad("box must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0")
    points = _number_array(body, job.msg.arrays, "points", columns=2, default=None)
    labels = _number_array(body, job.msg.arrays, "labels", columns=None, dtype=np.int32, default=None)
    if (points is None) != (labels is None) or (points is not None and len(points) != len(labels)):
        raise _bad("points and labels go together and must have the same length")
    result = record.session.add_box(_frame_of(record, body), _obj_id(body), box, points=points, labels=labels)
    s._save(record)
    return _prompt_reply(record, result, body)


def _mask_from(job: Job, record: SessionRecord) -> np.ndarray:
    mask = job.msg.arrays.get("mask")
    if mask is None:
        raise _bad("add_mask needs a buffer named 'mask' (H*W uint8 or bool)")
    mask = np.asarray(mask)
    if mask.shape != (record.height, record.width):
        raise _bad("mask must be %dx%d (the plate's size), got %s" % (record.height, record.width, list(mask.shape)))
    return mask != 0


@_handles(protocol.ADD_MASK)
def _add_mask(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    body = job.msg.body
    result = record.session.add_mask(_frame_of(record, body), _obj_id(body), _mask_from(job, record))
    s._save(record)
    return _prompt_reply(record, result, body)


def _current_mask(record: SessionRecord, frame: int, obj_id: int) -> Optional[np.ndarray]:
    result = record.session.frame_result(frame)
    ids = [int(o) for o in result.obj_ids]
    if obj_id not in ids:
        return None
    return np.asarray(result.logits)[ids.index(obj_id)] > 0


@_handles(protocol.ADD_STROKE)
def _add_stroke(s: Scheduler, job: Job) -> tuple:
    from ..core.strokes import stroke_to_prompt

    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    body = job.msg.body
    frame, obj_id = _frame_of(record, body), _obj_id(body)
    points = _number_array(body, job.msg.arrays, "points", columns=2, dtype=np.float64)
    kind = _get(body, "kind", str, "brush")
    mode = _get(body, "mode", str, None)
    label = _int(body, "label", 1)
    radius = float(_get(body, "radius", (int, float), 8.0))
    needs_mask = (mode or ("points" if kind == "brush" else "mask")) == "mask"
    current = _current_mask(record, frame, obj_id) if needs_mask and obj_id in record.session.obj_ids else None
    prompt = stroke_to_prompt(points, kind=kind, label=label, mode=mode, radius=radius, height=record.height,
                              width=record.width, current_mask=current)
    if prompt.kind == "points":
        result = record.session.add_points(frame, obj_id, prompt.points, prompt.labels, clear=False)
    elif prompt.kind == "box":
        result = record.session.add_box(frame, obj_id, prompt.box)
    else:
        result = record.session.add_mask(frame, obj_id, prompt.mask)
    s._save(record)
    reply, arrays = _prompt_reply(record, result, body)
    return dict(reply, converted_to=prompt.kind), arrays


@_handles(protocol.CLEAR_PROMPTS)
def _clear_prompts(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    body = job.msg.body
    result = record.session.clear_prompts(_frame_of(record, body), _obj_id(body))
    s._save(record)
    return _prompt_reply(record, result, body)


@_handles(protocol.REMOVE_OBJECT)
def _remove_object(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    obj_id = _obj_id(job.msg.body)
    if obj_id not in [int(o) for o in record.session.obj_ids]:
        raise _bad("session %s has no object %d (objects: %s)" % (record.id, obj_id, list(record.session.obj_ids)))
    record.session.remove_object(obj_id)
    s._save(record)
    return {"obj_ids": [int(o) for o in record.session.obj_ids]}, None


@_handles(protocol.RESET)
def _reset(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    record.session.reset()
    s._save(record)
    return {"obj_ids": []}, None


@_handles(protocol.PROPAGATE)
def _propagate(s: Scheduler, job: Job) -> None:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    body = job.msg.body
    direction = _get(body, "direction", str, protocol.FORWARD)
    if direction not in protocol.DIRECTIONS:
        raise _bad("direction must be one of %s, got %r" % (", ".join(protocol.DIRECTIONS), direction))
    start = _get(body, "start", int, None)
    lo = _get(body, "first", int, record.first)
    hi = _get(body, "last", int, record.last)
    for name, value in (("start", start), ("first", lo), ("last", hi)):
        if value is not None and not record.first <= value <= record.last:
            raise _bad("%s frame %d is outside the plate's frames %d-%d" % (name, value, record.first, record.last))
    if lo > hi:
        raise _bad("first frame %d is after last frame %d" % (lo, hi))
    if start is not None and not lo <= start <= hi:
        raise _bad("start frame %d is outside the requested range %d-%d" % (start, lo, hi))
    credit = _int(body, "credit", protocol.DEFAULT_CREDIT)
    if not 1 <= credit <= 4096:
        raise _bad("credit must be 1 to 4096, got %d" % credit)
    preview_size = max(0, _int(body, "preview_size", protocol.DEFAULT_PREVIEW_SIZE))
    write_mattes = bool(body.get("write_mattes", True))
    out_dir = _get(body, "matte_dir", str, None)
    if out_dir is not None and not os.path.isabs(out_dir):
        raise _bad("matte_dir must be an absolute path, got %r" % out_dir)
    if not record.session.obj_ids:
        raise _bad("session %s has no objects yet: add a prompt before propagating" % record.id)

    # the anchor: the given start, else the earliest prompted frame in range, else the range's end
    keyframe = _first_keyframe(record.session, lo, hi)
    anchor = start if start is not None else keyframe
    # passes: (start frame, frames after it, reverse); `max_frames` counts frames after the start
    plan: list[tuple[int, int, bool]] = []
    if direction in (protocol.FORWARD, protocol.BOTH):
        a = anchor if anchor is not None else lo
        plan.append((a, hi - a, False))
    if direction in (protocol.BACKWARD, protocol.BOTH) and not (direction == protocol.BOTH and anchor is None):
        b = anchor if anchor is not None else hi
        plan.append((b, b - lo, True))
    total = len({f for a, n, rev in plan for f in (range(a - n, a + 1) if rev else range(a, a + n + 1))})
    iterator = _propagation(record.session, plan, lo, hi)
    writer = s.writer_for(record, out_dir) if write_mattes else None
    s.start_stream(job, record, iterator, total, credit, write_mattes, preview_size, writer)
    assert s._outbox is not None
    s._outbox.send(job.identity, protocol.ACCEPTED, job.msg.request_id,
                   {"total": total, "first": lo, "last": hi, "start": anchor, "direction": direction,
                    "matte_dir": out_dir or record.matte_dir if write_mattes else None},
                   session=record.id, cache=False)
    return None


def _first_keyframe(session: Any, lo: int, hi: int) -> Optional[int]:
    """Where propagation starts by default: the earliest prompted frame in [lo, hi], if any."""
    prompts = getattr(session, "prompts", None)
    if callable(prompts):
        frames = [int(f) for per_obj in prompts().values() for f in per_obj]
    else:
        frames = [int(f) for f in getattr(session, "keyframes", [])]
    inside = sorted(f for f in frames if lo <= f <= hi)
    return inside[0] if inside else None


def _propagation(session: Any, plan: list, lo: int, hi: int) -> Iterator[Any]:
    """Chain the passes of one request; skip frames outside [lo, hi] and repeats (both directions)."""
    seen: set[int] = set()
    for start, max_frames, reverse in plan:
        inner = session.propagate(start=start, max_frames=max_frames, reverse=reverse)
        try:
            for result in inner:
                frame = int(result.frame)
                if frame < lo or frame > hi:
                    break
                if frame in seen:
                    continue
                seen.add(frame)
                yield result
        finally:
            close = getattr(inner, "close", None)
            if close is not None:
                close()


@_handles(protocol.GET_FRAME)
def _get_frame(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    body = job.msg.body
    frame = _frame_of(record, body)
    what = _get(body, "what", str, "mask")
    result = record.session.frame_result(frame)
    logits = np.asarray(result.logits, dtype=np.float32)
    if what == "mask":
        data = (logits > 0).astype(np.uint8)
    elif what == "alpha":
        data = (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float16)
    elif what == "logits":
        data = logits
    else:
        raise _bad("what must be 'mask', 'alpha' or 'logits', got %r" % what)
    out = _frame_body(result, max(0, _int(body, "preview_size", 0)), {})
    return out, {"mattes": data}


@_handles(protocol.WRITE_MATTES)
def _write_mattes(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    body = job.msg.body
    frames = body.get("frames")
    if frames is None:
        frames = list(range(_int(body, "first", record.first), _int(body, "last", record.last) + 1))
    if not isinstance(frames, list) or not all(isinstance(f, int) and not isinstance(f, bool) for f in frames):
        raise _bad("field 'frames' must be a list of frame numbers")
    for f in frames:
        if not record.first <= f <= record.last:
            raise _bad("frame %d is outside the plate's frames %d-%d" % (f, record.first, record.last))
    out_dir = _get(body, "matte_dir", str, None)
    if out_dir is not None and not os.path.isabs(out_dir):
        raise _bad("matte_dir must be an absolute path, got %r" % out_dir)
    fmt = _get(body, "matte_format", str, None)
    if fmt is not None and fmt not in ("exr", "png"):
        raise _bad("matte_format must be 'exr' or 'png'")
    writer = s.writer_for(record, out_dir, fmt)
    written = []
    for f in frames:
        result = record.session.frame_result(f)
        if not len(result.obj_ids):
            continue
        paths = s._write_mattes(writer, result)
        written.append({"frame": f, "obj_ids": [int(o) for o in result.obj_ids],
                        "matte_paths": [paths.get(int(o)) for o in result.obj_ids]})
    return {"written": written}, None


@_handles(protocol.GET_SHAPES)
def _get_shapes(s: Scheduler, job: Job) -> tuple:
    raise RequestError(protocol.E_NOT_IMPLEMENTED, "get_shapes is planned (mask -> Bezier shapes) but this worker "
                       "does not serve it yet")


@_handles(protocol.SAVE)
def _save_session(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s._save(record)
    _write_json_atomic(record.folder / SESSION_FILE, record.persisted())
    return {"saved": True}, None


@_handles(protocol.CLOSE)
def _close_session(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    s._unload(record)
    s.forget(record)
    return {"closed": True}, None


@_handles(protocol.DELETE_SESSION)
def _delete_session(s: Scheduler, job: Job) -> tuple:
    session_id = _get(job.msg.body, "session", str, None) or job.msg.session
    record = s.record(session_id)
    s.check_not_streaming(record, job.msg.type)
    s._unload(record)
    s.forget(record)
    shutil.rmtree(record.folder, ignore_errors=True)
    return {"deleted": record.id}, None


# ---------------------------------------------------------------------------------------------
# The I/O thread


def _worker_version() -> str:
    try:
        from importlib.metadata import version

        return version("samroto")
    except Exception:
        return "0+unknown"


class Worker:
    """The worker process's server. `serve()` blocks until `stop()` (or SIGINT/SIGTERM)."""

    CAPABILITIES = ("propagate.both", "credit", "cancel", "push_frames", "strokes.brush", "strokes.lasso",
                    "mattes.exr", "mattes.png", "preview.rle", "persistence")

    def __init__(self, config: WorkerConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self.limits = config.limits
        token = config.token or auth.load_or_create_token(auth.token_path(config.config_dir))
        self.signer = codec.Signer(token)
        self.replay_guard = codec.ReplayGuard(window_s=self.limits.replay_window_s,
                                              max_nonces=self.limits.max_remembered_nonces)
        self.context = zmq.Context()
        self.outbox_endpoint = "inproc://samroto-outbox-%s" % uuid.uuid4().hex
        self._stop = threading.Event()
        self._started = time.time()
        self._recent: "collections.OrderedDict[tuple, Optional[list]]" = collections.OrderedDict()
        self._router: Optional[zmq.Socket] = None
        self.address: Optional[str] = None
        self.scheduler = Scheduler(self)
        self.config.session_dir.mkdir(parents=True, exist_ok=True)
        self.curve = not auth.is_local_address(config.bind)

    # --- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop (safe from signal handlers and other threads)."""
        self._stop.set()

    def bind(self) -> str:
        router = self.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)   # sending to a vanished client raises instead of dropping
        router.setsockopt(zmq.ROUTER_HANDOVER, 1)    # a reconnecting client keeps its identity
        router.setsockopt(zmq.MAXMSGSIZE, self.limits.max_message_bytes)
        router.setsockopt(zmq.RCVHWM, 256)
        router.setsockopt(zmq.SNDHWM, 1024)
        router.setsockopt(zmq.LINGER, 1000)
        router.setsockopt(zmq.HEARTBEAT_IVL, 2000)
        router.setsockopt(zmq.HEARTBEAT_TIMEOUT, 10000)
        if self.curve:
            public, secret = auth.load_or_create_server_keys(self.config.config_dir)
            router.setsockopt(zmq.CURVE_SERVER, 1)
            router.setsockopt(zmq.CURVE_SECRETKEY, secret)
            router.setsockopt(zmq.CURVE_PUBLICKEY, public)
        bind = self.config.bind
        if bind.startswith("tcp://") and bind.endswith(":0"):
            bind = bind[:-2] + ":*"  # an ephemeral port, reported by LAST_ENDPOINT
        router.bind(bind)
        self._router = router
        self.address = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        return self.address

    def _announce(self) -> None:
        if not self.config.announce:
            return
        folder = self.config.config_dir or auth.config_dir()
        folder.mkdir(parents=True, exist_ok=True)
        _write_json_atomic(folder / auth.WORKER_FILE, {"address": self.address, "pid": os.getpid(),
                                                       "curve": self.curve, "started": self._started})

    def _unannounce(self) -> None:
        if not self.config.announce:
            return
        path = (self.config.config_dir or auth.config_dir()) / auth.WORKER_FILE
        try:
            if json.loads(path.read_text()).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass

    def serve(self, *, install_signal_handlers: bool = True, ready: Optional[Callable[[str], None]] = None) -> int:
        if self._router is None:
            self.bind()
        assert self._router is not None and self.address is not None
        previous = {}
        if install_signal_handlers and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                previous[signum] = signal.signal(signum, lambda *_: self.stop())
        inbox = self.context.socket(zmq.PULL)
        inbox.bind(self.outbox_endpoint)
        self.scheduler.start()
        self._announce()
        if ready is not None:
            ready(self.address)
        try:
            self._loop(inbox)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            self._unannounce()
            inbox.close(linger=0)
            self._router.close(linger=1000)
            self.context.term()
        return 0

    def _loop(self, inbox: zmq.Socket) -> None:
        router = self._router
        assert router is not None
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(inbox, zmq.POLLIN)
        stopping = False
        while True:
            if self._stop.is_set() and not stopping:
                stopping = True
                log.info("stopping: finishing the frame in flight")
                self.scheduler.begin_stop()
            if stopping and not self.scheduler.is_alive():
                self._drain_inbox(inbox)
                return
            events = dict(poller.poll(100))
            if events.get(inbox):
                self._drain_inbox(inbox, budget=256)
            if events.get(router):
                for _ in range(64):  # bounded batch, then give the inbox a turn
                    try:
                        frames = router.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._handle(frames)

    def _drain_inbox(self, inbox: zmq.Socket, budget: int = 1_000_000) -> None:
        for _ in range(budget):
            try:
                frames = inbox.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            identity, reply_to, flag = frames[0].bytes, frames[1].bytes.decode(), frames[2].bytes
            parts = frames[3:]
            if flag == b"c" and reply_to:
                self._remember_reply(identity, reply_to, [bytes(p.buffer) for p in parts])
            self._send(identity, parts)

    def _send(self, identity: bytes, parts: list) -> None:
        assert self._router is not None
        try:
            self._router.send_multipart([identity] + list(parts), zmq.NOBLOCK, copy=False)
        except zmq.Again:
            log.warning("client %s is not reading; dropped a message", identity.hex()[:8])
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                self.scheduler.client_gone(identity)
            else:
                log.warning("send failed: %s", exc)

    def send_direct(self, identity: bytes, mtype: str, reply_to: Optional[str], body: dict,
                    *, signed: bool = True, cache: bool = False) -> None:
        """Send from the I/O thread (or with the scheduler lock held by the I/O thread)."""
        parts = codec.encode(self.signer, mtype, body=body, reply_to=reply_to)
        if not signed:
            parts[0] = b""
        if cache and reply_to:
            self._remember_reply(identity, reply_to, [bytes(p) for p in parts])
        self._send(identity, parts)

    # --- request de-duplication: a client retrying after a timeout resends the same id ----

    def _remember_reply(self, identity: bytes, request_id: str, parts: list) -> None:
        key = (identity, request_id)
        if sum(len(p) for p in parts) > 256 * 1024:
            self._recent.pop(key, None)  # too big to keep: a retry re-executes
            return
        self._recent[key] = parts
        self._recent.move_to_end(key)
        while len(self._recent) > 1024:
            self._recent.popitem(last=False)

    # --- incoming ------------------------------------------------------------------------

    def _handle(self, frames: list) -> None:
        if len(frames) < 2:
            return
        identity = frames[0].bytes
        parts = frames[1:]
        try:
            msg = codec.decode(parts, self.signer, limits=self.limits, replay_guard=self.replay_guard)
        except ProtocolError as exc:
            request_id = codec.peek_request_id(parts, limits=self.limits)
            # an unauthenticated peer gets an unsigned refusal: it could not check our signature anyway
            self.send_direct(identity, protocol.ERROR, request_id, {"code": exc.code, "message": exc.message},
                             signed=exc.code != protocol.E_AUTH)
            return
        except Exception as exc:  # never let one message take the worker down
            log.error("decoding a message failed:\n%s", traceback.format_exc())
            self.send_direct(identity, protocol.ERROR, None, {"code": protocol.E_MALFORMED, "message": _describe(exc)})
            return
        try:
            self._dispatch(identity, msg)
        except RequestError as exc:
            self.send_direct(identity, protocol.ERROR, msg.request_id, {"code": exc.code, "message": exc.message},
                             cache=True)
        except Exception as exc:
            log.error("handling %s failed:\n%s", msg.type, traceback.format_exc())
            self.send_direct(identity, protocol.ERROR, msg.request_id,
                             {"code": protocol.E_INTERNAL, "message": _describe(exc)})

    def _dispatch(self, identity: bytes, msg: Message) -> None:
        self.scheduler.touch(identity)
        key = (identity, msg.request_id)
        if key in self._recent:
            cached = self._recent[key]
            if cached is not None:
                self._send(identity, _resign(self.signer, cached))
            return  # in progress (or a stream): the answer is on its way
        mtype = msg.type
        if mtype == protocol.CREDIT:
            target = _get(msg.body, "request", str)
            amount = _int(msg.body, "n")
            if not 0 < amount <= 4096:
                raise _bad("credit n must be 1 to 4096")
            self.scheduler.add_credit(identity, target, amount)
            return
        if mtype == protocol.HELLO:
            self._hello(identity, msg)
            return
        if mtype == protocol.PING:
            self.send_direct(identity, protocol.REPLY, msg.request_id, {"pong": True})
            return
        if mtype == protocol.STATUS:
            self.send_direct(identity, protocol.REPLY, msg.request_id, self._status())
            return
        if mtype == protocol.LIST_SESSIONS:
            self.send_direct(identity, protocol.REPLY, msg.request_id, {"sessions": self.scheduler.list_records()})
            return
        if mtype == protocol.CANCEL:
            target = _get(msg.body, "request", str, None)
            if target is None and not msg.session:
                raise _bad("cancel needs a request id (field 'request') or a session")
            cancelled = self.scheduler.cancel(identity, request_id=target, session=msg.session)
            self.send_direct(identity, protocol.REPLY, msg.request_id, {"cancelled": cancelled})
            return
        if mtype not in protocol.REQUEST_TYPES:
            raise RequestError(protocol.E_UNKNOWN_TYPE, "unknown request type %r (this worker speaks protocol %s)"
                               % (mtype, protocol.version_string()))
        self.scheduler.submit(Job(identity=identity, msg=msg))
        self._recent[key] = None  # in progress: a retried copy is ignored
        while len(self._recent) > 1024:
            self._recent.popitem(last=False)

    def _hello(self, identity: bytes, msg: Message) -> None:
        client_version = msg.body.get("protocol")
        if client_version is not None:
            try:
                major = protocol.parse_version(client_version)[0]
            except ValueError as exc:
                raise _bad(str(exc)) from None
            if major != protocol.PROTOCOL_VERSION[0]:
                raise RequestError(protocol.E_VERSION, "client speaks protocol %s, this worker %s: update the "
                                   "older side" % (protocol.version_string(protocol.parse_version(client_version)),
                                                   protocol.version_string()))
        limits = self.limits
        self.send_direct(identity, protocol.REPLY, msg.request_id, {
            "protocol": protocol.version_string(),
            "worker_version": _worker_version(),
            "model": self.engine.model_name,
            "device": self.engine.device,
            "capabilities": list(self.CAPABILITIES),
            "requests": list(protocol.REQUEST_TYPES),
            "limits": {"max_message_bytes": limits.max_message_bytes, "max_body_bytes": limits.max_body_bytes,
                       "max_buffers": limits.max_buffers},
            "session_dir": str(self.config.session_dir),
            "pid": os.getpid(),
        })

    def _status(self) -> dict:
        status = self.scheduler.status()
        status.update({"uptime_s": time.time() - self._started, "pid": os.getpid(), "model": self.engine.model_name,
                       "device": self.engine.device, "rss_bytes": _rss_bytes()})
        return status


def _resign(signer: codec.Signer, parts: list) -> list:
    """A cached reply sent again gets a fresh nonce and timestamp (the client's replay guard)."""
    header = codec.unpackb(parts[1], limits=protocol.DEFAULT_LIMITS, max_bytes=4096, what="header")
    header["ts"] = time.time()
    header["nonce"] = os.urandom(codec.NONCE_BYTES)
    rest = [codec.packb(header)] + list(parts[2:])
    return [signer.sign(rest)] + rest


def _rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
