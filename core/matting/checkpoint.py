"""Loading ViTMatte weights strictly, from the Hugging Face or the original repository's files.

Three layouts of the same tensors are accepted, told apart by their names:

- Hugging Face `VitMatteForImageMatting` (`model.safetensors` or `pytorch_model.bin`):
  `backbone.embeddings.projection.weight`, `backbone.encoder.layer.N.attention.qkv.weight`,
  `decoder.convstream.convs.N.batch_norm.weight`, `decoder.fusion_blocks.N...`;
- the original hustvl/ViTMatte `.pth` (detectron2; a plain state dict or `{"model": ...}`):
  `backbone.patch_embed.proj.weight`, `backbone.blocks.N.attn.qkv.weight`,
  `decoder.convstream.convs.N.bn.weight`, `decoder.fusion_blks.N...`;
- our own `MattingModel.state_dict()`.

The configuration is read from the tensors' shapes (widths, depth, windows, heads), so any ViTMatte
of this family loads; given a preset, a checkpoint of another size is refused. Every tensor must
find its place and every parameter must be filled: anything else raises `MattingCheckpointError`
with what did not match. `.safetensors` files are parsed here (the format is a JSON header and raw
little-endian tensors), so loading needs no extra package.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

import torch

from .config import PRESETS, BackboneConfig, MattingConfig, MattingConfigError, matting_preset
from .model import MattingModel


class MattingCheckpointError(ValueError):
    """A file that is not a loadable ViTMatte checkpoint (the message says what does not match)."""


# (pattern, replacement) applied in order to every key of a layout, giving our names
_HF_RENAMES: list[tuple[str, str]] = [
    (r"^backbone\.embeddings\.projection\.", "backbone.patch_embed."),
    (r"^backbone\.embeddings\.position_embeddings$", "backbone.pos_embed"),
    (r"^backbone\.encoder\.layer\.(\d+)\.attention\.", r"backbone.blocks.\1.attn."),
    (r"^backbone\.encoder\.layer\.", "backbone.blocks."),
    (r"^decoder\.convstream\.convs\.(\d+)\.batch_norm\.", r"detail_capture.convs.\1.norm."),
    (r"^decoder\.convstream\.", "detail_capture."),
    (r"^decoder\.fusion_blocks\.(\d+)\.conv\.batch_norm\.", r"fusion_decoder.blocks.\1.conv.norm."),
    (r"^decoder\.fusion_blocks\.", "fusion_decoder.blocks."),
]
_ORIGINAL_RENAMES: list[tuple[str, str]] = [
    (r"^backbone\.patch_embed\.proj\.", "backbone.patch_embed."),
    (r"^decoder\.convstream\.convs\.(\d+)\.bn\.", r"detail_capture.convs.\1.norm."),
    (r"^decoder\.convstream\.", "detail_capture."),
    (r"^decoder\.fusion_blks\.(\d+)\.conv\.bn\.", r"fusion_decoder.blocks.\1.conv.norm."),
    (r"^decoder\.fusion_blks\.", "fusion_decoder.blocks."),
]
_HEAD_RENAMES: list[tuple[str, str]] = [  # the same in both layouts: an nn.Sequential
    (r"^decoder\.matting_head\.matting_convs\.0\.", "fusion_decoder.head.conv1."),
    (r"^decoder\.matting_head\.matting_convs\.1\.", "fusion_decoder.head.norm."),
    (r"^decoder\.matting_head\.matting_convs\.3\.", "fusion_decoder.head.conv2."),
]

_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """All tensors of a `.safetensors` file (8-byte header length, JSON header, raw data)."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    if len(data) < 8:
        raise MattingCheckpointError(f"{path}: too short to be a safetensors file")
    (header_size,) = struct.unpack("<Q", data[:8])
    if header_size > len(data) - 8:
        raise MattingCheckpointError(f"{path}: truncated safetensors file (header of {header_size} bytes)")
    try:
        header = json.loads(data[8 : 8 + header_size])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MattingCheckpointError(f"{path}: not a safetensors file ({exc})") from None
    start = 8 + header_size
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
            begin, end = (start + int(o) for o in entry["data_offsets"])
            shape = [int(s) for s in entry["shape"]]
        except (KeyError, TypeError, ValueError):
            raise MattingCheckpointError(f"{path}: bad safetensors entry {name!r}") from None
        if end > len(data) or begin > end:
            raise MattingCheckpointError(f"{path}: truncated safetensors file (tensor {name!r} ends past the file)")
        flat = torch.frombuffer(data, dtype=dtype, count=(end - begin) // dtype.itemsize, offset=begin) \
            if end > begin else torch.empty(0, dtype=dtype)
        tensors[name] = flat.reshape(shape)
    return tensors


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, in whatever layout it uses."""
    path = Path(path)
    if not path.is_file():
        raise MattingCheckpointError(f"{path}: no such file")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refuses anything but tensors and containers
        raise MattingCheckpointError(f"{path}: not a ViTMatte checkpoint (it holds other objects: {exc})") from None
    except Exception as exc:
        try:  # a safetensors file with another extension
            return read_safetensors(path)
        except MattingCheckpointError:
            pass
        raise MattingCheckpointError(
            f"{path}: not a readable checkpoint (truncated or corrupt?): {type(exc).__name__}: {exc}"
        ) from None
    for wrapper in ("model", "state_dict"):
        if isinstance(data, Mapping) and isinstance(data.get(wrapper), Mapping):
            data = data[wrapper]
    if not isinstance(data, Mapping) or not data:
        raise MattingCheckpointError(f"{path}: not a ViTMatte checkpoint (expected a state dict)")
    return {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}


def checkpoint_layout(state_dict: Mapping[str, torch.Tensor]) -> str:
    """'huggingface', 'original' or 'samroto'; MattingCheckpointError for anything else."""
    keys = set(state_dict)
    if "backbone.embeddings.projection.weight" in keys:
        return "huggingface"
    if "backbone.patch_embed.proj.weight" in keys:
        return "original"
    if "backbone.patch_embed.weight" in keys and any(k.startswith("detail_capture.") for k in keys):
        return "samroto"
    sample = ", ".join(sorted(keys)[:3])
    if any(k.startswith(("image_encoder.", "sam_mask_decoder.", "memory_attention.")) for k in keys):
        raise MattingCheckpointError("this is a SAM 2 checkpoint, not a ViTMatte matting checkpoint")
    raise MattingCheckpointError(
        f"not a ViTMatte checkpoint: no ViT patch embedding among its {len(keys)} tensors (first: {sample})"
    )


def to_samroto_names(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same tensors under our module names."""
    layout = checkpoint_layout(state_dict)
    renames = {"huggingface": _HF_RENAMES + _HEAD_RENAMES, "original": _ORIGINAL_RENAMES + _HEAD_RENAMES,
               "samroto": []}[layout]
    compiled = [(re.compile(p), r) for p, r in renames]
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in compiled:
            key = pattern.sub(replacement, key)
        out[key] = value
    return out


def _indices(keys: set[str], pattern: str) -> list[int]:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return sorted(found)


def infer_config(state_dict: Mapping[str, torch.Tensor], *, name: str = "custom") -> MattingConfig:
    """The configuration a state dict (our names) was made for, read from its tensors' shapes."""
    keys = set(state_dict)
    try:
        patch = state_dict["backbone.patch_embed.weight"]
        hidden, in_channels, patch_size = int(patch.shape[0]), int(patch.shape[1]), int(patch.shape[2])
        positions = int(state_dict["backbone.pos_embed"].shape[1]) - 1
        depth = len(_indices(keys, r"backbone\.blocks\.(\d+)\."))
        tables = {i: int(state_dict[f"backbone.blocks.{i}.attn.rel_pos_h"].shape[0]) for i in range(depth)}
        head_dim = int(state_dict["backbone.blocks.0.attn.rel_pos_h"].shape[1])
        mlp_hidden = int(state_dict["backbone.blocks.0.mlp.fc1.weight"].shape[0])
        detail = [int(state_dict[f"detail_capture.convs.{i}.conv.weight"].shape[0])
                  for i in _indices(keys, r"detail_capture\.convs\.(\d+)\.")]
        fusion = [int(state_dict[f"fusion_decoder.blocks.{i}.conv.conv.weight"].shape[0])
                  for i in _indices(keys, r"fusion_decoder\.blocks\.(\d+)\.")]
        head_channels = int(state_dict["fusion_decoder.head.conv1.weight"].shape[0])
    except (KeyError, IndexError) as exc:
        raise MattingCheckpointError(f"not a complete ViTMatte checkpoint: missing {exc}") from None
    grid = int(round(positions**0.5))
    global_table = max(tables.values()) if tables else 1
    window_blocks = tuple(i for i, n in tables.items() if n < global_table)
    window_tables = {tables[i] for i in window_blocks}
    if len(window_tables) > 1 or depth == 0 or head_dim == 0 or grid * grid != positions:
        raise MattingCheckpointError("not a ViTMatte checkpoint: inconsistent attention or position tables")
    window_size = (window_tables.pop() + 1) // 2 if window_tables else 14
    try:
        backbone = BackboneConfig(
            hidden_size=hidden,
            depth=depth,
            num_heads=hidden // head_dim,
            mlp_ratio=mlp_hidden / hidden,
            patch_size=patch_size,
            in_channels=in_channels,
            window_size=window_size,
            window_blocks=window_blocks,
            residual_blocks=tuple(_indices(keys, r"backbone\.blocks\.(\d+)\.residual\.")),
            pretrain_image_size=grid * patch_size,
            image_size=(global_table + 1) // 2 * patch_size,
            qkv_bias="backbone.blocks.0.attn.qkv.bias" in keys,
        )
        return MattingConfig(name=name, backbone=backbone, detail_channels=tuple(detail),
                             fusion_channels=tuple(fusion), head_channels=head_channels)
    except MattingConfigError as exc:
        raise MattingCheckpointError(f"not a ViTMatte checkpoint: {exc}") from None


def _architecture(config: MattingConfig) -> tuple[object, ...]:
    """What the tensors fix (normalisation, padding and norm epsilons are not stored in a checkpoint)."""
    b = config.backbone
    return (b.hidden_size, b.depth, b.num_heads, b.mlp_ratio, b.patch_size, b.in_channels, b.window_size,
            tuple(b.window_blocks), tuple(b.residual_blocks), b.pretrain_image_size, b.image_size, b.qkv_bias,
            tuple(config.detail_channels), tuple(config.fusion_channels), config.head_channels)


def _same_architecture(a: MattingConfig, b: MattingConfig) -> bool:
    return _architecture(a) == _architecture(b)


def _describe(config: MattingConfig) -> str:
    match = next((n for n in PRESETS if _same_architecture(config, PRESETS[n])), None)
    b = config.backbone
    return match or f"a ViTMatte of width {b.hidden_size}, {b.depth} blocks"


def load_state_dict_strict(model: MattingModel, state_dict: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Copy every tensor into `model`; MattingCheckpointError naming what is missing, extra or misshapen."""
    expected = model.state_dict()
    given = dict(state_dict)
    # BatchNorm's update counter is not a weight; some exports drop it
    for key in [k for k in expected if k.endswith("num_batches_tracked")]:
        given.setdefault(key, expected[key])
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    misshapen = sorted(f"{k} {tuple(given[k].shape)} (model {tuple(expected[k].shape)})"
                       for k in set(expected) & set(given) if given[k].shape != expected[k].shape)
    if missing or unexpected or misshapen:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", misshapen)):
            if items:
                parts.append(f"{label}: {', '.join(items[:5])}{' ...' if len(items) > 5 else ''} ({len(items)})")
        raise MattingCheckpointError(f"{source}: does not fit the ViTMatte model; " + "; ".join(parts))
    with torch.no_grad():
        for key, tensor in expected.items():
            tensor.copy_(given[key])


def load_matting_model(
    path: str | os.PathLike[str],
    *,
    config: MattingConfig | str | None = None,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> MattingModel:
    """A ViTMatte from a checkpoint file (any of the three layouts), strictly, in eval mode.

    config: a preset name or config the file must match (None: read from the file).
    """
    source = os.fspath(path)
    state_dict = to_samroto_names(read_state_dict(path))
    found = infer_config(state_dict)
    if config is not None:
        wanted = matting_preset(config) if isinstance(config, str) else config
        if not _same_architecture(found, wanted):
            raise MattingCheckpointError(f"{source}: this is {_describe(found)} checkpoint, not {wanted.name}")
        found = wanted
    else:
        found = replace(found, name=_describe(found) if _describe(found).startswith("vitmatte-") else "custom")
    with torch.device("meta"):
        model = MattingModel(found)
    model = model.to_empty(device="cpu")
    load_state_dict_strict(model, state_dict, source=source)
    model = model.to(device=device or "cpu", dtype=dtype)
    return model.eval()
