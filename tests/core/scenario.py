"""Replay of the reference's scripted video sessions (`scenario_<v>[_occluded].json`) on a VideoSession."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from samroto.core.model.checkpoint import load_model
from samroto.core.model.config import load_config_file
from samroto.core.model.sam2 import SAM2Model
from samroto.core.video_session import VideoSession

from .conftest import FIXTURES


def scenario_model(variant: str, occluded: bool) -> tuple[SAM2Model, dict]:
    name = f"scenario_{variant}{'_occluded' if occluded else ''}"
    spec = json.loads((FIXTURES / f"{name}.json").read_text())
    model = load_model(
        FIXTURES / f"micro_{variant}.pt",
        config=load_config_file(str(FIXTURES / "micro_config.json"), variant=variant),
    )
    for key, edit in spec.get("checkpoint_edit", {}).items():
        op, value = edit.split()
        assert op == "add", edit
        with torch.no_grad():
            model.state_dict()[key].add_(float(value))
    return model, spec


def ellipse_mask(spec: dict, height: int, width: int) -> np.ndarray:
    e = spec["ellipse"]
    y, x = np.mgrid[0:height, 0:width]
    return ((y - e["cy"]) / e["ry"]) ** 2 + ((x - e["cx"]) / e["rx"]) ** 2 <= 1


def run_step(session: VideoSession, step: dict, height: int, width: int) -> dict:
    """Run one scripted step; return what the reference recorded for it (ours)."""
    op = step["op"]
    if op == "add_points":
        result = session.add_points(
            step["frame"], step["obj_id"], step["points"], step["labels"], clear=step["clear_old_points"]
        )
        return {"obj_ids": result.obj_ids, "video_res": result.logits}
    if op == "add_box":
        result = session.add_box(step["frame"], step["obj_id"], step["box"])
        return {"obj_ids": result.obj_ids, "video_res": result.logits}
    if op == "add_mask":
        result = session.add_mask(step["frame"], step["obj_id"], ellipse_mask(step, height, width))
        return {"obj_ids": result.obj_ids, "video_res": result.logits}
    if op == "propagate":
        order, per_frame = [], {}
        for result in session.propagate(step["start_frame"], step["max_frames"], step["reverse"]):
            order.append(result.frame)
            per_frame[result.frame] = (result.obj_ids, result.logits)
        return {"order": order, "per_frame": per_frame}
    if op == "remove_object":
        session.remove_object(step["obj_id"])
        return {}
    raise AssertionError(f"unknown op {op}")


def compare_step(
    i: int, step: dict, ours: dict, ref: dict, session: VideoSession, check: Callable[[object, np.ndarray, str], None]
) -> None:
    p = f"s{i}_"
    if step["op"] in ("add_points", "add_box", "add_mask"):
        assert list(ours["obj_ids"]) == ref[p + "obj_ids"].tolist(), f"step {i}: object ids"
        check(ours["video_res"], ref[p + "video_res"], f"step {i} ({step['op']}) video-resolution logits")
        return
    if step["op"] != "propagate":
        return
    assert ours["order"] == ref[p + "order"].tolist(), f"step {i}: frame order"
    for frame, (obj_ids, logits) in ours["per_frame"].items():
        assert list(obj_ids) == ref[f"{p}obj_ids_f{frame}"].tolist(), f"step {i} frame {frame}: object ids"
        if f"{p}video_res_f{frame}" in ref:
            check(logits, ref[f"{p}video_res_f{frame}"], f"step {i} frame {frame} video-resolution logits")
    # the stored state of every tracked frame of every object
    stored = {k for k in ref if k.startswith(p + "obj") and k.endswith("_lowres")}
    assert stored, f"step {i}: the fixture records tracked state"
    for obj_id in session.obj_ids:
        for frame in session.frame_numbers:
            key = f"{p}obj{obj_id}_f{frame}"
            out = session.frame_output(obj_id, frame)
            if key + "_lowres" not in ref:
                assert out is None, f"step {i}: object {obj_id} frame {frame} should not be tracked"
                continue
            assert out is not None, f"step {i}: object {obj_id} frame {frame} is not tracked"
            check(out.lowres_logits, ref[key + "_lowres"], f"step {i} object {obj_id} frame {frame} low-res logits")
            check(np.array([out.score], np.float32), ref[key + "_score"], f"step {i} object {obj_id} frame {frame} score")
            assert out.keyframe == bool(ref[key + "_kind"]), f"step {i} object {obj_id} frame {frame} keyframe flag"
            stored.discard(key + "_lowres")
    assert not stored, f"step {i}: tracked in the reference but not here: {sorted(stored)[:5]}"


def open_fixture_session(model: SAM2Model, spec: dict, frames: np.ndarray, tmp_path: Path | None) -> VideoSession:
    height, width = spec["video_size_hw"]
    return VideoSession(
        model,
        frames[: spec["num_frames"]],
        video_size=(height, width),
        fill_hole_area=0,
        state_dir=tmp_path,
        keep_in_memory=tmp_path is None,
        record_window=4,
    )
