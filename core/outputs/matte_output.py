"""From tracking results to the files a compositor loads.

`MatteOutput` takes each frame's `FrameResult` and writes the objects' mattes (soft or binary,
EXR or PNG, see `mattes.MatteSequenceWriter`), optionally

- refined against the plate's edges at full resolution (`edges.refine_matte`), and
- smoothed over time so edges stop chattering (`edges.TemporalSmoother`; restarted whenever the
  frames stop being consecutive, e.g. when a backward pass follows a forward one),
- or made by a learned matting pass (`matting`, e.g. `samroto.core.matting_pass.MattingPass`,
  which reads each frame at full resolution and does its own temporal smoothing),

and records each object's confidence on each frame (`confidence.measure`): in the EXR header of its
matte and, when `finish()` is called, in `<shot>.confidence.json` beside the mattes, with the frames
to review. With `layered_exr`, every frame also gets one EXR holding every object's alpha as
`<object>.A` (and the confidence attributes as `<object>/samroto/...`), beside the per-object files.
The command line, the worker and batch jobs all write mattes through this class.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import numpy as np

from .confidence import (SIDECAR_SUFFIX, ConfidenceError, ConfidenceTracker, exr_attributes, measure, read_sidecar,
                         review_reasons)
from .edges import RefineOptions, SmoothOptions, TemporalSmoother, refine_matte
from .mattes import MatteSequenceWriter, matte_from_logits

if TYPE_CHECKING:
    from ..frames import FrameSource
    from ..video_session import FrameResult


class AlphaPass(Protocol):
    """A pass that turns one frame's tracked logits into alpha (the learned matting pass); torch-free here."""

    def run(self, frame: int, plate: np.ndarray, obj_ids: Sequence[int], logits: np.ndarray) -> np.ndarray:
        """plate: H*W*3, logits: N*H*W -> N*H*W alpha in [0, 1]."""
        ...


@dataclass(frozen=True)
class MatteOptions:
    refine_edges: bool = False
    refine: RefineOptions = field(default_factory=RefineOptions)
    smooth_edges: bool = False
    smooth: SmoothOptions = field(default_factory=SmoothOptions)
    # confidence records in EXR headers and the sidecar JSON
    confidence: bool = True
    # also one EXR per frame with every object's alpha as a layer (`{shot}_layers.####.exr`)
    layered_exr: bool = False


class MatteOutput:
    def __init__(
        self,
        writer: MatteSequenceWriter,
        *,
        frames: "FrameSource | None" = None,
        options: MatteOptions | None = None,
        matting: AlphaPass | None = None,
    ) -> None:
        """frames: the plate (needed for edge refinement and matting, which read each frame at full resolution).
        matting: a learned matting pass making the soft alpha (replaces refinement and smoothing)."""
        self.writer = writer
        self.options = options or MatteOptions()
        if (self.options.refine_edges or matting is not None) and frames is None:
            raise ValueError("edge refinement and matting need the plate's frames")
        self.frames = frames
        self.matting = matting
        self.layers: MatteSequenceWriter | None = None
        if self.options.layered_exr:
            self.layers = MatteSequenceWriter(
                out_dir=writer.out_dir, shot=writer.shot, format="exr", soft=writer.soft, layout="layers",
                name_template="{shot}_layers.####.exr", object_names=writer.object_names,
                compression=writer.compression,
            )
        self.tracker = ConfidenceTracker()
        if self.options.confidence:
            self._resume_confidence()
        self._smoothers: dict[int, TemporalSmoother] = {}
        self._last_frame: dict[int, int] = {}
        self._previous: dict[int, Any] = {}

    def _resume_confidence(self) -> None:
        """Carry on an existing report (a shot tracked in several passes, or by a restarted worker)."""
        path = Path(self.writer.out_dir) / f"{self.writer.shot}{SIDECAR_SUFFIX}"
        if not path.is_file():
            return
        try:
            previous, _ = read_sidecar(path)
        except (ConfidenceError, OSError, ValueError):
            return  # an unreadable report is replaced by a new one
        for obj_id in previous.object_ids():
            self.tracker.extend(previous.records(obj_id))

    def write(self, result: "FrameResult") -> dict[int, str]:
        """Write every object's matte of one frame; returns obj_id -> path."""
        obj_ids = [int(o) for o in result.obj_ids]
        if not obj_ids:
            return {}
        logits = np.asarray(result.logits, dtype=np.float32)
        opts = self.options
        soft = self.writer.soft
        needs_plate = opts.refine_edges or self.matting is not None
        plate = self.frames.read(int(result.frame)) if needs_plate and self.frames is not None else None
        attributes = self._confidence(result, obj_ids, logits) if opts.confidence else None
        if self.matting is not None and plate is not None:
            matted = np.asarray(self.matting.run(int(result.frame), plate, obj_ids, logits), dtype=np.float32)
            return self._write(int(result.frame), obj_ids, matted if soft else (matted > 0.5).astype(np.float32),
                               attributes)
        alphas = []
        for i, obj_id in enumerate(obj_ids):
            if plate is not None:
                # refine the binary mask: it follows the plate's edges better than the sigmoid's soft ramp
                alpha = refine_matte((logits[i] > 0).astype(np.float32), plate, options=opts.refine)
            else:
                alpha = matte_from_logits(logits[i], soft=True)
            if opts.smooth_edges:
                alpha = self._smooth(obj_id, int(result.frame), alpha)
            alphas.append(alpha if soft else (alpha > 0.5).astype(np.float32))
        return self._write(int(result.frame), obj_ids, np.stack(alphas), attributes)

    def paths_for(self, frame: int, obj_ids: Sequence[int]) -> list[str]:
        """Every file `write` (and then `finish`) may create or replace for these objects on this frame:
        the mattes, the layered EXR and the confidence report (so an undo journal can keep them first)."""
        paths = [self.writer.path_for(int(obj_id), int(frame)) for obj_id in obj_ids]
        if self.layers is not None and len(obj_ids):
            paths.append(self.layers.path_for(int(obj_ids[0]), int(frame)))
        if self.options.confidence:
            paths.append(os.path.join(os.fspath(self.writer.out_dir), f"{self.writer.shot}{SIDECAR_SUFFIX}"))
        return paths

    def _write(self, frame: int, obj_ids: list[int], alphas: np.ndarray, attributes: dict | None) -> dict[int, str]:
        written = self.writer.write_alphas(frame, obj_ids, alphas, attributes)
        if self.layers is not None:
            self.layers.write_alphas(frame, obj_ids, alphas, attributes)
        return written

    def _smooth(self, obj_id: int, frame: int, alpha: np.ndarray) -> np.ndarray:
        smoother = self._smoothers.setdefault(obj_id, TemporalSmoother(self.options.smooth))
        last = self._last_frame.get(obj_id)
        if last is None or abs(frame - last) != 1:
            smoother.reset()  # a jump or a change of direction: no history to smooth against
        self._last_frame[obj_id] = frame
        return smoother.push(alpha)

    def _confidence(self, result: "FrameResult", obj_ids: list[int], logits: np.ndarray) -> dict[int, dict]:
        scores = np.asarray(result.scores, dtype=np.float32).reshape(-1)
        ious = np.asarray(getattr(result, "ious", np.full(len(obj_ids), np.nan)), dtype=np.float32).reshape(-1)
        attributes: dict[int, dict] = {}
        for i, obj_id in enumerate(obj_ids):
            iou = float(ious[i]) if math.isfinite(float(ious[i])) else 0.0
            record = measure(int(result.frame), obj_id, logits[i], object_score=float(scores[i]), predicted_iou=iou)
            reasons = review_reasons(self._previous.get(obj_id), record, self.tracker.thresholds)
            self._previous[obj_id] = record
            self.tracker.add(record)
            attributes[obj_id] = exr_attributes(record, reasons=reasons)
        return attributes

    def finish(self) -> Path | None:
        """Write `<shot>.confidence.json` beside the mattes (None when nothing was recorded)."""
        if not self.options.confidence or not self.tracker.object_ids():
            return None
        folder = Path(self.writer.out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        mattes = {obj_id: os.path.relpath(self.writer.pattern_for(obj_id), folder)
                  for obj_id in self.tracker.object_ids()}
        return self.tracker.write_sidecar(folder, self.writer.shot, plate=self._plate_description(), mattes=mattes)

    def _plate_description(self) -> dict | None:
        """The plate as files the review page can reopen (absolute paths), or None (frames in memory)."""
        if self.frames is None:
            return None
        try:
            spec = dict(self.frames.describe())
        except (AttributeError, NotImplementedError, ValueError):
            return None
        if spec.get("kind") not in ("video", "image", "image_sequence"):
            return None
        for key in ("path", "pattern"):
            if isinstance(spec.get(key), str):
                spec[key] = os.path.abspath(spec[key])
        return spec
