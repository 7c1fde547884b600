"""The Roto node to build from the worker's shape tracks: one layer per object, one Bezier per
track, keyed on every tracked frame, the same point count on every key.

The worker's `get_shapes(obj_id, space="nuke")` answers per object with track dicts (see
`samroto.core.outputs.shapes.shape_tracks_to_wire`): `kind` ("outer" | "island" | "hole"), `space`,
`closed`, `frames` (plate frame numbers, one key each), `corners` (one bool per point),
`points`, `handles_in`, `handles_out` (F lists of P [x, y], absolute, Nuke space: pixels,
origin bottom-left). Nuke keeps a control point's tangents *relative* to its centre:
``leftTangent = handle_in - point`` (towards the previous point) and
``rightTangent = handle_out - point`` (towards the next).

A track covers a contiguous run of frames (a part that vanishes ends its track); its shape is
visible from its first to its last key and hidden on the frames just outside.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .settings import RotoSettings

Point = Tuple[float, float]


class ShapeDataError(ValueError):
    """The worker's shape data does not have the expected layout."""


@dataclass(frozen=True)
class RotoKey:
    """One key of a shape: Nuke frame, and per point the centre (absolute) and the left/right
    tangents relative to it (all Nuke space)."""

    frame: int
    centers: Tuple[Point, ...]
    left: Tuple[Point, ...]
    right: Tuple[Point, ...]


@dataclass(frozen=True)
class RotoShapePlan:
    """One Bezier: `keys` sorted by frame, `point_count` points on each; shown from `first` to
    `last` (Nuke frames), hidden on `hide_frames` (the frames just outside, within the shot)."""

    name: str
    kind: str
    point_count: int
    keys: Tuple[RotoKey, ...]
    corners: Tuple[bool, ...]
    hide_frames: Tuple[int, ...] = ()

    @property
    def first(self) -> int:
        return self.keys[0].frame

    @property
    def last(self) -> int:
        return self.keys[-1].frame


@dataclass(frozen=True)
class RotoLayerPlan:
    name: str
    obj_id: int
    shapes: Tuple[RotoShapePlan, ...]


@dataclass
class RotoPlan:
    """Everything host.py needs to build the Roto node (in this order: layers, shapes, keys)."""

    node_name: str
    width: int
    height: int
    layers: List[RotoLayerPlan] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)  # what was left out and why

    @property
    def shape_count(self) -> int:
        return sum(len(layer.shapes) for layer in self.layers)

    @property
    def key_count(self) -> int:
        return sum(len(s.keys) for layer in self.layers for s in layer.shapes)


def _pairs(value: Any, what: str) -> List[Point]:
    if not isinstance(value, (list, tuple)):
        raise ShapeDataError("%s must be a list of [x, y] pairs" % what)
    out: List[Point] = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise ShapeDataError("%s must be a list of [x, y] pairs, got %r" % (what, item))
        out.append((float(item[0]), float(item[1])))
    return out


def _track_keys(track: Mapping[str, Any], offset: int, where: str) -> Tuple[List[RotoKey], int]:
    frames = track.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ShapeDataError("%s has no frames" % where)
    lists = {}
    for name in ("points", "handles_in", "handles_out"):
        value = track.get(name)
        if not isinstance(value, list) or len(value) != len(frames):
            raise ShapeDataError("%s: %s must hold one list per frame (%d)" % (where, name, len(frames)))
        lists[name] = value
    count = -1
    keys: List[RotoKey] = []
    for i, frame in enumerate(frames):
        pts = _pairs(lists["points"][i], "%s points" % where)
        ins = _pairs(lists["handles_in"][i], "%s handles_in" % where)
        outs = _pairs(lists["handles_out"][i], "%s handles_out" % where)
        if count < 0:
            count = len(pts)
        if not (len(pts) == len(ins) == len(outs) == count):
            raise ShapeDataError("%s: frame %s has %d points, the track's first frame %d; a Roto shape keeps its "
                                 "point count" % (where, frame, len(pts), count))
        keys.append(RotoKey(
            frame=int(frame) + offset,
            centers=tuple(pts),
            left=tuple((h[0] - p[0], h[1] - p[1]) for h, p in zip(ins, pts)),
            right=tuple((h[0] - p[0], h[1] - p[1]) for h, p in zip(outs, pts)),
        ))
    if count < 3:
        raise ShapeDataError("%s has %d points; a closed shape needs 3 or more" % (where, count))
    keys.sort(key=lambda k: k.frame)
    if len({k.frame for k in keys}) != len(keys):
        raise ShapeDataError("%s keys a frame twice" % where)
    return keys, count


def plan_roto(node_name: str, answers: Sequence[Mapping[str, Any]], *, offset: int = 0,
              shot_range: Optional[Tuple[int, int]] = None, settings: RotoSettings = RotoSettings(),
              object_names: Optional[Mapping[int, str]] = None) -> RotoPlan:
    """The Roto node for the worker's `get_shapes` answers (one per object).

    offset: Nuke frame minus plate frame (`PlateSource.offset`); shot_range: the plate's Nuke
    frames, to hide a shape on the frames around its keys; object_names: obj_id -> layer name
    (default `obj<id>`). ShapeDataError when an answer is not in Nuke space or malformed."""
    if not answers:
        raise ShapeDataError("no objects to turn into shapes: track an object first")
    width = height = 0
    plan = RotoPlan(node_name=node_name, width=0, height=0)
    names = dict(object_names or {})
    for answer in answers:
        obj_id = int(answer.get("obj_id", 0))
        w, h = int(answer.get("width", 0)), int(answer.get("height", 0))
        if w <= 0 or h <= 0:
            raise ShapeDataError("the shapes of object %d come without the plate size" % obj_id)
        if width and (w, h) != (width, height):
            raise ShapeDataError("objects come with different plate sizes (%dx%d and %dx%d)" % (width, height, w, h))
        width, height = w, h
        layer_name = names.get(obj_id, "obj%d" % obj_id)
        tracks = answer.get("shapes")
        if not isinstance(tracks, list):
            raise ShapeDataError("the answer for object %d has no list of shapes" % obj_id)
        main: List[RotoShapePlan] = []
        holes: List[RotoShapePlan] = []
        counters: Dict[str, int] = {}
        for index, track in enumerate(tracks):
            where = "object %d shape %d" % (obj_id, index + 1)
            if not isinstance(track, Mapping):
                raise ShapeDataError("%s is not a dict" % where)
            if track.get("space") != "nuke":
                raise ShapeDataError("%s is in %r space; ask the worker for space='nuke'" % (where, track.get("space")))
            kind = str(track.get("kind", "outer"))
            if kind not in ("outer", "island", "hole"):
                raise ShapeDataError("%s has the unknown kind %r" % (where, kind))
            if kind == "hole" and settings.holes == "skip":
                plan.skipped.append("%s (a hole)" % where)
                continue
            keys, count = _track_keys(track, offset, where)
            corners = track.get("corners") or [False] * count
            if len(corners) != count:
                raise ShapeDataError("%s: %d corner flags for %d points" % (where, len(corners), count))
            counters[kind] = counters.get(kind, 0) + 1
            name = "%s_%s%d" % (layer_name, kind, counters[kind])
            hide: List[int] = []
            if shot_range is not None:
                for frame in (keys[0].frame - 1, keys[-1].frame + 1):
                    if shot_range[0] <= frame <= shot_range[1]:
                        hide.append(frame)
            shape = RotoShapePlan(name=name, kind=kind, point_count=count, keys=tuple(keys),
                                  corners=tuple(bool(c) for c in corners), hide_frames=tuple(hide))
            (holes if kind == "hole" else main).append(shape)
        if main:
            plan.layers.append(RotoLayerPlan(name=layer_name, obj_id=obj_id, shapes=tuple(main)))
        elif not holes:
            plan.skipped.append("object %d (no shape: the object was never found)" % obj_id)
        if holes:
            plan.layers.append(RotoLayerPlan(name=layer_name + "_holes", obj_id=obj_id, shapes=tuple(holes)))
    plan.width, plan.height = width, height
    if not plan.layers:
        raise ShapeDataError("the tracked objects gave no shapes (%s)" % "; ".join(plan.skipped))
    return plan
