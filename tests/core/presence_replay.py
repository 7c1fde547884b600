"""Replay of the `presence` memory-mode fixtures (tests/fixtures/memory_modes/presence) on a VideoSession."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from samroto.core.model.sam2 import SAM2Model
from samroto.core.video_session import VideoSession

from .conftest import assert_close, micro_model

PRESENCE = Path(__file__).resolve().parents[1] / "fixtures" / "memory_modes" / "presence"


def load_fixture() -> tuple[dict, dict[str, np.ndarray]]:
    spec = json.loads((PRESENCE / "presence.json").read_text())
    return spec, dict(np.load(PRESENCE / "presence.npz"))


def clip_model(clip: dict) -> SAM2Model:
    model = micro_model(clip["variant"])
    state = model.state_dict()
    with torch.no_grad():
        for key, op, value in clip["checkpoint_edit"]:
            state[key].mul_(value) if op == "mul" else state[key].add_(value)
    return model


def open_clip_session(model: SAM2Model, frames: np.ndarray, state_dir: "Path | None") -> VideoSession:
    size = frames.shape[1]
    # every frame's features stay cached (the clips are short): the test spends no time re-encoding
    return VideoSession(model, frames, video_size=(size, size), fill_hole_area=0, memory_mode="presence",
                        state_dir=state_dir, keep_in_memory=state_dir is None, feature_cache_frames=len(frames))


def run_and_compare(session: VideoSession, name: str, index: int, step: dict, ref: dict[str, np.ndarray]) -> None:
    """Run step `index` of clip `name` and compare every output the reference recorded for it."""
    s = f"{name}_s{index}_"
    if step["op"] in ("add_points", "add_box"):
        if step["op"] == "add_points":
            session.add_points(step["frame"], step["obj_id"], step["points"], step["labels"])
        else:
            session.add_box(step["frame"], step["obj_id"], step["box"])
        record = session.store.get(step["obj_id"], step["frame"], pending=True)
        assert_close(record.lowres, ref[s + "lowres"], f"{s}: prompt low-res logits")
        assert_close(record.score, ref[s + "score"], f"{s}: prompt object score")
        assert_close(record.obj_ptr, ref[s + "ptr"], f"{s}: prompt object pointer")
        return
    order = [r.frame for r in session.propagate(step["start_frame"], reverse=step["reverse"])]
    assert order == ref[s + "order"].tolist(), f"{s}: frame order"
    compared = 0
    for obj_id in session.obj_ids:
        index_ = session._objects[obj_id]
        for frame in range(session.num_frames):
            k = f"{s}obj{obj_id}_f{frame}_"
            if k + "lowres" not in ref:
                assert frame not in index_.committed, f"{k}: tracked here, not in the reference"
                continue
            record = session.store.get(obj_id, frame, pending=False)
            assert record.keyframe == bool(ref[k + "keyframe"]), f"{k}: keyframe"
            assert_close(record.lowres, ref[k + "lowres"], f"{k}: low-res logits")
            assert_close(record.score, ref[k + "score"], f"{k}: object score")
            assert_close(record.obj_ptr, ref[k + "ptr"], f"{k}: object pointer")
            if not record.keyframe:
                assert_close(np.array([record.data["presence"]]), ref[k + "presence"], f"{k}: presence score")
                assert_close(record.iou, ref[k + "iou"], f"{k}: predicted IoU")
            compared += 1
    assert compared == len(session.obj_ids) * session.num_frames, f"{s}: every object on every frame"
