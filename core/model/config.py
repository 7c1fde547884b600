"""Model configurations: dataclasses for every component, presets for the eight official checkpoints.

The official code describes models with Hydra YAML (`_target_` class paths). We describe the same
models with plain dataclasses and read the reference-style hyperparameter dict (as found in the
official YAML, `layouts.json` and `micro_config.json`) with `config_from_reference_dict`.

Only the SAM 2 family architecture is supported: the flags that every official checkpoint sets
(high-resolution features in the decoder, object pointers, object scores, ...) are fixed; values
that differ between checkpoints (sizes, SAM 2.0 vs 2.1 pointer encoding) are configurable.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping


class ConfigError(ValueError):
    """A configuration that samroto cannot build."""


@dataclass(frozen=True)
class HieraConfig:
    """Hiera image trunk (`image_encoder.trunk`)."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (1, 2, 7, 2)
    global_attention_blocks: tuple[int, ...] = (5, 7, 9)
    window_sizes: tuple[int, ...] = (8, 4, 14, 7)
    # spatial size of the background position embedding, bicubic-interpolated to the token grid
    pos_embed_background_size: tuple[int, int] = (7, 7)
    q_pool_stages: int = 3
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0

    @property
    def channels(self) -> tuple[int, ...]:
        """Width of each stage's output, highest resolution first."""
        widths, dim = [], self.embed_dim
        for i in range(len(self.stages)):
            if i > 0:
                dim = int(dim * self.dim_mul)
            widths.append(dim)
        return tuple(widths)


@dataclass(frozen=True)
class NeckConfig:
    """FPN neck (`image_encoder.neck`)."""

    d_model: int = 256
    top_down_levels: tuple[int, ...] = (2, 3)
    interpolation: str = "nearest"
    # number of lowest-resolution levels dropped after the neck
    scalp: int = 1


@dataclass(frozen=True)
class MemoryAttentionConfig:
    """Memory attention (`memory_attention`): self-attention and cross-attention to memories, both with 2-D RoPE."""

    num_layers: int = 4
    dim_feedforward: int = 2048
    num_heads: int = 1
    rope_theta: float = 10000.0


@dataclass(frozen=True)
class MemoryEncoderConfig:
    """Memory encoder (`memory_encoder`)."""

    out_dim: int = 64
    downsampler_kernel: int = 3
    downsampler_stride: int = 2
    downsampler_padding: int = 1
    downsampler_total_stride: int = 16
    fuser_layers: int = 2
    fuser_kernel: int = 7
    fuser_padding: int = 3


@dataclass(frozen=True)
class MaskDecoderConfig:
    """Mask decoder settings that the official video predictor applies at build time."""

    dynamic_multimask_via_stability: bool = True
    stability_delta: float = 0.05
    stability_threshold: float = 0.98


@dataclass(frozen=True)
class SAM2Config:
    """A whole SAM 2 / SAM 2.1 model."""

    name: str = "custom"
    image_size: int = 1024
    hiera: HieraConfig = field(default_factory=HieraConfig)
    neck: NeckConfig = field(default_factory=NeckConfig)
    memory_attention: MemoryAttentionConfig = field(default_factory=MemoryAttentionConfig)
    memory_encoder: MemoryEncoderConfig = field(default_factory=MemoryEncoderConfig)
    mask_decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    backbone_stride: int = 16
    # 1 conditioning slot + 6 previous frames
    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16
    # -1: attend to every conditioning frame (keyframe)
    max_cond_frames_in_attn: int = -1
    memory_temporal_stride: int = 1
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    # the official video predictor binarizes masks of prompted frames before memory encoding
    binarize_mask_from_pts_for_mem_enc: bool = True
    non_overlap_masks_for_mem_enc: bool = False
    # SAM 2.1 differences (all four False for SAM 2.0)
    no_obj_embed_spatial: bool = True
    add_tpos_enc_to_obj_ptrs: bool = True
    proj_tpos_enc_in_obj_ptrs: bool = True
    use_signed_tpos_enc_to_obj_ptrs: bool = True

    @property
    def hidden_dim(self) -> int:
        return self.neck.d_model

    @property
    def mem_dim(self) -> int:
        return self.memory_encoder.out_dim

    @property
    def feature_size(self) -> int:
        """Side of the lowest-resolution feature map the decoder and memory work on (64 at 1024)."""
        return self.image_size // self.backbone_stride

    @property
    def lowres_mask_size(self) -> int:
        """Side of the decoder's mask logits (256 at 1024)."""
        return self.feature_size * 4

    def with_image_size(self, image_size: int) -> "SAM2Config":
        """The same model run at another input resolution (e.g. a 512 preview); weights are unchanged."""
        if image_size % (self.backbone_stride * 2) != 0:
            raise ConfigError(f"image_size must be a multiple of {self.backbone_stride * 2}, got {image_size}")
        return replace(self, image_size=image_size)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> None:
        h = self.hiera
        if not (len(h.stages) == len(h.window_sizes) == 4):
            raise ConfigError("hiera.stages and hiera.window_sizes must have 4 entries")
        if self.image_size % self.backbone_stride:
            raise ConfigError(f"image_size {self.image_size} is not a multiple of {self.backbone_stride}")
        if self.hidden_dim % self.mem_dim:
            raise ConfigError("the hidden dim must be a multiple of the memory dim (object pointers are split)")
        if self.neck.scalp != 1:
            raise ConfigError("only scalp=1 (drop the lowest-resolution level) is supported")


def config_from_dict(data: Mapping[str, Any]) -> SAM2Config:
    """Inverse of `SAM2Config.to_dict` (accepts missing keys: dataclass defaults apply)."""
    sub = {
        "hiera": HieraConfig,
        "neck": NeckConfig,
        "memory_attention": MemoryAttentionConfig,
        "memory_encoder": MemoryEncoderConfig,
        "mask_decoder": MaskDecoderConfig,
    }
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in sub:
            cls = sub[key]
            kwargs[key] = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
        elif key in SAM2Config.__dataclass_fields__:
            kwargs[key] = value
        else:
            raise ConfigError(f"unknown configuration key {key!r}")
    config = SAM2Config(**kwargs)
    config.validate()
    return config


# --- the eight official checkpoints --------------------------------------------------------------

_SIZES: dict[str, HieraConfig] = {
    "tiny": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_attention_blocks=(5, 7, 9)),
    "small": HieraConfig(embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_attention_blocks=(7, 10, 13)),
    "base_plus": HieraConfig(
        embed_dim=112,
        num_heads=2,
        stages=(2, 3, 16, 3),
        global_attention_blocks=(12, 16, 20),
        pos_embed_background_size=(14, 14),
    ),
    "large": HieraConfig(
        embed_dim=144,
        num_heads=2,
        stages=(2, 6, 36, 4),
        global_attention_blocks=(23, 33, 43),
        window_sizes=(8, 4, 16, 8),
    ),
}

DOWNLOAD_URLS: dict[str, str] = {}
PRESETS: dict[str, SAM2Config] = {}
for _size, _hiera in _SIZES.items():
    for _version, _is_21 in (("sam2", False), ("sam2.1", True)):
        _name = f"{_version}_hiera_{_size}"
        PRESETS[_name] = SAM2Config(
            name=_name,
            hiera=_hiera,
            no_obj_embed_spatial=_is_21,
            add_tpos_enc_to_obj_ptrs=_is_21,
            proj_tpos_enc_in_obj_ptrs=_is_21,
            use_signed_tpos_enc_to_obj_ptrs=_is_21,
        )
        _folder = "092824" if _is_21 else "072824"
        DOWNLOAD_URLS[_name] = f"https://dl.fbaipublicfiles.com/segment_anything_2/{_folder}/{_name}.pt"


def preset(name: str) -> SAM2Config:
    """One of the eight official configurations, by checkpoint name (`sam2.1_hiera_tiny`, ...)."""
    key = name.removesuffix(".pt")
    aliases = {"b+": "base_plus", "t": "tiny", "s": "small", "l": "large"}
    for short, long in aliases.items():
        if key.endswith(f"_hiera_{short}"):
            key = key[: -len(short)] + long
    if key not in PRESETS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[key]


# --- reference-style (Hydra) hyperparameter dicts --------------------------------------------------

# flags every supported model must have, with the value the official checkpoints use
_REQUIRED_FLAGS: dict[str, Any] = {
    "use_mask_input_as_output_without_sam": True,
    "directly_add_no_mem_embed": True,
    "use_high_res_features_in_sam": True,
    "multimask_output_in_sam": True,
    "iou_prediction_use_sigmoid": True,
    "use_obj_ptrs_in_encoder": True,
    "only_obj_ptrs_in_the_past_for_eval": True,
    "pred_obj_scores": True,
    "pred_obj_scores_mlp": True,
    "fixed_no_obj_ptr": True,
    "multimask_output_for_tracking": True,
    "use_multimask_token_for_obj_ptr": True,
    "multimask_min_pt_num": 0,
    "multimask_max_pt_num": 1,
    "use_mlp_for_obj_ptr_proj": True,
}


def config_from_reference_dict(ref: Mapping[str, Any], *, name: str = "custom") -> SAM2Config:
    """Read the official hyperparameter dict (the `model:` node of a SAM 2 YAML config)."""
    if "model" in ref and "image_encoder" not in ref:
        ref = ref["model"]
    try:
        trunk = ref["image_encoder"]["trunk"]
        neck = ref["image_encoder"]["neck"]
        mem_attn = ref["memory_attention"]
        mem_enc = ref["memory_encoder"]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"not a SAM 2 model configuration: missing {exc}") from None

    for flag, expected in _REQUIRED_FLAGS.items():
        if flag in ref and ref[flag] != expected:
            raise ConfigError(f"samroto only supports {flag}={expected!r} (as every official checkpoint), got {ref[flag]!r}")

    defaults = HieraConfig()
    base_plus = _SIZES["base_plus"]
    hiera = HieraConfig(
        embed_dim=int(trunk.get("embed_dim", 96)),
        num_heads=int(trunk.get("num_heads", 1)),
        stages=tuple(trunk.get("stages", base_plus.stages)),
        global_attention_blocks=tuple(trunk.get("global_att_blocks", base_plus.global_attention_blocks)),
        window_sizes=tuple(trunk.get("window_spec", defaults.window_sizes)),
        pos_embed_background_size=tuple(
            trunk.get("window_pos_embed_bkg_spatial_size", base_plus.pos_embed_background_size)
        ),
    )
    if list(neck.get("backbone_channel_list", [])) != list(reversed(hiera.channels)):
        raise ConfigError(
            f"neck backbone_channel_list {neck.get('backbone_channel_list')} does not match the trunk "
            f"({list(reversed(hiera.channels))})"
        )
    layer = mem_attn.get("layer", {})
    cross = layer.get("cross_attention", {})
    downsampler = mem_enc.get("mask_downsampler", {})
    cx = mem_enc.get("fuser", {}).get("layer", {})
    decoder_args = ref.get("sam_mask_decoder_extra_args") or {}
    config = SAM2Config(
        name=name,
        image_size=int(ref.get("image_size", 1024)),
        hiera=hiera,
        neck=NeckConfig(
            d_model=int(neck["d_model"]),
            top_down_levels=tuple(neck.get("fpn_top_down_levels", (2, 3))),
            interpolation=str(neck.get("fpn_interp_model", "nearest")),
            scalp=int(ref["image_encoder"].get("scalp", 1)),
        ),
        memory_attention=MemoryAttentionConfig(
            num_layers=int(mem_attn.get("num_layers", 4)),
            dim_feedforward=int(layer.get("dim_feedforward", 2048)),
            num_heads=int(cross.get("num_heads", 1)),
            rope_theta=float(cross.get("rope_theta", 10000.0)),
        ),
        memory_encoder=MemoryEncoderConfig(
            out_dim=int(mem_enc.get("out_dim", 64)),
            downsampler_kernel=int(downsampler.get("kernel_size", 3)),
            downsampler_stride=int(downsampler.get("stride", 2)),
            downsampler_padding=int(downsampler.get("padding", 1)),
            fuser_layers=int(mem_enc.get("fuser", {}).get("num_layers", 2)),
            fuser_kernel=int(cx.get("kernel_size", 7)),
            fuser_padding=int(cx.get("padding", 3)),
        ),
        mask_decoder=MaskDecoderConfig(
            dynamic_multimask_via_stability=bool(decoder_args.get("dynamic_multimask_via_stability", True)),
            stability_delta=float(decoder_args.get("dynamic_multimask_stability_delta", 0.05)),
            stability_threshold=float(decoder_args.get("dynamic_multimask_stability_thresh", 0.98)),
        ),
        num_maskmem=int(ref.get("num_maskmem", 7)),
        max_obj_ptrs_in_encoder=int(ref.get("max_obj_ptrs_in_encoder", 16)),
        max_cond_frames_in_attn=int(ref.get("max_cond_frames_in_attn", -1)),
        memory_temporal_stride=int(ref.get("memory_temporal_stride_for_eval", 1)),
        sigmoid_scale_for_mem_enc=float(ref.get("sigmoid_scale_for_mem_enc", 20.0)),
        sigmoid_bias_for_mem_enc=float(ref.get("sigmoid_bias_for_mem_enc", -10.0)),
        binarize_mask_from_pts_for_mem_enc=bool(ref.get("binarize_mask_from_pts_for_mem_enc", True)),
        non_overlap_masks_for_mem_enc=bool(ref.get("non_overlap_masks_for_mem_enc", False)),
        no_obj_embed_spatial=bool(ref.get("no_obj_embed_spatial", False)),
        add_tpos_enc_to_obj_ptrs=bool(ref.get("add_tpos_enc_to_obj_ptrs", True)),
        proj_tpos_enc_in_obj_ptrs=bool(ref.get("proj_tpos_enc_in_obj_ptrs", False)),
        use_signed_tpos_enc_to_obj_ptrs=bool(ref.get("use_signed_tpos_enc_to_obj_ptrs", False)),
    )
    if config.proj_tpos_enc_in_obj_ptrs and not config.add_tpos_enc_to_obj_ptrs:
        raise ConfigError("proj_tpos_enc_in_obj_ptrs requires add_tpos_enc_to_obj_ptrs")
    mem_dim = int(cross.get("kv_in_dim", config.mem_dim))
    if mem_dim != config.mem_dim:
        raise ConfigError(f"memory attention kv_in_dim {mem_dim} != memory encoder out_dim {config.mem_dim}")
    config.validate()
    return config


def resolve_config(config: "str | SAM2Config | Mapping[str, Any]") -> SAM2Config:
    """A preset name, a dataclass config, a reference-style dict or a `SAM2Config.to_dict()` dict."""
    if isinstance(config, SAM2Config):
        config.validate()
        return config
    if isinstance(config, str):
        return preset(config)
    if isinstance(config, Mapping):
        if "image_encoder" in config or "model" in config:
            return config_from_reference_dict(config)
        return config_from_dict(config)
    raise ConfigError(f"config must be a preset name, SAM2Config or dict, not {type(config).__name__}")


def load_config_file(source: str, *, variant: str | None = None) -> SAM2Config:
    """A configuration from JSON text or a JSON file: our `to_dict()` form, a reference-style dict, or a
    file holding several (`{"models": {"sam2.1": {...}, ...}}`, as `micro_config.json`), picked by
    `variant` or by a `#variant` suffix on the path."""
    import json
    from pathlib import Path

    text = source
    if not source.lstrip().startswith("{"):
        if "#" in source and variant is None:  # `micro_config.json#sam2.1` picks one model of a file
            source, variant = source.rsplit("#", 1)
        path = Path(source)
        if not path.is_file():
            raise ConfigError(f"{source}: no such configuration file")
        text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"configuration is not valid JSON: {exc}") from None
    if isinstance(data, dict) and "models" in data:
        models = data["models"]
        if variant is None:
            if len(models) != 1:
                raise ConfigError(f"{source} holds several models ({', '.join(models)}): choose one with "
                                  f"#NAME after the file name, e.g. --config {source}#{next(iter(models))}")
            variant = next(iter(models))
        if variant not in models:
            raise ConfigError(f"no model {variant!r} in the file; it holds {', '.join(models)}")
        return config_from_reference_dict(models[variant], name=variant)
    if not isinstance(data, dict):
        raise ConfigError("configuration JSON must be an object")
    return resolve_config(data)
