"""Position encodings: 2-D sine (feature maps), random Fourier (prompts), 2-D RoPE (memory attention),
and the 1-D sine used for the temporal position of object pointers."""

from __future__ import annotations

import math

import torch
from torch import nn


class SinePositionEncoding(nn.Module):
    """2-D sine encoding of a feature map: first half of the channels encode y, second half x.

    Positions are 1..H (and 1..W), normalised by (last + 1e-6) and scaled by 2*pi; channel pairs
    interleave sin and cos of the same frequency. Depends only on the map size, so it is cached.
    """

    def __init__(self, num_channels: int, temperature: float = 10000.0) -> None:
        super().__init__()
        if num_channels % 2:
            raise ValueError("num_channels must be even")
        self.num_pos_feats = num_channels // 2
        self.temperature = temperature
        self._cache: dict[tuple[int, int, torch.device], torch.Tensor] = {}

    def encode(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """C*H*W float32 encoding."""
        key = (height, width, torch.device(device))
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        scale = 2 * math.pi
        eps = 1e-6
        y = torch.arange(1, height + 1, dtype=torch.float32, device=device)
        x = torch.arange(1, width + 1, dtype=torch.float32, device=device)
        y = y / (y[-1:] + eps) * scale
        x = x / (x[-1:] + eps) * scale
        dim_t = torch.arange(self.num_pos_feats, dtype=torch.float32, device=device)
        dim_t = self.temperature ** (2 * (dim_t // 2) / self.num_pos_feats)
        pos_y = y[:, None] / dim_t  # H*F
        pos_x = x[:, None] / dim_t  # W*F
        pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
        pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)
        pe = torch.cat(
            (pos_y[:, None, :].expand(height, width, -1), pos_x[None, :, :].expand(height, width, -1)), dim=2
        )
        pe = pe.permute(2, 0, 1).contiguous()
        self._cache[key] = pe
        return pe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """B*C*H*W encoding for a B*?*H*W map, in the map's dtype."""
        pe = self.encode(x.shape[-2], x.shape[-1], x.device)
        return pe.to(x.dtype)[None].expand(x.shape[0], -1, -1, -1)


class RandomFourierEncoding(nn.Module):
    """Random-Fourier encoding of prompt coordinates (`pe_layer` of the prompt encoder).

    The Gaussian matrix is a persistent buffer: it is random at init and must come from the checkpoint.
    """

    positional_encoding_gaussian_matrix: torch.Tensor

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_pos_feats))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """coords in [0, 1], ...*2 -> ...*(2F)."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def grid(self, height: int, width: int) -> torch.Tensor:
        """C*H*W encoding of the centres of a height*width grid."""
        device = self.positional_encoding_gaussian_matrix.device
        ones = torch.ones((height, width), device=device, dtype=torch.float32)
        y = (ones.cumsum(dim=0) - 0.5) / height
        x = (ones.cumsum(dim=1) - 0.5) / width
        return self._encode(torch.stack([x, y], dim=-1)).permute(2, 0, 1)

    def points(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """B*N*2 pixel coordinates (x, y) of an image_size (H, W) image -> B*N*C."""
        h, w = image_size
        normalised = torch.stack((coords[..., 0] / w, coords[..., 1] / h), dim=-1)
        return self._encode(normalised.float())


# --- 2-D axial RoPE ------------------------------------------------------------------------------


def axial_rope_frequencies(dim: int, width: int, height: int, theta: float = 10000.0) -> torch.Tensor:
    """Complex rotations for a width*height token grid (row-major), (W*H)*(dim/2) complex64.

    The first dim/4 complex pairs rotate with x, the last dim/4 with y, sharing the same frequencies.
    """
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(width * height, dtype=torch.float32)
    t_x = t % width
    t_y = torch.div(t, width, rounding_mode="floor")
    angles_x = torch.outer(t_x, freqs)
    angles_y = torch.outer(t_y, freqs)
    rot_x = torch.polar(torch.ones_like(angles_x), angles_x)
    rot_y = torch.polar(torch.ones_like(angles_y), angles_y)
    return torch.cat([rot_x, rot_y], dim=-1)


def apply_rope(
    x: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    rotation: torch.Tensor | None = None,
    *,
    inplace: bool = False,
) -> torch.Tensor:
    """Rotate B*heads*L*D features by angles given as L*(D/2) cos and sin tables (in float32, cast back).

    Adjacent channel pairs rotate as complex numbers. Eager mode uses a complex multiply (5x faster
    on a CPU); under torch.compile the same arithmetic is written with cos and sin, which inductor
    can generate code for. When L is a multiple of the table length (memory keys of several frames)
    the table repeats: every memory frame gets the same spatial positions, no temporal rotation.
    `rotation`: the same table as complex numbers (cos + i sin), when the caller keeps one.
    `inplace`: rotate x itself when it is float32 and needs no gradient, and return it (memory keys
    of several objects are ~100 MB a layer: no new tensor, no copy); otherwise returns a new tensor.
    """
    if x.shape[-2] == 0:
        return x
    repeats = x.shape[-2] // cos.shape[0]
    if repeats * cos.shape[0] != x.shape[-2]:
        raise ValueError(f"{x.shape[-2]} tokens are not a whole number of {cos.shape[0]}-token maps")
    if inplace and not torch.compiler.is_compiling() and _can_rotate_in_place(x):
        table = torch.complex(cos, sin) if rotation is None else rotation
        # a view of x as complex pairs, split into `repeats` maps that all take the same table
        pairs = torch.view_as_complex(x.view(*x.shape[:-1], -1, 2))
        pairs_in_place = pairs.view(*pairs.shape[:-2], repeats, -1, pairs.shape[-1])
        pairs_in_place.mul_(table)
        return x
    pairs = x.float().reshape(*x.shape[:-1], -1, 2)
    if torch.compiler.is_compiling():
        if repeats != 1:
            cos, sin = cos.repeat(repeats, 1), sin.repeat(repeats, 1)
        real, imag = pairs[..., 0], pairs[..., 1]
        out = torch.stack((real * cos - imag * sin, real * sin + imag * cos), dim=-1).flatten(-2)
    else:
        table = torch.complex(cos, sin) if rotation is None else rotation
        if repeats != 1:
            table = table.repeat(repeats, 1)
        out = torch.view_as_real(torch.view_as_complex(pairs) * table).flatten(-2)
    return out.type_as(x)


def sine_1d(positions: torch.Tensor, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """1-D sine encoding: cat(sin, cos) (not interleaved), N -> N*dim."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=positions.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    angles = positions.unsqueeze(-1) / dim_t
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _can_rotate_in_place(x: torch.Tensor) -> bool:
    """x can be viewed as complex pairs and changed: float32, the channel pairs adjacent, even
    strides and offset (what view_as_complex needs), and no autograd history to corrupt."""
    if x.dtype != torch.float32 or x.stride(-1) != 1 or x.storage_offset() % 2:
        return False
    if any(stride % 2 for stride in x.stride()[:-1]):
        return False
    return not (x.requires_grad and torch.is_grad_enabled())

