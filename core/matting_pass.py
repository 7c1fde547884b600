"""The matting pass: production alpha from the tracked masks with a learned matting model (ViTMatte).

SAM 2's masks are right about *where* an object is but not about hair, motion blur and other soft
edges. ViTMatte is given, for each object on each frame, the plate at full resolution and a trimap
saying where the object surely is, surely is not, and where the alpha must be estimated:

- **Trimap from the tracked logits.** SAM 2 predicts 1/4-resolution logits (256x256 for its 1024
  input) that are upsampled to the plate, so its edge is only known to about one low-res cell,
  `max(H, W) / 256` plate pixels. The unknown band covers at least `min_band_cells` cells on both
  sides of the 0.5 edge, widening to `max_band_cells` cells where the logits themselves are
  uncertain (`|logit| < uncertain_logit`, a shallow slope: hair, blur, a hesitant tracker).
- **Crop and tiles at plate resolution.** The model runs on the object's band plus `context`
  pixels around it; a crop larger than `tile_size` (4K and larger plates, big objects) is cut
  into overlapping tiles, padded to the model's multiple of 32, and blended with linear ramps
  in the overlaps, so there are no seams and memory stays bounded whatever the plate size.
- **Alpha** comes from the model inside the band and from the tracked matte outside it, handed
  over across `feather` pixels at the band's border.
- **Steady in time.** ViTMatte is an image model and its soft values flicker on video: where the
  plate did not change since the previous frame the band's alpha is blended with the previous
  frame's (`deflicker`), then `edges.TemporalSmoother` calms the edge position, as for plain mattes.
- An object with an empty mask on a frame skips the model (its tracked matte is kept).

Memory is flat over a shot: per object, the previous frame's alpha and the smoother's state;
per frame, one tile of activations at a time.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import torch

from .outputs.edges import SmoothOptions, TemporalSmoother
from .matting import MattingModel, load_matting_model
from .outputs.mattes import matte_from_logits


class MattingPassError(ValueError):
    """Bad options or inputs for the matting pass."""


@dataclass(frozen=True)
class MattingOptions:
    """How the matting pass builds trimaps, tiles the plate and steadies the result."""

    uncertain_logit: float = 4.0
    """|logit| below this is uncertain (tracked probability between 2% and 98%)."""
    min_band_cells: float = 1.0
    """The unknown band reaches at least this many SAM 2 low-res cells either side of the edge."""
    max_band_cells: float = 4.0
    """... and, where the logits are uncertain, at most this many."""
    lowres_size: int = 256
    """Side of SAM 2's logit grid (image_size / 4): one cell is max(H, W) / lowres_size plate pixels."""
    context: int = 32
    """Plate pixels of context around the band in the crop the model sees."""
    tile_size: int = 1024
    """Crops larger than this (either side) are tiled; bounds memory (global attention grows as side^4)."""
    tile_overlap: int = 128
    feather: float = 3.0
    """Pixels over which the model's alpha hands over to the tracked matte at the band's border."""
    deflicker: float = 0.5
    """Weight of the previous frame's alpha where the plate is still (0: off)."""
    still_threshold: float = 0.03
    """Largest plate change (0..1, any channel) at which a pixel counts as still."""
    smooth_edges: bool = True
    """Run `edges.TemporalSmoother` on the result."""
    smooth: SmoothOptions = SmoothOptions()

    def __post_init__(self) -> None:
        positive = ("uncertain_logit", "min_band_cells", "lowres_size", "tile_size")
        for name in positive:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise MattingPassError(f"MattingOptions.{name} must be a positive number, got {value!r}")
        if self.max_band_cells < self.min_band_cells:
            raise MattingPassError("MattingOptions.max_band_cells must be >= min_band_cells")
        if self.tile_size % 32 or self.tile_size < 128:
            raise MattingPassError(f"MattingOptions.tile_size must be a multiple of 32, >= 128, not {self.tile_size}")
        if not 0 <= self.tile_overlap <= self.tile_size // 2:
            raise MattingPassError("MattingOptions.tile_overlap must be between 0 and half the tile size")
        if not 0 <= self.deflicker < 1:
            raise MattingPassError(f"MattingOptions.deflicker must be in [0, 1), got {self.deflicker!r}")
        if self.context < 0 or self.feather < 0 or self.still_threshold < 0:
            raise MattingPassError("MattingOptions.context, feather and still_threshold must be >= 0")


TRIMAP_BACKGROUND, TRIMAP_UNKNOWN, TRIMAP_FOREGROUND = 0.0, 0.5, 1.0


def band_radii(height: int, width: int, options: MattingOptions) -> tuple[float, float]:
    """(smallest, largest) half-width of the unknown band in plate pixels for an H*W plate."""
    cell = max(height, width) / options.lowres_size
    return options.min_band_cells * cell, options.max_band_cells * cell


def _trimap(logits: np.ndarray, radii: tuple[float, float], options: MattingOptions) -> np.ndarray:
    inside = logits > 0
    inside_u8 = inside.astype(np.uint8)
    # distance of each pixel centre to the 0.5 edge: half-way to the nearest pixel on the other side
    to_edge = np.where(inside, cv2.distanceTransform(inside_u8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE),
                       cv2.distanceTransform(1 - inside_u8, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)) - 0.5
    smallest, largest = radii
    unknown = (to_edge <= smallest) | ((np.abs(logits) < options.uncertain_logit) & (to_edge <= largest))
    trimap = np.where(inside, TRIMAP_FOREGROUND, TRIMAP_BACKGROUND).astype(np.float32)
    trimap[unknown] = TRIMAP_UNKNOWN
    return trimap


def trimap_for_plate(logits: np.ndarray, options: MattingOptions) -> np.ndarray:
    """logits: H*W tracked logits of a whole plate -> H*W trimap (0, 0.5, 1)."""
    logits = np.asarray(logits, dtype=np.float32)
    return _trimap(logits, band_radii(logits.shape[0], logits.shape[1], options), options)


def _check_plate(plate: np.ndarray) -> np.ndarray:
    """H*W*3 (or H*W) uint8, uint16 or float -> H*W*3 view, unconverted (crops are converted as needed)."""
    plate = np.asarray(plate)
    if plate.ndim == 2:
        plate = plate[..., None]
    if plate.ndim != 3 or plate.shape[2] not in (1, 3, 4):
        raise MattingPassError(f"plate must be H*W*3, got shape {plate.shape}")
    if not (plate.dtype in (np.uint8, np.uint16) or plate.dtype.kind == "f"):
        raise MattingPassError(f"plate must be uint8, uint16 or float, not {plate.dtype}")
    if plate.shape[2] == 1:
        return np.repeat(plate, 3, axis=2)
    return plate[..., :3]


def _as_float(pixels: np.ndarray) -> np.ndarray:
    """A crop of the plate as float32 RGB in [0, 1]."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / 255.0
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / 65535.0
    return np.clip(np.nan_to_num(pixels.astype(np.float32)), 0.0, 1.0)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of tiles of `tile` pixels covering [0, length), neighbours overlapping by >= `overlap`."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    step = (length - tile) / (count - 1)
    return [round(i * step) for i in range(count)]


def _ramp(length: int, overlap: int, first: bool, last: bool) -> np.ndarray:
    """Blend weights along one side of a tile: rising over the overlap where a neighbour exists."""
    weights = np.ones(length, np.float32)
    if overlap > 0:
        ramp = (np.arange(overlap, dtype=np.float32) + 1.0) / (overlap + 1.0)
        if not first:
            weights[:overlap] = np.minimum(weights[:overlap], ramp)
        if not last:
            weights[-overlap:] = np.minimum(weights[-overlap:], ramp[::-1])
    return weights


@dataclass
class _ObjectState:
    alpha: np.ndarray  # H*W float32, the previous frame's result
    smoother: TemporalSmoother


class MattingPass:
    """Per frame, per object: tracked logits + plate -> production alpha. Feed frames in order."""

    def __init__(self, model: MattingModel, options: MattingOptions | None = None) -> None:
        self.model = model.eval()
        self.options = options or MattingOptions()
        self.tiles_run = 0  # model calls so far (for tests and benchmarks)
        self._objects: dict[int, _ObjectState] = {}
        self._previous_plate: np.ndarray | None = None
        self._previous_frame: int | None = None

    def reset(self) -> None:
        """Forget the previous frames (a cut, or a jump to another part of the shot)."""
        self._objects.clear()
        self._previous_plate = None
        self._previous_frame = None

    def run(self, frame: int, plate: np.ndarray, obj_ids: Sequence[int], logits: np.ndarray) -> np.ndarray:
        """plate: H*W*3 (uint8, uint16 or float in [0, 1]); logits: N*H*W tracked logits of the N
        objects -> N*H*W float32 alpha. Frames not following the previous one restart the temporal steps."""
        logits = np.asarray(logits, dtype=np.float32)
        if logits.ndim == 2:
            logits = logits[None]
        image = _check_plate(plate)
        if logits.ndim != 3 or logits.shape[0] != len(obj_ids) or logits.shape[1:] != image.shape[:2]:
            raise MattingPassError(
                f"logits must be N*H*W for {len(obj_ids)} objects on the {image.shape[1]}x{image.shape[0]} plate, "
                f"got {logits.shape}"
            )
        if self._previous_frame is None or abs(int(frame) - self._previous_frame) != 1:
            self.reset()
        previous = self._previous_plate
        if previous is not None and previous.shape != image.shape:
            previous = None
        out = np.empty(logits.shape, np.float32)
        for i, obj_id in enumerate(obj_ids):
            out[i] = self._object_alpha(int(obj_id), image, logits[i], previous)
        # kept as given (uint8 at 4K: 25 MB), compared crop by crop
        self._previous_plate = image.copy()
        self._previous_frame = int(frame)
        return out

    def _object_alpha(self, obj_id: int, image: np.ndarray, logits: np.ndarray,
                      previous: np.ndarray | None) -> np.ndarray:
        opts = self.options
        tracked = matte_from_logits(logits)
        inside = logits > 0
        if not inside.any():
            self._objects.pop(obj_id, None)  # nothing to carry over an absence
            return tracked
        height, width = logits.shape
        radii = band_radii(height, width, opts)
        ys, xs = np.nonzero(inside)
        margin = int(math.ceil(radii[1])) + opts.context
        y0, y1 = max(int(ys.min()) - margin, 0), min(int(ys.max()) + 1 + margin, height)
        x0, x1 = max(int(xs.min()) - margin, 0), min(int(xs.max()) + 1 + margin, width)
        trimap = _trimap(logits[y0:y1, x0:x1], radii, opts)
        unknown = trimap == TRIMAP_UNKNOWN
        alpha = tracked.copy()
        if unknown.any():
            crop_image = _as_float(image[y0:y1, x0:x1])
            predicted = self._predict_crop(crop_image, trimap)
            # hand over to the tracked matte across `feather` pixels inside the band's border
            if opts.feather > 0:
                weight = np.minimum(cv2.distanceTransform(unknown.astype(np.uint8), cv2.DIST_L2, 3) / opts.feather, 1.0)
            else:
                weight = unknown.astype(np.float32)
            crop = alpha[y0:y1, x0:x1]
            alpha[y0:y1, x0:x1] = weight * predicted + (1.0 - weight) * crop
            state = self._objects.get(obj_id)
            if state is not None and previous is not None and opts.deflicker > 0:
                change = np.abs(crop_image - _as_float(previous[y0:y1, x0:x1])).max(axis=2)
                steady = (change <= opts.still_threshold) & unknown
                blended, previous = alpha[y0:y1, x0:x1], state.alpha[y0:y1, x0:x1]
                blended[steady] = (1 - opts.deflicker) * blended[steady] + opts.deflicker * previous[steady]
        state = self._objects.get(obj_id)
        if state is None:
            state = self._objects[obj_id] = _ObjectState(alpha, TemporalSmoother(opts.smooth))
        state.alpha = alpha
        if opts.smooth_edges:
            alpha = state.smoother.push(alpha)
        return alpha

    def _predict_crop(self, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        """image: h*w*3 float in [0, 1], trimap: h*w -> h*w model alpha, tiled when large."""
        opts = self.options
        height, width = trimap.shape
        total = np.zeros((height, width), np.float32)
        weights = np.zeros((height, width), np.float32)
        rows = tile_starts(height, opts.tile_size, opts.tile_overlap)
        cols = tile_starts(width, opts.tile_size, opts.tile_overlap)
        for r, top in enumerate(rows):
            bottom = min(top + opts.tile_size, height)
            for c, left in enumerate(cols):
                right = min(left + opts.tile_size, width)
                tile_trimap = trimap[top:bottom, left:right]
                if not (tile_trimap == TRIMAP_UNKNOWN).any():
                    continue  # nothing to estimate here; the tracked matte stands
                alpha = self._predict_tile(image[top:bottom, left:right], tile_trimap)
                weight = np.outer(
                    _ramp(bottom - top, opts.tile_overlap, r == 0, r == len(rows) - 1),
                    _ramp(right - left, opts.tile_overlap, c == 0, c == len(cols) - 1),
                )
                total[top:bottom, left:right] += weight * alpha
                weights[top:bottom, left:right] += weight
        covered = weights > 0
        total[covered] /= weights[covered]
        # pixels no tile estimated are known ones: take the trimap's value there
        total[~covered] = trimap[~covered]
        return total

    def _predict_tile(self, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        device = self.model.device
        dtype = self.model.backbone.patch_embed.weight.dtype
        image_t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None].to(device, dtype)
        trimap_t = torch.from_numpy(np.ascontiguousarray(trimap))[None, None].to(device, dtype)
        alpha = self.model.predict(image_t, trimap_t)
        self.tiles_run += 1
        return alpha[0, 0].float().cpu().numpy()


def load_matting_pass(
    model: str | os.PathLike[str],
    *,
    options: MattingOptions | None = None,
    device: str | torch.device | None = None,
) -> MattingPass:
    """The pass with a ViTMatte checkpoint: a file, or a model name (`vitmatte-small`) in the cache."""
    from .matting.download import resolve_matting_checkpoint

    path, preset_name = resolve_matting_checkpoint(model)
    return MattingPass(load_matting_model(path, config=preset_name, device=device), options)
