"""What a memory mode is: the object a session consults when it tracks a frame and builds memory."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from ..model.config import SAM2Config

if TYPE_CHECKING:  # torch only where a mode runs: the registry is read by torch-free code (sidecars, help)
    from ..model.sam2 import HeadOutput

# per-frame mode data and per-object mode state are small JSON values (saved in record headers and
# in the session's prompts.json)
FrameData = dict[str, Any]
ObjectState = dict[str, Any]


@dataclass(frozen=True)
class TrackedFrame:
    """One object's outputs on a frame the session just tracked (not a prompted frame)."""

    obj_id: int
    frame: int  # frame index in the shot (0-based), not the plate number
    reverse: bool
    heads: "HeadOutput"  # this object's heads (batch of 1): every candidate mask, IoUs, score, pointer
    lowres: Any  # 1*1*s*s float32 logits as stored (after hole filling), a torch tensor on the device
    video_size: tuple[int, int] = (0, 0)  # the shot's (H, W): where masks are judged (areas, boxes)
    config: SAM2Config | None = None


@dataclass(frozen=True)
class MemoryContext:
    """What a mode may look at to choose an object's memory for frame `frame`."""

    obj_id: int
    frame: int  # frame index being tracked
    reverse: bool
    num_frames: int
    config: SAM2Config
    committed: Mapping[int, bool]  # frame -> keyframe, for every settled record of the object
    unselected: frozenset[int]  # keyframes beyond max_cond_frames_in_attn: usable as ordinary memory
    data: Mapping[int, Mapping[str, Any]]  # frame -> data the mode recorded when it was tracked
    state: ObjectState  # the object's mode state (may be changed)

    def usable(self, frame: int) -> bool:
        """Whether a non-keyframe memory (and pointer) exists for `frame`."""
        return self.committed.get(frame) is False or frame in self.unselected


@dataclass(frozen=True)
class MemoryChoice:
    """Non-keyframe memory for one frame. Keyframes (t_pos 0, and their pointers) are added by the
    session before these, as the reference does."""

    spatial: list[tuple[int, int]]  # (frame, t_pos in 1..num_maskmem-1; num_maskmem-1 = most recent)
    pointers: list[tuple[int, int]]  # (frame, relative temporal position of its object pointer)
    # what pointer positions are divided by before their sine encoding; None: SAM 2's window
    # (min(num_frames, max_obj_ptrs_in_encoder) - 1)
    pointer_normaliser: int | None = None


class MemoryMode:
    """Exact SAM 2 unless a subclass says otherwise (see the package docstring for the contract)."""

    name: ClassVar[str] = ""

    def new_state(self) -> ObjectState:
        """The state of a new object."""
        return {}

    def frame_data(self, tracked: TrackedFrame, state: ObjectState) -> FrameData:
        """Data to keep with the frame's record (JSON values); may update the object's state."""
        return {}

    def choose_memory(self, ctx: MemoryContext) -> MemoryChoice:
        """SAM 2's rule (`_prepare_memory_conditioned_features`): the `num_maskmem - 1` frames before
        this one in the direction of travel (the last one, then every `memory_temporal_stride`-th),
        and the pointers of up to `max_obj_ptrs_in_encoder - 1` previous frames."""
        c = ctx.config
        idx, reverse = ctx.frame, ctx.reverse
        stride = c.memory_temporal_stride
        spatial: list[tuple[int, int]] = []
        for t_pos in range(1, c.num_maskmem):
            t_rel = c.num_maskmem - t_pos  # frames before the current one
            if t_rel == 1:
                prev = idx + 1 if reverse else idx - 1
            elif not reverse:
                prev = ((idx - 2) // stride) * stride - (t_rel - 2) * stride
            else:
                prev = -(-(idx + 2) // stride) * stride + (t_rel - 2) * stride
            if ctx.usable(prev):
                spatial.append((prev, t_pos))
        max_ptrs = min(ctx.num_frames, c.max_obj_ptrs_in_encoder)
        pointers: list[tuple[int, int]] = []
        for t_diff in range(1, max_ptrs):
            t = idx + t_diff if reverse else idx - t_diff
            if t < 0 or t >= ctx.num_frames:
                break
            if ctx.usable(t):
                pointers.append((t, t_diff))
        return MemoryChoice(spatial=spatial, pointers=pointers)
