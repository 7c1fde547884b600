"""Edge refinement (guided filter) and temporal smoothing of mattes."""

from __future__ import annotations

import numpy as np
import pytest

from samroto.core.outputs.edges import (EdgeError, RefineOptions, SmoothOptions, TemporalSmoother, edge_band, refine_matte,
                                signed_distance)
from samroto.scripts.bench_edges import degrade_to_logits, edge_region, make_scene, score

# --------------------------------------------------------------------------------------------
# Refinement


@pytest.fixture(scope="module")
def small_scene():
    # 480x270 with a 64x64 "model" grid: 7.5 plate pixels per cell, as 1920x1080 with SAM 2's 256.
    scene = make_scene(480, 270, seed=1, strands=0)
    logits = degrade_to_logits(scene.alpha, low_res=64)
    return scene, (logits > 0).astype(np.float32)


def test_refinement_reduces_boundary_error(small_scene):
    scene, coarse = small_scene
    band = edge_region(scene.alpha, 4)
    refined = refine_matte(coarse, scene.plate, options=RefineOptions(radius=15))
    # Boundary pixels matched within half a pixel: the outline's ripples here are ~1 px deep.
    before = score(coarse, scene.alpha, band, tolerance=0.5)
    after = score(refined, scene.alpha, band, tolerance=0.5)
    assert after.band_mae < 0.6 * before.band_mae, (before, after)
    assert after.boundary_f > before.boundary_f + 0.2, (before, after)
    assert after.iou > before.iou
    assert refined.dtype == np.float32 and refined.min() >= 0.0 and refined.max() <= 1.0


def test_guide_blur_and_clip_keep_plate_grain_out_of_the_matte():
    # Object and background colours close together, heavy grain: the guided filter's gain
    # (about 1 / contrast) multiplies the grain into the matte unless the guide is denoised.
    scene = make_scene(480, 270, seed=2, strands=0, contrast=0.25, grain=0.04)
    coarse = (degrade_to_logits(scene.alpha, low_res=64) > 0).astype(np.float32)
    band = edge_region(scene.alpha, 4)
    raw = refine_matte(coarse, scene.plate, options=RefineOptions(radius=15, guide_blur=0.0, clip=0.0))
    default = refine_matte(coarse, scene.plate, options=RefineOptions(radius=15))
    raw_score = score(raw, scene.alpha, band, tolerance=0.5)
    default_score = score(default, scene.alpha, band, tolerance=0.5)
    assert default_score.band_mae < 0.7 * raw_score.band_mae, (raw_score, default_score)
    assert default_score.boundary_f > raw_score.boundary_f + 0.1, (raw_score, default_score)
    assert default_score.boundary_f > score(coarse, scene.alpha, band, tolerance=0.5).boundary_f


def test_refinement_leaves_pixels_away_from_the_edge_alone(small_scene):
    scene, coarse = small_scene
    options = RefineOptions(radius=6, band=10)
    refined = refine_matte(coarse, scene.plate, options=options)
    far = ~edge_band(coarse, 10)
    assert far.sum() > 0.5 * far.size
    assert np.array_equal(refined[far], coarse[far])
    whole = refine_matte(coarse, scene.plate, options=RefineOptions(radius=6, band=0, clip=0.0))
    assert not np.array_equal(whole[far], coarse[far])  # band 0 refines everywhere


def test_plate_bit_depths_guide_the_same_way(small_scene):
    scene, coarse = small_scene
    options = RefineOptions(radius=8)
    from_8bit = refine_matte(coarse, scene.plate, options=options)
    from_16bit = refine_matte(coarse, scene.plate.astype(np.uint16) * 257, options=options)
    from_float = refine_matte(coarse, scene.plate.astype(np.float32) / 255.0, options=options)
    assert np.allclose(from_8bit, from_16bit, atol=1e-4)
    assert np.allclose(from_8bit, from_float, atol=1e-4)
    gray = refine_matte(coarse, scene.plate, options=RefineOptions(radius=8, color=False))
    assert gray.shape == coarse.shape and not np.allclose(gray, from_8bit)


def test_empty_matte_stays_empty():
    plate = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    assert not refine_matte(np.zeros((40, 50), np.float32), plate).any()


@pytest.mark.parametrize("alpha, plate, message", [
    (np.zeros((10, 10, 1), np.float32), np.zeros((10, 10, 3), np.uint8), "alpha must be H\\*W"),
    (np.zeros((10, 10), np.float32), np.zeros((10, 12, 3), np.uint8), "plate must be"),
    (np.zeros((10, 10), np.uint8), np.zeros((10, 10, 3), np.uint8), "float"),
    (np.full((10, 10), np.nan, np.float32), np.zeros((10, 10, 3), np.uint8), "NaN"),
    (np.zeros((10, 10), np.float32), np.zeros((10, 10, 3), np.int32), "uint8, uint16 or float"),
])
def test_refine_rejects_bad_input(alpha, plate, message):
    with pytest.raises(EdgeError, match=message):
        refine_matte(alpha, plate)


def test_refine_options_are_validated():
    with pytest.raises(ValueError, match="radius"):
        RefineOptions(radius=0)
    with pytest.raises(ValueError, match="eps"):
        RefineOptions(eps=-1.0)
    with pytest.raises(ValueError, match="clip"):
        RefineOptions(clip=0.5)
    with pytest.raises(ValueError, match="guide_blur"):
        RefineOptions(guide_blur=-1.0)
    assert RefineOptions().resolved_radius(1080, 1920) == 15
    assert RefineOptions(radius=4).resolved_radius(1080, 1920) == 4


# --------------------------------------------------------------------------------------------
# Temporal smoothing

ROWS, COLS = 24, 160
CENTRES = np.arange(COLS) + 0.5


def soft_edge(x: float, width: float = 2.0) -> np.ndarray:
    """Object on the left, its 0.5 edge at column position x, a linear ramp `width` px wide."""
    return np.repeat(np.clip(0.5 - (CENTRES - x) / width, 0.0, 1.0)[None], ROWS, axis=0).astype(np.float32)


def edge_position(alpha: np.ndarray) -> float:
    row = alpha[ROWS // 2]
    i = int(np.flatnonzero((row[:-1] >= 0.5) & (row[1:] < 0.5))[0])
    return float(CENTRES[i] + (row[i] - 0.5) / (row[i] - row[i + 1]))


def run_smoother(positions: np.ndarray, options: SmoothOptions | None = None) -> tuple[np.ndarray, np.ndarray]:
    smoother = TemporalSmoother(options)
    frames = [soft_edge(x) for x in positions]
    given = np.array([edge_position(f) for f in frames])
    smoothed = np.array([edge_position(smoother.push(f)) for f in frames])
    return given, smoothed


def test_signed_distance_is_sub_pixel():
    for x in (60.0, 60.3, 60.75):
        phi = signed_distance(soft_edge(x))[ROWS // 2]
        assert np.allclose(phi[50:70], x - CENTRES[50:70], atol=1e-4)
    hard = (np.repeat(CENTRES[None], 4, axis=0) < 40).astype(np.float32)
    assert np.allclose(signed_distance(hard)[1, 36:44], [3.5, 2.5, 1.5, 0.5, -0.5, -1.5, -2.5, -3.5])


def test_smoother_calms_a_static_jittering_edge():
    rng = np.random.default_rng(0)
    given, smoothed = run_smoother(80 + rng.uniform(-0.6, 0.6, 40))
    jitter_in, jitter_out = np.std(np.diff(given)), np.std(np.diff(smoothed))
    assert jitter_out < 0.6 * jitter_in, (jitter_in, jitter_out)
    assert np.abs(smoothed - 80).max() < 0.6  # and stays around the true edge


@pytest.mark.parametrize("speed", [0.3, 1.0, 2.5])
def test_smoother_follows_a_moving_edge_within_a_pixel(speed):
    given, smoothed = run_smoother(20 + speed * np.arange(40))
    assert np.abs(smoothed - given).max() < 1.0
    assert np.abs(smoothed - given)[10:].mean() < 0.25  # no steady lag at constant speed


def test_smoother_first_frame_and_reset_pass_through():
    smoother = TemporalSmoother()
    first = soft_edge(50.0)
    assert np.array_equal(smoother.push(first), first)
    smoother.push(soft_edge(50.4))
    smoother.reset()
    again = soft_edge(50.2)
    assert np.array_equal(smoother.push(again), again)
    assert np.array_equal(smoother.push(np.zeros((8, 9), np.float32)), np.zeros((8, 9), np.float32))  # new size


def test_smooth_options_are_validated():
    with pytest.raises(ValueError, match="jump"):
        SmoothOptions(jump=0)
    with pytest.raises(ValueError, match="position_gain"):
        SmoothOptions(position_gain=1.5)
    with pytest.raises(ValueError, match="velocity_gain"):
        SmoothOptions(velocity_gain=-0.1)
    with pytest.raises(EdgeError, match="alpha must be H\\*W"):
        TemporalSmoother().push(np.zeros(5, np.float32))


def test_smoother_works_on_curved_edges():
    yy, xx = np.mgrid[0:120, 0:200] + 0.5

    def disc(cx: float, radius: float) -> np.ndarray:
        return np.clip(0.5 + (radius - np.hypot(xx - cx, yy - 60)) / 2.0, 0, 1).astype(np.float32)

    rng = np.random.default_rng(0)
    smoother = TemporalSmoother()
    given, smoothed = [], []
    for _ in range(40):  # a disc whose radius chatters by +-0.6 px
        alpha = disc(100, 30 + rng.uniform(-0.6, 0.6))
        given.append(np.sqrt(alpha.sum() / np.pi))
        smoothed.append(np.sqrt(smoother.push(alpha).sum() / np.pi))
    assert np.std(np.diff(smoothed)) < 0.75 * np.std(np.diff(given))
    assert abs(np.mean(smoothed) - np.mean(given)) < 0.1  # no shrinking or growing

    smoother = TemporalSmoother()
    for t in range(40):  # a disc gliding 0.5 px/frame: its centroid is followed within a pixel
        alpha = disc(40 + 0.5 * t, 25)
        out = smoother.push(alpha)
        assert abs((out * xx).sum() / out.sum() - (alpha * xx).sum() / alpha.sum()) < 1.0
