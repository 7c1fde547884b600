"""The artist's prompts per object and frame: clicks, boxes and masks. No bpy.

Each time the prompts of an (object, frame) change, the add-on sends all of them again (a box
with its clicks, the clicks alone, or a mask), so what the worker holds equals what is drawn.
The book is stored as JSON on the clip so the prompts survive saving the .blend file, and is
compared with the worker's own prompts (`export_prompts`, a batch sidecar) after an undo, a file
load, a failure or a worker restart: `diff` says which frames to send again.

Masks are kept as the sidecar's run-length encoding (`{"height", "width", "counts"}`, row by row
from the top, runs alternating 0s and 1s starting with 0s), so they compare and store cheaply.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

Point = Tuple[float, float]
Box = Tuple[float, float, float, float]

POSITIVE = 1
NEGATIVE = 0
COORD_TOLERANCE = 1e-3
"""Clip pixels two positions may differ by and still be the same click (the worker keeps float32)."""


@dataclass
class FramePrompt:
    """One object's prompts on one frame, in clip pixels: clicks with labels (1 include,
    0 exclude) in the order they were made, and an optional box (x0, y0, x1, y1); or a mask
    (run-length encoded, see the module docstring), which stands alone."""

    points: List[Point] = field(default_factory=list)
    labels: List[int] = field(default_factory=list)
    box: Optional[Box] = None
    mask: Optional[Dict[str, Any]] = None

    @property
    def empty(self) -> bool:
        return not self.points and self.box is None and self.mask is None

    def same_as(self, other: "FramePrompt") -> bool:
        """Equal up to the float32 rounding the worker applies to coordinates."""
        if self.labels != other.labels or len(self.points) != len(other.points):
            return False
        if (self.box is None) != (other.box is None) or (self.mask is None) != (other.mask is None):
            return False
        if self.mask is not None and other.mask is not None and not _same_rle(self.mask, other.mask):
            return False
        close = all(abs(a - b) <= COORD_TOLERANCE for p, q in zip(self.points, other.points) for a, b in zip(p, q))
        if self.box is not None and other.box is not None:
            close = close and all(abs(a - b) <= COORD_TOLERANCE for a, b in zip(self.box, other.box))
        return close

    def to_json(self) -> Dict[str, Any]:
        if self.mask is not None:
            return {"mask": dict(self.mask)}
        out: Dict[str, Any] = {"points": [list(p) for p in self.points], "labels": list(self.labels)}
        if self.box is not None:
            out["box"] = list(self.box)
        return out

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "FramePrompt":
        """From `to_json` output or a sidecar prompt (which also carries `frame`)."""
        mask = data.get("mask")
        if mask is not None:
            return cls(mask=check_rle(mask))
        points = [(float(p[0]), float(p[1])) for p in data.get("points", [])]
        labels = [int(v) for v in data.get("labels", [])]
        if len(points) != len(labels):
            raise ValueError("stored prompt has %d points but %d labels" % (len(points), len(labels)))
        box = data.get("box")
        return cls(points, labels, tuple(float(v) for v in box) if box else None)  # type: ignore[arg-type]


def check_rle(mask: Any) -> Dict[str, Any]:
    """A run-length mask dict, checked: ValueError when its counts do not fill height * width."""
    if not isinstance(mask, dict) or "counts" not in mask:
        raise ValueError("a mask prompt must be {'height', 'width', 'counts'} (inline run-length), got %r"
                         % (type(mask).__name__,))
    height, width = int(mask["height"]), int(mask["width"])
    counts = [int(c) for c in mask["counts"]]
    if height <= 0 or width <= 0 or any(c < 0 for c in counts) or sum(counts) != height * width:
        raise ValueError("a mask prompt's runs must add up to its %dx%d pixels" % (width, height))
    return {"height": height, "width": width, "counts": counts}


def _runs(mask: Dict[str, Any]) -> List[Tuple[int, int]]:
    """(value, length) runs with empty runs dropped and equal neighbours merged."""
    out: List[Tuple[int, int]] = []
    for i, count in enumerate(int(c) for c in mask["counts"]):
        value = i % 2
        if count == 0:
            continue
        if out and out[-1][0] == value:
            out[-1] = (value, out[-1][1] + count)
        else:
            out.append((value, count))
    return out


def _same_rle(a: Dict[str, Any], b: Dict[str, Any]) -> bool:
    if (int(a["height"]), int(a["width"])) != (int(b["height"]), int(b["width"])):
        return False
    return _runs(a) == _runs(b)


class PromptBook:
    """obj_id -> plate frame -> FramePrompt."""

    def __init__(self) -> None:
        self._prompts: Dict[int, Dict[int, FramePrompt]] = {}

    def get(self, obj_id: int, frame: int) -> FramePrompt:
        """The prompt (a fresh empty one if none); edit it through the methods below."""
        return self._prompts.get(obj_id, {}).get(frame, FramePrompt())

    def _slot(self, obj_id: int, frame: int) -> FramePrompt:
        return self._prompts.setdefault(obj_id, {}).setdefault(frame, FramePrompt())

    def add_click(self, obj_id: int, frame: int, point: Point, positive: bool) -> FramePrompt:
        """A click joins the frame's clicks (and box); it replaces a mask, as on the worker."""
        slot = self._slot(obj_id, frame)
        if slot.mask is not None:
            slot.mask = None
        slot.points.append((float(point[0]), float(point[1])))
        slot.labels.append(POSITIVE if positive else NEGATIVE)
        return slot

    def set_box(self, obj_id: int, frame: int, box: Box) -> FramePrompt:
        slot = self._slot(obj_id, frame)
        slot.mask = None
        slot.box = tuple(float(v) for v in box)  # type: ignore[assignment]
        return slot

    def undo(self, obj_id: int, frame: int) -> Optional[FramePrompt]:
        """Remove the last click (or the box when no clicks are left, or the mask); None if nothing to undo."""
        slot = self._prompts.get(obj_id, {}).get(frame)
        if slot is None or slot.empty:
            return None
        if slot.mask is not None:
            slot.mask = None
        elif slot.points:
            slot.points.pop()
            slot.labels.pop()
        else:
            slot.box = None
        self._drop_if_empty(obj_id, frame)
        return slot

    def set(self, obj_id: int, frame: int, prompt: FramePrompt) -> FramePrompt:
        """Replace the frame's prompt (an empty one clears it)."""
        copy = FramePrompt.from_json(prompt.to_json())
        self._prompts.setdefault(obj_id, {})[frame] = copy
        self._drop_if_empty(obj_id, frame)
        return copy

    def set_mask(self, obj_id: int, frame: int, mask: Dict[str, Any]) -> FramePrompt:
        """A mask prompt (run-length dict) replaces the frame's clicks and box."""
        return self.set(obj_id, frame, FramePrompt(mask=check_rle(mask)))

    def clear(self, obj_id: int, frame: int) -> None:
        self._prompts.get(obj_id, {}).pop(frame, None)
        self._drop_if_empty(obj_id, frame)

    def remove_object(self, obj_id: int) -> None:
        self._prompts.pop(obj_id, None)

    def _drop_if_empty(self, obj_id: int, frame: int) -> None:
        frames = self._prompts.get(obj_id)
        if frames is None:
            return
        if frame in frames and frames[frame].empty:
            del frames[frame]
        if not frames:
            del self._prompts[obj_id]

    def frames(self, obj_id: Optional[int] = None) -> List[int]:
        """Prompted frames of one object, or of any object."""
        if obj_id is not None:
            return sorted(self._prompts.get(obj_id, {}))
        return sorted({f for frames in self._prompts.values() for f in frames})

    def items(self) -> List[Tuple[int, int, FramePrompt]]:
        """(obj_id, frame, prompt) for every prompt, by object then frame."""
        return [(o, f, self._prompts[o][f]) for o in sorted(self._prompts) for f in sorted(self._prompts[o])]

    def on_frame(self, frame: int) -> Dict[int, FramePrompt]:
        """obj_id -> prompt for every object prompted on `frame`."""
        return {o: frames[frame] for o, frames in self._prompts.items() if frame in frames}

    def objects(self) -> List[int]:
        return sorted(self._prompts)

    def copy(self) -> "PromptBook":
        return PromptBook.from_json(self.to_json())

    def diff(self, other: "PromptBook") -> List[Tuple[int, int, FramePrompt]]:
        """(obj_id, frame, this book's prompt) wherever `other` differs; the prompt is empty where
        this book has none (so sending every entry makes `other` equal this book)."""
        keys = {(o, f) for o, f, _ in self.items()} | {(o, f) for o, f, _ in other.items()}
        return [(o, f, self.get(o, f)) for o, f in sorted(keys) if not self.get(o, f).same_as(other.get(o, f))]

    def sidecar_objects(self, entries: Optional[List[Tuple[int, int, FramePrompt]]] = None) -> List[Dict[str, Any]]:
        """The sidecar's `objects` list for `entries` (default: the whole book); empty prompts are left out."""
        grouped: Dict[int, List[Dict[str, Any]]] = {}
        for obj_id, frame, prompt in (self.items() if entries is None else entries):
            if not prompt.empty:
                grouped.setdefault(obj_id, []).append(dict(prompt.to_json(), frame=frame))
        return [{"obj_id": obj_id, "prompts": prompts} for obj_id, prompts in sorted(grouped.items())]

    @classmethod
    def from_sidecar(cls, sidecar: Dict[str, Any]) -> "PromptBook":
        """The prompts of a batch sidecar (what the worker's `export_prompts` answers)."""
        book = cls()
        try:
            for obj in sidecar.get("objects") or []:
                obj_id = int(obj["obj_id"])
                for prompt in obj.get("prompts") or []:
                    parsed = FramePrompt.from_json({k: v for k, v in prompt.items() if k != "frame"})
                    if not parsed.empty:
                        book._prompts.setdefault(obj_id, {})[int(prompt["frame"])] = parsed
        except (ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
            raise ValueError("the worker's prompts cannot be read: %s" % exc) from None
        return book

    def to_json(self) -> str:
        return json.dumps({str(o): {str(f): p.to_json() for f, p in frames.items()}
                           for o, frames in self._prompts.items()}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PromptBook":
        """A book from `to_json` output; an empty book for an empty string. ValueError if damaged."""
        book = cls()
        if not text:
            return book
        try:
            data = json.loads(text)
            for obj, frames in data.items():
                obj_id = int(obj)
                for frame, prompt in frames.items():
                    parsed = FramePrompt.from_json(prompt)
                    if not parsed.empty:
                        book._prompts.setdefault(obj_id, {})[int(frame)] = parsed
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            raise ValueError("the stored samroto prompts are damaged: %s" % exc) from None
        return book
