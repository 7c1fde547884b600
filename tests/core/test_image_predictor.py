"""ImagePredictor against the official image predictor (`image_<v>.npz`): frame 0 as a 256x256 image."""

from __future__ import annotations

import numpy as np
import pytest

from samroto.core.image_predictor import ImagePredictor
from samroto.core.model.sam2 import SAM2Model

from .conftest import FIXTURES, assert_close

BOX = [30, 40, 180, 220]


@pytest.fixture(scope="module")
def predictor(model: SAM2Model, video_frames: np.ndarray) -> ImagePredictor:
    p = ImagePredictor(model)
    p.set_image(video_frames[0])
    return p


@pytest.fixture(scope="module")
def reference(variant: str) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / f"image_{variant}.npz"))


def test_one_click_multimask(predictor: ImagePredictor, reference: dict) -> None:
    masks, iou, lowres = predictor.predict(points=[[128, 100]], labels=[1], multimask=True)
    assert masks.shape == (3, 256, 256) and iou.shape == (3,) and lowres.shape == (3, 64, 64)
    assert_close(iou, reference["point_iou"], "click IoU")
    assert_close(lowres, reference["point_lowres"], "click low-res logits")
    assert_close(masks, reference["point_masks_logits"], "click mask logits")


def test_box_single_mask(predictor: ImagePredictor, reference: dict) -> None:
    _, iou, lowres = predictor.predict(box=BOX, multimask=False)
    assert_close(iou, reference["box_iou"], "box IoU")
    assert_close(lowres, reference["box_lowres"], "box low-res logits")


def test_points_and_box(predictor: ImagePredictor, reference: dict) -> None:
    _, iou, lowres = predictor.predict(points=[[100, 120], [60, 60]], labels=[1, 0], box=BOX, multimask=False)
    assert_close(iou, reference["points_box_iou"], "points+box IoU")
    assert_close(lowres, reference["points_box_lowres"], "points+box low-res logits")


def test_refinement_with_previous_mask(predictor: ImagePredictor, reference: dict) -> None:
    _, iou, lowres = predictor.predict(points=[[128, 100]], labels=[1], multimask=True)
    best = lowres[np.argmax(iou)][None]
    _, iou2, lowres2 = predictor.predict(
        points=[[128, 100], [200, 200]], labels=[1, 1], mask_input=best, multimask=False
    )
    assert_close(iou2, reference["refine_iou"], "refinement IoU")
    assert_close(lowres2, reference["refine_lowres"], "refinement low-res logits")


def test_non_square_image_gives_masks_at_image_size(model: SAM2Model, video_frames: np.ndarray) -> None:
    image = np.ascontiguousarray(video_frames[0][:120, :200])
    p = ImagePredictor(model)
    p.set_image(image)
    masks, iou, lowres = p.predict(points=[[100, 60]], labels=[1])
    assert masks.shape == (3, 120, 200) and lowres.shape == (3, 64, 64)
    assert np.all((iou >= 0) & (iou <= 1))


def test_bad_input_is_reported(model: SAM2Model, video_frames: np.ndarray) -> None:
    p = ImagePredictor(model)
    with pytest.raises(RuntimeError, match="set_image"):
        p.predict(points=[[1, 1]], labels=[1])
    with pytest.raises(ValueError, match="uint8"):
        p.set_image(video_frames[0].astype(np.float32))
    with pytest.raises(ValueError, match="H\\*W\\*3"):
        p.set_image(video_frames[0][..., 0])
    p.set_image(video_frames[0])
    with pytest.raises(ValueError, match="together"):
        p.predict(points=[[1, 1]])
    with pytest.raises(ValueError, match="2 points but 1 labels"):
        p.predict(points=[[1, 1], [2, 2]], labels=[1])
