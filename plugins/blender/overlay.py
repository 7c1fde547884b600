"""Draws the current frame's mask previews, clicks and box over the Clip Editor (GPU, main thread)."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import bpy
import gpu
from gpu_extras.batch import batch_for_shader

from . import controller, coords, plates
from .previews import overlay_image

_handle: Optional[Any] = None
_texture_key: Optional[Tuple[str, int, int, bool]] = None
_texture: Optional[Any] = None

POSITIVE_COLOUR = (0.2, 1.0, 0.3, 1.0)
NEGATIVE_COLOUR = (1.0, 0.2, 0.2, 1.0)
BOX_COLOUR = (1.0, 1.0, 1.0, 0.9)


def frame_rect(region: bpy.types.Region) -> coords.FrameRect:
    """Where the clip's frame is drawn in `region` (its View2D is normalised to the frame)."""
    x0, y0 = region.view2d.view_to_region(0.0, 0.0, clip=False)
    x1, y1 = region.view2d.view_to_region(1.0, 1.0, clip=False)
    return coords.FrameRect(float(x0), float(y0), float(x1), float(y1))


def _texture_for(key: str, frame: int, previews: Dict[int, Dict[str, Any]], clip: bpy.types.MovieClip) -> Any:
    global _texture, _texture_key
    wanted = (key, frame, controller.runtime.overlay_version, bool(clip.samroto.show_before))
    if _texture_key == wanted:
        return _texture
    colours = {item.obj_id: tuple(item.color) for item in clip.samroto.objects}
    layers = [(p, colours.get(o, (1.0, 0.4, 0.2))) for o, p in sorted(previews.items())]
    image = overlay_image(layers)
    buffer = gpu.types.Buffer("FLOAT", image.width * image.height * 4, image.rgba.ravel())
    _texture = gpu.types.GPUTexture((image.width, image.height), format="RGBA16F", data=buffer)
    _texture_key = wanted
    return _texture


def _draw_quad(texture: Any, rect: coords.FrameRect) -> None:
    shader = gpu.shader.from_builtin("IMAGE")
    batch = batch_for_shader(shader, "TRI_FAN", {
        "pos": ((rect.x0, rect.y0), (rect.x1, rect.y0), (rect.x1, rect.y1), (rect.x0, rect.y1)),
        "texCoord": ((0, 0), (1, 0), (1, 1), (0, 1)),
    })
    shader.bind()
    shader.uniform_sampler("image", texture)
    batch.draw(shader)


def _draw_lines(points: List[Tuple[float, float]], colour: Tuple[float, ...]) -> None:
    shader = gpu.shader.from_builtin("UNIFORM_COLOR")
    batch = batch_for_shader(shader, "LINES", {"pos": points})
    shader.uniform_float("color", colour)
    batch.draw(shader)


def _draw_box(corners: Tuple[float, float, float, float], colour: Tuple[float, ...]) -> None:
    x0, y0, x1, y1 = corners
    _draw_lines([(x0, y0), (x1, y0), (x1, y0), (x1, y1), (x1, y1), (x0, y1), (x0, y1), (x0, y0)], colour)


def _draw_points(points: List[Tuple[float, float]], colour: Tuple[float, ...]) -> None:
    if not points:
        return
    shader = gpu.shader.from_builtin("UNIFORM_COLOR")
    gpu.state.point_size_set(9.0)
    batch = batch_for_shader(shader, "POINTS", {"pos": points})
    shader.uniform_float("color", colour)
    batch.draw(shader)


def draw() -> None:
    context = bpy.context
    space = context.space_data
    clip = getattr(space, "clip", None)
    region = context.region
    if clip is None or region is None or region.type != "WINDOW" or not clip.samroto.key:
        return
    try:
        rect = frame_rect(region)
        frame = controller.plate_frame(clip, context.scene.frame_current)
    except (ValueError, plates.PlateError):
        return
    width, height = clip.size
    if width <= 0 or height <= 0:
        return
    key = clip.samroto.key
    gpu.state.blend_set("ALPHA")
    try:
        previews = controller.shown_previews(clip, frame)  # the frame's previous result in "before"
        if previews:
            _draw_quad(_texture_for(key, frame, previews, clip), rect)
        book = controller.prompt_book(clip)
        for obj_id, prompt in book.on_frame(frame).items():
            to_region = [coords.clip_pixels_to_region(x, y, rect, width, height) for x, y in prompt.points]
            _draw_points([p for p, label in zip(to_region, prompt.labels) if label], POSITIVE_COLOUR)
            _draw_points([p for p, label in zip(to_region, prompt.labels) if not label], NEGATIVE_COLOUR)
            if prompt.box is not None:
                a = coords.clip_pixels_to_region(prompt.box[0], prompt.box[1], rect, width, height)
                b = coords.clip_pixels_to_region(prompt.box[2], prompt.box[3], rect, width, height)
                _draw_box((a[0], a[1], b[0], b[1]), BOX_COLOUR)
        if controller.runtime.drag_box is not None:
            _draw_box(controller.runtime.drag_box, BOX_COLOUR)
        path = controller.runtime.drag_path
        if len(path) > 1:
            _draw_lines([p for a, b in zip(path, path[1:]) for p in (a, b)], BOX_COLOUR)
    finally:
        gpu.state.blend_set("NONE")


def register() -> None:
    global _handle
    if _handle is None:
        _handle = bpy.types.SpaceClipEditor.draw_handler_add(draw, (), "WINDOW", "POST_PIXEL")


def unregister() -> None:
    global _handle, _texture, _texture_key
    if _handle is not None:
        bpy.types.SpaceClipEditor.draw_handler_remove(_handle, "WINDOW")
        _handle = None
    _texture = None
    _texture_key = None
