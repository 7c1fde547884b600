"""Image encoder: the Hiera trunk and the FPN neck (state-dict prefix `image_encoder`)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import HieraConfig, NeckConfig
from .hiera import Hiera
from .position_encoding import SinePositionEncoding


class FpnNeck(nn.Module):
    """1x1 lateral convolutions to d_model, with top-down fusion on the lowest-resolution levels only.

    `convs[0]` takes the lowest-resolution level. Only the levels in `top_down_levels` receive the
    upsampled coarser level (nearest, computed in float32 as in the reference); the others are lateral.
    """

    def __init__(self, config: NeckConfig, backbone_channels: tuple[int, ...]) -> None:
        super().__init__()
        self.config = config
        # lowest resolution first, as the reference orders `backbone_channel_list`
        self.convs = nn.ModuleList()
        for channels in reversed(backbone_channels):
            conv = nn.Sequential()
            conv.add_module("conv", nn.Conv2d(channels, config.d_model, kernel_size=1))
            self.convs.append(conv)
        self.position_encoding = SinePositionEncoding(config.d_model)

    def forward(self, levels: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        n = len(self.convs) - 1
        features: list[torch.Tensor] = [torch.empty(0)] * len(levels)
        positions: list[torch.Tensor] = [torch.empty(0)] * len(levels)
        previous: torch.Tensor | None = None
        for i in range(n, -1, -1):
            lateral = self.convs[n - i](levels[i])
            if i in self.config.top_down_levels and previous is not None:
                top_down = F.interpolate(
                    previous.to(torch.float32),
                    scale_factor=2.0,
                    mode=self.config.interpolation,
                    align_corners=None if self.config.interpolation == "nearest" else False,
                )
                previous = lateral + top_down
            else:
                previous = lateral
            features[i] = previous
            positions[i] = self.position_encoding(previous).to(previous.dtype)
        return features, positions


@dataclass
class BackboneOutput:
    """Image features of a batch of frames, highest resolution first (before the decoder's projections)."""

    fpn: list[torch.Tensor]  # [B*C*4s*4s, B*C*2s*2s, B*C*s*s]
    positions: list[torch.Tensor]  # sine encodings of the same maps


class ImageEncoder(nn.Module):
    def __init__(self, hiera: HieraConfig, neck: NeckConfig) -> None:
        super().__init__()
        self.trunk = Hiera(hiera)
        self.neck = FpnNeck(neck, hiera.channels)
        self.scalp = neck.scalp

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """images: B*3*S*S normalised."""
        features, positions = self.neck(self.trunk(images))
        if self.scalp > 0:
            features, positions = features[: -self.scalp], positions[: -self.scalp]
        return BackboneOutput(fpn=features, positions=positions)
