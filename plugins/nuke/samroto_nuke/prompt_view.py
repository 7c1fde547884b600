"""The prompt knobs as a view of the worker's prompts, and viewer gestures that edit them.

The worker is the one place prompts live. The SamRoto node's point and box knobs show, for the
chosen object on the current frame, exactly what the worker holds (read with `export_prompts`,
a `samroto.sidecar` dict in plate pixels), and an edit of those knobs replaces that frame's
prompt on the worker. Nothing is ever sent implicitly by tracking.

Viewer gestures (Ctrl+click include, Ctrl+Shift+click exclude, Shift+drag box; or dragging a
point's handle, Nuke's own convention for XY knobs) change a `FramePrompts` here; host.py writes
it to the knobs and sends it after a short pause.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, List, Mapping, Optional, Tuple

from .prompts import KnobPrompts, Point, plate_to_knob

Box = Tuple[float, float, float, float]


@dataclass(frozen=True)
class FramePrompts:
    """One object's prompts on one Nuke frame, in knob space (Nuke pixels of the node's format,
    origin bottom-left). `mask`: the worker holds a mask prompt there (from Roto shapes), which
    the point knobs cannot show; `hidden`: points beyond the node's knob slots."""

    obj_id: int
    frame: int
    positive: Tuple[Point, ...] = ()
    negative: Tuple[Point, ...] = ()
    box: Optional[Box] = None
    mask: bool = False
    hidden: int = 0

    @property
    def empty(self) -> bool:
        return not self.positive and not self.negative and self.box is None and not self.mask

    def as_knob_prompts(self, space: Optional[Tuple[float, float]] = None) -> KnobPrompts:
        return KnobPrompts(obj_id=self.obj_id, frame=self.frame, positive=self.positive, negative=self.negative,
                           box=self.box, space=space)

    def describe(self) -> str:
        """A status line: what the worker holds here."""
        if self.mask:
            return "object %d, frame %d: a mask prompt (from Roto shapes)" % (self.obj_id, self.frame)
        if self.empty:
            return "object %d, frame %d: no prompts" % (self.obj_id, self.frame)
        parts = ["%d include" % len(self.positive)] if self.positive else []
        if self.negative:
            parts.append("%d exclude" % len(self.negative))
        if self.box is not None:
            parts.append("a box")
        more = " (%d more points than the node shows)" % self.hidden if self.hidden else ""
        return "object %d, frame %d: %s%s" % (self.obj_id, self.frame, ", ".join(parts), more)


def sidecar_objects(sidecar: Optional[Mapping[str, Any]]) -> List[int]:
    """The object ids that have prompts in an `export_prompts` sidecar."""
    return sorted(int(o["obj_id"]) for o in (sidecar or {}).get("objects", []) if o.get("prompts"))


def prompted_frames(sidecar: Optional[Mapping[str, Any]], obj_id: int) -> List[int]:
    """Plate frames where the worker holds a prompt for `obj_id`."""
    for obj in (sidecar or {}).get("objects", []):
        if int(obj.get("obj_id", 0)) == obj_id:
            return sorted(int(p["frame"]) for p in obj.get("prompts", []))
    return []


def frame_prompts(sidecar: Optional[Mapping[str, Any]], obj_id: int, plate_frame: int, nuke_frame: int, *,
                  width: int, height: int, space: Optional[Tuple[float, float]] = None,
                  slots: Tuple[int, int] = (8, 8)) -> FramePrompts:
    """What the worker holds for `obj_id` on `plate_frame`, in knob space (a `space`-sized
    format over a `width` x `height` plate); `slots`: how many positive and negative point
    knobs the node has (extra points are counted in `hidden`)."""
    for obj in (sidecar or {}).get("objects", []):
        if int(obj.get("obj_id", 0)) != obj_id:
            continue
        for prompt in obj.get("prompts", []):
            if int(prompt.get("frame", -1)) != plate_frame:
                continue
            if prompt.get("mask") is not None:
                return FramePrompts(obj_id=obj_id, frame=nuke_frame, mask=True)
            positive: List[Point] = []
            negative: List[Point] = []
            for point, label in zip(prompt.get("points", []), prompt.get("labels", [])):
                knob = plate_to_knob((float(point[0]), float(point[1])), space, width, height)
                (positive if int(label) == 1 else negative).append(knob)
            box: Optional[Box] = None
            if prompt.get("box") is not None:
                x0, y0, x1, y1 = (float(v) for v in prompt["box"])
                left, bottom = plate_to_knob((x0, y1), space, width, height)
                right, top = plate_to_knob((x1, y0), space, width, height)
                box = (left, bottom, right, top)
            hidden = max(0, len(positive) - slots[0]) + max(0, len(negative) - slots[1])
            return FramePrompts(obj_id=obj_id, frame=nuke_frame, positive=tuple(positive[:slots[0]]),
                                negative=tuple(negative[:slots[1]]), box=box, hidden=hidden)
    return FramePrompts(obj_id=obj_id, frame=nuke_frame)


# --- viewer gestures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Gesture:
    """A viewer action in knob space: "include" / "exclude" (a click at x, y), "box" (a drag
    from x, y to x1, y1), "move" (drag the point nearest x, y to x1, y1), "remove" (the point
    nearest x, y)."""

    kind: str
    x: float
    y: float
    x1: float = 0.0
    y1: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in GESTURES:
            raise ValueError("unknown viewer gesture %r (one of %s)" % (self.kind, ", ".join(GESTURES)))


GESTURES: Tuple[str, ...] = ("include", "exclude", "box", "move", "remove")


def gesture_for(*, ctrl: bool, shift: bool, alt: bool = False, dragged: bool) -> Optional[str]:
    """The gesture a mouse action with these modifiers means (None: leave it to Nuke).

    Ctrl+click include, Ctrl+Shift+click exclude, Shift+drag box, Ctrl+Alt+click removes the
    nearest point. Plain clicks and drags stay Nuke's (selecting, dragging handles)."""
    if dragged:
        return "box" if shift and not ctrl else None
    if ctrl and alt:
        return "remove"
    if ctrl:
        return "exclude" if shift else "include"
    return None


def sample_to_pixels(bbox: Tuple[float, float, float, float], *, width: int, height: int,
                     pixel_aspect: float = 1.0) -> Box:
    """The viewer's colour-sample box (its `colour_sample_bbox` knob, which Ctrl+click and
    Ctrl+Shift+drag set: x from -1 to 1 across the image, y in the same units scaled by the
    image's aspect, centred) in pixels of the viewed image (origin bottom-left)."""
    aspect = float(width) * float(pixel_aspect) / float(height)
    x0, y0, x1, y1 = (float(v) for v in bbox)
    xs = sorted(((x0 * 0.5 + 0.5) * width, (x1 * 0.5 + 0.5) * width))
    ys = sorted(((y0 * 0.5 * aspect + 0.5) * height, (y1 * 0.5 * aspect + 0.5) * height))
    return xs[0], ys[0], xs[1], ys[1]


def sample_gesture(box: Box, *, shift: Optional[bool], default_kind: str = "include") -> Gesture:
    """The gesture of a viewer sample in pixels: a click (a box under 2 px) includes, or
    excludes with Shift held (`shift` None: unknown, then `default_kind`); a drag is a box."""
    x0, y0, x1, y1 = box
    if x1 - x0 < 2 and y1 - y0 < 2:
        kind = default_kind if shift is None else ("exclude" if shift else "include")
        return Gesture(kind, (x0 + x1) / 2.0, (y0 + y1) / 2.0)
    return Gesture("box", x0, y0, x1, y1)


def _nearest(points: Tuple[Point, ...], x: float, y: float) -> Tuple[int, float]:
    best, distance = -1, float("inf")
    for i, (px, py) in enumerate(points):
        d = (px - x) ** 2 + (py - y) ** 2
        if d < distance:
            best, distance = i, d
    return best, distance


def apply_gesture(view: FramePrompts, gesture: Gesture, *, slots: Tuple[int, int] = (8, 8)) -> FramePrompts:
    """The prompts after a gesture. A click beyond the node's point slots replaces the oldest
    point of that kind; a mask prompt is replaced by the clicks (as the worker does)."""
    base = replace(view, mask=False, hidden=0) if view.mask else view
    point = (float(gesture.x), float(gesture.y))
    if gesture.kind in ("include", "exclude"):
        positive = gesture.kind == "include"
        current = base.positive if positive else base.negative
        limit = slots[0] if positive else slots[1]
        if limit < 1:
            raise ValueError("this SamRoto node has no %s point knobs" % gesture.kind)
        updated = (current + (point,))[-limit:]
        return replace(base, positive=updated) if positive else replace(base, negative=updated)
    if gesture.kind == "box":
        x0, x1 = sorted((float(gesture.x), float(gesture.x1)))
        y0, y1 = sorted((float(gesture.y), float(gesture.y1)))
        if x1 - x0 < 1 or y1 - y0 < 1:
            return base  # a click, not a box
        return replace(base, box=(x0, y0, x1, y1))
    i_pos, d_pos = _nearest(base.positive, gesture.x, gesture.y)
    i_neg, d_neg = _nearest(base.negative, gesture.x, gesture.y)
    if i_pos < 0 and i_neg < 0:
        return base
    on_positive = d_pos <= d_neg
    points = list(base.positive if on_positive else base.negative)
    index = i_pos if on_positive else i_neg
    if gesture.kind == "move":
        points[index] = (float(gesture.x1), float(gesture.y1))
    else:
        del points[index]
    return replace(base, positive=tuple(points)) if on_positive else replace(base, negative=tuple(points))
