"""Hiera image trunk (hierarchical ViT with windowed attention and query pooling).

Token maps are kept channels-last (B*H*W*C) inside the trunk, as in the reference, and each stage's
output is returned channels-first (B*C*H*W), highest resolution first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import HieraConfig
from .layers import MLP


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """B*H*W*C -> (B*nWindows)*window*window*C, zero-padding bottom/right to a multiple of `window`.

    The padding is not masked: padded zero tokens take part in attention as keys and values,
    exactly as in the reference (it changes results for tiny/small/base+ at stages 3 and 4).
    """
    b, h, w, c = x.shape
    pad_h = (window - h % window) % window
    pad_w = (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of `window_partition`, cropping the padding."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // (hp * wp // window // window)
    x = windows.reshape(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    if hp > h or wp > w:
        x = x[:, :h, :w, :]
    return x


def _max_pool_2x2(x: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """Max-pool a B*H*W*C map (kernel = stride, no ceil mode)."""
    x = F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride)
    return x.permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Multi-head attention over a window; on stage-change blocks the queries are max-pooled."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: tuple[int, int] | None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1)
        q, k, v = torch.unbind(qkv, 2)
        if self.q_stride is not None:
            q = _max_pool_2x2(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        out = out.transpose(1, 2).reshape(b, h, w, -1)
        result: torch.Tensor = self.proj(out)
        return result


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block with windowed (or global, window 0) attention.

    On the first block of a stage the width changes: the shortcut becomes pool(proj(norm1(x)))
    (taken after the norm), and the block still uses the previous stage's window size, pooled
    inside each window ("the window size lags by one block").
    """

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        *,
        window_size: int,
        q_stride: tuple[int, int] | None,
        mlp_ratio: float,
    ) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.q_stride is not None:
                shortcut = _max_pool_2x2(shortcut, self.q_stride)

        window = self.window_size
        h, w = x.shape[1], x.shape[2]
        if window > 0:
            x, padded_hw = window_partition(x, window)
        x = self.attn(x)
        if self.window_size > 0:
            if self.q_stride is not None:
                # the queries were pooled inside each window: windows shrank, and so did the map
                window = self.window_size // self.q_stride[0]
                h, w = shortcut.shape[1:3]
                padded_hw = (h + (window - h % window) % window, w + (window - w % window) % window)
            x = window_unpartition(x, window, padded_hw, (h, w))

        x = shortcut + x
        result: torch.Tensor = x + self.mlp(self.norm2(x))
        return result


class PatchEmbed(nn.Module):
    """7x7 stride-4 convolution to tokens, channels-last."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result: torch.Tensor = self.proj(x).permute(0, 2, 3, 1)
        return result


class Hiera(nn.Module):
    """The trunk: images B*3*S*S -> four maps B*C_i*(S/4/2^i)*(S/4/2^i), highest resolution first."""

    def __init__(self, config: HieraConfig) -> None:
        super().__init__()
        c = config
        self.patch_embed = PatchEmbed(c.embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, c.embed_dim, *c.pos_embed_background_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, c.embed_dim, c.window_sizes[0], c.window_sizes[0]))

        stage_ends = [sum(c.stages[: i + 1]) - 1 for i in range(len(c.stages))]
        q_pool_blocks = [end + 1 for end in stage_ends[:-1]][: c.q_pool_stages]
        self.stage_ends = stage_ends

        blocks = []
        dim, heads, stage = c.embed_dim, c.num_heads, 0
        for i in range(sum(c.stages)):
            dim_out = dim
            # decided before the stage index advances: the first block of a stage keeps the previous window
            window = c.window_sizes[stage]
            if i in c.global_attention_blocks:
                window = 0
            if i - 1 in stage_ends:
                dim_out = int(dim * c.dim_mul)
                heads = int(heads * c.head_mul)
                stage += 1
            blocks.append(
                MultiScaleBlock(
                    dim,
                    dim_out,
                    heads,
                    window_size=window,
                    q_stride=c.q_stride if i in q_pool_blocks else None,
                    mlp_ratio=c.mlp_ratio,
                )
            )
            dim = dim_out
        self.blocks = nn.ModuleList(blocks)

    def _position_embedding(self, hw: tuple[int, int]) -> torch.Tensor:
        background = F.interpolate(self.pos_embed, size=hw, mode="bicubic")
        window = self.pos_embed_window
        tiles = [a // b for a, b in zip(background.shape, window.shape)]
        return (background + window.tile(tiles)).permute(0, 2, 3, 1)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(images)
        x = x + self._position_embedding(x.shape[1:3])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
