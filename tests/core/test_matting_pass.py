"""The matting pass end to end on a synthetic plate with a known soft alpha (random ViTMatte weights).

These check the plumbing, not matting quality: where the trimap's band lies and how it scales, that
tiles leave no seams, that alpha is the model's inside the band and the tracked matte outside, that
the temporal steps calm flicker, that empty masks skip the model, and the files written.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from samroto.core.matting import BackboneConfig, MattingConfig, MattingModel
from samroto.core.matting_pass import (TRIMAP_UNKNOWN, MattingOptions, MattingPass, band_radii, tile_starts,
                                       trimap_for_plate)
from samroto.core.outputs.mattes import MatteSequenceWriter, read_matte, read_matte_layers

TINY = MattingConfig(
    name="tiny",
    backbone=BackboneConfig(hidden_size=32, depth=2, num_heads=2, window_size=4, window_blocks=(0,),
                            residual_blocks=(1,), pretrain_image_size=64, image_size=128),
    detail_channels=(8, 8, 8),
    fusion_channels=(8, 8, 8, 8),
)


@pytest.fixture(scope="module")
def model() -> MattingModel:
    torch.manual_seed(0)
    return MattingModel(TINY).eval()


def synthetic_shot(height: int, width: int, *, frames: int = 1, shift: float = 0.0, seed: int = 0):
    """Plates (F*H*W*3 uint8), true alpha (F*H*W) and SAM 2-like logits (F*H*W): a soft disc with thin
    strands over a textured background; the logits are the alpha seen at 1/4 of 1024 (blobby, no strands)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    background = (((yy // 8 + xx // 8) % 2) * 80 + 60)[..., None] + rng.normal(0, 12, (height, width, 3))
    foreground = np.array([230.0, 180.0, 90.0])
    plates, alphas, logits = [], [], []
    for f in range(frames):
        cy, cx, radius = height * 0.5, width * 0.45 + f * shift, min(height, width) * 0.28
        r = np.hypot(yy - cy, xx - cx)
        alpha = np.clip((radius - r) / 2.0 + 0.5, 0, 1)  # soft edge, 2 px
        angle = np.arctan2(yy - cy, xx - cx)
        strands = (np.abs(np.sin(angle * 12)) < 0.04) & (r < radius * 1.35)
        alpha = np.maximum(alpha, strands * 0.6)
        plate = alpha[..., None] * foreground + (1 - alpha[..., None]) * background
        plates.append(np.clip(plate, 0, 255).astype(np.uint8))
        alphas.append(alpha.astype(np.float32))
        low = cv2.resize(alpha, (256 * width // max(height, width), 256 * height // max(height, width)),
                         interpolation=cv2.INTER_AREA)
        up = cv2.resize(low, (width, height), interpolation=cv2.INTER_LINEAR)
        logits.append((12.0 * (up - 0.5)).astype(np.float32))
    return np.stack(plates), np.stack(alphas), np.stack(logits)


def test_trimap_band_follows_the_edge_and_scales_with_the_plate() -> None:
    options = MattingOptions()
    _, alpha, logits = synthetic_shot(270, 480)
    widths = []
    # the same tracker output on a plate twice as large: SAM 2's logits are upsampled from the same grid
    for scale in (1, 2):
        plate_logits = cv2.resize(logits[0], (480 * scale, 270 * scale), interpolation=cv2.INTER_LINEAR)
        trimap = trimap_for_plate(plate_logits, options)
        unknown = trimap == TRIMAP_UNKNOWN
        smallest, largest = band_radii(270 * scale, 480 * scale, options)
        inside = (plate_logits > 0).astype(np.uint8)
        depth_in = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
        depth_out = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
        # the tracked edge lies in the band; far from it the trimap is sure
        edge = (depth_in > 0) & (depth_in <= 1)
        assert unknown[edge].all()
        assert (trimap[depth_in > largest + 1] == 1).all() and (trimap[depth_out > largest + 1] == 0).all()
        if scale == 1:
            # the true soft edge of the body (not the strands SAM 2 cannot see) is covered
            body = (alpha[0] > 0.05) & (alpha[0] < 0.95) & (depth_in + depth_out < smallest)
            assert body.sum() > 100 and unknown[body].all()
        widths.append(unknown.sum() / edge.sum())  # band area per pixel of edge length
    assert 1.7 < widths[1] / widths[0] < 2.3  # twice the plate, twice the band (in pixels)


def test_uncertain_logits_widen_the_band() -> None:
    _, _, logits = synthetic_shot(270, 480)
    options = MattingOptions()
    sure = (trimap_for_plate(logits[0], options) == TRIMAP_UNKNOWN).sum()
    hesitant = (trimap_for_plate(logits[0] / 6.0, options) == TRIMAP_UNKNOWN).sum()
    assert hesitant > 1.5 * sure


def test_tiles_cover_the_crop_with_overlap() -> None:
    assert tile_starts(500, 1024, 128) == [0]
    starts = tile_starts(3000, 1024, 128)
    assert starts[0] == 0 and starts[-1] + 1024 == 3000
    assert all(b - a <= 1024 - 128 for a, b in zip(starts, starts[1:]))


def test_tiles_blend_without_seams(model: MattingModel, monkeypatch: pytest.MonkeyPatch) -> None:
    plates, _, logits = synthetic_shot(360, 480)
    matting = MattingPass(model, MattingOptions(tile_size=192, tile_overlap=48, smooth_edges=False, feather=0))
    calls = []

    def constant_per_tile(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        calls.append(trimap.shape)
        return np.full(trimap.shape, (len(calls) % 2) * 1.0, np.float32)  # neighbours differ by 1

    monkeypatch.setattr(matting, "_predict_tile", constant_per_tile)
    alpha = matting.run(1, plates[0], [1], logits)[0]
    assert len(calls) >= 4
    unknown = trimap_for_plate(logits[0], matting.options) == TRIMAP_UNKNOWN
    # within the band, neighbouring pixels never jump by more than one ramp step
    step_x = np.abs(np.diff(alpha, axis=1))[unknown[:, 1:] & unknown[:, :-1]]
    step_y = np.abs(np.diff(alpha, axis=0))[unknown[1:] & unknown[:-1]]
    assert max(step_x.max(), step_y.max()) <= 1.0 / 49 + 1e-5


def test_model_inside_the_band_tracked_matte_outside(model: MattingModel) -> None:
    plates, _, logits = synthetic_shot(192, 256)
    matting = MattingPass(model, MattingOptions(smooth_edges=False, feather=0))
    alpha = matting.run(1, plates[0], [1], logits)[0]
    trimap = trimap_for_plate(logits[0], matting.options)
    tracked = 1 / (1 + np.exp(-logits[0]))
    outside = trimap != TRIMAP_UNKNOWN
    np.testing.assert_allclose(alpha[outside], tracked[outside], atol=1e-6)
    assert np.abs(alpha[~outside] - tracked[~outside]).mean() > 0.05  # the (random) model was used
    assert alpha.dtype == np.float32 and 0 <= alpha.min() and alpha.max() <= 1


def test_empty_mask_skips_the_model(model: MattingModel) -> None:
    plates, _, logits = synthetic_shot(192, 256)
    matting = MattingPass(model)
    both = np.stack([logits[0], np.full_like(logits[0], -1024.0)])
    alpha = matting.run(1, plates[0], [1, 2], both)
    assert matting.tiles_run == 1
    assert alpha[1].max() == 0.0


def test_plate_far_larger_than_4k_is_tiled(model: MattingModel) -> None:
    # a 6000-pixel-wide plate with an object along its whole width: cut into tiles, never refused
    height, width = 96, 6000
    yy, xx = np.mgrid[0:height, 0:width]
    logits = (8.0 * np.tanh((48 + 12 * np.sin(xx / 90.0) - yy) / 4.0)).astype(np.float32)
    plate = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    matting = MattingPass(model, MattingOptions(smooth_edges=False))
    alpha = matting.run(1, plate, [1], logits[None])[0]
    assert alpha.shape == (height, width)
    assert matting.tiles_run == len(tile_starts(width, 1024, 128)) >= 6


def test_temporal_steps_calm_flicker(model: MattingModel, monkeypatch: pytest.MonkeyPatch) -> None:
    plates, _, logits = synthetic_shot(192, 256, frames=1)
    rng = np.random.default_rng(1)

    def noisy(image: np.ndarray, trimap: np.ndarray) -> np.ndarray:  # an image model that flickers
        return np.clip(0.5 + rng.normal(0, 0.2, trimap.shape), 0, 1).astype(np.float32)

    def flicker(options: MattingOptions) -> float:
        matting = MattingPass(model, options)
        monkeypatch.setattr(matting, "_predict_tile", noisy)
        outputs = [matting.run(1001 + f, plates[0], [1], logits)[0] for f in range(6)]
        return float(np.abs(np.diff(np.stack(outputs[1:]), axis=0)).mean())

    raw = flicker(MattingOptions(deflicker=0.0, smooth_edges=False))
    steadied = flicker(MattingOptions(deflicker=0.6, smooth_edges=True))
    assert steadied < 0.7 * raw

    # a moving plate is not blended with the past (that would ghost)
    matting = MattingPass(model, MattingOptions(deflicker=0.9, smooth_edges=False))
    moving, _, moving_logits = synthetic_shot(192, 256, frames=2, shift=12.0)
    first = matting.run(1, moving[0], [1], moving_logits[:1])[0]
    second = matting.run(2, moving[1], [1], moving_logits[1:])[0]
    fresh = MattingPass(model, matting.options).run(2, moving[1], [1], moving_logits[1:])[0]
    changed = np.abs(moving[1].astype(int) - moving[0].astype(int)).max(axis=2) > 10
    np.testing.assert_allclose(second[changed], fresh[changed], atol=1e-6)
    assert not np.allclose(first, second)


def test_end_to_end_writes_soft_alpha_files(model: MattingModel, tmp_path: Path) -> None:
    plates, true_alpha, logits = synthetic_shot(192, 256, frames=3, shift=1.0)
    matting = MattingPass(model)
    per_object = MatteSequenceWriter(out_dir=tmp_path, shot="synth", object_names={1: "hero", 2: "gone"})
    layered = MatteSequenceWriter(out_dir=tmp_path, shot="synth", layout="layers",
                                  object_names={1: "hero", 2: "gone"})
    png = MatteSequenceWriter(out_dir=tmp_path / "png", shot="synth", format="png")
    for f in range(3):
        both = np.stack([logits[f], np.full_like(logits[f], -1024.0)])
        alphas = matting.run(1001 + f, plates[f], [1, 2], both)
        per_object.write_alphas(1001 + f, [1, 2], alphas, {1: {"samroto/score": 0.9}, 2: {"samroto/score": -3.0}})
        layered.write_alphas(1001 + f, [1, 2], alphas, {1: {"samroto/score": 0.9}, 2: {"samroto/score": -3.0}})
        png.write_alphas(1001 + f, [1], alphas[:1])
    hero = read_matte(per_object.path_for(1, 1003))
    layers = read_matte_layers(layered.path_for(1, 1003))
    assert set(layers) == {"hero", "gone"}
    np.testing.assert_allclose(layers["hero"], hero, atol=1e-3)
    assert layers["gone"].max() == 0
    from_png = read_matte(png.path_for(1, 1002))
    assert from_png.shape == (192, 256) and 0 < from_png.mean() < 1
    # soft: the band has in-between values; the body is solid
    assert ((hero > 0.05) & (hero < 0.95)).sum() > 100
    assert hero[true_alpha[2] == 1].mean() > 0.9
