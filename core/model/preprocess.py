"""Frames to model input, as the official SAM 2 video predictor prepares them.

The official video path does `PIL.Image.fromarray(uint8).resize((S, S))`: PIL's default filter for
RGB (bicubic, a = -0.5, antialiased when shrinking), applied horizontally then vertically with the
result rounded to uint8 after each pass; then /255, minus the ImageNet mean, over its std. The
aspect ratio is not kept. `to_model_input` does the same in torch, so it runs on the GPU and needs no
Pillow: each pass is an antialiased bicubic `F.interpolate` followed by the same rounding and clamping.
On real 8-bit frames it matches PIL to within 1 uint8 level (tests/core/test_preprocess.py).

16-bit and float frames go through the same two passes in float, clamped to [0, 1] but not rounded
to 8 bits: a little more precise than the official path, which can only take 8-bit frames (the two
differ by about one uint8 level at most).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "PinnedBuffers", "host_pixels", "model_input_from_host", "to_model_input",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# a bicubic pass shrinking more than this is split: an integer box reduction first (as PIL does with
# `reducing_gap`), so antialiased kernels stay small (CUDA's needs shared memory per tap: 8K plates
# can exceed it) and the work per output pixel stays bounded
MAX_BICUBIC_FACTOR = 4.0


def to_model_input(
    image: "np.ndarray[Any, Any]",
    image_size: int,
    *,
    device: torch.device | str | None = None,
    resize_on_host: bool | None = None,
) -> torch.Tensor:
    """image: H*W*3 RGB (uint8, uint16, or float in [0, 1]) -> 3*S*S float32, ImageNet-normalised.

    The pixels travel to `device` in their own dtype (uint8 is 4x smaller than float) and are resized
    there. An image already S*S is not resampled. `resize_on_host`: resize on the CPU and move the
    result (MPS has no antialiased bicubic kernel; None decides by device).
    """
    return model_input_from_host(host_pixels(image), image_size, device=device, resize_on_host=resize_on_host)


def host_pixels(image: "np.ndarray[Any, Any]", *, buffers: "PinnedBuffers | None" = None) -> torch.Tensor:
    """The host half of preprocessing, safe on any thread (no device work): H*W*3 uint8, or float32
    in [0, 1] for 16-bit and float images, copied into a reusable (pinned) buffer when given."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected an H*W*3 numpy image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"expected an H*W*3 RGB image, got shape {image.shape}")
    if image.dtype == np.uint8:
        array = image
    elif image.dtype == np.uint16:
        # torch's uint16 support is thin: scale on the CPU, in float32
        array = image.astype(np.float32) / np.float32(65535.0)
    elif image.dtype.kind == "f":
        array = np.clip(np.nan_to_num(image.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=0.0),
                        0.0, 1.0)
    else:
        raise ValueError(f"expected a uint8, uint16 or float image, got {image.dtype}")
    pixels = torch.from_numpy(np.ascontiguousarray(array))
    if buffers is not None:
        buffer = buffers.take(tuple(pixels.shape), pixels.dtype)
        buffer.copy_(pixels)
        return buffer
    return pixels


def model_input_from_host(
    pixels: torch.Tensor,
    image_size: int,
    *,
    device: torch.device | str | None = None,
    resize_on_host: bool | None = None,
) -> torch.Tensor:
    """The device half: H*W*3 host pixels (from `host_pixels`) -> 3*S*S normalised on `device`.
    Run it on the thread that computes (CUDA work belongs to the compute thread's stream)."""
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive integer, not {image_size!r}")
    size = (image_size, image_size)
    target = torch.device(device) if device is not None else torch.device("cpu")
    if resize_on_host is None:
        resize_on_host = target.type == "mps"
    where = torch.device("cpu") if resize_on_host else target
    x = _to_device(pixels, where).permute(2, 0, 1)[None]
    if pixels.dtype == torch.uint8:
        x = _resize_like_pil(x.float(), size, white=255.0, round_to_levels=True) / 255.0
    else:
        x = _resize_like_pil(x.float(), size, white=1.0, round_to_levels=False)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std)[0].to(target)


class PinnedBuffers:
    """A ring of reusable host buffers per shape, page-locked on CUDA machines, so a frame's upload is
    asynchronous and no frame allocates (and pins) a fresh 100 MB of host memory.

    A buffer is handed out again only after `count` others, and only once the upload recorded from
    it (`uploaded`) has finished.
    """

    def __init__(self, count: int = 4, *, pin: bool | None = None) -> None:
        self.count = count
        self.pin = torch.cuda.is_available() if pin is None else pin
        self._rings: dict[tuple[tuple[int, ...], torch.dtype], list[torch.Tensor]] = {}
        self._next: dict[tuple[tuple[int, ...], torch.dtype], int] = {}
        self._events: dict[int, object] = {}  # data_ptr -> CUDA event of its last upload

    def take(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        key = (shape, dtype)
        ring = self._rings.setdefault(key, [])
        position = self._next.get(key, 0)
        self._next[key] = (position + 1) % self.count
        if position >= len(ring):
            ring.append(torch.empty(shape, dtype=dtype, pin_memory=self.pin))
            if len(self._rings) > 4:  # the plate size changed: forget old shapes
                for old in [k for k in self._rings if k != key][: len(self._rings) - 4]:
                    del self._rings[old]
        buffer = ring[position]
        event = self._events.pop(buffer.data_ptr(), None)
        if event is not None:
            event.synchronize()  # type: ignore[attr-defined]
        return buffer

    def uploaded(self, buffer: torch.Tensor, device: torch.device) -> None:
        """Note that `buffer` was just copied to `device` asynchronously (on the current stream)."""
        if device.type == "cuda" and buffer.is_pinned():
            event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            event.record(torch.cuda.current_stream(device))
            self._events[buffer.data_ptr()] = event

    def buffers(self) -> int:
        return sum(len(ring) for ring in self._rings.values())


def _to_device(pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Host to device; asynchronous from pinned memory on CUDA."""
    if device.type == "cuda":
        return pixels.to(device, non_blocking=pixels.is_pinned())
    return pixels.to(device)


def _box_reduction(source: int, target: int) -> int:
    """The integer factor to box-reduce an axis by before bicubic, 1 when the pass is small enough."""
    factor = source / target
    return 1 if factor <= MAX_BICUBIC_FACTOR else math.ceil(factor / MAX_BICUBIC_FACTOR)


def _resize_like_pil(x: torch.Tensor, size: tuple[int, int], *, white: float, round_to_levels: bool) -> torch.Tensor:
    """x: 1*3*H*W float in [0, white] -> 1*3*S*S, PIL's two-pass bicubic resize.

    PIL resamples rows first and stores the result in the image's type, then columns: so clamp
    (and, for uint8, round half up) after each pass. Bicubic overshoots at edges; clamping between
    the passes is part of the result. A pass shrinking more than 4x is box-reduced first.
    """

    def settle(t: torch.Tensor) -> torch.Tensor:
        return (torch.floor(t + 0.5) if round_to_levels else t).clamp_(0.0, white)

    height, width = x.shape[-2:]
    if width != size[1]:
        k = _box_reduction(width, size[1])
        if k > 1:
            x = settle(F.avg_pool2d(x, kernel_size=(1, k), stride=(1, k), ceil_mode=True, count_include_pad=False))
        x = settle(F.interpolate(x, size=(height, size[1]), mode="bicubic", align_corners=False, antialias=True))
    if height != size[0]:
        k = _box_reduction(height, size[0])
        if k > 1:
            x = settle(F.avg_pool2d(x, kernel_size=(k, 1), stride=(k, 1), ceil_mode=True, count_include_pad=False))
        x = settle(F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True))
    return x
