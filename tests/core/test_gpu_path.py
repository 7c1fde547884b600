"""The engine's GPU-path rules, forced on the CPU: a frame is stored whole or not at all (an
out-of-memory error in the second object group leaves the session as it was), the prefetch thread
only decodes (uploads and resizes happen on the compute thread), records stay where they were made
and reach the disk from a background thread, and precision belongs to the engine, not the session."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import samroto.core.video_session as video_session_module
from samroto.core.video_session import SessionError, VideoSession

from .conftest import FIXTURES, micro_model


def _frames() -> np.ndarray:
    return np.load(FIXTURES / "video_frames.npy")[:6]


def _two_objects(session: VideoSession) -> None:
    session.add_points(0, 1, [[80, 60]], [1])
    session.add_points(0, 2, [[30, 40]], [1])
    session.add_points(4, 2, [[35, 40]], [1])  # a second keyframe: a bigger memory bank, its own group


def test_out_of_memory_in_the_second_group_stores_nothing_of_the_frame(tmp_path: Path) -> None:
    model = micro_model("sam2.1")
    with VideoSession(model, _frames(), video_size=(120, 160), state_dir=tmp_path / "a") as session:
        _two_objects(session)
        expected = [r.logits for r in session.propagate(0)]

    with VideoSession(model, _frames(), video_size=(120, 160), state_dir=tmp_path / "b") as session:
        _two_objects(session)
        track_batch = session._track_batch
        calls: list[int] = []

        def failing(idx: int, reverse: bool, members: Any) -> Any:
            calls.append(idx)
            if idx == 2 and calls.count(2) == 2:
                raise torch.OutOfMemoryError("CUDA out of memory (injected)")
            return track_batch(idx, reverse, members)

        session._track_batch = failing  # type: ignore[method-assign]
        got = []
        with pytest.raises(torch.OutOfMemoryError):
            for result in session.propagate(0):
                got.append(result.logits)
        assert len(got) == 2 and calls.count(2) == 2, "frame 2 had two groups and the second failed"
        for obj_id in (1, 2):
            assert session.frame_output(obj_id, 2) is None, f"object {obj_id} kept half of frame 2"
            assert session.frame_output(obj_id, 1) is not None
        session._track_batch = track_batch  # type: ignore[method-assign]
        again = [r.logits for r in session.propagate(0)]
    for a, b in zip(expected, again):
        np.testing.assert_allclose(b, a, atol=1e-5)


def test_prefetch_thread_only_decodes(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: dict[str, set[str]] = {"read": set(), "upload": set()}
    upload = video_session_module.model_input_from_host

    def watched_upload(*args: Any, **kwargs: Any) -> torch.Tensor:
        threads["upload"].add(threading.current_thread().name)
        return upload(*args, **kwargs)

    monkeypatch.setattr(video_session_module, "model_input_from_host", watched_upload)
    with VideoSession(micro_model("sam2"), _frames(), video_size=(120, 160), keep_in_memory=True) as session:
        read = session.frames.read

        def watched_read(frame: int) -> np.ndarray:
            threads["read"].add(threading.current_thread().name)
            return read(frame)

        session.frames.read = watched_read  # type: ignore[method-assign]
        session.add_points(0, 1, [[80, 60]], [1])
        assert len(list(session.propagate(0))) == 6
    assert "samroto-prefetch" in threads["read"], "frames are decoded ahead on the prefetch thread"
    assert threads["upload"] == {threading.main_thread().name}, "device work stays on the compute thread"


def test_records_reach_the_disk_from_a_background_thread(tmp_path: Path) -> None:
    with VideoSession(micro_model("sam2"), _frames(), video_size=(120, 160), state_dir=tmp_path / "s",
                      record_window=2) as session:
        session.add_points(0, 1, [[80, 60]], [1])
        list(session.propagate(0))
        writer = session.store._writer  # type: ignore[attr-defined]
        assert writer is not None and writer.name == "samroto-records"
        session.save()  # waits for every queued write
        files = sorted(p.name for p in (tmp_path / "s" / "records" / "obj_1").glob("*.rec"))
        assert files == [f"f{i:08d}.rec" for i in range(6)]
        # a record read back after leaving the window is the one that was written
        early = session.frame_output(1, 1)
        assert early is not None and np.isfinite(early.lowres_logits).all()


def test_precision_is_the_engines_when_a_session_reopens(tmp_path: Path) -> None:
    model = micro_model("sam2")
    with VideoSession(model, _frames(), video_size=(120, 160), state_dir=tmp_path / "s",
                      precision="bfloat16") as session:
        session.add_points(0, 1, [[80, 60]], [1])
        session.save()
    reopened = VideoSession.open(tmp_path / "s", model, frames=_frames(), precision="float32")
    try:
        assert reopened.options.precision == "float32"
    finally:
        reopened.close()
    with pytest.raises(SessionError, match="cpu runs float32 or bfloat16, not float16"):
        VideoSession(model, _frames(), video_size=(120, 160), keep_in_memory=True, precision="float16")
