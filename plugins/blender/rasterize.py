"""Mask splines -> a mask image, for sending an artist's edited shape back as a prompt. No bpy.

A Blender Mask layer is a set of closed cubic Bezier splines (point, left and right handle per
point). `spline_polygon` flattens one spline into a polygon; `fill_polygons` fills polygons
even-odd (a spline inside another is a hole, as in a layer with "Fill Holes"), sampling each
pixel at its centre; `encode_rle` gives the run-length form the worker's sidecars use.

Uses numpy (Blender always ships it).
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Tuple

import numpy as np

Point = Tuple[float, float]

SAMPLES_PER_SEGMENT = 16
"""Line pieces per Bezier segment: under a tenth of a pixel off for segments up to ~100 px."""
MAX_SIZE = 1 << 15
"""Largest side of a mask image the add-on rasterises."""


def _bezier(p0: np.ndarray, p1: np.ndarray, p2: np.ndarray, p3: np.ndarray, count: int) -> np.ndarray:
    t = np.linspace(0.0, 1.0, count, endpoint=False)[:, None]
    u = 1.0 - t
    return u ** 3 * p0 + 3 * u * u * t * p1 + 3 * u * t * t * p2 + t ** 3 * p3


def spline_polygon(points: Sequence[Any], handles_left: Sequence[Any], handles_right: Sequence[Any], *,
                   cyclic: bool = True, samples: int = SAMPLES_PER_SEGMENT) -> np.ndarray:
    """One spline (positions and handles in any 2D space) -> M*2 polygon vertices. Segment i runs
    from point i along its right handle and the next point's left handle to the next point."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    left = np.asarray(handles_left, dtype=np.float64).reshape(-1, 2)
    right = np.asarray(handles_right, dtype=np.float64).reshape(-1, 2)
    if not (len(pts) == len(left) == len(right)) or len(pts) < 2:
        raise ValueError("a spline needs at least two points with a left and right handle each")
    count = len(pts) if cyclic else len(pts) - 1
    pieces = [_bezier(pts[i], right[i], left[(i + 1) % len(pts)], pts[(i + 1) % len(pts)], samples)
              for i in range(count)]
    return np.concatenate(pieces, axis=0)


def fill_polygons(polygons: Sequence[Any], height: int, width: int) -> np.ndarray:
    """H*W bool: pixels whose centre lies inside an odd number of the polygons (clip pixels, y down)."""
    if not (0 < height <= MAX_SIZE and 0 < width <= MAX_SIZE):
        raise ValueError("the mask size %dx%d is out of range" % (width, height))
    toggles = np.zeros((height, width + 1), dtype=np.int32)
    for polygon in polygons:
        poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
        if len(poly) < 3 or not np.all(np.isfinite(poly)):
            continue
        x0, y0 = poly[:, 0], poly[:, 1]
        x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
        for ax, ay, bx, by in zip(x0, y0, x1, y1):
            if ay == by:
                continue  # horizontal edges cross no row centre an odd number of times
            lo, hi = (ay, by) if ay < by else (by, ay)
            # rows whose centre r + 0.5 lies in [lo, hi)
            first = max(int(math.ceil(lo - 0.5)), 0)
            last = min(int(math.ceil(hi - 0.5)) - 1, height - 1)
            if last < first:
                continue
            rows = np.arange(first, last + 1)
            xs = ax + (rows + 0.5 - ay) * (bx - ax) / (by - ay)
            cols = np.clip(np.ceil(xs - 0.5), 0, width).astype(np.int64)  # first pixel right of the crossing
            np.add.at(toggles, (rows, cols), 1)
    return (np.cumsum(toggles, axis=1)[:, :width] % 2).astype(bool)


def encode_rle(mask: np.ndarray) -> Dict[str, Any]:
    """H*W bool -> {"height", "width", "counts"}: runs row by row from the top, starting with 0s."""
    flat = np.asarray(mask, dtype=bool).reshape(-1)
    height, width = mask.shape
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts: List[int] = np.diff(bounds).astype(int).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts
    return {"height": int(height), "width": int(width), "counts": counts}
