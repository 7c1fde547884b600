"""Small building blocks shared by the matting model's parts."""

from __future__ import annotations

import torch
from torch import nn


class ConvBatchNormReLU(nn.Module):
    """3x3 convolution (no bias) -> batch norm -> ReLU: the unit of ViTMatte's detail stream and decoder."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(out_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.conv(x)))


class ChannelLayerNorm(nn.Module):
    """Layer norm over the channels of a B*C*H*W map (the residual blocks' norm), at every pixel."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        variance = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(variance + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]
