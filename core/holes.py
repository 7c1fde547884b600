"""Filling small holes in mask logits on the device the logits are on (no trip to the host).

The reference fills background components (logits <= 0, 8-connected, border-touching ones included)
of at most `max_area` pixels with 0.1, using a CUDA connected-components extension. Here the same
result comes from plain tensor ops, so it runs on any device without a sync:

* every background pixel starts with its own label; `max_area - 1` rounds of a 3x3 min-filter,
  confined to the background, give every component of at most `max_area` pixels (whose
  diameter is below `max_area`) a single label, its smallest;
* a label region is a whole component exactly when none of its pixels touches a background pixel
  with another label (a component split into several regions always has two touching);
* holes are the whole components with at most `max_area` pixels.

The result is exactly OpenCV's (tests/core/test_holes.py). Each round costs one 3x3 pooling of the
low-res logits, so very large areas go to OpenCV on the host instead.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F

HOLE_VALUE = 0.1
# beyond this many rounds the host's connected components are cheaper than pooling
MAX_DEVICE_AREA = 64


def fill_holes(lowres: torch.Tensor, max_area: int) -> torch.Tensor:
    """B*1*h*w logits -> a copy where background components of at most `max_area` pixels are 0.1."""
    if max_area <= 0 or lowres.numel() == 0:
        return lowres.clone()
    if max_area > MAX_DEVICE_AREA:
        return fill_holes_on_host(lowres, max_area)
    return lowres.masked_fill(small_background_components(lowres, max_area), HOLE_VALUE)


def small_background_components(lowres: torch.Tensor, max_area: int) -> torch.Tensor:
    """B*1*h*w bool: pixels of background components (<= 0, 8-connected) of at most `max_area` pixels."""
    b, _, h, w = lowres.shape
    background = lowres <= 0
    pixels = h * w
    # labels 0..B*h*w-1 are exact in float32 up to 2**24; beyond that use float64
    dtype = torch.float32 if b * pixels < 2**24 else torch.float64
    outside = float(b * pixels)  # larger than every label
    labels = torch.arange(b * pixels, device=lowres.device, dtype=dtype).view(b, 1, h, w)
    labels = torch.where(background, labels, outside)
    for _ in range(max_area - 1):
        smallest = -F.max_pool2d(-labels, kernel_size=3, stride=1, padding=1)
        labels = torch.where(background, smallest, outside)
    # a background pixel next to another label (background only: foreground reads as `outside`)
    neighbour_max = F.max_pool2d(torch.where(background, labels, -1.0), kernel_size=3, stride=1, padding=1)
    neighbour_min = -F.max_pool2d(-labels, kernel_size=3, stride=1, padding=1)
    touching = background & ((neighbour_max != labels) | (neighbour_min != labels))

    index = torch.where(background, labels, outside).long().flatten()
    counts = torch.zeros(b * pixels + 1, device=lowres.device, dtype=torch.int32)
    counts.scatter_add_(0, index, torch.ones_like(index, dtype=torch.int32))
    # index_put with a boolean mask would sync; a scatter does not
    split = torch.zeros(b * pixels + 1, device=lowres.device, dtype=torch.int32)
    split.scatter_add_(0, index, touching.flatten().to(torch.int32))
    small = (counts <= max_area) & (split == 0)
    small[-1] = False  # the `outside` slot
    return small[index].view(b, 1, h, w) & background


def fill_holes_on_host(lowres: torch.Tensor, max_area: int) -> torch.Tensor:
    """The same with OpenCV's connected components on the host (for large areas)."""
    out = lowres.clone()
    cpu = lowres.detach().float().cpu().numpy()
    for i in range(cpu.shape[0]):
        background = (cpu[i, 0] <= 0).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(background, connectivity=8)
        small = np.zeros(count, dtype=bool)
        small[1:] = stats[1:, cv2.CC_STAT_AREA] <= max_area
        holes = small[labels]
        if holes.any():
            out[i, 0][torch.from_numpy(holes).to(out.device)] = HOLE_VALUE
    return out
