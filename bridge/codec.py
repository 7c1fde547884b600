"""Encode and decode protocol messages: signature, msgpack header, msgpack body, raw buffers.

Wire layout of one message (ZeroMQ multipart, after the ROUTER identity on the worker side):

    [signature, header, body, buffer_0, buffer_1, ...]

`signature` is HMAC-SHA256 (32 raw bytes) over every following part, each prefixed by its
length so parts cannot be re-cut. `header` and `body` are msgpack maps. Buffers carry arrays
(frames, masks) without copies; the body lists them under `buffers` as
`{"name", "dtype", "shape"}` and decoding hands them back as `Message.arrays[name]`.

Nothing is ever unpickled: msgpack is read with `raw=False`, `strict_map_key=True`, no
extension types and length limits. Standard library + msgpack only; numpy is optional
(arrays come back as `numpy.ndarray` when numpy is importable, else as `RawArray`).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import os
import struct
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import msgpack

from . import protocol

try:  # numpy is optional on the client side
    import numpy as _np
except ImportError:  # pragma: no cover - exercised by the no-numpy subprocess test
    _np = None  # type: ignore[assignment]

SIGNATURE_BYTES = 32
NONCE_BYTES = 16
_LEN = struct.Struct("<Q")


class ProtocolError(Exception):
    """A message that cannot be accepted; `code` is one of the `protocol.E_*` codes."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def has_numpy() -> bool:
    return _np is not None


class RawArray:
    """An array as bytes + dtype + shape, for hosts without numpy.

    `data`: the elements in C order, little-endian; `dtype`: one of `protocol.BUFFER_DTYPES`.
    """

    __slots__ = ("data", "dtype", "shape")

    def __init__(self, data: Union[bytes, bytearray, memoryview], dtype: str, shape: Sequence[int]) -> None:
        self.dtype = str(dtype)
        self.shape = tuple(int(s) for s in shape)
        if self.dtype not in protocol.BUFFER_DTYPES:
            raise ValueError("unsupported array dtype %r (allowed: %s)" % (dtype, ", ".join(protocol.BUFFER_DTYPES)))
        expected = _element_count(self.shape) * protocol.BUFFER_DTYPES[self.dtype]
        view = memoryview(data).cast("B")
        if view.nbytes != expected:
            raise ValueError("array data is %d bytes but dtype %s and shape %s need %d"
                             % (view.nbytes, self.dtype, list(self.shape), expected))
        self.data = view

    @property
    def nbytes(self) -> int:
        return self.data.nbytes

    def tobytes(self) -> bytes:
        return self.data.tobytes()

    def to_numpy(self) -> Any:
        """The array as numpy (needs numpy)."""
        if _np is None:
            raise RuntimeError("numpy is not installed; use RawArray.data / .shape instead")
        return _np.frombuffer(self.data, dtype=_np.dtype(self.dtype).newbyteorder("<")).reshape(self.shape)

    def __repr__(self) -> str:
        return "RawArray(dtype=%s, shape=%s)" % (self.dtype, list(self.shape))


def _element_count(shape: Sequence[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


ArrayLike = Any  # numpy.ndarray or RawArray


def array_parts(value: ArrayLike) -> Tuple[str, Tuple[int, ...], memoryview]:
    """(dtype name, shape, C-contiguous little-endian bytes view) of a numpy array or RawArray."""
    if isinstance(value, RawArray):
        return value.dtype, value.shape, value.data
    if _np is not None and isinstance(value, _np.ndarray):
        name = value.dtype.name
        if name not in protocol.BUFFER_DTYPES:
            raise ValueError("cannot send an array of dtype %s (allowed: %s)"
                             % (name, ", ".join(protocol.BUFFER_DTYPES)))
        arr = _np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<"))
        if arr.ndim > protocol.MAX_BUFFER_DIMS:
            raise ValueError("cannot send a %d-dimensional array (at most %d)" % (arr.ndim, protocol.MAX_BUFFER_DIMS))
        view = (arr.reshape(-1) if arr.ndim else arr.reshape(1)).data.cast("B")
        return name, tuple(int(s) for s in arr.shape), view
    raise TypeError("expected a numpy array or RawArray, got %s" % type(value).__name__)


def array_from_buffer(dtype: str, shape: Sequence[int], data: Union[bytes, memoryview], *,
                      as_numpy: bool = True) -> ArrayLike:
    """Rebuild an array sent as a raw buffer (numpy when available and wanted, else RawArray)."""
    raw = RawArray(data, dtype, shape)
    if as_numpy and _np is not None:
        return raw.to_numpy()
    return raw


def _plain(value: Any) -> Any:
    """msgpack `default` hook: numpy scalars and small arrays become plain numbers and lists."""
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        return tolist()
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError("cannot encode %s in a message" % type(value).__name__)


def packb(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True, default=_plain)
    return packed


def unpackb(data: Union[bytes, memoryview], *, limits: protocol.Limits, max_bytes: int, what: str) -> Any:
    """Strict msgpack decoding: no extension types, bounded lengths, str keys only, and at most
    `limits.max_containers` maps and arrays in all (an empty array is one byte on the wire but
    about 70 bytes as a Python list; without this cap 16 MB could become 1 GB)."""
    size = memoryview(data).nbytes
    if size > max_bytes:
        raise ProtocolError(protocol.E_TOO_LARGE, "%s is %d bytes (limit %d)" % (what, size, max_bytes))
    budget = _ContainerBudget(limits.max_containers, what)
    try:
        return msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            max_str_len=limits.max_str_len,
            max_bin_len=max_bytes,
            max_array_len=limits.max_array_len,
            max_map_len=limits.max_map_len,
            max_ext_len=0,
            list_hook=budget.count,
            object_hook=budget.count,
        )
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise ProtocolError(protocol.E_MALFORMED, "%s is not valid msgpack: %s" % (what, _short(exc))) from None


class _ContainerBudget:
    """Counts maps and arrays as msgpack builds them; stops decoding past the limit."""

    __slots__ = ("left", "limit", "what")

    def __init__(self, limit: int, what: str) -> None:
        self.left = self.limit = int(limit)
        self.what = what

    def count(self, value: Any) -> Any:
        self.left -= 1
        if self.left < 0:
            raise ProtocolError(protocol.E_TOO_LARGE, "%s holds more than %d maps and arrays" % (self.what, self.limit))
        return value


def _short(exc: BaseException) -> str:
    text = "%s: %s" % (type(exc).__name__, exc)
    return text if len(text) <= 200 else text[:197] + "..."


def _view(part: Any) -> memoryview:
    buffer = getattr(part, "buffer", None)  # zmq.Frame
    view = buffer if isinstance(buffer, memoryview) else memoryview(part)
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


class Signer:
    """HMAC-SHA256 over length-prefixed message parts, keyed by the worker token."""

    def __init__(self, key: Union[bytes, str]) -> None:
        key_bytes = key.encode("utf-8") if isinstance(key, str) else bytes(key)
        if len(key_bytes) < 16:
            raise ValueError("the signing token must be at least 16 bytes")
        self._key = key_bytes

    def sign(self, parts: Sequence[Any]) -> bytes:
        mac = hmac.new(self._key, digestmod=hashlib.sha256)
        for part in parts:
            view = _view(part)
            mac.update(_LEN.pack(view.nbytes))
            mac.update(view)
        return mac.digest()

    def verify(self, signature: Any, parts: Sequence[Any]) -> bool:
        given = bytes(_view(signature))
        return len(given) == SIGNATURE_BYTES and hmac.compare_digest(given, self.sign(parts))


class ReplayGuard:
    """Refuses a message whose nonce was seen before or whose timestamp is outside the window.

    Memory is bounded: at most `max_nonces` are remembered. Nonces older than the window are
    forgotten (their timestamps would be refused anyway); when the cache is full of recent ones,
    the oldest is forgotten and its timestamp becomes a floor below which messages are refused,
    so a forgotten nonce can still never be replayed. The worker keeps one guard per client
    (`PeerReplayGuards`), so one client's clock or traffic never moves another client's floor.
    """

    def __init__(self, *, window_s: float = 300.0, max_nonces: int = 100_000) -> None:
        self.window_s = float(window_s)
        self.max_nonces = int(max_nonces)
        self._seen: "collections.OrderedDict[bytes, float]" = collections.OrderedDict()
        self._floor = float("-inf")

    def __len__(self) -> int:
        return len(self._seen)

    def check_time(self, timestamp: float, now: float) -> None:
        """Refuse a timestamp outside the window, saying which clock is off and by how much."""
        skew = timestamp - now
        if skew > self.window_s:
            raise ProtocolError(protocol.E_REPLAY, "message is stamped %.0f s ahead of the worker's clock (at most "
                                "%.0f s allowed): the sender's clock is fast; set both machines' clocks (NTP)"
                                % (skew, self.window_s))
        if skew < -self.window_s:
            raise ProtocolError(protocol.E_REPLAY, "message is stamped %.0f s behind the worker's clock (at most "
                                "%.0f s allowed): a replayed message, or the sender's clock is slow; set both "
                                "machines' clocks (NTP)" % (-skew, self.window_s))

    def check(self, timestamp: float, nonce: bytes, *, now: Optional[float] = None) -> None:
        now = time.time() if now is None else now
        self.check_time(timestamp, now)
        if timestamp <= self._floor:
            raise ProtocolError(protocol.E_REPLAY, "message is older than the replay cache remembers")
        if nonce in self._seen:
            raise ProtocolError(protocol.E_REPLAY, "message nonce was already used (replayed message)")
        self._forget_expired(now)
        while len(self._seen) >= self.max_nonces:
            self.evict_oldest()
        self._seen[nonce] = timestamp
        # keep insertion order roughly by timestamp so expiry pops from the front
        if len(self._seen) > 1 and timestamp < next(iter(self._seen.values())):
            self._seen.move_to_end(nonce, last=False)

    def evict_oldest(self) -> None:
        """Forget the oldest nonce; its timestamp becomes the floor."""
        if self._seen:
            _, oldest_ts = self._seen.popitem(last=False)
            self._floor = max(self._floor, oldest_ts)

    def _forget_expired(self, now: float) -> None:
        limit = now - self.window_s
        while self._seen:
            nonce, ts = next(iter(self._seen.items()))
            if ts >= limit:
                break
            del self._seen[nonce]

    def idle(self, now: float) -> bool:
        """True when everything remembered has expired and the floor is past: the guard can go."""
        self._forget_expired(now)
        return not self._seen and self._floor < now - self.window_s


class PeerReplayGuards:
    """One `ReplayGuard` per client (routing id), with one memory budget for all of them.

    A client whose clock runs fast, or that floods the worker, fills and evicts only its own
    nonces; the floor of every other client stays where it was. When the budget is full, the
    client holding the most nonces gives one up.
    """

    def __init__(self, *, window_s: float = 300.0, max_nonces: int = 100_000, max_peers: int = 1024) -> None:
        self.window_s = float(window_s)
        self.max_nonces = int(max_nonces)
        self.max_peers = int(max_peers)
        self._guards: Dict[bytes, ReplayGuard] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    @property
    def peers(self) -> int:
        return len(self._guards)

    def check(self, peer: bytes, timestamp: float, nonce: bytes, *, now: Optional[float] = None) -> None:
        now = time.time() if now is None else now
        guard = self._guards.get(peer)
        if guard is None:
            ReplayGuard(window_s=self.window_s).check_time(timestamp, now)
        if self._count >= self.max_nonces or (guard is None and len(self._guards) >= self.max_peers):
            self._drop_idle(now, keep=peer)
        if guard is None:
            if len(self._guards) >= self.max_peers:
                raise ProtocolError(protocol.E_BUSY, "the worker is serving %d clients already" % self.max_peers)
            guard = self._guards[peer] = ReplayGuard(window_s=self.window_s, max_nonces=self.max_nonces)
        while self._count >= self.max_nonces:
            # the budget is full: the biggest holder (usually the flooding client itself) forgets its oldest
            biggest = max(self._guards.values(), key=len)
            if not len(biggest):
                break
            biggest.evict_oldest()
            self._count -= 1
        before = len(guard)
        try:
            guard.check(timestamp, nonce, now=now)
        finally:
            self._count += len(guard) - before

    def _drop_idle(self, now: float, keep: bytes = b"") -> None:
        for peer in [p for p, g in self._guards.items() if p != keep and g.idle(now)]:
            del self._guards[peer]
        self._count = sum(len(g) for g in self._guards.values())


@dataclass
class Message:
    """One decoded message. `arrays`: name -> numpy array (or RawArray without numpy)."""

    type: str
    request_id: str
    body: Dict[str, Any] = field(default_factory=dict)
    arrays: Dict[str, ArrayLike] = field(default_factory=dict)
    session: Optional[str] = None
    reply_to: Optional[str] = None
    version: Tuple[int, int] = protocol.PROTOCOL_VERSION
    timestamp: float = 0.0
    nonce: bytes = b""
    # the worker run this message was signed for (from `hello`; None in `hello` itself)
    epoch: Optional[str] = None
    body_bytes: int = 0  # the body's size on the wire (what queued requests hold is counted from it)


def new_request_id() -> str:
    return uuid.uuid4().hex


def encode(signer: Signer, type: str, *, request_id: Optional[str] = None, body: Optional[Dict[str, Any]] = None,
           arrays: Optional[Dict[str, ArrayLike]] = None, session: Optional[str] = None,
           reply_to: Optional[str] = None, version: Tuple[int, int] = protocol.PROTOCOL_VERSION,
           timestamp: Optional[float] = None, nonce: Optional[bytes] = None,
           epoch: Optional[str] = None) -> List[Any]:
    """Build the parts of a signed message: `[signature, header, body, *buffers]`."""
    header = {
        "v": [int(version[0]), int(version[1])],
        "type": type,
        "id": request_id or new_request_id(),
        "re": reply_to,
        "session": session,
        "ts": float(time.time() if timestamp is None else timestamp),
        "nonce": os.urandom(NONCE_BYTES) if nonce is None else nonce,
    }
    if epoch is not None:
        header["epoch"] = epoch
    body_map: Dict[str, Any] = dict(body or {})
    buffers: List[memoryview] = []
    if arrays:
        descriptors = []
        for name, value in arrays.items():
            dtype, shape, view = array_parts(value)
            descriptors.append({"name": str(name), "dtype": dtype, "shape": list(shape)})
            buffers.append(view)
        body_map["buffers"] = descriptors
    parts: List[Any] = [packb(header), packb(body_map)] + buffers
    return [signer.sign(parts)] + parts


def peek_request_id(parts: Sequence[Any], *, limits: protocol.Limits = protocol.DEFAULT_LIMITS) -> Optional[str]:
    """Best-effort request id of a message that failed checks, to label the error reply."""
    try:
        if len(parts) < 2:
            return None
        header = unpackb(_view(parts[1]), limits=limits, max_bytes=limits.max_header_bytes, what="header")
        rid = header.get("id") if isinstance(header, dict) else None
        return rid if isinstance(rid, str) and 0 < len(rid) <= 64 else None
    except Exception:
        return None


def decode(parts: Sequence[Any], signer: Optional[Signer], *, limits: protocol.Limits = protocol.DEFAULT_LIMITS,
           replay_guard: Optional[ReplayGuard] = None, as_numpy: bool = True, now: Optional[float] = None,
           check_version: bool = True, check_header: Optional[Callable[[Message], None]] = None) -> Message:
    """Check and decode `[signature, header, body, *buffers]`.

    Order matters: sizes first (cheap), then the signature (nothing unauthenticated is
    parsed further), then header, version, `check_header` (the worker's epoch and per-client
    replay checks), replay, body and buffers. Raises ProtocolError.
    `signer=None` skips the signature check (only for tests and tools, never the worker).
    """
    if len(parts) < 3:
        raise ProtocolError(protocol.E_MALFORMED, "a message has at least 3 parts (signature, header, body), got %d"
                            % len(parts))
    if len(parts) > limits.max_parts:
        raise ProtocolError(protocol.E_TOO_LARGE, "a message has at most %d parts, got %d" % (limits.max_parts, len(parts)))
    views = [_view(p) for p in parts]
    total = sum(v.nbytes for v in views)
    if total > limits.max_message_bytes:
        raise ProtocolError(protocol.E_TOO_LARGE, "message is %d bytes (limit %d)" % (total, limits.max_message_bytes))
    if views[1].nbytes > limits.max_header_bytes:
        raise ProtocolError(protocol.E_TOO_LARGE, "header is %d bytes (limit %d)" % (views[1].nbytes, limits.max_header_bytes))
    if views[2].nbytes > limits.max_body_bytes:
        raise ProtocolError(protocol.E_TOO_LARGE, "body is %d bytes (limit %d)" % (views[2].nbytes, limits.max_body_bytes))
    if signer is not None:
        if views[0].nbytes == 0:
            raise ProtocolError(protocol.E_AUTH, "message is not signed")
        if not signer.verify(views[0], views[1:]):
            raise ProtocolError(protocol.E_AUTH, "bad message signature (is the token the worker's?)")

    header = unpackb(views[1], limits=limits, max_bytes=limits.max_header_bytes, what="header")
    msg = _header_to_message(header)
    msg.body_bytes = views[2].nbytes
    if check_version and msg.version[0] != protocol.PROTOCOL_VERSION[0]:
        raise ProtocolError(protocol.E_VERSION, "protocol %s is not compatible with this side's %s (major versions differ)"
                            % (protocol.version_string(msg.version), protocol.version_string()))
    if check_header is not None:
        check_header(msg)
    if replay_guard is not None:
        replay_guard.check(msg.timestamp, msg.nonce, now=now)

    body = unpackb(views[2], limits=limits, max_bytes=limits.max_body_bytes, what="body")
    if not isinstance(body, dict):
        raise ProtocolError(protocol.E_MALFORMED, "body must be a map, got %s" % type(body).__name__)
    descriptors = body.pop("buffers", [])
    buffers = views[3:]
    if not isinstance(descriptors, list) or len(descriptors) != len(buffers):
        raise ProtocolError(protocol.E_MALFORMED, "body describes %s buffers but %d were sent"
                            % (len(descriptors) if isinstance(descriptors, list) else "no valid", len(buffers)))
    arrays: Dict[str, ArrayLike] = {}
    for desc, buf in zip(descriptors, buffers):
        name, dtype, shape = _check_descriptor(desc)
        if name in arrays:
            raise ProtocolError(protocol.E_MALFORMED, "buffer name %r is used twice" % name)
        expected = _element_count(shape) * protocol.BUFFER_DTYPES[dtype]
        if buf.nbytes != expected:
            raise ProtocolError(protocol.E_MALFORMED, "buffer %r is %d bytes but dtype %s and shape %s need %d"
                                % (name, buf.nbytes, dtype, shape, expected))
        arrays[name] = array_from_buffer(dtype, shape, buf, as_numpy=as_numpy)
    msg.body = body
    msg.arrays = arrays
    return msg


def _header_to_message(header: Any) -> Message:
    if not isinstance(header, dict):
        raise ProtocolError(protocol.E_MALFORMED, "header must be a map")
    try:
        version = protocol.parse_version(header.get("v"))
    except ValueError as exc:
        raise ProtocolError(protocol.E_MALFORMED, str(exc)) from None
    mtype = header.get("type")
    rid = header.get("id")
    reply_to = header.get("re")
    session = header.get("session")
    ts = header.get("ts")
    nonce = header.get("nonce")
    epoch = header.get("epoch")
    if not isinstance(mtype, str) or not 0 < len(mtype) <= 64:
        raise ProtocolError(protocol.E_MALFORMED, "header `type` must be a short string")
    if not isinstance(rid, str) or not 0 < len(rid) <= 64:
        raise ProtocolError(protocol.E_MALFORMED, "header `id` must be a string of 1 to 64 characters")
    if reply_to is not None and (not isinstance(reply_to, str) or len(reply_to) > 64):
        raise ProtocolError(protocol.E_MALFORMED, "header `re` must be a request id or nil")
    if session is not None and (not isinstance(session, str) or not 0 < len(session) <= 128):
        raise ProtocolError(protocol.E_MALFORMED, "header `session` must be a session id or nil")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)) or ts != ts:
        raise ProtocolError(protocol.E_MALFORMED, "header `ts` must be a number (unix seconds)")
    if not isinstance(nonce, bytes) or not 8 <= len(nonce) <= 64:
        raise ProtocolError(protocol.E_MALFORMED, "header `nonce` must be 8 to 64 bytes")
    if epoch is not None and (not isinstance(epoch, str) or not 0 < len(epoch) <= 64):
        raise ProtocolError(protocol.E_MALFORMED, "header `epoch` must be the worker's epoch string or nil")
    return Message(type=mtype, request_id=rid, session=session, reply_to=reply_to, version=version,
                   timestamp=float(ts), nonce=nonce, epoch=epoch)


def _check_descriptor(desc: Any) -> Tuple[str, str, List[int]]:
    if not isinstance(desc, dict):
        raise ProtocolError(protocol.E_MALFORMED, "buffer descriptor must be a map")
    name, dtype, shape = desc.get("name"), desc.get("dtype"), desc.get("shape")
    if not isinstance(name, str) or not 0 < len(name) <= 64:
        raise ProtocolError(protocol.E_MALFORMED, "buffer `name` must be a short string")
    if dtype not in protocol.BUFFER_DTYPES:
        raise ProtocolError(protocol.E_MALFORMED, "buffer %r has dtype %r (allowed: %s)"
                            % (name, dtype, ", ".join(protocol.BUFFER_DTYPES)))
    if (not isinstance(shape, list) or len(shape) > protocol.MAX_BUFFER_DIMS
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2 ** 31 for s in shape)):
        raise ProtocolError(protocol.E_MALFORMED, "buffer %r has an invalid shape %r" % (name, shape))
    return name, str(dtype), list(shape)
