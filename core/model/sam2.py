"""The SAM 2 model: components assembled, with the per-frame operations the predictors are built from.

State-dict names follow the official checkpoints exactly (`image_encoder.*`, `sam_prompt_encoder.*`,
`sam_mask_decoder.*`, `memory_attention.*`, `memory_encoder.*`, plus a few top-level tensors), so the
official `.pt` files load strictly. The bookkeeping of which memories a frame attends to lives in
`video_session`; this module only does the arithmetic.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .config import SAM2Config
from .image_encoder import ImageEncoder
from .layers import MLP
from .mask_decoder import MaskDecoder, upsample_logits
from .memory_attention import MemoryAttention
from .memory_encoder import MemoryEncoder
from .position_encoding import sine_1d
from .prompt_encoder import PromptEncoder

# logit given to every pixel of an object judged absent on a frame
NO_OBJECT_SCORE = -1024.0


@dataclass
class FrameFeatures:
    """Backbone features of a frame (or a batch of frames, or one frame expanded to B objects)."""

    vision: torch.Tensor  # B*C*s*s lowest-resolution feature, raw (before any memory or no-mem embedding)
    vision_pos: torch.Tensor  # B*C*s*s its sine position encoding
    high_res: tuple[torch.Tensor, torch.Tensor]  # (B*C/8*4s*4s, B*C/4*2s*2s) after the decoder's projections

    def expand(self, batch: int) -> "FrameFeatures":
        """The same frame's features for `batch` objects (views, no copy)."""
        if self.vision.shape[0] == batch:
            return self
        return FrameFeatures(
            vision=self.vision.expand(batch, -1, -1, -1),
            vision_pos=self.vision_pos.expand(batch, -1, -1, -1),
            high_res=(
                self.high_res[0].expand(batch, -1, -1, -1),
                self.high_res[1].expand(batch, -1, -1, -1),
            ),
        )

    def select(self, index: int) -> "FrameFeatures":
        return FrameFeatures(
            vision=self.vision[index : index + 1],
            vision_pos=self.vision_pos[index : index + 1],
            high_res=(self.high_res[0][index : index + 1], self.high_res[1][index : index + 1]),
        )


@dataclass
class HeadOutput:
    """What the SAM heads (or the mask-as-output path) produce for B objects on a frame."""

    multimasks: torch.Tensor  # B*M*(4s)*(4s) low-res logits of every candidate (M = 1 or 3)
    ious: torch.Tensor  # B*M predicted IoU of every candidate
    lowres: torch.Tensor  # B*1*(4s)*(4s) chosen low-res logits (-1024 where the object is absent)
    highres: torch.Tensor  # B*1*S*S the same, upsampled to the model input size
    obj_ptr: torch.Tensor  # B*C object pointer
    object_score: torch.Tensor  # B*1 object-presence logit
    best_iou: torch.Tensor  # B predicted IoU of the chosen mask


class SAM2Model(nn.Module):
    def __init__(self, config: SAM2Config) -> None:
        super().__init__()
        config.validate()
        self.config = config
        c = config
        hidden, mem = c.hidden_dim, c.mem_dim

        self.image_encoder = ImageEncoder(c.hiera, c.neck)
        self.sam_prompt_encoder = PromptEncoder(hidden, c.feature_size, c.image_size)
        self.sam_mask_decoder = MaskDecoder(hidden, c.mask_decoder)
        self.memory_attention = MemoryAttention(hidden, mem, c.memory_attention)
        self.memory_encoder = MemoryEncoder(hidden, c.memory_encoder)

        # temporal encoding of the spatial memories: index 6 for keyframes, 0 for the previous frame ...
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(c.num_maskmem, 1, 1, mem))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, hidden))
        # loaded for strictness, unused at inference (`directly_add_no_mem_embed`)
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, hidden))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, hidden))
        # learned 4x4 stride-4 conv turning a full-size mask prompt into a low-res logit-like map
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.obj_ptr_proj = MLP(hidden, hidden, hidden, 3)
        if c.proj_tpos_enc_in_obj_ptrs:
            self.obj_ptr_tpos_proj = nn.Linear(hidden, mem)
        if c.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem))

    @property
    def device(self) -> torch.device:
        return self.no_mem_embed.device

    @property
    def dtype(self) -> torch.dtype:
        return self.no_mem_embed.dtype

    @property
    def image_size(self) -> int:
        return self.config.image_size

    def at_image_size(self, image_size: int) -> "SAM2Model":
        """The same weights run at another input size (e.g. a 512 preview), without copying them.

        The returned model shares every parameter with this one; only the sizes differ (position
        encodings and RoPE tables follow the token count).
        """
        if image_size == self.image_size:
            return self
        view = copy.copy(self)
        # own containers, so swapping the prompt encoder does not touch this model
        view._modules = dict(self._modules)
        view._parameters = dict(self._parameters)
        view._buffers = dict(self._buffers)
        view.config = self.config.with_image_size(image_size)
        prompt = copy.copy(self.sam_prompt_encoder)
        prompt.image_size = image_size
        prompt.feature_size = view.config.feature_size
        prompt.mask_input_size = 4 * view.config.feature_size
        view._modules["sam_prompt_encoder"] = prompt
        return view

    # --- image features ------------------------------------------------------------------------

    def encode_image(self, images: torch.Tensor) -> FrameFeatures:
        """images: B*3*S*S normalised -> features."""
        backbone = self.image_encoder(images)
        decoder = self.sam_mask_decoder
        s0 = decoder.conv_s0(backbone.fpn[0])
        s1 = decoder.conv_s1(backbone.fpn[1])
        return FrameFeatures(vision=backbone.fpn[2], vision_pos=backbone.positions[2], high_res=(s0, s1))

    # --- SAM heads -----------------------------------------------------------------------------

    def use_multimask(self, *, num_points: int) -> bool:
        """The official configs give 3 masks for 0 or 1 point (also on tracked frames), 1 mask otherwise;
        a box counts as 2 points."""
        return 0 <= num_points <= 1

    def predict_masks(
        self,
        pix_feat: torch.Tensor,
        high_res: tuple[torch.Tensor, torch.Tensor],
        *,
        points: tuple[torch.Tensor, torch.Tensor] | None = None,
        mask_input: torch.Tensor | None = None,
        multimask: bool,
    ) -> HeadOutput:
        """Prompt encoder + mask decoder + object pointer (the reference's `_forward_sam_heads`).

        pix_feat: B*C*s*s (memory-conditioned, or raw + no_mem_embed on a first prompt);
        points: (B*N*2 model-input pixel coords, B*N labels) or None (one not-a-point is used);
        mask_input: B*1*h*w logits, resized to 4s*4s with antialiasing if needed.
        """
        b = pix_feat.shape[0]
        device = pix_feat.device
        if points is None:
            points = (
                torch.zeros(b, 1, 2, device=device),
                -torch.ones(b, 1, dtype=torch.int32, device=device),
            )
        prompt = self.sam_prompt_encoder
        if mask_input is not None and mask_input.shape[-2:] != (prompt.mask_input_size, prompt.mask_input_size):
            mask_input = F.interpolate(
                mask_input.float(),
                size=(prompt.mask_input_size, prompt.mask_input_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        sparse, dense = prompt(points, mask_input)
        out = self.sam_mask_decoder(
            pix_feat, prompt.dense_positional_encoding(), sparse, dense, high_res, multimask=multimask
        )
        present = out.object_score > 0
        # an absent object gets a hard "nothing" mask, consistent with what goes into memory
        multimasks = torch.where(present[:, None, None], out.masks, NO_OBJECT_SCORE).float()
        highres_all = upsample_logits(multimasks, (self.image_size, self.image_size))

        rows = torch.arange(b, device=device)
        if multimask:
            best = torch.argmax(out.iou, dim=-1)
            lowres = multimasks[rows, best].unsqueeze(1)
            highres = highres_all[rows, best].unsqueeze(1)
            token = out.tokens[rows, best]
            best_iou = out.iou[rows, best]
        else:
            lowres, highres, token, best_iou = multimasks, highres_all, out.tokens[:, 0], out.iou[:, 0]

        obj_ptr = self.obj_ptr_proj(token)
        is_present = present.float()
        obj_ptr = is_present * obj_ptr + (1 - is_present) * self.no_obj_ptr
        return HeadOutput(
            multimasks=multimasks,
            ious=out.iou,
            lowres=lowres,
            highres=highres,
            obj_ptr=obj_ptr,
            object_score=out.object_score,
            best_iou=best_iou,
        )

    def mask_as_output(
        self, pix_feat: torch.Tensor, high_res: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor
    ) -> HeadOutput:
        """A mask prompt taken as the output itself (+-10 logits); the pointer still comes from the decoder.

        pix_feat: raw B*C*s*s backbone feature (no memory, no no_mem_embed); mask: B*1*S*S in {0, 1}.
        """
        out_scale, out_bias = 20.0, -10.0
        mask = mask.float()
        highres = mask * out_scale + out_bias
        lowres = F.interpolate(
            highres,
            size=(highres.shape[-2] // 4, highres.shape[-1] // 4),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        ious = mask.new_ones(mask.shape[0], 1)
        heads = self.predict_masks(
            pix_feat, high_res, mask_input=self.mask_downsample(mask), multimask=False
        )
        # presence is read from the mask itself, not from the decoder's score
        present = torch.any(mask.flatten(1) > 0.0, dim=1)[:, None].float()
        object_score = out_scale * present + out_bias
        obj_ptr = present * heads.obj_ptr + (1 - present) * self.no_obj_ptr
        return HeadOutput(
            multimasks=lowres,
            ious=ious,
            lowres=lowres,
            highres=highres,
            obj_ptr=obj_ptr,
            object_score=object_score,
            best_iou=ious[:, 0],
        )

    # --- memory --------------------------------------------------------------------------------

    def encode_memory(
        self,
        pix_feat: torch.Tensor,
        highres_masks: torch.Tensor,
        object_score: torch.Tensor,
        *,
        binarize: bool,
    ) -> torch.Tensor:
        """Memory features B*D*s*s of a frame from its raw feature and its S*S mask logits.

        `binarize`: the mask comes from a prompted frame (binarised under the official build settings);
        otherwise the sigmoid of the logits is used.
        """
        c = self.config
        if c.non_overlap_masks_for_mem_enc:
            highres_masks = non_overlapping(highres_masks)
        if binarize and c.binarize_mask_from_pts_for_mem_enc:
            mask = (highres_masks > 0).float()
        else:
            mask = torch.sigmoid(highres_masks)
        mask = mask * c.sigmoid_scale_for_mem_enc + c.sigmoid_bias_for_mem_enc
        features: torch.Tensor
        features, _ = self.memory_encoder(pix_feat, mask)
        if c.no_obj_embed_spatial:
            absent = 1 - (object_score > 0).float()
            features = features + absent[..., None, None] * self.no_obj_embed_spatial[..., None, None]
        return features

    def memory_position(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """D*h*w sine encoding of a memory map (the same for every frame)."""
        return self.memory_encoder.position_encoding.encode(height, width, device)

    def pointer_positions(self, relative_positions: list[int], num_frames: int, device: torch.device,
                          normaliser: int | None = None) -> torch.Tensor:
        """P*D temporal encodings of object pointers at the given signed/absolute frame distances,
        divided by `normaliser` (default: SAM 2's pointer window)."""
        c = self.config
        if not c.add_tpos_enc_to_obj_ptrs:
            return torch.zeros(len(relative_positions), c.mem_dim, device=device)
        # normalised by the pointer window; note it depends on the shot length below 16 frames
        t_diff_max = max(min(num_frames, c.max_obj_ptrs_in_encoder) - 1, 1) if normaliser is None else normaliser
        positions = torch.tensor(relative_positions, dtype=torch.float32, device=device) / t_diff_max
        dim = c.hidden_dim if c.proj_tpos_enc_in_obj_ptrs else c.mem_dim
        encoding = sine_1d(positions, dim)
        if c.proj_tpos_enc_in_obj_ptrs:
            encoding = self.obj_ptr_tpos_proj(encoding)
        return encoding

    def assemble_memory(
        self,
        spatial: list[tuple[torch.Tensor, int]],
        pointers: list[tuple[int, torch.Tensor]],
        num_frames: int,
        *,
        pointer_normaliser: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Concatenate a frame's memories into keys for memory attention.

        spatial: (memory B*D*s*s, t_pos) with t_pos 0 for keyframes and 1..6 for the previous frames
        (6 = most recent); pointers: (relative position, pointer B*C).
        Returns memory B*M*D, memory positions B*M*D and the number of pointer tokens (last).
        """
        c = self.config
        device = self.device
        tokens, positions = [], []
        for features, t_pos in spatial:
            b, d, h, w = features.shape
            # stored in bf16 as the reference stores them; used in float32 (or the autocast dtype)
            # uploaded as bf16 (half the bytes) and converted on the device
            tokens.append(features.to(device, non_blocking=True).to(self.dtype).flatten(2).permute(0, 2, 1))
            pos = self.memory_position(h, w, device).to(self.dtype).flatten(1).permute(1, 0)
            pos = pos + self.maskmem_tpos_enc[c.num_maskmem - t_pos - 1].view(1, d)
            positions.append(pos.unsqueeze(0).expand(b, -1, -1))
        num_pointer_tokens = 0
        if pointers:
            rel, ptrs = zip(*pointers)
            ptr = torch.stack([p.to(device, non_blocking=True) for p in ptrs], dim=1).to(self.dtype)  # B*P*C
            b, p, hidden = ptr.shape
            pos = self.pointer_positions(list(rel), num_frames, device, pointer_normaliser).to(self.dtype)  # P*D
            split = hidden // c.mem_dim
            # each pointer becomes `split` consecutive tokens of mem_dim, sharing its temporal position
            tokens.append(ptr.reshape(b, p * split, c.mem_dim))
            positions.append(pos.repeat_interleave(split, dim=0).unsqueeze(0).expand(b, -1, -1))
            num_pointer_tokens = p * split
        return torch.cat(tokens, dim=1), torch.cat(positions, dim=1), num_pointer_tokens

    def condition_on_memory(
        self,
        features: FrameFeatures,
        memory: torch.Tensor | None,
        memory_pos: torch.Tensor | None,
        num_pointer_tokens: int,
    ) -> torch.Tensor:
        """The frame's feature B*C*s*s conditioned on memory; with no memory (a first prompt on an
        untracked frame) the no-memory embedding is added directly."""
        vision = features.vision
        b, c, h, w = vision.shape
        if memory is None:
            return vision + self.no_mem_embed.view(1, c, 1, 1)
        current = vision.flatten(2).permute(0, 2, 1)
        current_pos = features.vision_pos.flatten(2).permute(0, 2, 1)
        out = self.memory_attention(current, current_pos, memory, memory_pos, num_pointer_tokens)
        result: torch.Tensor = out.permute(0, 2, 1).reshape(b, c, h, w)
        return result


def non_overlapping(logits: torch.Tensor) -> torch.Tensor:
    """Keep, at each pixel, only the highest-scoring object; others are clamped to <= -10 (B*1*H*W)."""
    if logits.shape[0] == 1:
        return logits
    winner = torch.argmax(logits, dim=0, keepdim=True)
    index = torch.arange(logits.shape[0], device=logits.device)[:, None, None, None]
    return torch.where(winner == index, logits, torch.clamp(logits, max=-10.0))
