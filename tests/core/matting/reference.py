"""The reference for the matting tests: `transformers`' VitMatteForImageMatting with small random weights."""

from __future__ import annotations

import torch

try:
    from transformers import VitDetConfig, VitMatteConfig, VitMatteForImageMatting
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError(
        "the matting parity tests compare against Hugging Face transformers: pip install -e '.[dev]' "
        "(or pip install transformers)"
    ) from exc

from samroto.core.matting import BackboneConfig, MattingConfig

# Small enough to run in milliseconds, yet every code path of the real models is taken: windowed blocks
# whose token grid needs padding, global blocks whose relative tables and the absolute position grid
# are resized, residual blocks, and all detail levels.
TINY = MattingConfig(
    name="tiny",
    backbone=BackboneConfig(
        hidden_size=32, depth=4, num_heads=2, window_size=3, window_blocks=(0, 2), residual_blocks=(1, 3),
        pretrain_image_size=64, image_size=128,
    ),
    detail_channels=(8, 12, 16),
    fusion_channels=(24, 16, 12, 8),
)


def reference_model(config: MattingConfig = TINY, seed: int = 0) -> VitMatteForImageMatting:
    """transformers' model of `config` with every weight and batch-norm statistic random (no zero init)."""
    b = config.backbone
    backbone = VitDetConfig(
        hidden_size=b.hidden_size, num_hidden_layers=b.depth, num_attention_heads=b.num_heads,
        mlp_ratio=int(b.mlp_ratio), num_channels=b.in_channels, image_size=b.image_size,
        pretrain_image_size=b.pretrain_image_size, patch_size=b.patch_size, window_size=b.window_size,
        window_block_indices=list(b.window_blocks), residual_block_indices=list(b.residual_blocks),
        use_absolute_position_embeddings=True, use_relative_position_embeddings=True, qkv_bias=b.qkv_bias,
        out_features=[f"stage{b.depth}"],
    )
    model = VitMatteForImageMatting(VitMatteConfig(
        backbone_config=backbone, hidden_size=b.hidden_size,
        convstream_hidden_sizes=list(config.detail_channels), fusion_hidden_sizes=list(config.fusion_channels),
    )).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                tensor.copy_(0.5 + noise.abs())
            elif "norm" in name and name.endswith("weight"):
                tensor.copy_(1.0 + 0.2 * noise)
            else:
                tensor.copy_(0.2 * noise)
    return model


def original_layout(hf_state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The Hugging Face tensors under the original hustvl/ViTMatte names (the inverse of the renaming in
    transformers' convert_vitmatte_to_hf.py: blocks/attn/fusion_blks/bn, patch_embed.proj, pos_embed)."""
    out = {}
    for key, value in hf_state_dict.items():
        key = key.replace("backbone.embeddings.projection.", "backbone.patch_embed.proj.")
        key = key.replace("backbone.embeddings.position_embeddings", "backbone.pos_embed")
        key = key.replace("backbone.encoder.layer.", "backbone.blocks.").replace(".attention.", ".attn.")
        key = key.replace("fusion_blocks", "fusion_blks").replace("batch_norm", "bn")
        out[key] = value
    return out


def random_inputs(height: int, width: int, *, seed: int, trimap: str = "mixed") -> torch.Tensor:
    """B=1 model input: normalised-looking RGB and a trimap of 0 / 0.5 / 1 ('mixed'), or all one value."""
    generator = torch.Generator().manual_seed(seed)
    rgb = torch.randn(1, 3, height, width, generator=generator)
    if trimap == "mixed":
        levels = torch.randint(0, 3, (1, 1, height // 8, width // 8), generator=generator).float() / 2
        tri = torch.nn.functional.interpolate(levels, size=(height, width), mode="nearest")
    else:
        tri = torch.full((1, 1, height, width), {"unknown": 0.5, "foreground": 1.0, "background": 0.0}[trimap])
    return torch.cat([rgb, tri], dim=1)
