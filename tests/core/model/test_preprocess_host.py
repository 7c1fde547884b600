"""Preprocessing split in a host half (any thread: decode, convert, copy into reused pinned buffers)
and a device half (upload, resize, normalise on the compute thread); MPS's host resize and the box
reduction of very large plates, forced on the CPU."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from samroto.core.model.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PinnedBuffers,
    _box_reduction,
    host_pixels,
    model_input_from_host,
    to_model_input,
)


def _plate(height: int, width: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 200
    texture = rng.integers(0, 40, size=(height // 8 + 1, width // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)
    return (base + texture[:height, :width]).clip(0, 255).astype(np.uint8)


def test_host_half_does_no_device_work_and_reuses_buffers() -> None:
    image = _plate(90, 160)
    buffers = PinnedBuffers(count=2, pin=False)
    first = host_pixels(image, buffers=buffers)
    assert first.shape == (90, 160, 3) and first.dtype == torch.uint8 and first.device.type == "cpu"
    assert np.array_equal(first.numpy(), image)
    second = host_pixels(image[::-1].copy(), buffers=buffers)
    third = host_pixels(image, buffers=buffers)
    assert second.data_ptr() != first.data_ptr() and third.data_ptr() == first.data_ptr()
    assert buffers.buffers() == 2
    deep = host_pixels((image.astype(np.uint16) * 257), buffers=buffers)
    assert deep.dtype == torch.float32 and float(deep.max()) <= 1.0
    assert torch.equal(model_input_from_host(third, 64), to_model_input(image, 64))


def test_resize_on_host_gives_the_same_input() -> None:
    image = _plate(120, 200)
    pixels = host_pixels(image)
    assert torch.equal(model_input_from_host(pixels, 64, resize_on_host=True),
                       model_input_from_host(pixels, 64, resize_on_host=False))


def test_very_large_shrinks_are_box_reduced_first_and_stay_close_to_pil() -> None:
    assert _box_reduction(3840, 1024) == 1  # 4K: one bicubic pass, exactly as before
    assert _box_reduction(7680, 1024) == 2 and _box_reduction(4320, 1024) == 2  # 8K
    assert _box_reduction(4096, 256) == 4
    image = _plate(1024, 2048)  # 8x in each direction at 256
    ours = to_model_input(image, 256)
    pil = np.asarray(Image.fromarray(image).resize((256, 256)), dtype=np.float32) / 255.0
    mean, std = np.array(IMAGENET_MEAN, np.float32), np.array(IMAGENET_STD, np.float32)
    levels = np.abs((ours.permute(1, 2, 0).numpy() * std + mean) - pil) * 255
    assert float(np.percentile(levels, 99)) <= 2.0 and float(levels.mean()) <= 0.6, (levels.max(), levels.mean())
