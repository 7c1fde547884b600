"""The worker protocol: version, message types, error codes and limits.

This module is shared by the worker and the client (which runs inside Blender and
Nuke on Python 3.9 to 3.11): standard library only, no torch, no numpy.
`PROTOCOL.md` beside this file is the written spec; keep the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

# major.minor: a different major is refused; a newer minor only adds optional fields
# and new message types, which an older peer ignores or answers with `unknown_type`.
# 1.1: every request but `hello` carries the worker's `epoch` (from `hello`) in its signed header,
# and the connection itself is authenticated (ZAP: PLAIN on loopback, CURVE authorised keys elsewhere).
# 1.2: `propagate` takes `span` (re-track only what a correction changed), `lock` and `unlock`.
# 1.3: `undo`, `redo` and `history`; `get_frame` takes `before` (the result a step replaced).
PROTOCOL_VERSION: Tuple[int, int] = (1, 3)


def version_string(version: Tuple[int, int] = PROTOCOL_VERSION) -> str:
    return "%d.%d" % (version[0], version[1])


def parse_version(value: object) -> Tuple[int, int]:
    """`[major, minor]` or `"major.minor"` -> (major, minor); ValueError if neither."""
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(
        isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 1000 for v in value
    ):
        return int(value[0]), int(value[1])
    if isinstance(value, str):
        parts = value.split(".")
        if len(parts) == 2 and all(p.isdigit() and len(p) <= 3 for p in parts):
            return int(parts[0]), int(parts[1])
    raise ValueError("protocol version must be [major, minor], got %r" % (value,))


# Requests (client -> worker). Answered by one reply, except `propagate` which streams.
HELLO = "hello"
STATUS = "status"
LIST_SESSIONS = "list_sessions"
OPEN_SESSION = "open_session"
PUSH_FRAMES = "push_frames"
ADD_POINTS = "add_points"
ADD_BOX = "add_box"
ADD_MASK = "add_mask"
ADD_STROKE = "add_stroke"
CLEAR_PROMPTS = "clear_prompts"
REMOVE_OBJECT = "remove_object"
RESET = "reset"
PROPAGATE = "propagate"
CANCEL = "cancel"
CREDIT = "credit"  # fire and forget: tops up a stream's credit, no reply
GET_FRAME = "get_frame"
WRITE_MATTES = "write_mattes"
GET_SHAPES = "get_shapes"  # an object's mattes as animated Bezier shapes (core.shapes)
EXPORT_PROMPTS = "export_prompts"  # the session's prompts as a batch sidecar (core.sidecar)
IMPORT_PROMPTS = "import_prompts"  # replay a sidecar's prompts onto the session
GET_REVIEW = "get_review"  # the frames to review of the session's mattes (core.outputs.confidence)
SAVE = "save"
CLOSE = "close"
DELETE_SESSION = "delete_session"
LOCK = "lock"  # 1.2: an object's frames that propagation keeps (tracks through, never rewrites)
UNLOCK = "unlock"  # 1.2
UNDO = "undo"  # 1.3: undo the session's newest step (a prompt change, a lock, a propagation)
REDO = "redo"  # 1.3
HISTORY = "history"  # 1.3: the steps to undo and redo, keyframes and locked ranges
PING = "ping"

REQUEST_TYPES: Tuple[str, ...] = (
    HELLO, STATUS, LIST_SESSIONS, OPEN_SESSION, PUSH_FRAMES, ADD_POINTS, ADD_BOX, ADD_MASK,
    ADD_STROKE, CLEAR_PROMPTS, REMOVE_OBJECT, RESET, PROPAGATE, CANCEL, CREDIT, GET_FRAME,
    WRITE_MATTES, GET_SHAPES, EXPORT_PROMPTS, IMPORT_PROMPTS, SAVE, CLOSE, DELETE_SESSION, PING,
    GET_REVIEW, LOCK, UNLOCK, UNDO, REDO, HISTORY,
)

# Requests that need an open session (header `session` set).
SESSION_REQUEST_TYPES: Tuple[str, ...] = (
    PUSH_FRAMES, ADD_POINTS, ADD_BOX, ADD_MASK, ADD_STROKE, CLEAR_PROMPTS, REMOVE_OBJECT, RESET,
    PROPAGATE, GET_FRAME, WRITE_MATTES, GET_SHAPES, EXPORT_PROMPTS, IMPORT_PROMPTS, SAVE, CLOSE,
    GET_REVIEW, LOCK, UNLOCK, UNDO, REDO, HISTORY,
)

# Replies and stream messages (worker -> client). Every one carries `re`: the request id.
REPLY = "reply"          # the single answer to a request
ERROR = "error"          # a request failed (body: code, message); also ends a stream
ACCEPTED = "accepted"    # a stream started (body: total frames, frame range)
FRAME = "frame"          # one propagated frame (body: frame, obj_ids, scores, previews, matte paths, progress)
DONE = "done"            # a stream finished
CANCELLED = "cancelled"  # a stream stopped early (cancel request, client gone, worker stopping)
KEEPALIVE = "keepalive"  # sent to a paused stream's client to notice when it has vanished; ignore

STREAM_END_TYPES: Tuple[str, ...] = (DONE, CANCELLED, ERROR)

# Error codes (body `code` of an `error` message).
E_AUTH = "auth_failed"              # missing or wrong signature
E_REPLAY = "replayed"               # nonce seen before, or timestamp outside the window
E_MALFORMED = "malformed"           # not decodable, wrong part count, bad field types
E_TOO_LARGE = "too_large"           # a part or the whole message exceeds the limits
E_VERSION = "version_mismatch"      # protocol major differs
E_UNKNOWN_TYPE = "unknown_type"
E_NO_SESSION = "no_such_session"
E_BAD_REQUEST = "bad_request"       # valid message, invalid arguments (frame out of range, ...)
E_BUSY = "busy"                     # job queue full, or the session is propagating
E_NOT_IMPLEMENTED = "not_implemented"
E_INTERNAL = "internal"             # unexpected failure inside the worker (it keeps serving)
E_STOPPING = "stopping"             # the worker is shutting down
E_OUT_OF_MEMORY = "out_of_memory"   # the GPU ran out of memory: nothing was written, memory handed back
E_DEVICE_LOST = "device_lost"       # the GPU failed for good (a sticky CUDA error): the worker exits
E_LIMIT = "over_limit"              # a cap was reached: objects, prompts, frames, sessions, queued bytes
E_EPOCH = "worker_restarted"        # signed for an earlier run of the worker: say `hello` again, then resend

# Propagation directions.
FORWARD = "forward"
BACKWARD = "backward"
BOTH = "both"
DIRECTIONS: Tuple[str, ...] = (FORWARD, BACKWARD, BOTH)

# Array dtypes allowed in raw buffers, always little-endian; names as numpy spells them.
BUFFER_DTYPES = {
    "bool": 1,
    "uint8": 1,
    "uint16": 2,
    "int32": 4,
    "float16": 2,
    "float32": 4,
}
MAX_BUFFER_DIMS = 4


@dataclass(frozen=True)
class Limits:
    """Sizes the worker accepts; anything larger is refused before it is decoded.

    `max_message_bytes` is also set as the socket's MAXMSGSIZE (ZeroMQ drops the peer
    for a larger single part without reading it into memory). Decoded bodies are bounded
    in bytes and in containers (maps + arrays), so a small body cannot expand into
    gigabytes of Python objects.
    """

    max_message_bytes: int = 512 * 1024 * 1024
    max_header_bytes: int = 4096
    max_body_bytes: int = 8 * 1024 * 1024
    max_buffers: int = 16
    max_str_len: int = 1024 * 1024
    max_array_len: int = 1_000_000
    max_map_len: int = 4096
    # maps and arrays in one decoded body, all levels together
    max_containers: int = 200_000
    # replay protection: a message older or newer than this (seconds) is refused
    replay_window_s: float = 300.0
    # nonces remembered over all clients; a client that fills the cache only evicts its own
    # nonces (their timestamps become that client's floor), never another client's
    max_remembered_nonces: int = 100_000
    # clients (routing ids) with replay state at once
    max_peers: int = 1024

    @property
    def max_parts(self) -> int:
        return 3 + self.max_buffers


DEFAULT_LIMITS = Limits()

# Client defaults.
DEFAULT_PORT = 5795
DEFAULT_ADDRESS = "tcp://127.0.0.1:%d" % DEFAULT_PORT
DEFAULT_CREDIT = 8          # frames a stream may run ahead of the client
DEFAULT_PREVIEW_SIZE = 128  # longest side of the RLE mask previews in `frame` messages

# Learned matting passes a session or request may ask for (`matting`); "none" turns a session's off.
MATTING_MODELS = ("vitmatte-small", "vitmatte-base")
