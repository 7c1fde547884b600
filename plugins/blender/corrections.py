"""Corrections that keep approved work, as plain values (no bpy).

After an artist corrects a frame (a prompt on a frame the object already has a tracked result
on), the Track action re-tracks only the span that correction affects (`propagate(span=True)`:
the object, from the frame up to its neighbouring keyframes); "to the end" stays a separate
choice. Approved ranges can be locked. The timeline shows each object's keyframes and locked
ranges as markers. Everything here is decided from values the bpy side reads on the main thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .prompts import PromptBook

EXTENTS = ("AUTO", "SPAN", "FULL")
"""AUTO: the span after a correction, else to the end; SPAN: the span (refused without a prompt on
the frame); FULL: to the end of the clip (both ways or the direction asked)."""
KEY_MARKER = "key: "
LOCK_MARKER = "locked: "
MARKER_PREFIXES = (KEY_MARKER, LOCK_MARKER)


@dataclass(frozen=True)
class TrackPlan:
    """What one press of Track does. span: re-track `obj_id` from `start` to its neighbouring
    keyframes; otherwise a propagation in `direction` from `start` (None: the earliest prompt)."""

    span: bool
    start: Optional[int]
    obj_id: Optional[int] = None
    direction: str = "both"

    def describe(self) -> str:
        if self.span:
            return "re-tracking the span of object %s around frame %s" % (self.obj_id, self.start)
        return "tracking %s%s" % (self.direction, " from frame %d" % self.start if self.start is not None else "")


def is_correction(book: PromptBook, obj_id: Optional[int], frame: int, tracked: Iterable[int]) -> bool:
    """Whether the object has a prompt on `frame` and already had a tracked result there."""
    if obj_id is None or frame not in book.frames(obj_id):
        return False
    return frame in set(int(f) for f in tracked)


def plan_track(book: PromptBook, obj_id: Optional[int], frame: int, tracked: Iterable[int], *,
               extent: str = "AUTO", direction: str = "both", from_current: bool = True) -> TrackPlan:
    """The Track action for the active object `obj_id` on plate frame `frame`; `tracked`: the
    object's tracked plate frames. ValueError (for the artist) when a span is asked for where
    there is no correction to re-track from."""
    if extent not in EXTENTS:
        raise ValueError("extent must be one of %s, got %r" % (", ".join(EXTENTS), extent))
    prompted = obj_id is not None and frame in book.frames(obj_id)
    if extent == "SPAN" or (extent == "AUTO" and is_correction(book, obj_id, frame, tracked)):
        if not prompted:
            raise ValueError("Re-tracking a span starts on a corrected frame: this frame has no prompt of the "
                             "active object (click on it first, or track to the end)")
        return TrackPlan(span=True, start=frame, obj_id=obj_id)
    start = frame if from_current and frame in book.frames() else None
    return TrackPlan(span=False, start=start, direction=direction)


def lock_range(first: int, last: int, plate_first: int, plate_last: int) -> Tuple[int, int]:
    """A lock or unlock range in plate frames, checked against the clip's frames."""
    first, last = int(first), int(last)
    if first > last:
        first, last = last, first
    if last < plate_first or first > plate_last:
        raise ValueError("Frames %d-%d are outside the clip's frames %d-%d" % (first, last, plate_first, plate_last))
    return max(first, plate_first), min(last, plate_last)


def ranges_text(ranges: Sequence[Sequence[int]]) -> str:
    """[[1003, 1006], [1010, 1010]] -> "1003-1006, 1010"."""
    return ", ".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in ranges)


def locked_frames(ranges: Sequence[Sequence[int]]) -> List[int]:
    return sorted({f for a, b in ranges for f in range(int(a), int(b) + 1)})


@dataclass
class Marks:
    """A session's keyframes and locked ranges per object (plate frames), as the worker says."""

    keyframes: Dict[int, List[int]] = field(default_factory=dict)
    locks: Dict[int, List[List[int]]] = field(default_factory=dict)

    @classmethod
    def from_history(cls, history: Mapping[str, Any]) -> "Marks":
        """From the worker's `history()` reply (keys may arrive as strings over msgpack)."""
        keyframes = {int(o): sorted(int(f) for f in frames) for o, frames in (history.get("keyframes") or {}).items()}
        locks = {int(o): [[int(a), int(b)] for a, b in ranges] for o, ranges in (history.get("locks") or {}).items()}
        return cls({o: f for o, f in keyframes.items() if f}, {o: r for o, r in locks.items() if r})

    @classmethod
    def from_book(cls, book: PromptBook, locks: Optional[Mapping[int, Sequence[Sequence[int]]]] = None) -> "Marks":
        """Keyframes from the prompts drawn (every prompted frame becomes one when tracked)."""
        keyframes = {obj_id: book.frames(obj_id) for obj_id in book.objects()}
        return cls({o: f for o, f in keyframes.items() if f},
                   {int(o): [[int(a), int(b)] for a, b in r] for o, r in (locks or {}).items() if r})

    def to_json(self) -> Dict[str, Any]:
        return {"keyframes": {str(o): f for o, f in sorted(self.keyframes.items())},
                "locks": {str(o): r for o, r in sorted(self.locks.items())}}

    def without(self, obj_id: int) -> "Marks":
        return Marks({o: f for o, f in self.keyframes.items() if o != obj_id},
                     {o: r for o, r in self.locks.items() if o != obj_id})


def marker_plan(marks: Marks, names: Mapping[int, str], to_scene: Callable[[int], int]) -> List[Tuple[str, int]]:
    """Timeline markers (name, scene frame): one per keyframe ("key: Chair"), and one at each end
    of a locked range ("locked: Chair 1003-1006"), for the objects in `names` (the clip's)."""
    plan: List[Tuple[str, int]] = []
    for obj_id in sorted(names):
        name = names[obj_id]
        for frame in marks.keyframes.get(obj_id, []):
            plan.append((KEY_MARKER + name, to_scene(frame)))
        for first, last in marks.locks.get(obj_id, []):
            label = LOCK_MARKER + "%s %s" % (name, ranges_text([[first, last]]))
            plan.append((label, to_scene(first)))
            if last != first:
                plan.append((label, to_scene(last)))
    return plan


def summary(marks: Marks, obj_id: Optional[int]) -> Tuple[str, str]:
    """The panel's two lines for the active object: its keyframes and its locked ranges."""
    if obj_id is None:
        return "", ""
    keys = marks.keyframes.get(obj_id, [])
    locks = marks.locks.get(obj_id, [])
    return ("Keyframes: %s" % (", ".join(str(f) for f in keys) if keys else "none"),
            "Locked: %s" % (ranges_text(locks) if locks else "none"))
