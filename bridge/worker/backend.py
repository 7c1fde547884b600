"""What the worker needs from the model side, and the real implementation.

`Engine` is the seam between the worker's protocol handling and the model: `ModelEngine` loads
a SAM 2 checkpoint once and makes `VideoSession`s, frame sources and matte writers; tests put a
small fake in its place to exercise scheduling without a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Generator, Mapping, Optional, Protocol, Sequence

import numpy as np


class FrameResultLike(Protocol):
    """One frame's outputs for every object (core.video_session.FrameResult)."""

    frame: int
    obj_ids: Sequence[int]
    logits: np.ndarray   # N*H*W float32, plate size
    scores: np.ndarray   # N object-score logits
    ious: np.ndarray     # N predicted IoU (nan where unknown)


class FramesLike(Protocol):
    """A plate's frames (core.frames.FrameSource)."""

    frame_numbers: Sequence[int]
    height: int
    width: int

    def describe(self) -> dict: ...
    def close(self) -> None: ...


class MatteWriterLike(Protocol):
    """Where a session's mattes go (core.outputs.matte_output.MatteOutput)."""

    def write(self, result: Any) -> Mapping[int, Any]: ...
    def finish(self) -> Any: ...


# a propagation: frame results one at a time; closing it stops it and leaves the session consistent
Propagation = Generator[Any, None, None]


class SessionLike(Protocol):
    """A tracked shot (core.video_session.VideoSession)."""

    frames: Any
    obj_ids: list

    def add_points(self, frame: int, obj_id: int, points: Any, labels: Any, *, clear: bool = True) -> Any: ...
    def add_box(self, frame: int, obj_id: int, box: Any, *, points: Any = None, labels: Any = None) -> Any: ...
    def add_mask(self, frame: int, obj_id: int, mask: Any) -> Any: ...
    def clear_prompts(self, frame: int, obj_id: int) -> Any: ...
    def remove_object(self, obj_id: int) -> None: ...
    def reset(self) -> None: ...
    def propagate(self, start: Optional[int] = None, max_frames: Optional[int] = None,
                  reverse: bool = False, *, span: bool = False, obj_id: Optional[int] = None) -> Propagation: ...
    def span_frames(self, start: int, obj_id: Optional[int] = None) -> list: ...
    def lock(self, obj_id: int, first: Optional[int] = None, last: Optional[int] = None) -> Mapping[int, list]: ...
    def unlock(self, obj_id: int, first: Optional[int] = None, last: Optional[int] = None) -> Mapping[int, list]: ...
    def frame_result(self, frame: int, *, before: bool = False) -> Any: ...
    # 1.3 (sessions with history): step(label), journal_files(paths), undo(), redo(), history();
    # handlers reach them with getattr, so sessions without history still serve
    def frame_output(self, obj_id: int, frame: int) -> Any: ...
    def prompts(self) -> Mapping[int, Mapping[int, Any]]: ...
    def save(self) -> None: ...
    def close(self) -> None: ...


class Engine(Protocol):
    """Everything the worker asks of the model side; nothing else is reached around it."""

    model_name: str
    device: str
    model_spec: dict  # how a batch job loads the same model again (sidecar `model`)

    def open_frames(self, plate: Any, first: Optional[int], last: Optional[int],
                    view: Optional[dict] = None) -> Any: ...
    def pushed_frames(self, folder: Path, frame_numbers: Sequence[int], height: int, width: int) -> Any: ...
    def create_session(self, frames: Any, state_dir: Path, *, image_size: Optional[int] = None) -> SessionLike: ...
    def reopen_session(self, state_dir: Path, frames: Any) -> SessionLike: ...
    def check_track_resolution(self, size: int) -> None: ...
    def matte_writer(self, out_dir: Path, name: str, fmt: str, *, frames: Any = None,
                     options: Optional[dict] = None) -> MatteWriterLike: ...


class ModelEngine:
    """The real engine: a SAM 2 model loaded once, `VideoSession`s, frame sources and matte writers."""

    def __init__(self, model: Any, *, name: str, precision: str = "float32", config: Optional[str] = None,
                 colour: Any = None, history_steps: Optional[int] = None,
                 history_max_mb: Optional[float] = None) -> None:
        """model: a loaded `SAM2Model` (on its device); name: how `hello` reports it (the checkpoint);
        config: the configuration it was loaded with, when not an official one;
        precision: "float32", or "bfloat16"/"float16" autocast on CUDA;
        colour: `ColourSettings` for plates whose client leaves them open (the worker's --ocio, ...);
        history_steps, history_max_mb: undo steps new sessions keep and the size cap of their journal
        (None: `SessionOptions`' defaults)."""
        self.history_steps = history_steps
        self.history_max_mb = history_max_mb
        self.model = model
        self.colour = colour
        self.model_name = name
        # how a batch job loads the same model again (sidecar `model`)
        self.model_spec: dict = {"checkpoint": name} if config is None else {"checkpoint": name, "config": config}
        self.device = str(model.device)
        self.precision = precision
        self._matting_models: dict = {}  # name -> loaded ViTMatte, shared by every session's matting pass

    @classmethod
    def load(cls, model: str, *, config: Optional[str] = None, device: Optional[str] = None,
             precision: Optional[str] = None) -> "ModelEngine":
        """Load a checkpoint file or cached official model (config: JSON text or file, when needed)."""
        from ...core.model.checkpoint import load_model
        from ...core.model.config import load_config_file
        from ...core.model.device import choose_precision, resolve_device

        where = resolve_device(device)  # DeviceError (a ValueError) names what the machine has
        loaded = load_model(model, config=load_config_file(config) if config else None, device=where)
        return cls(loaded, name=str(model), precision=choose_precision(where, precision), config=config)

    def warm_up(self, image_sizes: Sequence[int] = (), progress: Optional[Any] = None) -> None:
        """Run the model once per size now (compiling it when it is compiled), not on the first click."""
        from ...core.model.runtime import warm_up

        warm_up(self.model, precision=self.precision, image_sizes=image_sizes, progress=progress)

    def check_precision(self, log: Optional[Any] = None) -> None:
        """Fall back to float32 when the engine's precision overflows on this device (fp16 before Ampere)."""
        from ...core.model.runtime import finite_precision

        self.precision = finite_precision(self.model, self.precision, log=log)

    def memory_status(self) -> Optional[dict]:
        """VRAM in bytes (allocated, reserved, peak, free, total) on a CUDA device; None elsewhere."""
        from ...core.model.device import device_memory

        return device_memory(self.model.device)

    def release_memory(self) -> None:
        """Hand cached device memory back (after an out-of-memory error)."""
        from ...core.model.device import release_device_memory

        release_device_memory(self.model.device)

    def classify_error(self, exc: BaseException) -> Optional[str]:
        return classify_device_error(exc)

    def open_frames(self, plate: Any, first: Optional[int], last: Optional[int], view: Optional[dict] = None) -> Any:
        """view: the client's colour settings (`ColourSettings.to_dict()` form, or an older curve);
        the worker's own (`--ocio`, ...) fill what they leave open."""
        from ...core.colour import ColourSettings
        from ...core.frames import open_frames

        described = isinstance(plate, dict) and (plate.get("colour") is not None or plate.get("view") is not None)
        if view is None and described:
            colour = None  # a frame-source description names its colour itself
        elif self.colour is not None:
            colour = ColourSettings.of(view).merged_over(self.colour) if view is not None else self.colour
        else:
            colour = ColourSettings.of(view) if view is not None else None
        return open_frames(plate, first=first, last=last, colour=colour)

    def pushed_frames(self, folder: Path, frame_numbers: Sequence[int], height: int, width: int) -> Any:
        from ...core.frames import PushedFrames

        return PushedFrames(folder, int(frame_numbers[0]), int(frame_numbers[-1]), height, width)

    def create_session(self, frames: Any, state_dir: Path, *, image_size: Optional[int] = None) -> SessionLike:
        from ...core.video_session import SessionOptions, VideoSession

        options = SessionOptions().with_overrides(history_steps=self.history_steps, history_max_mb=self.history_max_mb)
        # the model already sits on the device; the session follows it
        return VideoSession(self.model, frames, state_dir=state_dir, precision=self.precision, image_size=image_size,
                            options=options)

    def check_track_resolution(self, size: int) -> None:
        """A preview resolution the model can run at (a multiple of 32, below its own)."""
        full = int(self.model.image_size)
        if not (64 <= size < full and size % 32 == 0):
            raise ValueError("track_resolution must be a multiple of 32 from 64 to below the model's %d, got %d"
                             % (full, size))

    def reopen_session(self, state_dir: Path, frames: Any) -> SessionLike:
        from ...core.video_session import VideoSession

        # precision belongs to this engine (its device), not to the saved session
        return VideoSession.open(state_dir, self.model, frames=frames, precision=self.precision)

    def matte_writer(self, out_dir: Path, name: str, fmt: str, *, frames: Any = None,
                     options: Optional[dict] = None) -> Any:
        """A `MatteOutput`: mattes (optionally refined/smoothed), their confidence in EXR headers and
        `<name>.confidence.json` beside them when `finish()` is called."""
        from ...core.outputs.matte_output import MatteOptions, MatteOutput
        from ...core.outputs.mattes import MatteSequenceWriter

        options = dict(options or {})
        matting_name = options.pop("matting", None)
        matting = self.matting_pass(matting_name) if matting_name else None
        writer = MatteSequenceWriter(out_dir=out_dir, shot=name, format=fmt)
        return MatteOutput(writer, frames=frames, options=MatteOptions(**options), matting=matting)

    def check_matting(self, name: str) -> None:
        """ValueError (saying how to get it) when the matting model's checkpoint is not available."""
        from ...core.matting.download import resolve_matting_checkpoint

        resolve_matting_checkpoint(name)

    def matting_pass(self, name: str) -> Any:
        """A fresh `MattingPass` (its own temporal state) over the named model, loaded once per worker."""
        from ...core.matting import load_matting_model
        from ...core.matting.download import resolve_matting_checkpoint
        from ...core.matting_pass import MattingPass

        if name not in self._matting_models:
            path, preset = resolve_matting_checkpoint(name)
            self._matting_models[name] = load_matting_model(path, config=preset, device=self.device)
        return MattingPass(self._matting_models[name])


def classify_device_error(exc: BaseException) -> Optional[str]:
    """"out_of_memory" (recoverable), "device_lost" (the device context is dead: exit) or None."""
    from ...core.model.device import is_out_of_memory, is_sticky_device_error

    if is_out_of_memory(exc):
        return "out_of_memory"
    if is_sticky_device_error(exc):
        return "device_lost"
    return None
