"""Hole filling with tensor ops gives exactly what OpenCV's connected components give."""

from __future__ import annotations

import pytest
import torch

from samroto.core.holes import fill_holes, fill_holes_on_host


@pytest.mark.parametrize("max_area", [1, 3, 8, 20])
def test_device_hole_filling_matches_opencv(max_area: int) -> None:
    generator = torch.Generator().manual_seed(max_area)
    # blobs of every size: thresholded smoothed noise, plus isolated pixels and border-touching holes
    noise = torch.randn(4, 1, 48, 40, generator=generator)
    smooth = torch.nn.functional.avg_pool2d(noise, 3, stride=1, padding=1)
    logits = smooth * 5 + 0.3
    logits[0, 0, 0, :3] = -1.0  # a hole on the border
    logits[1, 0, 10, 10] = -2.0
    expected = fill_holes_on_host(logits, max_area)
    actual = fill_holes(logits, max_area)
    assert (expected != logits).any(), "the case has holes to fill"
    assert torch.equal(actual, expected)


def test_nothing_to_fill_and_large_areas() -> None:
    logits = torch.full((1, 1, 8, 8), 3.0)
    assert torch.equal(fill_holes(logits, 8), logits)
    logits = torch.full((2, 1, 16, 16), -1.0)  # all background: one big component each
    assert torch.equal(fill_holes(logits, 8), logits)
    ring = torch.full((1, 1, 30, 30), 2.0)
    ring[0, 0, 5:15, 5:15] = -1.0  # a 100-pixel hole: beyond the device rounds, done on the host
    assert torch.equal(fill_holes(ring, 100), fill_holes_on_host(ring, 100))
    assert float(fill_holes(ring, 100)[0, 0, 10, 10]) == pytest.approx(0.1)
