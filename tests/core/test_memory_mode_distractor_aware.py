"""The `distractor-aware` memory mode reproduces the multi-object DAM4SAM reference (alanlukezic/d4sm)
on the clips of tests/fixtures/memory_modes/distractor_aware: every mask, score and IoU within 1e-3,
and the same memory decisions (RAM, DRM anchors, pointers) on every frame, with both record stores;
a session saved mid-shot and reopened in another process goes on with the same outputs."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from samroto.core.memory_modes import explanations
from samroto.core.memory_modes.distractor_aware import DATA_KEY, _box_overlap, describe
from samroto.core.model.sam2 import SAM2Model
from samroto.core.video_session import SessionOptions, VideoSession

from .conftest import assert_close, micro_model

HERE = Path(__file__).resolve().parent
DAM = HERE.parents[0] / "fixtures" / "memory_modes" / "distractor_aware"
CLIPS = ("occlusion", "distractor")
MODE = "distractor-aware"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("dam_generate", DAM / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_clip(clip: str) -> tuple[dict, dict[str, np.ndarray], np.ndarray]:
    """The fixture's spec and arrays, and the clip's frames (regenerated, checked against the hash)."""
    spec = json.loads((DAM / f"{clip}_sam2.1.json").read_text())
    ref = dict(np.load(DAM / f"{clip}_sam2.1.npz"))
    frames, _ = _generator().make_clip(spec["clip"]["kind"], spec["clip"]["seed"])
    digest = hashlib.sha256(frames.tobytes()).hexdigest()
    assert digest == spec["frames_sha256"], "the clip generator gives other pixels here than where the fixtures were made"
    return spec, ref, frames


def edited_model(spec: dict) -> SAM2Model:
    model = micro_model(spec["variant"])
    state = model.state_dict()
    with torch.no_grad():
        for key, edit in spec["checkpoint_edit"].items():
            op, value = edit.split()
            state[key].mul_(float(value)) if op == "mul" else state[key].add_(float(value))
    return model


def open_session(model: SAM2Model, spec: dict, frames: np.ndarray, state_dir: Path | None) -> VideoSession:
    return VideoSession(model, frames, video_size=tuple(spec["video_size_hw"]), fill_hole_area=0,
                        options=SessionOptions(memory_mode=MODE), state_dir=state_dir,
                        keep_in_memory=state_dir is None, record_window=4)


def prompt(session: VideoSession, spec: dict) -> None:
    h, w = spec["video_size_hw"]
    for p in spec["prompts_frame0"]:
        if "bbox_xywh" in p:
            x, y, bw, bh = p["bbox_xywh"]
            session.add_box(0, p["obj_id"], [x, y, x + bw, y + bh])
        else:
            e = p["ellipse"]
            yy, xx = np.mgrid[0:h, 0:w]
            session.add_mask(0, p["obj_id"], ((yy - e["cy"]) / e["ry"]) ** 2 + ((xx - e["cx"]) / e["rx"]) ** 2 <= 1)


def frame_state(session: VideoSession, frames: range) -> dict[str, np.ndarray | list]:
    """What the test compares, read from the session: per frame and object (fixture order)."""
    obj_ids = session.obj_ids
    out: dict[str, Any] = {"lowres": [], "score": [], "iou": [], "memory": []}
    for t in frames:
        stored = [session.frame_output(o, t) for o in obj_ids]
        assert all(s is not None for s in stored), f"frame {t}: an object has no output"
        out["lowres"].append(np.stack([s.lowres_logits for s in stored if s is not None]))
        out["score"].append([s.score for s in stored if s is not None])
        out["iou"].append([s.iou for s in stored if s is not None])
        data = [session._objects[o].data.get(t, {}) for o in obj_ids]
        out["memory"].append({str(o): describe(d[DATA_KEY]) if DATA_KEY in d else None for o, d in zip(obj_ids, data)})
    return out


def compare(ours: dict, spec: dict, ref: dict[str, np.ndarray], frames: range) -> None:
    step = spec["lowres_step"]
    for i, t in enumerate(frames):
        assert_close(ours["lowres"][i], ref["lowres_q"][t] * step, f"frame {t}: low-res logits")
        assert_close(np.array(ours["score"][i]), ref["score"][t], f"frame {t}: object scores")
        if t > 0:
            assert_close(np.array(ours["iou"][i]), ref["ious"][t].max(axis=1), f"frame {t}: predicted IoU")
            expected = spec["memory_after_frame"][t]
            for obj, got in ours["memory"][i].items():
                # the reference lists its prompt frame first (memory and pointers): ours are keyframes
                want = {"memory": [e for e in expected[obj]["memory"] if e[1] != "init"],
                        "pointers": expected[obj]["pointers"][1:],
                        "deferred_drm": expected[obj]["deferred_drm"], "last_drm_add": expected[obj]["last_drm_add"]}
                assert got == want, f"frame {t} object {obj}: memory after the frame"


@pytest.mark.parametrize("store", ["in_memory", "on_disk"])
@pytest.mark.parametrize("clip", CLIPS)
def test_matches_the_reference(clip: str, store: str, tmp_path: Path) -> None:
    spec, ref, frames = load_clip(clip)
    session = open_session(edited_model(spec), spec, frames, tmp_path / "state" if store == "on_disk" else None)
    try:
        prompt(session, spec)
        order = [r.frame for r in session.propagate()]
        assert order == list(range(spec["num_frames"]))
        compare(frame_state(session, range(spec["num_frames"])), spec, ref, range(spec["num_frames"]))
    finally:
        session.close()


def _continue_in_this_process(state_dir: str, clip: str, start: int, out: str) -> None:
    """Run by the reopening test in a fresh process: reopen, check the mode, track on from `start`."""
    spec, _, frames = load_clip(clip)
    session = VideoSession.open(state_dir, edited_model(spec), frames=frames)
    try:
        assert session.options.memory_mode == MODE and session.memory_mode.name == MODE
        list(session.propagate(start))
        state = frame_state(session, range(start, spec["num_frames"]))
        np.savez(out, lowres=np.stack(state["lowres"]), score=np.array(state["score"]), iou=np.array(state["iou"]))
        Path(out + ".json").write_text(json.dumps(state["memory"]))
    finally:
        session.close()


def test_saved_mid_shot_and_reopened_in_another_process_goes_on_the_same(tmp_path: Path) -> None:
    clip, cut = "distractor", 12  # the memory holds anchors and a deferred one around here
    spec, ref, frames = load_clip(clip)
    state_dir = tmp_path / "state"
    session = open_session(edited_model(spec), spec, frames, state_dir)
    prompt(session, spec)
    list(session.propagate(0, max_frames=cut))
    session.save()
    session.close()
    out = str(tmp_path / "continued.npz")
    code = ("import sys; from tests.core.test_memory_mode_distractor_aware import _continue_in_this_process as go; "
            "go(*sys.argv[1:3], int(sys.argv[3]), sys.argv[4])")
    done = subprocess.run([sys.executable, "-c", code, str(state_dir), clip, str(cut + 1), out],
                          cwd=HERE.parents[1], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    got = dict(np.load(out))
    ours = {"lowres": got["lowres"], "score": got["score"], "iou": got["iou"],
            "memory": json.loads(Path(out + ".json").read_text())}
    compare(ours, spec, ref, range(cut + 1, spec["num_frames"]))


def test_listed_with_an_explanation_and_box_overlap_as_vot_rasterises() -> None:
    assert MODE in explanations() and "look-alike" in explanations()[MODE].lower()
    assert _box_overlap((0, 0, 9, 9), (5, 0, 14, 9)) == pytest.approx(1 / 3)
    assert _box_overlap((0, 0, 0, 0), (0, 0, 1, 0)) == 1.0  # a one-row union box counts as identical
    assert _box_overlap((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(4 / 14)


def test_running_memory_stays_bounded_and_never_holds_an_empty_frame() -> None:
    """Over a long run of synthetic frames (blobs that come, go and grow, look-alike candidates), what
    a frame's record carries stays small and bounded: memory flat however long the shot."""
    from samroto.core.memory_modes import MemoryContext, TrackedFrame, create_mode
    from samroto.core.memory_modes.distractor_aware import ObjectMemory
    from samroto.core.model.config import load_config_file
    from samroto.core.model.sam2 import HeadOutput

    from .conftest import FIXTURES

    config = load_config_file(str(FIXTURES / "micro_config.json"), variant="sam2.1")
    mode = create_mode(MODE)
    rng = np.random.default_rng(0)
    state = mode.new_state()
    data: dict[int, dict] = {}
    committed = {0: True}
    empty, lengths = set(), []
    yy, xx = np.mgrid[0:16, 0:16]
    for t in range(1, 400):
        ctx = MemoryContext(obj_id=1, frame=t, reverse=False, num_frames=400, config=config, committed=committed,
                            unselected=frozenset(), data=data, state=state)
        choice = mode.choose_memory(ctx)
        assert all(f not in empty for f, _ in choice.spatial + choice.pointers), f"frame {t}: an empty frame in memory"
        blobs = []
        for _ in range(3):
            cy, cx, r = rng.uniform(2, 14), rng.uniform(2, 14), rng.uniform(1.5, 4)
            blobs.append(np.where((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r, 5.0, -5.0))
        ious = rng.uniform(0.7, 1.0, 3)
        best = int(np.argmax(ious))
        lowres = blobs[best] if rng.random() > 0.2 else np.full((16, 16), -1024.0)
        if lowres.max() < 0:
            empty.add(t)
        heads = HeadOutput(multimasks=torch.tensor(np.stack(blobs)[None], dtype=torch.float32),
                           ious=torch.tensor(ious[None], dtype=torch.float32),
                           lowres=torch.tensor(lowres[None, None], dtype=torch.float32),
                           highres=torch.zeros(1, 1, 1, 1), obj_ptr=torch.zeros(1, 1), object_score=torch.ones(1, 1),
                           best_iou=torch.tensor([ious[best]], dtype=torch.float32))
        tracked = TrackedFrame(obj_id=1, frame=t, reverse=False, heads=heads, lowres=heads.lowres, video_size=(32, 32),
                               config=config)
        data[t] = mode.frame_data(tracked, state)
        committed[t] = False
        memory = ObjectMemory.from_text(data[t][DATA_KEY])
        assert len(memory.anchors()) <= 3 and len(memory.elements) <= config.num_maskmem
        assert len(memory.pointers) < config.max_obj_ptrs_in_encoder and len(memory.areas) <= 10
        assert not {f for f, _ in memory.elements} & empty and not set(memory.pointers) & empty
        lengths.append(len(data[t][DATA_KEY]))
    assert empty and any(ObjectMemory.from_text(d[DATA_KEY]).anchors() for d in data.values()), "exercise both rules"
    assert max(lengths) < 120, max(lengths)


def test_corrections_and_backward_passes_keep_memory_in_the_direction_of_travel() -> None:
    """Beyond the reference (forward only, one prompt frame): a correction becomes a keyframe that the
    next frames step over, and a backward pass builds its own memory from frames after the one tracked."""
    spec, _, frames = load_clip("distractor")
    session = open_session(edited_model(spec), spec, frames[:8], None)
    try:
        prompt(session, spec)
        list(session.propagate())
        session.add_points(4, 1, [[60, 60]], [1])
        list(session.propagate(4))
        after_correction = describe(session._objects[1].data[6][DATA_KEY])
        assert all(f != 4 for f, _ in after_correction["memory"]) and 5 in after_correction["pointers"]
        assert any(f < 4 for f, _ in after_correction["memory"]), "the memory before the keyframe goes on"
        list(session.propagate(7, max_frames=3, reverse=True))
        for t in (5, 6, 7):
            data = session._objects[1].data[t]
            assert data["rev"] is True, t
            assert all(f >= t for f, _ in describe(data[DATA_KEY])["memory"]), f"frame {t}: memory from behind"
    finally:
        session.close()
