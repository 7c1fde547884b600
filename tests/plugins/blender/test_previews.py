"""Mask previews -> the RGBA overlay drawn over the clip."""

from __future__ import annotations

import numpy as np
import pytest

from samroto.bridge import preview as preview_rle


@pytest.fixture(scope="module")
def previews(addon_module):
    return addon_module("previews")


def test_the_overlay_tints_each_object_and_starts_at_the_bottom_row(previews) -> None:
    top_left = np.zeros((4, 6), bool)
    top_left[0, 0:2] = True
    bottom = np.zeros((4, 6), bool)
    bottom[3, :] = True
    image = previews.overlay_image([(preview_rle.encode(top_left), (1.0, 0.0, 0.0)),
                                    (preview_rle.encode(bottom), (0.0, 0.0, 1.0))], opacity=0.5)
    assert (image.width, image.height) == (6, 4) and image.rgba.shape == (4, 6, 4)
    assert image.rgba.dtype == np.float32 and image.rgba.flags["C_CONTIGUOUS"]
    # GPU textures start at the bottom row: the mask's top row is the image's last row
    np.testing.assert_array_equal(image.rgba[3, 0], [1.0, 0.0, 0.0, 0.5])
    np.testing.assert_array_equal(image.rgba[3, 2], [0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(image.rgba[0, :, 2], np.ones(6))
    assert float(image.rgba[..., 3].sum()) == pytest.approx(0.5 * (2 + 6))


def test_previews_of_different_sizes_are_resampled_to_the_largest(previews) -> None:
    small = np.zeros((2, 3), bool)
    small[:, 0] = True  # left third
    large = np.zeros((8, 12), bool)
    image = previews.overlay_image([(preview_rle.encode(small), (0.0, 1.0, 0.0)),
                                    (preview_rle.encode(large), (1.0, 1.0, 1.0))])
    assert (image.width, image.height) == (12, 8)
    inside = image.rgba[..., 3] > 0
    assert inside[:, :4].all() and not inside[:, 4:].any()


def test_colours_coverage_and_errors(previews) -> None:
    assert previews.object_colour(1) == previews.PALETTE[0]
    assert previews.object_colour(len(previews.PALETTE) + 1) == previews.PALETTE[0]
    assert previews.object_colour(2) != previews.object_colour(1)
    half = np.zeros((4, 4), bool)
    half[:2] = True
    assert previews.coverage(preview_rle.encode(half)) == 0.5
    with pytest.raises(ValueError, match="no previews"):
        previews.overlay_image([])
    with pytest.raises(ValueError):
        previews.decode({"height": 2})
