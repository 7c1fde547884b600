"""samroto.core: the SAM 2 model, the engine that tracks a shot, and what a tracked shot becomes.

The names users need are exported here and loaded on first use, so `import samroto.core` stays
light (no torch until a model or session name is touched)::

    from samroto.core import load_model, VideoSession

    model = load_model("sam2.1_hiera_tiny")
    with VideoSession(model, "/shots/sh010/plate.####.exr") as session:
        ...

Subpackages: `samroto.core.model` (the network only), `samroto.core.outputs` (mattes, shapes,
edges, confidence; torch-free); the engine modules sit at this level.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    # the model
    "SAM2Model": ".model.sam2",
    "SAM2Config": ".model.config",
    "ConfigError": ".model.config",
    "PRESETS": ".model.config",
    "load_config_file": ".model.config",
    "build_model": ".model.checkpoint",
    "load_model": ".model.checkpoint",
    "CheckpointError": ".model.checkpoint",
    "download_checkpoint": ".model.download",
    "DownloadError": ".model.cache",
    # the engine
    "VideoSession": ".video_session",
    "SessionOptions": ".video_session",
    "SessionError": ".video_session",
    "FrameResult": ".video_session",
    "ImagePredictor": ".image_predictor",
    "open_frames": ".frames",
    "FrameSource": ".frames",
    "FrameError": ".frames",
    "ViewTransform": ".frames",
    "ColourSettings": ".colour",
    "ColourError": ".colour",
    "stroke_to_prompt": ".strokes",
    "Sidecar": ".sidecar",
    "SidecarError": ".sidecar",
    "load_sidecar": ".sidecar",
    "save_sidecar": ".sidecar",
    "session_to_sidecar": ".sidecar",
    "apply_prompts": ".sidecar",
    # outputs
    "MatteOutput": ".outputs.matte_output",
    "MatteOptions": ".outputs.matte_output",
    "MatteSequenceWriter": ".outputs.mattes",
    "matte_from_logits": ".outputs.mattes",
    "read_matte": ".outputs.mattes",
    "masks_to_shapes": ".outputs.shapes",
    "ShapeOptions": ".outputs.shapes",
    "ShapeTrack": ".outputs.shapes",
    "RefineOptions": ".outputs.edges",
    "SmoothOptions": ".outputs.edges",
    "ConfidenceTracker": ".outputs.confidence",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what type checkers and IDEs see: the same names, imported eagerly
    from .colour import ColourError, ColourSettings
    from .frames import FrameError, FrameSource, ViewTransform, open_frames
    from .image_predictor import ImagePredictor
    from .model.cache import DownloadError
    from .model.checkpoint import CheckpointError, build_model, load_model
    from .model.config import PRESETS, ConfigError, SAM2Config, load_config_file
    from .model.download import download_checkpoint
    from .model.sam2 import SAM2Model
    from .outputs.confidence import ConfidenceTracker
    from .outputs.edges import RefineOptions, SmoothOptions
    from .outputs.matte_output import MatteOptions, MatteOutput
    from .outputs.mattes import MatteSequenceWriter, matte_from_logits, read_matte
    from .outputs.shapes import ShapeOptions, ShapeTrack, masks_to_shapes
    from .sidecar import Sidecar, SidecarError, apply_prompts, load_sidecar, save_sidecar, session_to_sidecar
    from .strokes import stroke_to_prompt
    from .video_session import FrameResult, SessionError, SessionOptions, VideoSession
