"""Corrections keep prior work: span re-tracking after a correction, and locked frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from samroto.core.video_session import SessionError, VideoSession

from .conftest import FIXTURES, micro_model

SIZE = (120, 160)
CORRECTED = 5  # keyframes of object 1 at 1 and 9: the span of a correction on 5 is 2..8


def tracked_session(state_dir: Path) -> VideoSession:
    """Object 1 prompted on 1 and 9, object 2 on 0, tracked both ways, then corrected on frame 5."""
    frames = np.load(FIXTURES / "video_frames.npy")[:12]
    session = VideoSession(micro_model("sam2.1"), frames, video_size=SIZE, state_dir=state_dir)
    session.add_points(1, 1, [[80, 60]], [1])
    session.add_points(9, 1, [[70, 55]], [1])
    session.add_points(0, 2, [[30, 30]], [1])
    list(session.propagate(0))
    list(session.propagate(11, reverse=True))
    session.add_points(CORRECTED, 1, [[60, 50], [20, 100]], [1, 0])
    return session


def record_bytes(session: VideoSession, obj_id: int) -> dict[int, bytes]:
    assert session.state_dir is not None
    folder = session.state_dir / "records" / f"obj_{obj_id}"
    return {int(p.stem[1:]): p.read_bytes() for p in sorted(folder.glob("f*.rec"))}


def computed_frames(session: VideoSession) -> list[int]:
    """Record the frames the session runs the tracking network on, in order."""
    order: list[int] = []
    track_batch = session._track_batch

    def recording(idx, reverse, members):  # noqa: ANN001, ANN202
        order.append(idx)
        return track_batch(idx, reverse, members)

    session._track_batch = recording  # type: ignore[method-assign]
    return order


def lowres(session: VideoSession, obj_id: int, frame: int) -> np.ndarray:
    out = session.frame_output(obj_id, frame)
    assert out is not None
    return out.lowres_logits


def test_span_retracks_only_up_to_the_neighbouring_keyframes(tmp_path: Path) -> None:
    with tracked_session(tmp_path / "span") as session:
        before = {obj: record_bytes(session, obj) for obj in (1, 2)}
        order = computed_frames(session)
        yielded = [r.frame for r in session.propagate(CORRECTED, span=True)]
        assert yielded == [5, 6, 7, 8, 4, 3, 2]
        assert order == [6, 7, 8, 4, 3, 2], f"computed frames {order}"
        after = {obj: record_bytes(session, obj) for obj in (1, 2)}
        for frame in (0, 1, 9, 10, 11):
            assert after[1][frame] == before[1][frame], f"frame {frame} outside the span was rewritten"
        assert after[2] == before[2], "an object without the correction was rewritten"
        assert all(after[1][f] != before[1][f] for f in (2, 3, 4, 6, 7, 8)), "the span kept stale results"
        assert session.frame_output(1, CORRECTED).keyframe

        # forward part: the same as a full propagation from the corrected frame
        with tracked_session(tmp_path / "forward") as reference:
            list(reference.propagate(CORRECTED))
            for frame in (6, 7, 8):
                diff = np.abs(lowres(session, 1, frame) - lowres(reference, 1, frame)).max()
                assert diff <= 1e-3, f"frame {frame}: {diff}"
        # backward part: the same as a full backward propagation from there after the forward part
        with tracked_session(tmp_path / "backward") as reference:
            list(reference.propagate(CORRECTED, max_frames=3))
            list(reference.propagate(CORRECTED, reverse=True))
            for frame in (4, 3, 2):
                diff = np.abs(lowres(session, 1, frame) - lowres(reference, 1, frame)).max()
                assert diff <= 1e-3, f"frame {frame}: {diff}"


def test_span_errors_are_clear(tmp_path: Path) -> None:
    with tracked_session(tmp_path / "s") as session:
        with pytest.raises(SessionError, match="start="):
            list(session.propagate(span=True))
        with pytest.raises(SessionError, match="no object has a prompt on frame 3"):
            list(session.propagate(3, span=True))
        with pytest.raises(SessionError, match="object 2 has no prompt on frame 5"):
            list(session.propagate(CORRECTED, span=True, obj_id=2))
        with pytest.raises(SessionError, match="max_frames and reverse"):
            list(session.propagate(CORRECTED, span=True, reverse=True))


def test_locked_frames_are_never_rewritten_and_locks_reopen(tmp_path: Path) -> None:
    state = tmp_path / "state"
    frames = np.load(FIXTURES / "video_frames.npy")[:10]
    model = micro_model("sam2.1")
    session = VideoSession(model, frames, video_size=SIZE, state_dir=state)
    session.add_points(0, 1, [[80, 60]], [1])
    with pytest.raises(SessionError, match="propagate before locking"):
        session.lock(1, 3, 6)
    list(session.propagate())
    assert session.lock(1, 3, 6) == {1: [[3, 6]]}
    locked = {f: b for f, b in record_bytes(session, 1).items() if 3 <= f <= 6}
    with pytest.raises(SessionError, match="frame 4 of object 1 is locked"):
        session.add_points(4, 1, [[60, 50]], [1])

    session.add_points(1, 1, [[60, 50], [20, 100]], [1, 0])
    order = computed_frames(session)
    list(session.propagate(1))
    assert order == [2, 7, 8, 9], f"computed frames {order}"
    now = record_bytes(session, 1)
    assert {f: now[f] for f in locked} == locked
    session.save()
    session.close()

    reopened = VideoSession.open(state, model, frames=frames)
    try:
        assert reopened.locks() == {1: [[3, 6]]}
        order = computed_frames(reopened)
        list(reopened.propagate(0))
        assert order == [2, 7, 8, 9]
        assert {f: record_bytes(reopened, 1)[f] for f in locked} == locked
        assert reopened.unlock(1, 5, 6) == {1: [[3, 4]]}
        order.clear()
        list(reopened.propagate(0))
        assert order == [2, 5, 6, 7, 8, 9]
    finally:
        reopened.close()
