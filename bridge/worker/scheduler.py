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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

import zmq

from .. import codec, protocol
from ..codec import ProtocolError
from . import logs
from .backend import Propagation
from .errors import RequestError, describe_error
from .handlers import HANDLERS, HandlerContext, Job, RequestLimits, finish_mattes, frame_body, write_frame_mattes
from .registry import SessionRegistry
from .sessions import SessionRecord

EXIT_DEVICE_LOST = 4  # the worker's exit status when the GPU failed for good (a sticky CUDA error)

if TYPE_CHECKING:
    from .server import Worker

log = logging.getLogger("samroto.worker")

@dataclass
class Stream:
    """One running propagation, advanced a frame at a time by the compute thread."""

    identity: bytes
    request_id: str
    record: SessionRecord
    iterator: Propagation
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
        self._stopping = False
        self._busy_with: Optional[str] = None
        self._current_job: Optional[Job] = None
        self._queued_bytes = 0  # what queued and running requests hold (Job.cost)
        self.registry = SessionRegistry(session_dir=self.config.session_dir, backend=self.engine,
                                        max_loaded=self.config.max_loaded_sessions,
                                        release_stream=self._release_stream)
        self.context = HandlerContext(
            registry=self.registry, backend=self.engine, streams=self,
            limits=RequestLimits(prompts=self.config.prompt_limits, max_frames=self.config.max_frames,
                                 read_roots=tuple(self.config.read_roots)))
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
            if self._queued_bytes and self._queued_bytes + job.cost > self.config.max_queued_bytes:
                raise RequestError(protocol.E_BUSY, "queued requests hold %d MB (limit %d MB, --max-queued-mb); "
                                   "try again shortly" % (self._queued_bytes >> 20, self.config.max_queued_bytes >> 20))
            self._queued_bytes += job.cost
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
                "loaded_sessions": self.registry.loaded_ids(),
                "queued_bytes": self._queued_bytes,
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
            self.worker.fail(EXIT_DEVICE_LOST)
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
                # a cancelled stream ends before the next request runs (ending one is cheap): a client
                # that cancelled and then prompts finds the session free, not busy
                for stream in self._streams.values():
                    if stream.cancel_reason is not None:
                        return None, stream
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
            self._current_job = job
        started, outcome = time.monotonic(), "ok"
        try:
            if handler is None:
                raise RequestError(protocol.E_UNKNOWN_TYPE, "unknown request type %r" % job.msg.type)
            result = handler(self.context, job)
            if result is not None:
                body, arrays = result
                self._reply(job, body, arrays)
        except (RequestError, ProtocolError) as exc:
            outcome = exc.code
            self._error(job.identity, job.msg.request_id, exc.code, exc.message)
        except Exception as exc:
            failure = self._device_failure(exc, job.msg.type)
            if failure is not None:
                outcome = failure[0]
                self._error(job.identity, job.msg.request_id, *failure)
            elif logs.is_client_error(exc):
                # samroto's checks (FrameError, StrokeError, MatteError, ...) and unreadable files
                outcome = protocol.E_BAD_REQUEST
                self._error(job.identity, job.msg.request_id, protocol.E_BAD_REQUEST, describe_error(exc))
            else:
                outcome = protocol.E_INTERNAL
                logs.internal_error("request %s" % job.msg.type, exc)
                self._error(job.identity, job.msg.request_id, protocol.E_INTERNAL,
                            "the worker failed on %s: %s" % (job.msg.type, describe_error(exc)))
        finally:
            with self._cond:
                self._busy_with = None
                self._current_job = None
                self._queued_bytes -= job.cost
            logs.request_done(job.msg.type, session=job.msg.session, identity=job.identity,
                              request_id=job.msg.request_id, seconds=time.monotonic() - started, outcome=outcome)

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
                paths = write_frame_mattes(stream.writer, result, stream.record.live)
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
            user_error = logs.is_client_error(exc)
            if not user_error:
                logs.internal_error("propagation %s" % stream.request_id, exc)
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
                self.registry.save(stream.record)
            except Exception:
                log.error("saving session %s failed:\n%s", stream.record.id, traceback.format_exc())

    def _end_stream(self, stream: Stream, kind: str, body: dict) -> None:
        assert self._outbox is not None
        try:
            stream.iterator.close()  # stop iterating = cancel: the session stays consistent
        except Exception:
            log.error("closing propagation %s failed:\n%s", stream.request_id, traceback.format_exc())
        with self._cond:
            self._streams.pop((stream.identity, stream.request_id), None)
            stream.record.stream = None
        try:
            self.registry.save(stream.record)
        except Exception as exc:
            log.error("saving session %s failed: %s", stream.record.id, exc)
        if stream.writer is not None:
            finish_mattes(stream.writer)
        body = dict(body, sent=stream.sent, total=stream.total)
        logs.stream_ended(request_id=stream.request_id, session=stream.record.id, kind=kind, sent=stream.sent,
                          total=stream.total, seconds=time.monotonic() - stream.started,
                          reason=body.get("reason") or body.get("message"))
        self._outbox.send(stream.identity, kind, stream.request_id, body, session=stream.record.id)

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
        self.registry.unload_all()

    # --- what handlers use (HandlerContext.streams) ----------------------------------------

    def start_stream(self, job: Job, record: SessionRecord, iterator: Propagation, total: int, credit: int,
                     write_mattes: bool, preview_size: int, writer: Any) -> Stream:
        stream = Stream(identity=job.identity, request_id=job.msg.request_id, record=record, iterator=iterator,
                        total=total, credit=credit, write_mattes=write_mattes, preview_size=preview_size,
                        writer=writer)
        with self._cond:
            self._streams[(job.identity, job.msg.request_id)] = stream
            record.stream = stream
        logs.stream_started(request_id=job.msg.request_id, session=record.id, identity=job.identity, total=total)
        return stream

    def send(self, identity: bytes, mtype: str, reply_to: Optional[str], body: Optional[dict] = None,
             arrays: Optional[dict] = None, session: Optional[str] = None, *, cache: bool = False) -> None:
        """Queue a message for the I/O thread (compute thread only)."""
        assert self._outbox is not None
        self._outbox.send(identity, mtype, reply_to, body, arrays, session, cache=cache)

    def stopping(self) -> bool:
        """True once the worker was asked to stop (long handlers check it between steps)."""
        return self._stopping

    def _release_stream(self, record: SessionRecord, reason: str) -> None:
        """End a parked stream so its session can be unloaded (compute thread, from make_room)."""
        stream = record.stream
        if isinstance(stream, Stream):
            stream.cancel_reason = reason
            self._end_stream(stream, protocol.CANCELLED, {"reason": reason})

    # --- stopping with a stuck request (called from the I/O thread) -------------------------

    @property
    def busy_with(self) -> Optional[str]:
        return self._busy_with

    def save_idle_sessions(self) -> int:
        """Save every loaded session the running job does not hold (the compute thread is stuck in
        it and touches no other session meanwhile). Returns how many were saved."""
        current = self._current_job
        held = current.msg.session if current is not None else None
        saved = 0
        for record in self.registry.loaded():
            if record.id == held:
                continue
            try:
                self.registry.save(record)
                saved += 1
            except Exception:
                log.error("saving session %s failed:\n%s", record.id, traceback.format_exc())
        return saved
