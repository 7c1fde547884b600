"""ViTMatte: the backbone, the detail stream and the fusion decoder, and the input preparation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import ViTBackbone
from .config import MattingConfig
from .detail_capture import DetailCapture
from .fusion_decoder import FusionDecoder


class MattingModel(nn.Module):
    """pixels: B*4*H*W (normalised RGB + trimap, H and W multiples of 16) -> alpha B*1*H*W."""

    def __init__(self, config: MattingConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ViTBackbone(config.backbone)
        self.detail_capture = DetailCapture(config)
        self.fusion_decoder = FusionDecoder(config, self.detail_capture.widths)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        features = self.backbone(pixels)
        alpha: torch.Tensor = self.fusion_decoder(features, self.detail_capture(pixels))
        return alpha

    @property
    def device(self) -> torch.device:
        return self.backbone.pos_embed.device

    def prepare(self, image: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
        """image: B*3*H*W in [0, 1], trimap: B*1*H*W in {0, 0.5, 1} -> the padded model input B*4*H'*W'."""
        mean = torch.tensor(self.config.pixel_mean, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.config.pixel_std, device=image.device, dtype=image.dtype).view(1, 3, 1, 1)
        pixels = torch.cat([(image - mean) / std, trimap.to(image.dtype)], dim=1)
        step = self.config.size_divisor
        height, width = pixels.shape[-2:]
        return F.pad(pixels, (0, (-width) % step, 0, (-height) % step))

    @torch.inference_mode()
    def predict(self, image: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
        """image: B*3*H*W in [0, 1], trimap: B*1*H*W -> alpha B*1*H*W (padding removed)."""
        height, width = image.shape[-2:]
        alpha: torch.Tensor = self(self.prepare(image, trimap))
        return alpha[..., :height, :width]
