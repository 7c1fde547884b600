"""An artist's Mask splines rasterised as a mask prompt (no Blender)."""

from __future__ import annotations

import numpy as np
import pytest

from samroto.core.sidecar import decode_mask_rle, encode_mask_rle


@pytest.fixture(scope="module")
def rasterize(addon_module):
    return addon_module("rasterize")


def _square(x0: float, y0: float, x1: float, y1: float):
    """A square spline whose handles sit on its points (straight sides)."""
    points = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
    return points, points, points


def test_a_square_fills_the_pixels_whose_centres_it_covers(rasterize) -> None:
    polygon = rasterize.spline_polygon(*_square(10, 20, 50, 40))
    mask = rasterize.fill_polygons([polygon], 60, 80)
    assert mask.sum() == 40 * 20 and mask[20:40, 10:50].all()
    assert not mask[19].any() and not mask[:, 50].any()


def test_an_inner_spline_is_a_hole_and_curves_are_followed(rasterize) -> None:
    outer = rasterize.spline_polygon(*_square(0, 0, 60, 60))
    hole = rasterize.spline_polygon(*_square(20, 20, 40, 40))
    mask = rasterize.fill_polygons([outer, hole], 60, 60)
    assert mask.sum() == 60 * 60 - 20 * 20 and not mask[25, 25]
    # a circle from four Bezier segments (handle length 0.5523 r) covers about pi r^2
    r, c, k = 20.0, (30.0, 30.0), 0.5523 * 20.0
    points = [(c[0] + r, c[1]), (c[0], c[1] + r), (c[0] - r, c[1]), (c[0], c[1] - r)]
    left = [(c[0] + r, c[1] - k), (c[0] + k, c[1] + r), (c[0] - r, c[1] + k), (c[0] - k, c[1] - r)]
    right = [(c[0] + r, c[1] + k), (c[0] - k, c[1] + r), (c[0] - r, c[1] - k), (c[0] + k, c[1] - r)]
    disc = rasterize.fill_polygons([rasterize.spline_polygon(points, left, right)], 60, 60)
    assert abs(disc.sum() - np.pi * r * r) < 0.01 * np.pi * r * r


def test_run_length_encoding_matches_the_sidecars(rasterize) -> None:
    rng = np.random.default_rng(3)
    for shape in [(7, 9), (1, 1), (4, 5)]:
        mask = rng.random(shape) > 0.5
        encoded = rasterize.encode_rle(mask)
        assert encoded == encode_mask_rle(mask)
        np.testing.assert_array_equal(decode_mask_rle(encoded), mask)
    assert rasterize.encode_rle(np.ones((2, 2), bool))["counts"] == [0, 4]


def test_bad_input_is_refused(rasterize) -> None:
    with pytest.raises(ValueError, match="at least two points"):
        rasterize.spline_polygon([(0, 0)], [(0, 0)], [(0, 0)])
    with pytest.raises(ValueError, match="out of range"):
        rasterize.fill_polygons([], 0, 10)
