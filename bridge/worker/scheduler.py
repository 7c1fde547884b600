"""The compute thread: runs queued requests one at a time and advances propagations.

Model work is serialised on this one thread, so the I/O thread (`server.py`) stays free to
answer `cancel`, `status` and `hello` while a frame computes. A propagation is a `Stream`
advanced one frame per step, round-robin between streams; it only advances while its client
has credit, so a slow client parks its stream instead of piling frames up in memory.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Optional, Sequence

import zmq

from .. import codec, protocol
from ..codec import Message, ProtocolError
from .handlers import HANDLERS, MUTATING, RequestError, bad, describe_error, frame_body
from ...core.fileio import write_json_atomic
from .sessions import (PUSHED_DIR, SESSION_FILE, SESSION_ID_RE, STATE_DIR, SessionRecord, default_matte_dir,
                       read_record)

if TYPE_CHECKING:
    from .server import Worker

log = logging.getLogger("samroto.worker")

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
        self._last_parked_check = 0.0
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

    # --- device failures -------------------------------------------------------------------

    def _device_failure(self, exc: BaseException, what: str) -> Optional[tuple[str, str]]:
        """(code, message) for an error the GPU raised, or None. Out of memory: memory is handed back
        and the worker keeps serving. A sticky CUDA error poisons the process: the worker stops,
        saying why, and exits non-zero so whoever started it can start it again."""
        classify = getattr(self.engine, "classify_error", None)
        kind = classify(exc) if classify is not None else None
        if kind == "out_of_memory":
            release = getattr(self.engine, "release_memory", None)
            if release is not None:
                release()
            log.warning("out of GPU memory on %s; memory handed back: %s", what, describe_error(exc))
            return protocol.E_OUT_OF_MEMORY, (
                "the GPU ran out of memory on %s; nothing was written. Close other sessions, track fewer "
                "objects at once or use a preview resolution, then try again" % what)
        if kind == "device_lost":
            log.critical("the GPU failed and cannot recover (%s); the worker stops: restart it", describe_error(exc))
            self.worker.fail(3)
            return protocol.E_DEVICE_LOST, ("the GPU failed and cannot recover (%s); the worker is stopping: "
                                            "restart it" % describe_error(exc))
        return None

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
                # parked streams are checked even while others keep the thread busy
                now = time.monotonic()
                if now - self._last_parked_check >= min(0.1, self.config.keepalive_interval_s):
                    self._last_parked_check = now
                    self._check_parked_streams()
                if self._jobs:
                    return self._jobs.popleft(), None
                for key, stream in self._streams.items():
                    if stream.cancel_reason is not None or stream.credit > 0:
                        self._streams.move_to_end(key)  # round-robin between streams
                        return None, stream
                self._cond.wait(timeout=min(0.1, self.config.keepalive_interval_s))

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
        handler = HANDLERS.get(job.msg.type)
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
        except (ValueError, KeyError, IndexError, TypeError, OSError) as exc:
            # user errors from core (FrameError, StrokeError, MatteError, ...) are ValueErrors with clear
            # messages; OSError: an unreadable plate or unwritable matte folder
            self._error(job.identity, job.msg.request_id, protocol.E_BAD_REQUEST, describe_error(exc))
        except Exception as exc:
            failure = self._device_failure(exc, job.msg.type)
            if failure is not None:
                self._error(job.identity, job.msg.request_id, *failure)
                return
            log.error("request %s failed:\n%s", job.msg.type, traceback.format_exc())
            self._error(job.identity, job.msg.request_id, protocol.E_INTERNAL,
                        "the worker failed on %s: %s" % (job.msg.type, describe_error(exc)))
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
            paths: dict[int, str] = {}
            if stream.write_mattes and len(result.obj_ids):
                paths = self.write_mattes(stream.writer, result)
            body = frame_body(result, stream.preview_size, paths)
            body["preview"] = stream.record.preview
        except StopIteration:
            self._end_stream(stream, protocol.DONE, {})
            return
        except Exception as exc:
            failure = self._device_failure(exc, protocol.PROPAGATE)
            if failure is not None:
                # the frame that failed was not stored: the session ends at the last whole frame
                self._end_stream(stream, protocol.ERROR, {"code": failure[0], "message": failure[1]})
                return
            user_error = isinstance(exc, (ValueError, OSError))
            if not user_error:
                log.error("propagation %s failed:\n%s", stream.request_id, traceback.format_exc())
            self._end_stream(stream, protocol.ERROR, {"code": protocol.E_BAD_REQUEST if user_error
                                                      else protocol.E_INTERNAL, "message": describe_error(exc)})
            return
        finally:
            with self._cond:
                self._busy_with = None
        with self._cond:
            stream.sent += 1
            stream.credit -= 1
            body["progress"] = {"done": stream.sent, "total": stream.total}
        self._outbox.send(stream.identity, protocol.FRAME, stream.request_id, body, session=stream.record.id)
        if self.config.save_every_frames > 0 and stream.sent % self.config.save_every_frames == 0:
            try:
                self.save(stream.record)
            except Exception:
                log.error("saving session %s failed:\n%s", stream.record.id, traceback.format_exc())

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
            self.save(stream.record)
        except Exception as exc:
            log.error("saving session %s failed: %s", stream.record.id, exc)
        if stream.writer is not None:
            self.finish_mattes(stream.writer)
        body = dict(body, sent=stream.sent, total=stream.total)
        self._outbox.send(stream.identity, kind, stream.request_id, body, session=stream.record.id)

    def write_mattes(self, writer: Any, result: Any) -> dict[int, str]:
        """One frame's mattes through the session's matte output (confidence in the EXR headers)."""
        return {int(k): str(v) for k, v in writer.write(result).items()}

    def finish_mattes(self, writer: Any) -> None:
        """Write the confidence report beside the mattes (after a stream or a write_mattes request)."""
        try:
            writer.finish()
        except Exception:
            log.error("writing the confidence report failed:\n%s", traceback.format_exc())

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
            self.unload(record)

    # --- sessions -------------------------------------------------------------------------

    def save(self, record: SessionRecord) -> None:
        if record.session is not None:
            record.session.save()

    def unload(self, record: SessionRecord) -> None:
        if record.session is None:
            return
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

    def evict_if_needed(self, keep: SessionRecord) -> None:
        loaded = [r for r in self._records.values() if r.session is not None and r is not keep]
        excess = len(loaded) + 1 - self.config.max_loaded_sessions
        for record in sorted(loaded, key=lambda r: r.last_used):
            if excess <= 0:
                break
            if record.stream is None:
                self.unload(record)
                excess -= 1

    def record(self, session_id: Optional[str]) -> SessionRecord:
        """The session named in a request, loaded into memory (reopened from disk if needed)."""
        if not session_id:
            raise bad("this request needs a session id (open a session first)")
        if not SESSION_ID_RE.match(session_id):
            raise RequestError(protocol.E_NO_SESSION, "invalid session id %r" % session_id)
        record = self._records.get(session_id)
        if record is None:
            folder = self.config.session_dir / session_id
            if not (folder / SESSION_FILE).is_file():
                raise RequestError(protocol.E_NO_SESSION, "no session %r in %s" % (session_id, self.config.session_dir))
            record = read_record(folder)
            with self._cond:
                self._records[session_id] = record
        if record.session is None:
            self.evict_if_needed(record)
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

    def writer_for(self, record: SessionRecord, out_dir: Optional[str] = None, fmt: Optional[str] = None,
                   options: Optional[dict] = None) -> Any:
        """The session's matte output for a folder, format and options (kept while the session is
        loaded, so its confidence report covers every pass)."""
        folder = out_dir or record.matte_dir
        fmt = fmt or record.matte_format
        key = (folder, fmt, tuple(sorted((options or {}).items())))
        if key not in record.outputs:
            record.outputs[key] = self.engine.matte_writer(Path(folder), record.matte_name, fmt,
                                                          frames=record.frames, options=options)
        return record.outputs[key]

    def new_record(self, *, name: str, plate: Any, numbers: Sequence[int], height: int, width: int,
                   matte_dir: Optional[str], matte_format: str, source: Optional[dict] = None,
                   track_resolution: Optional[int] = None) -> SessionRecord:
        if not len(numbers):
            raise bad("the plate has no frames")
        session_id = "%s-%s" % (name, uuid.uuid4().hex[:8])
        folder = self.config.session_dir / session_id
        folder.mkdir(parents=True, exist_ok=False)
        if matte_dir is None:
            matte_dir = str(default_matte_dir(plate, folder, session_id))
        record = SessionRecord(id=session_id, name=name, plate=plate, first=int(numbers[0]),
                               last=int(numbers[-1]), frame_count=len(numbers), height=int(height),
                               width=int(width), matte_dir=matte_dir, matte_format=matte_format,
                               created=time.time(), source=source, folder=folder,
                               track_resolution=track_resolution)
        write_json_atomic(folder / SESSION_FILE, record.persisted())
        return record

    def check_not_streaming(self, record: SessionRecord, mtype: str) -> None:
        if record.stream is not None and mtype in MUTATING:
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

    def register(self, record: SessionRecord) -> None:
        with self._cond:
            self._records[record.id] = record

    def send(self, identity: bytes, mtype: str, reply_to: Optional[str], body: Optional[dict] = None,
             arrays: Optional[dict] = None, session: Optional[str] = None, *, cache: bool = False) -> None:
        """Queue a message for the I/O thread (compute thread only)."""
        assert self._outbox is not None
        self._outbox.send(identity, mtype, reply_to, body, arrays, session, cache=cache)

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
                    out.append(dict(read_record(child).info(), loaded=False))
                except (OSError, ValueError, TypeError):
                    continue  # a half-created or foreign folder
        out.extend(loaded.values())
        return sorted(out, key=lambda info: -float(info.get("created") or 0))
