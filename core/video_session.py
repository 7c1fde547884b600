"""VideoSession: objects, prompts, keyframes and propagation through one shot.

Semantics follow the official `SAM2VideoPredictor` (Dec 2024) call for call, with the build
settings of `build_sam2_video_predictor` and `add_all_frames_to_correct_as_cond=True`: a prompt on a
frame that was already tracked makes it a keyframe, so corrections stick through later
propagations. The same sequence of calls gives the same outputs as the reference.

What differs is where things live. Frames are decoded on demand (a `FrameSource`), image features
are kept for a few recent frames only, and per-frame state lives in a `RecordStore` (files in the
session folder with a small in-memory window), so memory does not grow with the shot. A session
saved to its folder can be reopened by another process and continues with the same outputs.

Frames are addressed by the plate's own frame numbers everywhere in this API.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import weakref
from collections import OrderedDict
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from .fileio import write_bytes_atomic, write_json_atomic
from .frames import ArrayFrames, FrameSource, open_frames
from .prefetch import FramePrefetcher
from .history import MAX_HISTORY_STEPS, History, HistoryError
from .memory_bank import DiskStore, FrameRecord, InMemoryStore, ObjectIndex, RecordStore, decode_record
from .model.sam2 import NO_OBJECT_SCORE, FrameFeatures, HeadOutput, SAM2Model, non_overlapping
from .model.preprocess import PinnedBuffers, host_pixels, model_input_from_host
from .model.prompt_encoder import BOX_BOTTOM_RIGHT, BOX_TOP_LEFT
from .holes import fill_holes
from .model.device import DeviceError, DevicePolicy, check_precision, choose_precision, to_host_bfloat16
from .model.runtime import DTYPES, autocast_context, release_free_memory
from .plate_check import off_plate

SESSION_FORMAT = 1
TRIM_EVERY_FRAMES = 8
PREFETCH_AHEAD = 2


class SessionError(ValueError):
    """A request the session cannot honour (unknown object or frame, bad prompt, ...)."""


@dataclass
class FrameResult:
    """Outputs of every object on one frame, at the shot's resolution."""

    frame: int  # plate frame number
    obj_ids: list[int]
    logits: np.ndarray  # N*H*W float32 mask logits (-1024 where an object has no output on this frame)
    scores: np.ndarray  # N float32 object-score logits (> 0: the object is present)
    ious: np.ndarray  # N float32 predicted IoU of the chosen masks (nan where unknown)


@dataclass
class StoredFrame:
    """The stored state of one object on one tracked or prompted frame."""

    lowres_logits: np.ndarray  # s*s float32 (s = image_size / 4)
    score: float
    keyframe: bool
    iou: float


@dataclass
class Prompt:
    """What the artist gave for one object on one frame, in plate pixels (kept for export and replay)."""

    points: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: list[float] | None = None
    mask_file: str | None = None  # relative to the session folder

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [])}


@dataclass(frozen=True)
class SessionOptions:
    """How a session tracks; the one place its defaults are written (saved with the session)."""

    fill_hole_area: int = 8
    non_overlap_masks: bool = False
    # image features kept for recently used frames (each is ~16 MB at 1024)
    feature_cache_frames: int = 4
    # records per object kept in RAM besides keyframes when the state is on disk
    record_window: int = 24
    # "auto": the device's (bf16 autocast on Ampere and later GPUs, fp16 on Volta/Turing, float32
    # elsewhere); or "float32", "bfloat16", "float16" where the device runs it
    precision: str = "auto"
    # undo steps kept (prompts, locks, propagations; 0: no history); the journal keeps only what
    # each step overwrote, on disk next to the records
    history_steps: int = 20
    # the undo journal's size on disk past which its oldest steps go (0: no cap): full re-propagations
    # of a long shot keep every record they replaced
    history_max_mb: float = 8192.0

    def __post_init__(self) -> None:
        if self.fill_hole_area < 0:
            raise SessionError("fill_hole_area must be >= 0")
        if not 0 <= self.history_steps <= MAX_HISTORY_STEPS:
            raise SessionError(f"history_steps must be 0 to {MAX_HISTORY_STEPS}, not {self.history_steps}")
        if not self.history_max_mb >= 0:
            raise SessionError(f"history_max_mb must be >= 0 (0: no cap), not {self.history_max_mb}")
        if self.precision != "auto" and self.precision not in DTYPES:
            raise SessionError(f"precision must be one of {', '.join(DTYPES)}, not {self.precision!r}")
        if self.feature_cache_frames < 1:
            object.__setattr__(self, "feature_cache_frames", 1)

    @classmethod
    def from_saved(cls, saved: "dict[str, Any]") -> "SessionOptions":
        """Options as saved in a session manifest; keys this version does not know are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})

    def with_overrides(self, **overrides: Any) -> "SessionOptions":
        """These options with the given fields changed; None leaves a field as it is."""
        return replace(self, **{k: v for k, v in overrides.items() if v is not None})


class VideoSession:
    def __init__(
        self,
        model: SAM2Model,
        frames: "FrameSource | str | os.PathLike[str] | np.ndarray",
        *,
        video_size: tuple[int, int] | None = None,
        options: SessionOptions | None = None,
        fill_hole_area: int | None = None,
        non_overlap_masks: bool | None = None,
        state_dir: "str | os.PathLike[str] | None" = None,
        keep_in_memory: bool = False,
        device: "str | torch.device | None" = None,
        first: int | None = None,
        last: int | None = None,
        precision: str | None = None,
        feature_cache_frames: int | None = None,
        record_window: int | None = None,
        image_size: int | None = None,
        history_steps: int | None = None,
    ) -> None:
        """
        frames: a frame source, a video file, an image-sequence pattern (`plate.####.exr`) or an
            N*H*W*3 array. With `video_size` (H, W), the frames are taken as the model's input
            (already S*S) for a shot of that size, and outputs come at `video_size`.
        state_dir: where per-frame state lives (created if needed). None: a private temporary folder,
            removed on close. `keep_in_memory`: keep every record in RAM instead (like the reference).
        options: how the session tracks (`SessionOptions`); the keyword arguments of the same names
            override single fields of it.
        image_size: track at another internal resolution than the model's (e.g. 512): a PREVIEW, much
            faster on a CPU; `preview` tells. The same weights are used; final mattes come from a
            session at the model's own size.
        """
        if device is not None and not _same_device(torch.device(device), model.device):
            raise SessionError(f"the model is on {model.device}, not {device}: move the model first")
        self.options = (options or SessionOptions()).with_overrides(
            fill_hole_area=fill_hole_area,
            non_overlap_masks=non_overlap_masks,
            feature_cache_frames=feature_cache_frames,
            record_window=record_window,
            precision=precision,
            history_steps=history_steps,
        )
        try:
            if self.options.precision == "auto":
                self.options = replace(self.options, precision=choose_precision(model.device))
            check_precision(model.device, self.options.precision)
        except DeviceError as exc:
            raise SessionError(str(exc)) from None
        self.full_image_size = model.image_size
        if image_size is not None:
            model = model.at_image_size(int(image_size))
        self.model = model
        self.frames = frames if isinstance(frames, FrameSource) else open_frames(frames, first=first, last=last)
        if len(self.frames) == 0:
            raise SessionError("the shot has no frames")
        self._frames_are_model_input = video_size is not None
        if video_size is not None:
            if self.frames.height != model.image_size or self.frames.width != model.image_size:
                raise SessionError(
                    f"with video_size, frames must be the model input ({model.image_size}x{model.image_size}), "
                    f"got {self.frames.width}x{self.frames.height}"
                )
            self.height, self.width = int(video_size[0]), int(video_size[1])
        else:
            self.height, self.width = self.frames.height, self.frames.width

        self._owns_state_dir = state_dir is None and not keep_in_memory
        if keep_in_memory:
            self.state_dir: Path | None = Path(state_dir) if state_dir is not None else None
            self.store: RecordStore = InMemoryStore()
        else:
            self.state_dir = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="samroto-"))
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self.store = DiskStore(self.state_dir / "records", window=self.options.record_window, device=model.device)
        # a private temporary folder goes with the session, also when it is dropped without close()
        # or the process exits: no samroto-* folders left in the temporary folder
        self._remove_private_dir = (weakref.finalize(self, shutil.rmtree, str(self.state_dir), True)
                                    if self._owns_state_dir and self.state_dir is not None else None)

        self._objects: OrderedDict[int, ObjectIndex] = OrderedDict()
        self._prompts: dict[int, dict[int, Prompt]] = {}
        # model-space clicks per object and frame index (coords 1*N*2, labels 1*N), for clear=False
        self._points: dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
        # frames (indices) per object that propagation must not rewrite (`lock`)
        self._locks: dict[int, set[int]] = {}
        self._features: OrderedDict[int, FrameFeatures] = OrderedDict()
        # memory-conditioned features of (object, frame, direction) for repeated correction clicks,
        # valid while the object's memory bank is unchanged (`_bank_version`)
        self._conditioned: OrderedDict[tuple[int, int, bool, int], torch.Tensor] = OrderedDict()
        self._bank_version: dict[int, int] = {}
        self._prefetcher: FramePrefetcher | None = None
        self._policy = DevicePolicy.for_device(model.device)
        # reused page-locked buffers for uploads: frames ahead, the one loading and the one uploading
        self._pinned = PinnedBuffers(PREFETCH_AHEAD + 3) if model.device.type == "cuda" else None
        self._closed = False
        self._history = self._make_history(keep_in_memory)
        if self.state_dir is not None and not keep_in_memory:
            self._write_manifest()

    def _make_history(self, keep_in_memory: bool) -> History:
        """The undo journal: in the state folder (it reopens with the session), or, for a session
        kept in memory, in a private temporary folder removed with the session."""
        self._remove_history_dir: weakref.finalize | None = None
        if keep_in_memory:
            root = Path(tempfile.mkdtemp(prefix="samroto-history-"))
            self._remove_history_dir = weakref.finalize(self, shutil.rmtree, str(root), True)
        else:
            assert self.state_dir is not None
            root = self.state_dir / "history"
        try:
            return History(root, self, limit=self.options.history_steps,
                           max_bytes=int(self.options.history_max_mb * 2 ** 20))
        except HistoryError as exc:
            raise SessionError(str(exc)) from None

    # --- basic properties ----------------------------------------------------------------------

    @property
    def obj_ids(self) -> list[int]:
        return list(self._objects)

    @property
    def preview(self) -> bool:
        """Tracking below the model's own resolution: results are a preview, not final mattes."""
        return self.model.image_size < self.full_image_size

    @property
    def frame_numbers(self) -> Sequence[int]:
        return self.frames.frame_numbers

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def _index(self, frame: int) -> int:
        try:
            return self.frames.index_of(int(frame))
        except ValueError as exc:
            raise SessionError(str(exc)) from None

    def _number(self, index: int) -> int:
        return self.frames.frame_numbers[index]

    def _check_open(self) -> None:
        if self._closed:
            raise SessionError("the session is closed")

    # --- image features ------------------------------------------------------------------------

    def _host_frame(self, index: int) -> torch.Tensor:
        """Decode and convert a frame on the host (runs on the prefetch thread: no device work there,
        which on CUDA would land on the wrong device's default stream)."""
        return host_pixels(self.frames.read(self._number(index)), buffers=self._pinned)

    def _model_input(self, index: int, pixels: torch.Tensor | None = None) -> torch.Tensor:
        """Upload, resize and normalise on the compute thread."""
        if pixels is None:
            pixels = self._host_frame(index)
        device = self.model.device
        image = model_input_from_host(pixels, self.model.image_size, device=device,
                                      resize_on_host=self._policy.resize_on_host)
        if self._pinned is not None:
            self._pinned.uploaded(pixels, device)
        return image

    def features(self, index: int) -> FrameFeatures:
        """Backbone features of a frame (bounded LRU cache: repeated clicks on a frame are cheap)."""
        cached = self._features.get(index)
        if cached is not None:
            self._features.move_to_end(index)
            return cached
        pixels = self._prefetcher.take(index) if self._prefetcher is not None else None
        image = self._model_input(index, pixels)
        with torch.inference_mode(), self._autocast():
            image = image.to(self.model.device, self.model.dtype)
            features = self.model.encode_image(image[None] if image.dim() == 3 else image)
        self._features[index] = features
        while len(self._features) > self.options.feature_cache_frames:
            self._features.popitem(last=False)
        return features

    def _autocast(self):  # noqa: ANN202 - context manager
        return autocast_context(self.model.device, self.options.precision)

    # --- objects and prompts -------------------------------------------------------------------

    def _object(self, obj_id: int, *, create: bool = False) -> ObjectIndex:
        obj_id = int(obj_id)
        index = self._objects.get(obj_id)
        if index is None:
            if not create:
                raise SessionError(f"no object {obj_id}; objects: {self.obj_ids}")
            index = ObjectIndex()
            self._objects[obj_id] = index
            self._prompts[obj_id] = {}
            self._points[obj_id] = {}
            self._locks[obj_id] = set()
        return index

    def _to_model_coords(self, xy: np.ndarray) -> torch.Tensor:
        scale = np.array([self.model.image_size / self.width, self.model.image_size / self.height], np.float32)
        return torch.from_numpy((xy * scale).astype(np.float32))

    def add_points(
        self,
        frame: int,
        obj_id: int,
        points: "Sequence[Sequence[float]] | np.ndarray",
        labels: "Sequence[int] | np.ndarray",
        *,
        clear: bool = True,
    ) -> FrameResult:
        """Positive (1) and negative (0) clicks at (x, y) plate pixels. `clear=False` adds to the frame's
        earlier clicks for this object instead of replacing them."""
        pts = _as_points(points)
        labs = _as_labels(labels, len(pts))
        if len(pts) == 0:
            raise SessionError("add_points needs at least one point")
        with self._step(f"points on frame {int(frame)} (object {int(obj_id)})"):
            return self._add_point_prompt(frame, obj_id, pts, labs, box=None, clear=clear)

    def add_box(
        self,
        frame: int,
        obj_id: int,
        box: "Sequence[float] | np.ndarray",
        *,
        points: "Sequence[Sequence[float]] | np.ndarray | None" = None,
        labels: "Sequence[int] | np.ndarray | None" = None,
    ) -> FrameResult:
        """A box (x0, y0, x1, y1) in plate pixels, optionally with clicks; replaces the frame's prompts."""
        b = np.asarray(box, dtype=np.float32).reshape(-1)
        if b.shape != (4,) or not np.all(np.isfinite(b)):
            raise SessionError(f"a box is 4 finite numbers (x0, y0, x1, y1), got {box!r}")
        if b[2] < b[0] or b[3] < b[1]:
            raise SessionError(f"box corners must be (left, top, right, bottom), got {b.tolist()}")
        if (points is None) != (labels is None):
            raise SessionError("points and labels must be given together")
        pts = _as_points(points) if points is not None else np.zeros((0, 2), np.float32)
        labs = _as_labels(labels, len(pts)) if labels is not None else np.zeros((0,), np.int32)
        with self._step(f"box on frame {int(frame)} (object {int(obj_id)})"):
            return self._add_point_prompt(frame, obj_id, pts, labs, box=b, clear=True)

    def _add_point_prompt(
        self, frame: int, obj_id: int, pts: np.ndarray, labs: np.ndarray, *, box: np.ndarray | None, clear: bool
    ) -> FrameResult:
        self._check_open()
        idx = self._index(frame)
        problem = off_plate(self.width, self.height, points=pts, box=box)
        if problem is not None:
            raise SessionError(problem)
        self._check_unlocked(obj_id, idx)
        obj = self._object(obj_id, create=True)
        obj_id = int(obj_id)
        coords, labels = self._to_model_coords(pts), torch.from_numpy(labs.astype(np.int32))
        if box is not None:
            coords = torch.cat([self._to_model_coords(box.reshape(2, 2)), coords], 0)
            labels = torch.cat([torch.tensor([BOX_TOP_LEFT, BOX_BOTTOM_RIGHT], dtype=torch.int32), labels], 0)
        coords, labels = coords[None], labels[None]
        previous = self._points[obj_id].get(idx)
        prompt = self._prompts[obj_id].get(idx) if not clear else None
        if not clear and previous is not None:
            coords = torch.cat([previous[0], coords], 1)
            labels = torch.cat([previous[1], labels], 1)
        if prompt is None or prompt.mask_file is not None:
            prompt = Prompt()
        prompt.points = prompt.points + pts.tolist()
        prompt.labels = prompt.labels + labs.astype(int).tolist()
        if box is not None:
            prompt.box = box.tolist()
        self._points[obj_id][idx] = (coords, labels)
        self._prompts[obj_id][idx] = prompt

        is_init = idx not in obj.tracked
        reverse = False if is_init else obj.tracked[idx]
        prev_logits = self._latest_lowres(obj_id, idx)
        with torch.inference_mode(), self._autocast():
            features = self.features(idx)
            heads = self._run_heads(obj_id, idx, features, is_init, reverse, points=(coords, labels), prev=prev_logits)
            record = self._record_from_heads(heads, keyframe=True, tracked=False, reverse=reverse)
        self._put(obj_id, idx, record, pending=True)
        obj.pending.add(idx)
        self._save_prompts()
        return self.frame_result(frame)

    def add_mask(self, frame: int, obj_id: int, mask: np.ndarray) -> FrameResult:
        """A mask prompt (H*W at the shot's resolution; non-zero = object). Replaces the frame's prompts."""
        self._check_open()
        with self._step(f"mask on frame {int(frame)} (object {int(obj_id)})"):
            return self._add_mask(frame, obj_id, mask)

    def _add_mask(self, frame: int, obj_id: int, mask: np.ndarray) -> FrameResult:
        m = np.asarray(mask)
        if m.ndim != 2:
            raise SessionError(f"a mask prompt is H*W, got shape {m.shape}")
        if m.shape != (self.height, self.width):
            raise SessionError(f"the mask is {m.shape[1]}x{m.shape[0]}, the shot is {self.width}x{self.height}")
        idx = self._index(frame)
        self._check_unlocked(obj_id, idx)
        obj = self._object(obj_id, create=True)
        obj_id = int(obj_id)
        size = self.model.image_size
        mask_t = torch.from_numpy(m.astype(bool)).float()[None, None]
        if mask_t.shape[-2:] != (size, size):
            mask_t = F.interpolate(mask_t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
            mask_t = (mask_t >= 0.5).float()
        self._points[obj_id].pop(idx, None)
        self._prompts[obj_id][idx] = Prompt(mask_file=self._save_mask_prompt(obj_id, idx, m))

        is_init = idx not in obj.tracked
        reverse = False if is_init else obj.tracked[idx]
        with torch.inference_mode(), self._autocast():
            features = self.features(idx)
            heads = self.model.mask_as_output(
                features.vision, features.high_res, mask_t.to(self.model.device, self.model.dtype)
            )
            record = self._record_from_heads(heads, keyframe=True, tracked=False, reverse=reverse)
        self._put(obj_id, idx, record, pending=True)
        obj.pending.add(idx)
        self._save_prompts()
        return self.frame_result(frame)

    def clear_prompts(self, frame: int, obj_id: int) -> FrameResult:
        """Remove an object's prompts on a frame; a keyframe becomes an ordinary tracked frame again."""
        self._check_open()
        with self._step(f"clear prompts on frame {int(frame)} (object {int(obj_id)})"):
            return self._clear_prompts(frame, obj_id)

    def _clear_prompts(self, frame: int, obj_id: int) -> FrameResult:
        idx = self._index(frame)
        obj = self._object(obj_id)
        obj_id = int(obj_id)
        self._check_unlocked(obj_id, idx)
        self._points[obj_id].pop(idx, None)
        prompt = self._prompts[obj_id].pop(idx, None)
        if prompt is not None and prompt.mask_file and self.state_dir is not None:
            self._history.files_will_change([self.state_dir / prompt.mask_file])
            (self.state_dir / prompt.mask_file).unlink(missing_ok=True)
        if idx in obj.pending:
            obj.pending.discard(idx)
            self._delete_record(obj_id, idx, pending=True)
        if obj.committed.get(idx):
            record = self.store.get(obj_id, idx, pending=False)
            # no longer a keyframe, and no longer counted as tracked (a new prompt here starts afresh)
            self._put(obj_id, idx, replace(record, keyframe=False, tracked=False), pending=False)
            obj.committed[idx] = False
            obj.tracked.pop(idx, None)
        self._save_prompts()
        return self.frame_result(frame)

    # --- locks -----------------------------------------------------------------------------------

    def _frame_range(self, first: int | None, last: int | None) -> range:
        lo = 0 if first is None else self._index(first)
        hi = self.num_frames - 1 if last is None else self._index(last)
        if hi < lo:
            raise SessionError(f"the range {first}-{last} is empty: first must not be after last")
        return range(lo, hi + 1)

    def _check_unlocked(self, obj_id: int, idx: int) -> None:
        if idx in self._locks.get(int(obj_id), ()):
            raise SessionError(f"frame {self._number(idx)} of object {int(obj_id)} is locked: unlock it first")

    def lock(self, obj_id: int, first: int | None = None, last: int | None = None) -> dict[int, list[list[int]]]:
        """Lock an object's frames `first`..`last` (plate numbers, inclusive; default: the whole shot):
        propagation keeps their results and tracks through them using them as memory; prompts there
        are refused. Every frame of the range must have a result (tracked or prompted, and propagated)."""
        self._check_open()
        obj = self._object(obj_id)
        frames = self._frame_range(first, last)
        missing = [i for i in frames if i not in obj.committed or i in obj.pending]
        if missing:
            raise SessionError(
                f"object {int(obj_id)} has no settled result on frame {self._number(missing[0])} "
                f"({len(missing)} frame(s) of the range): propagate before locking"
            )
        with self._step(f"lock {self._range_label(frames)} (object {int(obj_id)})"):
            self._locks[int(obj_id)].update(frames)
            self._save_prompts()
        return self.locks()

    def unlock(self, obj_id: int, first: int | None = None, last: int | None = None) -> dict[int, list[list[int]]]:
        """Unlock an object's frames `first`..`last` (default: the whole shot)."""
        self._check_open()
        self._object(obj_id)
        frames = self._frame_range(first, last)
        with self._step(f"unlock {self._range_label(frames)} (object {int(obj_id)})"):
            self._locks[int(obj_id)].difference_update(frames)
            self._save_prompts()
        return self.locks()

    def _range_label(self, frames: range) -> str:
        first, last = self._number(frames[0]), self._number(frames[-1])
        return f"frame {first}" if first == last else f"frames {first}-{last}"

    def locks(self) -> dict[int, list[list[int]]]:
        """Locked ranges per object, as [first, last] plate frame numbers (inclusive)."""
        return {
            obj_id: [[self._number(a), self._number(b)] for a, b in _runs(self._locks[obj_id])]
            for obj_id in self._objects
            if self._locks[obj_id]
        }

    def remove_object(self, obj_id: int) -> None:
        self._check_open()
        obj = self._object(obj_id)
        obj_id = int(obj_id)
        with self._step(f"remove object {obj_id}"):
            self._remove_object(obj_id, obj)

    def _remove_object(self, obj_id: int, obj: ObjectIndex) -> None:
        for prompt in self._prompts.get(obj_id, {}).values():
            if prompt.mask_file and self.state_dir is not None:
                self._history.files_will_change([self.state_dir / prompt.mask_file])
                (self.state_dir / prompt.mask_file).unlink(missing_ok=True)
        if self._history.recording:
            # every record goes: the journal keeps each one (undo brings the object back whole)
            for idx in obj.pending:
                self._history.record_will_change(obj_id, idx, True)
            for idx in obj.committed:
                self._history.record_will_change(obj_id, idx, False)
        del self._objects[obj_id]
        self._prompts.pop(obj_id, None)
        self._points.pop(obj_id, None)
        self._locks.pop(obj_id, None)
        self.store.delete_object(obj_id)
        self._save_prompts()

    def reset(self) -> None:
        """Forget every object, prompt and tracked frame (one undo step)."""
        self._check_open()
        with self._step("reset"):
            for obj_id in list(self._objects):
                self.remove_object(obj_id)
            self.store.clear()

    # --- outputs -------------------------------------------------------------------------------

    def _latest(self, obj_id: int, idx: int) -> FrameRecord | None:
        """The newest output of an object on a frame: a pending prompt result first, then the tracked one."""
        obj = self._objects[obj_id]
        if idx in obj.pending:
            return self.store.get(obj_id, idx, pending=True)
        if idx in obj.committed:
            return self.store.get(obj_id, idx, pending=False)
        return None

    def _latest_lowres(self, obj_id: int, idx: int) -> torch.Tensor | None:
        record = self._latest(obj_id, idx)
        if record is None:
            return None
        # clamped to avoid rare numerical issues, as the reference does
        return torch.clamp(record.lowres.to(self.model.device), -32.0, 32.0)

    def frame_output(self, obj_id: int, frame: int) -> StoredFrame | None:
        """The stored state of an object on a frame, or None if it was never prompted or tracked there."""
        record = self._latest(int(obj_id), self._index(frame)) if int(obj_id) in self._objects else None
        if record is None:
            return None
        return StoredFrame(
            lowres_logits=record.lowres[0, 0].float().cpu().numpy(),
            score=float(record.score.reshape(-1)[0]),
            keyframe=record.keyframe,
            iou=record.iou_value(),
        )

    def frame_result(self, frame: int, *, before: bool = False) -> FrameResult:
        """Every object's current output on a frame, at the shot's resolution.

        before: the frame's previous result instead, what the newest step that changed this frame
        overwrote (the objects of that time, in their order); no objects when no step in the undo
        history changed the frame."""
        idx = self._index(frame)
        if before:
            return self._before_result(idx)
        records = [self._latest(obj_id, idx) for obj_id in self._objects]
        return self._result(idx, records)

    def _result(self, idx: int, records: list[FrameRecord | None], obj_ids: list[int] | None = None) -> FrameResult:
        """Upsampled to the plate on the device; the frame's one wait for the device is the copy of
        the logits (with scores and IoUs) to the host at the end."""
        n = len(records)
        s = self.model.config.lowres_mask_size
        device = self.model.device
        absent_lowres = torch.full((1, 1, s, s), NO_OBJECT_SCORE, dtype=torch.float32, device=device)
        absent_meta = torch.tensor([[NO_OBJECT_SCORE, float("nan")]], dtype=torch.float32, device=device)
        lowres, meta = [absent_lowres], [absent_meta]
        if n:
            lowres, meta = [], []
            for record in records:
                if record is None:
                    lowres.append(absent_lowres)
                    meta.append(absent_meta)
                else:
                    lowres.append(record.lowres.to(device).float().reshape(1, 1, s, s))
                    score, iou = record.score.to(device).float().reshape(1), record.iou.to(device).float().reshape(1)
                    meta.append(torch.cat([score, iou]).reshape(1, 2))
        logits = F.interpolate(torch.cat(lowres), size=(self.height, self.width), mode="bilinear",
                               align_corners=False)
        if self.options.non_overlap_masks:
            logits = non_overlapping(logits)
        host_logits = logits[:n, 0].cpu().numpy()
        host_meta = torch.cat(meta)[:n].cpu().numpy()
        return FrameResult(
            frame=self._number(idx),
            obj_ids=self.obj_ids if obj_ids is None else obj_ids,
            logits=host_logits,
            scores=np.ascontiguousarray(host_meta[:, 0]),
            ious=np.ascontiguousarray(host_meta[:, 1]),
        )

    # --- model steps ---------------------------------------------------------------------------

    def _record_from_heads(self, heads: HeadOutput, *, keyframe: bool, tracked: bool, reverse: bool) -> FrameRecord:
        # everything stays on the device (no sync); copies, so no record keeps a whole batch alive
        lowres = heads.lowres.float()
        if self.options.fill_hole_area > 0:
            lowres = fill_holes(lowres, self.options.fill_hole_area)
        else:
            lowres = lowres.clone()
        return FrameRecord(
            lowres=lowres,
            score=heads.object_score.float().clone(),
            obj_ptr=heads.obj_ptr.float().clone(),
            iou=heads.best_iou.float().reshape(1).clone(),
            keyframe=keyframe,
            tracked=tracked,
            reverse=reverse,
        )

    def _put(self, obj_id: int, idx: int, record: FrameRecord, *, pending: bool) -> None:
        self._history.record_will_change(obj_id, idx, pending)
        self.store.put(obj_id, idx, record, pending=pending)
        if not pending:
            self._bank_version[obj_id] = self._bank_version.get(obj_id, 0) + 1

    def _run_heads(
        self,
        obj_id: int,
        idx: int,
        features: FrameFeatures,
        is_init: bool,
        reverse: bool,
        *,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        prev: torch.Tensor | None,
    ) -> HeadOutput:
        model = self.model
        device = model.device
        if is_init:
            pix = model.condition_on_memory(features, None, None, 0)
        else:
            key = (obj_id, idx, reverse, self._bank_version.get(obj_id, 0))
            cached = self._conditioned.get(key)
            if cached is not None:
                pix = cached
            else:
                memory, memory_pos, num_ptr = self._memory_bank_for(obj_id, idx, reverse)
                pix = model.condition_on_memory(features, memory, memory_pos, num_ptr)
                self._conditioned[key] = pix
                while len(self._conditioned) > self.options.feature_cache_frames:
                    self._conditioned.popitem(last=False)
        num_points = 0 if points is None else points[1].shape[1]
        point_inputs = None
        if points is not None:
            point_inputs = (points[0].to(device, model.dtype), points[1].to(device))
        return model.predict_masks(
            pix,
            features.high_res,
            points=point_inputs,
            mask_input=None if prev is None else prev.to(model.dtype),
            multimask=model.use_multimask(num_points=num_points),
        )

    def _memory_bank_for(self, obj_id: int, idx: int, reverse: bool) -> tuple[torch.Tensor, torch.Tensor, int]:
        """The memory bank an object attends to on frame `idx` (the reference's
        `_prepare_memory_conditioned_features`): keyframes, up to 6 previous frames in the direction of
        travel, and the object pointers of keyframes in the past and of up to 15 previous frames."""
        model = self.model
        c = model.config
        obj = self._objects[obj_id]
        keyframes = obj.keyframes()
        if not keyframes:
            raise SessionError(f"object {obj_id} has no keyframe yet: prompt it on some frame first")
        selected, unselected = _select_keyframes(idx, keyframes, c.max_cond_frames_in_attn)
        spatial: list[tuple[torch.Tensor, int]] = []
        for k in selected:
            spatial.append((self._stored_memory(obj_id, k), 0))
        stride = c.memory_temporal_stride
        for t_pos in range(1, c.num_maskmem):
            t_rel = c.num_maskmem - t_pos  # frames before the current one
            if t_rel == 1:
                prev = idx + 1 if reverse else idx - 1
            elif not reverse:
                prev = ((idx - 2) // stride) * stride - (t_rel - 2) * stride
            else:
                prev = -(-(idx + 2) // stride) * stride + (t_rel - 2) * stride
            if obj.committed.get(prev) is False or prev in unselected:
                spatial.append((self._stored_memory(obj_id, prev), t_pos))

        max_ptrs = min(self.num_frames, c.max_obj_ptrs_in_encoder)
        sign = -1 if reverse else 1
        pointers: list[tuple[int, torch.Tensor]] = []
        for k in selected:
            if (k >= idx) if reverse else (k <= idx):
                distance = (idx - k) * sign if c.use_signed_tpos_enc_to_obj_ptrs else abs(idx - k)
                pointers.append((distance, self.store.get(obj_id, k, pending=False).obj_ptr))
        for t_diff in range(1, max_ptrs):
            t = idx + t_diff if reverse else idx - t_diff
            if t < 0 or t >= self.num_frames:
                break
            if obj.committed.get(t) is False or t in unselected:
                pointers.append((t_diff, self.store.get(obj_id, t, pending=False).obj_ptr))
        return model.assemble_memory(spatial, pointers, self.num_frames)

    def _stored_memory(self, obj_id: int, idx: int) -> torch.Tensor:
        record = self.store.get(obj_id, idx, pending=False)
        if record.memory is None:
            raise SessionError(f"internal: object {obj_id} frame {self._number(idx)} has no memory")
        return record.memory

    def _commit_pending(self) -> None:
        """Encode the memory of every prompted frame and make it part of the memory bank (the
        reference's propagation preflight)."""
        model = self.model
        size = model.image_size
        for obj_id, obj in self._objects.items():
            for idx in sorted(obj.pending):
                record = self.store.get(obj_id, idx, pending=True)
                with torch.inference_mode(), self._autocast():
                    features = self.features(idx)
                    highres = F.interpolate(
                        record.lowres.to(model.device), size=(size, size), mode="bilinear", align_corners=False
                    )
                    memory = model.encode_memory(
                        features.vision,
                        highres.to(model.dtype),
                        record.score.to(model.device),
                        binarize=True,
                    )
                committed = replace(
                    record,
                    memory=self._stored_bfloat16(memory),
                    tracked=idx in obj.tracked,
                    reverse=obj.tracked.get(idx, False),
                )
                self._put(obj_id, idx, committed, pending=False)
                self._delete_record(obj_id, idx, pending=True)
                obj.committed[idx] = True
            obj.pending.clear()
            if not any(obj.committed.values()):
                raise SessionError(f"object {obj_id} has no prompt on any frame: add points, a box or a mask first")

    def propagate(
        self,
        start: int | None = None,
        max_frames: int | None = None,
        reverse: bool = False,
        *,
        span: bool = False,
        obj_id: int | None = None,
    ) -> Iterator[FrameResult]:
        """Track every object from `start` (default: the earliest keyframe) forward, or backward with
        `reverse`, over at most `max_frames` more frames; yields one result per frame.

        `span=True` re-tracks only what a correction on frame `start` affects: for the object
        `obj_id` (default: every object with a prompt on `start`), forward from `start` up to its next
        keyframe and then backward from `start` down to its previous keyframe, both exclusive. Frames
        beyond, and other objects, keep their results. Within the span the results are those of a
        propagation started at `start` over the same frames (same memory bank).

        Locked frames (`lock`) are never rewritten: tracking goes through them, attending to their
        stored state as memory.

        Each frame's state is stored before it is yielded, so stopping the iteration (cancel) leaves
        a consistent session.
        """
        self._check_open()
        if not self._objects:
            raise SessionError("no objects: add a prompt first")
        if span:
            if start is None:
                raise SessionError("span re-tracking needs the corrected frame: give start=")
            if max_frames is not None or reverse:
                raise SessionError("span re-tracking goes both ways up to the neighbouring keyframes: "
                                   "max_frames and reverse do not apply")
            steps = self._span_steps(self._index(start), obj_id)
            with self._step(f"span re-track from frame {int(start)}"):
                self._commit_pending()
                yield from self._run_steps(steps)
        else:
            if obj_id is not None:
                raise SessionError("obj_id selects the object of a span re-track (span=True)")
            where = f"from frame {int(start)}" if start is not None else "from the first keyframe"
            with self._step(f"propagate {'backward' if reverse else 'forward'} {where}"):
                self._commit_pending()
                steps = self._range_steps(start, max_frames, reverse)
                yield from self._run_steps(steps)

    def _range_steps(
        self, start: int | None, max_frames: int | None, reverse: bool
    ) -> list[tuple[int, bool, frozenset[int] | None, bool]]:
        n = self.num_frames
        if start is None:
            start_idx = min(k for obj in self._objects.values() for k in obj.keyframes())
        else:
            start_idx = self._index(start)
        if max_frames is None:
            max_frames = n
        if max_frames < 0:
            raise SessionError("max_frames must be >= 0")
        if reverse:
            end = max(start_idx - max_frames, 0)
            order = range(start_idx, end - 1, -1) if start_idx > 0 else range(0)
        else:
            end = min(start_idx + max_frames, n - 1)
            order = range(start_idx, end + 1)
        return [(idx, reverse, None, True) for idx in order]

    def _span_steps(self, start_idx: int, obj_id: int | None) -> list[tuple[int, bool, frozenset[int] | None, bool]]:
        """(frame, reverse, objects tracked, yield) for a span re-track from `start_idx`: forward then
        backward, as two propagations started there would go (the second only re-flags the start)."""
        if obj_id is not None:
            self._object(obj_id)
            targets = [int(obj_id)]
        else:
            targets = [o for o, obj in self._objects.items() if start_idx in obj.pending or obj.committed.get(start_idx)]
            if not targets:
                raise SessionError(f"no object has a prompt on frame {self._number(start_idx)}: nothing to re-track")
        bounds: dict[int, tuple[int, int]] = {}
        for target in targets:
            # prompts not yet propagated become keyframes when the span starts
            keyframes = sorted(set(self._objects[target].keyframes()) | self._objects[target].pending)
            if start_idx not in keyframes:
                raise SessionError(f"object {target} has no prompt on frame {self._number(start_idx)}: "
                                   "span re-tracking starts on a corrected frame")
            previous = max((k for k in keyframes if k < start_idx), default=-1)
            following = min((k for k in keyframes if k > start_idx), default=self.num_frames)
            bounds[target] = (previous, following)
        steps: list[tuple[int, bool, frozenset[int] | None, bool]] = []
        for idx in range(start_idx, max(b[1] for b in bounds.values())):
            steps.append((idx, False, frozenset(o for o, (_, nxt) in bounds.items() if idx < nxt), True))
        for idx in range(start_idx, min(b[0] for b in bounds.values()), -1):
            steps.append((idx, True, frozenset(o for o, (prv, _) in bounds.items() if idx > prv), idx != start_idx))
        return steps

    def span_frames(self, start: int, obj_id: int | None = None) -> list[int]:
        """The frames `propagate(start, span=True, obj_id=obj_id)` yields, in order (plate numbers)."""
        self._check_open()
        return [self._number(idx) for idx, _, _, emit in self._span_steps(self._index(start), obj_id) if emit]

    def _run_steps(self, steps: list[tuple[int, bool, frozenset[int] | None, bool]]) -> Iterator[FrameResult]:
        self._save_prompts()
        # decode and resize the next frames in the background while the model works
        planned = list(dict.fromkeys(idx for idx, _, _, _ in steps if idx not in self._features))
        self._prefetcher = FramePrefetcher(self._host_frame, planned, ahead=PREFETCH_AHEAD)
        try:
            for count, (idx, reverse, only, emit) in enumerate(steps, start=1):
                result = self._track_frame(idx, reverse, only)
                self._prefetcher.advance(idx)
                if count % TRIM_EVERY_FRAMES == 0:
                    release_free_memory()  # keeps RSS flat over a long shot (glibc heap fragmentation)
                if emit:
                    yield result
        finally:
            self._prefetcher.stop()
            self._prefetcher = None

    def _track_frame(self, idx: int, reverse: bool, only: frozenset[int] | None = None) -> FrameResult:
        """Track every object (or those in `only`) on one frame; objects whose memory banks have the
        same shape run as one batch. Locked frames and objects left out keep their stored results."""
        records: dict[int, FrameRecord | None] = {}
        flag_changes: dict[int, FrameRecord] = {}
        groups: dict[tuple[int, ...], list[tuple[int, tuple[torch.Tensor, torch.Tensor, int]]]] = {}
        kept: set[int] = set()
        for obj_id, obj in self._objects.items():
            if (only is not None and obj_id not in only) or idx in self._locks[obj_id]:
                kept.add(obj_id)
                records[obj_id] = self.store.get(obj_id, idx, pending=False) if idx in obj.committed else None
            elif obj.committed.get(idx):
                # a keyframe keeps its prompted output; only its tracked flags change
                record = self.store.get(obj_id, idx, pending=False)
                if not record.tracked or record.reverse != reverse:
                    record = replace(record, tracked=True, reverse=reverse)
                    flag_changes[obj_id] = record
                records[obj_id] = record
            else:
                memory = self._memory_bank_for(obj_id, idx, reverse)
                groups.setdefault((memory[0].shape[1], memory[2]), []).append((obj_id, memory))
        # every group is computed before anything is stored: an error (out of memory) in the second
        # group leaves the frame as it was, not half-tracked
        tracked: dict[int, FrameRecord] = {}
        for members in groups.values():
            tracked.update(self._track_batch(idx, reverse, members))
        for obj_id, record in flag_changes.items():
            self._put(obj_id, idx, record, pending=False)
        for obj_id, record in tracked.items():
            self._put(obj_id, idx, record, pending=False)
            self._objects[obj_id].committed[idx] = False
        records.update(tracked)
        for obj_id, obj in self._objects.items():
            if obj_id not in kept:
                obj.tracked[idx] = reverse
        return self._result(idx, [records[obj_id] for obj_id in self._objects])

    def _track_batch(
        self, idx: int, reverse: bool, members: list[tuple[int, tuple[torch.Tensor, torch.Tensor, int]]]
    ) -> dict[int, FrameRecord]:
        model = self.model
        n = len(members)
        with torch.inference_mode(), self._autocast():
            features = self.features(idx).expand(n)
            memory = torch.cat([m[1][0] for m in members])
            memory_pos = torch.cat([m[1][1] for m in members])
            pix = model.condition_on_memory(features, memory, memory_pos, members[0][1][2])
            heads = model.predict_masks(pix, features.high_res, points=None, multimask=model.use_multimask(num_points=0))
            # memory from the chosen full-size logits before hole filling, through a sigmoid
            encoded = model.encode_memory(features.vision, heads.highres, heads.object_score, binarize=False)
        out: dict[int, FrameRecord] = {}
        for i, (obj_id, _) in enumerate(members):
            one = HeadOutput(
                multimasks=heads.multimasks[i : i + 1],
                ious=heads.ious[i : i + 1],
                lowres=heads.lowres[i : i + 1],
                highres=heads.highres[i : i + 1],
                obj_ptr=heads.obj_ptr[i : i + 1],
                object_score=heads.object_score[i : i + 1],
                best_iou=heads.best_iou[i : i + 1],
            )
            record = self._record_from_heads(one, keyframe=False, tracked=True, reverse=reverse)
            out[obj_id] = replace(record, memory=self._stored_bfloat16(encoded[i : i + 1]))
        return out

    def _stored_bfloat16(self, memory: torch.Tensor) -> torch.Tensor:
        """Memory features as the reference stores them (bf16), kept on the device (on the host for
        MPS, where bf16 is not always there)."""
        if self._policy.bfloat16_on_host:
            return to_host_bfloat16(memory, self._policy)
        return memory.to(torch.bfloat16).clone()

    # --- undo and redo -------------------------------------------------------------------------

    def step(self, label: str) -> "contextlib.AbstractContextManager[None]":
        """Make every change inside one undo step named `label` (e.g. a stroke the caller turns into
        several prompts); steps inside it join it."""
        self._check_open()
        return self._step(label)

    def _step(self, label: str) -> "contextlib.AbstractContextManager[None]":
        return self._history.step(label)

    def journal_files(self, paths: "Sequence[str | os.PathLike[str]]") -> None:
        """Files the running step (or the one that just ended) is about to write or remove outside the
        records, e.g. mattes: undo puts back what they held, and removes those the step created."""
        self._history.files_will_change([Path(p) for p in paths])

    def undo(self) -> dict[str, Any]:
        """Undo the newest step: prompts, keyframes, locks, records and journaled files go back to what
        they were before it. Returns {"step": label, "frames": plate frames whose results changed}."""
        return self._swap_step(self._history.undo)

    def redo(self) -> dict[str, Any]:
        """Redo the step undone last (a new step after an undo drops what could be redone)."""
        return self._swap_step(self._history.redo)

    def _swap_step(self, swap: Any) -> dict[str, Any]:
        self._check_open()
        try:
            label, frames = swap()
        except HistoryError as exc:
            raise SessionError(str(exc)) from None
        finally:
            self._swapped()  # also after a swap that failed and was rolled back
        return {"step": label, "frames": [self._number(i) for i in frames]}

    def _swapped(self) -> None:
        """Records and prompts changed under the caches: drop what was computed from them."""
        self._conditioned.clear()
        for obj_id in self._objects:
            self._bank_version[obj_id] = self._bank_version.get(obj_id, 0) + 1
        self._save_prompts()

    def history(self) -> dict[str, Any]:
        """{"undo": labels oldest first, "redo": labels next first, "limit": steps kept,
        "keyframes": {obj_id: [plate frames]}, "locks": {obj_id: [[first, last], ...]}}."""
        undo, redo = self._history.labels()
        keyframes = {obj_id: [self._number(i) for i in sorted(set(obj.keyframes()) | obj.pending)]
                     for obj_id, obj in self._objects.items()}
        return {"undo": undo, "redo": redo, "limit": self.options.history_steps, "keyframes": keyframes,
                "locks": self.locks()}

    def _delete_record(self, obj_id: int, idx: int, *, pending: bool) -> None:
        self._history.record_will_change(obj_id, idx, pending)
        self.store.delete(obj_id, idx, pending=pending)

    def _before_result(self, idx: int) -> FrameResult:
        found = self._history.before(idx)
        if found is None:
            empty = np.zeros((0,), np.float32)
            return FrameResult(frame=self._number(idx), obj_ids=[], logits=np.zeros((0, self.height, self.width),
                               np.float32), scores=empty, ious=empty.copy())
        meta, journaled = found
        obj_ids = [int(entry["obj_id"]) for entry in meta["objects"]]

        def record(obj_id: int, pending: bool) -> FrameRecord | None:
            if (obj_id, pending) in journaled:
                data = journaled[(obj_id, pending)]
                return None if data is None else decode_record(data)
            # the step left this one as it was, and no later step touched the frame: it is current
            obj = self._objects.get(obj_id)
            if obj is None or idx not in (obj.pending if pending else obj.committed):
                return None
            return self.store.get(obj_id, idx, pending=pending)

        records = []
        for obj_id in obj_ids:
            prompted = record(obj_id, True)
            records.append(prompted if prompted is not None else record(obj_id, False))
        return self._result(idx, records, obj_ids)

    # what the journal asks of the session (`history.Journaled`)

    def history_meta(self) -> dict[str, Any]:
        return {
            "objects": [
                {
                    "obj_id": obj_id,
                    "prompts": {str(idx): p.to_dict() for idx, p in sorted(self._prompts[obj_id].items())},
                    "clicks": {
                        str(idx): {"coords": c[0].tolist(), "labels": lab[0].tolist()}
                        for idx, (c, lab) in sorted(self._points[obj_id].items())
                    },
                    "locks": [[a, b] for a, b in _runs(self._locks[obj_id])],
                }
                for obj_id in self._objects
            ]
        }

    def history_apply_meta(self, meta: dict[str, Any]) -> None:
        objects: OrderedDict[int, ObjectIndex] = OrderedDict()
        prompts: dict[int, dict[int, Prompt]] = {}
        points: dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]] = {}
        locks: dict[int, set[int]] = {}
        for entry in meta["objects"]:
            obj_id = int(entry["obj_id"])
            objects[obj_id] = self._objects.get(obj_id) or ObjectIndex()
            prompts[obj_id] = {int(idx): Prompt(**p) for idx, p in entry["prompts"].items()}
            points[obj_id] = {
                int(idx): (torch.tensor(c["coords"], dtype=torch.float32).reshape(1, -1, 2),
                           torch.tensor(c["labels"], dtype=torch.int32).reshape(1, -1))
                for idx, c in entry["clicks"].items()
            }
            locks[obj_id] = {i for a, b in entry["locks"] for i in range(int(a), int(b) + 1)}
        self._objects, self._prompts, self._points, self._locks = objects, prompts, points, locks

    def history_save_record(self, obj_id: int, idx: int, pending: bool, dest: Path) -> bool:
        if isinstance(self.store, DiskStore):
            linked = self.store.link_record(obj_id, idx, pending=pending, dest=dest)
            if linked is not None:
                return linked
        data = self.store.peek_bytes(obj_id, idx, pending=pending)
        if data is None:
            return False
        write_bytes_atomic(dest, data, durable=False)
        return True

    def history_restore_record(self, obj_id: int, idx: int, pending: bool, data: bytes | None) -> None:
        obj = self._objects.get(obj_id)
        if data is None:
            self.store.delete(obj_id, idx, pending=pending)
            if obj is not None:
                if pending:
                    obj.pending.discard(idx)
                else:
                    obj.committed.pop(idx, None)
                    obj.tracked.pop(idx, None)
            return
        record = decode_record(data).to(self.model.device)
        if record.memory is not None and self._policy.bfloat16_on_host:
            record = replace(record, memory=record.memory.cpu())  # where `_stored_bfloat16` keeps it
        self.store.put(obj_id, idx, record, pending=pending)
        if obj is not None:
            if pending:
                obj.pending.add(idx)
            else:
                obj.committed[idx] = record.keyframe
                if record.tracked:
                    obj.tracked[idx] = record.reverse
                else:
                    obj.tracked.pop(idx, None)

    def history_flush(self) -> None:
        self.store.flush()

    # --- persistence ---------------------------------------------------------------------------

    def _write_manifest(self) -> None:
        assert self.state_dir is not None
        manifest = {
            "format": SESSION_FORMAT,
            "frames": self.frames.describe(),
            "video_size": [self.height, self.width] if self._frames_are_model_input else None,
            "options": asdict(self.options),
            "model": {"name": self.model.config.name, "image_size": self.model.image_size},
        }
        write_json_atomic(self.state_dir / "session.json", manifest)

    def _save_prompts(self) -> None:
        if self.state_dir is None or isinstance(self.store, InMemoryStore):
            return
        data = {
            "format": SESSION_FORMAT,
            "objects": [
                {
                    "obj_id": obj_id,
                    "prompts": {str(self._number(idx)): p.to_dict() for idx, p in sorted(self._prompts[obj_id].items())},
                    "clicks": {
                        str(idx): {"coords": c[0].tolist(), "labels": lab[0].tolist()}
                        for idx, (c, lab) in sorted(self._points[obj_id].items())
                    },
                    "locks": [[self._number(a), self._number(b)] for a, b in _runs(self._locks[obj_id])],
                }
                for obj_id in self._objects
            ],
        }
        write_json_atomic(self.state_dir / "prompts.json", data)

    def _save_mask_prompt(self, obj_id: int, idx: int, mask: np.ndarray) -> str | None:
        if self.state_dir is None or isinstance(self.store, InMemoryStore):
            return None
        rel = f"masks/obj_{obj_id}_f{self._number(idx)}.png"
        path = self.state_dir / rel
        path.parent.mkdir(exist_ok=True)
        self._history.files_will_change([path])
        ok, png = cv2.imencode(".png", (mask.astype(bool) * 255).astype(np.uint8))
        if not ok:
            raise SessionError("could not encode the mask prompt as PNG")
        write_bytes_atomic(path, png.tobytes())
        return rel

    def save(self) -> None:
        """Make the session durable in its folder (records, prompts, tracked frames)."""
        self._check_open()
        if self.state_dir is None or isinstance(self.store, InMemoryStore):
            raise SessionError("this session keeps its state in memory: nothing to save (give it a state_dir)")
        self.store.flush()
        self._write_manifest()
        self._save_prompts()
        self._owns_state_dir = False  # saved on purpose: keep it
        if self._remove_private_dir is not None:
            self._remove_private_dir.detach()

    @classmethod
    def open(
        cls,
        state_dir: "str | os.PathLike[str]",
        model: SAM2Model,
        *,
        frames: "FrameSource | np.ndarray | None" = None,
        device: "str | torch.device | None" = None,
        precision: str | None = None,
    ) -> "VideoSession":
        """Reopen a session saved in `state_dir`. Frames pushed as an array must be given again.

        precision: what this process runs in (a property of the engine and its device, not of the
        session: a session saved on a GPU in bf16 reopens on a Mac in float32). None: the saved one
        when this device can run it, else the device's default."""
        root = Path(state_dir)
        manifest_path = root / "session.json"
        if not manifest_path.is_file():
            raise SessionError(f"{root} holds no saved session (no session.json)")
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format") != SESSION_FORMAT:
            raise SessionError(f"{root}: session format {manifest.get('format')} is not {SESSION_FORMAT}")
        saved_size = manifest.get("model", {}).get("image_size")
        spec = manifest["frames"]
        if frames is None:
            if spec.get("kind") == "array":
                raise SessionError(f"{root} was opened on frames pushed in memory: pass them again with frames=")
            frames = open_frames(spec)
        video_size = manifest.get("video_size")
        session = cls(
            model,
            frames,
            video_size=tuple(video_size) if video_size else None,
            options=_options_for_device(SessionOptions.from_saved(manifest.get("options", {})), model, precision),
            state_dir=root,
            device=device,
            image_size=saved_size,
        )
        session._restore()
        if session._history.recover():  # an undo or redo killed halfway: back to before it
            session._swapped()
        return session

    def _restore(self) -> None:
        assert self.state_dir is not None
        prompts_path = self.state_dir / "prompts.json"
        data = json.loads(prompts_path.read_text()) if prompts_path.is_file() else {"objects": []}
        for entry in data["objects"]:
            obj_id = int(entry["obj_id"])
            obj = self._object(obj_id, create=True)
            for frame, p in entry["prompts"].items():
                self._prompts[obj_id][self._index(int(frame))] = Prompt(**p)
            for idx, spec in entry.get("clicks", {}).items():
                coords = torch.tensor(spec["coords"], dtype=torch.float32).reshape(1, -1, 2)
                labels = torch.tensor(spec["labels"], dtype=torch.int32).reshape(1, -1)
                self._points[obj_id][int(idx)] = (coords, labels)
            for first, last in entry.get("locks", []):
                self._locks[obj_id].update(range(self._index(int(first)), self._index(int(last)) + 1))
        # the records are the truth about what was tracked: they are written as frames are tracked,
        # so a session killed mid-propagation resumes with every frame it finished
        for obj_id, idx, pending, flags in self.store.scan():
            if obj_id not in self._objects:
                continue
            obj = self._objects[obj_id]
            if pending:
                obj.pending.add(idx)
            else:
                obj.committed[idx] = flags["keyframe"]
                if flags["tracked"]:
                    obj.tracked[idx] = flags["reverse"]

    def prompts(self) -> dict[int, dict[int, dict[str, Any]]]:
        """Every object's prompts by plate frame number, in plate pixels (for export to a sidecar)."""
        return {
            obj_id: {self._number(idx): p.to_dict() for idx, p in sorted(self._prompts[obj_id].items())}
            for obj_id in self._objects
        }

    def close(self) -> None:
        """Release the session. A private temporary state folder is removed; a given one is kept."""
        if self._closed:
            return
        self._closed = True
        self._features.clear()
        self.store.close()
        if self._remove_history_dir is not None:
            self._remove_history_dir()  # a session kept in memory: its journal goes with it
        if self._owns_state_dir and self._remove_private_dir is not None:
            self._remove_private_dir()
        if not isinstance(self.frames, ArrayFrames):
            self.frames.close()

    def __enter__(self) -> "VideoSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- helpers -----------------------------------------------------------------------------------------


def _options_for_device(options: SessionOptions, model: SAM2Model, precision: str | None) -> SessionOptions:
    if precision is not None:
        return replace(options, precision=precision)
    if options.precision == "auto":
        return options
    try:
        check_precision(model.device, options.precision)
        return options
    except DeviceError:
        return replace(options, precision=choose_precision(model.device))


def _same_device(a: torch.device, b: torch.device) -> bool:
    """`cuda` names the current CUDA device, so it equals `cuda:0` when that is current."""
    if a.type != b.type:
        return False
    if a.index is None or b.index is None:
        current = torch.cuda.current_device() if a.type == "cuda" and torch.cuda.is_available() else 0
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return a.index == b.index


def _select_keyframes(idx: int, keyframes: list[int], limit: int) -> tuple[list[int], set[int]]:
    """Keyframes attended to (all, or the `limit` closest: one before, one at-or-after, then nearest)."""
    if limit == -1 or len(keyframes) <= limit:
        return keyframes, set()
    if limit < 2:
        raise SessionError("max_cond_frames_in_attn must be -1 or >= 2")
    selected: list[int] = []
    before = max((t for t in keyframes if t < idx), default=None)
    after = min((t for t in keyframes if t >= idx), default=None)
    for t in (before, after):
        if t is not None:
            selected.append(t)
    rest = sorted((t for t in keyframes if t not in selected), key=lambda t: abs(t - idx))
    selected += rest[: limit - len(selected)]
    return selected, set(keyframes) - set(selected)


def _runs(indices: set[int]) -> list[tuple[int, int]]:
    """Sorted indices as inclusive (first, last) runs of consecutive values."""
    runs: list[tuple[int, int]] = []
    for i in sorted(indices):
        if runs and runs[-1][1] == i - 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    return runs


def _as_points(points: Any) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float32)
    if pts.size == 0:
        return np.zeros((0, 2), np.float32)
    if pts.ndim == 1 and pts.shape == (2,):
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise SessionError(f"points are (x, y) pairs, got an array of shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise SessionError("points must be finite numbers")
    return pts


def _as_labels(labels: Any, count: int) -> np.ndarray:
    labs = np.asarray(labels).reshape(-1)
    if len(labs) != count:
        raise SessionError(f"{count} points but {len(labs)} labels")
    if not np.all(np.isin(labs, (0, 1))):
        raise SessionError(f"labels are 1 (positive) or 0 (negative), got {labs.tolist()}")
    return labs.astype(np.int32)



__all__ = [
    "FrameResult",
    "Prompt",
    "SessionError",
    "SessionOptions",
    "StoredFrame",
    "VideoSession",
    "fill_holes",
]
