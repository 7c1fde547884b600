"""Matte edges: snapping the upsampled matte to the plate, and calming edge chatter over time.

SAM 2 predicts an object's mask as 256x256 logits (for its 1024x1024 input) that are bilinearly
upsampled to the plate. At 1920x1080 one logit cell covers about 7.5 x 4.2 plate pixels, so the
upsampled edge is smooth and blobby: it misses hair, fingers and anything thinner than a cell,
and it wobbles from frame to frame by a pixel or two. Two optional steps help compositors:

- `refine_matte`: a guided filter (He, Sun and Tang, "Guided Image Filtering", 2010) at full
  resolution with the plate as the guide. Inside each small window the output is an affine
  function of the plate's colour, fitted to the upsampled matte, so the matte's edge moves onto
  the plate's colour edge and takes its softness (motion blur, defocus, hair). The plate is
  blurred slightly first and the result clipped (black / white at 10%), because the filter
  multiplies plate grain into the matte, the more so the closer the object's colours are to the
  background's. Only a band around the matte's edge is touched; elsewhere the matte is kept.
- `TemporalSmoother`: per-pixel tracking of the edge position (the signed distance to the 0.5
  contour, in pixels, sub-pixel accurate) with an alpha-beta filter (position and speed), which removes sub-jump
  jitter yet follows an edge moving at constant speed without lag. Moves larger than
  `SmoothOptions.jump` pixels (beyond the prediction) pass straight through. The matte itself is
  then resampled along the edge normal, so soft edge profiles are kept, only moved.

Both are configured by frozen dataclasses (`RefineOptions`, `SmoothOptions`).
Arrays: `alpha: H*W` float in 0..1; `plate: H*W*3` (or H*W) uint8, uint16 or float.
Cost at 1920x1080 on two CPU cores, for an object filling most of the frame: 0.1-0.2 s per
frame for `refine_matte` (colour guide; `samroto bench edges` prints it) and about 40 ms for
`TemporalSmoother.push` (it only computes pixels near the edge).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


class EdgeError(ValueError):
    """Bad input to the edge tools (shapes, dtypes, options)."""


# --------------------------------------------------------------------------------------------
# Guided-filter refinement


@dataclass(frozen=True)
class RefineOptions:
    """Guided-filter refinement of a matte against its plate."""

    radius: int | None = None
    """Window radius in pixels. None: two low-res mask cells, 2 * max(H, W) / 256 (15 at 1920)."""
    eps: float = 1e-3
    """Regularisation, in squared guide units (plate scaled to 0..1). Larger: smoother output
    that follows the plate less; smaller: follows faint plate edges (and noise) too."""
    band: int | None = None
    """Refine only within this many pixels of the matte's edge. None: 2 * radius.
    0: refine the whole frame (also lets texture inside the object leak into the matte)."""
    color: bool = True
    """Guide with the plate's three channels (edges between colours of equal brightness);
    False guides with luminance only (about 3x faster)."""
    guide_blur: float = 0.7
    """Gaussian sigma in pixels applied to the plate before guiding: grain otherwise passes
    into the matte, amplified where object and background colours are close. 0: off."""
    clip: float = 0.1
    """Clip black / clip white: refined values below `clip` become 0 and above 1 - `clip`
    become 1, stretching the rest (removes the faint grain halo the filter leaves). 0: off."""

    def __post_init__(self) -> None:
        if self.radius is not None and (not isinstance(self.radius, int) or self.radius < 1):
            raise EdgeError(f"RefineOptions.radius must be a positive int or None, got {self.radius!r}")
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps > 0):
            raise EdgeError(f"RefineOptions.eps must be a positive number, got {self.eps!r}")
        if self.band is not None and (not isinstance(self.band, int) or self.band < 0):
            raise EdgeError(f"RefineOptions.band must be an int >= 0 or None, got {self.band!r}")
        if not (math.isfinite(self.guide_blur) and self.guide_blur >= 0):
            raise EdgeError(f"RefineOptions.guide_blur must be >= 0, got {self.guide_blur!r}")
        if not 0 <= self.clip < 0.5:
            raise EdgeError(f"RefineOptions.clip must be in [0, 0.5), got {self.clip!r}")

    def resolved_radius(self, height: int, width: int) -> int:
        if self.radius is not None:
            return self.radius
        return max(2, int(round(2.0 * max(height, width) / 256)))


def _check_alpha(alpha: np.ndarray, name: str = "alpha") -> np.ndarray:
    alpha = np.asarray(alpha)
    if alpha.ndim != 2:
        raise EdgeError(f"{name} must be H*W, got shape {alpha.shape}")
    if alpha.dtype == bool:
        return alpha.astype(np.float32)
    if not np.issubdtype(alpha.dtype, np.floating):
        raise EdgeError(f"{name} must be float (0..1) or bool, got {alpha.dtype}")
    out = alpha.astype(np.float32, copy=False)
    if not np.all(np.isfinite(out)):
        raise EdgeError(f"{name} contains NaN or infinite values")
    return out


def _guide_from_plate(plate: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """plate (H*W*C or H*W; uint8/uint16/float) -> H*W*C float32 scaled to about 0..1."""
    plate = np.asarray(plate)
    if plate.ndim == 2:
        plate = plate[..., None]
    if plate.ndim != 3 or plate.shape[:2] != shape or plate.shape[2] not in (1, 3, 4):
        raise EdgeError(f"plate must be H*W*3 (or H*W) matching alpha {shape}, got shape {plate.shape}")
    plate = plate[..., :3] if plate.shape[2] == 4 else plate
    if plate.dtype == np.uint8:
        return plate.astype(np.float32) / 255.0
    if plate.dtype == np.uint16:
        return plate.astype(np.float32) / 65535.0
    if np.issubdtype(plate.dtype, np.floating):
        guide = plate.astype(np.float32)
        if not np.all(np.isfinite(guide)):
            raise EdgeError("plate contains NaN or infinite values")
        return guide
    raise EdgeError(f"plate must be uint8, uint16 or float, got {plate.dtype}")


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    size = 2 * radius + 1
    return cv2.boxFilter(image, -1, (size, size), normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter. guide: H*W*C float32 (C = 1 or 3), source: H*W float32."""
    if guide.shape[2] == 1:
        g = guide[..., 0]
        mean_g, mean_s = _box(g, radius), _box(source, radius)
        cov = _box(g * source, radius) - mean_g * mean_s
        var = _box(g * g, radius) - mean_g * mean_g
        a = cov / (var + eps)
        b = mean_s - a * mean_g
        return _box(a, radius) * g + _box(b, radius)
    mean_g = _box(guide, radius)  # H*W*3
    mean_s = _box(source, radius)
    cov = _box(guide * source[..., None], radius) - mean_g * mean_s[..., None]
    # Per-pixel 3x3 covariance of the guide (+ eps I), inverted in closed form.
    pairs = {}
    for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)):
        pairs[i, j] = _box(guide[..., i] * guide[..., j], radius) - mean_g[..., i] * mean_g[..., j]
    rr, rg, rb = pairs[0, 0] + eps, pairs[0, 1], pairs[0, 2]
    gg, gb, bb = pairs[1, 1] + eps, pairs[1, 2], pairs[2, 2] + eps
    inv_rr = gg * bb - gb * gb
    inv_rg = gb * rb - rg * bb
    inv_rb = rg * gb - gg * rb
    inv_gg = rr * bb - rb * rb
    inv_gb = rb * rg - rr * gb
    inv_bb = rr * gg - rg * rg
    det = rr * inv_rr + rg * inv_rg + rb * inv_rb
    c0, c1, c2 = cov[..., 0], cov[..., 1], cov[..., 2]
    a = np.stack([
        inv_rr * c0 + inv_rg * c1 + inv_rb * c2,
        inv_rg * c0 + inv_gg * c1 + inv_gb * c2,
        inv_rb * c0 + inv_gb * c1 + inv_bb * c2,
    ], axis=-1) / det[..., None]
    b = mean_s - np.einsum("hwc,hwc->hw", a, mean_g)
    return np.einsum("hwc,hwc->hw", _box(a, radius), guide) + _box(b, radius)


def edge_band(alpha: np.ndarray, width: int) -> np.ndarray:
    """H*W bool: pixels within `width` pixels of the matte's 0.5 edge or of a partial value."""
    inside = (alpha >= 0.5).astype(np.uint8)
    cross = np.ones((3, 3), np.uint8)
    edge = (cv2.dilate(inside, cross) != cv2.erode(inside, cross)) | ((alpha > 0.02) & (alpha < 0.98))
    size = 2 * width + 1
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.dilate(edge.astype(np.uint8), disc).astype(bool)


def refine_matte(alpha: np.ndarray, plate: np.ndarray, *, options: RefineOptions | None = None) -> np.ndarray:
    """Snap a matte's edges to the plate (guided filter at full resolution; see module docstring).

    alpha: H*W float 0..1 (or bool), e.g. the sigmoid of SAM 2's upsampled logits.
    plate: H*W*3 (RGB or BGR, any order) or H*W, uint8 / uint16 / float (float used as is:
        give display-referred values, not scene-linear, for edges in shadows to count).
    Returns H*W float32 in 0..1. Pixels farther than the band from the edge keep their value.
    """
    opts = options or RefineOptions()
    a = _check_alpha(alpha)
    height, width = a.shape
    guide = _guide_from_plate(plate, (height, width))
    if not opts.color:
        weights = np.array([0.2126, 0.7152, 0.0722], np.float32)[: guide.shape[2]]
        guide = (guide @ (weights / weights.sum()))[..., None]
    radius = opts.resolved_radius(height, width)

    def blurred(g: np.ndarray) -> np.ndarray:
        if opts.guide_blur <= 0:
            return g
        return cv2.GaussianBlur(g, (0, 0), opts.guide_blur).reshape(g.shape)

    def clipped(values: np.ndarray) -> np.ndarray:
        if opts.clip > 0:
            values = (values - opts.clip) / (1.0 - 2.0 * opts.clip)
        return np.clip(values, 0.0, 1.0)

    band_width = 2 * radius if opts.band is None else opts.band
    if band_width == 0:
        return clipped(guided_filter(blurred(guide), a, radius, opts.eps))
    band = edge_band(a, band_width)
    if not band.any():
        return a.copy()
    rows = np.flatnonzero(band.any(axis=1))
    cols = np.flatnonzero(band.any(axis=0))
    margin = 2 * radius + 1  # the filter reads this far
    r0, r1 = max(rows[0] - margin, 0), min(rows[-1] + margin + 1, height)
    c0, c1 = max(cols[0] - margin, 0), min(cols[-1] + margin + 1, width)
    refined = clipped(guided_filter(blurred(np.ascontiguousarray(guide[r0:r1, c0:c1])),
                                    np.ascontiguousarray(a[r0:r1, c0:c1]), radius, opts.eps))
    # Fade from refined to original over the outer `radius` pixels of the band.
    weight = _box(band[r0:r1, c0:c1].astype(np.float32), max(1, radius // 2))
    weight = np.clip(2.0 * weight - 1.0, 0.0, 1.0) * band[r0:r1, c0:c1]
    out = a.copy()
    crop = out[r0:r1, c0:c1]
    out[r0:r1, c0:c1] = np.clip(crop + weight * (refined - crop), 0.0, 1.0)
    return out


# --------------------------------------------------------------------------------------------
# Temporal smoothing


@dataclass(frozen=True)
class SmoothOptions:
    """Edge-position smoothing over time (alpha-beta filter on the signed distance to the edge)."""

    jump: float = 1.5
    """Pixels. An edge that lands farther than this from where it was predicted is real motion:
    it passes through untouched (and the filter restarts there). Chatter below it is smoothed."""
    position_gain: float = 0.5
    """Share of each frame's surprise (measured minus predicted edge position) accepted at once
    (1: no smoothing)."""
    velocity_gain: float = 0.2
    """Share of the surprise that updates the edge's speed; with it, an edge moving at constant
    speed is followed without lag."""
    band: float = 4.0
    """Pixels. Only pixels this close to the edge are smoothed."""

    def __post_init__(self) -> None:
        for name in ("jump", "band"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise EdgeError(f"SmoothOptions.{name} must be a positive number, got {value!r}")
        if not 0 < self.position_gain <= 1:
            raise EdgeError(f"SmoothOptions.position_gain must be in (0, 1], got {self.position_gain!r}")
        if not 0 <= self.velocity_gain <= 1:  # with position_gain <= 1 this keeps the filter stable
            raise EdgeError(f"SmoothOptions.velocity_gain must be in [0, 1], got {self.velocity_gain!r}")


@dataclass
class _EdgeField:
    """Signed distance to a matte's 0.5 edge, kept only near the edge (sparse)."""

    inside: np.ndarray  # H*W bool: alpha >= 0.5
    index: np.ndarray  # K flat indices of the pixels within `limit` px of the edge
    distance: np.ndarray  # K float32: signed distance in px (> 0 inside), clipped to +-limit
    normal: np.ndarray  # K*2 float32: unit direction (x, y) in which the distance grows (inward)


def _edge_field(alpha: np.ndarray, limit: float | None) -> _EdgeField:
    """The signed distance near the edge (all pixels when `limit` is None).

    Pixels on either side of the edge (a 4-neighbour on the other side of 0.5) get sub-pixel
    distances from where alpha crosses 0.5 between them and those neighbours: along each axis
    the nearest crossing, at dx and dy, then 1 / sqrt(1/dx^2 + 1/dy^2), the distance to a
    straight edge through both (0.5 for a hard edge). Every other pixel adds its exact distance
    to the nearest of those edge pixels. So an edge that moves by a fraction of a pixel moves
    the field by that fraction, not by whole pixels.
    """
    height, width = alpha.shape
    inside = alpha >= 0.5
    inside_u8 = inside.astype(np.uint8)
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    edge = cv2.erode(inside_u8, cross, borderType=cv2.BORDER_REPLICATE) != cv2.dilate(
        inside_u8, cross, borderType=cv2.BORDER_REPLICATE)
    edge_index = np.flatnonzero(edge)
    if edge_index.size == 0:
        empty = np.zeros(0, np.float32)
        return _EdgeField(inside, np.zeros(0, np.int64), empty, np.zeros((0, 2), np.float32))
    flat_alpha = alpha.ravel()
    ey, ex = np.divmod(edge_index, width)
    here = flat_alpha[edge_index].astype(np.float64)
    on_inside = here >= 0.5
    inverse_square = np.zeros(len(edge_index))
    gradient = np.zeros((len(edge_index), 2))
    for axis, (ny_a, nx_a, ny_b, nx_b) in enumerate((
            (ey, np.maximum(ex - 1, 0), ey, np.minimum(ex + 1, width - 1)),
            (np.maximum(ey - 1, 0), ex, np.minimum(ey + 1, height - 1), ex))):
        nearest_crossing = np.full(len(edge_index), np.inf)
        for ny, nx in ((ny_a, nx_a), (ny_b, nx_b)):
            other = flat_alpha[ny * width + nx].astype(np.float64)
            crosses = (other >= 0.5) != on_inside
            with np.errstate(divide="ignore", invalid="ignore"):
                t = np.clip((here - 0.5) / (here - other), 0.0, 1.0)
            nearest_crossing = np.where(crosses, np.minimum(nearest_crossing, t), nearest_crossing)
        found = np.isfinite(nearest_crossing)
        inverse_square[found] += 1.0 / np.maximum(nearest_crossing[found], 1e-3) ** 2
        gradient[:, axis] = (flat_alpha[ny_b * width + nx_b] - flat_alpha[ny_a * width + nx_a]) / 2.0
    own = np.where(inverse_square > 0, 1.0 / np.sqrt(np.maximum(inverse_square, 1e-12)), 0.5)
    own = np.where(on_inside, own, -own)

    if limit is None:
        index = np.arange(height * width)
    else:
        size = 2 * int(math.ceil(limit)) + 1
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        index = np.flatnonzero(cv2.dilate(edge.astype(np.uint8), disc))
    # Labels number the edge pixels in raster order from 1: the nearest edge pixel of each pixel.
    _, labels = cv2.distanceTransformWithLabels((~edge).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    nearest = labels.ravel()[index].astype(np.int64) - 1
    py, px = np.divmod(index, width)
    vx, vy = (px - ex[nearest]).astype(np.float64), (py - ey[nearest]).astype(np.float64)
    gap = np.hypot(vx, vy)
    sign = np.where(inside.ravel()[index], 1.0, -1.0)
    distance = sign * gap + own[nearest]
    if limit is not None:
        distance = np.clip(distance, -limit, limit)
    # Inward direction: away from the nearest edge pixel inside, towards it outside; on the
    # edge pixels themselves, up the alpha gradient.
    with np.errstate(divide="ignore", invalid="ignore"):
        normal = np.stack([sign * vx / gap, sign * vy / gap], axis=1)
    at_edge = gap == 0
    g = gradient[nearest[at_edge]]
    normal[at_edge] = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-9)
    return _EdgeField(inside, index, distance.astype(np.float32), normal.astype(np.float32))


def signed_distance(alpha: np.ndarray) -> np.ndarray:
    """H*W float32: distance in pixels from each pixel centre to the matte's 0.5 edge, > 0 inside.

    Sub-pixel near the edge (see `_edge_field`); +-(H + W) when the matte has no edge.
    """
    a = _check_alpha(alpha)
    field = _edge_field(a, None)
    far = float(sum(a.shape))
    out = np.where(field.inside, far, -far).astype(np.float32).ravel()
    out[field.index] = field.distance
    return out.reshape(a.shape)


def _sample_bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Values of an H*W image at fractional (column, row) positions, borders clamped."""
    height, width = image.shape
    x = np.clip(x, 0.0, width - 1.0)
    y = np.clip(y, 0.0, height - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), width - 2) if width > 1 else np.zeros(len(x), np.int64)
    y0 = np.minimum(np.floor(y).astype(np.int64), height - 2) if height > 1 else np.zeros(len(y), np.int64)
    x1, y1 = np.minimum(x0 + 1, width - 1), np.minimum(y0 + 1, height - 1)
    fx, fy = x - x0, y - y0
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bottom = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


class TemporalSmoother:
    """Feed mattes in frame order with `push`; get them back with calmer edges.

    State is per pixel: the filtered edge distance and its speed. Only pixels near the edge are
    computed, so the cost follows the edge's length rather than the frame's size. Call `reset()`
    at a cut or when jumping to another part of the shot (a different size also resets).
    """

    def __init__(self, options: SmoothOptions | None = None) -> None:
        self.options = options or SmoothOptions()
        self._distance: np.ndarray | None = None  # flat H*W, clipped to +-reach
        self._speed: np.ndarray | None = None
        self._measured: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None

    def reset(self) -> None:
        self._distance = self._speed = self._measured = None
        self._shape = None

    def push(self, alpha: np.ndarray) -> np.ndarray:
        """alpha: H*W float 0..1 (or bool) -> H*W float32, the same matte with smoothed edges."""
        opts = self.options
        a = _check_alpha(alpha)
        # Track distances a little beyond the band, so an approaching edge has a speed by the
        # time it arrives; beyond that every pixel just reads "far inside" or "far outside".
        reach = opts.band + 2.0 * opts.jump + 1.0
        field = _edge_field(a, reach)
        measured = np.where(field.inside.ravel(), np.float32(reach), np.float32(-reach))
        measured[field.index] = field.distance
        if self._distance is None or self._shape != a.shape:
            self._distance, self._speed, self._measured = measured, np.zeros_like(measured), measured
            self._shape = (a.shape[0], a.shape[1])
            return a.copy()
        assert self._speed is not None and self._measured is not None
        idx = field.index
        phi = field.distance
        previous = self._distance[idx]
        predicted = previous + self._speed[idx]
        surprise = phi - predicted
        near = (np.abs(phi) < opts.band) & (np.abs(previous) < opts.band + opts.jump)
        jumped = np.abs(surprise) > opts.jump
        # Real motion rarely stops at one pixel: let a whole neighbourhood pass through with it,
        # so smoothed and unsmoothed pixels do not tear the edge apart.
        jump_image = np.zeros(a.size, np.uint8)
        jump_image[idx[jumped]] = 1
        moving = cv2.dilate(jump_image.reshape(a.shape), np.ones((5, 5), np.uint8)).ravel()[idx].astype(bool)
        filtered = near & ~moving
        distance = np.where(filtered, predicted + opts.position_gain * surprise, phi)
        # Where motion passed through (and outside the band, where an edge may be arriving),
        # carry the speed just measured, so that an edge that keeps moving is predicted on the
        # next frame instead of lagging while the filter learns its speed.
        speed = np.where(filtered, self._speed[idx] + opts.velocity_gain * surprise,
                         np.where(jumped | ~near, phi - self._measured[idx], 0.0))
        self._distance = measured.copy()
        self._distance[idx] = distance
        self._speed = np.zeros_like(measured)
        self._speed[idx] = speed
        self._measured = measured
        shift = np.clip(distance - phi, -opts.jump, opts.jump) * filtered
        moved = np.flatnonzero(shift)
        out = a.copy()
        if moved.size:
            # Resample the matte along the edge normal by `shift` (> 0: the object grows there).
            py, px = np.divmod(idx[moved], a.shape[1])
            step = shift[moved, None] * field.normal[moved]
            out.ravel()[idx[moved]] = _sample_bilinear(a, px + step[:, 0], py + step[:, 1])
        return out
