"""Write a `keyframes.LayerPlan` into a Blender Mask datablock (main thread only).

Each object is one layer; each shape track one closed spline with a fixed point count, keyed
on every tracked frame through ID-relative F-curves (`mask.keyframe_insert('layers["obj"]...')`:
keyframing the point itself fails). Rebuilding an object replaces its layer and its F-curves
and leaves the other layers (and any hand edits on them) alone.
"""

from __future__ import annotations

from typing import Any, Iterator, List

import bpy

from .keyframes import LayerPlan, point_data_path

KEYED_PROPERTIES = ("co", "handle_left", "handle_right")


def ensure_mask(name: str, *, frame_start: int, frame_end: int) -> bpy.types.Mask:
    mask = bpy.data.masks.get(name)
    if mask is None:
        mask = bpy.data.masks.new(name)
    mask.frame_start = min(frame_start, frame_end)
    mask.frame_end = max(frame_start, frame_end)
    return mask


def _fcurve_collections(id_data: Any) -> Iterator[Any]:
    """The F-curve collections animating `id_data`: the slot's channel bags on layered actions
    (Blender 4.4+, the only kind in 5.0), else the legacy `action.fcurves` (4.2, 4.3)."""
    anim = id_data.animation_data
    action = anim.action if anim is not None else None
    if action is None:
        return
    layers = getattr(action, "layers", None)
    if layers is not None and len(layers) > 0:
        slot = getattr(anim, "action_slot", None)
        for layer in layers:
            for strip in layer.strips:
                bag = strip.channelbag(slot) if slot is not None else None
                if bag is not None:
                    yield bag.fcurves
        return
    legacy = getattr(action, "fcurves", None)
    if legacy is not None:
        yield legacy


def layer_fcurves(mask: bpy.types.Mask, layer_name: str) -> List[Any]:
    """Every F-curve whose path starts in the layer (tests and cleanup use it)."""
    prefix = point_data_path(layer_name, 0, 0, "co").split(".splines[", 1)[0] + "."
    return [fc for curves in _fcurve_collections(mask) for fc in curves if fc.data_path.startswith(prefix)]


def remove_layer(mask: bpy.types.Mask, layer_name: str) -> bool:
    """Remove a layer and its F-curves; False if there was no such layer."""
    prefix = point_data_path(layer_name, 0, 0, "co").split(".splines[", 1)[0] + "."
    for curves in list(_fcurve_collections(mask)):
        for fcurve in [fc for fc in curves if fc.data_path.startswith(prefix)]:
            curves.remove(fcurve)
    layer = mask.layers.get(layer_name)
    if layer is None:
        return False
    mask.layers.remove(layer)
    return True


def apply_layer(mask: bpy.types.Mask, plan: LayerPlan) -> bpy.types.MaskLayer:
    """(Re)build the plan's layer: one cyclic filled spline per track, keyed on its frames."""
    remove_layer(mask, plan.name)
    layer = mask.layers.new(name=plan.name)
    layer.use_fill_holes = True  # holes are tracks of their own, combined even-odd like the worker's masks
    layer_name = layer.name
    for spline_index, spline_plan in enumerate(plan.splines):
        spline = layer.splines.new()  # holds one point already
        if spline_plan.point_count > 1:
            spline.points.add(spline_plan.point_count - 1)
        spline.use_cyclic = True
        spline.use_fill = True
        points = spline.points
        for point, corner in zip(points, spline_plan.corners):
            point.handle_type = "FREE" if corner else "ALIGNED"
        paths = [[point_data_path(layer_name, spline_index, i, prop) for prop in KEYED_PROPERTIES]
                 for i in range(spline_plan.point_count)]
        for key in spline_plan.keys:
            for i, point in enumerate(points):
                point.co = key.points[i]
                point.handle_left = key.handles_left[i]
                point.handle_right = key.handles_right[i]
                for path in paths[i]:
                    mask.keyframe_insert(path, frame=key.frame)
    mask.layers.active = layer
    return layer
