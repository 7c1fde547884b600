"""Single-image prediction, as the official `SAM2ImagePredictor` does it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .model.sam2 import FrameFeatures, SAM2Model
from .model.preprocess import IMAGENET_MEAN, IMAGENET_STD
from .model.prompt_encoder import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT


def image_to_input(rgb: np.ndarray, image_size: int, device: torch.device) -> torch.Tensor:
    """H*W*3 uint8 -> 1*3*S*S, the image predictor's way: /255, bilinear antialiased resize, normalise."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an H*W*3 RGB image, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {rgb.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(rgb)).to(device).permute(2, 0, 1).float().div(255.0)[None]
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return (x - mean) / std


class ImagePredictor:
    """Embed an image once, then predict masks for any number of prompts.

    Coordinates are in the image's own pixels (x right, y down).
    """

    def __init__(self, model: SAM2Model) -> None:
        self.model = model
        self._features: FrameFeatures | None = None
        self._image_embed: torch.Tensor | None = None
        self._size: tuple[int, int] | None = None

    @torch.inference_mode()
    def set_image(self, rgb: np.ndarray) -> None:
        """rgb: H*W*3 uint8."""
        model = self.model
        images = image_to_input(rgb, model.image_size, model.device).to(model.dtype)
        features = model.encode_image(images)
        self._features = features
        # as on a video's first prompted frame: the no-memory embedding is added to the feature
        self._image_embed = model.condition_on_memory(features, None, None, 0)
        self._size = (rgb.shape[0], rgb.shape[1])

    @property
    def is_image_set(self) -> bool:
        return self._features is not None

    @torch.inference_mode()
    def predict(
        self,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (mask logits N*H*W at image size, predicted IoU N, low-res logits N*s*s clamped to +-32).

        points: K*2 (x, y); labels: K (1 positive, 0 negative); box: (x0, y0, x1, y1);
        mask_input: 1*s*s or s*s low-res logits from a previous prediction.
        """
        if self._features is None or self._image_embed is None or self._size is None:
            raise RuntimeError("call set_image(...) before predict(...)")
        if (points is None) != (labels is None):
            raise ValueError("points and labels must be given together")
        model = self.model
        device = model.device
        h, w = self._size
        scale = torch.tensor([model.image_size / w, model.image_size / h], device=device)

        coords: torch.Tensor | None = None
        point_labels: torch.Tensor | None = None
        if points is not None and labels is not None:
            coords = torch.as_tensor(np.asarray(points, dtype=np.float32), device=device).reshape(1, -1, 2) * scale
            point_labels = torch.as_tensor(np.asarray(labels), dtype=torch.int32, device=device).reshape(1, -1)
            if coords.shape[1] != point_labels.shape[1]:
                raise ValueError(f"{coords.shape[1]} points but {point_labels.shape[1]} labels")
        if box is not None:
            box_coords = torch.as_tensor(np.asarray(box, dtype=np.float32), device=device).reshape(1, 2, 2) * scale
            box_labels = torch.tensor([[BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]], dtype=torch.int32, device=device)
            # the box goes first, as SAM 2 was trained
            coords = box_coords if coords is None else torch.cat([box_coords, coords], dim=1)
            point_labels = box_labels if point_labels is None else torch.cat([box_labels, point_labels], dim=1)

        mask = None
        if mask_input is not None:
            mask = torch.as_tensor(np.asarray(mask_input, dtype=np.float32), device=device)
            mask = mask.reshape(1, 1, *mask.shape[-2:]).to(model.dtype)

        prompt = model.sam_prompt_encoder
        if coords is not None and point_labels is not None:
            sparse, dense = prompt((coords.to(model.dtype), point_labels), mask)
        else:
            # no points at all: no sparse tokens (unlike the video path, which pads with not-a-point)
            sparse, dense = prompt(None, mask, batch_size=1)
        out = model.sam_mask_decoder(
            self._image_embed,
            prompt.dense_positional_encoding().to(model.dtype),
            sparse.to(model.dtype),
            dense.to(model.dtype),
            self._features.high_res,
            multimask=multimask,
        )
        lowres = out.masks.float()
        masks = F.interpolate(lowres, size=(h, w), mode="bilinear", align_corners=False)
        lowres = torch.clamp(lowres, -32.0, 32.0)
        return (
            masks[0].cpu().numpy(),
            out.iou[0].float().cpu().numpy(),
            lowres[0].cpu().numpy(),
        )
