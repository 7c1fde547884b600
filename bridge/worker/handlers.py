"""Request handlers: each turns one request into calls on a session. They run on the compute
thread (see `scheduler.py`), one at a time, and return `(body, arrays)` for the reply or None
when they answered themselves (propagate answers `accepted` and then streams)."""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional

import numpy as np

from .. import preview as preview_rle
from .. import protocol
from ...core.fileio import write_json_atomic
from .sessions import PUSHED_DIR, SESSION_FILE, STATE_DIR, SessionRecord, slug

if TYPE_CHECKING:
    from .scheduler import Job, Scheduler

# requests that change a session: refused while that session propagates
MUTATING = frozenset({
    protocol.IMPORT_PROMPTS, protocol.PUSH_FRAMES, protocol.ADD_POINTS, protocol.ADD_BOX, protocol.ADD_MASK, protocol.ADD_STROKE,
    protocol.CLEAR_PROMPTS, protocol.REMOVE_OBJECT, protocol.RESET, protocol.PROPAGATE, protocol.CLOSE,
    protocol.DELETE_SESSION,
})


class RequestError(Exception):
    """A request that cannot be served; becomes an `error` reply with `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def bad(message: str) -> RequestError:
    return RequestError(protocol.E_BAD_REQUEST, message)


def describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError):
        text = "missing %s" % text
    return text if len(text) <= 2000 else text[:1997] + "..."


def frame_body(result: Any, preview_size: int, paths: dict[int, str]) -> dict:
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


_Handler = Callable[["Scheduler", "Job"], Optional[tuple]]
HANDLERS: dict[str, _Handler] = {}


def _handles(*types: str) -> Callable[[_Handler], _Handler]:
    def register(fn: _Handler) -> _Handler:
        for t in types:
            HANDLERS[t] = fn
        return fn
    return register


_MISSING = object()
MAX_PROMPT_POINTS = 1000  # clicks per request; strokes may carry more (they are resampled)
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
def _open_session(s: Scheduler, job: Job) -> tuple:
    body = job.msg.body
    resume = get_field(body, "resume", str, None)
    if resume:
        record = s.record(resume)
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
        check = getattr(s.engine, "check_track_resolution", None)
        try:
            if check is not None:
                check(track_resolution)
        except ValueError as exc:
            raise bad(str(exc)) from None
    if isinstance(plate, str) or (isinstance(plate, dict) and plate.get("kind") in _FILE_KINDS):
        if isinstance(plate, str) and (not plate or "\x00" in plate):
            raise bad("plate path is empty or invalid")
        view = _colour_field(body)
        try:
            frames = s.engine.open_frames(plate, first, last, view)
        except ValueError as exc:  # FrameError, ColourError: the plate or its colour settings
            raise bad(str(exc)) from None
        given = get_field(body, "name", str, None)
        name = slug(given, is_path=False) if given else slug(
            plate if isinstance(plate, str) else str(plate.get("pattern") or plate.get("path") or "plate"))
        try:
            source = frames.describe()
            json.dumps(source)
        except Exception:
            source = None
        record = s.new_record(name=name, plate=plate, numbers=list(frames.frame_numbers), height=frames.height,
                              width=frames.width, matte_dir=matte_dir, matte_format=matte_format, source=source,
                              track_resolution=track_resolution)
        record.frames = frames
    elif isinstance(plate, dict) and plate.get("kind") == "pushed":
        first_p, last_p = get_int(plate, "first"), get_int(plate, "last")
        height, width = get_int(plate, "height"), get_int(plate, "width")
        if not (last_p >= first_p and last_p - first_p < 1_000_000 and 0 < height <= 65536 and 0 < width <= 65536):
            raise bad("pushed plate needs first <= last (at most 1e6 frames) and a size of 1 to 65536 pixels")
        numbers = list(range(first_p, last_p + 1))
        spec = {"kind": "pushed", "first": first_p, "last": last_p, "height": height, "width": width}
        given = get_field(body, "name", str, None)
        record = s.new_record(name=slug(given, is_path=False) if given else "pushed", plate=spec, numbers=numbers,
                              height=height, width=width, matte_dir=matte_dir, matte_format=matte_format,
                              track_resolution=track_resolution)
        (record.folder / PUSHED_DIR).mkdir()
        record.frames = s.engine.pushed_frames(record.folder / PUSHED_DIR, numbers, height, width)
    else:
        raise bad("plate must be a file path or pattern (str), a frame source description, or "
                   "{'kind': 'pushed', 'first', 'last', 'height', 'width'}")
    s.evict_if_needed(record)
    try:
        kwargs = {"image_size": track_resolution} if track_resolution is not None else {}
        record.session = s.engine.create_session(record.frames, record.folder / STATE_DIR, **kwargs)
        record.live.save()
    except Exception:
        shutil.rmtree(record.folder, ignore_errors=True)
        raise
    s.register(record)
    record.last_used = time.monotonic()
    return dict(record.info(), resumed=False), None


@_handles(protocol.PUSH_FRAMES)
def _push_frames(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
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
    if len(points) > MAX_PROMPT_POINTS:
        raise bad("%d clicks is more than the model can use (at most %d)" % (len(points), MAX_PROMPT_POINTS))
    if len(points) != len(labels) or len(points) == 0:
        raise bad("points and labels must have the same, non-zero length (%d vs %d)" % (len(points), len(labels)))
    if not np.isin(labels, (0, 1)).all():
        raise bad("labels must be 1 (include) or 0 (exclude)")
    result = record.live.add_points(_frame_of(record, body), _obj_id(body), points, labels,
                                       clear=bool(body.get("clear", True)))
    s.save(record)
    return _prompt_reply(record, result, body)


@_handles(protocol.ADD_BOX)
def _add_box(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    body = job.msg.body
    box = _number_array(body, job.msg.arrays, "box", columns=None)
    if box.shape != (4,) or not (box[2] > box[0] and box[3] > box[1]):
        raise bad("box must be [x0, y0, x1, y1] with x1 > x0 and y1 > y0")
    points = _number_array(body, job.msg.arrays, "points", columns=2, default=None)
    labels = _number_array(body, job.msg.arrays, "labels", columns=None, dtype=np.int32, default=None)
    if points is not None and len(points) > MAX_PROMPT_POINTS:
        raise bad("%d clicks is more than the model can use (at most %d)" % (len(points), MAX_PROMPT_POINTS))
    if (points is None) != (labels is None) or (points is not None and len(points) != len(labels)):
        raise bad("points and labels go together and must have the same length")
    result = record.live.add_box(_frame_of(record, body), _obj_id(body), box, points=points, labels=labels)
    s.save(record)
    return _prompt_reply(record, result, body)


def _mask_from(job: Job, record: SessionRecord) -> np.ndarray:
    mask = job.msg.arrays.get("mask")
    if mask is None:
        raise bad("add_mask needs a buffer named 'mask' (H*W uint8 or bool)")
    mask = np.asarray(mask)
    if mask.shape != (record.height, record.width):
        raise bad("mask must be %dx%d (the plate's size), got %s" % (record.height, record.width, list(mask.shape)))
    return mask != 0


@_handles(protocol.ADD_MASK)
def _add_mask(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    body = job.msg.body
    result = record.live.add_mask(_frame_of(record, body), _obj_id(body), _mask_from(job, record))
    s.save(record)
    return _prompt_reply(record, result, body)


def _current_mask(record: SessionRecord, frame: int, obj_id: int) -> Optional[np.ndarray]:
    result = record.live.frame_result(frame)
    ids = [int(o) for o in result.obj_ids]
    if obj_id not in ids:
        return None
    return np.asarray(result.logits)[ids.index(obj_id)] > 0


@_handles(protocol.ADD_STROKE)
def _add_stroke(s: Scheduler, job: Job) -> tuple:
    from ...core.strokes import stroke_to_prompt

    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    body = job.msg.body
    frame, obj_id = _frame_of(record, body), _obj_id(body)
    points = _number_array(body, job.msg.arrays, "points", columns=2, dtype=np.float64)
    kind = get_field(body, "kind", str, "brush")
    mode = get_field(body, "mode", str, None)
    label = get_int(body, "label", 1)
    radius = float(get_field(body, "radius", (int, float), 8.0))
    needs_mask = (mode or ("points" if kind == "brush" else "mask")) == "mask"
    current = _current_mask(record, frame, obj_id) if needs_mask and obj_id in record.live.obj_ids else None
    prompt = stroke_to_prompt(points, kind=kind, label=label, mode=mode, radius=radius, height=record.height,
                              width=record.width, current_mask=current)
    if prompt.kind == "points":
        result = record.live.add_points(frame, obj_id, prompt.points, prompt.labels, clear=False)
    elif prompt.kind == "box":
        result = record.live.add_box(frame, obj_id, prompt.box)
    else:
        result = record.live.add_mask(frame, obj_id, prompt.mask)
    s.save(record)
    reply, arrays = _prompt_reply(record, result, body)
    return dict(reply, converted_to=prompt.kind), arrays


@_handles(protocol.CLEAR_PROMPTS)
def _clear_prompts(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    body = job.msg.body
    result = record.live.clear_prompts(_frame_of(record, body), _obj_id(body))
    s.save(record)
    return _prompt_reply(record, result, body)


@_handles(protocol.REMOVE_OBJECT)
def _remove_object(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    obj_id = _obj_id(job.msg.body)
    if obj_id not in [int(o) for o in record.live.obj_ids]:
        raise bad("session %s has no object %d (objects: %s)" % (record.id, obj_id, list(record.live.obj_ids)))
    record.live.remove_object(obj_id)
    s.save(record)
    return {"obj_ids": [int(o) for o in record.live.obj_ids]}, None


@_handles(protocol.RESET)
def _reset(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    record.live.reset()
    s.save(record)
    return {"obj_ids": []}, None


@_handles(protocol.PROPAGATE)
def _propagate(s: Scheduler, job: Job) -> None:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
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
    writer = s.writer_for(record, out_dir, None, _matte_options(body)) if write_mattes else None
    s.start_stream(job, record, iterator, total, credit, write_mattes, preview_size, writer)
    s.send(job.identity, protocol.ACCEPTED, job.msg.request_id,
           {"total": total, "first": lo, "last": hi, "start": anchor, "direction": direction,
            "matte_dir": (out_dir or record.matte_dir) if write_mattes else None},
           session=record.id)
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
    what = get_field(body, "what", str, "mask")
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
def _write_mattes(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    body = job.msg.body
    frames = body.get("frames")
    if frames is None:
        frames = list(range(get_int(body, "first", record.first), get_int(body, "last", record.last) + 1))
    if not isinstance(frames, list) or not all(isinstance(f, int) and not isinstance(f, bool) for f in frames):
        raise bad("field 'frames' must be a list of frame numbers")
    for f in frames:
        if not record.first <= f <= record.last:
            raise bad("frame %d is outside the plate's frames %d-%d" % (f, record.first, record.last))
    out_dir = get_field(body, "matte_dir", str, None)
    if out_dir is not None and not os.path.isabs(out_dir):
        raise bad("matte_dir must be an absolute path, got %r" % out_dir)
    fmt = get_field(body, "matte_format", str, None)
    if fmt is not None and fmt not in ("exr", "png"):
        raise bad("matte_format must be 'exr' or 'png'")
    writer = s.writer_for(record, out_dir, fmt, _matte_options(body))
    written = []
    for f in frames:
        result = record.live.frame_result(f)
        if not len(result.obj_ids):
            continue
        paths = s.write_mattes(writer, result)
        written.append({"frame": f, "obj_ids": [int(o) for o in result.obj_ids],
                        "matte_paths": [paths.get(int(o)) for o in result.obj_ids]})
    s.finish_mattes(writer)
    return {"written": written}, None


def _matte_options(body: dict) -> dict:
    """Optional matte post-processing asked for by a request (`core.matte_output.MatteOptions`)."""
    return {"refine_edges": bool(get_field(body, "refine_edges", bool, False)),
            "smooth_edges": bool(get_field(body, "smooth_edges", bool, False))}


@_handles(protocol.GET_SHAPES)
def _get_shapes(s: Scheduler, job: Job) -> tuple:
    """One object's masks over a frame range as animated Bezier shapes (`core.shapes`), in the host's
    coordinates. Frames where the object was never tracked or prompted get no key."""
    from ...core.outputs.shapes import ShapeError, ShapeOptions, default_tolerance, masks_to_shapes, shape_tracks_to_wire

    record = s.record(job.msg.session)
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
    return {"obj_id": obj_id, "width": record.width, "height": record.height, "space": space,
            "tolerance": tolerance, "frames": frames, "shapes": shapes}, None


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
def _export_prompts(s: Scheduler, job: Job) -> tuple:
    """The session's prompts as a batch sidecar (`core.sidecar`), to replay headless or with another model."""
    from ...core.sidecar import SidecarError, session_to_sidecar

    record = s.record(job.msg.session)
    body = job.msg.body
    plate = get_field(body, "plate", str, None)
    if plate is None and record.source is None:
        raise bad("this session's frames were pushed by the client and have no file: give 'plate' (a path or pattern)")
    try:
        sidecar = session_to_sidecar(
            record.live,
            plate=plate if plate is not None else record.source,
            first=record.first,
            last=record.last,
            model=get_field(body, "model", str, None) or getattr(s.engine, "model_spec", None),
            name=record.name,
        )
    except SidecarError as exc:
        raise bad(str(exc)) from None
    return {"sidecar": sidecar}, None


@_handles(protocol.IMPORT_PROMPTS)
def _import_prompts(s: Scheduler, job: Job) -> tuple:
    """Replay a sidecar's prompts (e.g. exported from a preview session) onto this session."""
    from ...core.sidecar import SidecarError, apply_prompts

    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    sidecar = get_field(job.msg.body, "sidecar", dict)
    try:
        apply_prompts(record.live, sidecar)
    except SidecarError as exc:
        raise bad(str(exc)) from None
    return {"obj_ids": [int(o) for o in record.live.obj_ids]}, None


@_handles(protocol.SAVE)
def _save_session(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.save(record)
    write_json_atomic(record.folder / SESSION_FILE, record.persisted())
    return {"saved": True}, None


@_handles(protocol.CLOSE)
def _close_session(s: Scheduler, job: Job) -> tuple:
    record = s.record(job.msg.session)
    s.check_not_streaming(record, job.msg.type)
    s.unload(record)
    s.forget(record)
    return {"closed": True}, None


@_handles(protocol.DELETE_SESSION)
def _delete_session(s: Scheduler, job: Job) -> tuple:
    session_id = get_field(job.msg.body, "session", str, None) or job.msg.session
    record = s.record(session_id)
    s.check_not_streaming(record, job.msg.type)
    s.unload(record)
    s.forget(record)
    shutil.rmtree(record.folder, ignore_errors=True)
    return {"deleted": record.id}, None
