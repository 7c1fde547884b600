"""Mask sequences to animated roto shapes: closed Bezier splines whose points correspond over time.

A compositor wants one shape per part of the object, keyed on every frame, with the same number
of points on each key and each point staying on the same part of the object (no "swimming"), so
that the shape interpolates, can be edited on a few keys, and feathers predictably. This module
turns one object's masks over a shot into such shapes.

Pipeline (all in pixels, on the plate's resolution)

1. **Contours.** Each frame's mask is contoured at `ShapeOptions.level` with marching squares on
   the pixel-centre grid, so a binary mask gives the pixel boundary and a soft mask (alpha, or
   probabilities) gives a sub-pixel contour. Closed loops come out with the filled region on the
   right of the walking direction in image coordinates (x right, y down); loops whose region is
   filled are *fills* (the outer contour and separate islands), the others are *holes*. Loops
   smaller than `ShapeOptions.min_area` are dropped (specks and pinholes are not roto shapes).
2. **Tracks.** Components are matched frame to frame (same kind, nearby centroid, similar area);
   a match continues a `ShapeTrack`, a component with no match starts one, a track with no match
   on the next frame ends. Kinds:

   - ``"outer"``: the object's main filled region. On the first frame of the shot (and whenever
     no outer track is running) the largest fill starts the outer track;
   - ``"island"``: any other filled region (a separate piece of the object);
   - ``"hole"``: a region inside the object that is not part of it.

   So every track covers a *contiguous run* of the given frames: a part that vanishes ends its
   track and, if it comes back, starts a new one with new points (points cannot correspond across
   a gap in which the part did not exist). **Frames where the object is absent** (an empty mask,
   or only specks) therefore appear in no track's `frames`: hosts show a shape only from its
   first to its last key (`ShapeTrack.frames[0]` .. `frames[-1]`) and hide it elsewhere.
3. **Correspondence.** On a track's first frame the contour is sampled densely at equal arc
   length (from its top-most point); these samples are the track's *material points*. Frame to
   frame they are carried onto the next contour: an affine registration (point-to-plane ICP,
   similarity first) and then a smooth field of normal pushes predict where each goes; the new
   positions along the new contour then stay near their projections where the contour bends and
   keep the predicted spacing where it is straight. Rigid motion, scaling and shear are followed
   exactly; a part that stretches (an arm getting longer) stretches its points evenly. Motion
   *along* a smooth, featureless stretch of contour is invisible in a mask, so there the points
   move with their neighbourhood rather than with the (unknowable) material.
4. **Key points.** The spline points are a subset of the material points chosen *once per track*:
   spans are split, on every frame at once, where a cubic Bezier misses the contour by more than
   `tolerance` pixels on any frame, then points whose removal keeps every frame within tolerance
   are removed again. The point count is therefore constant over the track and every key has the
   same points in the same order.
5. **Tangents.** Per frame, each point gets one-sided tangent directions from the contour on
   either side; where they differ by less than `ShapeOptions.corner_angle_deg` (median over the
   track's frames) the point is smooth and its handles are aligned, otherwise it is a corner
   (`ShapeTrack.corners`) with independent handles. Handle lengths are least-squares fits of each
   span to the contour.

`tolerance` (pixels) is the one knob that trades point count against accuracy: the largest
distance allowed between a span and the mask contour, on any frame. By default it is one pixel
of the model's 1024x1024 input, `default_tolerance(H, W)` = max(1, max(H, W) / 1024): 1 px up to
1024 wide, 1.9 px at 1920x1080, 3.75 px at 4K. Finer than that, the spline follows the wobble of
the upsampled low-res mask rather than the object (at 1080p, 1 px gives about 4x the points).

Coordinates

- **Pixel space** (`ShapeTrack` arrays): x to the right, y down, origin at the *top-left corner*
  of the top-left pixel; pixel (row i, column j) covers [j, j+1] x [i, i+1] and its centre is
  (j + 0.5, i + 0.5). A 1920x1080 plate spans x in [0, 1920], y in [0, 1080].
- **Nuke** (`to_nuke`): pixel units with the origin at the *bottom-left corner*, y up:
  ``(x, height - y)``. Nuke puts pixel centres at +0.5, as here, so nothing else moves.
- **Blender** (`to_blender`): Mask datablock space. The frame is first normalised with y up,
  ``u = x / width``, ``v = 1 - y / height`` (0..1 from corner to corner; Blender's mask rasteriser
  samples pixel centres at ``(i + 0.5) / size``, the same corner convention), then Blender's
  aspect correction (``BKE_mask_coord_from_frame``) squeezes the *short* axis about 0.5:
  if width > height, ``v' = (v - 0.5) * height / width + 0.5``; if height > width,
  ``u' = (u - 0.5) * width / height + 0.5``. Non-square pixels: Blender scales the frame height
  by ``aspect_y / aspect_x`` first, so pass ``pixel_aspect = aspect_x / aspect_y``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal, Sequence

import numpy as np

DEFAULT_TOLERANCE_MODEL_PIXELS = 1.0
"""Default tolerance, in pixels of the model's 1024x1024 input (see `default_tolerance`)."""
MODEL_INPUT_SIZE = 1024


def default_tolerance(height: int, width: int) -> float:
    """Default spline tolerance in plate pixels: one model-input pixel, and at least 1."""
    return max(1.0, DEFAULT_TOLERANCE_MODEL_PIXELS * max(height, width) / MODEL_INPUT_SIZE)


ShapeKind = Literal["outer", "hole", "island"]
Space = Literal["pixel", "nuke", "blender"]


class ShapeError(ValueError):
    """Input that cannot be turned into shapes (wrong array shapes, frames, options)."""


@dataclass(frozen=True)
class ShapeOptions:
    """How masks become splines. `tolerance` is the main knob; the rest rarely needs changing."""

    tolerance: float | None = None
    """Largest spline-to-contour distance in pixels on any frame (smaller: more points).
    None: `default_tolerance` for the masks' size."""
    level: float = 0.5
    """Contour level for floating-point masks (0.5 for alpha or probabilities, 0.0 for logits).
    Boolean and integer masks are contoured between their zero and non-zero pixels."""
    min_area: float = 50.0
    """Components (fills or holes) smaller than this many square pixels are ignored."""
    min_points: int = 4
    """Fewest points per shape (4 Bezier points draw a circle within 0.03% of its radius)."""
    max_points: int = 400
    """Hard cap on points per shape, whatever the tolerance."""
    sample_spacing: float = 1.5
    """Spacing in pixels of the dense material samples along the track's longest contour."""
    max_samples: int = 2048
    """Cap on material samples per shape (long contours get a wider spacing)."""
    corner_angle_deg: float = 35.0
    """Points whose incoming and outgoing directions differ by more get independent handles."""
    tangent_window: float = 4.0
    """Length of contour in pixels used on each side of a point to measure its tangent."""
    match_distance: float = 1.0
    """Components on consecutive frames match when their centroids are closer than this many
    equivalent radii (radius of the disc with the component's area)."""
    match_area_ratio: float = 3.0
    """... and their areas differ by less than this factor."""

    def __post_init__(self) -> None:
        positive = ("tolerance", "sample_spacing", "tangent_window", "match_distance")
        for name in positive:
            value = getattr(self, name)
            if name == "tolerance" and value is None:
                continue
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ShapeError(f"ShapeOptions.{name} must be a positive number, got {value!r}")
        if self.min_area < 0:
            raise ShapeError(f"ShapeOptions.min_area must be >= 0, got {self.min_area!r}")
        if self.min_points < 3:
            raise ShapeError(f"ShapeOptions.min_points must be >= 3, got {self.min_points!r}")
        if self.max_points < self.min_points:
            raise ShapeError("ShapeOptions.max_points must be >= min_points")
        if self.max_samples < 4 * self.min_points:
            raise ShapeError("ShapeOptions.max_samples must be at least 4 * min_points")
        if self.match_area_ratio < 1:
            raise ShapeError("ShapeOptions.match_area_ratio must be >= 1")
        if not 0 < self.corner_angle_deg < 180:
            raise ShapeError("ShapeOptions.corner_angle_deg must be in (0, 180)")


@dataclass
class ShapeTrack:
    """One closed cubic Bezier shape animated over frames (one key per frame).

    Point i on one key is the same part of the object as point i on every other key. Segment i
    runs from ``points[f, i]`` through ``handles_out[f, i]`` and ``handles_in[f, i + 1]`` to
    ``points[f, i + 1]``, and the last segment closes back to point 0. All positions are absolute,
    in pixel space (see the module docstring). Fills run clockwise on screen, holes anticlockwise;
    the object is the even-odd combination of an object's tracks on a frame (`rasterize_tracks`).
    """

    kind: ShapeKind
    frames: list[int]
    """Plate frame numbers, ascending, one key each; a contiguous run of the frames given."""
    points: np.ndarray
    """F*P*2 float64: the spline points (x, y) on each key."""
    handles_in: np.ndarray
    """F*P*2 float64: absolute position of each point's incoming handle (Blender "left")."""
    handles_out: np.ndarray
    """F*P*2 float64: absolute position of each point's outgoing handle (Blender "right")."""
    corners: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    """P bool: True where the handles are independent (a cusp), False where they are aligned."""
    fallback_frames: list[int] = field(default_factory=list)
    """Frames whose points were not carried by tracking the shape, because the numerical fit failed
    on a degenerate mask: there the points are spread evenly along the contour from the point
    nearest the previous key's first one, so they may slide. Usually empty."""

    @property
    def point_count(self) -> int:
        return int(self.points.shape[1])

    def key_index(self, frame: int) -> int:
        """Index of `frame` in this track's keys; ValueError if the track has no key there."""
        try:
            return self.frames.index(int(frame))
        except ValueError:
            raise ShapeError(f"{self.kind} track has no key on frame {frame} "
                             f"(keys {self.frames[0]}..{self.frames[-1]})") from None


# --------------------------------------------------------------------------------------------
# Contours: marching squares on the pixel-centre grid


@dataclass
class _Contour:
    points: np.ndarray  # N*2 closed loop (last point != first), pixel space
    area: float  # absolute enclosed area in px^2
    filled: bool  # True: the region inside the loop is part of the mask
    centroid: np.ndarray  # 2


# Cell corners (x, y) in a cell's local frame, with the bit each contributes to the case index.
_CORNERS = {1: (0.0, 0.0), 2: (1.0, 0.0), 4: (1.0, 1.0), 8: (0.0, 1.0)}
# Cell edges: code -> (corner bit a, corner bit b, midpoint); codes 0 top, 1 right, 2 bottom, 3 left.
_EDGES = {0: (1, 2, (0.5, 0.0)), 1: (2, 4, (1.0, 0.5)), 2: (8, 4, (0.5, 1.0)), 3: (1, 8, (0.0, 0.5))}


def _orient(e_from: int, e_to: int, inside: tuple[float, float]) -> tuple[int, int]:
    """Order a segment between two cell edges so that `inside` lies on its right (image axes)."""
    (ax, ay), (bx, by) = _EDGES[e_from][2], _EDGES[e_to][2]
    cross = (bx - ax) * (inside[1] - ay) - (by - ay) * (inside[0] - ax)
    return (e_from, e_to) if cross > 0 else (e_to, e_from)


def _build_case_table() -> dict[tuple[int, bool], list[tuple[int, int]]]:
    """Segments per (case, centre inside) for the 16 marching-squares cases, oriented."""
    table: dict[tuple[int, bool], list[tuple[int, int]]] = {}
    for case in range(16):
        crossing = [e for e, (a, b, _) in _EDGES.items() if bool(case & a) != bool(case & b)]
        for centre_inside in (False, True):
            segments: list[tuple[int, int]] = []
            if len(crossing) == 2:
                inside_bits = [bit for bit in _CORNERS if case & bit]
                cx = sum(_CORNERS[b][0] for b in inside_bits) / len(inside_bits)
                cy = sum(_CORNERS[b][1] for b in inside_bits) / len(inside_bits)
                segments.append(_orient(crossing[0], crossing[1], (cx, cy)))
            elif len(crossing) == 4:
                # Saddle: two segments, each cutting off one corner. Which corners depends on
                # whether the cell centre is inside (then the inside corners are connected).
                for bit in _CORNERS:
                    corner_inside = bool(case & bit)
                    if corner_inside == centre_inside:
                        continue  # this corner is joined to the centre, not cut off
                    edges = [e for e, (a, b, _) in _EDGES.items() if bit in (a, b)]
                    target = _CORNERS[bit] if corner_inside else (0.5, 0.5)
                    segments.append(_orient(edges[0], edges[1], target))
            table[(case, centre_inside)] = segments
    return table


_CASE_TABLE = _build_case_table()


def _mask_field(mask: np.ndarray, level: float) -> np.ndarray:
    """H*W float32 field, > 0 inside, for a bool/integer/float mask."""
    if mask.dtype == bool or np.issubdtype(mask.dtype, np.integer):
        return np.where(mask != 0, np.float32(0.5), np.float32(-0.5))
    field_values = mask.astype(np.float32, copy=False) - np.float32(level)
    if not np.all(np.isfinite(field_values)):
        raise ShapeError("mask contains NaN or infinite values")
    return field_values


def _trace_loops(field_values: np.ndarray) -> list[np.ndarray]:
    """Closed iso-contours (level 0) of an H*W field; inside is > 0. Pixel-space loops (N*2)."""
    inside = field_values > 0
    if not inside.any():
        return []
    rows = np.flatnonzero(inside.any(axis=1))
    cols = np.flatnonzero(inside.any(axis=0))
    # Crop to the mask's bounding box plus one pixel (where the crossings are), then pad with a
    # ring that is outside by the mirror of the border value: a mask touching the image border
    # is then closed exactly along the image edge.
    r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, field_values.shape[0])
    c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, field_values.shape[1])
    crop = field_values[r0:r1, c0:c1]
    f = np.pad(crop, 1, mode="edge")
    f[0, :] = -np.abs(f[0, :]) - 1e-6
    f[-1, :] = -np.abs(f[-1, :]) - 1e-6
    f[:, 0] = -np.abs(f[:, 0]) - 1e-6
    f[:, -1] = -np.abs(f[:, -1]) - 1e-6
    hp, wp = f.shape
    pos = f > 0
    case = (pos[:-1, :-1] * 1 + pos[:-1, 1:] * 2 + pos[1:, 1:] * 4 + pos[1:, :-1] * 8).astype(np.int8)
    # Only cells the contour passes through matter (a few per pixel of perimeter).
    ci, cj = np.nonzero((case != 0) & (case != 15))
    cell_case = case[ci, cj]
    centre_inside = (f[ci, cj] + f[ci, cj + 1] + f[ci + 1, cj + 1] + f[ci + 1, cj]) > 0
    # Global edge ids of each cell's top, right, bottom, left edges: horizontal edges
    # (i, j)-(i, j+1) first, then vertical edges (i, j)-(i+1, j).
    n_horizontal = hp * (wp - 1)
    cell_edges = np.stack([ci * (wp - 1) + cj, n_horizontal + ci * wp + cj + 1,
                           (ci + 1) * (wp - 1) + cj, n_horizontal + ci * wp + cj])
    sources: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for (case_id, centre), segments in _CASE_TABLE.items():
        if not segments:
            continue
        select = cell_case == case_id
        if case_id in (5, 10):
            select &= centre_inside == centre
        elif centre:
            continue  # non-saddle cases do not depend on the centre; emit them once
        for e_from, e_to in segments:
            sources.append(cell_edges[e_from][select])
            targets.append(cell_edges[e_to][select])
    src = np.concatenate(sources)
    dst = np.concatenate(targets)
    # Each crossing edge is left by exactly one segment and entered by one: renumber the edges
    # compactly, then follow the segments.
    order = np.argsort(src)
    edge_ids = src[order]
    following = np.searchsorted(edge_ids, dst[order])

    # Crossing positions, interpolated where the field changes sign; padded index (i, j) is
    # pixel (r0 + i - 1, c0 + j - 1), whose centre is at (j + c0 - 0.5, i + r0 - 0.5).
    horizontal = edge_ids < n_horizontal
    i_h, j_h = np.divmod(edge_ids[horizontal], wp - 1)
    i_v, j_v = np.divmod(edge_ids[~horizontal] - n_horizontal, wp)
    xy = np.empty((len(edge_ids), 2))
    a_h, b_h = f[i_h, j_h].astype(np.float64), f[i_h, j_h + 1].astype(np.float64)
    xy[horizontal] = np.stack([j_h + a_h / (a_h - b_h), i_h.astype(np.float64)], axis=1)
    a_v, b_v = f[i_v, j_v].astype(np.float64), f[i_v + 1, j_v].astype(np.float64)
    xy[~horizontal] = np.stack([j_v.astype(np.float64), i_v + a_v / (a_v - b_v)], axis=1)
    xy += (c0 - 0.5, r0 - 0.5)

    loops: list[np.ndarray] = []
    following_list = following.tolist()
    visited_list = [False] * len(edge_ids)
    for start in range(len(edge_ids)):
        if visited_list[start]:
            continue
        chain = []
        node = start
        while not visited_list[node]:
            visited_list[node] = True
            chain.append(node)
            node = following_list[node]
        if len(chain) >= 3:
            loops.append(xy[np.asarray(chain)])
    return loops


def _signed_area(loop: np.ndarray) -> float:
    """Shoelace area in image axes; > 0 for loops running clockwise on screen."""
    x, y = loop[:, 0], loop[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def _centroid(loop: np.ndarray, signed_area: float) -> np.ndarray:
    x, y = loop[:, 0], loop[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    if abs(signed_area) < 1e-9:
        return loop.mean(axis=0)
    return np.array([np.sum((x + xn) * cross), np.sum((y + yn) * cross)]) / (6.0 * signed_area)


def mask_contours(mask: np.ndarray, *, level: float = 0.5) -> list[np.ndarray]:
    """Closed contours of one H*W mask (bool, integer, or float cut at `level`): N*2 loops.

    Pixel space; filled regions run clockwise on screen and holes anticlockwise, so
    `fill_polygons(mask_contours(m), H, W)` gives back a binary mask `m` exactly.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ShapeError(f"mask must be H*W, got shape {mask.shape}")
    return _trace_loops(_mask_field(mask, level))


def _frame_contours(mask: np.ndarray, options: ShapeOptions) -> list[_Contour]:
    contours = []
    for loop in _trace_loops(_mask_field(mask, options.level)):
        area = _signed_area(loop)
        if abs(area) < max(options.min_area, 1e-6):
            continue
        contours.append(_Contour(loop, abs(area), area > 0, _centroid(loop, area)))
    return contours


# --------------------------------------------------------------------------------------------
# Closed polylines: arc length, resampling, nearest points


def _arc_lengths(loop: np.ndarray) -> tuple[np.ndarray, float]:
    """Cumulative arc length at each vertex (starting at 0) and the total closed length."""
    seg = np.linalg.norm(np.diff(loop, axis=0, append=loop[:1]), axis=1)
    cumulative = np.concatenate([[0.0], np.cumsum(seg[:-1])])
    return cumulative, float(seg.sum())


def _sample_at(loop: np.ndarray, cumulative: np.ndarray, total: float, s: np.ndarray) -> np.ndarray:
    """Points at arc lengths `s` (any real values, taken modulo the length) on a closed loop."""
    closed = np.vstack([loop, loop[:1]])
    knots = np.append(cumulative, total)
    s = np.mod(s, total)
    return np.stack([np.interp(s, knots, closed[:, 0]), np.interp(s, knots, closed[:, 1])], axis=1)


def _resample(loop: np.ndarray, count: int, start: float = 0.0) -> np.ndarray:
    cumulative, total = _arc_lengths(loop)
    return _sample_at(loop, cumulative, total, start + np.arange(count) * (total / count))


def _nearest(queries: np.ndarray, targets: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Index of the nearest target for each query (brute force in chunks; N*2 and M*2)."""
    out = np.empty(len(queries), dtype=np.int64)
    origin = targets.mean(axis=0)  # small coordinates keep float32 distances precise
    t = (targets - origin).astype(np.float32)
    t_sq = np.einsum("ij,ij->i", t, t)
    for start in range(0, len(queries), chunk):
        q = (queries[start:start + chunk] - origin).astype(np.float32)
        d = t_sq[None, :] - 2.0 * (q @ t.T)  # |q|^2 is constant per row
        out[start:start + chunk] = np.argmin(d, axis=1)
    return out


# --------------------------------------------------------------------------------------------
# Tracks: matching components between consecutive frames


@dataclass
class _RawTrack:
    kind: ShapeKind
    filled: bool
    frames: list[int] = field(default_factory=list)
    contours: list[_Contour] = field(default_factory=list)


def _match_cost(a: _Contour, b: _Contour, options: ShapeOptions) -> float | None:
    ratio = max(a.area, b.area) / max(min(a.area, b.area), 1e-9)
    if ratio > options.match_area_ratio:
        return None
    radius = math.sqrt(max(a.area, b.area) / math.pi)
    distance = float(np.linalg.norm(a.centroid - b.centroid)) / radius
    if distance > options.match_distance:
        return None
    return distance + math.log(ratio)


def _link_tracks(per_frame: list[tuple[int, list[_Contour]]], options: ShapeOptions) -> list[_RawTrack]:
    finished: list[_RawTrack] = []
    active: list[_RawTrack] = []
    for frame, contours in per_frame:
        # Greedy matching, cheapest pair first; the outer track is served before the others so
        # that it keeps the main body when pieces split off.
        pairs = []
        for ti, track in enumerate(active):
            for ci, contour in enumerate(contours):
                if contour.filled != track.filled:
                    continue
                cost = _match_cost(track.contours[-1], contour, options)
                if cost is not None:
                    pairs.append((track.kind != "outer", cost, ti, ci))
        pairs.sort()
        used_tracks: set[int] = set()
        used_contours: set[int] = set()
        for _, _, ti, ci in pairs:
            if ti in used_tracks or ci in used_contours:
                continue
            used_tracks.add(ti)
            used_contours.add(ci)
            active[ti].frames.append(frame)
            active[ti].contours.append(contours[ci])
        still_active: list[_RawTrack] = []
        for ti, track in enumerate(active):
            (still_active if ti in used_tracks else finished).append(track)
        active = still_active
        has_outer = any(t.kind == "outer" for t in active)
        fresh = sorted((ci for ci in range(len(contours)) if ci not in used_contours),
                       key=lambda ci: -contours[ci].area)
        for ci in fresh:
            contour = contours[ci]
            if contour.filled:
                kind: ShapeKind = "island" if has_outer else "outer"
                has_outer = True
            else:
                kind = "hole"
            active.append(_RawTrack(kind, contour.filled, [frame], [contour]))
    finished.extend(active)
    order = {"outer": 0, "island": 1, "hole": 2}
    finished.sort(key=lambda t: (t.frames[0], order[t.kind], -t.contours[0].area))
    return finished


# --------------------------------------------------------------------------------------------
# Correspondence: carrying material samples from one frame's contour to the next


def _normals(loop: np.ndarray) -> np.ndarray:
    """Unit normals (N*2) of a closed polyline from central differences."""
    tangent = _unit(np.roll(loop, -1, axis=0) - np.roll(loop, 1, axis=0))
    return np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


# Ridge on each affine step, relative to the point-to-plane terms (points x mean squared radius).
_AFFINE_DAMPING = 0.5


def _register(src: np.ndarray, src_area: float, src_centroid: np.ndarray,
              dst: np.ndarray, dst_area: float, dst_centroid: np.ndarray) -> np.ndarray:
    """2x3 affine map taking contour samples `src` onto the dense contour `dst`.

    Point-to-plane ICP, first restricted to a similarity (rotation, uniform scale, translation),
    then a full affine solved in damped steps (a ridge on each step's change of the 2x2 part).
    The damping matters: some shapes (an ellipse) map onto each other by a whole family of
    affine maps; directions the contour does not determine then stay where the similarity put
    them, closest to the rigid motion, which is the choice that does not make points slide.
    """
    normals = _normals(dst)
    scale = math.sqrt(dst_area / max(src_area, 1e-9))
    m = np.array([[scale, 0.0, 0.0], [0.0, scale, 0.0]])
    m[:, 2] = dst_centroid - scale * src_centroid
    size2 = float(np.mean(np.sum((dst - dst_centroid) ** 2, axis=1))) or 1.0
    for affine in (False, True):
        for _ in range(20):
            moved = _apply(m, src)
            nearest = _nearest(moved, dst)
            q, n = dst[nearest], normals[nearest]
            r = np.einsum("ij,ij->i", moved - q, n)
            keep = np.abs(r) <= max(3.0 * float(np.median(np.abs(r))), 1.0)
            if keep.sum() < 8:
                break
            c = moved[keep].mean(axis=0)
            d = moved[keep] - c
            nk, rk = n[keep], r[keep]
            if not affine:
                # Unknowns: scale change, rotation angle, translation (linearised about `moved`).
                cols = [np.einsum("ij,ij->i", d, nk), d[:, 0] * nk[:, 1] - d[:, 1] * nk[:, 0], nk[:, 0], nk[:, 1]]
                a = np.stack(cols, axis=1)
                ds, dtheta, tx, ty = np.linalg.lstsq(a, -rk, rcond=None)[0]
                step = np.array([[1.0 + ds, -dtheta], [dtheta, 1.0 + ds]])
                shift = np.array([tx, ty])
            else:
                # Unknowns: the 2x2 change dA (row-major) and translation; ridge on dA.
                a = np.stack([d[:, 0] * nk[:, 0], d[:, 1] * nk[:, 0], d[:, 0] * nk[:, 1], d[:, 1] * nk[:, 1],
                              nk[:, 0], nk[:, 1]], axis=1)
                ridge = _AFFINE_DAMPING * len(rk) * size2
                lhs = a.T @ a + np.diag([ridge] * 4 + [0.0, 0.0])
                sol = np.linalg.solve(lhs, -a.T @ rk)
                step = np.eye(2) + sol[:4].reshape(2, 2)
                shift = sol[4:]
            # moved' = step @ (moved - c) + c + shift, composed onto m.
            linear = step @ m[:, :2]
            offset = step @ (m[:, 2] - c) + c + shift
            new = np.hstack([linear, offset[:, None]])
            sv = np.linalg.svd(new[:, :2], compute_uv=False)
            if sv[1] <= 1e-6 or sv[0] / sv[1] > 4.0:
                break  # a map that flattens the shape is a failed registration, not a motion
            change = float(np.abs(_apply(new, src) - moved).max())
            m = new
            if change < 0.01:  # pixels: converged
                break
    return m


def _solve_cyclic(diagonal: np.ndarray, off: float, rhs: np.ndarray) -> np.ndarray:
    """Solve A x = rhs for symmetric cyclic tridiagonal A (constant off-diagonal `off`).

    Thomas algorithm with the Sherman-Morrison correction for the two corner entries; O(n).
    """
    n = len(diagonal)
    gamma = -float(diagonal[0])
    d = diagonal.astype(np.float64).tolist()
    d[0] -= gamma
    d[-1] -= off * off / gamma
    u = [0.0] * n
    u[0], u[-1] = gamma, off
    b = rhs.astype(np.float64).tolist()
    # Forward sweep for both right-hand sides at once.
    c_prime = [0.0] * n
    y = [0.0] * n
    z = [0.0] * n
    c_prime[0] = off / d[0]
    y[0] = b[0] / d[0]
    z[0] = u[0] / d[0]
    for i in range(1, n):
        denom = d[i] - off * c_prime[i - 1]
        c_prime[i] = off / denom
        y[i] = (b[i] - off * y[i - 1]) / denom
        z[i] = (u[i] - off * z[i - 1]) / denom
    for i in range(n - 2, -1, -1):
        y[i] -= c_prime[i] * y[i + 1]
        z[i] -= c_prime[i] * z[i + 1]
    ya, za = np.array(y), np.array(z)
    v_y = ya[0] + off / gamma * ya[-1]
    v_z = za[0] + off / gamma * za[-1]
    return ya - (v_y / (1.0 + v_z)) * za


def _curvature(loop: np.ndarray, spacing: float, span: float = 2.0) -> np.ndarray:
    """Unsigned curvature (1/px) at each vertex of a finely, evenly sampled closed loop,
    measured over about 2 * span pixels."""
    k = max(1, int(round(span / spacing)))
    chord = np.roll(loop, -k, axis=0) - np.roll(loop, k, axis=0)
    angle = np.arctan2(chord[:, 1], chord[:, 0])
    turn = np.angle(np.exp(1j * (np.roll(angle, -k) - np.roll(angle, k))))
    curvature = np.abs(turn) / (2 * k * spacing)
    box = np.ones(2 * k + 1) / (2 * k + 1)
    padded = np.concatenate([curvature[-k:], curvature, curvature[:k]])
    return np.convolve(padded, box, mode="valid")


def _dense_loop(points: np.ndarray, max_spacing: float = 0.5) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Evenly resampled copy of a loop: (samples N*2, their arc positions N, spacing, length)."""
    cumulative, total = _arc_lengths(points)
    count = int(min(max(total / max_spacing, 64), 16384))
    spacing = total / count
    s = np.arange(count) * spacing
    return _sample_at(points, cumulative, total, s), s, spacing, total


# Smooth non-rigid part of the frame-to-frame motion: Gaussian bumps centred every
# _BUMP_SPACING pixels along the contour (at most _MAX_BUMPS), each 1.5 spacings wide, pushing
# along the contour normal; a small ridge keeps the field no larger than the data needs.
_BUMP_SPACING = 20.0
_MAX_BUMPS = 64
_BUMP_RIDGE_PER_POINT = 4e-4  # relative to the point-to-plane terms, one per contour sample


def _deform(src: np.ndarray, dst: np.ndarray, dst_normals: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Displace `points` by a smooth field that brings `src` (already registered) onto `dst`.

    The field is a sum of Gaussian bumps centred along `src`, each pushing along the contour's
    normal at its centre, fitted by point-to-plane least squares with a small ridge. Pushes are
    what a mask can tell (motion along a smooth contour is invisible), and their blend moves the
    points in between along with their neighbourhood: a lengthening arm, pushed out at its tip
    and in at its base, stretches its flanks evenly instead of leaving their points behind.
    """
    _, perimeter = _arc_lengths(src)
    count = int(np.clip(round(perimeter / _BUMP_SPACING), 6, _MAX_BUMPS))
    centres = _resample(src, count)
    directions = _normals(centres)
    sigma = 1.5 * perimeter / count

    def basis(x: np.ndarray) -> np.ndarray:
        d2 = np.sum((x[:, None, :] - centres[None]) ** 2, axis=2)
        return np.exp(-0.5 * d2 / sigma ** 2)

    phi_src = basis(src)
    amounts = np.zeros(count)
    for _ in range(6):
        moved = src + (phi_src * amounts) @ directions
        nearest = _nearest(moved, dst)
        n = dst_normals[nearest]
        r = np.einsum("ij,ij->i", moved - dst[nearest], n)
        keep = np.abs(r) <= max(3.0 * float(np.median(np.abs(r))), 1.0)
        a = phi_src[keep] * (n[keep] @ directions.T)
        ridge = _BUMP_RIDGE_PER_POINT * len(src)
        lhs = a.T @ a + ridge * np.eye(count)
        delta = np.linalg.solve(lhs, -a.T @ r[keep] - ridge * amounts)
        amounts += delta
        if np.abs(delta).max() < 1e-3:
            break
    return points + (basis(points) * amounts) @ directions


# How much the projection of a point pins its position along the contour: weight (kappa * L)^2
# against a unit weight on keeping the spacing between neighbours. Where the contour bends (a tip,
# a corner) the nearest point is well defined; along a straight flank it is not, and the spacing
# from the previous frame (stretched evenly) places the points instead.
_PIN_LENGTH = 8.0
_PIN_FLOOR = 1e-3


def _carry(previous: np.ndarray, prev_contour: _Contour, contour: _Contour) -> np.ndarray:
    """Move the material samples `previous` (M*2, on prev_contour) onto `contour` (M*2).

    Registration (affine, then a smooth non-rigid field) predicts where each sample goes; the
    new positions along the contour then solve a small least-squares problem: near their
    projection where the contour bends, and otherwise keeping the predicted spacing.
    """
    count = len(previous)
    target, target_s, spacing, total = _dense_loop(contour.points)
    normals = _normals(target)
    coarse = max(1, len(target) // 1024)
    stride = max(1, count // 256)
    m = _register(previous[::stride], prev_contour.area, prev_contour.centroid,
                  target[::coarse], contour.area, contour.centroid)
    moved = _apply(m, previous)
    moved = _deform(moved[::stride], target[::coarse], normals[::coarse], moved)
    nearest = _nearest(moved, target)
    s = target_s[nearest]
    cumulative, _ = _arc_lengths(contour.points)

    expected = np.linalg.norm(np.diff(moved, axis=0, append=moved[:1]), axis=1)
    expected *= total / max(expected.sum(), 1e-12)
    # Unwrap the projected arc positions into one increasing turn. Gaps wider than half the
    # contour are folds (a point projected backwards), not progress.
    gaps = np.mod(np.diff(s, append=s[:1]), total)
    gaps[gaps > 0.5 * total] -= total
    if abs(gaps.sum() - total) > 0.25 * total:
        # Registration failed (the shape changed beyond recognition): keep the order and the
        # spacing of the previous frame, placed where the projections agree best.
        offsets = np.concatenate([[0.0], np.cumsum(expected[:-1])])
        angle = 2.0 * np.pi * (s - offsets) / total
        start = total * float(np.arctan2(np.sin(angle).mean(), np.cos(angle).mean())) / (2.0 * np.pi)
        return _sample_at(contour.points, cumulative, total, start + offsets)
    projected = s[0] + np.concatenate([[0.0], np.cumsum(gaps[:-1])])

    # Normal equations of  sum w (x_i - projected_i)^2 + sum (x_{i+1} - x_i - expected_i)^2 :
    # cyclic tridiagonal. The last gap closes the loop: x_0 + total - x_{M-1}.
    weight = (_curvature(target, spacing)[nearest] * _PIN_LENGTH) ** 2 + _PIN_FLOOR
    wrapped = expected.copy()
    wrapped[-1] -= total
    positions = _solve_cyclic(weight + 2.0, -1.0, weight * projected + (np.roll(wrapped, 1) - wrapped))
    new_gaps = np.diff(positions, append=positions[:1] + total)
    floor = 0.1 * total / count
    new_gaps = np.maximum(new_gaps, floor)
    new_gaps = floor + (new_gaps - floor) * ((total - count * floor) / max(new_gaps.sum() - count * floor, 1e-12))
    offsets = np.concatenate([[0.0], np.cumsum(new_gaps[:-1])])
    return _sample_at(contour.points, cumulative, total, positions[0] + offsets)


# What a numerical step can raise on a degenerate contour (a sliver, a single pixel, noise)
_NUMERICAL_FAILURES = (np.linalg.LinAlgError, FloatingPointError, ZeroDivisionError, ValueError, IndexError)


def _spread_from(previous: np.ndarray, contour: _Contour) -> np.ndarray:
    """The fallback carry: as many samples as `previous`, evenly along `contour`, starting at the
    contour point nearest the previous first sample (order and count are kept; points may slide)."""
    cumulative, total = _arc_lengths(contour.points)
    start_vertex = int(np.argmin(np.sum((contour.points - previous[0]) ** 2, axis=1)))
    count = len(previous)
    return _sample_at(contour.points, cumulative, total, cumulative[start_vertex] + np.arange(count) * (total / count))


def _material_samples(track: _RawTrack, options: ShapeOptions, fallback: list[int] | None = None) -> np.ndarray:
    """F*M*2 samples that correspond frame to frame along the track; frames where the carry
    failed numerically are appended to `fallback`."""
    first = track.contours[0]
    cumulative, total = _arc_lengths(first.points)
    # Enough samples for the longest contour of the track (a shape may grow a lot).
    longest = max(_arc_lengths(c.points)[1] for c in track.contours)
    count = int(np.clip(round(longest / options.sample_spacing), 4 * options.min_points, options.max_samples))
    # Start at the top-most (then left-most) point so the first point is predictable.
    top = int(np.lexsort((first.points[:, 0], first.points[:, 1]))[0])
    samples = [_sample_at(first.points, cumulative, total, cumulative[top] + np.arange(count) * (total / count))]
    for frame, prev, contour in zip(track.frames[1:], track.contours[:-1], track.contours[1:]):
        try:
            with np.errstate(all="ignore"):  # judged by the result: finite points, or the fallback
                carried = _carry(samples[-1], prev, contour)
            if not np.all(np.isfinite(carried)):
                raise FloatingPointError("non-finite points")
        except _NUMERICAL_FAILURES:
            carried = _spread_from(samples[-1], contour)
            if fallback is not None:
                fallback.append(int(frame))
        samples.append(carried)
    return np.stack(samples)


# --------------------------------------------------------------------------------------------
# Bezier spans: fitting with fixed tangent directions, shared key points on all frames


def _bernstein(u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    v = 1.0 - u
    return v ** 3, 3.0 * u * v ** 2, 3.0 * u ** 2 * v, u ** 3


def _bezier(c: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Points of cubic Beziers. c: F*4*2 control points, u: F*n -> F*n*2."""
    b0, b1, b2, b3 = _bernstein(u)
    return (b0[..., None] * c[:, None, 0] + b1[..., None] * c[:, None, 1]
            + b2[..., None] * c[:, None, 2] + b3[..., None] * c[:, None, 3])


def _fit_span(pts: np.ndarray, t_out: np.ndarray, t_in: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fit one cubic per frame through the span's end points with fixed tangent directions.

    pts: F*n*2 contour samples from one key point to the next (ends included); t_out: F*2 unit
    direction leaving the first point; t_in: F*2 unit direction leaving the last point backwards.
    Returns (alpha_out F, alpha_in F, max error F in pixels, index of the worst sample F).
    """
    frames, n, _ = pts.shape
    p0, p3 = pts[:, 0], pts[:, -1]
    steps = np.linalg.norm(np.diff(pts, axis=1), axis=2)
    length = steps.sum(axis=1)
    if n <= 2:
        third = length / 3.0
        return third, third, np.zeros(frames), np.zeros(frames, dtype=np.int64)
    u = np.concatenate([np.zeros((frames, 1)), np.cumsum(steps, axis=1)], axis=1)
    u /= np.maximum(length, 1e-12)[:, None]
    alpha_out = alpha_in = length / 3.0
    for refit in range(3):
        b0, b1, b2, b3 = _bernstein(u)
        a1 = b1[..., None] * t_out[:, None, :]
        a2 = b2[..., None] * t_in[:, None, :]
        rest = pts - (b0 + b1)[..., None] * p0[:, None] - (b2 + b3)[..., None] * p3[:, None]
        c11 = np.einsum("fnk,fnk->f", a1, a1)
        c12 = np.einsum("fnk,fnk->f", a1, a2)
        c22 = np.einsum("fnk,fnk->f", a2, a2)
        x1 = np.einsum("fnk,fnk->f", a1, rest)
        x2 = np.einsum("fnk,fnk->f", a2, rest)
        det = c11 * c22 - c12 ** 2
        ok = np.abs(det) > 1e-9 * np.maximum(c11 * c22, 1e-12)
        safe = np.where(ok, det, 1.0)
        a_out = np.where(ok, (x1 * c22 - x2 * c12) / safe, length / 3.0)
        a_in = np.where(ok, (c11 * x2 - c12 * x1) / safe, length / 3.0)
        # Handles pointing backwards or far beyond the span make loops: use the classic third.
        bad = (a_out <= 1e-3 * length) | (a_in <= 1e-3 * length) | (a_out > 2 * length) | (a_in > 2 * length)
        alpha_out = np.where(bad, length / 3.0, a_out)
        alpha_in = np.where(bad, length / 3.0, a_in)
        control = np.stack([p0, p0 + alpha_out[:, None] * t_out, p3 + alpha_in[:, None] * t_in, p3], axis=1)
        if refit == 2:
            break
        # Newton step on each sample's parameter (closest point on the curve).
        q = _bezier(control, u) - pts
        d1 = 3.0 * np.diff(control, axis=1)
        d2 = 2.0 * np.diff(d1, axis=1)
        v = 1.0 - u
        q1 = (v ** 2)[..., None] * d1[:, None, 0] + (2 * u * v)[..., None] * d1[:, None, 1] + (u ** 2)[..., None] * d1[:, None, 2]
        q2 = v[..., None] * d2[:, None, 0] + u[..., None] * d2[:, None, 1]
        num = np.einsum("fnk,fnk->fn", q, q1)
        den = np.einsum("fnk,fnk->fn", q1, q1) + np.einsum("fnk,fnk->fn", q, q2)
        step = np.where(np.abs(den) > 1e-12, num / np.where(den == 0, 1.0, den), 0.0)
        u = np.clip(u - step, 0.0, 1.0)
        u[:, 0], u[:, -1] = 0.0, 1.0
    error = np.linalg.norm(_bezier(control, u) - pts, axis=2)
    return alpha_out, alpha_in, error.max(axis=1), error.argmax(axis=1)


def _unit(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.maximum(norm, 1e-12)


@dataclass
class _Tangents:
    out: np.ndarray  # F*K*2 unit direction leaving each key forward
    back: np.ndarray  # F*K*2 unit direction leaving each key backward
    corners: np.ndarray  # K bool


def _tangents(dense: np.ndarray, keys: np.ndarray, window: int, corner_cos: float) -> _Tangents:
    """One-sided tangent directions at the key samples; aligned where the point is smooth.

    The direction leaving a key forwards is towards the mean of the next few samples (up to
    `window`, and at most half the span to the next key); backwards likewise.
    """
    frames, count, _ = dense.shape
    gaps = np.diff(keys, append=keys[:1] + count)
    ahead = np.maximum(1, np.minimum(window, gaps // 2))
    behind = np.maximum(1, np.minimum(window, np.roll(gaps, 1) // 2))
    # Prefix sums over two turns of the loop make every windowed mean two lookups.
    sums = np.concatenate([np.zeros((frames, 1, 2)), np.cumsum(np.concatenate([dense, dense], axis=1), axis=1)],
                          axis=1)
    here = dense[:, keys]
    mean_ahead = (sums[:, keys + 1 + ahead] - sums[:, keys + 1]) / ahead[None, :, None]
    mean_behind = (sums[:, keys + count] - sums[:, keys + count - behind]) / behind[None, :, None]
    out, back = _unit(mean_ahead - here), _unit(mean_behind - here)
    cos = np.einsum("fkc,fkc->fk", out, -back)
    corners = np.median(cos, axis=0) < corner_cos
    smooth = _unit(out - back)
    out = np.where(corners[None, :, None], out, smooth)
    back = np.where(corners[None, :, None], back, -smooth)
    return _Tangents(out, back, corners)


def _span_indices(a: int, b: int, count: int) -> np.ndarray:
    end = b if b > a else b + count
    return np.arange(a, end + 1) % count


def _span_error(dense: np.ndarray, keys: np.ndarray, tangents: _Tangents, i: int) -> tuple[float, int]:
    """Largest error over all frames of span i (key i to key i+1) and where to split it."""
    count = dense.shape[1]
    j = (i + 1) % len(keys)
    idx = _span_indices(int(keys[i]), int(keys[j]), count)
    _, _, err, worst = _fit_span(dense[:, idx], tangents.out[:, i], tangents.back[:, j])
    f = int(err.argmax())
    split = int(worst[f])
    if split <= 0 or split >= len(idx) - 1:
        split = len(idx) // 2
    return float(err[f]), int(idx[split])


def _choose_keys(dense: np.ndarray, options: ShapeOptions, spacing: float) -> np.ndarray:
    """Sample indices of the spline points, shared by all frames (see module docstring, step 4)."""
    count = dense.shape[1]
    window = max(1, int(round(options.tangent_window / max(spacing, 1e-6))))
    corner_cos = math.cos(math.radians(options.corner_angle_deg))
    tol = float(options.tolerance or DEFAULT_TOLERANCE_MODEL_PIXELS)
    keys = np.unique(np.round(np.arange(options.min_points) * count / options.min_points).astype(np.int64))

    def failing(candidate: np.ndarray) -> dict[int, int]:
        tangents = _tangents(dense, candidate, window, corner_cos)
        splits = {}
        for i in range(len(candidate)):
            gap = (int(candidate[(i + 1) % len(candidate)]) - int(candidate[i])) % count or count
            if gap < 2:
                continue
            err, split = _span_error(dense, candidate, tangents, i)
            if err > tol:
                splits[i] = split
        return splits

    for _ in range(4):  # split / merge rounds; one usually suffices
        for _ in range(64):
            splits = failing(keys)
            if not splits or len(keys) >= options.max_points:
                break
            room = options.max_points - len(keys)  # the hard cap wins over the tolerance
            keys = np.unique(np.concatenate([keys, list(splits.values())[:room]]))
        # Merge: drop points whose neighbours' spans (recomputed without them) stay in tolerance.
        changed = False
        i = 0
        while i < len(keys) and len(keys) > options.min_points:
            trial = np.delete(keys, i)
            tangents = _tangents(dense, trial, window, corner_cos)
            n = len(trial)
            spans = {(i - 2) % n, (i - 1) % n, i % n}
            if all(_span_error(dense, trial, tangents, s)[0] <= tol for s in spans):
                keys = trial
                changed = True
            else:
                i += 1
        if not changed or not failing(keys):
            break
    return keys


def _fit_track(raw: _RawTrack, options: ShapeOptions) -> ShapeTrack:
    """The track's Bezier keys; if the fit itself fails numerically, a polygon through evenly
    spread points (straight spans, corner points) on every frame, said in `fallback_frames`."""
    fallback: list[int] = []
    try:
        with np.errstate(all="ignore"):
            track = _fit_bezier_track(raw, options, fallback)
        arrays = (track.points, track.handles_in, track.handles_out)
        if not all(np.all(np.isfinite(a)) for a in arrays):
            raise FloatingPointError("non-finite key points")
        track.fallback_frames = sorted(set(fallback))
        return track
    except _NUMERICAL_FAILURES:
        return _polygon_track(raw, options)


def _polygon_track(raw: _RawTrack, options: ShapeOptions) -> ShapeTrack:
    count = options.min_points
    points = [_resample(raw.contours[0].points, count)]
    for contour in raw.contours[1:]:
        points.append(_spread_from(points[-1], contour))
    stacked = np.stack(points)
    return ShapeTrack(raw.kind, list(raw.frames), stacked, stacked.copy(), stacked.copy(), np.ones(count, bool),
                      fallback_frames=list(raw.frames))


def _fit_bezier_track(raw: _RawTrack, options: ShapeOptions, fallback: list[int]) -> ShapeTrack:
    dense = _material_samples(raw, options, fallback)
    spacing = float(np.mean([_arc_lengths(c.points)[1] for c in raw.contours])) / dense.shape[1]
    keys = _choose_keys(dense, options, spacing)
    window = max(1, int(round(options.tangent_window / max(spacing, 1e-6))))
    tangents = _tangents(dense, keys, window, math.cos(math.radians(options.corner_angle_deg)))
    points = dense[:, keys]
    handles_out = np.empty_like(points)
    handles_in = np.empty_like(points)
    count = dense.shape[1]
    for i in range(len(keys)):
        j = (i + 1) % len(keys)
        idx = _span_indices(int(keys[i]), int(keys[j]), count)
        a_out, a_in, _, _ = _fit_span(dense[:, idx], tangents.out[:, i], tangents.back[:, j])
        handles_out[:, i] = points[:, i] + a_out[:, None] * tangents.out[:, i]
        handles_in[:, j] = points[:, j] + a_in[:, None] * tangents.back[:, j]
    return ShapeTrack(raw.kind, list(raw.frames), points, handles_in, handles_out, tangents.corners.copy())


# --------------------------------------------------------------------------------------------
# Public API


def masks_to_shapes(masks: Sequence[np.ndarray], frames: Sequence[int], *,
                    tolerance: float | None = None,
                    options: ShapeOptions | None = None) -> list[ShapeTrack]:
    """Animated closed Bezier shapes for one object's masks over a shot.

    masks: one H*W array per frame, all the same size: bool or integer (non-zero is inside),
        or float (alpha / probability, contoured at `options.level`; pass level 0 for logits).
    frames: the plate frame number of each mask, strictly increasing (gaps allowed).
    tolerance: pixels; overrides `options.tolerance` (default: `default_tolerance(H, W)`).
    Returns the tracks ordered by first frame, then outer, islands, holes. Empty masks give no
    keys (see the module docstring for how tracks start and end).
    """
    opts = options or ShapeOptions()
    if tolerance is not None:
        opts = replace(opts, tolerance=tolerance)
    frame_list = [int(f) for f in frames]
    if len(frame_list) != len(masks):
        raise ShapeError(f"got {len(masks)} masks but {len(frame_list)} frame numbers")
    if any(b <= a for a, b in zip(frame_list, frame_list[1:])):
        raise ShapeError("frame numbers must be strictly increasing")
    shape: tuple[int, ...] | None = None
    per_frame: list[tuple[int, list[_Contour]]] = []
    for frame, mask in zip(frame_list, masks):
        mask = np.asarray(mask)
        if mask.ndim != 2:
            raise ShapeError(f"mask for frame {frame} must be H*W, got shape {mask.shape}")
        if shape is None:
            shape = mask.shape
        elif mask.shape != shape:
            raise ShapeError(f"mask for frame {frame} is {mask.shape}, expected {shape} like the first")
        if not (mask.dtype == bool or np.issubdtype(mask.dtype, np.number)):
            raise ShapeError(f"mask for frame {frame} has unsupported dtype {mask.dtype}")
        per_frame.append((frame, _frame_contours(mask, opts)))
    if shape is None:
        return []
    if opts.tolerance is None:
        opts = replace(opts, tolerance=default_tolerance(shape[0], shape[1]))
    return [_fit_track(raw, opts) for raw in _link_tracks(per_frame, opts)]


def bezier_polyline(track: ShapeTrack, index: int, *, samples_per_span: int = 24) -> np.ndarray:
    """Dense closed polyline (N*2, pixel space) of key `index` of a track."""
    if not 0 <= index < len(track.frames):
        raise ShapeError(f"key index {index} out of range for a track with {len(track.frames)} keys")
    p = track.points[index]
    control = np.stack([p, track.handles_out[index], np.roll(track.handles_in[index], -1, axis=0),
                        np.roll(p, -1, axis=0)], axis=1)  # P*4*2
    u = np.broadcast_to(np.linspace(0.0, 1.0, samples_per_span, endpoint=False), (len(p), samples_per_span))
    return _bezier(control, u).reshape(-1, 2)


def fill_polygons(polygons: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """H*W bool: pixels whose centre is inside the closed polylines (N*2 each), even-odd rule.

    Exact pixel-centre sampling (Blender's mask rasteriser samples the same points), so a
    polygon through pixel edges gives back exactly the pixels it encloses; OpenCV's fillPoly
    also paints pixels that the outline merely touches.
    """
    if height <= 0 or width <= 0:
        raise ShapeError(f"height and width must be positive, got {height}x{width}")
    starts, ends = [], []
    for poly in polygons:
        poly = np.asarray(poly, dtype=np.float64)
        if poly.ndim != 2 or poly.shape[1] != 2:
            raise ShapeError(f"polygons must be N*2, got shape {poly.shape}")
        if len(poly) >= 3:
            starts.append(poly)
            ends.append(np.roll(poly, -1, axis=0))
    out = np.zeros((height, width), bool)
    if not starts:
        return out
    a, b = np.concatenate(starts), np.concatenate(ends)
    lo, hi = np.minimum(a[:, 1], b[:, 1]), np.maximum(a[:, 1], b[:, 1])
    # Row i samples y = i + 0.5; an edge crosses the rows with lo <= i + 0.5 < hi.
    first = np.clip(np.ceil(lo - 0.5), 0, height).astype(np.int64)
    last = np.clip(np.ceil(hi - 0.5), 0, height).astype(np.int64)
    counts = np.maximum(last - first, 0)
    if counts.sum() == 0:
        return out
    edge = np.repeat(np.arange(len(a)), counts)
    row = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + first[edge]
    y = row + 0.5
    t = (y - a[edge, 1]) / (b[edge, 1] - a[edge, 1])
    x = a[edge, 0] + t * (b[edge, 0] - a[edge, 0])
    order = np.lexsort((x, row))
    row, x = row[order], x[order]
    # Each row has an even number of crossings; pixel j is inside between pairs when its
    # centre j + 0.5 lies in [x_enter, x_leave).
    col = np.clip(np.ceil(x - 0.5), 0, width).astype(np.int64)
    toggles = np.zeros((height, width + 1), np.int32)
    np.add.at(toggles, (row, col), 1)
    return (np.cumsum(toggles, axis=1)[:, :width] % 2).astype(bool)


def rasterize(track: ShapeTrack, index: int, height: int, width: int) -> np.ndarray:
    """H*W bool: pixels whose centre lies inside key `index` of the track (for tests, previews)."""
    return fill_polygons([bezier_polyline(track, index)], height, width)


def rasterize_tracks(tracks: Sequence[ShapeTrack], frame: int, height: int, width: int) -> np.ndarray:
    """H*W bool: the object on plate frame `frame`: the even-odd fill of the tracks keyed there."""
    polygons = [bezier_polyline(t, t.frames.index(int(frame))) for t in tracks if int(frame) in t.frames]
    return fill_polygons(polygons, height, width)


def to_nuke(points: np.ndarray, height: int) -> np.ndarray:
    """...*2 pixel-space positions to Nuke's: origin at the bottom-left corner, y up."""
    pts = np.asarray(points, dtype=np.float64)
    _check_points(pts)
    out = pts.copy()
    out[..., 1] = height - pts[..., 1]
    return out


def from_nuke(points: np.ndarray, height: int) -> np.ndarray:
    """Inverse of `to_nuke`."""
    return to_nuke(points, height)


def _blender_frame(width: int, height: int, pixel_aspect: float) -> tuple[float, float]:
    if width <= 0 or height <= 0 or not pixel_aspect > 0:
        raise ShapeError(f"need a positive size and pixel aspect, got {width}x{height}, {pixel_aspect}")
    return float(width), float(height) / float(pixel_aspect)


def to_blender(points: np.ndarray, width: int, height: int, *, pixel_aspect: float = 1.0) -> np.ndarray:
    """...*2 pixel-space positions to Blender Mask space (see the module docstring).

    Example, 1920x1080: the plate's top-left corner (0, 0) -> (0, 0.78125), its centre
    (960, 540) -> (0.5, 0.5), its bottom-right corner (1920, 1080) -> (1, 0.21875).
    """
    pts = np.asarray(points, dtype=np.float64)
    _check_points(pts)
    fw, fh = _blender_frame(width, height, pixel_aspect)
    u = pts[..., 0] / width
    v = 1.0 - pts[..., 1] / height
    if fw > fh:
        v = (v - 0.5) * (fh / fw) + 0.5
    elif fh > fw:
        u = (u - 0.5) * (fw / fh) + 0.5
    return np.stack([u, v], axis=-1)


def from_blender(points: np.ndarray, width: int, height: int, *, pixel_aspect: float = 1.0) -> np.ndarray:
    """Inverse of `to_blender`: Blender Mask space to pixel space."""
    pts = np.asarray(points, dtype=np.float64)
    _check_points(pts)
    fw, fh = _blender_frame(width, height, pixel_aspect)
    u, v = pts[..., 0], pts[..., 1]
    if fw > fh:
        v = (v - 0.5) * (fw / fh) + 0.5
    elif fh > fw:
        u = (u - 0.5) * (fh / fw) + 0.5
    return np.stack([u * width, (1.0 - v) * height], axis=-1)


def _check_points(pts: np.ndarray) -> None:
    if pts.ndim < 1 or pts.shape[-1] != 2:
        raise ShapeError(f"points must be ...*2 (x, y), got shape {pts.shape}")


def shape_tracks_to_wire(tracks: Sequence[ShapeTrack], *, space: Space = "pixel", width: int, height: int,
                         pixel_aspect: float = 1.0) -> list[dict]:
    """Tracks as msgpack/JSON-ready dicts of plain Python lists, in the host's coordinates.

    Each dict: ``kind`` ("outer" | "island" | "hole"), ``space``, ``closed`` (always True),
    ``frames`` (list of int), ``corners`` (list of bool, one per point), and ``points``,
    ``handles_in``, ``handles_out`` (each F lists of P ``[x, y]`` pairs of float).

    Handles are absolute positions, like Blender's ``handle_left`` (= handles_in) and
    ``handle_right`` (= handles_out); Nuke's ``ShapeControlPoint`` tangents are relative to the
    point, so subtract. An object is the even-odd fill of its shapes on a frame: holes cut
    (Blender: ``MaskLayer.use_fill_holes``; Nuke: a hole shape in a "minus" blend mode).
    Corner points want free handles (Blender ``FREE``), the others aligned ones (``ALIGNED``).
    ``fallback_frames``: keys whose points come from the fallback for degenerate masks
    (`ShapeTrack.fallback_frames`), usually none.
    """
    if space not in ("pixel", "nuke", "blender"):
        raise ShapeError(f"space must be 'pixel', 'nuke' or 'blender', got {space!r}")
    if width <= 0 or height <= 0:
        raise ShapeError(f"width and height must be positive, got {width}x{height}")

    def convert(a: np.ndarray) -> list:
        if space == "nuke":
            a = to_nuke(a, height)
        elif space == "blender":
            a = to_blender(a, width, height, pixel_aspect=pixel_aspect)
        return np.asarray(a, dtype=np.float64).tolist()

    return [{
        "kind": t.kind,
        "space": space,
        "closed": True,
        "frames": [int(f) for f in t.frames],
        "corners": [bool(c) for c in t.corners],
        "points": convert(t.points),
        "handles_in": convert(t.handles_in),
        "handles_out": convert(t.handles_out),
        "fallback_frames": [int(f) for f in t.fallback_frames],
    } for t in tracks]
