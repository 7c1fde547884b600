"""Mask decoder: masks, predicted IoU and object-presence score from image features and prompt tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import MaskDecoderConfig
from .layers import MLP, LayerNorm2d
from .two_way_transformer import TwoWayTransformer

NUM_MULTIMASK_OUTPUTS = 3


@dataclass
class DecoderOutput:
    masks: torch.Tensor  # B*M*(4s)*(4s) logits (M = 3 multimask, 1 single)
    iou: torch.Tensor  # B*M predicted IoU (sigmoid)
    tokens: torch.Tensor  # B*M*C output tokens matching `masks` (the object-pointer source)
    object_score: torch.Tensor  # B*1 object-presence logit


class MaskDecoder(nn.Module):
    def __init__(self, dim: int, config: MaskDecoderConfig) -> None:
        super().__init__()
        self.config = config
        self.num_mask_tokens = NUM_MULTIMASK_OUTPUTS + 1
        # fixed sizes from SAM, independent of the model width
        self.transformer = TwoWayTransformer(depth=2, dim=dim, num_heads=8, mlp_dim=2048)
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.obj_score_token = nn.Embedding(1, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        # projections of the two high-resolution backbone levels (applied once per frame)
        self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(dim, 256, self.num_mask_tokens, 3, sigmoid_output=True)
        self.pred_obj_score_head = MLP(dim, dim, 1, 3)

    def forward(
        self,
        image: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        *,
        multimask: bool,
    ) -> DecoderOutput:
        """image: B*C*s*s (one image per prompt set), image_pe: 1*C*s*s, sparse: B*N*C, dense: B*C*s*s,
        high_res: (B*C/8*4s*4s, B*C/4*2s*2s)."""
        masks, iou, mask_tokens, object_score = self._predict(image, image_pe, sparse, dense, high_res)
        if multimask:
            return DecoderOutput(masks[:, 1:], iou[:, 1:], mask_tokens[:, 1:], object_score)
        if self.config.dynamic_multimask_via_stability and not self.training:
            masks, iou = self._stable_single_mask(masks, iou)
        else:
            masks, iou = masks[:, 0:1], iou[:, 0:1]
        # single-mask outputs always take token 0 for the pointer, even after the stability fallback
        return DecoderOutput(masks, iou, mask_tokens[:, 0:1], object_score)

    def _predict(
        self,
        image: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        output_tokens = torch.cat([self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight], 0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse.shape[0], -1, -1)
        tokens = torch.cat((output_tokens, sparse), dim=1)

        src = image + dense
        pos = image_pe.expand(tokens.shape[0], -1, -1, -1)
        b, c, h, w = src.shape
        hs, src = self.transformer(src, pos, tokens)
        iou_token = hs[:, 1, :]
        mask_tokens = hs[:, 2 : 2 + self.num_mask_tokens, :]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        deconv1, norm1, act1, deconv2, act2 = self.output_upscaling
        feat_s0, feat_s1 = high_res
        upscaled = act1(norm1(deconv1(src) + feat_s1))
        upscaled = act2(deconv2(upscaled) + feat_s0)

        hyper_in = torch.stack(
            [mlp(mask_tokens[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        b, c, h, w = upscaled.shape
        masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        iou = self.iou_prediction_head(iou_token)
        object_score = self.pred_obj_score_head(hs[:, 0, :])
        return masks, iou, mask_tokens, object_score

    def stability_scores(self, logits: torch.Tensor) -> torch.Tensor:
        """IoU between the masks thresholded at +delta and -delta (1 when both are empty)."""
        flat = logits.flatten(-2)
        delta = self.config.stability_delta
        inter = torch.sum(flat > delta, dim=-1).float()
        union = torch.sum(flat > -delta, dim=-1).float()
        return torch.where(union > 0, inter / union, 1.0)

    def _stable_single_mask(self, masks: torch.Tensor, iou: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the single-mask output when it is stable; otherwise fall back to the best multimask output."""
        multi_masks, multi_iou = masks[:, 1:], iou[:, 1:]
        best = torch.argmax(multi_iou, dim=-1)
        rows = torch.arange(multi_iou.shape[0], device=iou.device)
        best_masks = multi_masks[rows, best].unsqueeze(1)
        best_iou = multi_iou[rows, best].unsqueeze(1)
        single_masks, single_iou = masks[:, 0:1], iou[:, 0:1]
        stable = self.stability_scores(single_masks) >= self.config.stability_threshold
        out_masks = torch.where(stable[..., None, None].expand_as(single_masks), single_masks, best_masks)
        out_iou = torch.where(stable.expand_as(single_iou), single_iou, best_iou)
        return out_masks, out_iou


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=False, no antialias) upsampling of B*M*h*w logits, in float32."""
    return F.interpolate(logits.float(), size=size, mode="bilinear", align_corners=False)
