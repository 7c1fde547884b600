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
import errno
import json
import logging
import os
import secrets
import signal
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import zmq

from .. import auth, codec, protocol
from ..codec import Message, ProtocolError
from .backend import Engine, ModelEngine
from .handlers import RequestError, bad, describe_error, get_field, get_int
from .scheduler import EXIT_DEVICE_LOST, Job, Scheduler
from ...core.fileio import remove_stale_temporaries, write_json_atomic
from ...core.sidecar import PromptLimits
from .sessions import PUSHED_DIR, STATE_DIR, default_session_dir
from .zap import ZapHandler

__all__ = ["Worker", "WorkerConfig", "Engine", "ModelEngine", "default_session_dir", "EXIT_OK", "EXIT_STUCK",
           "EXIT_DEVICE_LOST"]

log = logging.getLogger("samroto.worker")

# exit statuses of `serve()` (and `samroto worker`)
EXIT_OK = 0      # stopped cleanly: streams ended, queued requests refused, every session saved
EXIT_STUCK = 3   # stopped while a request was stuck on the compute thread: the other sessions were saved


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
    # queued requests may hold at most this much (their bytes, with bodies counted at what they
    # decode to): 64 queued 512 MB messages must not add up to 32 GB
    max_queued_bytes: int = 1024 * 2 ** 20
    # sessions kept in memory; a session whose stream waits for credit counts too (it is cancelled
    # and unloaded when room is needed)
    max_loaded_sessions: int = 8
    # one request's limits on prompts (objects per session, clicks, sidecar size, mask size)
    prompt_limits: PromptLimits = field(default_factory=PromptLimits)
    # frames in one session's range (a plate, a pushed plate, a write_mattes range)
    max_frames: int = 100_000
    # folders besides a session's plate folder and session folder that requests may read files from
    # (mask files named in `import_prompts` sidecars)
    read_roots: tuple = ()
    # after a stop request, wait this long for the compute thread; if a request is still stuck,
    # save every session it does not hold and exit with EXIT_STUCK
    stop_grace_s: float = 10.0
    # flush a propagating session's state to disk every N frames (bounds work lost to a crash)
    save_every_frames: int = 8
    # write `worker.json` (address, pid) into the config folder for clients to find
    announce: bool = True


def _worker_version() -> str:
    try:
        from importlib.metadata import version

        return version("samroto")
    except Exception:
        return "0+unknown"


class Worker:
    """The worker process's server. `serve()` blocks until `stop()` (or SIGINT/SIGTERM)."""

    CAPABILITIES = ("propagate.both", "credit", "cancel", "push_frames", "strokes.brush", "strokes.lasso",
                    "mattes.exr", "mattes.png", "preview.rle", "persistence", "colour.ocio",
                    "propagate.span", "locks", "history", "frame.before")

    def __init__(self, config: WorkerConfig, engine: Engine) -> None:
        self.config = config
        self.engine = engine
        self.limits = config.limits
        token = config.token or auth.load_or_create_token(auth.token_path(config.config_dir))
        self.token = token
        self.signer = codec.Signer(token)
        # replay state per client: one client's clock or traffic never locks out another
        self.replay_guards = codec.PeerReplayGuards(window_s=self.limits.replay_window_s,
                                                    max_nonces=self.limits.max_remembered_nonces,
                                                    max_peers=self.limits.max_peers)
        # this run of the worker, announced in `hello` and signed into every later request: a request
        # captured before a restart is refused after it
        self.epoch = secrets.token_hex(16)
        self.context = zmq.Context()
        self.outbox_endpoint = "inproc://samroto-outbox-%s" % uuid.uuid4().hex
        self._stop = threading.Event()
        self._started = time.time()
        self._recent = ReplyCache()
        self._router: Optional[zmq.Socket] = None
        self.address: Optional[str] = None
        self.scheduler = Scheduler(self)
        self.config.session_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.curve = not auth.is_local_address(config.bind)
        self.zap: Optional[ZapHandler] = None
        self.exit_code = EXIT_OK

    # --- lifecycle ------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the worker to stop (safe from signal handlers and other threads)."""
        self._stop.set()

    def fail(self, code: int) -> None:
        """Stop, and make `serve` return `code` (the device is gone: nothing more can be computed)."""
        self.exit_code = code
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
        # every peer is authenticated at the handshake (zap.py): nothing from a peer without the
        # token (loopback) or an authorised key (network) is ever read
        if self.curve:
            public, secret = auth.load_or_create_server_keys(self.config.config_dir)
            self.zap = ZapHandler(self.context, authorized_keys=auth.authorized_keys_path(self.config.config_dir))
            router.setsockopt(zmq.CURVE_SERVER, 1)
            router.setsockopt(zmq.CURVE_SECRETKEY, secret)
            router.setsockopt(zmq.CURVE_PUBLICKEY, public)
        else:
            self.zap = ZapHandler(self.context, password=auth.plain_password(self.token))
            router.setsockopt(zmq.PLAIN_SERVER, 1)
        router.setsockopt(zmq.ZAP_DOMAIN, b"samroto")
        self.zap.start()
        bind = self.config.bind
        if bind.startswith("tcp://") and bind.endswith(":0"):
            bind = bind[:-2] + ":*"  # an ephemeral port, reported by LAST_ENDPOINT
        router.bind(bind)
        self._router = router
        self.address = router.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.address

    def _announce(self) -> None:
        if not self.config.announce:
            return
        folder = self.config.config_dir or auth.config_dir()
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / auth.WORKER_FILE, {"address": self.address, "pid": os.getpid(),
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
        self._remove_stale_temporaries()
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
            if self.zap is not None:
                self.zap.stop()
            if self.exit_code != EXIT_STUCK:
                self.context.term()  # with a stuck compute thread its socket never closes: term would wait forever
        return self.exit_code

    def _remove_stale_temporaries(self) -> None:
        """Temporary files a killed worker left (write_mattes, session saves): gone at start."""
        removed = 0
        try:
            for record in self.scheduler.registry.on_disk(limit=10_000):
                for folder in (record.folder, record.folder / STATE_DIR, record.folder / PUSHED_DIR):
                    removed += remove_stale_temporaries(folder)
                # matte folders may be shared with other writers: only files an hour old
                removed += remove_stale_temporaries(record.matte_dir, older_than_s=3600.0)
        except OSError as exc:
            log.warning("cleaning temporary files failed: %s", exc)
        if removed:
            log.info("removed %d temporary files left by an earlier run", removed)

    def _loop(self, inbox: zmq.Socket) -> None:
        router = self._router
        assert router is not None
        poller = zmq.Poller()
        poller.register(router, zmq.POLLIN)
        poller.register(inbox, zmq.POLLIN)
        stopping_since: Optional[float] = None
        while True:
            if self._stop.is_set() and stopping_since is None:
                stopping_since = time.monotonic()
                log.info("stopping: finishing the frame in flight")
                self.scheduler.begin_stop()
            if stopping_since is not None and not self.scheduler.is_alive():
                self._drain_inbox(inbox)
                return
            if stopping_since is not None and time.monotonic() - stopping_since > self.config.stop_grace_s:
                # a request is stuck (a read that never returns, a model call that hangs): do not wait
                # for it; save everything it does not hold and say so in the exit status
                stuck = self.scheduler.busy_with
                saved = self.scheduler.save_idle_sessions()
                log.error("stopping without the compute thread: %s has run for more than %.0f s; saved %d "
                          "sessions, the one it works on keeps its last save", stuck or "a request",
                          self.config.stop_grace_s, saved)
                self.exit_code = EXIT_STUCK
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
        self._recent.store((identity, request_id), parts)

    # --- incoming ------------------------------------------------------------------------

    def _handle(self, frames: list) -> None:
        if len(frames) < 2:
            return
        identity = frames[0].bytes
        parts = frames[1:]
        try:
            msg = codec.decode(parts, self.signer, limits=self.limits,
                               check_header=lambda m: self._check_header(identity, m))
        except ProtocolError as exc:
            request_id = codec.peek_request_id(parts, limits=self.limits)
            # an unauthenticated peer gets an unsigned refusal: it could not check our signature anyway
            self.send_direct(identity, protocol.ERROR, request_id, {"code": exc.code, "message": exc.message},
                             signed=exc.code != protocol.E_AUTH)
            return
        except Exception as exc:  # never let one message take the worker down
            log.error("decoding a message failed:\n%s", traceback.format_exc())
            self.send_direct(identity, protocol.ERROR, None, {"code": protocol.E_MALFORMED, "message": describe_error(exc)})
            return
        try:
            self._dispatch(identity, msg)
        except RequestError as exc:
            self.send_direct(identity, protocol.ERROR, msg.request_id, {"code": exc.code, "message": exc.message},
                             cache=True)
        except Exception as exc:
            log.error("handling %s failed:\n%s", msg.type, traceback.format_exc())
            self.send_direct(identity, protocol.ERROR, msg.request_id,
                             {"code": protocol.E_INTERNAL, "message": describe_error(exc)})

    def _check_header(self, identity: bytes, msg: Message) -> None:
        """Epoch, then this client's replay state (signature and header already checked)."""
        if msg.type != protocol.HELLO and msg.epoch != self.epoch:
            raise ProtocolError(protocol.E_EPOCH, "this request was signed for %s; say hello again to get the "
                                "current epoch, then resend" % ("an earlier run of the worker" if msg.epoch
                                                                else "no worker run (no epoch in its header)"))
        self.replay_guards.check(identity, msg.timestamp, msg.nonce)

    def _dispatch(self, identity: bytes, msg: Message) -> None:
        self.scheduler.touch(identity)
        key = (identity, msg.request_id)
        if key in self._recent:
            cached = self._recent.get(key)
            if cached is not None:
                self._send(identity, _resign(self.signer, cached))
            return  # in progress (or a stream): the answer is on its way
        mtype = msg.type
        if mtype == protocol.CREDIT:
            target = get_field(msg.body, "request", str)
            amount = get_int(msg.body, "n")
            if not 0 < amount <= 4096:
                raise bad("credit n must be 1 to 4096")
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
            self.send_direct(identity, protocol.REPLY, msg.request_id,
                             {"sessions": self.scheduler.registry.list_records()})
            return
        if mtype == protocol.CANCEL:
            target = get_field(msg.body, "request", str, None)
            if target is None and not msg.session:
                raise bad("cancel needs a request id (field 'request') or a session")
            cancelled = self.scheduler.cancel(identity, request_id=target, session=msg.session)
            self.send_direct(identity, protocol.REPLY, msg.request_id, {"cancelled": cancelled})
            return
        if mtype not in protocol.REQUEST_TYPES:
            raise RequestError(protocol.E_UNKNOWN_TYPE, "unknown request type %r (this worker speaks protocol %s)"
                               % (mtype, protocol.version_string()))
        self.scheduler.submit(Job(identity=identity, msg=msg, cost=_queued_cost(msg)))
        self._recent.mark_in_progress(key)  # a retried copy is ignored until the answer is sent

    def _hello(self, identity: bytes, msg: Message) -> None:
        client_version = msg.body.get("protocol")
        if client_version is not None:
            try:
                major = protocol.parse_version(client_version)[0]
            except ValueError as exc:
                raise bad(str(exc)) from None
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
            "epoch": self.epoch,
            "limits": {"max_message_bytes": limits.max_message_bytes, "max_body_bytes": limits.max_body_bytes,
                       "max_buffers": limits.max_buffers, "max_containers": limits.max_containers,
                       "max_objects": self.config.prompt_limits.max_objects,
                       "max_points": self.config.prompt_limits.max_points,
                       "max_prompts": self.config.prompt_limits.max_prompts,
                       "max_frames": self.config.max_frames,
                       "max_queued_bytes": self.config.max_queued_bytes},
            "session_dir": str(self.config.session_dir),
            "pid": os.getpid(),
        })

    def _status(self) -> dict:
        status = self.scheduler.status()
        status.update({"uptime_s": time.time() - self._started, "pid": os.getpid(), "model": self.engine.model_name,
                       "device": self.engine.device, "rss_bytes": _rss_bytes()})
        memory = getattr(self.engine, "memory_status", None)
        status["vram"] = memory() if memory is not None else None
        return status


class ReplyCache:
    """Recent (client, request id) pairs and their replies, so that a request a client resends
    after a timeout is answered again instead of run twice. Bounded in entries and bytes."""

    def __init__(self, *, max_entries: int = 1024, max_bytes: int = 8 * 2 ** 20,
                 max_reply_bytes: int = 256 * 1024) -> None:
        self.max_entries, self.max_bytes, self.max_reply_bytes = max_entries, max_bytes, max_reply_bytes
        self._entries: "collections.OrderedDict[tuple, Optional[list]]" = collections.OrderedDict()
        self.bytes = 0

    def __contains__(self, key: tuple) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple) -> Optional[list]:
        """The cached reply parts, or None while the request is still being served."""
        return self._entries.get(key)

    def mark_in_progress(self, key: tuple) -> None:
        self._put(key, None)

    def store(self, key: tuple, parts: list) -> None:
        if sum(len(p) for p in parts) > self.max_reply_bytes:
            self._drop(key)  # too big to keep (arrays): a retry runs again; such requests only read
            return
        self._put(key, parts)

    def _size(self, parts: Optional[list]) -> int:
        return sum(len(p) for p in parts) if parts else 0

    def _drop(self, key: tuple) -> None:
        if key in self._entries:
            self.bytes -= self._size(self._entries.pop(key))

    def _put(self, key: tuple, parts: Optional[list]) -> None:
        self._drop(key)
        self._entries[key] = parts
        self.bytes += self._size(parts)
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.bytes -= self._size(old)


def _resign(signer: codec.Signer, parts: list) -> list:
    """A cached reply sent again gets a fresh nonce and timestamp (the client's replay guard)."""
    header = codec.unpackb(parts[1], limits=protocol.DEFAULT_LIMITS, max_bytes=4096, what="header")
    header["ts"] = time.time()
    header["nonce"] = os.urandom(codec.NONCE_BYTES)
    rest = [codec.packb(header)] + list(parts[2:])
    return [signer.sign(rest)] + rest


def _queued_cost(msg: Message) -> int:
    """What a queued request holds in memory: its arrays, and its body at what msgpack objects cost
    (up to ~16 times the bytes on the wire)."""
    arrays = sum(int(getattr(a, "nbytes", 0)) for a in msg.arrays.values())
    return arrays + 16 * msg.body_bytes


def _rss_bytes() -> Optional[int]:
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None
