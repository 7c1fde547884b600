"""The artist's clicks and boxes per object and frame. No bpy.

Each time the prompts of an (object, frame) change, the add-on sends all of them again (a box
with its clicks, or the clicks alone), so what the worker holds always equals what is drawn.
The book is stored as JSON on the clip so the clicks survive saving the .blend file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

Point = Tuple[float, float]
Box = Tuple[float, float, float, float]

POSITIVE = 1
NEGATIVE = 0


@dataclass
class FramePrompt:
    """One object's prompts on one frame, in clip pixels: clicks with labels (1 include,
    0 exclude) in the order they were made, and an optional box (x0, y0, x1, y1)."""

    points: List[Point] = field(default_factory=list)
    labels: List[int] = field(default_factory=list)
    box: Optional[Box] = None

    @property
    def empty(self) -> bool:
        return not self.points and self.box is None

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"points": [list(p) for p in self.points], "labels": list(self.labels)}
        if self.box is not None:
            out["box"] = list(self.box)
        return out

    @classmethod
    def from_json(cls, data: Dict[str, Any]) -> "FramePrompt":
        points = [(float(p[0]), float(p[1])) for p in data.get("points", [])]
        labels = [int(v) for v in data.get("labels", [])]
        if len(points) != len(labels):
            raise ValueError("stored prompt has %d points but %d labels" % (len(points), len(labels)))
        box = data.get("box")
        return cls(points, labels, tuple(float(v) for v in box) if box else None)  # type: ignore[arg-type]


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
        slot = self._slot(obj_id, frame)
        slot.points.append((float(point[0]), float(point[1])))
        slot.labels.append(POSITIVE if positive else NEGATIVE)
        return slot

    def set_box(self, obj_id: int, frame: int, box: Box) -> FramePrompt:
        slot = self._slot(obj_id, frame)
        slot.box = tuple(float(v) for v in box)  # type: ignore[assignment]
        return slot

    def undo(self, obj_id: int, frame: int) -> Optional[FramePrompt]:
        """Remove the last click (or the box when no clicks are left); None if nothing to undo."""
        slot = self._prompts.get(obj_id, {}).get(frame)
        if slot is None or slot.empty:
            return None
        if slot.points:
            slot.points.pop()
            slot.labels.pop()
        else:
            slot.box = None
        self._drop_if_empty(obj_id, frame)
        return slot

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
