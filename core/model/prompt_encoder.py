"""Prompt encoder: points and box corners to sparse tokens, a mask to a dense embedding."""

from __future__ import annotations

import torch
from torch import nn

from .layers import LayerNorm2d
from .position_encoding import RandomFourierEncoding

# point labels understood by the prompt encoder
NOT_A_POINT, NEGATIVE, POSITIVE, BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = -1, 0, 1, 2, 3


class PromptEncoder(nn.Module):
    def __init__(self, embed_dim: int, feature_size: int, image_size: int, mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.feature_size = feature_size
        self.image_size = image_size
        self.mask_input_size = 4 * feature_size
        self.pe_layer = RandomFourierEncoding(embed_dim // 2)
        # labels 0..3: negative, positive, box top-left, box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def dense_positional_encoding(self) -> torch.Tensor:
        """1*C*s*s encoding of the feature-map grid, for the decoder's image tokens."""
        return self.pe_layer.grid(self.feature_size, self.feature_size).unsqueeze(0)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, *, pad: bool) -> torch.Tensor:
        """coords B*N*2 in model-input pixels (x, y), labels B*N -> B*(N+pad)*C.

        A padding point (label -1) is appended when `pad`: SAM 2 always pads, because it sends
        boxes as two labelled points rather than through the box path.
        """
        coords = coords + 0.5  # pixel centres
        if pad:
            coords = torch.cat([coords, torch.zeros_like(coords[:, :1])], dim=1)
            labels = torch.cat([labels, -torch.ones_like(labels[:, :1])], dim=1)
        emb = self.pe_layer.points(coords, (self.image_size, self.image_size))
        labels = labels.unsqueeze(-1)
        emb = torch.where(labels == NOT_A_POINT, torch.zeros_like(emb) + self.not_a_point_embed.weight, emb)
        for label in range(len(self.point_embeddings)):
            table: nn.Embedding = self.point_embeddings[label]  # type: ignore[assignment]
            emb = torch.where(labels == label, emb + table.weight, emb)
        return emb

    def embed_mask(self, masks: torch.Tensor) -> torch.Tensor:
        """B*1*(4s)*(4s) mask logits -> B*C*s*s."""
        result: torch.Tensor = self.mask_downscaling(masks)
        return result

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        masks: torch.Tensor | None,
        batch_size: int = 1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Sparse B*N*C tokens (N may be 0) and dense B*C*s*s embedding."""
        if points is not None:
            batch_size = points[0].shape[0]
        elif masks is not None:
            batch_size = masks.shape[0]
        device = self.no_mask_embed.weight.device
        if points is not None:
            sparse = self.embed_points(points[0], points[1], pad=True)
        else:
            sparse = torch.empty((batch_size, 0, self.embed_dim), device=device)
        if masks is not None:
            dense = self.embed_mask(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(
                batch_size, -1, self.feature_size, self.feature_size
            )
        return sparse, dense
