"""Write a `keyframes.LayerPlan` into a Blender Mask the way Blender keeps mask animation (main thread).

Each object is one layer; each shape track one closed spline with a fixed point count. The
animation is the layer's **shape keys** (what Blender's own Insert Shape Key, Clear Shape Key,
the Dope Sheet's Mask mode and auto-keying work on), one per keyed frame, written with Blender's
own operator (`mask.shape_key_insert`, in a Movie Clip Editor in mask mode: one is borrowed for
the time of a chunk when none is open).

A build is a `Build`: a generator of small steps that a timer runs a few milliseconds at a time
(`step(budget)`), so Blender stays responsive, with `progress` and `cancel()`. It writes a new
layer next to the old one and swaps them at the end (a cancelled build leaves the old one).

Layers are identified by the Mask's custom properties, not by their names (an artist may rename
them): `samroto_layer_objects` lists the object id of each layer by index, and
`samroto_written` keeps, per object, the frames the add-on keyed and a fingerprint of each shape
it wrote there. A frame whose shape no longer matches its fingerprint was edited by an artist:
a rebuild keeps that shape (when the splines still have the same point counts) and the add-on
offers it back to the worker as a correction (`edited_frames`, `layer_shapes`).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

import bpy

from .keyframes import FINGERPRINT_TOLERANCE, LayerPlan, SplineShape, layer_shape_keys, shape_fingerprint

_END = object()
LAYER_OBJECTS = "samroto_layer_objects"
LAYER_NAMES = "samroto_layer_names"
WRITTEN = "samroto_written"


def ensure_mask(name: str, *, frame_start: int, frame_end: int) -> bpy.types.Mask:
    mask = bpy.data.masks.get(name)
    if mask is None:
        mask = bpy.data.masks.new(name)
    mask.frame_start = min(frame_start, frame_end)
    mask.frame_end = max(frame_start, frame_end)
    return mask


# ---------------------------------------------------------------------------------------------
# Layer identity


def _layer_objects(mask: bpy.types.Mask) -> List[int]:
    return [int(v) for v in mask.get(LAYER_OBJECTS, [])]


def _record_layers(mask: bpy.types.Mask, objects: List[int]) -> None:
    mask[LAYER_OBJECTS] = [int(v) for v in objects]
    mask[LAYER_NAMES] = [layer.name for layer in mask.layers]


def find_layer(mask: bpy.types.Mask, obj_id: int) -> Optional[bpy.types.MaskLayer]:
    """The object's layer, by the recorded layer order (renaming a layer keeps it); when layers
    were added or removed by hand, by the name it had when the add-on last wrote it."""
    objects = _layer_objects(mask)
    names = [str(n) for n in mask.get(LAYER_NAMES, [])]
    if obj_id not in objects:
        return None
    index = objects.index(obj_id)
    if len(objects) == len(mask.layers):
        return mask.layers[index]
    if index < len(names):
        return mask.layers.get(names[index])
    return None


def object_of_layer(mask: bpy.types.Mask, layer: bpy.types.MaskLayer) -> Optional[int]:
    """The object id the add-on wrote into `layer`, or None for a layer it did not make."""
    for obj_id in _layer_objects(mask):
        if find_layer(mask, obj_id) == layer:
            return obj_id
    return None


def _layers_by_object(mask: bpy.types.Mask) -> Dict[int, bpy.types.MaskLayer]:
    out: Dict[int, bpy.types.MaskLayer] = {}
    for obj_id in _layer_objects(mask):
        layer = find_layer(mask, obj_id)
        if layer is not None:
            out[obj_id] = layer
    return out


def _rerecord(mask: bpy.types.Mask, known: Dict[int, str]) -> None:
    """Record the current layer order from obj_id -> layer name."""
    by_name = {name: obj_id for obj_id, name in known.items()}
    _record_layers(mask, [by_name.get(layer.name, 0) for layer in mask.layers])


def remove_layer(mask: bpy.types.Mask, obj_id: int) -> bool:
    """Remove the object's layer (shape keys go with it); False if it has none."""
    known = {o: layer.name for o, layer in _layers_by_object(mask).items()}
    name = known.pop(obj_id, None)
    written = dict(mask.get(WRITTEN, {}))
    written.pop(str(obj_id), None)
    mask[WRITTEN] = written
    if name is None or mask.layers.get(name) is None:
        return False
    mask.layers.remove(mask.layers[name])
    _rerecord(mask, known)
    return True


# ---------------------------------------------------------------------------------------------
# Reading shapes, finding the artist's edits


def layer_shapes(layer: bpy.types.MaskLayer) -> List[SplineShape]:
    """The layer's splines as they are now (Blender evaluates the shape keys on frame change)."""
    return [([tuple(p.co) for p in s.points], [tuple(p.handle_left) for p in s.points],
             [tuple(p.handle_right) for p in s.points]) for s in layer.splines]


def _frame_set(scene: bpy.types.Scene, frame: int) -> None:
    if scene.frame_current != frame:
        scene.frame_set(frame)
    else:
        scene.frame_set(frame)  # evaluates the mask animation on this frame too


def edited_frames(mask: bpy.types.Mask, obj_id: int, scene: bpy.types.Scene) -> Dict[int, List[SplineShape]]:
    """Frames whose shape differs from what the add-on wrote there -> the shape now (the scene
    comes back to its frame)."""
    layer = find_layer(mask, obj_id)
    record = mask.get(WRITTEN, {}).get(str(obj_id))
    if layer is None or record is None:
        return {}
    frames, sums = [int(f) for f in record["frames"]], [float(v) for v in record["sums"]]
    current = scene.frame_current
    out: Dict[int, List[SplineShape]] = {}
    try:
        for frame, expected in zip(frames, sums):
            _frame_set(scene, frame)
            shapes = layer_shapes(layer)
            if abs(shape_fingerprint(shapes) - expected) > FINGERPRINT_TOLERANCE:
                out[frame] = shapes
    finally:
        scene.frame_set(current)
    return out


# ---------------------------------------------------------------------------------------------
# The Movie Clip Editor the shape key operator needs


@contextlib.contextmanager
def mask_editor(clip: bpy.types.MovieClip, mask: bpy.types.Mask) -> Iterator[Dict[str, Any]]:
    """A context override for mask operators: a Clip Editor in mask mode showing `clip` and `mask`.
    A Clip Editor already showing the clip is switched to the mask for good (that is where the
    artist looks at it); another one, or a borrowed area, gets its settings back afterwards."""
    wm = bpy.context.window_manager
    windows = [bpy.context.window] if bpy.context.window is not None else list(wm.windows)
    if not windows:
        raise RuntimeError("Blender has no window to edit the mask in")
    areas = [(w, a) for w in windows for a in w.screen.areas if a.type == "CLIP_EDITOR"]
    showing = [(w, a) for w, a in areas if a.spaces.active.clip == clip]
    window, area = (showing or areas or [(windows[0], windows[0].screen.areas[0])])[0]
    borrowed_type = None
    if area.type != "CLIP_EDITOR":
        borrowed_type = area.ui_type
        area.type = "CLIP_EDITOR"
    space = next(s for s in area.spaces if s.type == "CLIP_EDITOR")
    saved = None if showing else (space.clip, space.mode, space.mask)
    region = next(r for r in area.regions if r.type == "WINDOW")
    try:
        space.clip = clip
        space.mode = "MASK"
        space.mask = mask
        yield {"window": window, "screen": window.screen, "area": area, "region": region, "space_data": space}
    finally:
        if borrowed_type is not None:
            area.ui_type = borrowed_type
        elif saved is not None:
            space.clip, space.mode = saved[0], saved[1]
            if saved[2] is not None:
                space.mask = saved[2]


# ---------------------------------------------------------------------------------------------
# Building


def _write_shapes(layer: bpy.types.MaskLayer, shapes: List[SplineShape]) -> None:
    for spline, (points, left, right) in zip(layer.splines, shapes):
        for point, co, hl, hr in zip(spline.points, points, left, right):
            point.co = co
            point.handle_left = hl
            point.handle_right = hr


def _insert_key(frame: int) -> None:
    if "FINISHED" not in bpy.ops.mask.shape_key_insert():
        raise RuntimeError("Blender did not insert the shape key on frame %d" % frame)


def _compatible(layer_shapes_now: List[SplineShape], plan: LayerPlan) -> bool:
    return [len(s[0]) for s in layer_shapes_now] == [s.point_count for s in plan.splines]


class Build:
    """Chunked (re)build of object layers in one Mask: `step(budget)` until `finished`.

    plans: (obj_id, LayerPlan) per object; the layer keeps an existing layer's name (an artist's
    rename) and the shapes of frames an artist edited."""

    def __init__(self, clip: bpy.types.MovieClip, mask: bpy.types.Mask, plans: List[Tuple[int, LayerPlan]],
                 scene: bpy.types.Scene) -> None:
        self.clip, self.mask, self.scene = clip, mask, scene
        self.plans = plans
        self.total = sum(len(plan.keyed_frames) for _, plan in plans)
        self.done = 0
        self.state = "running"  # running | done | cancelled | failed
        self.error = ""
        self.kept: Dict[int, List[int]] = {}  # obj_id -> edited frames whose shapes were kept
        self.lost: Dict[int, List[int]] = {}  # obj_id -> edited frames that could not be kept
        self.layers: Dict[int, str] = {}  # obj_id -> layer name, when done
        self._partial: Optional[str] = None
        self._steps = self._run()

    @property
    def finished(self) -> bool:
        return self.state != "running"

    @property
    def progress(self) -> Tuple[int, int]:
        return self.done, self.total

    def cancel(self) -> None:
        if self.state == "running":
            self.state = "cancelled"
            self._drop_partial()

    def _drop_partial(self) -> None:
        if self._partial is not None and self.mask.layers.get(self._partial) is not None:
            self.mask.layers.remove(self.mask.layers[self._partial])
        self._partial = None

    def step(self, budget: float = 0.02) -> bool:
        """Work for about `budget` seconds; True when finished."""
        if self.finished:
            return True
        deadline = time.monotonic() + budget
        current = self.scene.frame_current
        try:
            with mask_editor(self.clip, self.mask) as override, bpy.context.temp_override(**override):
                while time.monotonic() < deadline:
                    if next(self._steps, _END) is _END:
                        self.state = "done"
                        break
        except Exception as exc:  # reported to the artist; the old layers stay
            self.state = "failed"
            self.error = str(exc)
            self._drop_partial()
        finally:
            self.scene.frame_set(current)
        return self.finished

    def run_all(self) -> "Build":
        while not self.step(1.0):
            pass
        return self

    def _run(self) -> Iterator[None]:
        mask = self.mask
        for obj_id, plan in self.plans:
            old = find_layer(mask, obj_id)
            edits = edited_frames(mask, obj_id, self.scene) if old is not None else {}
            keep = {f: s for f, s in edits.items() if _compatible(s, plan)}
            self.lost[obj_id] = sorted(set(edits) - set(keep))
            self.kept[obj_id] = sorted(keep)
            layer = mask.layers.new(name=plan.name + " (building)")
            self._partial = layer.name
            layer.use_fill_holes = True  # holes are splines of their own, even-odd like the worker's masks
            for spline_plan in plan.splines:
                spline = layer.splines.new()  # holds one point already
                if spline_plan.point_count > 1:
                    spline.points.add(spline_plan.point_count - 1)
                spline.use_cyclic = True
                spline.use_fill = True
                for point, corner in zip(spline.points, spline_plan.corners):
                    point.handle_type = "FREE" if corner else "ALIGNED"
            # the shape key operator keys every visible layer with selected points: only this one
            for other in mask.layers:
                for spline in other.splines:
                    for point in spline.points:
                        point.select = other == layer
            mask.layers.active = layer
            frames: List[int] = []
            sums: List[float] = []
            for frame, shapes in layer_shape_keys(plan):
                self.scene.frame_set(frame)
                _write_shapes(layer, shapes)
                _insert_key(frame)
                # the worker's shape as Blender keeps it (float32, aligned handles): a kept edit stays an edit
                sums.append(shape_fingerprint(layer_shapes(layer)))
                if frame in keep:
                    _write_shapes(layer, keep[frame])
                    _insert_key(frame)
                frames.append(frame)
                self.done += 1
                yield None
            known = {o: lay.name for o, lay in _layers_by_object(mask).items()}
            name = plan.name
            if old is not None:
                name = old.name
                mask.layers.remove(old)
            layer.name = name
            self._partial = None
            known[obj_id] = layer.name
            _rerecord(mask, known)
            written = dict(mask.get(WRITTEN, {}))
            written[str(obj_id)] = {"frames": frames, "sums": sums}
            mask[WRITTEN] = written
            self.layers[obj_id] = layer.name
            yield None
