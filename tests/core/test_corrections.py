"""Corrections keep prior work: span re-tracking after a correction, and locked frames."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from samroto.core.model.sam2 import SAM2Model
from samroto.core.video_session import SessionError, VideoSession

from .conftest import FIXTURES, micro_model

SIZE = (120, 160)
CORRECTED = 4  # keyframes of object 1 at 1 and 7: the span of a correction on 4 is 2..6


@pytest.fixture(scope="module")
def micro() -> Iterator[SAM2Model]:
    # one thread: two OpenMP threads on a busy 2-core machine run many times slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield micro_model("sam2.1")
    finally:
        torch.set_num_threads(threads)


def frames(count: int) -> np.ndarray:
    return np.load(FIXTURES / "video_frames.npy")[:count]


def tracked_session(model: SAM2Model, state_dir: Path) -> VideoSession:
    """Object 1 prompted on 1 and 7, object 2 on 0, tracked forward, then corrected on frame 4."""
    session = VideoSession(model, frames(10), video_size=SIZE, state_dir=state_dir)
    session.add_points(1, 1, [[80, 60]], [1])
    session.add_points(7, 1, [[70, 55]], [1])
    session.add_points(0, 2, [[30, 30]], [1])
    list(session.propagate(0))
    session.add_points(CORRECTED, 1, [[60, 50], [20, 100]], [1, 0])
    session.save()
    return session


def copy_of(session: VideoSession, model: SAM2Model, state_dir: Path) -> VideoSession:
    """The same session in the same state (saved, copied, reopened)."""
    assert session.state_dir is not None
    shutil.copytree(session.state_dir, state_dir)
    return VideoSession.open(state_dir, model, frames=frames(10))


def record_bytes(session: VideoSession, obj_id: int) -> dict[int, bytes]:
    assert session.state_dir is not None
    session.store.flush()  # records are written on a background thread: read them once they are on disk
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


def test_span_retracks_only_up_to_the_neighbouring_keyframes(micro: SAM2Model, tmp_path: Path) -> None:
    with tracked_session(micro, tmp_path / "span") as session:
        forward = copy_of(session, micro, tmp_path / "forward")
        backward = copy_of(session, micro, tmp_path / "backward")
        before = {obj: record_bytes(session, obj) for obj in (1, 2)}
        assert session.span_frames(CORRECTED) == [4, 5, 6, 3, 2]
        order = computed_frames(session)
        yielded = [r.frame for r in session.propagate(CORRECTED, span=True)]
        assert yielded == [4, 5, 6, 3, 2]
        assert order == [5, 6, 3, 2], f"computed frames {order}"
        after = {obj: record_bytes(session, obj) for obj in (1, 2)}
        for frame in (0, 1, 7, 8, 9):
            assert after[1][frame] == before[1][frame], f"frame {frame} outside the span was rewritten"
        assert after[2] == before[2], "an object without the correction was rewritten"
        assert all(after[1][f] != before[1][f] for f in (2, 3, 5, 6)), "the span kept stale results"
        assert session.frame_output(1, CORRECTED).keyframe

        # forward part: what a full propagation from the corrected frame computes there
        with forward:
            list(forward.propagate(CORRECTED))
            for frame in (5, 6):
                diff = np.abs(lowres(session, 1, frame) - lowres(forward, 1, frame)).max()
                assert diff <= 1e-3, f"frame {frame}: {diff}"
        # backward part: what a full backward propagation from there computes after the forward part
        with backward:
            list(backward.propagate(CORRECTED, max_frames=2))
            list(backward.propagate(CORRECTED, reverse=True))
            for frame in (3, 2):
                diff = np.abs(lowres(session, 1, frame) - lowres(backward, 1, frame)).max()
                assert diff <= 1e-3, f"frame {frame}: {diff}"


def test_span_errors_are_clear(micro: SAM2Model, tmp_path: Path) -> None:
    with VideoSession(micro, frames(6), video_size=SIZE) as session:
        session.add_points(1, 1, [[80, 60]], [1])
        session.add_points(CORRECTED, 2, [[30, 30]], [1])
        with pytest.raises(SessionError, match="start="):
            list(session.propagate(span=True))
        with pytest.raises(SessionError, match="no object has a prompt on frame 3"):
            list(session.propagate(3, span=True))
        with pytest.raises(SessionError, match="object 1 has no prompt on frame 4"):
            list(session.propagate(CORRECTED, span=True, obj_id=1))
        with pytest.raises(SessionError, match="max_frames and reverse"):
            list(session.propagate(CORRECTED, span=True, reverse=True))


def test_locked_frames_are_never_rewritten_and_locks_reopen(micro: SAM2Model, tmp_path: Path) -> None:
    state = tmp_path / "state"
    session = VideoSession(micro, frames(8), video_size=SIZE, state_dir=state)
    session.add_points(0, 1, [[80, 60]], [1])
    with pytest.raises(SessionError, match="propagate before locking"):
        session.lock(1, 3, 5)
    list(session.propagate())
    assert session.lock(1, 3, 5) == {1: [[3, 5]]}
    locked = {f: b for f, b in record_bytes(session, 1).items() if 3 <= f <= 5}
    with pytest.raises(SessionError, match="frame 4 of object 1 is locked"):
        session.add_points(4, 1, [[60, 50]], [1])

    session.add_points(1, 1, [[60, 50], [20, 100]], [1, 0])
    order = computed_frames(session)
    list(session.propagate(1))
    assert order == [2, 6, 7], f"computed frames {order}"
    assert {f: record_bytes(session, 1)[f] for f in locked} == locked
    session.save()
    session.close()

    reopened = VideoSession.open(state, micro, frames=frames(8))
    try:
        assert reopened.locks() == {1: [[3, 5]]}
        order = computed_frames(reopened)
        list(reopened.propagate(0))
        assert order == [2, 6, 7]
        assert {f: record_bytes(reopened, 1)[f] for f in locked} == locked
        assert reopened.unlock(1, 4, 5) == {1: [[3, 3]]}
        order.clear()
        list(reopened.propagate(0))
        assert order == [2, 4, 5, 6, 7]
    finally:
        reopened.close()
