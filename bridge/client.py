"""The worker client used by the Blender and Nuke add-ons and by scripts.

    from samroto.bridge import Client
    with Client() as client:                       # finds the worker and its token
        shot = client.open_session("/shots/sh010/plate.####.exr")
        shot.add_points(1001, obj_id=1, points=[(640, 360)], labels=[1])
        for result in shot.propagate(direction="both"):
            print(result.frame, result.obj_ids, result.matte_paths)

Runs on Python 3.9 to 3.11 without torch; numpy is optional (arrays come back as numpy
arrays when it is importable, else as `RawArray`: bytes + dtype + shape). Needs pyzmq and
msgpack >= 1.0. A `Client` is not thread-safe: use one per thread.
"""

from __future__ import annotations

import collections
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Deque, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import zmq

from . import auth, codec, protocol
from . import preview as preview_rle
from .codec import Message, RawArray

try:
    import numpy as _np
except ImportError:  # pragma: no cover - exercised by the no-numpy subprocess test
    _np = None  # type: ignore[assignment]


# ---------------------------------------------------------------------------------------------
# Exceptions: every error reply becomes one of these, with the worker's message.


class BridgeError(Exception):
    """Base of all client errors."""


class ConnectionTimeout(BridgeError):
    """The worker did not answer in time, even after retries."""


class _NotQueued(ConnectionTimeout):
    """The socket took no message within the timeout (no live connection to queue it on)."""


class AuthenticationError(BridgeError):
    """The worker refused our signature (token mismatch), or we could not find a token."""


class ProtocolMismatch(BridgeError):
    """Client and worker speak incompatible protocol versions."""


class RemoteError(BridgeError):
    """The worker answered a request with an error. `code` is one of `protocol.E_*`."""

    def __init__(self, code: str, message: str, request: str = "") -> None:
        self.code = code
        self.message = message
        self.request = request
        prefix = "%s: " % request if request else ""
        super().__init__("%s%s [%s]" % (prefix, message, code))


class BadRequest(RemoteError, ValueError):
    """The request's arguments were refused (frame out of range, wrong shape, ...)."""


class NoSuchSession(RemoteError, KeyError):
    """The session id is unknown to the worker."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


class WorkerBusy(RemoteError):
    """The worker's queue is full, or the session is propagating."""


class NotImplementedByWorker(RemoteError):
    """The worker does not serve this request (yet)."""


class LimitReached(BadRequest):
    """The request would pass one of the worker's limits (objects, prompts, frames, queued bytes)."""


class PropagationCancelled(BridgeError):
    """A propagation ended before its last frame without this `Propagation` asking: another client
    cancelled it, or the worker stopped (shut down, or gave up on a silent client). `reason` is the
    worker's; `received` counts the frames that arrived, of `total`."""

    def __init__(self, reason: str, *, request_id: str = "", received: int = 0, total: Optional[int] = None) -> None:
        self.reason = reason
        self.request_id = request_id
        self.received = received
        self.total = total
        of = " of %d" % total if total else ""
        super().__init__("the propagation was cancelled after %d%s frames: %s"
                         % (received, of, reason or "no reason given"))


_ERROR_CLASSES = {
    protocol.E_BAD_REQUEST: BadRequest,
    protocol.E_NO_SESSION: NoSuchSession,
    protocol.E_BUSY: WorkerBusy,
    protocol.E_NOT_IMPLEMENTED: NotImplementedByWorker,
    protocol.E_LIMIT: LimitReached,
}


def _error_from(msg: Message, request: str) -> BridgeError:
    code = str(msg.body.get("code", protocol.E_INTERNAL))
    message = str(msg.body.get("message", "unknown error"))
    if code == protocol.E_AUTH:
        return AuthenticationError("the worker refused the request's signature: %s (is the client using the "
                                   "worker's token file?)" % message)
    if code == protocol.E_VERSION:
        return ProtocolMismatch(message)
    return _ERROR_CLASSES.get(code, RemoteError)(code, message, request)


# ---------------------------------------------------------------------------------------------
# Results


@dataclass
class WorkerInfo:
    """What `hello` tells about the worker."""

    protocol: str
    worker_version: str
    model: str
    device: str
    capabilities: List[str]
    raw: Dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass
class FrameUpdate:
    """One frame's outputs, from a prompt or a propagation.

    `scores`: object-score logits (> 0: the object is present); `ious`: predicted IoU (None
    when unknown); `areas`: inside pixels at plate resolution; `matte_paths`: obj_id -> matte
    file written for this frame (propagation only); `previews`: obj_id -> RLE mask preview.
    """

    frame: int
    obj_ids: List[int]
    scores: List[float]
    ious: List[Optional[float]]
    areas: List[int]
    matte_paths: Dict[int, str]
    previews: Dict[int, Dict[str, Any]]
    progress: Optional[Tuple[int, int]] = None
    masks: Any = None  # N*H*W uint8 when requested with return_masks=True
    preview: bool = False  # tracked at a lower resolution (a preview session): not the final mattes

    @classmethod
    def from_body(cls, body: Dict[str, Any], arrays: Optional[Dict[str, Any]] = None) -> "FrameUpdate":
        obj_ids = [int(o) for o in body.get("obj_ids", [])]
        paths = body.get("matte_paths") or [None] * len(obj_ids)
        previews = body.get("previews") or [None] * len(obj_ids)
        progress = body.get("progress")
        return cls(
            frame=int(body.get("frame", 0)),
            obj_ids=obj_ids,
            scores=[float(s) for s in body.get("scores", [])],
            ious=[None if v is None else float(v) for v in body.get("ious", [])],
            areas=[int(a) for a in body.get("areas", [])],
            matte_paths={o: p for o, p in zip(obj_ids, paths) if p},
            previews={o: p for o, p in zip(obj_ids, previews) if p},
            progress=(int(progress["done"]), int(progress["total"])) if isinstance(progress, dict) else None,
            masks=(arrays or {}).get("masks"),
            preview=bool(body.get("preview", False)),
        )

    def present(self, obj_id: int) -> bool:
        """Whether the model thinks the object is visible on this frame."""
        return self.scores[self.obj_ids.index(obj_id)] > 0

    def preview_mask(self, obj_id: int, *, as_numpy: bool = True) -> Any:
        """The object's preview mask: h*w bool numpy array, or bytes of 0/1 without numpy."""
        return preview_rle.decode(self.previews[obj_id], as_numpy=as_numpy)


@dataclass
class ReviewFrame:
    """A frame an artist should look at for one object, and why (`core.outputs.confidence` reasons:
    "score_below_zero", "reappeared", "score_drop", "area_jump", "low_predicted_iou", "low_stability")."""

    frame: int
    obj_id: int
    reasons: List[str]


@dataclass
class FrameMattes:
    """A frame's stored mattes from `get_frame`: `mattes` is N*H*W (one row per object)."""

    frame: int
    obj_ids: List[int]
    scores: List[float]
    mattes: Any

    def matte(self, obj_id: int) -> Any:
        """One object's H*W matte (numpy), or a RawArray slice's bytes without numpy."""
        i = self.obj_ids.index(obj_id)
        if isinstance(self.mattes, RawArray):
            n, h, w = self.mattes.shape
            size = h * w * protocol.BUFFER_DTYPES[self.mattes.dtype]
            return RawArray(self.mattes.data[i * size:(i + 1) * size], self.mattes.dtype, (h, w))
        return self.mattes[i]


# ---------------------------------------------------------------------------------------------
# Argument conversion without requiring numpy


def _points(points: Any) -> List[List[float]]:
    tolist = getattr(points, "tolist", None)
    rows = tolist() if tolist is not None else points
    try:
        out = [[float(p[0]), float(p[1])] for p in rows]
    except (TypeError, IndexError, ValueError):
        raise ValueError("points must be a sequence of (x, y) pairs") from None
    if any(len(p) != 2 for p in rows):
        raise ValueError("points must be a sequence of (x, y) pairs")
    return out


def _flat_numbers(values: Any, kind: type = float) -> List[Any]:
    tolist = getattr(values, "tolist", None)
    seq = tolist() if tolist is not None else values
    try:
        return [kind(v) for v in seq]
    except (TypeError, ValueError):
        raise ValueError("expected a flat sequence of numbers, got %r" % (values,)) from None


def _mask_buffer(mask: Any) -> Any:
    """An H*W mask as something codec can send: numpy uint8, or RawArray uint8."""
    if isinstance(mask, RawArray):
        if len(mask.shape) != 2 or mask.dtype not in ("uint8", "bool"):
            raise ValueError("a mask RawArray must be H*W uint8 or bool")
        return mask
    if _np is not None and isinstance(mask, _np.ndarray):
        if mask.ndim != 2:
            raise ValueError("mask must be H*W, got shape %s" % (mask.shape,))
        return (mask != 0).astype(_np.uint8)
    rows = list(mask)
    if not rows:
        raise ValueError("mask is empty")
    width = len(rows[0])
    data = bytearray()
    for row in rows:
        if len(row) != width:
            raise ValueError("mask rows must all have the same length")
        data += bytes(1 if v else 0 for v in row)
    return RawArray(bytes(data), "uint8", (len(rows), width))


def _image_buffer(image: Any) -> Any:
    if isinstance(image, RawArray):
        return image
    if _np is not None and isinstance(image, _np.ndarray):
        return _np.ascontiguousarray(image)
    raise ValueError("a pushed frame must be a numpy array or RawArray (H*W*3 uint8, uint16 or float32)")


def _write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a temporary file beside it, then renamed), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(".%s.%s.tmp" % (path.name, uuid.uuid4().hex[:8]))
    try:
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump(data, file, indent=2)
            file.write("\n")
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


# ---------------------------------------------------------------------------------------------
# Address discovery


def find_worker_address(config_dir: Optional[Path] = None) -> str:
    """`$SAMROTO_WORKER`, else the address a running worker announced in the config folder,
    else the default loopback address."""
    env = os.environ.get("SAMROTO_WORKER")
    if env:
        return env
    path = (config_dir or auth.config_dir()) / auth.WORKER_FILE
    try:
        address = json.loads(path.read_text(encoding="utf-8")).get("address")
        if isinstance(address, str) and address:
            return address
    except (OSError, ValueError, AttributeError):
        pass
    return protocol.DEFAULT_ADDRESS


# ---------------------------------------------------------------------------------------------
# Streams


class Stream:
    """A request answered by many messages (a propagation): `receive` hands them out in order.

    Made by `Client.start_stream`; `send` sends a follow-up message about the stream (credit,
    cancel) on the same session. Replies stop being kept once `close` is called.
    """

    def __init__(self, client: "Client", mtype: str, body: Optional[Dict[str, Any]], session: Optional[str]) -> None:
        self.client = client
        self.session = session
        self.request_id = codec.new_request_id()
        self._queue: Deque[Message] = collections.deque()
        client._inbox[self.request_id] = self._queue
        client._send(mtype, self.request_id, body, None, session)

    def receive(self, timeout_s: float) -> Optional[Message]:
        """The stream's next message, or None when nothing came within `timeout_s` seconds."""
        if self.request_id not in self.client._inbox:
            raise BridgeError("stream %s is closed" % self.request_id)
        return self.client._wait(self.request_id, timeout_s)

    def send(self, mtype: str, body: Dict[str, Any]) -> None:
        """A one-way message about this stream (its own request id, no reply awaited)."""
        self.client._send(mtype, codec.new_request_id(), body, None, self.session)

    def close(self) -> None:
        """Stop keeping this stream's messages."""
        self.client._inbox.pop(self.request_id, None)


# ---------------------------------------------------------------------------------------------
# The client


class Client:
    """A connection to the worker.

    address: `tcp://host:port` (None: see `find_worker_address`); token: the worker token
    (None: read from the config folder); timeout: seconds to wait for each reply before
    retrying; retries: resends (on a fresh socket) before `ConnectionTimeout`;
    stream_timeout: seconds a propagation may stay silent before the client checks on it.
    """

    def __init__(self, address: Optional[str] = None, token: Optional[str] = None, timeout: float = 10.0, *,
                 retries: int = 2, stream_timeout: float = 120.0, curve_server_key: Optional[bytes] = None,
                 config_dir: Optional[Union[str, Path]] = None, as_numpy: bool = True) -> None:
        folder = Path(config_dir) if config_dir is not None else None
        self.address = address or find_worker_address(folder)
        try:
            self._token = token if token is not None else auth.read_token(auth.token_path(folder))
            self._signer = codec.Signer(self._token)
        except auth.AuthError as exc:
            raise AuthenticationError(str(exc)) from None
        self._config_dir = folder
        # the worker run we talk to (from `hello`): signed into every request, so a request
        # captured before a worker restart cannot be replayed after it
        self._epoch: Optional[str] = None
        self.timeout = float(timeout)
        self.retries = int(retries)
        self.stream_timeout = float(stream_timeout)
        self.as_numpy = as_numpy and _np is not None
        self._curve_server_key = curve_server_key
        if not auth.is_local_address(self.address) and self._curve_server_key is None:
            self._curve_server_key = auth.read_server_public_key(folder)
            if self._curve_server_key is None:
                raise AuthenticationError(
                    "%s is not a loopback address, so the worker uses CURVE encryption: copy its public key "
                    "file (curve/server.key in the worker's config folder) to %s or pass curve_server_key="
                    % (self.address, auth.curve_dir(folder)))
        self._limits = protocol.Limits(max_body_bytes=256 * 1024 * 1024, max_header_bytes=4096,
                                       max_buffers=64, replay_window_s=86400.0, max_remembered_nonces=20000)
        self._replay = codec.ReplayGuard(window_s=self._limits.replay_window_s,
                                         max_nonces=self._limits.max_remembered_nonces)
        # a stable identity: after a reconnect the worker's answers still reach us
        self._identity = b"samroto-" + uuid.uuid4().hex[:16].encode()
        self._context: zmq.Context[Any] = zmq.Context.instance()
        self._socket: Optional[zmq.Socket[Any]] = None
        self._inbox: Dict[str, Deque[Message]] = {}
        self._connect()

    # --- connection ------------------------------------------------------------------------

    def _connect(self) -> None:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.ROUTING_ID, self._identity)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.setsockopt(zmq.HEARTBEAT_IVL, 2000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 10000)
        try:
            auth.configure_client_socket(sock, self._token, curve_server_key=self._curve_server_key,
                                         config_dir=self._config_dir)
        except auth.AuthError as exc:
            sock.close(linger=0)
            raise AuthenticationError(str(exc)) from None
        # handshake refusals (wrong token, unauthorised key) send no message: watch for them
        self._monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH)
        sock.connect(self.address)
        self._socket = sock

    def _reconnect(self) -> None:
        self.close()
        self._connect()

    def close(self) -> None:
        if self._socket is not None:
            try:
                self._socket.disable_monitor()
            except zmq.ZMQError:
                pass
            self._monitor.close(linger=0)
            self._socket.close(linger=0)
            self._socket = None

    def _check_handshake(self) -> None:
        """Raise AuthenticationError if the worker refused our handshake (no reply ever comes then)."""
        if self._socket is not None and self._monitor.poll(0):
            raise AuthenticationError(
                "the worker at %s refused this client's handshake: %s" % (
                    self.address, "this machine's CURVE key is not authorised there (run `samroto keys show` here "
                    "and `samroto keys add KEY` on the worker's machine)" if self._curve_server_key is not None
                    else "the token is not the worker's (is the client using the worker's token file?)"))

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- messaging -------------------------------------------------------------------------

    def _send(self, mtype: str, request_id: str, body: Optional[Dict[str, Any]] = None,
              arrays: Optional[Dict[str, Any]] = None, session: Optional[str] = None) -> None:
        if self._socket is None:
            raise BridgeError("the client is closed")
        if mtype != protocol.HELLO and self._epoch is None:
            self.hello()  # learn the worker's epoch first
        parts = codec.encode(self._signer, mtype, request_id=request_id, body=body, arrays=arrays, session=session,
                             epoch=None if mtype == protocol.HELLO else (self._epoch or None))
        self._hand_over(parts, mtype)

    def _hand_over(self, parts: List[Any], mtype: str) -> None:
        """Give a message to the socket within the timeout. A DEALER whose connection is gone (the
        handshake was refused, the worker died) has nowhere to queue it and would block for ever."""
        assert self._socket is not None
        deadline = time.monotonic() + self.timeout
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLOUT)
        poller.register(self._monitor, zmq.POLLIN)
        while True:
            try:
                # a multipart message is queued whole or not at all: only its first part can block
                self._socket.send_multipart(parts, flags=zmq.NOBLOCK, copy=False)
                return
            except zmq.Again:
                pass
            self._check_handshake()
            left = deadline - time.monotonic()
            if left <= 0:
                raise _NotQueued("the worker at %s took no %s message within %.1f s: is `samroto worker` "
                                        "running there?" % (self.address, mtype, self.timeout))
            poller.poll(max(1, int(min(left, 0.25) * 1000)))

    def _receive_one(self, timeout_s: float) -> Optional[Message]:
        """Wait for one message (any request) and file it; None on timeout."""
        assert self._socket is not None
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)  # a refused handshake: say so at once, not after the timeout
        events = dict(poller.poll(max(0, int(timeout_s * 1000))))
        if self._monitor in events:
            self._check_handshake()
        if self._socket not in events:
            return None
        parts = self._socket.recv_multipart(copy=False)
        if len(parts) >= 1 and len(parts[0].buffer) == 0:
            # only an authentication refusal comes unsigned (the worker could not check our signature)
            try:
                msg = codec.decode(parts, None, limits=self._limits, as_numpy=self.as_numpy, check_version=False)
            except codec.ProtocolError:
                return None
            if msg.type == protocol.ERROR and msg.body.get("code") == protocol.E_AUTH:
                raise _error_from(msg, "")
            return None
        try:
            msg = codec.decode(parts, self._signer, limits=self._limits, replay_guard=self._replay,
                               as_numpy=self.as_numpy, check_version=False)
        except codec.ProtocolError:
            return None  # not from our worker, or damaged: ignore it
        if msg.version[0] != protocol.PROTOCOL_VERSION[0]:
            raise ProtocolMismatch("the worker speaks protocol %s, this client %s: update the older side"
                                   % (protocol.version_string(msg.version), protocol.version_string()))
        if msg.type == protocol.KEEPALIVE:
            return None
        queue = self._inbox.get(msg.reply_to or "")
        if queue is not None:
            queue.append(msg)
        return msg

    def _wait(self, request_id: str, timeout_s: float) -> Optional[Message]:
        """The next message for `request_id`, or None after `timeout_s`."""
        queue = self._inbox[request_id]
        deadline = time.monotonic() + timeout_s
        while not queue:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._receive_one(left)
        return queue.popleft()

    def request(self, mtype: str, body: Optional[Dict[str, Any]] = None, *, arrays: Optional[Dict[str, Any]] = None,
                session: Optional[str] = None, timeout: Optional[float] = None) -> Message:
        """Send a request and return its reply; retries on a fresh socket after each timeout
        (the worker recognises the resent request id and does not run it twice)."""
        request_id = codec.new_request_id()
        self._inbox[request_id] = collections.deque()
        wait = self.timeout if timeout is None else float(timeout)
        relearned = False
        try:
            attempt = 0
            while attempt <= self.retries:
                if attempt:
                    self._reconnect()
                try:
                    self._send(mtype, request_id, body, arrays, session)
                except _NotQueued:
                    msg = None  # not even queued: like an answer that never came (reconnect, retry)
                else:
                    msg = self._wait(request_id, wait)
                if msg is None:
                    self._check_handshake()
                    attempt += 1
                    continue
                if msg.type == protocol.ERROR and msg.body.get("code") == protocol.E_EPOCH and not relearned:
                    self._epoch = None  # the worker restarted since our hello: learn its new epoch, resend once
                    relearned = True
                    continue
                if msg.type == protocol.ERROR:
                    raise _error_from(msg, mtype)
                return msg
        finally:
            self._inbox.pop(request_id, None)
        raise ConnectionTimeout("no answer from the worker at %s to %s after %d tries of %.1f s: is `samroto worker` "
                                "running there?" % (self.address, mtype, self.retries + 1, wait))

    def start_stream(self, mtype: str, body: Optional[Dict[str, Any]] = None, *,
                     session: Optional[str] = None) -> Stream:
        """Send a request whose answer is a stream of messages (see `Stream`); no retries: a stream
        that the worker lost is found by asking `status`."""
        return Stream(self, mtype, body, session)

    # --- requests ---------------------------------------------------------------------------

    def hello(self) -> WorkerInfo:
        """Handshake: the worker's protocol, version, model, device and capabilities."""
        reply = self.request(protocol.HELLO, {"protocol": protocol.version_string(), "client": "samroto.bridge"})
        body = reply.body
        epoch = body.get("epoch")
        self._epoch = epoch if isinstance(epoch, str) else ""  # "": a worker without epochs
        version = protocol.parse_version(body.get("protocol", "0.0"))
        if version[0] != protocol.PROTOCOL_VERSION[0]:
            raise ProtocolMismatch("the worker speaks protocol %s, this client %s: update the older side"
                                   % (protocol.version_string(version), protocol.version_string()))
        return WorkerInfo(protocol=str(body.get("protocol")), worker_version=str(body.get("worker_version")),
                          model=str(body.get("model")), device=str(body.get("device")),
                          capabilities=[str(c) for c in body.get("capabilities", [])], raw=body)

    def ping(self) -> bool:
        return bool(self.request(protocol.PING).body.get("pong"))

    def status(self) -> Dict[str, Any]:
        """Queue length, running streams, loaded sessions, memory."""
        return self.request(protocol.STATUS).body

    def list_sessions(self) -> List[Dict[str, Any]]:
        """Every session in the worker's session folder (newest first)."""
        return list(self.request(protocol.LIST_SESSIONS).body.get("sessions", []))

    def open_session(self, plate: Union[str, Dict[str, Any]], first: Optional[int] = None, last: Optional[int] = None,
                     *, name: Optional[str] = None, matte_dir: Optional[str] = None, matte_format: str = "exr",
                     track_resolution: Optional[int] = None, ocio: Optional[str] = None,
                     colorspace: Optional[str] = None, display: Optional[str] = None, view: Optional[str] = None,
                     matting: Optional[str] = None,
                     timeout: Optional[float] = None) -> "RemoteSession":
        """Open a new session on a plate the worker reads: an image-sequence pattern
        (`shot.####.exr`, `shot.%04d.png`) limited to `first`-`last`, or a video file.
        For frames the host pushes itself, pass `pushed_plate(...)`.

        track_resolution: track at this internal size (e.g. 512) for fast feedback: a PREVIEW
        session, whose results say `preview` and whose mattes are named `*_preview_*`. For the
        final mattes open a session without it and `import_prompts(preview.export_prompts())`.

        ocio, colorspace, display, view: colour as the host shows the plate (OpenColorIO): the config
        (a file on the worker's machine, a built-in `ocio://` URI, or "none" for a plain curve), the
        plate's colourspace, the viewer's display and view. What is left out comes from the worker's
        own settings, the plate's header and the config's defaults; `session.info["colour"]` says
        what the worker chose.
        matting: "vitmatte-small" or "vitmatte-base": the session's mattes get production alpha from a
        learned matting pass (the worker must have the checkpoint: `samroto download vitmatte-small`)."""
        if not isinstance(plate, (str, dict)):
            plate = os.fspath(plate)
        body: Dict[str, Any] = {"plate": plate, "first": first, "last": last, "name": name,
                                "matte_dir": matte_dir, "matte_format": matte_format}
        if track_resolution is not None:
            body["track_resolution"] = int(track_resolution)
        colour = {key: value for key, value in (("config", ocio), ("colorspace", colorspace), ("display", display),
                                                ("view", view)) if value}
        if colour:
            body["colour"] = colour
        if matting is not None:
            body["matting"] = str(matting)
        reply = self.request(protocol.OPEN_SESSION, body, timeout=timeout or max(self.timeout, 60.0))
        return RemoteSession(self, reply.body)

    def resume_session(self, session_id: str, *, timeout: Optional[float] = None) -> "RemoteSession":
        """Reopen a session the worker has on disk (also after a worker restart)."""
        reply = self.request(protocol.OPEN_SESSION, {"resume": session_id}, timeout=timeout or max(self.timeout, 60.0))
        return RemoteSession(self, reply.body)

    def delete_session(self, session_id: str) -> None:
        """Remove a session and its saved state from the worker's session folder (mattes stay)."""
        self.request(protocol.DELETE_SESSION, {"session": session_id})


def _add_matting_fields(body: Dict[str, Any], matting: Optional[str], layered_exr: bool) -> None:
    # only when asked: older workers (and the session default) see the request unchanged
    if matting is not None:
        body["matting"] = str(matting)
    if layered_exr:
        body["layered_exr"] = True


def pushed_plate(first: int, last: int, *, width: int, height: int) -> Dict[str, Any]:
    """A plate whose frames the host sends with `RemoteSession.push_frames`."""
    return {"kind": "pushed", "first": int(first), "last": int(last), "width": int(width), "height": int(height)}


_CHANGES_SESSION = (protocol.PUSH_FRAMES, protocol.ADD_POINTS, protocol.ADD_BOX, protocol.ADD_MASK,
                    protocol.ADD_STROKE, protocol.CLEAR_PROMPTS, protocol.REMOVE_OBJECT, protocol.RESET,
                    protocol.CLOSE, protocol.UNDO, protocol.REDO)


def _history_from(body: Dict[str, Any]) -> Dict[str, Any]:
    """The wire form of `history` (lists of `{obj_id, ...}`) as dicts keyed by object id."""
    return {
        "undo": [str(label) for label in body.get("undo", [])],
        "redo": [str(label) for label in body.get("redo", [])],
        "limit": int(body.get("limit", 0)),
        "keyframes": {int(item["obj_id"]): [int(f) for f in item["frames"]] for item in body.get("keyframes", [])},
        "locks": {int(item["obj_id"]): [[int(a), int(b)] for a, b in item["ranges"]] for item in body.get("locks", [])},
    }


class RemoteSession:
    """One shot on the worker; mirrors `samroto.core.video_session.VideoSession`.

    Frames are the plate's own numbers (a sequence starting at 1001 has frames 1001, ...).
    A prompt sent while this object's own propagation runs cancels that propagation first;
    one started by another client makes the worker answer `WorkerBusy`.
    """

    def __init__(self, client: Client, info: Dict[str, Any]) -> None:
        self.client = client
        self.info = dict(info)
        self.id: str = str(info["session"])
        self.name: str = str(info.get("name", ""))
        self.first: int = int(info["first"])
        self.last: int = int(info["last"])
        self.height: int = int(info["height"])
        self.width: int = int(info["width"])
        self.matte_dir: str = str(info.get("matte_dir", ""))
        # tracked at a lower internal resolution: results and mattes are a preview
        self.preview: bool = bool(info.get("preview", False))
        self.obj_ids: List[int] = [int(o) for o in (info.get("obj_ids") or [])]
        self._current: Optional[Propagation] = None

    def __repr__(self) -> str:
        return "RemoteSession(%r, frames %d-%d, %dx%d)" % (self.id, self.first, self.last, self.width, self.height)

    @property
    def frame_numbers(self) -> range:
        return range(self.first, self.last + 1)

    def _request(self, mtype: str, body: Optional[Dict[str, Any]] = None, arrays: Optional[Dict[str, Any]] = None,
                 timeout: Optional[float] = None) -> Message:
        if mtype in _CHANGES_SESSION and self._current is not None and self._current.running:
            # a new prompt makes our own running propagation stale: stop it rather than be refused
            self._current.cancel()
        return self.client.request(mtype, body, arrays=arrays, session=self.id, timeout=timeout)

    def _prompt(self, mtype: str, body: Dict[str, Any], arrays: Optional[Dict[str, Any]] = None) -> FrameUpdate:
        reply = self._request(mtype, body, arrays, timeout=max(self.client.timeout, 60.0))
        self.obj_ids = [int(o) for o in reply.body.get("obj_ids_all", self.obj_ids)]
        return FrameUpdate.from_body(reply.body, reply.arrays)

    def add_points(self, frame: int, obj_id: int, points: Any, labels: Any, *, clear: bool = True,
                   return_masks: bool = False, preview_size: int = protocol.DEFAULT_PREVIEW_SIZE) -> FrameUpdate:
        """Clicks on a frame: points N*2 (x, y) plate pixels, labels 1 include / 0 exclude.
        `clear=False` adds to the frame's earlier clicks for this object."""
        return self._prompt(protocol.ADD_POINTS, {
            "frame": int(frame), "obj_id": int(obj_id), "points": _points(points),
            "labels": _flat_numbers(labels, int), "clear": bool(clear), "return_masks": return_masks,
            "preview_size": preview_size})

    def add_box(self, frame: int, obj_id: int, box: Sequence[float], *, points: Any = None, labels: Any = None,
                return_masks: bool = False, preview_size: int = protocol.DEFAULT_PREVIEW_SIZE) -> FrameUpdate:
        """A box (x0, y0, x1, y1) in plate pixels, optionally with clicks."""
        body: Dict[str, Any] = {"frame": int(frame), "obj_id": int(obj_id), "box": _flat_numbers(box),
                                "return_masks": return_masks, "preview_size": preview_size}
        if points is not None:
            body["points"] = _points(points)
            body["labels"] = _flat_numbers(labels, int)
        return self._prompt(protocol.ADD_BOX, body)

    def add_mask(self, frame: int, obj_id: int, mask: Any, *, return_masks: bool = False,
                 preview_size: int = protocol.DEFAULT_PREVIEW_SIZE) -> FrameUpdate:
        """A mask at plate resolution: H*W numpy array (nonzero inside), RawArray, or rows of 0/1."""
        return self._prompt(protocol.ADD_MASK, {"frame": int(frame), "obj_id": int(obj_id),
                                                "return_masks": return_masks, "preview_size": preview_size},
                            {"mask": _mask_buffer(mask)})

    def add_stroke(self, frame: int, obj_id: int, points: Any, *, label: int = 1, kind: str = "brush",
                   mode: Optional[str] = None, radius: float = 8.0, return_masks: bool = False,
                   preview_size: int = protocol.DEFAULT_PREVIEW_SIZE) -> FrameUpdate:
        """A brush stroke (`kind="brush"`, polyline) or lasso (`kind="lasso"`, polygon) in plate
        pixels, label 1 include / 0 exclude. The worker converts it: a brush to clicks along it
        (`mode="points"`, default) or paints it with `radius` into the mask (`mode="mask"`); a
        lasso fills into the mask (`mode="mask"`, default) or gives its box (`mode="box"`)."""
        body: Dict[str, Any] = {"frame": int(frame), "obj_id": int(obj_id), "points": _points(points),
                                "label": int(label), "kind": kind, "radius": float(radius),
                                "return_masks": return_masks, "preview_size": preview_size}
        if mode is not None:
            body["mode"] = mode
        return self._prompt(protocol.ADD_STROKE, body)

    def clear_prompts(self, frame: int, obj_id: int) -> FrameUpdate:
        return self._prompt(protocol.CLEAR_PROMPTS, {"frame": int(frame), "obj_id": int(obj_id)})

    def remove_object(self, obj_id: int) -> None:
        reply = self._request(protocol.REMOVE_OBJECT, {"obj_id": int(obj_id)})
        self.obj_ids = [int(o) for o in reply.body.get("obj_ids", [])]

    def reset(self) -> None:
        """Remove every object and prompt."""
        self._request(protocol.RESET)
        self.obj_ids = []

    def push_frames(self, frames: Dict[int, Any]) -> List[int]:
        """Send frames of a pushed plate: {frame number: H*W*3 uint8/uint16/float32 image}."""
        numbers = sorted(int(f) for f in frames)
        arrays = {"image_%d" % i: _image_buffer(frames[f]) for i, f in enumerate(numbers)}
        reply = self._request(protocol.PUSH_FRAMES, {"frames": numbers}, arrays, timeout=max(self.client.timeout, 60.0))
        return [int(f) for f in reply.body.get("written", [])]

    def propagate(self, start: Optional[int] = None, *, first: Optional[int] = None, last: Optional[int] = None,
                  direction: str = protocol.FORWARD, write_mattes: bool = True, matte_dir: Optional[str] = None,
                  preview_size: int = protocol.DEFAULT_PREVIEW_SIZE,
                  credit: int = protocol.DEFAULT_CREDIT, refine_edges: bool = False,
                  smooth_edges: bool = False, matting: Optional[str] = None,
                  layered_exr: bool = False, span: bool = False, obj_id: Optional[int] = None) -> "Propagation":
        """Track the objects through the shot; iterate the result for one `FrameUpdate` per frame.

        start: first frame to track from (default: the earliest prompted frame); first/last:
        limit the frames; direction: "forward", "backward" or "both". The worker writes the
        mattes (to the session's matte folder or `matte_dir`) and names them in each update, with
        a confidence report beside them; `refine_edges` snaps them to the plate's edges,
        `smooth_edges` calms edge chatter; `matting` ("vitmatte-small", "vitmatte-base", "none";
        default the session's) runs a learned matting pass; `layered_exr` also writes one EXR per
        frame with every object's `<object>.A`. `credit` is how many frames the worker may run ahead
        of your loop.

        span: after a correction on frame `start`, re-track only what it changed: the object
        `obj_id` (default: every object prompted on `start`) forward up to its next keyframe, then
        backward down to its previous one; frames beyond keep their results (workers of protocol 1.2).
        Locked frames (`lock`) are never rewritten."""
        if span and start is None:
            raise ValueError("a span re-track needs start: the corrected frame")
        if direction not in protocol.DIRECTIONS:
            raise ValueError("direction must be one of %s, got %r" % (", ".join(protocol.DIRECTIONS), direction))
        if credit < 1:
            raise ValueError("credit must be at least 1")
        body = {"start": start, "first": first, "last": last, "direction": direction, "write_mattes": write_mattes,
                "matte_dir": matte_dir, "preview_size": preview_size, "credit": int(credit),
                "refine_edges": bool(refine_edges), "smooth_edges": bool(smooth_edges)}
        _add_matting_fields(body, matting, layered_exr)
        if span:
            body["span"] = True
            if obj_id is not None:
                body["obj_id"] = int(obj_id)
        self._current = Propagation(self, body, int(credit))
        return self._current

    def lock(self, obj_id: int, first: Optional[int] = None, last: Optional[int] = None) -> Dict[int, List[List[int]]]:
        """Lock an object's frames `first`..`last` (default: the plate) once approved: propagation keeps
        them and tracks through them; prompts there are refused. Returns every object's locked ranges."""
        return self._locks(protocol.LOCK, obj_id, first, last)

    def unlock(self, obj_id: int, first: Optional[int] = None, last: Optional[int] = None) -> Dict[int, List[List[int]]]:
        """Unlock an object's frames `first`..`last` (default: the plate). Returns the locked ranges left."""
        return self._locks(protocol.UNLOCK, obj_id, first, last)

    def _locks(self, mtype: str, obj_id: int, first: Optional[int], last: Optional[int]) -> Dict[int, List[List[int]]]:
        body: Dict[str, Any] = {"obj_id": int(obj_id)}
        if first is not None:
            body["first"] = int(first)
        if last is not None:
            body["last"] = int(last)
        reply = self._request(mtype, body)
        return {int(item["obj_id"]): [[int(a), int(b)] for a, b in item["ranges"]] for item in reply.body.get("locks", [])}

    def cancel(self) -> List[str]:
        """Cancel this session's running propagation (from any client)."""
        if self._current is not None and self._current.running:
            self._current.cancel()
            return [self._current.request_id]
        return list(self._request(protocol.CANCEL).body.get("cancelled", []))

    def get_frame(self, frame: int, *, what: str = "mask", before: bool = False) -> FrameMattes:
        """A frame's stored outputs as arrays: what="mask" (uint8 0/1), "alpha" (float16) or
        "logits" (float32), N*H*W in the order of `obj_ids`.

        before: the frame's previous result instead, what the newest step that changed the frame
        replaced (its objects then, in their order; no objects when no step in the history changed
        it): toggle it with the current one to compare (workers of protocol 1.3)."""
        body: Dict[str, Any] = {"frame": int(frame), "what": what}
        if before:
            body["before"] = True
        reply = self._request(protocol.GET_FRAME, body)
        return FrameMattes(frame=int(reply.body.get("frame", frame)), obj_ids=[int(o) for o in reply.body["obj_ids"]],
                           scores=[float(s) for s in reply.body.get("scores", [])], mattes=reply.arrays.get("mattes"))

    def frame_result(self, frame: int, before: bool = False) -> FrameMattes:
        """Like `VideoSession.frame_result`: every object's mask logits on a frame (N*H*W float32);
        `before`: the previous result (see `get_frame`)."""
        return self.get_frame(frame, what="logits", before=before)

    def history(self) -> Dict[str, Any]:
        """The session's undo history (workers of protocol 1.3): {"undo": [labels, oldest first],
        "redo": [labels, next first], "limit": steps kept, "keyframes": {obj_id: [plate frames]},
        "locks": {obj_id: [[first, last], ...]}}."""
        return _history_from(self._request(protocol.HISTORY).body)

    def undo(self) -> Dict[str, Any]:
        """Undo the session's newest step (a prompt change, a lock or unlock, a propagation, a cancelled
        one too): prompts, keyframes, locks, results and the mattes it wrote go back to what they were.
        Returns {"step": label, "frames": [plate frames whose results changed], "history": as
        `history()`}. Raises `BadRequest` (code `bad_request`) when there is nothing to undo; a running
        propagation of this object is cancelled first (and is then the step undone)."""
        return self._swap(protocol.UNDO)

    def redo(self) -> Dict[str, Any]:
        """Redo the step undone last; same reply as `undo`. A new step after an undo drops what could
        be redone (`BadRequest` "nothing to redo")."""
        return self._swap(protocol.REDO)

    def _swap(self, mtype: str) -> Dict[str, Any]:
        reply = self._request(mtype, timeout=max(self.client.timeout, 60.0))
        self.obj_ids = [int(o) for o in reply.body.get("obj_ids", self.obj_ids)]
        return {"step": str(reply.body.get("step", "")), "frames": [int(f) for f in reply.body.get("frames", [])],
                "history": _history_from(reply.body.get("history", {}))}

    def write_mattes(self, frames: Optional[Sequence[int]] = None, *, matte_dir: Optional[str] = None,
                     matte_format: Optional[str] = None, refine_edges: bool = False,
                     smooth_edges: bool = False, matting: Optional[str] = None,
                     layered_exr: bool = False) -> Dict[int, Dict[int, str]]:
        """Write the stored mattes of `frames` (default: all); returns frame -> {obj_id: path}."""
        body: Dict[str, Any] = {"frames": [int(f) for f in frames] if frames is not None else None,
                                "matte_dir": matte_dir, "matte_format": matte_format,
                                "refine_edges": bool(refine_edges), "smooth_edges": bool(smooth_edges)}
        _add_matting_fields(body, matting, layered_exr)
        reply = self._request(protocol.WRITE_MATTES, body, timeout=max(self.client.timeout, 300.0))
        out: Dict[int, Dict[int, str]] = {}
        for item in reply.body.get("written", []):
            out[int(item["frame"])] = {int(o): p for o, p in zip(item["obj_ids"], item["matte_paths"]) if p}
        return out

    def review(self, *, matte_dir: Optional[str] = None) -> List[ReviewFrame]:
        """The frames to review of this session's mattes (default folder: the session's), in frame
        order; empty until mattes have been written. Ask again after each propagation."""
        body: Dict[str, Any] = {"matte_dir": matte_dir} if matte_dir is not None else {}
        reply = self._request(protocol.GET_REVIEW, body)
        return [ReviewFrame(frame=int(item["frame"]), obj_id=int(item["obj_id"]),
                            reasons=[str(r) for r in item.get("reasons", [])])
                for item in reply.body.get("review", [])]

    def get_shapes(self, obj_id: int, *, space: str = "pixel", tolerance: Optional[float] = None,
                   first: Optional[int] = None, last: Optional[int] = None,
                   pixel_aspect: Optional[float] = None) -> Dict[str, Any]:
        """The object's mattes over [first, last] as animated closed Bezier shapes with a constant point
        count per shape, in `space` ("pixel", "nuke": origin bottom-left, "blender": Mask space).

        Returns {"obj_id", "width", "height", "space", "tolerance", "frames", "shapes": [track dicts]}
        (see PROTOCOL.md, `get_shapes`).
        """
        body: Dict[str, Any] = {"obj_id": int(obj_id), "space": space}
        for key, value in (("tolerance", tolerance), ("first", first), ("last", last),
                           ("pixel_aspect", pixel_aspect)):
            if value is not None:
                body[key] = value
        return self._request(protocol.GET_SHAPES, body, timeout=max(self.client.timeout, 300.0)).body

    def export_prompts(self, *, plate: Optional[str] = None, model: Optional[str] = None,
                       path: Optional[Union[str, Path]] = None) -> Dict[str, Any]:
        """The session's prompts as a batch sidecar dict; with `path`, also written there as JSON,
        ready for `samroto batch` (from any folder: the plate and model are recorded as official
        names or absolute paths).

        plate: the path or pattern to record (needed when the frames were pushed by the client);
        model: the checkpoint the batch should use (default: the worker's).
        """
        body: Dict[str, Any] = {}
        if plate is not None:
            body["plate"] = plate
        if model is not None:
            body["model"] = model
        sidecar: Dict[str, Any] = self._request(protocol.EXPORT_PROMPTS, body).body["sidecar"]
        if path is not None:
            _write_json(Path(path), sidecar)
        return sidecar

    def import_prompts(self, sidecar: Dict[str, Any]) -> List[int]:
        """Replay a sidecar's prompts (from `export_prompts` of another session, or a sidecar file)
        onto this session; returns its object ids. Propagate afterwards."""
        self.obj_ids = [int(o) for o in self._request(protocol.IMPORT_PROMPTS, {"sidecar": sidecar}).body["obj_ids"]]
        return list(self.obj_ids)

    def save(self) -> None:
        """Flush the session's state to the worker's session folder."""
        self._request(protocol.SAVE)

    def close(self) -> None:
        """Save and unload the session on the worker (it stays on disk; `resume_session` reopens it)."""
        self._request(protocol.CLOSE)


class Propagation:
    """A running propagation: iterate it for `FrameUpdate`s; `cancel()` stops it.

    The worker runs at most `credit` frames ahead of the loop consuming this iterator; the
    iterator grants more as it hands out frames. How the loop can end:

    - it ends normally when every frame arrived (`state` "done"), or after this object's own
      `cancel()` (`state` "cancelled");
    - it raises `PropagationCancelled` (with the worker's `reason`) when the propagation stopped
      without our asking: another client cancelled it, or the worker shut down or gave up on us;
    - it raises the worker's error (`RemoteError`) when tracking failed, and `BridgeError` or
      `ConnectionTimeout` when the worker lost the propagation or stopped answering.

    So a loop that ends without an exception and without `cancel()` has every frame.
    """

    def __init__(self, session: RemoteSession, body: Dict[str, Any], credit: int) -> None:
        self.session = session
        self.client = session.client
        self.credit = credit
        self.total: Optional[int] = None
        self.state = "running"
        self.reason: Optional[str] = None
        self.received = 0
        self._consumed_since_grant = 0
        self._accepted = False
        self._body = body
        self._stream = self.client.start_stream(protocol.PROPAGATE, body, session=session.id)
        self.request_id = self._stream.request_id

    @property
    def running(self) -> bool:
        return self.state == "running"

    def __iter__(self) -> Iterator[FrameUpdate]:
        return self

    def __enter__(self) -> "Propagation":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.running:
            self.cancel()

    def _finish(self, state: str, reason: Optional[str] = None) -> None:
        self.state = state
        self.reason = reason
        self._stream.close()

    def _next_message(self) -> Message:
        while True:
            msg = self._stream.receive(self.client.stream_timeout)
            if msg is not None:
                return msg
            self._check_alive()

    def _check_alive(self) -> None:
        """Nothing arrived for a while: ask the worker whether our stream still exists."""
        try:
            status = self.client.status()
        except ConnectionTimeout:
            self._finish("error", "the worker stopped answering")
            raise
        for stream in status.get("streams", []):
            if stream.get("request") == self.request_id:
                if stream.get("paused"):  # frames or credit were lost on a reconnect: grant again
                    self._stream.send(protocol.CREDIT, {"request": self.request_id, "n": self.credit})
                return
        if not self._accepted and status.get("running") == protocol.PROPAGATE:
            return
        self._finish("error", "the worker no longer runs this propagation (was it restarted?)")
        raise BridgeError("propagation %s was lost by the worker (restarted?); resume the session and propagate again"
                          % self.request_id)

    def __next__(self) -> FrameUpdate:
        while self.running:
            if self._consumed_since_grant and self._consumed_since_grant >= max(1, self.credit // 2):
                self._stream.send(protocol.CREDIT, {"request": self.request_id, "n": self._consumed_since_grant})
                self._consumed_since_grant = 0
            msg = self._next_message()
            if msg.type == protocol.ACCEPTED:
                self._accepted = True
                self.total = int(msg.body.get("total", 0))
                continue
            if msg.type == protocol.FRAME:
                self._accepted = True
                self.received += 1
                self._consumed_since_grant += 1
                return FrameUpdate.from_body(msg.body, msg.arrays)
            if msg.type == protocol.DONE:
                self._finish("done")
                break
            if msg.type == protocol.CANCELLED:
                # not by us (our own cancel() drains the stream itself): the loop must not look finished
                self._finish("cancelled", str(msg.body.get("reason", "")))
                raise PropagationCancelled(self.reason or "", request_id=self.request_id, received=self.received,
                                           total=self.total)
            if msg.type == protocol.ERROR:
                self._finish("error", str(msg.body.get("message", "")))
                raise _error_from(msg, protocol.PROPAGATE)
        raise StopIteration

    def cancel(self, *, wait: bool = True) -> None:
        """Ask the worker to stop (it stops within one frame); with `wait`, drain to the end."""
        if not self.running:
            return
        self.client.request(protocol.CANCEL, {"request": self.request_id}, session=self.session.id)
        if not wait:
            return
        deadline = time.monotonic() + max(self.client.stream_timeout, self.client.timeout)
        while self.running and time.monotonic() < deadline:
            msg = self._stream.receive(max(0.0, deadline - time.monotonic()))
            if msg is None:
                break
            if msg.type == protocol.FRAME:
                self.received += 1
            elif msg.type == protocol.DONE:
                self._finish("done")
            elif msg.type == protocol.CANCELLED:
                self._finish("cancelled", str(msg.body.get("reason", "")))
            elif msg.type == protocol.ERROR:
                self._finish("error", str(msg.body.get("message", "")))
        if self.running:
            self._finish("cancelled", "no confirmation from the worker")
