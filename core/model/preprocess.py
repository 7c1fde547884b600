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

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "to_model_input"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_model_input(image: "np.ndarray[Any, Any]", image_size: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """image: H*W*3 RGB (uint8, uint16, or float in [0, 1]) -> 3*S*S float32, ImageNet-normalised.

    The pixels travel to `device` in their own dtype (uint8 is 4x smaller than float) and are resized
    there. An image already S*S is not resampled.
    """
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected an H*W*3 numpy image, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise ValueError(f"expected an H*W*3 RGB image, got shape {image.shape}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"image_size must be a positive integer, not {image_size!r}")
    size = (image_size, image_size)

    if image.dtype == np.uint8:
        pixels = _to_device(torch.from_numpy(np.ascontiguousarray(image)), device)
        x = pixels.permute(2, 0, 1)[None].float()  # 1*3*H*W, levels 0..255
        x = _resize_like_pil(x, size, white=255.0, round_to_levels=True) / 255.0
    elif image.dtype == np.uint16 or image.dtype.kind == "f":
        if image.dtype == np.uint16:
            # torch's uint16 support is thin: scale on the CPU, in float32
            array = image.astype(np.float32) / np.float32(65535.0)
        else:
            array = np.nan_to_num(image.astype(np.float32, copy=False), nan=0.0, posinf=1.0, neginf=0.0)
        x = _to_device(torch.from_numpy(np.ascontiguousarray(array)), device).permute(2, 0, 1)[None].clamp(0.0, 1.0)
        x = _resize_like_pil(x, size, white=1.0, round_to_levels=False)
    else:
        raise ValueError(f"expected a uint8, uint16 or float image, got {image.dtype}")

    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return ((x - mean) / std)[0]


def _to_device(pixels: torch.Tensor, device: torch.device | str | None) -> torch.Tensor:
    """Host to device through pinned memory on CUDA, so the copy is asynchronous."""
    if device is not None and torch.device(device).type == "cuda":
        return pixels.pin_memory().to(device, non_blocking=True)
    return pixels.to(device)


def _resize_like_pil(x: torch.Tensor, size: tuple[int, int], *, white: float, round_to_levels: bool) -> torch.Tensor:
    """x: 1*3*H*W float in [0, white] -> 1*3*S*S, PIL's two-pass bicubic resize.

    PIL resamples rows first and stores the result in the image's type, then columns: so clamp
    (and, for uint8, round half up) after each pass. Bicubic overshoots at edges; clamping between
    the passes is part of the result.
    """
    height, width = x.shape[-2:]
    if width != size[1]:
        x = F.interpolate(x, size=(height, size[1]), mode="bicubic", align_corners=False, antialias=True)
        x = (torch.floor(x + 0.5) if round_to_levels else x).clamp_(0.0, white)
    if height != size[0]:
        x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True)
        x = (torch.floor(x + 0.5) if round_to_levels else x).clamp_(0.0, white)
    return x
