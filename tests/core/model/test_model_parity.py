"""Per-component parity with the official implementation (`intermediates_<v>.npz`).

From: a positive click at (80, 60) on frame 0 of the 120x160 fixture video for object 1, then one
propagated frame. Each component has its own test so that a failure names the component.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samroto.core.image_predictor import IMAGENET_MEAN, IMAGENET_STD
from samroto.core.model.sam2 import FrameFeatures, HeadOutput, SAM2Model

from ..conftest import FIXTURES, assert_close

CLICK = (80 * 256 / 160, 60 * 256 / 120)  # video pixels -> model input pixels


def normalise(frame: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(frame).permute(2, 0, 1).float() / 255
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x - mean) / std)[None]


@pytest.fixture(scope="module")
def reference(variant: str) -> dict[str, np.ndarray]:
    return dict(np.load(FIXTURES / f"intermediates_{variant}.npz"))


@pytest.fixture(scope="module")
def frame0(model: SAM2Model, video_frames: np.ndarray) -> FrameFeatures:
    with torch.inference_mode():
        return model.encode_image(normalise(video_frames[0]))


def click() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([[CLICK]], dtype=torch.float32), torch.tensor([[1]], dtype=torch.int32)


@pytest.fixture(scope="module")
def first_click(model: SAM2Model, frame0: FrameFeatures) -> HeadOutput:
    with torch.inference_mode():
        pix = model.condition_on_memory(frame0, None, None, 0)
        return model.predict_masks(pix, frame0.high_res, points=click(), multimask=True)


@torch.inference_mode()
def test_hiera_trunk(model: SAM2Model, video_frames: np.ndarray, reference: dict) -> None:
    stages = model.image_encoder.trunk(normalise(video_frames[0]))
    assert len(stages) == 4
    for i, stage in enumerate(stages):
        assert_close(stage, reference[f"trunk_{i}"], f"Hiera stage {i}")


def test_fpn_neck_and_high_res_projections(frame0: FrameFeatures, reference: dict) -> None:
    assert_close(frame0.high_res[0], reference["neck_fpn_0"], "FPN level 0 after conv_s0")
    assert_close(frame0.high_res[1], reference["neck_fpn_1"], "FPN level 1 after conv_s1")
    assert_close(frame0.vision, reference["neck_fpn_2"], "FPN level 2")


def test_sine_position_encoding(frame0: FrameFeatures, reference: dict) -> None:
    assert_close(frame0.vision_pos, reference["neck_pos_last"], "sine encoding of the 16x16 level")


@torch.inference_mode()
def test_prompt_encoder(model: SAM2Model, reference: dict) -> None:
    sparse, dense = model.sam_prompt_encoder(click(), None)
    assert sparse.shape[1] == 2, "a padding point must follow the click"
    assert_close(sparse, reference["prompt_sparse"], "prompt encoder sparse tokens")
    assert_close(dense, reference["prompt_dense"], "prompt encoder dense embedding")


@torch.inference_mode()
def test_mask_decoder(model: SAM2Model, frame0: FrameFeatures, reference: dict) -> None:
    pix = model.condition_on_memory(frame0, None, None, 0)
    sparse, dense = model.sam_prompt_encoder(click(), None)
    out = model.sam_mask_decoder(
        pix, model.sam_prompt_encoder.dense_positional_encoding(), sparse, dense, frame0.high_res, multimask=True
    )
    assert_close(out.masks, reference["decoder_out_0"], "decoder masks")
    assert_close(out.iou, reference["decoder_out_1"], "decoder IoU")
    assert_close(out.tokens, reference["decoder_out_2"], "decoder output tokens")
    assert_close(out.object_score, reference["decoder_out_3"], "decoder object score")


@torch.inference_mode()
def test_memory_encoder(model: SAM2Model, frame0: FrameFeatures, first_click: HeadOutput, reference: dict) -> None:
    # as in the video predictor's preflight: stored low-res logits re-upsampled and binarised
    highres = torch.nn.functional.interpolate(
        first_click.lowres, size=(model.image_size,) * 2, mode="bilinear", align_corners=False
    )
    memory = model.encode_memory(frame0.vision, highres, first_click.object_score, binarize=True)
    assert_close(memory, reference["memenc_features"], "memory encoder features")
    assert_close(model.memory_position(16, 16, torch.device("cpu"))[None], reference["memenc_pos"], "memory position")


@torch.inference_mode()
def test_memory_attention_with_rope_and_object_pointers(
    model: SAM2Model, video_frames: np.ndarray, frame0: FrameFeatures, first_click: HeadOutput, reference: dict
) -> None:
    highres = torch.nn.functional.interpolate(
        first_click.lowres, size=(model.image_size,) * 2, mode="bilinear", align_corners=False
    )
    memory = model.encode_memory(frame0.vision, highres, first_click.object_score, binarize=True)
    frame1 = model.encode_image(normalise(video_frames[1]))
    # frame 0 is the keyframe (t_pos 0); its pointer is 1 frame away
    keys, positions, num_ptr = model.assemble_memory(
        [(memory.to(torch.bfloat16), 0)], [(1, first_click.obj_ptr)], num_frames=12
    )
    assert num_ptr == model.config.hidden_dim // model.config.mem_dim
    conditioned = model.condition_on_memory(frame1, keys, positions, num_ptr)
    assert_close(conditioned.flatten(2).permute(2, 0, 1), reference["memattn_out_frame1"], "memory attention")
