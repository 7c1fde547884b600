"""Model input: same pixels as the official video path (PIL bicubic resize on uint8, ImageNet normalisation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from samroto.core.frames import open_frames
from samroto.core.model.preprocess import IMAGENET_MEAN, IMAGENET_STD, to_model_input

MEDIA = Path(__file__).resolve().parents[4] / "shared" / "media"
MEAN = np.array(IMAGENET_MEAN, np.float32)
STD = np.array(IMAGENET_STD, np.float32)


def pil_reference(image: np.ndarray, size: int) -> np.ndarray:
    """The official preprocessing's uint8 pixels: `Image.fromarray(image).resize((size, size))`."""
    try:
        from PIL import Image
    except ImportError:
        pytest.fail("Pillow is needed to compare with the official preprocessing: pip install pillow (dev extra)")
    return np.asarray(Image.fromarray(image).resize((size, size))).astype(np.float32)


def as_levels(model_input: torch.Tensor) -> np.ndarray:
    """3*S*S normalised -> S*S*3 in uint8 levels (0..255, float)."""
    return (model_input.permute(1, 2, 0).numpy() * STD + MEAN) * 255.0


def real_frames() -> list[np.ndarray]:
    frames = []
    for name, frame in (("bedroom.mp4", 120), ("01_dog.mp4", 0)):
        clip = MEDIA / name
        assert clip.is_file(), f"{clip} is missing: the shared media folder must sit beside the repository"
        with open_frames(clip) as source:
            frames.append(source.read(frame))
    return frames


def test_matches_pil_on_real_frames() -> None:
    for image in real_frames():
        difference = np.abs(as_levels(to_model_input(image, 1024)) - pil_reference(image, 1024))
        # PIL works in 22-bit fixed point, torch in float: a rare rounding tie lands one level apart
        assert difference.max() <= 1.0 + 1e-3
        assert difference.mean() < 1e-3
        assert (difference > 0.5).mean() < 1e-3


@pytest.mark.parametrize(("shape", "size"), [((96, 200), 64), ((50, 37), 128), ((64, 48), 64), ((300, 300), 1024)])
def test_matches_pil_when_shrinking_and_enlarging(shape: tuple[int, int], size: int) -> None:
    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    difference = np.abs(as_levels(to_model_input(image, size)) - pil_reference(image, size))
    assert difference.max() <= 1.0 + 1e-3
    assert (difference > 0.5).mean() < 0.01


def test_output_shape_dtype_and_normalisation() -> None:
    image = np.full((40, 70, 3), (0, 128, 255), np.uint8)
    model_input = to_model_input(image, 32)
    assert model_input.shape == (3, 32, 32) and model_input.dtype == torch.float32
    expected = (np.array([0, 128, 255]) / 255.0 - MEAN) / STD
    np.testing.assert_allclose(model_input.mean(dim=(1, 2)).numpy(), expected, atol=1e-5)
    assert to_model_input(image, 32, device="cpu").device.type == "cpu"


def test_square_image_of_the_model_size_is_not_resampled() -> None:
    image = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    expected = (image / 255.0 - MEAN) / STD
    np.testing.assert_allclose(to_model_input(image, 16).permute(1, 2, 0).numpy(), expected, atol=1e-6)


def test_deep_and_float_images_resize_in_float() -> None:
    image8 = np.random.default_rng(2).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    from_8bit = to_model_input(image8, 24)
    from_16bit = to_model_input(image8.astype(np.uint16) * 257, 24)
    from_float = to_model_input(image8.astype(np.float32) / 255.0, 24)
    # same picture: equal up to the 8-bit path's rounding after each pass (in normalised units)
    level = 1.0 / 255.0 / min(IMAGENET_STD)
    assert (from_16bit - from_8bit).abs().max() <= 1.5 * level
    assert (from_16bit - from_8bit).abs().mean() <= 0.5 * level
    assert (from_float - from_16bit).abs().max() <= 1e-5
    # the float path keeps values the 8-bit path rounds away
    assert not torch.equal(from_float, from_8bit)


def test_float_input_is_clamped_and_cleaned() -> None:
    image = np.array([[[-1.0, 0.5, 7.0], [np.nan, np.inf, -np.inf]]], np.float32)
    levels = as_levels(to_model_input(image, 2)) / 255.0
    assert levels.min() >= -1e-5 and levels.max() <= 1 + 1e-5
    expected = ((np.array([0.0, 0.5, 1.0]) - MEAN) / STD)[:, None, None]
    np.testing.assert_allclose(to_model_input(image[:, :1], 1).numpy(), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("image", "size", "message"),
    [
        (np.zeros((4, 4), np.uint8), 8, "H\\*W\\*3"),
        (np.zeros((4, 4, 4), np.uint8), 8, "H\\*W\\*3"),
        (np.zeros((4, 4, 3), np.int32), 8, "int32"),
        (np.zeros((4, 4, 3), np.uint8), 0, "positive"),
        ([[0, 0, 0]], 8, "numpy"),
    ],
)
def test_bad_input_is_a_clear_error(image: np.ndarray, size: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        to_model_input(image, size)
