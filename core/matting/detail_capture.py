"""The detail-capture stream: a few strided convolutions over the image and trimap.

The ViT sees 16x16 patches, too coarse for hair; this stream keeps the input itself (level 0) and
its features at 1/2, 1/4 and 1/8 resolution for the fusion decoder to add back while upsampling.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import MattingConfig
from .layers import ConvBatchNormReLU


class DetailCapture(nn.Module):
    """pixels: B*4*H*W -> [pixels, B*c1*(H/2)*(W/2), B*c2*(H/4)*(W/4), ...], finest first."""

    def __init__(self, config: MattingConfig) -> None:
        super().__init__()
        widths = [config.backbone.in_channels, *config.detail_channels]
        self.convs = nn.ModuleList(
            ConvBatchNormReLU(widths[i], widths[i + 1], stride=2, eps=config.batch_norm_eps)
            for i in range(len(widths) - 1)
        )
        self.widths = tuple(widths)

    def forward(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        levels = [pixels]
        for conv in self.convs:
            levels.append(conv(levels[-1]))
        return levels
