"""Building models and loading official checkpoints.

`build_model` builds any of the eight official configurations (or a custom one) without weights;
`load_model` loads an official `.pt` (`{"model": state_dict}`) or a plain state dict strictly,
inferring which configuration it is from the tensors when none is given.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch

from .cache import resolve_checkpoint_path
from .config import PRESETS, ConfigError, SAM2Config, resolve_config
from .sam2 import SAM2Model


class CheckpointError(ValueError):
    """A file that is not a loadable SAM 2 checkpoint (with what does not match)."""


def build_model(
    config: "str | SAM2Config | Mapping[str, Any]",
    *,
    device: "str | torch.device | None" = None,
    dtype: torch.dtype | None = None,
) -> SAM2Model:
    """A model without weights (random init); `device="meta"` allocates nothing."""
    cfg = resolve_config(config)
    with torch.device(device or "cpu"):
        model = SAM2Model(cfg)
    if dtype is not None:
        model = model.to(dtype=dtype)
    return model.eval()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except pickle.UnpicklingError as exc:  # weights_only refuses anything but tensors and containers
        raise CheckpointError(
            f"{path}: not a SAM 2 checkpoint or not readable (truncated or corrupt?): {_load_failure(exc)}; "
            "checkpoints are read as tensors only, never unpickled"
        ) from None
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {_load_failure(exc)}"
        ) from None
    if isinstance(data, Mapping) and "model" in data and isinstance(data["model"], Mapping):
        data = data["model"]
    if not isinstance(data, Mapping) or not data or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: not a SAM 2 checkpoint (expected a state dict or {{'model': state_dict}})")
    return dict(data)


def _load_failure(exc: Exception) -> str:
    """torch.load's reason, without its advice to load with weights_only=False: unpickling a file
    runs whatever code it holds, so a user must never be told to do it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    kept = [line for line in lines if "weights_only" not in line and "weights only" not in line.lower()
            and "unsafe" not in line.lower() and not line.startswith(("(1)", "(2)", "Check the documentation"))]
    return f"{type(exc).__name__}: {kept[0]}" if kept else type(exc).__name__


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def infer_config(state_dict: Mapping[str, torch.Tensor]) -> SAM2Config:
    """Which official configuration a state dict belongs to, from the tensors' shapes."""
    key = "image_encoder.trunk.pos_embed"
    if key not in state_dict:
        raise CheckpointError(f"not a SAM 2 checkpoint: no {key}")
    embed_dim = state_dict[key].shape[1]
    num_blocks = 1 + max(
        (int(k.split(".")[3]) for k in state_dict if k.startswith("image_encoder.trunk.blocks.")), default=-1
    )
    is_21 = "no_obj_embed_spatial" in state_dict
    candidates = [
        cfg
        for cfg in PRESETS.values()
        if cfg.hiera.embed_dim == embed_dim
        and sum(cfg.hiera.stages) == num_blocks
        and cfg.no_obj_embed_spatial == is_21
    ]
    if len(candidates) != 1:
        raise CheckpointError(
            f"the tensors (embed_dim {embed_dim}, {num_blocks} trunk blocks, SAM 2.{1 if is_21 else 0}) match no "
            "official configuration; pass config= (a preset name, SAM2Config or the reference dict)"
        )
    return candidates[0]


def check_state_dict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str) -> None:
    """Raise one CheckpointError listing missing keys, unexpected keys and shape mismatches."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or wrong:
        parts = []
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
            if items:
                shown = ", ".join(items[:8]) + (f", ... ({len(items)} in all)" if len(items) > 8 else "")
                parts.append(f"{title}: {shown}")
        raise CheckpointError(f"{source} does not match the model configuration: " + "; ".join(parts))


def load_model(
    path: "str | os.PathLike[str]",
    *,
    config: "str | SAM2Config | Mapping[str, Any] | None" = None,
    device: "str | torch.device | None" = None,
    dtype: torch.dtype | None = None,
) -> SAM2Model:
    """Load an official checkpoint file, or a model name found in the cache (see `samroto download`).

    Tensors are read as stored and cast to float32 (or `dtype`); loading is strict.
    """
    file = resolve_checkpoint_path(path)
    state_dict = _read_state_dict(file)
    try:
        cfg = resolve_config(config) if config is not None else infer_config(state_dict)
    except ConfigError as exc:
        raise CheckpointError(f"{file}: {exc}") from None
    model = build_model(cfg, device="meta")
    check_state_dict(model, state_dict, source=str(file))
    # official files may store half precision; values are exact in float32
    state_dict = {k: v.to(dtype=torch.float32) if v.is_floating_point() else v for k, v in state_dict.items()}
    # assign: the meta model takes the loaded tensors, so no random init of a large model is wasted
    model.load_state_dict(state_dict, strict=True, assign=True)
    model = model.to(device=device or "cpu", dtype=dtype or torch.float32)
    return model.eval()
