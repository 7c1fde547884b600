"""Memory attention: conditions the current frame's feature on the memory bank (spatial memories and
object pointers). Pre-norm layers of self-attention, cross-attention (both with 2-D RoPE) and an MLP."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import RoPEAttention
from .config import MemoryAttentionConfig


class MemoryAttentionLayer(nn.Module):
    def __init__(self, d_model: int, kv_dim: int, config: MemoryAttentionConfig) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model, config.num_heads, rope_theta=config.rope_theta)
        self.cross_attn_image = RoPEAttention(
            d_model, config.num_heads, kv_in_dim=kv_dim, rope_theta=config.rope_theta
        )
        self.linear1 = nn.Linear(d_model, config.dim_feedforward)
        self.linear2 = nn.Linear(config.dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self, x: torch.Tensor, memory: torch.Tensor, memory_keys: torch.Tensor, num_pointer_tokens: int
    ) -> torch.Tensor:
        """x: B*L*C queries; memory: B*M*D values; memory_keys: memory + its positions (pointer tokens last)."""
        y = self.norm1(x)
        x = x + self.self_attn(y, y, y)
        y = self.norm2(x)
        # positions are added to the keys only, not to the queries
        x = x + self.cross_attn_image(y, memory_keys, memory, num_k_exclude_rope=num_pointer_tokens)
        y = self.norm3(x)
        result: torch.Tensor = x + self.linear2(F.relu(self.linear1(y)))
        return result


class MemoryAttention(nn.Module):
    def __init__(self, d_model: int, kv_dim: int, config: MemoryAttentionConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(MemoryAttentionLayer(d_model, kv_dim, config) for _ in range(config.num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self,
        current: torch.Tensor,
        current_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_pointer_tokens: int,
    ) -> torch.Tensor:
        """current, current_pos: B*L*C (the frame's lowest-res feature and its sine encoding);
        memory, memory_pos: B*M*D. Returns B*L*C."""
        x = current + 0.1 * current_pos
        memory_keys = memory + memory_pos  # the same for every layer: added once, not per layer
        for layer in self.layers:
            x = layer(x, memory, memory_keys, num_pointer_tokens)
        result: torch.Tensor = self.norm(x)
        return result
