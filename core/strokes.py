"""Brush strokes and lassos drawn in a host, turned into prompts the model understands.

SAM 2 takes clicks, boxes and masks. Artists also paint and lasso; the worker converts:

- a **brush stroke** (polyline, label 1 include / 0 exclude) becomes a few clicks spread evenly
  along it (`mode="points"`, the default: the model generalises from clicks much better than
  from a painted blob), or is painted with its radius into the object's current mask
  (`mode="mask"`: include adds to the mask, exclude cuts it away);
- a **lasso** (closed polygon) is filled into the current mask (`mode="mask"`, the default:
  include adds, exclude cuts), or gives its bounding box (`mode="box"`, include only).

Coordinates are plate pixels, x right, y down, origin at the top-left corner of the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import cv2
import numpy as np

BRUSH = "brush"
LASSO = "lasso"
KINDS = (BRUSH, LASSO)
MODES = ("points", "mask", "box")

# bounds that keep the drawing code's fixed-point coordinates and run time sane
MAX_POINTS = 100_000
MAX_COORDINATE = 1e6
MAX_RADIUS = 4096.0

# cv2 drawing works on integer coordinates; 4 fractional bits keep sub-pixel accuracy
_SHIFT = 4
_SCALE = 1 << _SHIFT


class StrokeError(ValueError):
    """A stroke or lasso that cannot become a prompt."""


@dataclass(frozen=True)
class StrokeSettings:
    """How strokes become clicks."""

    # at most this many clicks per brush stroke: a handful describes a region well,
    # many clicks along one line over-constrain the decoder
    max_clicks: int = 8
    # clicks closer than this (pixels) along the stroke are merged
    min_click_spacing: float = 6.0


@dataclass
class StrokePrompt:
    """A stroke converted to one prompt: `kind` is "points", "mask" or "box".

    points: M*2 float32 (x, y), labels: M int32 (kind "points");
    mask: H*W bool (kind "mask"); box: (x0, y0, x1, y1) (kind "box").
    """

    kind: str
    points: Optional[np.ndarray] = None
    labels: Optional[np.ndarray] = None
    mask: Optional[np.ndarray] = None
    box: Optional[tuple[float, float, float, float]] = None


def _as_polyline(points: object, *, what: str) -> np.ndarray:
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise StrokeError(f"{what} points must be numbers shaped N*2 (x, y)") from None
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
        raise StrokeError(f"{what} points must be shaped N*2 (x, y) with N >= 1, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise StrokeError(f"{what} points must be finite numbers")
    if len(arr) > MAX_POINTS:
        raise StrokeError(f"{what} has {len(arr)} points; at most {MAX_POINTS} are accepted")
    if np.abs(arr).max() > MAX_COORDINATE:
        raise StrokeError(f"{what} points lie far outside any image (|coordinate| > {MAX_COORDINATE:g})")
    return arr


def resample_polyline(points: np.ndarray, count: int) -> np.ndarray:
    """`count` points evenly spaced by arc length along a polyline, ends included.

    points: N*2; returns count*2 float64.
    """
    points = np.asarray(points, dtype=np.float64)
    if count <= 0:
        raise StrokeError("count must be positive")
    if len(points) == 1 or count == 1:
        # one click: the stroke's middle by arc length (or its only point)
        if len(points) == 1:
            return points[:1].copy()
        return resample_polyline(points, 3)[1:2]
    steps = np.linalg.norm(np.diff(points, axis=0), axis=1)
    arc = np.concatenate(([0.0], np.cumsum(steps)))
    if arc[-1] == 0:
        return points[:1].copy()
    targets = np.linspace(0.0, arc[-1], count)
    xs = np.interp(targets, arc, points[:, 0])
    ys = np.interp(targets, arc, points[:, 1])
    return np.stack([xs, ys], axis=1)


def stroke_to_clicks(points: object, *, label: int, settings: StrokeSettings = StrokeSettings()
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Clicks spread along a brush stroke: (M*2 float32 points, M int32 labels), 1 <= M <= max_clicks."""
    line = _as_polyline(points, what="brush stroke")
    if label not in (0, 1):
        raise StrokeError(f"a stroke label is 1 (include) or 0 (exclude), got {label!r}")
    length = float(np.linalg.norm(np.diff(line, axis=0), axis=1).sum()) if len(line) > 1 else 0.0
    count = int(min(settings.max_clicks, 1 + length // max(settings.min_click_spacing, 1e-6)))
    clicks = resample_polyline(line, max(count, 1)).astype(np.float32)
    return clicks, np.full(len(clicks), label, dtype=np.int32)


def _fixed_point(points: np.ndarray) -> np.ndarray:
    # pixel centres sit at integer coordinates for cv2; keep sub-pixel precision via `shift`
    return np.round((points - 0.5) * _SCALE).astype(np.int32).reshape(-1, 1, 2)


def _check_size(height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        raise StrokeError(f"image size must be positive, got {height}x{width}")


def brush_mask(points: object, radius: float, height: int, width: int) -> np.ndarray:
    """The area a round brush of `radius` pixels covers along a stroke: H*W bool."""
    _check_size(height, width)
    line = _as_polyline(points, what="brush stroke")
    if not 0 < radius <= MAX_RADIUS:
        raise StrokeError(f"brush radius must be positive and at most {MAX_RADIUS:g} pixels, got {radius!r}")
    canvas = np.zeros((height, width), dtype=np.uint8)
    fixed = _fixed_point(line)
    thickness = max(1, int(round(2 * radius)))
    if len(line) > 1:
        cv2.polylines(canvas, [fixed], isClosed=False, color=(1,), thickness=thickness, lineType=cv2.LINE_8,
                      shift=_SHIFT)
    for x, y in fixed.reshape(-1, 2):  # round caps and single dabs
        cv2.circle(canvas, (int(x), int(y)), int(round(radius * _SCALE)), color=(1,), thickness=-1,
                   lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas.astype(bool)


def lasso_mask(points: object, height: int, width: int) -> np.ndarray:
    """The inside of a closed lasso polygon: H*W bool."""
    _check_size(height, width)
    polygon = _as_polyline(points, what="lasso")
    if len(polygon) < 3:
        raise StrokeError(f"a lasso needs at least 3 points, got {len(polygon)}")
    canvas = np.zeros((height, width), dtype=np.uint8)
    cv2.fillPoly(canvas, [_fixed_point(polygon)], color=(1,), lineType=cv2.LINE_8, shift=_SHIFT)
    return canvas.astype(bool)


def lasso_box(points: object, height: int, width: int) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) of a lasso, clipped to the image."""
    _check_size(height, width)
    polygon = _as_polyline(points, what="lasso")
    x0, y0 = polygon.min(axis=0)
    x1, y1 = polygon.max(axis=0)
    x0, x1 = float(np.clip(x0, 0, width)), float(np.clip(x1, 0, width))
    y0, y1 = float(np.clip(y0, 0, height)), float(np.clip(y1, 0, height))
    if x1 <= x0 or y1 <= y0:
        raise StrokeError("the lasso's bounding box is empty inside the image")
    return x0, y0, x1, y1


def stroke_to_prompt(points: object, *, kind: str = BRUSH, label: int = 1, mode: Optional[str] = None,
                     radius: float = 8.0, height: int, width: int, current_mask: Optional[np.ndarray] = None,
                     settings: StrokeSettings = StrokeSettings()) -> StrokePrompt:
    """Convert one brush stroke or lasso to a prompt.

    points: N*2 plate pixels (x, y); current_mask: H*W bool, the object's mask on that frame
    (painting and lassos edit it; None = empty). `mode` defaults to "points" for a brush and
    "mask" for a lasso.
    """
    if kind not in KINDS:
        raise StrokeError(f"stroke kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if label not in (0, 1):
        raise StrokeError(f"a stroke label is 1 (include) or 0 (exclude), got {label!r}")
    mode = mode or ("points" if kind == BRUSH else "mask")
    if mode not in MODES:
        raise StrokeError(f"stroke mode must be one of {', '.join(MODES)}, got {mode!r}")
    if kind == BRUSH and mode == "box":
        raise StrokeError("a brush stroke converts to points or mask, not box")
    if kind == LASSO and mode == "points":
        raise StrokeError("a lasso converts to mask or box, not points")

    if mode == "points":
        clicks, labels = stroke_to_clicks(points, label=label, settings=settings)
        # a stroke may run past the plate's edge; its clicks stay on the plate (off-plate ones are refused)
        clicks = np.clip(clicks, 0, [width, height]).astype(clicks.dtype)
        return StrokePrompt(kind="points", points=clicks, labels=labels)
    if mode == "box":
        if label != 1:
            raise StrokeError("an exclude lasso cannot become a box; use mode='mask' to cut the mask")
        return StrokePrompt(kind="box", box=lasso_box(points, height, width))

    painted = brush_mask(points, radius, height, width) if kind == BRUSH else lasso_mask(points, height, width)
    if current_mask is None:
        current = np.zeros((height, width), dtype=bool)
    else:
        current = np.asarray(current_mask, dtype=bool)
        if current.shape != (height, width):
            raise StrokeError(f"current mask is {current.shape}, expected {(height, width)}")
    mask = (current | painted) if label == 1 else (current & ~painted)
    return StrokePrompt(kind="mask", mask=mask)
