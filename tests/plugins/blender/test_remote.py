"""The add-on's worker calls (no bpy) against real sockets: the in-process fake worker for the
protocol paths, a real `samroto worker` for the start command."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import pytest

from ...bridge.bridge_support import MICRO_CHECKPOINT, MICRO_CONFIG, InProcessWorker, start_in_process


@pytest.fixture(scope="module")
def remote(addon_module):
    return addon_module("remote")


@pytest.fixture(scope="module")
def plates(addon_module):
    return addon_module("plates")


@pytest.fixture
def fake_worker(config_dir: Path, tmp_path: Path) -> Iterator[InProcessWorker]:
    handle = start_in_process(config_dir, tmp_path / "sessions", delay=0.02)
    try:
        yield handle
    finally:
        handle.stop()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_for(remote, worker: InProcessWorker, **overrides: Any):
    values = dict(address=worker.address, token_file=str(worker.config.config_dir / "token"), timeout_s=10.0)
    values.update(overrides)
    return remote.Settings(**values)


def test_connect_says_hello(remote, fake_worker: InProcessWorker) -> None:
    connection = remote.connect(settings_for(remote, fake_worker))
    try:
        assert connection.info.model == "fake" and connection.address == fake_worker.address
        assert connection.started is None
    finally:
        connection.client.close()
    # with no address and no token file the add-on finds both in the config folder, like the worker
    connection = remote.connect(remote.Settings())
    connection.client.close()
    assert connection.address == fake_worker.address


def test_no_worker_answering_is_explained(remote, config_dir: Path, fake_worker: InProcessWorker) -> None:
    address = "tcp://127.0.0.1:%d" % free_port()
    with pytest.raises(remote.WorkerUnavailable) as info:
        remote.connect(settings_for(remote, fake_worker, address=address, timeout_s=0.3))
    assert "No samroto worker answers at %s" % address in str(info.value)
    assert "Start command" in str(info.value)


def test_a_wrong_or_missing_token_is_explained(remote, tmp_path: Path, fake_worker: InProcessWorker) -> None:
    wrong = tmp_path / "wrong_token"
    wrong.write_text("0" * 64)
    os.chmod(wrong, 0o600)
    with pytest.raises(remote.TokenRejected) as info:
        remote.connect(settings_for(remote, fake_worker, token_file=str(wrong)))
    assert "refused this add-on's token: %s is not the worker's token file" % wrong in str(info.value)
    with pytest.raises(remote.TokenRejected, match="No worker token at .*missing.*start the worker once"):
        remote.connect(settings_for(remote, fake_worker, token_file=str(tmp_path / "missing")))
    os.chmod(wrong, 0o644)
    with pytest.raises(remote.TokenRejected, match="readable by other users"):
        remote.connect(settings_for(remote, fake_worker, token_file=str(wrong)))


def test_a_start_command_that_fails_is_explained(remote, config_dir: Path, tmp_path: Path) -> None:
    config_dir.mkdir(parents=True)
    (config_dir / "token").write_text("a" * 64)
    os.chmod(config_dir / "token", 0o600)
    settings = remote.Settings(address="tcp://127.0.0.1:%d" % free_port(), timeout_s=0.3, log_dir=str(tmp_path),
                               start_command='"%s" -c "raise SystemExit(3)"' % sys.executable)
    with pytest.raises(remote.WorkerUnavailable, match="exited with code 3 before the worker answered"):
        remote.connect(settings)
    with pytest.raises(remote.AddonError, match="cannot be parsed"):
        remote.start_worker('samroto "worker')
    with pytest.raises(remote.AddonError, match="Cannot run the start command"):
        remote.start_worker("/no/such/samroto-binary worker", str(tmp_path))


def test_the_start_command_starts_a_local_worker(remote, config_dir: Path, tmp_path: Path) -> None:
    config_file = tmp_path / "micro.json"
    import json

    config_file.write_text(json.dumps(json.loads(MICRO_CONFIG.read_text())["models"]["sam2.1"]))
    address = "tcp://127.0.0.1:%d" % free_port()
    command = ('"%s" -m samroto.scripts.cli worker --model "%s" --config "%s" --device cpu --bind %s '
               '--session-dir "%s"') % (
        sys.executable, MICRO_CHECKPOINT, config_file, address, tmp_path / "sessions")
    # no token file yet: the started worker creates it and the add-on picks it up
    settings = remote.Settings(address=address, start_command=command, timeout_s=2.0, start_timeout_s=120.0,
                               log_dir=str(tmp_path))
    connection = remote.connect(settings)
    try:
        assert connection.started is not None and connection.started.poll() is None
        assert connection.info.model == str(MICRO_CHECKPOINT) and connection.info.device == "cpu"
        assert (tmp_path / "samroto_worker.log").is_file()
    finally:
        connection.client.close()
        if connection.started is not None:
            connection.started.terminate()
            connection.started.wait(30)


def _fake_plate(plates):
    return plates.ClipPlate("SEQUENCE", "fake:plate", 1001, 1012, 1001, 1, 0)


def test_sessions_resume_prompts_and_propagation(remote, plates, addon_module,
                                                 fake_worker: InProcessWorker) -> None:
    prompts = addon_module("prompts")
    connection = remote.connect(settings_for(remote, fake_worker))
    client = connection.client
    try:
        session, resumed = remote.open_session(client, _fake_plate(plates))
        assert not resumed and (session.first, session.last) == (1001, 1012)
        again, resumed = remote.open_session(client, _fake_plate(plates), session_id=session.id)
        assert resumed and again.id == session.id
        other, resumed = remote.open_session(client, _fake_plate(plates), session_id="gone-0000")
        assert not resumed and other.id != session.id

        # an empty prompt for an object the worker never saw: nothing to clear
        assert remote.send_prompt(session, 1001, 1, prompts.FramePrompt()) is None
        update = remote.send_prompt(session, 1003, 1, prompts.FramePrompt([(10.0, 12.0)], [1]))
        assert update.frame == 1003 and update.obj_ids == [1] and 1 in update.previews
        fake = fake_worker.engine.sessions[0]
        assert fake.centres[1][1003] == (10.0, 12.0)  # the fake puts a disc at the clicks' centre
        remote.send_prompt(session, 1003, 2, prompts.FramePrompt([(5.0, 5.0)], [0], (2.0, 2.0, 20.0, 20.0)))
        assert fake.centres[2][1003] == (11.0, 11.0)  # a box: at its centre
        assert remote.send_prompt(session, 1003, 2, prompts.FramePrompt()) is not None  # clears the frame
        assert 1003 not in fake.centres[2] and fake.centres[1][1003] == (10.0, 12.0)

        # a new session for a clip whose old one is gone gets every click made so far
        book = prompts.PromptBook()
        book.add_click(1, 1002, (4.0, 6.0), True)
        book.set_box(3, 1010, (0.0, 0.0, 8.0, 8.0))
        book.add_click(3, 1200, (1.0, 1.0), True)  # outside the plate: skipped
        assert remote.replay_prompts(other, book) == 2
        replayed = fake_worker.engine.sessions[-1]
        assert replayed.centres == {1: {1002: (4.0, 6.0)}, 3: {1010: (4.0, 4.0)}}

        # propagation with updates as they come; cancelling stops it within a frame
        seen: List[int] = []
        cancel = threading.Event()

        def on_update(update: Any) -> None:
            seen.append(update.frame)
            if len(seen) == 3:
                cancel.set()

        outcome = remote.propagate(session, direction="forward", on_update=on_update, cancelled=cancel)
        assert outcome.state == "cancelled" and outcome.frames == seen and len(seen) == 3
        outcome = remote.propagate(session, direction="both", on_update=lambda u: None, cancelled=threading.Event())
        assert outcome.state == "done" and sorted(outcome.frames) == list(range(1001, 1013))
        with pytest.raises(ValueError, match="direction must be one of"):
            remote.propagate(session, direction="sideways", on_update=lambda u: None, cancelled=threading.Event())
        empty_session, _ = remote.open_session(client, _fake_plate(plates))
        with pytest.raises(remote.AddonError, match="Nothing to propagate"):
            remote.propagate(empty_session, on_update=lambda u: None, cancelled=threading.Event())
        with pytest.raises(remote.AddonError, match="cannot open"):
            remote.open_session(client, plates.ClipPlate("SEQUENCE", "/no/such/plate.####.exr", 1, 2, 1, 1, 0))
    finally:
        client.close()


def _pump(inbox: List[Callable[[], None]], done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        while inbox:
            inbox.pop(0)()
        assert time.monotonic() < deadline, "gave up waiting for the runner"
        time.sleep(0.005)
    while inbox:
        inbox.pop(0)()


def test_the_runner_runs_jobs_in_order_and_reports_on_the_main_thread(remote) -> None:
    inbox: List[Callable[[], None]] = []
    runner = remote.Runner(inbox.append)
    threads: List[str] = []
    results: List[Any] = []
    try:
        gate = threading.Event()
        first = runner.submit("first", lambda job: gate.wait(10) and threading.current_thread().name,
                              on_done=lambda job: results.append(("done", job.result)))
        failing = runner.submit("failing", lambda job: (_ for _ in ()).throw(remote.AddonError("no clip files")),
                                on_error=lambda job: results.append(("error", job.error)))
        empty: Dict[str, int] = {}
        crashing = runner.submit("crashing", lambda job: empty["missing"],
                                 on_error=lambda job: results.append(("error", job.error)))
        skipped = runner.submit("skipped", lambda job: threads.append("ran"),
                                on_error=lambda job: results.append(("skipped", job.state)))
        skipped.cancel()
        assert first.state in ("queued", "running") and not results  # nothing delivered before the pump
        gate.set()
        _pump(inbox, lambda: skipped.finished and crashing.finished and len(results) == 4)
        assert results == [("done", "samroto-network"), ("error", "no clip files"),
                           ("error", "KeyError: 'missing'"), ("skipped", "cancelled")]
        assert (first.state, failing.state, crashing.state) == ("done", "failed", "failed") and threads == []
    finally:
        runner.stop()
    assert not runner.alive


def test_held_jobs_wait_for_the_release_in_order(remote) -> None:
    # an operator holds the jobs it submits: the network thread must not run Python before Blender
    # has finished the operator call (see Runner.hold)
    inbox: List[Callable[[], None]] = []
    runner = remote.Runner(inbox.append)
    ran: List[str] = []
    try:
        runner.hold()
        held = [runner.submit(name, lambda job, name=name: ran.append(name)) for name in ("remove", "barrier")]
        time.sleep(0.2)
        assert ran == [] and [job.state for job in held] == ["queued", "queued"]
        runner.release()
        _pump(inbox, lambda: all(job.finished for job in held))
        assert ran == ["remove", "barrier"]
        runner.hold()
        last = runner.submit("at stop", lambda job: ran.append("at stop"))
    finally:
        runner.stop()  # held jobs still run before the thread ends
    assert last.state == "done" and ran[-1] == "at stop" and not runner.alive


def test_the_runner_is_idle_only_when_no_job_is_queued_or_running(remote) -> None:
    # the chunked Mask build runs Blender operators only while the network thread runs no job
    inbox: List[Callable[[], None]] = []
    runner = remote.Runner(inbox.append)
    gate = threading.Event()
    try:
        assert runner.idle
        running = runner.submit("slow", lambda job: gate.wait(10))
        queued = runner.submit("next", lambda job: None)
        cancelled = runner.submit("dropped", lambda job: None)
        cancelled.cancel()
        time.sleep(0.1)
        assert running.state == "running" and not runner.idle
        gate.set()
        _pump(inbox, lambda: running.finished and queued.finished and cancelled.finished)
        assert runner.idle
        runner.hold()
        runner.submit("held", lambda job: None)
        assert runner.idle  # held jobs are not the network thread's yet
        runner.release()
        assert not runner.idle
    finally:
        runner.stop()
    assert runner.idle


def test_describe_turns_bridge_errors_into_sentences(remote, addon_module) -> None:
    client = addon_module("bridge.client")
    assert "does not support that yet" in remote.describe(client.NotImplementedByWorker("not_implemented", "x"))
    assert "busy" in remote.describe(client.WorkerBusy("busy", "propagating"))
    assert "open the session again" in remote.describe(client.NoSuchSession("no_such_session", "s"))
    assert remote.describe(client.BadRequest("bad_request", "frame 9 is outside")) == \
        "The worker refused: frame 9 is outside"
    assert remote.describe(RuntimeError("boom")) == "RuntimeError: boom"


def test_preview_sessions_are_resumed_only_as_previews(remote, plates, fake_worker: InProcessWorker) -> None:
    connection = remote.connect(settings_for(remote, fake_worker))
    client = connection.client
    try:
        preview, resumed = remote.open_session(client, _fake_plate(plates), track_resolution=128)
        assert not resumed and preview.preview and preview.info["track_resolution"] == 128
        again, resumed = remote.open_session(client, _fake_plate(plates), session_id=preview.id, track_resolution=128)
        assert resumed and again.id == preview.id
        # the clip asks for the final session (or another preview size): the preview does not stand in
        final, resumed = remote.open_session(client, _fake_plate(plates), session_id=preview.id)
        assert not resumed and final.id != preview.id and not final.preview
        other, resumed = remote.open_session(client, _fake_plate(plates), session_id=preview.id, track_resolution=64)
        assert not resumed and other.id != preview.id and other.preview
        again, resumed = remote.open_session(client, _fake_plate(plates), session_id=final.id)
        assert resumed and again.id == final.id and not again.preview
    finally:
        client.close()


def test_a_new_view_or_colourspace_opens_a_new_session(remote, plates, fake_worker: InProcessWorker) -> None:
    connection = remote.connect(settings_for(remote, fake_worker))
    client = connection.client
    standard = plates.ClipColour(config="/blender/config.ocio", colorspace="sRGB", display="sRGB", view="Standard")
    try:
        session, resumed = remote.open_session(client, _fake_plate(plates), colour=standard)
        assert not resumed and session.info["colour"] == {"config": "/blender/config.ocio", "colorspace": "sRGB",
                                                          "display": "sRGB", "view": "Standard"}
        again, resumed = remote.open_session(client, _fake_plate(plates), session_id=session.id, colour=standard)
        assert resumed and again.id == session.id
        agx = plates.ClipColour(config=standard.config, colorspace="sRGB", display="sRGB", view="AgX")
        other, resumed = remote.open_session(client, _fake_plate(plates), session_id=session.id, colour=agx)
        assert not resumed and other.id != session.id and other.info["colour"]["view"] == "AgX"
    finally:
        client.close()


def test_started_worker_gets_the_device_setting(remote) -> None:
    assert remote.worker_argv("samroto worker", "auto") == ["samroto", "worker", "--device", "auto"]
    assert remote.worker_argv("samroto worker --model m.pt", "mps")[-2:] == ["--device", "mps"]
    assert remote.worker_argv("samroto worker --device cuda:1", "cpu") == ["samroto", "worker", "--device", "cuda:1"]
    assert remote.worker_argv("samroto worker --device=cpu", "cuda")[-1] == "--device=cpu"
    with pytest.raises(remote.AddonError, match="Unknown worker device 'tpu'"):
        remote.worker_argv("samroto worker", "tpu")


def test_the_memory_mode_is_offered_and_a_session_is_resumed_only_in_its_mode(
        remote, plates, fake_worker: InProcessWorker) -> None:
    from samroto.core.memory_modes import explanations

    items = remote.memory_mode_items()
    assert [(name, explanation) for name, _, explanation in items] == list(explanations().items())
    assert items[0][:2] == ("sam2", "Exact SAM 2") and ("presence", "Presence") in [item[:2] for item in items]
    connection = remote.connect(settings_for(remote, fake_worker))
    client = connection.client
    try:
        presence, resumed = remote.open_session(client, _fake_plate(plates), memory_mode="presence")
        assert not resumed and presence.info["memory_mode"] == "presence"
        again, resumed = remote.open_session(client, _fake_plate(plates), session_id=presence.id,
                                             memory_mode="presence")
        assert resumed and again.id == presence.id
        exact, resumed = remote.open_session(client, _fake_plate(plates), session_id=presence.id)
        assert not resumed and exact.id != presence.id and exact.info["memory_mode"] == "sam2"
    finally:
        client.close()
