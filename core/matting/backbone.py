"""The ViT backbone of ViTMatte: a plain ViT with ViTDet's adaptations for large inputs.

Most blocks attend within non-overlapping windows (14x14 tokens), which keeps attention cheap at
matting resolutions; every third block attends globally and is followed by a residual bottleneck of
convolutions that mixes information across window borders. Attention adds decomposed relative
position terms (MViTv2): one table per axis, linearly resized when the token grid differs from the
one it was trained for. The absolute position embedding is bicubic-resized likewise.

Shapes: tokens are kept channels-last, `x: B*h*w*C` with h = H / patch_size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import BackboneConfig
from .layers import ChannelLayerNorm


def resized_relative_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """table: L*C -> length*C, linearly resampled (align_corners=False) when L differs."""
    if table.shape[0] == length:
        return table
    resized = F.interpolate(table.T[None], size=length, mode="linear")
    return resized[0].T


def relative_positions(size: int, table: torch.Tensor) -> torch.Tensor:
    """size*size*C: the embedding of the offset (query - key) for every query and key along one axis."""
    table = resized_relative_table(table, 2 * size - 1)
    coords = torch.arange(size, device=table.device)
    offsets = coords[:, None] - coords[None, :] + (size - 1)
    return table[offsets]


class Attention(nn.Module):
    """Multi-head self-attention over a B*h*w*C grid with decomposed relative position terms."""

    def __init__(self, config: BackboneConfig, table_size: int) -> None:
        super().__init__()
        dim = config.hidden_size
        self.num_heads = config.num_heads
        self.scale = config.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=config.qkv_bias)
        self.proj = nn.Linear(dim, dim)
        # one table per axis, made for a table_size x table_size grid
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * table_size - 1, config.head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * table_size - 1, config.head_dim))
        self.query_chunk = 1024  # queries per step of global attention (memory: heads * chunk * N scores)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, dim = x.shape
        tokens = height * width
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each B*heads*N*d
        # relative terms come from the unscaled queries: bias[q, k] = q . R_h[qy - ky] + q . R_w[qx - kx]
        grid_q = q.reshape(batch, self.num_heads, height, width, -1)
        along_h = torch.einsum("bnhwc,hkc->bnhwk", grid_q, relative_positions(height, self.rel_pos_h))
        along_w = torch.einsum("bnhwc,wkc->bnhwk", grid_q, relative_positions(width, self.rel_pos_w))
        along_h = along_h.reshape(batch, self.num_heads, tokens, height)
        along_w = along_w.reshape(batch, self.num_heads, tokens, width)
        # Global attention over a large tile holds heads * N * N scores; taking the queries in chunks
        # bounds that (each query's softmax is over all keys either way, so the result is the same).
        chunks = []
        for start in range(0, tokens, self.query_chunk):
            rows = slice(start, start + self.query_chunk)
            bias = (along_h[:, :, rows, :, None] + along_w[:, :, rows, None, :]).flatten(-2)
            chunks.append(F.scaled_dot_product_attention(q[:, :, rows], k, v, attn_mask=bias, scale=self.scale))
        out = chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=2)
        out = out.permute(0, 2, 1, 3).reshape(batch, height, width, dim)
        projected: torch.Tensor = self.proj(out)
        return projected


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(F.gelu(self.fc1(x)))
        return out


class ResidualBottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 convolutions (half width in the middle) added back to the input: lets
    information cross window borders after a global block. x: B*C*H*W."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        mid = dim // 2
        self.conv1 = nn.Conv2d(dim, mid, 1, bias=False)
        self.norm1 = ChannelLayerNorm(mid, eps)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.norm2 = ChannelLayerNorm(mid, eps)
        self.conv3 = nn.Conv2d(mid, dim, 1, bias=False)
        self.norm3 = ChannelLayerNorm(dim, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.norm1(self.conv1(x)))
        y = F.gelu(self.norm2(self.conv2(y)))
        out: torch.Tensor = x + self.norm3(self.conv3(y))
        return out


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """B*h*w*C -> (B*nh*nw)*window*window*C, zero-padding h and w up to multiples of `window`."""
    batch, height, width, dim = x.shape
    pad_h, pad_w = (-height) % window, (-width) % window
    x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    padded_h, padded_w = height + pad_h, width + pad_w
    x = x.view(batch, padded_h // window, window, padded_w // window, window, dim)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, dim), (padded_h, padded_w)


def window_unpartition(
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of `window_partition`, padding removed: -> B*h*w*C."""
    padded_h, padded_w = padded
    rows, cols = padded_h // window, padded_w // window
    batch = windows.shape[0] // (rows * cols)
    x = windows.view(batch, rows, cols, window, window, -1).permute(0, 1, 3, 2, 4, 5)
    x = x.reshape(batch, padded_h, padded_w, -1)
    return x[:, : size[0], : size[1]]


class Block(nn.Module):
    """Pre-norm transformer block; windowed or global attention; optionally a residual bottleneck after."""

    def __init__(self, config: BackboneConfig, *, windowed: bool, residual: bool) -> None:
        super().__init__()
        dim = config.hidden_size
        self.window = config.window_size if windowed else 0
        self.norm1 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attn = Attention(config, config.window_size if windowed else config.global_tokens)
        self.norm2 = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.mlp = MLP(dim, int(dim * config.mlp_ratio))
        self.residual = ResidualBottleneck(dim, config.layer_norm_eps) if residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.window:
            size = (y.shape[1], y.shape[2])
            # padded tokens take part in attention as zeros, exactly as in the reference
            windows, padded = window_partition(y, self.window)
            y = window_unpartition(self.attn(windows), self.window, padded, size)
        else:
            y = self.attn(y)
        x = x + y
        x = x + self.mlp(self.norm2(x))
        if self.residual is not None:
            x = self.residual(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x


class ViTBackbone(nn.Module):
    """pixels: B*4*H*W (H, W multiples of patch_size) -> features B*C*(H/16)*(W/16)."""

    def __init__(self, config: BackboneConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_embed = nn.Conv2d(config.in_channels, config.hidden_size, config.patch_size, config.patch_size)
        # the pretrained ViT's grid plus its class-token slot (unused here, kept to load the weights)
        self.pos_embed = nn.Parameter(torch.zeros(1, config.position_grid**2 + 1, config.hidden_size))
        self.blocks = nn.ModuleList(
            Block(config, windowed=i in config.window_blocks, residual=i in config.residual_blocks)
            for i in range(config.depth)
        )

    def position_embedding(self, height: int, width: int) -> torch.Tensor:
        """1*h*w*C: the pretrained grid resized (bicubic) to the input's token grid."""
        grid = self.config.position_grid
        table = self.pos_embed[:, 1:].reshape(1, grid, grid, -1)
        if (grid, grid) == (height, width):
            return table
        resized = F.interpolate(table.permute(0, 3, 1, 2), size=(height, width), mode="bicubic", align_corners=False)
        return resized.permute(0, 2, 3, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x: torch.Tensor = self.patch_embed(pixels).permute(0, 2, 3, 1)
        x = x + self.position_embedding(x.shape[1], x.shape[2])
        for block in self.blocks:
            x = block(x)
        return x.permute(0, 3, 1, 2)
