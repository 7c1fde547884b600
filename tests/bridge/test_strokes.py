"""Brush strokes and lassos to prompts (core/strokes.py, served through the worker's add_stroke)."""

from __future__ import annotations

import numpy as np
import pytest

from samroto.core import strokes
from samroto.core.strokes import StrokeError, StrokeSettings


def test_resampling_spreads_points_evenly_along_the_stroke() -> None:
    line = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    out = strokes.resample_polyline(line, 5)
    assert np.allclose(out[0], [0, 0]) and np.allclose(out[-1], [10, 10])
    steps = np.linalg.norm(np.diff(out, axis=0), axis=1)
    assert np.allclose(steps[[0, 1, 3]], 5.0)  # the step across the corner is a chord, shorter
    assert np.allclose(strokes.resample_polyline(line, 1), [[10.0, 0.0]])  # the middle by arc length


def test_a_long_stroke_gives_at_most_max_clicks_and_a_dab_gives_one() -> None:
    line = np.stack([np.linspace(0, 300, 50), np.full(50, 20.0)], axis=1)
    points, labels = strokes.stroke_to_clicks(line, label=0, settings=StrokeSettings(max_clicks=6))
    assert points.shape == (6, 2) and labels.tolist() == [0] * 6
    assert points[:, 0].min() == 0 and points[:, 0].max() == 300
    dab, dab_labels = strokes.stroke_to_clicks([[5, 7], [6, 7]], label=1)
    assert dab.shape == (1, 2) and dab_labels.tolist() == [1]


def test_the_brush_covers_its_radius_around_the_stroke() -> None:
    mask = strokes.brush_mask([[10.5, 20.5], [50.5, 20.5]], 5.0, 40, 64)
    yy, xx = np.mgrid[0:40, 0:64]
    centres_x, centres_y = xx + 0.5, yy + 0.5
    dist = np.where(centres_x < 10.5, np.hypot(centres_x - 10.5, centres_y - 20.5),
                    np.where(centres_x > 50.5, np.hypot(centres_x - 50.5, centres_y - 20.5), abs(centres_y - 20.5)))
    assert mask[dist < 4].all()
    assert not mask[dist > 6.5].any()


def test_a_lasso_fills_its_polygon() -> None:
    square = [[10, 10], [30, 10], [30, 40], [10, 40]]
    mask = strokes.lasso_mask(square, 50, 50)
    assert abs(int(mask.sum()) - 20 * 30) <= 2 * (20 + 30)
    assert mask[25, 20] and not mask[5, 5] and not mask[45, 45]
    assert strokes.lasso_box(square, 50, 50) == (10.0, 10.0, 30.0, 40.0)
    assert strokes.lasso_box([[-5, -5], [80, 3], [20, 90]], 50, 60) == (0.0, 0.0, 60.0, 50.0)


def test_include_strokes_add_to_the_mask_and_exclude_strokes_cut_it() -> None:
    current = np.zeros((40, 40), bool)
    current[5:15, 5:15] = True
    added = strokes.stroke_to_prompt([[30, 30]], kind="brush", mode="mask", radius=3, label=1, height=40, width=40,
                                     current_mask=current)
    assert added.kind == "mask" and added.mask[5:15, 5:15].all() and added.mask[29, 29]
    cut = strokes.stroke_to_prompt([[0, 0], [40, 0], [40, 10], [0, 10]], kind="lasso", label=0, height=40,
                                   width=40, current_mask=current)
    assert cut.kind == "mask" and not cut.mask[5:9, 5:15].any() and cut.mask[12:15, 5:15].all()


def test_default_modes_per_kind() -> None:
    brush = strokes.stroke_to_prompt([[1, 1], [30, 1]], height=20, width=40)
    assert brush.kind == "points" and brush.labels.tolist() == [1] * len(brush.points)
    lasso = strokes.stroke_to_prompt([[1, 1], [10, 1], [10, 10]], kind="lasso", height=20, width=40)
    assert lasso.kind == "mask" and lasso.mask.any()
    box = strokes.stroke_to_prompt([[1, 1], [10, 1], [10, 10]], kind="lasso", mode="box", height=20, width=40)
    assert box.kind == "box" and box.box == (1.0, 1.0, 10.0, 10.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(points=[[1, 1]], kind="spray"), "kind"),
    (dict(points=[[1, 1]], mode="blob"), "mode"),
    (dict(points=[[1, 1]], label=2), "label"),
    (dict(points=[[1, 1]], mode="box"), "not box"),
    (dict(points=[[1, 1], [2, 2], [3, 1]], kind="lasso", mode="points"), "not points"),
    (dict(points=[[1, 1], [2, 2]], kind="lasso"), "at least 3 points"),
    (dict(points=[[1, 1, 1]]), "N\\*2"),
    (dict(points=[[1, float("nan")]]), "finite"),
    (dict(points=[], kind="brush"), "N >= 1"),
    (dict(points=[[1, 1], [2, 2], [3, 1]], kind="lasso", mode="box", label=0), "exclude lasso"),
    (dict(points=[[1, 1]], mode="mask", radius=0), "radius"),
    (dict(points=[[1, 1]], mode="mask", radius=1e9), "at most 4096"),
    (dict(points=[[1e12, 1]]), "far outside"),
    (dict(points=np.zeros((100_001, 2))), "at most 100000"),
    (dict(points=[[1, 1]], mode="mask", current_mask=np.zeros((3, 3), bool)), "current mask"),
])
def test_bad_strokes_are_clear_value_errors(kwargs: dict, message: str) -> None:
    points = kwargs.pop("points")
    with pytest.raises(StrokeError, match=message):
        strokes.stroke_to_prompt(points, height=20, width=20, **kwargs)
    assert issubclass(StrokeError, ValueError)
