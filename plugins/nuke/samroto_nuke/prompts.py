"""The artist's prompts, from the SamRoto node's knobs or from a Roto node's shapes, turned into
what the worker takes (plate pixels: x right, y down, origin at the top-left corner).

Nuke's viewer and knobs use pixels with the origin at the *bottom-left* corner and y up, so
``y_plate = height - y_nuke``; x is the same in both. Knobs hold full-size coordinates of the
node's format: when that differs from the plate files (an upstream Reformat, proxy files) the
points are scaled by the ratio of the sizes, so prompts always land in the plate's pixels.

- **Knobs**: up to N positive and M negative clicks (XY knobs, draggable in the viewer, each
  with an on/off box) and one box (a BBox knob) for the object chosen on the node; sent for the
  current frame.
- **Roto shapes**: one object per top-level layer (or per shape colour); every keyed frame of a
  shape is a prompt frame (the current frame when the shape has no keys). The shapes of an object
  on a frame are rasterised into one mask (inverted shapes cut it) and sent as a mask prompt,
  which replaces the frame's earlier prompts: sending twice gives the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from .plate import PlateSource, UnsupportedInput

Point = Tuple[float, float]


class NoPrompts(ValueError):
    """Nothing to send: no enabled click or box, or no usable Roto shape."""


# --- knob prompts ------------------------------------------------------------------------------


@dataclass(frozen=True)
class KnobPrompts:
    """Prompt knob values in Nuke space (origin bottom-left), read by host.py.

    positive/negative: the enabled clicks (x, y); box: (x, y, r, t) as a BBox knob stores it,
    or None when its box is off; frame: the Nuke frame they were placed on; obj_id: the object;
    space: the (width, height) of the node's format the knobs live in (None: the plate's)."""

    obj_id: int
    frame: int
    positive: Tuple[Point, ...] = ()
    negative: Tuple[Point, ...] = ()
    box: Optional[Tuple[float, float, float, float]] = None
    space: Optional[Tuple[float, float]] = None

    @property
    def empty(self) -> bool:
        return not self.positive and not self.negative and self.box is None


@dataclass(frozen=True)
class ClickPrompt:
    """Clicks and an optional box for one object on one plate frame, in plate pixels."""

    obj_id: int
    frame: int
    points: Tuple[Point, ...]
    labels: Tuple[int, ...]
    box: Optional[Tuple[float, float, float, float]] = None  # (x0, y0, x1, y1)


def nuke_to_plate(point: Point, height: int) -> Point:
    return float(point[0]), float(height) - float(point[1])


def plate_to_nuke(point: Point, height: int) -> Point:
    return float(point[0]), float(height) - float(point[1])


def knob_to_plate(point: Point, space: Optional[Tuple[float, float]], width: int, height: int) -> Point:
    """A knob point (Nuke space of a `space`-sized format) in plate pixels (origin top-left)."""
    sx, sy = (float(width) / space[0], float(height) / space[1]) if space else (1.0, 1.0)
    return float(point[0]) * sx, float(height) - float(point[1]) * sy


def plate_to_knob(point: Point, space: Optional[Tuple[float, float]], width: int, height: int) -> Point:
    """The inverse of `knob_to_plate`."""
    sx, sy = (space[0] / float(width), space[1] / float(height)) if space else (1.0, 1.0)
    return float(point[0]) * sx, (float(height) - float(point[1])) * sy


def click_prompt(knobs: KnobPrompts, plate: PlateSource, *, width: int, height: int) -> ClickPrompt:
    """The knob prompts in plate pixels on the plate frame under the knobs' Nuke frame.

    NoPrompts when nothing is enabled; UnsupportedInput when the frame is outside the plate;
    ValueError for a click or box outside the image or a negative-only prompt."""
    if knobs.obj_id < 1:
        raise ValueError("the object number must be 1 or more, got %d" % knobs.obj_id)
    if knobs.empty:
        raise NoPrompts("no prompt on object %d: switch on a click or the box in the SamRoto node (or take the "
                        "prompts from a Roto node)" % knobs.obj_id)
    frame = plate.plate_frame_at(knobs.frame)
    points: List[Point] = []
    labels: List[int] = []
    for clicks, label in ((knobs.positive, 1), (knobs.negative, 0)):
        for p in clicks:
            x, y = knob_to_plate(p, knobs.space, width, height)
            if not (0 <= x <= width and 0 <= y <= height):
                kind = "positive" if label else "negative"
                raise ValueError("the %s click at (%.1f, %.1f) is outside the %dx%d plate: drag it onto the image"
                                 % (kind, p[0], p[1], width, height))
            points.append((x, y))
            labels.append(label)
    box = None
    if knobs.box is not None:
        left, bottom = knob_to_plate(knobs.box[:2], knobs.space, width, height)
        right, top = knob_to_plate(knobs.box[2:], knobs.space, width, height)
        x0, x1 = sorted((left, right))
        y0, y1 = sorted((top, bottom))
        x0, x1 = max(0.0, x0), min(float(width), x1)
        y0, y1 = max(0.0, y0), min(float(height), y1)
        if x1 - x0 < 1 or y1 - y0 < 1:
            raise ValueError("the box of object %d does not cover the plate: drag it over the object" % knobs.obj_id)
        box = (x0, y0, x1, y1)
    if box is None and 1 not in labels:
        raise NoPrompts("object %d has only negative clicks: add a positive click or a box" % knobs.obj_id)
    return ClickPrompt(obj_id=knobs.obj_id, frame=frame, points=tuple(points), labels=tuple(labels), box=box)


# --- Roto shapes -------------------------------------------------------------------------------


@dataclass(frozen=True)
class BezierVertex:
    """One Roto control point as Nuke stores it: the centre (absolute, Nuke space) and its left
    and right tangents *relative to the centre*."""

    center: Point
    left: Point = (0.0, 0.0)
    right: Point = (0.0, 0.0)


@dataclass(frozen=True)
class RotoShapeData:
    """A Roto Bezier as host.py reads it: `layer` is the name of its top-level layer ("" when it
    sits directly in the root layer); `keys` maps Nuke frames to the shape's points on that
    frame (the current frame only, when the shape is not animated); `inverted`: the shape's
    invert flag (it cuts the mask instead of adding to it)."""

    name: str
    layer: str
    keys: Dict[int, Tuple[BezierVertex, ...]]
    color: Optional[Tuple[float, float, float]] = None
    inverted: bool = False
    closed: bool = True


@dataclass
class MaskPrompt:
    """One object's mask on one plate frame, rasterised from Roto shapes. data: height*width bytes,
    row-major from the top row, 1 inside; sources: the shapes drawn into it."""

    obj_id: int
    frame: int
    width: int
    height: int
    data: bytearray = field(repr=False, default_factory=bytearray)
    sources: List[str] = field(default_factory=list)

    @property
    def area(self) -> int:
        return self.data.count(1)


def _bezier_polygon(vertices: Sequence[BezierVertex], *, closed: bool, steps: int) -> List[Point]:
    """Points along the shape's cubic spans (Nuke space). A span from a to b has control points
    a, a + a.right, b + b.left, b."""
    n = len(vertices)
    spans = n if closed else n - 1
    out: List[Point] = []
    for i in range(spans):
        a, b = vertices[i], vertices[(i + 1) % n]
        p0 = a.center
        p1 = (a.center[0] + a.right[0], a.center[1] + a.right[1])
        p2 = (b.center[0] + b.left[0], b.center[1] + b.left[1])
        p3 = b.center
        straight = a.right == (0.0, 0.0) and b.left == (0.0, 0.0)
        for k in range(1 if straight else steps):
            t = k / float(steps)
            u = 1.0 - t
            w0, w1, w2, w3 = u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t
            out.append((w0 * p0[0] + w1 * p1[0] + w2 * p2[0] + w3 * p3[0],
                        w0 * p0[1] + w1 * p1[1] + w2 * p2[1] + w3 * p3[1]))
    if not closed and n:
        out.append(vertices[-1].center)
    return out


def fill_polygon(mask: bytearray, polygon: Sequence[Point], *, width: int, height: int, value: int) -> None:
    """Set the pixels whose centres are inside `polygon` (plate pixels, even-odd rule) to `value`.

    mask: height*width bytes, row-major from the top row."""
    n = len(polygon)
    if n < 3:
        return
    ys = [p[1] for p in polygon]
    row_first = max(0, int(min(ys) - 0.5))
    row_last = min(height - 1, int(max(ys) + 0.5))
    fill = bytes([value]) * width
    for row in range(row_first, row_last + 1):
        yc = row + 0.5
        crossings: List[float] = []
        for i in range(n):
            x0, y0 = polygon[i]
            x1, y1 = polygon[(i + 1) % n]
            if (y0 <= yc) != (y1 <= yc):
                crossings.append(x0 + (yc - y0) * (x1 - x0) / (y1 - y0))
        crossings.sort()
        base = row * width
        for k in range(0, len(crossings) - 1, 2):
            # pixel j is inside when its centre j + 0.5 lies in [left, right)
            start = max(0, math.ceil(crossings[k] - 0.5))
            stop = min(width, math.ceil(crossings[k + 1] - 0.5))
            if stop > start:
                mask[base + start:base + stop] = fill[:stop - start]


def group_shapes(shapes: Sequence[RotoShapeData], *, grouping: str = "layer") -> Dict[int, List[RotoShapeData]]:
    """Objects from Roto shapes: obj_id (1, 2, ... in the order first met) -> its shapes.

    grouping "layer": one object per top-level layer, shapes directly in the root layer each
    their own object; "colour": one object per distinct shape colour."""
    if grouping not in ("layer", "colour"):
        raise ValueError("Roto grouping must be 'layer' or 'colour', got %r" % (grouping,))
    keys: Dict[object, int] = {}
    out: Dict[int, List[RotoShapeData]] = {}
    for shape in shapes:
        if grouping == "layer":
            key: object = ("layer", shape.layer) if shape.layer else ("shape", shape.name)
        else:
            key = ("colour", tuple(round(c, 3) for c in shape.color) if shape.color else None)
        obj_id = keys.setdefault(key, len(keys) + 1)
        out.setdefault(obj_id, []).append(shape)
    return out


def roto_mask_prompts(shapes: Sequence[RotoShapeData], plate: PlateSource, *, width: int, height: int,
                      grouping: str = "layer", steps: int = 12) -> List[MaskPrompt]:
    """Mask prompts (one per object and keyed frame) from Roto shapes.

    NoPrompts when no shape has a key on a frame of the plate or no mask covers anything."""
    if width <= 0 or height <= 0:
        raise ValueError("the plate size must be positive, got %dx%d" % (width, height))
    prompts: List[MaskPrompt] = []
    skipped: List[str] = []
    for obj_id, members in sorted(group_shapes(shapes, grouping=grouping).items()):
        frames = sorted({f for s in members for f in s.keys})
        for nuke_frame in frames:
            try:
                frame = plate.plate_frame_at(nuke_frame)
            except UnsupportedInput:
                skipped.append("%s@%d" % (members[0].name, nuke_frame))
                continue
            mask = MaskPrompt(obj_id=obj_id, frame=frame, width=width, height=height, data=bytearray(width * height))
            # additive shapes first, then the inverted ones cut
            for shape in sorted(members, key=lambda s: s.inverted):
                vertices = shape.keys.get(nuke_frame)
                if vertices is None:
                    vertices = _held_key(shape, nuke_frame)
                if vertices is None or len(vertices) < 3:
                    continue
                polygon = [nuke_to_plate(p, height) for p in _bezier_polygon(vertices, closed=True, steps=steps)]
                fill_polygon(mask.data, polygon, width=width, height=height, value=0 if shape.inverted else 1)
                mask.sources.append(shape.name)
            if mask.area:
                prompts.append(mask)
    if not prompts:
        where = (" (keys outside the plate: %s)" % ", ".join(skipped[:5])) if skipped else ""
        raise NoPrompts("the Roto shapes give no mask on any frame of the plate%s: draw closed shapes over the "
                        "object on frames of the shot" % where)
    return prompts


def _held_key(shape: RotoShapeData, nuke_frame: int) -> Optional[Tuple[BezierVertex, ...]]:
    """The shape on a frame where it has no key of its own: its nearest earlier key, else the first."""
    if not shape.keys:
        return None
    earlier = [f for f in shape.keys if f <= nuke_frame]
    return shape.keys[max(earlier)] if earlier else shape.keys[min(shape.keys)]
