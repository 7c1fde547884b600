"""Attention layers: plain multi-head attention (mask decoder) and attention with 2-D RoPE (memory attention)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .position_encoding import apply_rope, axial_rope_frequencies


class Attention(nn.Module):
    """Multi-head attention with an optional internal width reduction (`downsample_rate`) and
    keys/values of another width (`kv_in_dim`)."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        *,
        downsample_rate: int = 1,
        kv_in_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide the internal dimension")
        kv_dim = embedding_dim if kv_in_dim is None else kv_in_dim
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(kv_dim, self.internal_dim)
        self.v_proj = nn.Linear(kv_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, h, n, c = x.shape
        return x.transpose(1, 2).reshape(b, n, h * c)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self._split_heads(self.q_proj(q))
        k = self._split_heads(self.k_proj(k))
        v = self._split_heads(self.v_proj(v))
        result: torch.Tensor = self.out_proj(self._merge_heads(F.scaled_dot_product_attention(q, k, v)))
        return result


class RoPEAttention(Attention):
    """Attention with 2-D axial rotary encoding on queries and keys.

    Queries are a square token map; keys are one or more maps of the same size (every memory frame
    gets the same spatial rotations) followed by `num_k_exclude_rope` tokens left unrotated (the
    object pointers).
    """

    def __init__(self, *args: object, rope_theta: float = 10000.0, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.rope_theta = rope_theta
        self._rotations: dict[tuple[int, torch.device], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def rotations(self, num_tokens: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """cos and sin tables (L*(D/2)) of a square map of `num_tokens` tokens, and the complex table."""
        key = (num_tokens, torch.device(device))
        tables = self._rotations.get(key)
        if tables is None:
            side = int(math.isqrt(num_tokens))
            if side * side != num_tokens:
                raise ValueError(f"RoPE needs a square token map, got {num_tokens} tokens")
            head_dim = self.internal_dim // self.num_heads
            rotation = axial_rope_frequencies(head_dim, side, side, self.rope_theta)
            tables = (rotation.real.contiguous().to(device), rotation.imag.contiguous().to(device), rotation.to(device))
            self._rotations[key] = tables
        return tables

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_k_exclude_rope: int = 0
    ) -> torch.Tensor:
        q = self._split_heads(self.q_proj(q))
        k = self._split_heads(self.k_proj(k))
        v = self._split_heads(self.v_proj(v))
        cos, sin, rotation = self.rotations(q.shape[-2], q.device)
        # q and k are fresh projections: rotated in place where possible (no extra ~100 MB tensors)
        q = apply_rope(q, cos, sin, rotation, inplace=True)
        num_rope = k.shape[-2] - num_k_exclude_rope
        if num_k_exclude_rope > 0:
            head = k[:, :, :num_rope]  # object-pointer tokens at the end take no rotation
            rotated = apply_rope(head, cos, sin, rotation, inplace=True)
            if rotated is not head:
                k = torch.cat([rotated, k[:, :, num_rope:]], dim=2)
        else:
            k = apply_rope(k, cos, sin, rotation, inplace=True)
        result: torch.Tensor = self.out_proj(self._merge_heads(F.scaled_dot_product_attention(q, k, v)))
        return result
