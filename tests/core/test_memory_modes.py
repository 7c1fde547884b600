"""Memory-mode plumbing: the registry, per-frame data in both record stores, object state saved with
the session, and a mode's memory choice reaching the model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from samroto.core import memory_modes
from samroto.core.memory_modes import MemoryChoice, MemoryContext, MemoryMode, ObjectState, TrackedFrame
from samroto.core.video_session import SessionError, SessionOptions, VideoSession

from .conftest import FIXTURES, micro_model


class RecordingMode(MemoryMode):
    """Records each tracked frame's score and IoU, counts frames in its state, remembers nothing but
    keyframes (so its outputs must differ from exact SAM 2)."""

    name = "test-recording"

    def new_state(self) -> ObjectState:
        return {"tracked": 0}

    def frame_data(self, tracked: TrackedFrame, state: ObjectState) -> dict:
        state["tracked"] += 1
        return {"score": float(tracked.heads.object_score.reshape(-1)[0]),
                "iou": float(tracked.heads.ious.max()), "candidates": int(tracked.heads.multimasks.shape[1])}

    def choose_memory(self, ctx: MemoryContext) -> MemoryChoice:
        return MemoryChoice(spatial=[], pointers=[])


@pytest.fixture
def recording_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = memory_modes.ModeEntry(RecordingMode.name, "Test only.", lambda: RecordingMode)
    monkeypatch.setitem(memory_modes._MODES, RecordingMode.name, entry)


def test_the_registry_lists_modes_with_explanations_and_refuses_unknown_names() -> None:
    assert memory_modes.mode_names()[0] == "sam2" == SessionOptions().memory_mode
    for name, line in memory_modes.explanations().items():
        assert line and "\n" not in line, name
    with pytest.raises(SessionError, match="unknown memory mode 'nope'; valid: sam2"):
        SessionOptions(memory_mode="nope")


def _session(mode: str, state: Path | None) -> VideoSession:
    frames = np.load(FIXTURES / "video_frames.npy")[:6]
    return VideoSession(micro_model("sam2.1"), frames, options=SessionOptions(memory_mode=mode),
                        state_dir=state, keep_in_memory=state is None)


@pytest.mark.parametrize("store", ["in_memory", "on_disk"])
def test_frame_data_and_state_are_kept_in_both_stores(store: str, recording_mode: None, tmp_path: Path) -> None:
    state_dir = tmp_path / "state" if store == "on_disk" else None
    session = _session("test-recording", state_dir)
    session.add_points(0, 1, [[120, 130]], [1])
    results = {r.frame: r for r in session.propagate()}
    assert session._mode_states[1] == {"tracked": 5}
    for frame in range(1, 6):
        data = session.store.get(1, frame, pending=False).data
        assert data["candidates"] == 3
        assert data["score"] == pytest.approx(float(results[frame].scores[0]), abs=1e-6)
        assert data["iou"] == pytest.approx(float(results[frame].ious[0]), abs=1e-6)
        assert session._objects[1].data[frame] == data
    assert 0 not in session._objects[1].data  # a prompted frame has no mode data
    if state_dir is None:
        session.close()
        return
    session.save()
    header = json.loads((state_dir / "records" / "obj_1" / "f00000003.rec").read_bytes().split(b"\n")[0])
    assert header["data"] == session._objects[1].data[3]
    session.close()
    reopened = VideoSession.open(state_dir, micro_model("sam2.1"), frames=np.load(FIXTURES / "video_frames.npy")[:6])
    try:
        assert reopened.options.memory_mode == "test-recording"
        assert type(reopened.memory_mode) is RecordingMode
        assert reopened._mode_states[1] == {"tracked": 5}
        assert reopened._objects[1].data[3] == header["data"]
    finally:
        reopened.close()


def test_the_mode_chooses_the_memory(recording_mode: None) -> None:
    outputs = {}
    for mode in ("sam2", "test-recording"):
        session = _session(mode, None)
        session.add_points(0, 1, [[120, 130]], [1])
        outputs[mode] = [r.logits for r in session.propagate()]
        session.close()
    assert np.allclose(outputs["sam2"][0], outputs["test-recording"][0])  # the prompted frame
    assert not np.allclose(outputs["sam2"][-1], outputs["test-recording"][-1], atol=1e-3)


def test_the_registry_is_read_without_torch() -> None:
    import subprocess
    import sys

    code = ("import sys; from samroto.core import memory_modes, sidecar; "
            "assert memory_modes.check_mode('presence') and 'torch' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
