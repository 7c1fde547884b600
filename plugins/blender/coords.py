"""Coordinates in the Movie Clip Editor: region pixels, clip pixels and Mask space. No bpy.

Three spaces meet here:

- **Region pixels**: mouse positions in the Clip Editor's main region (`event.mouse_region_x/y`),
  origin at the region's bottom-left, y up.
- **Clip pixels** (what the worker takes for clicks and boxes): the plate's pixel grid, origin at
  the top-left corner of the top-left pixel, x right, y down; a W*H clip spans [0, W] x [0, H].
- **Mask space** (Blender Mask datablocks): the frame normalised to 0..1 with y up, then the
  short axis squeezed about 0.5 so that a unit in x and y is the same length on screen
  (Blender's `BKE_mask_coord_from_frame`).

The Clip Editor draws the frame into a rectangle of the region; `FrameRect` is that rectangle
(the operator reads it with `region.view2d.view_to_region` on the frame's corners, because the
editor's View2D is normalised to the frame: (0, 0) bottom-left, (1, 1) top-right).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Sequence, Tuple

Point = Tuple[float, float]
Box = Tuple[float, float, float, float]

MIN_BOX_SIDE = 2.0
"""Boxes thinner than this many clip pixels are treated as clicks."""
DRAG_THRESHOLD = 6.0
"""A press and release further apart than this many region pixels is a drag (a box)."""


@dataclass(frozen=True)
class FrameRect:
    """Where the clip's frame is drawn in the region: region pixels of its bottom-left
    (x0, y0) and top-right (x1, y1) corners."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        if not (self.x1 > self.x0 and self.y1 > self.y0):
            raise ValueError("the frame rectangle is empty or flipped: (%g, %g)-(%g, %g)"
                             % (self.x0, self.y0, self.x1, self.y1))


def region_to_clip_pixels(x: float, y: float, rect: FrameRect, width: int, height: int) -> Point:
    """A region position -> clip pixels (may fall outside the frame; see `inside_frame`)."""
    _check_size(width, height)
    u = (x - rect.x0) / (rect.x1 - rect.x0)
    v = (y - rect.y0) / (rect.y1 - rect.y0)
    return view_to_clip_pixels(u, v, width, height)


def clip_pixels_to_region(x: float, y: float, rect: FrameRect, width: int, height: int) -> Point:
    """Clip pixels -> region position (to draw clicks and boxes over the frame)."""
    u, v = clip_pixels_to_view(x, y, width, height)
    return rect.x0 + u * (rect.x1 - rect.x0), rect.y0 + v * (rect.y1 - rect.y0)


def view_to_clip_pixels(u: float, v: float, width: int, height: int) -> Point:
    """Normalised frame coordinates (0..1, y up) -> clip pixels (y down)."""
    _check_size(width, height)
    return u * width, (1.0 - v) * height


def clip_pixels_to_view(x: float, y: float, width: int, height: int) -> Point:
    """Inverse of `view_to_clip_pixels`."""
    _check_size(width, height)
    return x / width, 1.0 - y / height


def inside_frame(x: float, y: float, width: int, height: int) -> bool:
    """Whether a clip-pixel position lies on the frame (edges included)."""
    return 0.0 <= x <= width and 0.0 <= y <= height


def is_drag(press: Point, release: Point, threshold: float = DRAG_THRESHOLD) -> bool:
    """Whether the mouse moved far enough between press and release to mean a box."""
    return abs(release[0] - press[0]) > threshold or abs(release[1] - press[1]) > threshold


def box_from_corners(a: Point, b: Point, width: int, height: int) -> Box:
    """A box (x0, y0, x1, y1), x0 < x1 and y0 < y1, from two dragged corners in clip pixels,
    clipped to the frame. ValueError when the clipped box is thinner than `MIN_BOX_SIDE`."""
    _check_size(width, height)
    x0, x1 = sorted((min(max(a[0], 0.0), width), min(max(b[0], 0.0), width)))
    y0, y1 = sorted((min(max(a[1], 0.0), height), min(max(b[1], 0.0), height)))
    if x1 - x0 < MIN_BOX_SIDE or y1 - y0 < MIN_BOX_SIDE:
        raise ValueError("the box %.1fx%.1f pixels is too small or outside the frame" % (x1 - x0, y1 - y0))
    return x0, y0, x1, y1


@dataclass(frozen=True)
class Gesture:
    """What a press and release over the frame mean: an include/exclude click at `point`, or a
    `box`, both in clip pixels."""

    kind: str  # "click" | "box"
    point: Point = (0.0, 0.0)
    positive: bool = True
    box: Box = (0.0, 0.0, 0.0, 0.0)


def gesture(press: Point, release: Point, rect: FrameRect, width: int, height: int, *,
            negative: bool = False) -> Gesture:
    """Region positions of a mouse press and release -> a click or a box on the clip.

    ValueError (with a message for the artist) for a click off the frame or a box that is too small.
    """
    if is_drag(press, release):
        a = region_to_clip_pixels(press[0], press[1], rect, width, height)
        b = region_to_clip_pixels(release[0], release[1], rect, width, height)
        return Gesture("box", box=box_from_corners(a, b, width, height))
    x, y = region_to_clip_pixels(release[0], release[1], rect, width, height)
    if not inside_frame(x, y, width, height):
        raise ValueError("Click on the frame: (%.0f, %.0f) is outside the %dx%d clip" % (x, y, width, height))
    return Gesture("click", point=(x, y), positive=not negative)


def pixels_to_mask(points: Sequence[Sequence[float]], width: int, height: int, *,
                   pixel_aspect: float = 1.0) -> List[Point]:
    """Clip-pixel positions (P*2) -> Mask space.

    `pixel_aspect` is the clip's display aspect x / y (Blender scales the frame height by
    y / x before normalising). 1920x1080: (0, 0) -> (0, 0.78125), (960, 540) -> (0.5, 0.5).
    """
    _check_size(width, height)
    if not pixel_aspect > 0:
        raise ValueError("pixel_aspect must be positive, got %r" % (pixel_aspect,))
    frame_w, frame_h = float(width), float(height) / float(pixel_aspect)
    out: List[Point] = []
    for point in points:
        u = float(point[0]) / width
        v = 1.0 - float(point[1]) / height
        if frame_w > frame_h:
            v = (v - 0.5) * (frame_h / frame_w) + 0.5
        elif frame_h > frame_w:
            u = (u - 0.5) * (frame_w / frame_h) + 0.5
        out.append((u, v))
    return out


def _check_size(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise ValueError("the clip size must be positive, got %dx%d" % (width, height))


def mask_to_pixels(points: Any, width: int, height: int, *,
                   pixel_aspect: float = 1.0) -> List[Point]:
    """Inverse of `pixels_to_mask`: Mask-space positions -> clip pixels (x right, y down)."""
    _check_size(width, height)
    if not pixel_aspect > 0:
        raise ValueError("pixel_aspect must be positive, got %r" % (pixel_aspect,))
    frame_w, frame_h = float(width), float(height) / float(pixel_aspect)
    out: List[Point] = []
    for point in points:
        u, v = float(point[0]), float(point[1])
        if frame_w > frame_h:
            v = (v - 0.5) * (frame_w / frame_h) + 0.5
        elif frame_h > frame_w:
            u = (u - 0.5) * (frame_h / frame_w) + 0.5
        out.append((u * width, (1.0 - v) * height))
    return out


def stroke_to_clip_pixels(path: Sequence[Point], rect: FrameRect, width: int, height: int) -> List[Point]:
    """A brush or lasso path in region pixels -> clip pixels, consecutive duplicates dropped.
    ValueError when the path is too short or never touches the frame."""
    out: List[Point] = []
    for x, y in path:
        point = region_to_clip_pixels(x, y, rect, width, height)
        if not out or point != out[-1]:
            out.append(point)
    if len(out) < 2:
        raise ValueError("Drag to draw a stroke or lasso (a click alone is not one)")
    if not any(inside_frame(x, y, width, height) for x, y in out):
        raise ValueError("The stroke is outside the %dx%d clip" % (width, height))
    return out
