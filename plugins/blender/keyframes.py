"""From the worker's shape tracks to a keyframe plan for one Mask layer. No bpy.

The worker's `get_shapes` answers with one dict per shape track (`samroto.core.outputs.shapes.
shape_tracks_to_wire`): `kind` ("outer" | "island" | "hole"), `frames` (plate frames, one key
each, a contiguous run), `corners` (P bools), and `points`, `handles_in`, `handles_out` (F lists
of P [x, y] pairs, absolute positions). Each track becomes one closed spline of the object's
layer, with the same P points on every key; `handles_in` is Blender's left handle and
`handles_out` its right one.

A track exists only on its run of frames (the part was not there before or after). Blender
splines cannot be hidden per frame, so on the frame before the run and the frame after it (when
those frames are in the clip) the plan adds a *collapsed* key: every point and handle at the
shape's centre, which draws and renders nothing, and holds until the next key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .coords import pixels_to_mask

Point = Tuple[float, float]

KINDS = ("outer", "island", "hole")
SPACES = ("pixel", "blender")


class ShapeDataError(ValueError):
    """A shape track from the worker is malformed; the message names the track and field."""


@dataclass
class SplineKey:
    """One key of a spline: a scene frame and P positions each for points and handles (Mask space)."""

    frame: int
    points: List[Point]
    handles_left: List[Point]
    handles_right: List[Point]
    collapsed: bool = False


@dataclass
class SplinePlan:
    """One closed spline: its kind, which points are corners, and its keys in frame order."""

    kind: str
    corners: List[bool]
    keys: List[SplineKey]

    @property
    def point_count(self) -> int:
        return len(self.corners)

    @property
    def tracked_frames(self) -> List[int]:
        """Scene frames with a real (not collapsed) key."""
        return [k.frame for k in self.keys if not k.collapsed]


@dataclass
class LayerPlan:
    """Everything to build one object's Mask layer."""

    name: str
    splines: List[SplinePlan] = field(default_factory=list)

    @property
    def keyed_frames(self) -> List[int]:
        return sorted({k.frame for s in self.splines for k in s.keys})

    @property
    def tracked_frames(self) -> List[int]:
        return sorted({f for s in self.splines for f in s.tracked_frames})


def _pairs(value: Any, frames: int, points: int, where: str) -> List[List[Point]]:
    if not isinstance(value, (list, tuple)) or len(value) != frames:
        raise ShapeDataError("%s must hold one list per frame (%d), got %s" % (
            where, frames, "%d" % len(value) if isinstance(value, (list, tuple)) else type(value).__name__))
    out: List[List[Point]] = []
    for f, row in enumerate(value):
        if not isinstance(row, (list, tuple)) or len(row) != points:
            raise ShapeDataError("%s[%d] must hold %d points (the same count on every frame), got %s" % (
                where, f, points, len(row) if isinstance(row, (list, tuple)) else type(row).__name__))
        try:
            out.append([(float(p[0]), float(p[1])) for p in row])
        except (TypeError, ValueError, IndexError):
            raise ShapeDataError("%s[%d] must hold [x, y] number pairs" % (where, f)) from None
    return out


def _centre(points: Sequence[Point]) -> Point:
    return (sum(p[0] for p in points) / len(points), sum(p[1] for p in points) / len(points))


def plan_spline(track: Dict[str, Any], *, index: int, to_scene: Callable[[int], int], width: int, height: int,
                pixel_aspect: float = 1.0, scene_range: Optional[Tuple[int, int]] = None) -> SplinePlan:
    """One track dict (pixel or Blender space) -> its spline plan on scene frames, in Mask space."""
    where = "shape track %d" % index
    if not isinstance(track, dict):
        raise ShapeDataError("%s must be a dict, got %s" % (where, type(track).__name__))
    kind = track.get("kind")
    if kind not in KINDS:
        raise ShapeDataError("%s: kind must be one of %s, got %r" % (where, ", ".join(KINDS), kind))
    space = track.get("space", "pixel")
    if space not in SPACES:
        raise ShapeDataError("%s: space must be 'pixel' or 'blender' for a Blender mask, got %r" % (where, space))
    frames = track.get("frames")
    if not isinstance(frames, list) or not frames or not all(isinstance(f, int) for f in frames):
        raise ShapeDataError("%s: frames must be a non-empty list of frame numbers" % where)
    if any(b <= a for a, b in zip(frames, frames[1:])):
        raise ShapeDataError("%s: frames must be strictly increasing" % where)
    corners = track.get("corners")
    if not isinstance(corners, list) or not corners:
        raise ShapeDataError("%s: corners must be a non-empty list (one bool per point)" % where)
    count = len(corners)
    arrays = {name: _pairs(track.get(name), len(frames), count, "%s.%s" % (where, name))
              for name in ("points", "handles_in", "handles_out")}

    def convert(row: List[Point]) -> List[Point]:
        return row if space == "blender" else pixels_to_mask(row, width, height, pixel_aspect=pixel_aspect)

    keys: List[SplineKey] = []
    for f, frame in enumerate(frames):
        keys.append(SplineKey(to_scene(frame), convert(arrays["points"][f]), convert(arrays["handles_in"][f]),
                              convert(arrays["handles_out"][f])))
    lo, hi = scene_range if scene_range is not None else (None, None)
    first, last = keys[0], keys[-1]
    if lo is None or first.frame - 1 >= lo:
        centre = _centre(first.points)
        keys.insert(0, SplineKey(first.frame - 1, [centre] * count, [centre] * count, [centre] * count, True))
    if hi is None or last.frame + 1 <= hi:
        centre = _centre(last.points)
        keys.append(SplineKey(last.frame + 1, [centre] * count, [centre] * count, [centre] * count, True))
    return SplinePlan(str(kind), [bool(c) for c in corners], keys)


def plan_layer(name: str, tracks: Sequence[Dict[str, Any]], *, to_scene: Callable[[int], int], width: int,
               height: int, pixel_aspect: float = 1.0,
               scene_range: Optional[Tuple[int, int]] = None) -> LayerPlan:
    """All of one object's tracks -> the plan of its Mask layer (one spline per track).

    to_scene: plate frame -> scene frame; width/height: the plate size in pixels (for pixel-space
    tracks); scene_range: the clip's first and last scene frame (collapsed keys stay inside it).
    """
    if not name:
        raise ShapeDataError("the layer needs a name")
    if not isinstance(tracks, (list, tuple)):
        raise ShapeDataError("shapes must be a list of track dicts, got %s" % type(tracks).__name__)
    return LayerPlan(name, [plan_spline(t, index=i, to_scene=to_scene, width=width, height=height,
                                        pixel_aspect=pixel_aspect, scene_range=scene_range)
                            for i, t in enumerate(tracks)])


def point_data_path(layer: str, spline: int, point: int, prop: str) -> str:
    """The Mask-relative path to keyframe (keyframing on the point itself fails in Blender)."""
    quoted = layer.replace("\\", "\\\\").replace('"', '\\"')
    return 'layers["%s"].splines[%d].points[%d].%s' % (quoted, spline, point, prop)


SplineShape = Tuple[List[Point], List[Point], List[Point]]  # points, left handles, right handles


def _key_shape(key: SplineKey) -> SplineShape:
    return list(key.points), list(key.handles_left), list(key.handles_right)


def _lerp(a: List[Point], b: List[Point], t: float) -> List[Point]:
    return [(p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t) for p, q in zip(a, b)]


def spline_shape_at(spline: SplinePlan, frame: int) -> SplineShape:
    """The spline on any frame: its key there, linear between keys, held before the first and after the last."""
    keys = spline.keys
    if frame <= keys[0].frame:
        return _key_shape(keys[0])
    for a, b in zip(keys, keys[1:]):
        if a.frame <= frame <= b.frame:
            if frame == a.frame:
                return _key_shape(a)
            t = (frame - a.frame) / float(b.frame - a.frame)
            return (_lerp(a.points, b.points, t), _lerp(a.handles_left, b.handles_left, t),
                    _lerp(a.handles_right, b.handles_right, t))
    return _key_shape(keys[-1])


def layer_shape_keys(plan: LayerPlan) -> List[Tuple[int, List[SplineShape]]]:
    """The layer's shape keys: Blender keys a Mask layer as a whole (every spline on each key),
    so each keyed frame of any spline gets every spline's shape on that frame."""
    return [(frame, [spline_shape_at(s, frame) for s in plan.splines]) for frame in plan.keyed_frames]


def shape_fingerprint(shapes: Sequence[SplineShape]) -> float:
    """One number that changes when any point or handle of the layer moves (to find the frames an
    artist edited since the add-on wrote them)."""
    total = 0.0
    for s, (points, left, right) in enumerate(shapes):
        for i, (p, hl, hr) in enumerate(zip(points, left, right)):
            w = float((s + 1) * 1000 + i + 1)
            total += w * (p[0] + 2.0 * p[1] + 3.0 * hl[0] + 5.0 * hl[1] + 7.0 * hr[0] + 11.0 * hr[1])
    return total


FINGERPRINT_TOLERANCE = 1e-6
