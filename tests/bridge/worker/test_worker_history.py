"""Undo, redo and before/after through a real worker process (micro checkpoint, real sockets, real
files), across a worker restart."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest

from samroto.bridge import BadRequest, Client, WorkerBusy, protocol

from ..bridge_support import start_worker_process, token_of
from .test_worker_process import FIRST, LAST, make_plate


def snapshot(session_folder: Path, mattes: Path) -> dict[str, bytes]:
    """Every record, the prompts and every matte file (with the confidence report), as bytes."""
    state = session_folder / "state"
    out = {"prompts": (state / "prompts.json").read_bytes()}
    for path in sorted((state / "records").rglob("*.rec")):
        out["records/" + str(path.relative_to(state / "records"))] = path.read_bytes()
    for path in sorted(mattes.iterdir()):
        out["mattes/" + path.name] = path.read_bytes()
    return out


def test_undo_redo_and_before_over_the_socket_survive_a_worker_restart(tmp_path: Path) -> None:
    plate = make_plate(tmp_path / "plate")
    config_dir, sessions, mattes = tmp_path / "config", tmp_path / "sessions", tmp_path / "mattes"
    first = start_worker_process(config_dir, sessions, tmp_path / "worker1.log", "--history-steps", "6")
    try:
        with Client(first.address, token=token_of(config_dir), timeout=30.0) as client:
            assert {"history", "frame.before"} <= set(client.hello().capabilities)
            assert client.hello().protocol == "1.3"
            shot = client.open_session(plate, matte_dir=str(mattes), name="undo")
            with pytest.raises(BadRequest, match="nothing to undo") as refused:
                shot.undo()
            assert refused.value.code == protocol.E_BAD_REQUEST
            shot.add_points(1002, 1, [(80, 60)], [1])
            shot.add_points(1008, 1, [(70, 55)], [1])
            list(shot.propagate(direction="both"))
            tracked = {f: shot.frame_result(f).mattes[0] for f in range(FIRST, LAST + 1)}
            shot.add_points(1005, 1, [(60, 50), (20, 100)], [1, 0])
            folder = sessions / shot.id
            corrected = snapshot(folder, mattes)

            updates = list(shot.propagate(1005, span=True))
            assert [u.frame for u in updates] == [1005, 1006, 1007, 1004, 1003]
            retracked = snapshot(folder, mattes)
            assert retracked != corrected
            history = shot.history()
            assert history == {"undo": ["points on frame 1002 (object 1)", "points on frame 1008 (object 1)",
                                        "propagate both from frame 1002", "points on frame 1005 (object 1)",
                                        "span re-track from frame 1005"],
                               "redo": [], "limit": 6, "keyframes": {1: [1002, 1005, 1008]}, "locks": {}}

            # before/after: the span replaced what the two-way propagation had made
            before = shot.frame_result(1006, before=True)
            assert before.obj_ids == [1] and np.array_equal(before.mattes[0], tracked[1006])
            assert not np.array_equal(shot.frame_result(1006).mattes[0], tracked[1006])
            assert shot.get_frame(1010, before=True).mattes.shape == (1, 120, 160)

            # undo is refused while the session propagates (another view of it, so nothing cancels first)
            run = shot.propagate(1006, credit=1, write_mattes=False)
            next(run)
            with pytest.raises(WorkerBusy, match="propagating"):
                client.resume_session(shot.id).undo()
            run.cancel()
            undone = shot.undo()  # the cancelled propagation is a step too
            assert undone["step"] == "propagate forward from frame 1006" and 1006 in undone["frames"]
            assert snapshot(folder, mattes) == retracked

            undone = shot.undo()
            assert undone["step"] == "span re-track from frame 1005"
            assert undone["frames"] == [1003, 1004, 1005, 1006, 1007]
            assert undone["history"]["redo"] == ["span re-track from frame 1005",
                                                 "propagate forward from frame 1006"]
            assert snapshot(folder, mattes) == corrected, "undo did not restore records and mattes bit for bit"
            assert shot.redo()["step"] == "span re-track from frame 1005"
            assert snapshot(folder, mattes) == retracked
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(30)
    finally:
        first.kill()

    second = start_worker_process(config_dir, sessions, tmp_path / "worker2.log")
    try:
        with Client(second.address, token=token_of(config_dir), timeout=30.0) as client:
            resumed = client.resume_session(shot.id)
            assert resumed.history()["undo"][-1] == "span re-track from frame 1005"
            assert resumed.history()["redo"] == ["propagate forward from frame 1006"]
            resumed.undo()
            assert snapshot(folder, mattes) == corrected, "after a restart, undo did not restore bit for bit"
            # a new step drops what could be redone
            resumed.lock(1, 1009, 1010)
            assert resumed.history()["redo"] == []
            with pytest.raises(BadRequest, match="nothing to redo"):
                resumed.redo()
            assert resumed.undo()["history"]["locks"] == {}
            # a stroke is one step, whatever it becomes (here clicks along the brush)
            resumed.add_stroke(1004, 1, [(40, 40), (60, 50), (80, 60)], kind="brush")
            assert resumed.history()["undo"][-1] == "brush stroke on frame 1004 (object 1)"
            assert resumed.undo()["frames"] == [1004]
            assert snapshot(folder, mattes) == corrected
            # mattes written on request right after a step (the hosts' quick result) belong to that step
            resumed.add_points(1006, 1, [(65, 52)], [1])
            resumed.write_mattes([1006])
            assert snapshot(folder, mattes) != corrected
            resumed.undo()
            assert snapshot(folder, mattes) == corrected, "undo left the mattes written after the step"
    finally:
        second.kill()
