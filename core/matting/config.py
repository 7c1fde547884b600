"""ViTMatte configurations: dataclasses for the backbone and the decoder, presets for the official checkpoints.

ViTMatte (Yao et al., "ViTMatte: Boosting Image Matting with Pretrained Plain Vision Transformers",
2023) is a plain ViT over the image and its trimap (4 channels), a light convolution stream that
keeps the pixel-level detail the ViT's 16-pixel patches lose, and a decoder that fuses the two back
to full resolution. The two official Composition-1k checkpoints differ only in the ViT's width.
"""

from __future__ import annotations

from dataclasses import dataclass, field


class MattingConfigError(ValueError):
    """A matting configuration that cannot be built (or an unknown model name)."""


@dataclass(frozen=True)
class BackboneConfig:
    """The ViT backbone (ViTDet-style: windowed attention in most blocks, global attention in a few,
    each global block followed by a residual bottleneck of convolutions)."""

    hidden_size: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0
    patch_size: int = 16
    in_channels: int = 4  # RGB + trimap
    window_size: int = 14
    window_blocks: tuple[int, ...] = (0, 1, 3, 4, 6, 7, 9, 10)
    residual_blocks: tuple[int, ...] = (2, 5, 8, 11)
    # absolute position embedding: a (pretrain_image_size / patch_size)^2 grid plus a class-token slot,
    # bicubic-resized to the token grid of each input
    pretrain_image_size: int = 224
    # image size the global blocks' relative position tables were made for (2 * 512 / 16 - 1 entries),
    # linearly resized to other token grids
    image_size: int = 512
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise MattingConfigError(f"hidden_size {self.hidden_size} is not a multiple of num_heads {self.num_heads}")
        for name in ("window_blocks", "residual_blocks"):
            bad = [i for i in getattr(self, name) if not 0 <= i < self.depth]
            if bad:
                raise MattingConfigError(f"{name} {bad} outside the {self.depth} blocks")
        if self.window_size < 1 or self.patch_size < 1:
            raise MattingConfigError("window_size and patch_size must be positive")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def position_grid(self) -> int:
        return self.pretrain_image_size // self.patch_size

    @property
    def global_tokens(self) -> int:
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class MattingConfig:
    """The whole ViTMatte model, plus the input normalisation its weights were trained with."""

    name: str = "custom"
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    # detail-capture stream: one stride-2 3x3 convolution per entry (1/2, 1/4, 1/8 resolution)
    detail_channels: tuple[int, ...] = (48, 96, 192)
    # fusion decoder: one 2x upsampling + 3x3 convolution per entry (1/8 ... full resolution)
    fusion_channels: tuple[int, ...] = (256, 128, 64, 32)
    head_channels: int = 16
    batch_norm_eps: float = 1e-5
    # The original training normalised RGB with the ImageNet mean and deviation (configs/common/model.py);
    # the trimap channel is 0 (background), 0.5 (unknown), 1 (foreground), not normalised.
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    # inputs are zero-padded on the bottom and right to a multiple of this
    size_divisor: int = 32

    def __post_init__(self) -> None:
        if len(self.fusion_channels) != len(self.detail_channels) + 1:
            raise MattingConfigError(
                f"fusion_channels needs one more entry than detail_channels (a fusion step per detail level "
                f"plus full resolution), got {len(self.fusion_channels)} and {len(self.detail_channels)}"
            )
        # the backbone's features are at 1/patch_size and every fusion step doubles the resolution
        if 2 ** len(self.fusion_channels) != self.backbone.patch_size:
            raise MattingConfigError(
                f"{len(self.fusion_channels)} fusion steps cannot bring 1/{self.backbone.patch_size} "
                "features back to full resolution"
            )
        if self.size_divisor % self.backbone.patch_size:
            raise MattingConfigError("size_divisor must be a multiple of the patch size")


VITMATTE_SMALL = MattingConfig(name="vitmatte-small")
VITMATTE_BASE = MattingConfig(name="vitmatte-base", backbone=BackboneConfig(hidden_size=768, num_heads=12))

PRESETS: dict[str, MattingConfig] = {c.name: c for c in (VITMATTE_SMALL, VITMATTE_BASE)}

# Where `samroto download` fetches each model: the Hugging Face repositories of the Composition-1k
# checkpoints (Apache-2.0 model cards; the original code and Google Drive weights are MIT).
HF_REPOSITORIES: dict[str, str] = {
    "vitmatte-small": "hustvl/vitmatte-small-composition-1k",
    "vitmatte-base": "hustvl/vitmatte-base-composition-1k",
}


def matting_preset(name: str) -> MattingConfig:
    """`vitmatte-small` / `vitmatte-base` (also `vitmatte-small-composition-1k`, `vitmatte-s`, ...)."""
    key = name.strip().lower().removesuffix("-composition-1k")
    key = {"vitmatte-s": "vitmatte-small", "vitmatte-b": "vitmatte-base"}.get(key, key)
    if key not in PRESETS:
        raise MattingConfigError(f"unknown matting model {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[key]
