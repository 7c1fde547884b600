"""Memory encoder: fuses a frame's image feature with its predicted mask into a compact memory."""

from __future__ import annotations

import math

import torch
from torch import nn

from .config import MemoryEncoderConfig
from .layers import LayerNorm2d
from .position_encoding import SinePositionEncoding


class MaskDownSampler(nn.Module):
    """Strided convolutions (x stride per layer, channels x stride^2) with LayerNorm2d + GELU, then 1x1."""

    def __init__(self, embed_dim: int, *, kernel_size: int, stride: int, padding: int, total_stride: int) -> None:
        super().__init__()
        num_layers = int(math.log2(total_stride) // math.log2(stride))
        if stride**num_layers != total_stride:
            raise ValueError("total_stride must be a power of stride")
        self.encoder = nn.Sequential()
        in_chans = out_chans = 1
        for _ in range(num_layers):
            out_chans = in_chans * stride**2
            self.encoder.append(nn.Conv2d(in_chans, out_chans, kernel_size, stride, padding))
            self.encoder.append(LayerNorm2d(out_chans))
            self.encoder.append(nn.GELU())
            in_chans = out_chans
        self.encoder.append(nn.Conv2d(out_chans, embed_dim, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.encoder(x)
        return result


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv, LayerNorm2d, pointwise MLP (as linears, channels-last), layer scale."""

    def __init__(self, dim: int, kernel_size: int, padding: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=kernel_size, padding=padding, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * self.pwconv2(self.act(self.pwconv1(y)))
        result: torch.Tensor = x + y.permute(0, 3, 1, 2)
        return result


class Fuser(nn.Module):
    def __init__(self, dim: int, num_layers: int, kernel_size: int, padding: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim, kernel_size, padding) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    def __init__(self, in_dim: int, config: MemoryEncoderConfig) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(
            in_dim,
            kernel_size=config.downsampler_kernel,
            stride=config.downsampler_stride,
            padding=config.downsampler_padding,
            total_stride=config.downsampler_total_stride,
        )
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim, config.fuser_layers, config.fuser_kernel, config.fuser_padding)
        self.out_proj = nn.Conv2d(in_dim, config.out_dim, kernel_size=1)
        self.position_encoding = SinePositionEncoding(config.out_dim)

    def forward(self, pix_feat: torch.Tensor, mask_for_mem: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pix_feat: B*C*s*s raw backbone feature; mask_for_mem: B*1*S*S, already scaled to logit-like
        values (sigmoid or binarised, times 20, minus 10). Returns (memory B*D*s*s, its position B*D*s*s)."""
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(mask_for_mem)
        x = self.out_proj(self.fuser(x))
        return x, self.position_encoding(x).to(x.dtype)
