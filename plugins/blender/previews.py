"""Mask previews (the worker's small run-length masks) -> one RGBA overlay image. No bpy.

Uses numpy (Blender always ships it). The result is ready for a GPU texture: float32 RGBA,
rows bottom-up (Blender textures start at the bottom-left), objects tinted with their colours.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Sequence, Tuple

import numpy as np

from .bridge import preview as preview_rle

Colour = Tuple[float, float, float]

# Distinct, readable tints for objects 1, 2, 3, ... (cycled).
PALETTE: Tuple[Colour, ...] = (
    (1.0, 0.35, 0.2), (0.2, 0.75, 1.0), (0.45, 1.0, 0.3), (1.0, 0.85, 0.2),
    (0.85, 0.4, 1.0), (0.2, 1.0, 0.8), (1.0, 0.45, 0.7), (0.6, 0.6, 1.0),
)


def object_colour(obj_id: int) -> Colour:
    return PALETTE[(int(obj_id) - 1) % len(PALETTE)]


@dataclass
class OverlayImage:
    """width*height RGBA float32, flattened bottom row first (`rgba`: H*W*4)."""

    width: int
    height: int
    rgba: np.ndarray


def decode(preview: Dict[str, Any]) -> np.ndarray:
    """One preview dict -> h*w bool mask (top row first); ValueError if malformed."""
    try:
        return np.asarray(preview_rle.decode(preview, as_numpy=True), dtype=bool)
    except (KeyError, TypeError) as exc:
        raise ValueError("malformed mask preview: %s" % exc) from None


def _resize_nearest(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    if mask.shape == (height, width):
        return mask
    rows = (np.arange(height) * mask.shape[0] // height).clip(0, mask.shape[0] - 1)
    cols = (np.arange(width) * mask.shape[1] // width).clip(0, mask.shape[1] - 1)
    return mask[rows][:, cols]


def overlay_image(layers: Sequence[Tuple[Dict[str, Any], Colour]], *, opacity: float = 0.45) -> OverlayImage:
    """Tinted union of object previews (later layers drawn over earlier ones).

    layers: (preview dict, RGB colour) per object; all are resampled to the largest preview.
    """
    if not layers:
        raise ValueError("no previews to draw")
    masks = [decode(p) for p, _ in layers]
    height = max(m.shape[0] for m in masks)
    width = max(m.shape[1] for m in masks)
    rgba = np.zeros((height, width, 4), np.float32)
    for mask, (_, colour) in zip(masks, layers):
        inside = _resize_nearest(mask, height, width)
        rgba[inside, 0:3] = colour
        rgba[inside, 3] = opacity
    return OverlayImage(width, height, np.ascontiguousarray(rgba[::-1]))


def coverage(preview: Dict[str, Any]) -> float:
    """Fraction of the frame the preview covers (0..1)."""
    mask = decode(preview)
    return float(mask.mean()) if mask.size else 0.0
