"""Undo and redo: every prompt change and propagation is a step; undo restores records (both record
stores) and the files a step wrote bit for bit; history is bounded, reopens, and shows before/after."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
import torch

from samroto.core.memory_bank import InMemoryStore, encode_record
from samroto.core.model.sam2 import NO_OBJECT_SCORE, SAM2Model
from samroto.core.outputs.mattes import MatteSequenceWriter
from samroto.core.video_session import SessionError, SessionOptions, VideoSession

from .conftest import micro_model
from .test_corrections import CORRECTED, SIZE, frames

SHOT = 10


@pytest.fixture(scope="module")
def micro() -> Iterator[SAM2Model]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two OpenMP threads on a busy 2-core machine run many times slower
    try:
        yield micro_model("sam2.1")
    finally:
        torch.set_num_threads(threads)


def new_session(model: SAM2Model, tmp_path: Path, store: str, **options: Any) -> VideoSession:
    if store == "memory":
        return VideoSession(model, frames(SHOT), video_size=SIZE, keep_in_memory=True, **options)
    return VideoSession(model, frames(SHOT), video_size=SIZE, state_dir=tmp_path / "state", **options)


def records(session: VideoSession) -> dict[Any, bytes]:
    """Every stored record as bytes: the files of the disk store, the encoded records in memory."""
    if isinstance(session.store, InMemoryStore):
        return {key: encode_record(record) for key, record in session.store._records.items()}
    assert session.state_dir is not None
    session.store.flush()
    root = session.state_dir / "records"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.rec"))}


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def state(session: VideoSession) -> dict[str, Any]:
    """Everything undo must restore, in comparable form."""
    return {"records": records(session), "prompts": session.prompts(), "locks": session.locks(),
            "obj_ids": session.obj_ids, "results": [session.frame_result(f).logits.tobytes() for f in range(SHOT)]}


def propagate_writing_mattes(session: VideoSession, run: Iterator[Any], writer: MatteSequenceWriter) -> list[int]:
    """What the worker does per frame: journal the matte files, then write them."""
    done = []
    for result in run:
        session.journal_files([writer.path_for(o, result.frame) for o in result.obj_ids])
        writer.write(result.frame, result.obj_ids, result.logits)
        done.append(result.frame)
    return done


@pytest.mark.parametrize("store", ["disk", "memory"])
def test_undo_after_a_span_retrack_restores_every_record_and_matte(micro: SAM2Model, tmp_path: Path,
                                                                   store: str) -> None:
    mattes = tmp_path / "mattes"
    writer = MatteSequenceWriter(out_dir=mattes, shot="shot", format="exr")
    with new_session(micro, tmp_path, store) as session:
        session.add_points(1, 1, [[80, 60]], [1])
        session.add_points(7, 1, [[70, 55]], [1])
        session.add_points(0, 2, [[30, 30]], [1])
        propagate_writing_mattes(session, session.propagate(0, max_frames=7), writer)  # frames 0-7
        session.add_points(CORRECTED, 1, [[60, 50], [20, 100]], [1, 0])
        before, before_mattes = state(session), files(mattes)
        assert session.history()["undo"][-1] == f"points on frame {CORRECTED} (object 1)"

        done = propagate_writing_mattes(session, session.propagate(CORRECTED, span=True), writer)
        assert done == [4, 5, 6, 3, 2]
        # the span also writes a matte the shot did not have: undo must remove it again
        session.journal_files([mattes / "extra.exr"])
        (mattes / "extra.exr").write_bytes(b"new")
        after, after_mattes = state(session), files(mattes)
        assert after["records"] != before["records"] and after_mattes != before_mattes

        undone = session.undo()
        assert undone == {"step": f"span re-track from frame {CORRECTED}", "frames": [2, 3, 4, 5, 6]}
        assert state(session) == before, "undo did not restore the records, prompts and results"
        assert files(mattes) == before_mattes, "undo did not restore the matte files"
        assert session.history()["redo"] == [f"span re-track from frame {CORRECTED}"]

        assert session.redo()["step"] == f"span re-track from frame {CORRECTED}"
        assert state(session) == after and files(mattes) == after_mattes

        # undo twice: the span, then the correction itself (prompt and keyframe gone)
        session.undo()
        session.undo()
        assert CORRECTED not in session.prompts()[1]
        assert session.history()["keyframes"] == {1: [1, 7], 2: [0]}
        assert not session.frame_output(1, CORRECTED).keyframe
        # and tracking goes on from there as if the correction had never been made
        list(session.propagate(0, max_frames=2))


def test_history_reopens_with_the_session_and_undoes_bit_identically(micro: SAM2Model, tmp_path: Path) -> None:
    session = new_session(micro, tmp_path, "disk")
    session.add_points(1, 1, [[80, 60]], [1])
    session.add_points(7, 1, [[70, 55]], [1])
    list(session.propagate(1))
    session.add_points(CORRECTED, 1, [[60, 50], [20, 100]], [1, 0])
    before = state(session)
    list(session.propagate(CORRECTED, span=True))
    after = state(session)
    history = session.history()
    session.save()
    session.close()

    reopened = VideoSession.open(tmp_path / "state", micro, frames=frames(SHOT))
    try:
        assert reopened.history() == history
        reopened.undo()
        assert state(reopened) == before
        reopened.redo()
        assert state(reopened) == after
    finally:
        reopened.close()


def test_history_is_bounded_and_a_new_step_drops_redo(micro: SAM2Model, tmp_path: Path) -> None:
    with new_session(micro, tmp_path, "disk", history_steps=3) as session:
        session.add_points(0, 1, [[80, 60]], [1])
        list(session.propagate())
        for frame in (2, 3, 4):
            session.lock(1, frame, frame)
        assert session.history()["undo"] == ["lock frame 2 (object 1)", "lock frame 3 (object 1)",
                                             "lock frame 4 (object 1)"]
        assert session.history()["limit"] == 3
        assert session.state_dir is not None
        assert len(list((session.state_dir / "history" / "steps").iterdir())) == 3, "dropped steps keep files"

        session.undo()
        session.undo()
        assert session.locks() == {1: [[2, 2]]}
        assert session.history()["redo"] == ["lock frame 3 (object 1)", "lock frame 4 (object 1)"]
        session.unlock(1)
        assert session.history() == {"undo": ["lock frame 2 (object 1)", "unlock frames 0-9 (object 1)"], "redo": [],
                                     "limit": 3, "keyframes": {1: [0]}, "locks": {}}
        with pytest.raises(SessionError, match="nothing to redo"):
            session.redo()
        session.undo()
        session.undo()
        assert session.locks() == {}
        with pytest.raises(SessionError, match="nothing to undo"):
            session.undo()  # the oldest steps were dropped


def test_history_is_bounded_in_bytes_too(micro: SAM2Model, tmp_path: Path) -> None:
    # a re-propagation of 10 frames keeps 10 records (~34 kB each with the micro model): over 50 kB
    with new_session(micro, tmp_path, "disk", options=SessionOptions(history_max_mb=0.05)) as session:
        session.add_points(0, 1, [[80, 60]], [1])
        list(session.propagate())
        list(session.propagate())
        assert session.history()["undo"] == ["propagate forward from the first keyframe"], "the newest step stays"
        session.lock(1, 2, 3)
        assert session.history()["undo"] == ["lock frames 2-3 (object 1)"]
        assert session.state_dir is not None
        assert len(list((session.state_dir / "history" / "steps").iterdir())) == 1


def test_refused_prompts_are_no_step_and_removed_objects_come_back(micro: SAM2Model, tmp_path: Path) -> None:
    with new_session(micro, tmp_path, "memory") as session:
        session.add_points(0, 1, [[80, 60]], [1])
        session.add_points(0, 2, [[30, 30]], [1])
        list(session.propagate(0, max_frames=3))
        session.lock(1, 1, 2)
        with pytest.raises(SessionError, match="locked"):
            session.add_points(1, 1, [[60, 50]], [1])
        labels = session.history()["undo"]
        assert labels[-1] == "lock frames 1-2 (object 1)"
        before = state(session)
        session.remove_object(1)
        assert session.obj_ids == [2]
        session.undo()
        assert state(session) == before and session.locks() == {1: [[1, 2]]}

        # locked frames are never rewritten, so a propagation's step holds nothing of them
        session.lock(2, 1, 2)
        locked = state(session)
        list(session.propagate(0, max_frames=3))
        assert session.undo() == {"step": "propagate forward from frame 0", "frames": [3]}
        assert state(session) == locked


def test_before_and_after(micro: SAM2Model, tmp_path: Path) -> None:
    with new_session(micro, tmp_path, "disk") as session:
        assert session.frame_result(3, before=True).obj_ids == [], "no step changed the frame yet"
        session.add_points(1, 1, [[80, 60]], [1])
        session.add_points(7, 1, [[70, 55]], [1])
        list(session.propagate(1))
        tracked = {f: session.frame_result(f).logits.copy() for f in range(SHOT)}
        # before the first propagation, frame 3 had no output for the object
        first = session.frame_result(3, before=True)
        assert first.obj_ids == [1] and np.all(first.logits == NO_OBJECT_SCORE)

        session.add_points(CORRECTED, 1, [[60, 50], [20, 100]], [1, 0])
        list(session.propagate(CORRECTED, span=True))
        for f in (2, 3, 5, 6):
            previous = session.frame_result(f, before=True)
            assert previous.obj_ids == [1]
            assert np.array_equal(previous.logits, tracked[f]), f"frame {f}: before is not the replaced result"
            assert not np.array_equal(session.frame_result(f).logits, tracked[f])
        # frame 4: the newest step that changed it is the span (its before is the prompt's result)
        assert not np.array_equal(session.frame_result(CORRECTED, before=True).logits, tracked[CORRECTED])
        # frame 8 is outside the span: its before is what the first propagation replaced
        assert np.all(session.frame_result(8, before=True).logits == NO_OBJECT_SCORE)


def test_an_interrupted_undo_is_rolled_back_in_process_and_on_reopen(micro: SAM2Model, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    session = new_session(micro, tmp_path, "disk")
    session.add_points(1, 1, [[80, 60]], [1])
    session.add_points(7, 1, [[70, 55]], [1])
    list(session.propagate(1))
    session.add_points(CORRECTED, 1, [[60, 50], [20, 100]], [1, 0])
    corrected = state(session)
    list(session.propagate(CORRECTED, span=True))
    after, history = state(session), session.history()

    restore = session.history_restore_record
    calls: list[Any] = []

    def fails_on_the_third(*args: Any) -> None:
        calls.append(args)
        if len(calls) == 3:
            raise OSError("disk full")
        restore(*args)

    monkeypatch.setattr(session, "history_restore_record", fails_on_the_third)
    with pytest.raises(OSError, match="disk full"):
        session.undo()
    assert len(calls) > 3, "the rollback restored the items already swapped"
    assert state(session) == after and session.history() == history, "a failed undo left the session half undone"

    # killed halfway: nothing rolls back in the process; reopening does
    calls.clear()
    monkeypatch.setattr(session._history, "_roll_back", lambda: None)
    with pytest.raises(OSError, match="disk full"):
        session.undo()
    assert state(session) != after
    with pytest.raises(SessionError, match="interrupted"):
        session.undo()
    session.close()
    reopened = VideoSession.open(tmp_path / "state", micro, frames=frames(SHOT))
    try:
        assert state(reopened) == after and reopened.history() == history
        assert reopened.undo()["step"] == f"span re-track from frame {CORRECTED}"
        assert state(reopened) == corrected
    finally:
        reopened.close()
