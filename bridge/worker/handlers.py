"""Request handlers: each turns one request into calls on a session. They run on the compute
thread (see `scheduler.py`), one at a time, and return `(body, arrays)` for the reply or None
when they answered themselves (propagate answers `accepted` and then streams).

Handlers see the worker through `HandlerContext`: the session registry, the backend, the stream
control (start a stream, send a message, ask whether the worker stops) and the request limits.
Every size a request names is checked against its limit before anything is allocated."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol

import numpy as np

from .. import preview as preview_rle
from .. import protocol
from ...core.fileio import write_bytes_atomic, write_json_atomic
from ...core.sidecar import DEFAULT_PROMPT_LIMITS, PromptLimits
from ..codec import Message
from .backend import Engine, Propagation, SessionLike
from .errors import RequestError, bad, describe_error, over_limit
from .registry import SessionRegistry
from .sessions import PUSHED_DIR, SESSION_FILE, STATE_DIR, SessionRecord, slug

__all__ = ["HANDLERS", "MUTATING", "HandlerContext", "Job", "RequestError", "RequestLimits", "bad",
           "describe_error", "frame_body", "get_field", "get_int"]

# requests that change a session: refused while that session propagates
MUTATING = frozenset({
    protocol.IMPORT_PROMPTS, protocol.PUSH_FRAMES, protocol.ADD_POINTS, protocol.ADD_BOX, protocol.ADD_MASK, protocol.ADD_STROKE,
    protocol.CLEAR_PROMPTS, protocol.REMOVE_OBJECT, protocol.RESET, protocol.PROPAGATE, protocol.CLOSE,
    protocol.DELETE_SESSION, protocol.LOCK, protocol.UNLOCK, protocol.UNDO, protocol.REDO,
})


@dataclass
class Job:
    """One queued request: who sent it, the message, and what it holds in memory (bytes)."""

    identity: bytes
    msg: Message
    cost: int = 0


@dataclass(frozen=True)
class RequestLimits:
    """What one request may ask of the worker (see PROTOCOL.md, "Limits")."""

    prompts: PromptLimits = DEFAULT_PROMPT_LIMITS
    max_frames: int = 100_000          # frames in a session's range or one write_mattes request
    max_plate_side: int = 16384        # pixels, a pushed plate's width or height
    read_roots: tuple = ()             # folders besides the plate's and the session's that may be read


class StreamControl(Protocol):
    """What handlers need from the compute thread (the scheduler provides it)."""

    def start_stream(self, job: Job, record: SessionRecord, iterator: Propagation, total: int, credit: int,
                     write_mattes: bool, preview_size: int, writer: Any) -> Any: ...

    def send(self, identity: bytes, mtype: str, reply_to: Optional[str], body: Optional[dict] = None,
             arrays: Optional[dict] = None, session: Optional[str] = None, *, cache: bool = False) -> None: ...

    def stopping(self) -> bool: ...


@dataclass
class HandlerContext:
    registry: SessionRegistry
    backend: Engine
    streams: StreamControl
    limits: RequestLimits = field(default_factory=RequestLimits)


def check_not_streaming(record: SessionRecord, mtype: str) -> None:
    if record.stream is not None and mtype in MUTATING:
        raise RequestError(protocol.E_BUSY, "session %s is propagating (request %s); cancel it first"
                           % (record.id, record.stream.request_id))


def write_frame_mattes(writer: Any, result: Any, session: Any = None) -> dict[int, str]:
    """One frame's mattes through the session's matte output (confidence in the EXR headers). With
    `session`, the files are journaled first: undoing the step puts back what they held."""
    journal = getattr(session, "journal_files", None)
    paths_for = getattr(writer, "paths_for", None)
    if journal is not None and paths_for is not None:
        journal(paths_for(int(result.frame), [int(o) for o in result.obj_ids]))
    return {int(k): str(v) for k, v in writer.write(result).items()}


def history_step(session: Any, label: str) -> Any:
    """One undo step around several session calls (a session without history: no step)."""
    step = getattr(session, "step", None)
    return step(label) if step is not None else contextlib.nullcontext()


def finish_mattes(writer: Any) -> None:
    """Write the confidence report beside the mattes (after a stream or a write_mattes request)."""
    import logging
    import traceback

    try:
        writer.finish()
    except Exception:
        logging.getLogger("samroto.worker").error("writing the confidence report failed:\n%s", traceback.format_exc())


def _check_new_object(ctx: HandlerContext, record: SessionRecord, obj_ids: Any) -> None:
    """Refuse objects that would take the session past `max_objects` (each costs memory per frame)."""
    have = {int(o) for o in record.live.obj_ids}
    new = {int(o) for o in obj_ids} - have
    limit = ctx.limits.prompts.max_objects
    if new and len(have) + len(new) > limit:
        raise over_limit("session %s has %d objects; %d more would pass the limit of %d objects per session "
                         "(--max-objects)" % (record.id, len(have), len(new), limit))


def _check_clicks(ctx: HandlerContext, count: int) -> None:
    limit = ctx.limits.prompts.max_points
    if count > limit:
        raise over_limit("%d clicks in one prompt is more than the limit of %d" % (count, limit))


def frame_body(result: Any, preview_size: int, paths: dict[int, str]) -> dict:
    """The msgpack body describing one FrameResult: ids, scores, previews, matte paths."""
    obj_ids = [int(o) for o in result.obj_ids]
    logits = np.asarray(result.logits)
    scores = np.asarray(result.scores, dtype=np.float32).reshape(-1)
    ious = np.asarray(result.ious, dtype=np.float32).reshape(-1)
    body: dict[str, Any] = {
        "frame": int(result.frame),
        "obj_ids": obj_ids,
        "scores": [float(s) for s in scores],
        "ious": [None if not np.isfinite(v) else float(v) for v in ious],
        "areas": [int((logits[i] > 0).sum()) for i in range(len(obj_ids))],
        "matte_paths": [paths.get(o) for o in obj_ids],
    }
    if preview_size > 0:
        body["previews"] = [preview_body(logits[i], preview_size) for i in range(len(obj_ids))]
    return body


def preview_body(logits: np.ndarray, max_side: int) -> dict:
    import cv2

    height, width = logits.shape
    h, w = preview_rle.preview_size(height, width, max_side)
    coverage: np.ndarray = (logits > 0).astype(np.float32)
    if (h, w) != (height, width):
        coverage = cv2.resize(coverage, (w, h), interpolation=cv2.INTER_AREA)
    return preview_rle.encode(coverage >= 0.5)


_Handler = Callable[[HandlerContext, Job], Optional[tuple]]
HANDLERS: dict[str, _Handler] = {}


def _handles(*types: str) -> Callable[[_Handler], _Handler]:
    def register(fn: _Handler) -> _Handler:
        for t in types:
            HANDLERS[t] = fn
        return fn
    return register


_MISSING = object()
_FILE_KINDS = ("video", "image", "image_sequence")


def get_field(body: dict, name: str, kinds: Any, default: Any = _MISSING) -> Any:
    value = body.get(name, _MISSING)
    if value is _MISSING or value is None:
        if default is _MISSING:
            raise bad("missing field %r" % name)
        return default
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise bad("field %r must be %s, got a boolean" % (name, _kind_names(kinds)))
    if not isinstance(value, kinds):
        raise bad("field %r must be %s, got %s" % (name, _kind_names(kinds), type(value).__name__))
    return value


def _kind_names(kinds: Any) -> str:
    kinds = kinds if isinstance(kinds, tuple) else (kinds,)
    return " or ".join(k.__name__ for k in kinds)


def get_int(body: dict, name: str, default: Any = _MISSING) -> Any:
    return get_field(body, name, int, default)


def _number_array(body: dict, arrays: dict, name: str, *, columns: Optional[int], default: Any = _MISSING,
                  dtype: Any = np.float32) -> Any:
    """A small array sent either as a msgpack list or as a raw buffer of the same name."""
    if name in arrays:
        value = np.asarray(arrays[name])
    else:
        raw = body.get(name)
        if raw is None:
            if default is _MISSING:
                raise bad("missing field %r" % name)
            return default
        try:
            value = np.asarray(raw, dtype=np.float64)
        except (TypeError, ValueError):
            raise bad("field %r must be numbers" % name) from None
    if value.dtype.kind not in "biuf":
        raise bad("field %r must be numbers" % name)
    if columns is not None and (value.ndim != 2 or value.shape[1] != columns):
        raise bad("field %r must be shaped N*%d, got %s" % (name, columns, list(value.shape)))
    if columns is None and value.ndim != 1:
        raise bad("field %r must be a flat list, got shape %s" % (name, list(value.shape)))
    if value.dtype.kind == "f" and not np.isfinite(value).all():
        raise bad("field %r must be finite numbers" % name)
    return value.astype(dtype)


def _frame_of(record: SessionRecord, body: dict) -> int:
    frame = get_int(body, "frame")
    if not record.first <= frame <= record.last:
        raise bad("frame %d is outside the plate's frames %d-%d" % (frame, record.first, record.last))
    return frame


def _obj_id(body: dict) -> int:
    obj = get_int(body, "obj_id")
    if not 0 <= obj < 2 ** 31:
        raise bad("obj_id must be a non-negative integer, got %d" % obj)
    return obj


def _prompt_reply(record: SessionRecord, result: Any, body: dict) -> tuple:
    preview_size = get_int(body, "preview_size", protocol.DEFAULT_PREVIEW_SIZE)
    out = frame_body(result, max(0, preview_size), {})
    out["preview"] = record.preview
    arrays = None
    if body.get("return_masks"):
        arrays = {"masks": (np.asarray(result.logits) > 0).astype(np.uint8)}
    return dict(out, session=record.id, obj_ids_all=[int(o) for o in record.live.obj_ids]), arrays


_COLOUR_KEYS = ("config", "colorspace", "display", "view")


def _colour_field(body: dict) -> Optional[dict]:
    """`colour` (names, see PROTOCOL.md) or the older `view` curve; checked again where it is used."""
    colour = get_field(body, "colour", dict, None)
    view = get_field(body, "view", dict, None)
    if colour is not None and view is not None:
        raise bad("give colour or view (its older form), not both")
    if colour is None:
        return view
    unknown = sorted(set(map(str, colour)) - set(_COLOUR_KEYS))
    if unknown:
        raise bad("unknown colour settings %s; expected some of %s" % (unknown, list(_COLOUR_KEYS)))
    for key in _COLOUR_KEYS:
        value = colour.get(key)
        if value is not None and (not isinstance(value, str) or not value or len(value) > 4096 or "\x00" in value):
            raise bad("colour.%s must be a name or path of 1 to 4096 characters" % key)
    return {key: colour[key] for key in _COLOUR_KEYS if colour.get(key) is not None}


@_handles(protocol.OPEN_SESSION)
def _open_session(ctx: HandlerContext, job: Job) -> tuple:
    body = job.msg.body
    resume = get_field(body, "resume", str, None)
    if resume:
        record = ctx.registry.record(resume)
        return dict(record.info(), resumed=True), None
    plate = body.get("plate")
    first = get_field(body, "first", int, None)
    last = get_field(body, "last", int, None)
    matte_format = get_field(body, "matte_format", str, "exr")
    if matte_format not in ("exr", "png"):
        raise bad("matte_format must be 'exr' or 'png', got %r" % matte_format)
    matte_dir = get_field(body, "matte_dir", str, None)
    if matte_dir is not None and not os.path.isabs(matte_dir):
        raise bad("matte_dir must be an absolute path, got %r" % matte_dir)
    track_resolution = get_field(body, "track_resolution", int, None)
    if track_resolution is not None:
        try:
            ctx.backend.check_track_resolution(track_resolution)
        except ValueError as exc:
            raise bad(str(exc)) from None
    matting = _matting_choice(ctx, body, None)
    memory_mode = get_field(body, "memory_mode", str, "sam2")
    modes = ctx.backend.memory_modes()
    if memory_mode not in modes:
        raise bad("unknown memory_mode %r; valid: %s" % (memory_mode, ", ".join(modes)))
    max_frames = ctx.limits.max_frames
    if first is not None and last is not None:
        if first > last:
            raise bad("first frame %d is after last frame %d" % (first, last))
        if last - first >= max_frames:
            raise over_limit("%d frames is more than the limit of %d frames per session (--max-frames)"
                             % (last - first + 1, max_frames))
    if isinstance(plate, str) or (isinstance(plate, dict) and plate.get("kind") in _FILE_KINDS):
        if isinstance(plate, str) and (not plate or "\x00" in plate):
            raise bad("plate path is empty or invalid")
        view = _colour_field(body)
        try:
            frames = ctx.backend.open_frames(plate, first, last, view)
        except ValueError as exc:  # FrameError, ColourError: the plate or its colour settings
            raise bad(str(exc)) from None
        if len(frames.frame_numbers) > max_frames:
            frames.close()
            raise over_limit("the plate has %d frames, more than the limit of %d per session (--max-frames): "
                             "open a range of it (first, last)" % (len(frames.frame_numbers), max_frames))
        given = get_field(body, "name", str, None)
        name = slug(given, is_path=False) if given else slug(
            plate if isinstance(plate, str) else str(plate.get("pattern") or plate.get("path") or "plate"))
        try:
            source = frames.describe()
            json.dumps(source)
        except Exception:
            source = None
        record = ctx.registry.new_record(name=name, plate=plate, numbers=list(frames.frame_numbers),
                                         height=frames.height,
                              width=frames.width, matte_dir=matte_dir, matte_format=matte_format, source=source,
                              track_resolution=track_resolution, matting=matting, memory_mode=memory_mode)
        record.frames = frames
    elif isinstance(plate, dict) and plate.get("kind") == "pushed":
        first_p, last_p = get_int(plate, "first"), get_int(plate, "last")
        height, width = get_int(plate, "height"), get_int(plate, "width")
        side = ctx.limits.max_plate_side
        if not (last_p >= first_p and 0 < height and 0 < width):
            raise bad("pushed plate needs first <= last and a positive width and height")
        if last_p - first_p >= max_frames or height > side or width > side:
            raise over_limit("a pushed plate may have at most %d frames (--max-frames) and %d pixels a side; got "
                             "%d frames of %dx%d" % (max_frames, side, last_p - first_p + 1, width, height))
        numbers = list(range(first_p, last_p + 1))
        spec = {"kind": "pushed", "first": first_p, "last": last_p, "height": height, "width": width}
        given = get_field(body, "name", str, None)
        record = ctx.registry.new_record(name=slug(given, is_path=False) if given else "pushed", plate=spec,
                                         numbers=numbers,
                              height=height, width=width, matte_dir=matte_dir, matte_format=matte_format,
                              track_resolution=track_resolution, matting=matting, memory_mode=memory_mode)
        (record.folder / PUSHED_DIR).mkdir()
        record.frames = ctx.backend.pushed_frames(record.folder / PUSHED_DIR, numbers, height, width)
    else:
        raise bad("plate must be a file path or pattern (str), a frame source description, or "
                   "{'kind': 'pushed', 'first', 'last', 'height', 'width'}")
    ctx.registry.make_room(record)
    try:
        kwargs: dict = {"image_size": track_resolution} if track_resolution is not None else {}
        if memory_mode != "sam2":
            kwargs["memory_mode"] = memory_mode
        record.session = ctx.backend.create_session(record.frames, record.folder / STATE_DIR, **kwargs)
        record.live.save()
    except Exception:
        shutil.rmtree(record.folder, ignore_errors=True)
        raise
    ctx.registry.register(record)
    record.last_used = time.monotonic()
    return dict(record.info(), resumed=False), None


@_handles(protocol.PUSH_FRAMES)
def _push_frames(ctx: HandlerContext, job: Job) -> tuple:
    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    if not (isinstance(record.plate, dict) and record.plate.get("kind") == "pushed"):
        raise bad("session %s reads its plate from files; frames can only be pushed to a pushed plate" % record.id)
    frames = job.msg.body.get("frames")
    if not isinstance(frames, list) or not all(isinstance(f, int) and not isinstance(f, bool) for f in frames):
        raise bad("field 'frames' must be a list of frame numbers, one per buffer image_<i>")
    written = []
    for i, frame in enumerate(frames):
        if not record.first <= frame <= record.last:
            raise bad("frame %d is outside the plate's frames %d-%d" % (frame, record.first, record.last))
        image = job.msg.arrays.get("image_%d" % i)
        if image is None:
            raise bad("buffer image_%d is missing" % i)
        image = np.asarray(image)
        if image.shape != (record.height, record.width, 3) or image.dtype.name not in ("uint8", "uint16", "float32"):
            raise bad("pushed frame %d must be %dx%dx3 uint8, uint16 or float32, got %s %s"
                       % (frame, record.height, record.width, list(image.shape), image.dtype.name))
        data = io.BytesIO()
        np.save(data, np.ascontiguousarray(image), allow_pickle=False)
        write_bytes_atomic(record.folder / PUSHED_DIR / ("%d.npy" % frame), data.getvalue())
        written.append(frame)
    return {"written": written}, None


@_handles(protocol.ADD_POINTS)
def _add_points(ctx: HandlerContext, job: Job) -> tuple:
    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    body = job.msg.body
    points = _number_array(body, job.msg.arrays, "points", columns=2)
    labels = _number_array(body, job.msg.arrays, "labels", columns=None, dtype=np.int32)
    _check_clicks(ctx, len(points))
    if len(points) != len(labels) or len(points) == 0:
        raise bad("points and labels must have the same, non-zero length (%d vs %d)" % (len(points), len(labels)))
    if not np.isin(labels, (0, 1)).all():
        raise bad("labels must be 1 (include) or 0 (exclude)")
    _check_new_object(ctx, record, [_obj_id(body)])
    result = record.live.add_points(_frame_of(record, body), _obj_id(body), points, labels,
                                       clear=bool(body.get("clear", True)))
    ctx.registry.save(record)
    return _prompt_reply(record, result, body)


@_handles(protocol.ADD_BOX)
def _add_box(ctx: HandlerContext, job: Job) -> tuple:
    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    body = job.msg.body
    box = _number_array(body, job.msg.arrays, "box", columns=None)
    if box.shape != (4,) or not (box[2] > box[0] and box[3] > box[1]):
        raise bad("box must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0")
    points = _number_array(body, job.msg.arrays, "points", columns=2, default=None)
    labels = _number_array(body, job.msg.arrays, "labels", columns=None, dtype=np.int32, default=None)
    if points is not None:
        _check_clicks(ctx, len(points))
    if (points is None) != (labels is None) or (points is not None and len(points) != len(labels)):
        raise bad("points and labels go together and must have the same length")
    _check_new_object(ctx, record, [_obj_id(body)])
    result = record.live.add_box(_frame_of(record, body), _obj_id(body), box, points=points, labels=labels)
    ctx.registry.save(record)
    return _prompt_reply(record, result, body)


def _mask_from(job: Job, record: SessionRecord) -> np.ndarray:
    mask = job.msg.arrays.get("mask")
    if mask is None:
        raise bad("add_mask needs a buffer named 'mask' (H*W uint8 or bool)")
    mask = np.asarray(mask)
    if mask.dtype.name not in ("bool", "uint8"):
        # refused rather than thresholded: a float matte has no single right threshold
        raise bad("mask must be bool or uint8 (non-zero = object), got %s; threshold it first" % mask.dtype.name)
    if mask.shape != (record.height, record.width):
        raise bad("mask must be %dx%d (the plate's size), got %s" % (record.height, record.width, list(mask.shape)))
    return mask != 0


@_handles(protocol.ADD_MASK)
def _add_mask(ctx: HandlerContext, job: Job) -> tuple:
    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    body = job.msg.body
    mask = _mask_from(job, record)
    _check_new_object(ctx, record, [_obj_id(body)])
    result = record.live.add_mask(_frame_of(record, body), _obj_id(body), mask)
    ctx.registry.save(record)
    return _prompt_reply(record, result, body)


def _current_mask(record: SessionRecord, frame: int, obj_id: int) -> Optional[np.ndarray]:
    result = record.live.frame_result(frame)
    ids = [int(o) for o in result.obj_ids]
    if obj_id not in ids:
        return None
    return np.asarray(result.logits)[ids.index(obj_id)] > 0


@_handles(protocol.ADD_STROKE)
def _add_stroke(ctx: HandlerContext, job: Job) -> tuple:
    from ...core.strokes import stroke_to_prompt

    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    body = job.msg.body
    frame, obj_id = _frame_of(record, body), _obj_id(body)
    points = _number_array(body, job.msg.arrays, "points", columns=2, dtype=np.float64)
    kind = get_field(body, "kind", str, "brush")
    mode = get_field(body, "mode", str, None)
    label = get_int(body, "label", 1)
    radius = float(get_field(body, "radius", (int, float), 8.0))
    _check_new_object(ctx, record, [obj_id])
    needs_mask = (mode or ("points" if kind == "brush" else "mask")) == "mask"
    current = _current_mask(record, frame, obj_id) if needs_mask and obj_id in record.live.obj_ids else None
    prompt = stroke_to_prompt(points, kind=kind, label=label, mode=mode, radius=radius, height=record.height,
                              width=record.width, current_mask=current)
    with history_step(record.live, "%s stroke on frame %d (object %d)" % (kind, frame, obj_id)):
        if prompt.kind == "points":
            result = record.live.add_points(frame, obj_id, prompt.points, prompt.labels, clear=False)
        elif prompt.kind == "box":
            result = record.live.add_box(frame, obj_id, prompt.box)
        else:
            result = record.live.add_mask(frame, obj_id, prompt.mask)
    ctx.registry.save(record)
    reply, arrays = _prompt_reply(record, result, body)
    return dict(reply, converted_to=prompt.kind), arrays


@_handles(protocol.CLEAR_PROMPTS)
def _clear_prompts(ctx: HandlerContext, job: Job) -> tuple:
    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    body = job.msg.body
    result = record.live.clear_prompts(_frame_of(record, body), _obj_id(body))
    ctx.registry.save(record)
    return _prompt_reply(record, result, body)


@_handles(protocol.REMOVE_OBJECT)
def _remove_object(ctx: HandlerContext, job: Job) -> tuple:
    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    obj_id = _obj_id(job.msg.body)
    if obj_id not in [int(o) for o in record.live.obj_ids]:
        raise bad("session %s has no object %d (objects: %s)" % (record.id, obj_id, list(record.live.obj_ids)))
    record.live.remove_object(obj_id)
    ctx.registry.save(record)
    return {"obj_ids": [int(o) for o in record.live.obj_ids]}, None


@_handles(protocol.RESET)
def _reset(ctx: HandlerContext, job: Job) -> tuple:
    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    record.live.reset()
    ctx.registry.save(record)
    return {"obj_ids": []}, None


@_handles(protocol.PROPAGATE)
def _propagate(ctx: HandlerContext, job: Job) -> None:
    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    body = job.msg.body
    direction = get_field(body, "direction", str, protocol.FORWARD)
    if direction not in protocol.DIRECTIONS:
        raise bad("direction must be one of %s, got %r" % (", ".join(protocol.DIRECTIONS), direction))
    start = get_field(body, "start", int, None)
    lo = get_field(body, "first", int, record.first)
    hi = get_field(body, "last", int, record.last)
    for name, value in (("start", start), ("first", lo), ("last", hi)):
        if value is not None and not record.first <= value <= record.last:
            raise bad("%s frame %d is outside the plate's frames %d-%d" % (name, value, record.first, record.last))
    if lo > hi:
        raise bad("first frame %d is after last frame %d" % (lo, hi))
    if start is not None and not lo <= start <= hi:
        raise bad("start frame %d is outside the requested range %d-%d" % (start, lo, hi))
    credit = get_int(body, "credit", protocol.DEFAULT_CREDIT)
    if not 1 <= credit <= 4096:
        raise bad("credit must be 1 to 4096, got %d" % credit)
    preview_size = max(0, get_int(body, "preview_size", protocol.DEFAULT_PREVIEW_SIZE))
    write_mattes = bool(body.get("write_mattes", True))
    out_dir = get_field(body, "matte_dir", str, None)
    if out_dir is not None and not os.path.isabs(out_dir):
        raise bad("matte_dir must be an absolute path, got %r" % out_dir)
    if not record.live.obj_ids:
        raise bad("session %s has no objects yet: add a prompt before propagating" % record.id)
    if get_field(body, "span", bool, False):
        return _propagate_span(ctx, job, record, start, credit, write_mattes, out_dir, preview_size)

    # the anchor: the given start, else the earliest prompted frame in range, else the range's end
    keyframe = _first_keyframe(record.live, lo, hi)
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
    where = ("from frame %d" % anchor) if anchor is not None else ("over frames %d-%d" % (lo, hi))
    iterator = _propagation(record.live, plan, lo, hi, "propagate %s %s" % (direction, where))
    writer = ctx.registry.writer_for(record, out_dir, None, _matte_options(ctx, body, record)) if write_mattes else None
    ctx.streams.start_stream(job, record, iterator, total, credit, write_mattes, preview_size, writer)
    ctx.streams.send(job.identity, protocol.ACCEPTED, job.msg.request_id,
           {"total": total, "first": lo, "last": hi, "start": anchor, "direction": direction,
            "matte_dir": (out_dir or record.matte_dir) if write_mattes else None},
           session=record.id)
    return None


def _propagate_span(ctx: HandlerContext, job: Job, record: SessionRecord, start: Optional[int], credit: int,
                    write_mattes: bool, out_dir: Optional[str], preview_size: int) -> None:
    """Re-track only what a correction on `start` changed: up to the object's neighbouring keyframes."""
    body = job.msg.body
    if start is None:
        raise bad("a span re-track needs `start`: the corrected frame")
    for name in ("first", "last", "direction"):
        if body.get(name) not in (None, protocol.FORWARD if name == "direction" else None):
            raise bad("a span re-track goes both ways up to the neighbouring keyframes: `%s` does not apply" % name)
    obj_id = get_field(body, "obj_id", int, None)
    frames = record.live.span_frames(start, obj_id)  # checks the request before anything runs
    iterator = record.live.propagate(start=start, span=True, obj_id=obj_id)
    writer = ctx.registry.writer_for(record, out_dir, None, _matte_options(ctx, body, record)) if write_mattes else None
    ctx.streams.start_stream(job, record, iterator, len(frames), credit, write_mattes, preview_size, writer)
    ctx.streams.send(job.identity, protocol.ACCEPTED, job.msg.request_id,
                     {"total": len(frames), "first": min(frames), "last": max(frames), "start": start,
                      "direction": "span", "frames": frames,
                      "matte_dir": (out_dir or record.matte_dir) if write_mattes else None},
                     session=record.id)


def _lock_range(record: SessionRecord, body: dict) -> tuple:
    obj_id = _obj_id(body)
    if obj_id not in [int(o) for o in record.live.obj_ids]:
        raise bad("session %s has no object %d (objects: %s)" % (record.id, obj_id, list(record.live.obj_ids)))
    first = get_field(body, "first", int, record.first)
    last = get_field(body, "last", int, record.last)
    for name, value in (("first", first), ("last", last)):
        if not record.first <= value <= record.last:
            raise bad("%s frame %d is outside the plate's frames %d-%d" % (name, value, record.first, record.last))
    if first > last:
        raise bad("first frame %d is after last frame %d" % (first, last))
    return obj_id, first, last


def _locks_body(locks: Any) -> dict:
    return {"locks": [{"obj_id": int(o), "ranges": [[int(a), int(b)] for a, b in ranges]}
                      for o, ranges in sorted(locks.items())]}


@_handles(protocol.LOCK)
def _lock(ctx: HandlerContext, job: Job) -> tuple:
    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    locks = record.live.lock(*_lock_range(record, job.msg.body))
    ctx.registry.save(record)
    return _locks_body(locks), None


@_handles(protocol.UNLOCK)
def _unlock(ctx: HandlerContext, job: Job) -> tuple:
    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    locks = record.live.unlock(*_lock_range(record, job.msg.body))
    ctx.registry.save(record)
    return _locks_body(locks), None


def history_body(session: Any) -> dict:
    """`history` on the wire: labels, the limit, keyframes and locked ranges per object (lists of
    `{obj_id, ...}`: msgpack map keys are strings)."""
    history = session.history()
    return {
        "undo": [str(label) for label in history["undo"]],
        "redo": [str(label) for label in history["redo"]],
        "limit": int(history["limit"]),
        "keyframes": [{"obj_id": int(o), "frames": [int(f) for f in frames]}
                      for o, frames in sorted(history["keyframes"].items())],
        "locks": _locks_body(history["locks"])["locks"],
    }


def _history_of(record: SessionRecord) -> Any:
    if not callable(getattr(record.live, "history", None)):
        raise RequestError(protocol.E_NOT_IMPLEMENTED, "this worker's sessions keep no history")
    return record.live


@_handles(protocol.HISTORY)
def _history(ctx: HandlerContext, job: Job) -> tuple:
    return history_body(_history_of(ctx.registry.record(job.msg.session))), None


@_handles(protocol.UNDO, protocol.REDO)
def _undo_redo(ctx: HandlerContext, job: Job) -> tuple:
    """Undo or redo one step. The session's matte outputs are dropped: their confidence records
    reload from the restored report."""
    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    session = _history_of(record)
    try:
        swapped = session.undo() if job.msg.type == protocol.UNDO else session.redo()
    finally:
        record.outputs = {}
        ctx.registry.save(record)
    return {"step": str(swapped["step"]), "frames": [int(f) for f in swapped["frames"]],
            "history": history_body(session), "obj_ids": [int(o) for o in session.obj_ids]}, None


def _first_keyframe(session: SessionLike, lo: int, hi: int) -> Optional[int]:
    """Where propagation starts by default: the earliest prompted frame in [lo, hi], if any."""
    frames = [int(f) for per_obj in session.prompts().values() for f in per_obj]
    inside = sorted(f for f in frames if lo <= f <= hi)
    return inside[0] if inside else None


def _propagation(session: SessionLike, plan: list, lo: int, hi: int, label: str) -> Propagation:
    """Chain the passes of one request; skip frames outside [lo, hi] and repeats (both directions).
    The passes are one undo step (a cancelled run too, for what it wrote)."""
    seen: set[int] = set()
    with history_step(session, label):
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
                inner.close()


@_handles(protocol.GET_FRAME)
def _get_frame(ctx: HandlerContext, job: Job) -> tuple:
    record = ctx.registry.record(job.msg.session)
    body = job.msg.body
    frame = _frame_of(record, body)
    what = get_field(body, "what", str, "mask")
    if get_field(body, "before", bool, False):
        # 1.3: the result the newest step that changed this frame replaced (no objects if none did)
        if not callable(getattr(record.live, "history", None)):
            raise RequestError(protocol.E_NOT_IMPLEMENTED, "this worker's sessions keep no history")
        result = record.live.frame_result(frame, before=True)
    else:
        result = record.live.frame_result(frame)
    logits = np.asarray(result.logits, dtype=np.float32)
    data: np.ndarray
    if what == "mask":
        data = (logits > 0).astype(np.uint8)
    elif what == "alpha":
        data = (1.0 / (1.0 + np.exp(-np.clip(logits, -60, 60)))).astype(np.float16)
    elif what == "logits":
        data = logits
    else:
        raise bad("what must be 'mask', 'alpha' or 'logits', got %r" % what)
    out = frame_body(result, max(0, get_int(body, "preview_size", 0)), {})
    return out, {"mattes": data}


@_handles(protocol.WRITE_MATTES)
def _write_mattes(ctx: HandlerContext, job: Job) -> tuple:
    record = ctx.registry.record(job.msg.session)
    body = job.msg.body
    frames = body.get("frames")
    if frames is None:
        first, last = get_int(body, "first", record.first), get_int(body, "last", record.last)
        if first > last:
            raise bad("first frame %d is after last frame %d" % (first, last))
        for name, value in (("first", first), ("last", last)):
            if not record.first <= value <= record.last:  # checked before any list is made
                raise bad("%s frame %d is outside the plate's frames %d-%d" % (name, value, record.first, record.last))
        frames = list(range(first, last + 1))
    if not isinstance(frames, list) or not all(isinstance(f, int) and not isinstance(f, bool) for f in frames):
        raise bad("field 'frames' must be a list of frame numbers")
    if not frames:
        raise bad("no frames to write: give 'frames' or a 'first'-'last' range")
    for f in frames:
        if not record.first <= f <= record.last:
            raise bad("frame %d is outside the plate's frames %d-%d" % (f, record.first, record.last))
    out_dir = get_field(body, "matte_dir", str, None)
    if out_dir is not None and not os.path.isabs(out_dir):
        raise bad("matte_dir must be an absolute path, got %r" % out_dir)
    fmt = get_field(body, "matte_format", str, None)
    if fmt is not None and fmt not in ("exr", "png"):
        raise bad("matte_format must be 'exr' or 'png'")
    writer = ctx.registry.writer_for(record, out_dir, fmt, _matte_options(ctx, body, record))
    written = []
    for f in frames:
        result = record.live.frame_result(f)
        if not len(result.obj_ids):
            continue
        # the files join the newest step (a host's quick result after a prompt): its undo puts them back
        paths = write_frame_mattes(writer, result, record.live)
        written.append({"frame": f, "obj_ids": [int(o) for o in result.obj_ids],
                        "matte_paths": [paths.get(int(o)) for o in result.obj_ids]})
    finish_mattes(writer)
    return {"written": written}, None


def _matte_options(ctx: HandlerContext, body: dict, record: SessionRecord) -> dict:
    """Optional matte post-processing asked for by a request (`core.matte_output.MatteOptions`), and the
    learned matting pass: the request's `matting`, else the session's."""
    options: dict[str, Any] = {"refine_edges": bool(get_field(body, "refine_edges", bool, False)),
                               "smooth_edges": bool(get_field(body, "smooth_edges", bool, False))}
    if get_field(body, "layered_exr", bool, False):
        options["layered_exr"] = True
    matting = _matting_choice(ctx, body, record.matting)
    if matting:
        options["matting"] = matting
    return options


def _matting_choice(ctx: HandlerContext, body: dict, default: Optional[str]) -> Optional[str]:
    """`matting` of a request: a model name (checked to be available), "none" for off, absent for `default`."""
    if "matting" not in body:
        return default
    choice = body.get("matting")
    if choice is None or choice in ("", "none"):
        return None
    if not isinstance(choice, str) or choice not in protocol.MATTING_MODELS:
        raise bad("matting must be one of %s or 'none', got %r" % (", ".join(protocol.MATTING_MODELS), choice))
    check = getattr(ctx.backend, "check_matting", None)
    try:
        if check is not None:
            check(choice)  # a missing checkpoint says so now, with how to get it
    except ValueError as exc:
        raise bad(str(exc)) from None
    return choice


@_handles(protocol.GET_SHAPES)
def _get_shapes(ctx: HandlerContext, job: Job) -> tuple:
    """One object's masks over a frame range as animated Bezier shapes (`core.shapes`), in the host's
    coordinates. Frames where the object was never tracked or prompted get no key."""
    from ...core.outputs.shapes import ShapeError, ShapeOptions, default_tolerance, masks_to_shapes, shape_tracks_to_wire

    record = ctx.registry.record(job.msg.session)
    body = job.msg.body
    session = record.live
    obj_id = _obj_id(body)
    if obj_id not in session.obj_ids:
        raise bad("no object %d in this session; objects: %s" % (obj_id, list(session.obj_ids)))
    first = get_int(body, "first", record.first)
    last = get_int(body, "last", record.last)
    if not record.first <= first <= last <= record.last:
        raise bad("frames %d-%d are not within the plate's frames %d-%d" % (first, last, record.first, record.last))
    space = get_field(body, "space", str, "pixel")
    tolerance = float(get_field(body, "tolerance", (int, float), default_tolerance(record.height, record.width)))
    pixel_aspect = float(get_field(body, "pixel_aspect", (int, float), 1.0))
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise bad("tolerance must be a positive number of pixels, got %r" % tolerance)
    if not (math.isfinite(pixel_aspect) and 0.01 <= pixel_aspect <= 100):
        raise bad("pixel_aspect must be a number from 0.01 to 100 (1 for square pixels), got %r" % pixel_aspect)
    frames = [f for f in range(first, last + 1) if session.frame_output(obj_id, f) is not None]
    index = list(session.obj_ids).index(obj_id)
    masks = _LazyLogits(session, frames, index)
    try:
        # contoured on the logits at 0: the sub-pixel boundary of the matte
        tracks = masks_to_shapes(masks, frames, options=ShapeOptions(tolerance=tolerance, level=0.0))
        shapes = shape_tracks_to_wire(tracks, space=space, width=record.width, height=record.height,
                                      pixel_aspect=pixel_aspect)
    except ShapeError as exc:
        raise bad(str(exc)) from None
    # frames where degenerate masks made the shape fit fall back (points spread along the contour)
    fallback = sorted({f for shape in shapes for f in shape.get("fallback_frames", [])})
    return {"obj_id": obj_id, "width": record.width, "height": record.height, "space": space,
            "tolerance": tolerance, "frames": frames, "shapes": shapes, "fallback_frames": fallback}, None


class _LazyLogits:
    """One object's logits frame by frame, computed when the shape builder reaches them (a long shot
    at 4K would not fit in memory at once)."""

    def __init__(self, session: Any, frames: list, index: int) -> None:
        self._session, self._frames, self._index = session, frames, index

    def __len__(self) -> int:
        return len(self._frames)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self._session.frame_result(self._frames[i]).logits[self._index], dtype=np.float32)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))


@_handles(protocol.EXPORT_PROMPTS)
def _export_prompts(ctx: HandlerContext, job: Job) -> tuple:
    """The session's prompts as a batch sidecar (`core.sidecar`), to replay headless or with another model."""
    from ...core.sidecar import SidecarError, session_to_sidecar

    record = ctx.registry.record(job.msg.session)
    body = job.msg.body
    plate = get_field(body, "plate", str, None)
    if plate is None and record.source is None:
        raise bad("this session's frames were pushed by the client and have no file: give 'plate' (a path or pattern)")
    if plate is None:
        plate = record.source
    if isinstance(plate, str) and not os.path.isabs(os.path.expanduser(plate)):
        # relative to the worker's folder: recorded absolute, so the sidecar resolves anywhere
        plate = os.path.abspath(os.path.expanduser(plate))
    try:
        sidecar = session_to_sidecar(
            record.live,
            plate=plate,
            first=record.first,
            last=record.last,
            model=get_field(body, "model", str, None) or ctx.backend.model_spec,
            name=record.name,
        )
    except SidecarError as exc:
        raise bad(str(exc)) from None
    return {"sidecar": sidecar}, None


@_handles(protocol.IMPORT_PROMPTS)
def _import_prompts(ctx: HandlerContext, job: Job) -> tuple:
    """Replay a sidecar's prompts (e.g. exported from a preview session) onto this session."""
    from ...core.sidecar import PromptLimitError, Sidecar, SidecarError, apply_prompts

    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    data = get_field(job.msg.body, "sidecar", dict)

    def stop_if_asked() -> None:
        if ctx.streams.stopping():
            raise RequestError(protocol.E_STOPPING, "the worker is shutting down; the prompts applied so far are "
                               "kept")

    try:
        # limits and mask sizes are checked while parsing, before any prompt runs; mask files only
        # from the plate's folder, the session folder and the configured read roots
        sidecar = Sidecar.from_dict(data, source="the sidecar", limits=ctx.limits.prompts,
                                    mask_roots=_read_roots(ctx, record))
        _check_new_object(ctx, record, [o.obj_id for o in sidecar.objects])
        with history_step(record.live, "import prompts"):
            apply_prompts(record.live, sidecar, before_each=stop_if_asked)
    except PromptLimitError as exc:
        raise over_limit(str(exc)) from None
    except SidecarError as exc:
        raise bad(str(exc)) from None
    finally:
        ctx.registry.save(record)
    return {"obj_ids": [int(o) for o in record.live.obj_ids]}, None


MAX_REVIEW_ITEMS = 100_000  # (frame, object) pairs in one get_review reply


@_handles(protocol.GET_REVIEW)
def _get_review(ctx: HandlerContext, job: Job) -> tuple:
    """The frames to review of the session's mattes in a folder (`core.outputs.confidence`): from
    the matte output in memory when this worker wrote them, else from the confidence file."""
    from ...core.outputs.confidence import SIDECAR_SUFFIX, ConfidenceError, read_sidecar

    record = ctx.registry.record(job.msg.session)
    out_dir = get_field(job.msg.body, "matte_dir", str, None)
    if out_dir is not None and not os.path.isabs(out_dir):
        raise bad("matte_dir must be an absolute path, got %r" % out_dir)
    folder = out_dir or record.matte_dir
    path = Path(folder) / (record.matte_name + SIDECAR_SUFFIX)
    # every matte output of a folder writes the same file: the one with the most records is the latest
    trackers = [output.tracker for key, output in record.outputs.items()
                if key[0] == folder and getattr(output, "tracker", None) is not None]
    tracker = max(trackers, key=lambda t: sum(len(t.records(o)) for o in t.object_ids())) if trackers else None
    if tracker is None and path.is_file():
        try:
            tracker, _ = read_sidecar(path)
        except ConfidenceError as exc:
            raise bad(str(exc)) from None
    if tracker is None:
        return {"path": None, "obj_ids": [], "review": [], "review_frames": [], "truncated": False}, None
    items = tracker.review()
    return {
        "path": str(path) if path.is_file() else None,
        "obj_ids": [int(o) for o in tracker.object_ids()],
        "review": [{"frame": int(i.frame), "obj_id": int(i.object_id), "reasons": list(i.reasons)}
                   for i in items[:MAX_REVIEW_ITEMS]],
        "review_frames": sorted({int(i.frame) for i in items}),
        "truncated": len(items) > MAX_REVIEW_ITEMS,
    }, None


def _read_roots(ctx: HandlerContext, record: SessionRecord) -> tuple[Path, ...]:
    """The folders a request on this session may read files from."""
    roots = [record.folder] + [Path(r) for r in ctx.limits.read_roots]
    plate = record.plate
    if isinstance(plate, dict):
        plate = plate.get("pattern") or plate.get("path")
    if isinstance(plate, str) and os.path.isabs(os.path.expanduser(plate)):
        roots.append(Path(os.path.expanduser(plate)).parent)
    return tuple(roots)


@_handles(protocol.SAVE)
def _save_session(ctx: HandlerContext, job: Job) -> tuple:
    record = ctx.registry.record(job.msg.session)
    ctx.registry.save(record)
    write_json_atomic(record.folder / SESSION_FILE, record.persisted())
    return {"saved": True}, None


@_handles(protocol.CLOSE)
def _close_session(ctx: HandlerContext, job: Job) -> tuple:
    record = ctx.registry.record(job.msg.session)
    check_not_streaming(record, job.msg.type)
    ctx.registry.unload(record)
    ctx.registry.forget(record)
    return {"closed": True}, None


@_handles(protocol.DELETE_SESSION)
def _delete_session(ctx: HandlerContext, job: Job) -> tuple:
    session_id = get_field(job.msg.body, "session", str, None) or job.msg.session
    record = ctx.registry.record(session_id)
    check_not_streaming(record, job.msg.type)
    ctx.registry.unload(record)
    ctx.registry.forget(record)
    shutil.rmtree(record.folder, ignore_errors=True)
    return {"deleted": record.id}, None
