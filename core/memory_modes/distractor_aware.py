"""DAM4SAM's distractor-aware memory ("SAM2.1++", Videnovic, Lukezic, Kristan, CVPR 2025), for
several objects as in its multi-object version (alanlukezic/d4sm, `tracking_wrapper_mot.py`).

Each object's memory is its keyframes plus two parts that never hold an empty frame:
- a recent-appearance memory (RAM): the newest frame where the object is visible, and every frame
  whose number is a multiple of `update_every` that was the newest when the next one came; the oldest
  goes once the RAM holds more than `max_ram` and the memory more than `num_maskmem` frames;
- a distractor-resolving memory (DRM) of up to `max_drm` anchor frames: a frame becomes an anchor when
  its mask is confident (predicted IoU > 0.8), its area is within 20% of the median of the last ten,
  more than `update_every` frames passed since the last anchor, and another candidate mask reaches
  well beyond it (a look-alike nearby: the box of that candidate's largest extra part joined to the
  mask overlaps the mask's box by at most 0.7).
Object pointers are kept only from frames where the object is visible.

The running memory of each object after a tracked frame is written in that frame's record (a short
string), so a propagation continues from the record of the frame before it: a session reopened, or a
propagation cancelled and started again, goes on exactly. A pass in a new direction, or one that
meets no tracked frame before it, starts from the keyframes alone. The reference tracks forward only
from one prompted frame; backward passes here mirror it, and several keyframes each enter memory as
its prompt frame does.

Where the reference encodes positions its own way (its code, not SAM 2's rule), this does the same:
RAM frames take the temporal encoding of their place in the memory list, anchors that of a keyframe;
pointers are numbered by recency (1 = newest kept) and normalised by their count less one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .base import FrameData, MemoryChoice, MemoryContext, MemoryMode, ObjectState, TrackedFrame

DATA_KEY = "dam"  # the frame record's data: {"dam": running memory after the frame, "rev": direction}


@dataclass(frozen=True)
class DistractorAwareSettings:
    """The reference's constants (`DAM4SAMMOT.__init__` and its DRM test)."""

    update_every: int = 5  # RAM: keep a frame every 5; DRM: at least 5 frames between anchors
    max_ram: int = 3
    max_drm: int = 3
    anchor_min_iou: float = 0.8  # predicted IoU of the chosen mask
    area_ratio_range: tuple[float, float] = (0.8, 1.2)  # area / median of the last areas
    area_history: int = 10
    distractor_max_box_iou: float = 0.7


@dataclass
class ObjectMemory:
    """One object's running memory: what the reference keeps per object between frames."""

    elements: list[tuple[int, bool]] = field(default_factory=list)  # (frame, is anchor), in list order
    pointers: list[int] = field(default_factory=list)  # frames whose object pointers are kept, oldest first
    areas: list[int] = field(default_factory=list)  # the last non-empty mask areas (shot pixels)
    last_anchor: int | None = None
    deferred_anchor: int | None = None  # the newest RAM frame, to become an anchor after the next frame

    def to_text(self) -> str:
        """Compact form for the frame record (a few dozen bytes)."""
        elements = ",".join(f"{f}{'d' if anchor else 'r'}" for f, anchor in self.elements)
        pointers = ",".join(map(str, self.pointers))
        areas = ",".join(map(str, self.areas))
        last = "" if self.last_anchor is None else str(self.last_anchor)
        deferred = "" if self.deferred_anchor is None else str(self.deferred_anchor)
        return f"{elements};{pointers};{areas};{last};{deferred}"

    @classmethod
    def from_text(cls, text: str) -> "ObjectMemory":
        elements, pointers, areas, last, deferred = text.split(";")
        return cls(
            elements=[(int(e[:-1]), e[-1] == "d") for e in elements.split(",") if e],
            pointers=[int(p) for p in pointers.split(",") if p],
            areas=[int(a) for a in areas.split(",") if a],
            last_anchor=int(last) if last else None,
            deferred_anchor=int(deferred) if deferred else None,
        )

    def anchors(self) -> list[int]:
        return [i for i, (_, anchor) in enumerate(self.elements) if anchor]

    def recent(self) -> list[int]:
        return [i for i, (_, anchor) in enumerate(self.elements) if not anchor]


class DistractorAwareMemory(MemoryMode):
    name = "distractor-aware"

    def __init__(self, settings: DistractorAwareSettings | None = None) -> None:
        self.settings = settings or DistractorAwareSettings()

    # --- choosing memory -------------------------------------------------------------------------

    def choose_memory(self, ctx: MemoryContext) -> MemoryChoice:
        memory = self._memory_before(ctx)
        # handed to frame_data for this frame (called right after the frame is tracked)
        ctx.state["before"] = [ctx.frame, ctx.reverse, memory.to_text()]
        c = ctx.config
        count = len(memory.elements) + 1  # the reference's list holds its prompt frame first
        spatial: list[tuple[int, int]] = []
        for i, (frame, anchor) in enumerate(memory.elements, start=1):
            if ctx.usable(frame):
                # the reference: anchors as its prompt frame, RAM by place in the list (newest: last encoding)
                t_pos = 0 if anchor else max(1, c.num_maskmem - count + i)
                spatial.append((frame, t_pos))
        pointers = [(frame, len(memory.pointers) - i) for i, frame in enumerate(memory.pointers) if ctx.usable(frame)]
        past_keyframes = sum(
            1 for f, key in ctx.committed.items()
            if key and f not in ctx.unselected and ((f >= ctx.frame) if ctx.reverse else (f <= ctx.frame))
        )
        normaliser = max(1, past_keyframes + len(memory.pointers) - 1)
        return MemoryChoice(spatial=spatial, pointers=pointers, pointer_normaliser=normaliser)

    def _memory_before(self, ctx: MemoryContext) -> ObjectMemory:
        """The running memory after the previous tracked frame in the direction of travel (keyframes
        in between are stepped over: they are in memory anyway)."""
        step = 1 if ctx.reverse else -1
        frame = ctx.frame + step
        while 0 <= frame < ctx.num_frames:
            data = ctx.data.get(frame)
            if data is not None and DATA_KEY in data:
                if bool(data.get("rev", False)) != ctx.reverse:
                    break  # tracked in the other direction: this pass starts afresh
                return ObjectMemory.from_text(str(data[DATA_KEY]))
            if not ctx.committed.get(frame, False):
                break  # never tracked (or tracked by another mode): start from the keyframes
            frame += step
        return ObjectMemory()

    # --- after a tracked frame -------------------------------------------------------------------

    def frame_data(self, tracked: TrackedFrame, state: ObjectState) -> FrameData:
        before = state.get("before")
        if before is not None and before[0] == tracked.frame and before[1] == tracked.reverse:
            memory = ObjectMemory.from_text(before[2])
        else:
            memory = ObjectMemory()
        state.pop("before", None)
        self._advance(memory, tracked)
        return {DATA_KEY: memory.to_text(), "rev": tracked.reverse}

    def _advance(self, memory: ObjectMemory, tracked: TrackedFrame) -> None:
        """The reference's update of one object after frame `tracked.frame` (in place)."""
        s = self.settings
        assert tracked.config is not None, "the session gives its model's configuration"
        config_num_maskmem, max_pointers = tracked.config.num_maskmem, tracked.config.max_obj_ptrs_in_encoder
        t = tracked.frame
        if memory.deferred_anchor is not None:
            # the anchor chosen on the previous frame was then the newest RAM element: it turns now
            if memory.elements:
                memory.elements[-1] = (memory.deferred_anchor, True)
            memory.deferred_anchor = None
            anchors = memory.anchors()
            if len(anchors) > s.max_drm:
                memory.elements.pop(anchors[0])

        chosen = _upsample(tracked.lowres, tracked.video_size)[0, 0] > 0
        area = int(chosen.sum())
        if area == 0:
            return  # the object is lost here: nothing of this frame enters memory

        memory.pointers.append(t)
        if len(memory.pointers) + 1 > max_pointers:  # the prompt's pointer stays
            memory.pointers.pop(0)

        recent = memory.recent()
        if recent and memory.elements[recent[-1]][0] % s.update_every != 0:
            memory.elements[recent[-1]] = (t, False)  # the newest replaces the newest
        else:
            memory.elements.append((t, False))
        recent = memory.recent()
        if len(recent) > s.max_ram and len(memory.elements) + 1 > config_num_maskmem:
            memory.elements.pop(recent[0])

        if s.max_drm <= 0:
            return
        memory.areas.append(area)
        memory.areas = memory.areas[-s.area_history:]
        ratio = area / float(np.median(memory.areas)) if len(memory.areas) > 1 else -1.0
        ious = tracked.heads.ious[0].float().cpu().numpy()
        best = int(np.argmax(ious))
        low, high = s.area_ratio_range
        far_enough = memory.last_anchor is None or abs(t - memory.last_anchor) > s.update_every
        if not (ious[best] > s.anchor_min_iou and low <= ratio <= high and far_enough):
            return
        if not self._distractor_seen(tracked, chosen, best):
            return
        memory.last_anchor = t
        if memory.elements and memory.elements[-1][0] == t:
            memory.deferred_anchor = t
            return
        memory.elements.append((t, True))
        if len(memory.elements) + 1 > config_num_maskmem:
            anchors = memory.anchors()
            if len(anchors) > s.max_drm:
                memory.elements.pop(anchors[0])
            elif memory.recent():
                memory.elements.pop(memory.recent()[0])

    def _distractor_seen(self, tracked: TrackedFrame, chosen: torch.Tensor, best: int) -> bool:
        """Whether another candidate mask reaches well beyond the chosen one (the reference's test)."""
        chosen_np = chosen.cpu().numpy()
        chosen_box = _mask_box(chosen_np)
        candidates = _upsample(tracked.heads.multimasks, tracked.video_size)[0] > 0
        overlaps = []
        for i in range(candidates.shape[0]):
            if i == best:
                continue
            extra = (candidates[i].cpu().numpy() & ~chosen_np).astype(np.uint8)
            if extra.sum() < 1:
                continue
            joined = _largest_component(extra).astype(bool) | chosen_np
            overlaps.append(_box_overlap(chosen_box, _mask_box(joined)))
        return bool(overlaps) and min(overlaps) <= self.settings.distractor_max_box_iou


def _upsample(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)


def _mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) inclusive pixel box of a non-empty mask."""
    xs = np.flatnonzero(mask.any(axis=0))
    ys = np.flatnonzero(mask.any(axis=1))
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected component (the first of equals, in OpenCV's label order)."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return labels == largest


def _box_overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of two inclusive pixel boxes as the VOT toolkit rasterises them (what the reference
    calls): 1.0 when the box around both is a single row or column."""
    left, top, right, bottom = min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])
    if left >= right or top >= bottom:
        return 1.0
    inter_w = min(a[2], b[2]) - max(a[0], b[0]) + 1
    inter_h = min(a[3], b[3]) - max(a[1], b[1]) + 1
    inter = max(inter_w, 0) * max(inter_h, 0)
    union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
    return inter / union if union > 0 else 0.0


def describe(state_text: str) -> dict[str, Any]:
    """A frame's recorded memory in readable form (for tests and debugging)."""
    memory = ObjectMemory.from_text(state_text)
    return {
        "memory": [[f, "drm" if anchor else "ram"] for f, anchor in memory.elements],
        "pointers": memory.pointers,
        "deferred_drm": memory.deferred_anchor,
        "last_drm_add": -1 if memory.last_anchor is None else memory.last_anchor,
    }
