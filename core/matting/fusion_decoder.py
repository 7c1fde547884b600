"""The fusion decoder: back from the ViT's 1/16 features to a full-resolution alpha matte.

Each step doubles the resolution (bilinear), concatenates the detail stream's level of that
resolution and mixes them with a 3x3 convolution; a small head turns the last features into alpha.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import MattingConfig
from .layers import ConvBatchNormReLU


class FusionBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, eps: float) -> None:
        super().__init__()
        self.conv = ConvBatchNormReLU(in_channels, out_channels, stride=1, eps=eps)

    def forward(self, features: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        upsampled = F.interpolate(features, scale_factor=2, mode="bilinear", align_corners=False)
        fused: torch.Tensor = self.conv(torch.cat([detail, upsampled], dim=1))
        return fused


class MattingHead(nn.Module):
    """3x3 convolution -> batch norm -> ReLU -> 1x1 convolution to one channel (alpha logits)."""

    def __init__(self, in_channels: int, mid_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3, padding=1)
        self.norm = nn.BatchNorm2d(mid_channels)
        self.conv2 = nn.Conv2d(mid_channels, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.conv2(torch.relu(self.norm(self.conv1(x))))
        return logits


class FusionDecoder(nn.Module):
    """features: B*C*(H/16)*(W/16), details from `DetailCapture` -> alpha B*1*H*W in [0, 1]."""

    def __init__(self, config: MattingConfig, detail_widths: tuple[int, ...]) -> None:
        super().__init__()
        widths = [config.backbone.hidden_size, *config.fusion_channels]
        # step i fuses with the detail level of its output resolution, coarsest first
        self.blocks = nn.ModuleList(
            FusionBlock(widths[i] + detail_widths[-(i + 1)], widths[i + 1], config.batch_norm_eps)
            for i in range(len(widths) - 1)
        )
        self.head = MattingHead(config.fusion_channels[-1], config.head_channels)

    def forward(self, features: torch.Tensor, details: list[torch.Tensor]) -> torch.Tensor:
        for i, block in enumerate(self.blocks):
            features = block(features, details[len(self.blocks) - 1 - i])
        return torch.sigmoid(self.head(features))
