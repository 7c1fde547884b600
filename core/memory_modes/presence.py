"""`presence`: SAM 3's memory frame filter ("frame filtering according to SAM2Long").

SAM 2 remembers the last six tracked frames whatever they hold; after an occlusion, memory is full
of frames where the object was missing or was something else. Here a tracked frame may enter memory
only if the object was clearly there: its presence score

    presence = (2 * sigmoid(object_score) - 1 if object_score > 0 else 0) * max(predicted IoUs)

is above 0.01 (SAM 3's `mf_threshold`). The rule, as `Sam3TrackerBase.frame_filter` and
`_prepare_memory_conditioned_features` apply it (facebookresearch/sam3, Jan 2026):

- Going back from the previous frame in the direction of travel (every `memory_temporal_stride`-th
  frame; forward tracking never looks at frame 0), the tracked non-keyframes above the threshold are
  collected, nearest first, until there are `min(num_frames, max_obj_ptrs_in_encoder) - 1` of them;
  the previous frame is always added (as the most recent) whatever its score.
- The last `num_maskmem - 1` of these (in time order) are the spatial memories, the most recent with
  t_pos `num_maskmem - 1`. The object pointers are those of all but the oldest, with their rank
  (1 = most recent) as temporal position rather than their distance in frames.
- Keyframes are attended to and their pointers added as in SAM 2.

Differences from the reference: prompted frames have no presence score here, so a keyframe whose
prompts are cleared (it becomes an ordinary frame) is only remembered as the previous frame (the
reference keeps the score of the prompt's output). With several objects each object has its own
choice; SAM 3's multi-object predictor averages the score over the objects it batches.
"""

from __future__ import annotations

import numpy as np
import torch

from .base import FrameData, MemoryChoice, MemoryContext, MemoryMode, ObjectState, TrackedFrame

# SAM 3's default threshold, as float32 (the reference compares a float32 tensor with it)
PRESENCE_THRESHOLD = float(np.float32(0.01))


def presence_score(object_score: torch.Tensor, ious: torch.Tensor) -> torch.Tensor:
    """SAM 3's `cal_mem_score` for one object: object_score 1*1 logits, ious 1*M (every candidate)."""
    score = object_score.float()
    normalised = torch.where(score > 0, score.sigmoid() * 2 - 1, torch.zeros_like(score))
    return (normalised * ious.float().max(-1)[0]).mean()


class PresenceMemory(MemoryMode):
    name = "presence"

    def frame_data(self, tracked: TrackedFrame, state: ObjectState) -> FrameData:
        return {"presence": float(presence_score(tracked.heads.object_score, tracked.heads.ious))}

    def valid_frames(self, ctx: MemoryContext) -> list[int]:
        """Frames allowed into memory, oldest first (SAM 3's `frame_filter`)."""
        c = ctx.config
        idx, n, stride = ctx.frame, ctx.num_frames, c.memory_temporal_stride
        if (idx == 0 and not ctx.reverse) or (idx == n - 1 and ctx.reverse):
            return []
        wanted = min(n, c.max_obj_ptrs_in_encoder) - 1
        if ctx.reverse:
            candidates, must_include = range(idx + 1, n, stride), idx + 1
        else:
            candidates, must_include = range(idx - 1, 0, -stride), idx - 1
        valid: list[int] = []
        for t in candidates:
            presence = ctx.data.get(t, {}).get("presence")
            if ctx.committed.get(t) is not False or presence is None:
                continue  # not a tracked non-keyframe
            if presence > PRESENCE_THRESHOLD:
                valid.insert(0, t)
            if len(valid) >= wanted:
                break
        if must_include not in valid:
            valid.append(must_include)
        return valid

    def choose_memory(self, ctx: MemoryContext) -> MemoryChoice:
        c = ctx.config
        valid = self.valid_frames(ctx)
        spatial: list[tuple[int, int]] = []
        for t_pos in range(1, c.num_maskmem):
            t_rel = c.num_maskmem - t_pos
            if t_rel <= len(valid) and ctx.usable(valid[-t_rel]):
                spatial.append((valid[-t_rel], t_pos))
        pointers: list[tuple[int, int]] = []
        for rank in range(1, min(ctx.num_frames, c.max_obj_ptrs_in_encoder)):
            if rank >= len(valid):
                break
            if ctx.usable(valid[-rank]):
                pointers.append((valid[-rank], rank))
        return MemoryChoice(spatial=spatial, pointers=pointers)
