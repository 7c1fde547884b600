"""The worker's request handling, streams, credit, cancel and persistence, on a fake engine
(in-process: fast, and lets the tests look inside). The real model is exercised in
test_worker_process.py."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import zmq

from samroto.bridge import (AuthenticationError, BadRequest, Client, NoSuchSession, PropagationCancelled, auth,
                            ProtocolMismatch, RemoteError, WorkerBusy, codec, protocol, pushed_plate)
from samroto.bridge.worker.handlers import RequestError
from samroto.bridge.worker.scheduler import Job, Scheduler

from ..bridge_support import InProcessWorker, start_in_process, token_of, wait_until


def _client(worker: InProcessWorker, **kwargs) -> Client:
    return Client(worker.address, timeout=kwargs.pop("timeout", 5.0), **kwargs)


def _open(client: Client, tmp_path: Path, first: int = 1001, last: int = 1012):
    return client.open_session("fake:plate", first, last, matte_dir=str(tmp_path / "mattes"))


class RawPeer:
    """A bare DEALER speaking the wire format, for requests the Client would never send."""

    def __init__(self, address: str, token: str) -> None:
        self.signer = codec.Signer(token)
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        auth.configure_client_socket(self.socket, token)  # the handshake a client with the token makes
        self.socket.connect(address)
        self.epoch: str | None = None

    def send(self, parts: list) -> None:
        self.socket.send_multipart(parts)

    def request(self, mtype: str, body: dict | None = None, **kwargs) -> list:
        if mtype != protocol.HELLO and "epoch" not in kwargs:
            if self.epoch is None:
                self.epoch = codec.decode(self.request(protocol.HELLO), self.signer).body["epoch"]
            kwargs["epoch"] = self.epoch
        self.send(codec.encode(self.signer, mtype, body=body, **kwargs))
        return self.recv()

    def recv(self, timeout_ms: int = 5000) -> list:
        assert self.socket.poll(timeout_ms), "no answer from the worker"
        return self.socket.recv_multipart()

    def close(self) -> None:
        self.socket.close(0)


def test_hello_describes_the_worker(fake_worker: InProcessWorker) -> None:
    with _client(fake_worker) as client:
        info = client.hello()
        assert info.protocol == protocol.version_string()
        assert (info.model, info.device) == ("fake", "cpu")
        assert {"propagate.both", "credit", "cancel", "push_frames"} <= set(info.capabilities)
        assert set(protocol.REQUEST_TYPES) == set(info.raw["requests"])
        assert client.ping() is True


def test_a_different_major_version_is_refused_clearly(fake_worker: InProcessWorker) -> None:
    peer = RawPeer(fake_worker.address, token_of(fake_worker.config.config_dir))
    try:
        reply = codec.decode(peer.request("hello", version=(2, 0)), peer.signer, check_version=False)
        assert reply.type == protocol.ERROR and reply.body["code"] == protocol.E_VERSION
        assert "2.0" in reply.body["message"] and protocol.version_string() in reply.body["message"]
        reply = codec.decode(peer.request("hello", {"protocol": "3.1"}), peer.signer)
        assert reply.body["code"] == protocol.E_VERSION and "update the older side" in reply.body["message"]
        reply = codec.decode(peer.request("hello", {"protocol": "1.9"}), peer.signer)
        assert reply.type == protocol.REPLY  # a newer minor is compatible
    finally:
        peer.close()


def test_the_client_turns_a_version_refusal_into_protocol_mismatch(fake_worker: InProcessWorker) -> None:
    with _client(fake_worker) as client:
        expected = "client speaks protocol 3.1, this worker %s" % protocol.version_string()
        with pytest.raises(ProtocolMismatch, match=expected):
            client.request(protocol.HELLO, {"protocol": "3.1"})


def test_a_wrong_token_is_refused_with_a_clear_error(fake_worker: InProcessWorker) -> None:
    with Client(fake_worker.address, token="f" * 64, timeout=5.0) as client:
        with pytest.raises(AuthenticationError, match="token"):
            client.hello()


def test_the_client_finds_the_worker_and_token_in_the_config_folder(fake_worker: InProcessWorker) -> None:
    with Client(timeout=5.0) as client:  # worker.json and token from $SAMROTO_CONFIG_DIR
        assert client.address == fake_worker.address
        assert client.hello().model == "fake"


def test_prompt_then_propagate_forward_backward_and_both(fake_worker: InProcessWorker, tmp_path: Path) -> None:
    with _client(fake_worker) as client:
        shot = _open(client, tmp_path)
        assert (shot.first, shot.last, shot.width, shot.height) == (1001, 1012, 32, 24)
        update = shot.add_points(1005, 1, [(10, 12)], [1])
        assert update.frame == 1005 and update.obj_ids == [1] and update.present(1)
        assert update.preview_mask(1).shape == (24, 32) and update.preview_mask(1)[12, 10]
        assert shot.obj_ids == [1]

        forward = list(shot.propagate())
        assert [u.frame for u in forward] == list(range(1005, 1013))
        assert forward[-1].progress == (8, 8)
        backward = list(shot.propagate(direction="backward"))
        assert [u.frame for u in backward] == list(range(1005, 1000, -1))
        both = shot.propagate(direction="both", first=1003, last=1008)
        frames = [u.frame for u in both]
        assert frames == [1005, 1006, 1007, 1008, 1004, 1003] and both.state == "done" and both.total == 6
        from_start = [u.frame for u in shot.propagate(start=1010)]
        assert from_start == [1010, 1011, 1012]

        for update in forward:
            path = update.matte_paths[1]
            assert path.startswith(str(tmp_path / "mattes")) and ("%04d" % update.frame) in path
            assert np.load(path).shape == (24, 32)


def test_propagating_without_objects_or_outside_the_plate_is_a_bad_request(fake_worker: InProcessWorker,
                                                                          tmp_path: Path) -> None:
    with _client(fake_worker) as client:
        shot = _open(client, tmp_path)
        with pytest.raises(BadRequest, match="no objects yet"):
            list(shot.propagate())
        shot.add_points(1001, 1, [(3, 3)], [1])
        with pytest.raises(BadRequest, match="outside the plate's frames 1001-1012"):
            list(shot.propagate(start=999))
        with pytest.raises(BadRequest, match="outside the plate's frames 1001-1012"):
            shot.add_points(1013, 1, [(3, 3)], [1])
        with pytest.raises(ValueError, match="direction"):
            shot.propagate(direction="sideways")


def test_cancel_stops_a_running_propagation_within_a_frame(config_dir: Path, tmp_path: Path) -> None:
    worker = start_in_process(config_dir, tmp_path / "sessions", delay=0.05)
    try:
        with _client(worker) as client:
            shot = _open(client, tmp_path, 1, 200)
            shot.add_points(1, 1, [(5, 5)], [1])
            run = shot.propagate(credit=4)
            got = [next(run).frame for _ in range(3)]
            run.cancel()
            assert got == [1, 2, 3]
            assert run.state == "cancelled" and run.reason == "cancelled by request"
            assert run.received < 20
            assert client.status()["streams"] == []
            # the session is consistent and usable afterwards
            assert [u.frame for u in shot.propagate(start=198)] == [198, 199, 200]
    finally:
        worker.stop()


def test_another_client_can_cancel_a_sessions_propagation(config_dir: Path, tmp_path: Path) -> None:
    worker = start_in_process(config_dir, tmp_path / "sessions", delay=0.05)
    try:
        with _client(worker) as owner, _client(worker) as other:
            shot = _open(owner, tmp_path, 1, 200)
            shot.add_points(1, 1, [(5, 5)], [1])
            run = shot.propagate(credit=2)
            next(run)
            remote = other.resume_session(shot.id)
            assert run.request_id in remote.cancel()
            # not asked by this loop: it must not end as if the shot were done
            with pytest.raises(PropagationCancelled, match="cancelled by request") as stopped:
                list(run)
            assert run.state == "cancelled" and run.received < 11 and stopped.value.received == run.received
    finally:
        worker.stop()


def test_a_client_that_stops_granting_credit_pauses_its_propagation(fake_worker: InProcessWorker,
                                                                    tmp_path: Path) -> None:
    with _client(fake_worker) as client:
        shot = _open(client, tmp_path, 1, 40)
        shot.add_points(1, 1, [(5, 5)], [1])
        run = shot.propagate(credit=3)
        stream = wait_until(lambda: [s for s in client.status()["streams"] if s["paused"]], what="a paused stream")[0]
        assert stream["sent"] == 3 and stream["credit"] == 0
        status = client.status()
        assert status["streams"][0]["sent"] == 3  # still paused: nothing ran ahead
        frames = [u.frame for u in run]
        assert frames == list(range(1, 41)) and run.state == "done"


def test_a_vanished_client_gets_its_propagation_cancelled(fake_worker: InProcessWorker, tmp_path: Path) -> None:
    with _client(fake_worker) as leaver, _client(fake_worker) as stayer:
        shot = _open(leaver, tmp_path, 1, 500)
        shot.add_points(1, 1, [(5, 5)], [1])
        run = shot.propagate(credit=2)
        next(run)
        leaver.close()  # gone without a word; the worker notices when it probes the paused stream
        wait_until(lambda: stayer.status()["streams"] == [], what="the abandoned stream to be cancelled")
        other = _open(stayer, tmp_path)
        other.add_points(1001, 2, [(5, 5)], [1])
        assert len(list(other.propagate())) == 12


def test_a_silent_client_is_timed_out(config_dir: Path, tmp_path: Path) -> None:
    worker = start_in_process(config_dir, tmp_path / "sessions", client_timeout_s=0.5, keepalive_interval_s=0.1)
    try:
        with _client(worker) as client, _client(worker) as watcher:
            shot = _open(client, tmp_path, 1, 100)
            shot.add_points(1, 1, [(5, 5)], [1])
            run = shot.propagate(credit=2)
            wait_until(lambda: watcher.status()["streams"], what="the stream to start")
            wait_until(lambda: watcher.status()["streams"] == [], what="the silent stream to be cancelled")
            with pytest.raises(PropagationCancelled, match="silent"):
                list(run)
            assert run.state == "cancelled" and "silent" in (run.reason or "") and run.received == 2
    finally:
        worker.stop()


def test_two_clients_propagate_different_sessions_at_the_same_time(fake_worker: InProcessWorker,
                                                                   tmp_path: Path) -> None:
    results: dict[str, list[int]] = {}

    def work(name: str, obj: int) -> None:
        with _client(fake_worker) as client:
            shot = client.open_session("fake:" + name, 1, 30, matte_dir=str(tmp_path / name))
            shot.add_points(1, obj, [(5, 5)], [1])
            results[name] = [u.frame for u in shot.propagate(credit=2)]

    threads = [threading.Thread(target=work, args=(n, i + 1)) for i, n in enumerate(["a", "b"])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {"a": list(range(1, 31)), "b": list(range(1, 31))}


def test_prompts_from_others_are_refused_while_the_session_propagates(config_dir: Path, tmp_path: Path) -> None:
    worker = start_in_process(config_dir, tmp_path / "sessions", delay=0.05)
    try:
        with _client(worker) as client, _client(worker) as other:
            shot = _open(client, tmp_path, 1, 100)
            shot.add_points(1, 1, [(5, 5)], [1])
            run = shot.propagate(credit=1)
            next(run)
            elsewhere = other.resume_session(shot.id)
            with pytest.raises(WorkerBusy, match="is propagating"):
                elsewhere.add_points(50, 1, [(5, 5)], [1])
            assert elsewhere.get_frame(1).obj_ids == [1]  # reading is fine
            # the owner's own prompt stops its stale propagation first
            update = shot.add_points(50, 1, [(5, 5)], [1])
            assert update.frame == 50 and run.state == "cancelled"
            elsewhere.add_points(60, 1, [(5, 5)], [1])
    finally:
        worker.stop()


def test_errors_become_clear_exceptions(fake_worker: InProcessWorker, tmp_path: Path) -> None:
    with _client(fake_worker) as client:
        with pytest.raises(NoSuchSession, match="no session 'nope'"):
            client.resume_session("nope")
        with pytest.raises(NoSuchSession, match="invalid session id"):
            client.resume_session("../etc")
        with pytest.raises(BadRequest, match="only opens 'fake:' plates"):
            client.open_session("/no/such/plate.####.exr")
        shot = _open(client, tmp_path)
        with pytest.raises(BadRequest, match="same, non-zero length"):
            shot.add_points(1001, 1, [(1, 1), (2, 2)], [1])
        with pytest.raises(BadRequest, match="labels must be 1"):
            shot.add_points(1001, 1, [(1, 1)], [7])
        with pytest.raises(BadRequest, match="1001 clicks in one prompt is more than the limit of 1000"):
            shot.add_points(1001, 1, [(1, 1)] * 1001, [1] * 1001)
        with pytest.raises(BadRequest, match="'box' must be a flat list"):
            client.request(protocol.ADD_BOX, {"frame": 1001, "obj_id": 1, "box": 5}, session=shot.id)
        with pytest.raises(BadRequest, match="'points' must be numbers"):
            client.request(protocol.ADD_POINTS, {"frame": 1001, "obj_id": 1, "points": [["a", "b"]], "labels": [1]},
                           session=shot.id)
        with pytest.raises(BadRequest, match="x1 > x0"):
            shot.add_box(1001, 1, (5, 5, 1, 1))
        with pytest.raises(BadRequest, match="mask must be 24x32"):
            shot.add_mask(1001, 1, np.ones((5, 5), bool))
        with pytest.raises(BadRequest, match="no object 9"):
            shot.remove_object(9)
        with pytest.raises(BadRequest, match="no object 9"):
            shot.get_shapes(9)
        with pytest.raises(BadRequest, match="missing field 'frame'"):
            client.request(protocol.ADD_POINTS, {"obj_id": 1, "points": [[1, 1]], "labels": [1]}, session=shot.id)
        with pytest.raises(RemoteError, match="unknown request type 'teleport'") as info:
            client.request("teleport")
        assert info.value.code == protocol.E_UNKNOWN_TYPE


def test_box_mask_and_strokes_reach_the_session(fake_worker: InProcessWorker, tmp_path: Path) -> None:
    with _client(fake_worker) as client:
        shot = _open(client, tmp_path)
        assert shot.add_box(1002, 1, (4, 4, 12, 12)).present(1)
        mask = np.zeros((24, 32), bool)
        mask[10:14, 20:24] = True
        update = shot.add_mask(1003, 2, mask, return_masks=True)
        assert update.obj_ids == [1, 2] and update.masks.shape == (2, 24, 32)
        brush = client.request(protocol.ADD_STROKE, {"frame": 1004, "obj_id": 3, "points": [[2, 2], [20, 2]]},
                               session=shot.id)
        assert brush.body["converted_to"] == "points"
        lasso = client.request(protocol.ADD_STROKE, {"frame": 1004, "obj_id": 3, "kind": "lasso",
                                                     "points": [[1, 1], [9, 1], [9, 9], [1, 9]]}, session=shot.id)
        assert lasso.body["converted_to"] == "mask"
        stroke = shot.add_stroke(1005, 1, [(3, 3), (8, 3)], kind="brush", mode="mask", radius=2)
        assert stroke.frame == 1005 and 1 in stroke.obj_ids
        shot.remove_object(2)
        assert shot.obj_ids == [1, 3]
        shot.clear_prompts(1005, 1)
        shot.reset()
        assert shot.obj_ids == []


def test_a_retried_request_runs_once(fake_worker: InProcessWorker, tmp_path: Path) -> None:
    with _client(fake_worker) as client:
        shot = _open(client, tmp_path)
        peer = RawPeer(fake_worker.address, token_of(fake_worker.config.config_dir))
        try:
            body = {"frame": 1001, "obj_id": 1, "points": [[5, 5]], "labels": [1], "clear": False}
            first = codec.decode(peer.request("add_points", body, request_id="same-id", session=shot.id), peer.signer)
            # a resend after a timeout carries a fresh nonce and timestamp but the same request id
            second = codec.decode(peer.request("add_points", body, request_id="same-id", session=shot.id), peer.signer)
            assert first.type == second.type == protocol.REPLY and first.body == second.body
            assert first.nonce != second.nonce
            assert fake_worker.engine.sessions[-1].calls.count("add_points") == 1
        finally:
            peer.close()


def test_the_client_retries_on_a_fresh_socket_until_the_worker_answers(config_dir: Path, tmp_path: Path) -> None:
    # the worker starts only after the client's first attempt has timed out
    address = "tcp://127.0.0.1:%d" % _free_port()
    client = Client(address, token=_token(config_dir), timeout=0.3, retries=20)
    timer = threading.Timer(0.8, lambda: holder.append(start_in_process(config_dir, tmp_path / "s", bind=address)))
    holder: list = []
    timer.start()
    try:
        assert client.hello().model == "fake"
    finally:
        timer.join()
        client.close()
        for worker in holder:
            worker.stop()


def test_an_unreachable_worker_is_a_connection_timeout(config_dir: Path) -> None:
    from samroto.bridge import ConnectionTimeout

    with Client("tcp://127.0.0.1:%d" % _free_port(), token="t" * 64, timeout=0.2, retries=1) as client:
        with pytest.raises(ConnectionTimeout, match="is `samroto worker` running"):
            client.hello()


def test_sessions_persist_across_a_worker_restart(config_dir: Path, tmp_path: Path) -> None:
    sessions = tmp_path / "sessions"
    worker = start_in_process(config_dir, sessions)
    with _client(worker) as client:
        shot = _open(client, tmp_path)
        shot.add_points(1003, 4, [(7, 9)], [1])
        before = {u.frame: u.areas for u in shot.propagate()}
        frame_before = shot.get_frame(1008).mattes.copy()
        logits = shot.frame_result(1008)
        assert logits.mattes.dtype == np.float32 and np.array_equal(logits.mattes > 0, frame_before == 1)
    worker.stop()
    assert worker.result == [0]

    worker = start_in_process(config_dir, sessions)
    try:
        with _client(worker) as client:
            listed = {s["session"]: s for s in client.list_sessions()}
            assert shot.id in listed and listed[shot.id]["loaded"] is False
            assert (listed[shot.id]["first"], listed[shot.id]["last"]) == (1001, 1012)
            again = client.resume_session(shot.id)
            assert again.obj_ids == [4] and again.matte_dir == shot.matte_dir
            assert np.array_equal(again.get_frame(1008).mattes, frame_before)
            after = {u.frame: u.areas for u in again.propagate()}
            assert after == before
            again.close()
            assert {s["session"]: s for s in client.list_sessions()}[shot.id]["loaded"] is False
            client.delete_session(shot.id)
            assert shot.id not in {s["session"] for s in client.list_sessions()}
            assert not (sessions / shot.id).exists()
    finally:
        worker.stop()


def test_stopping_finishes_the_frame_in_flight_and_flushes(config_dir: Path, tmp_path: Path) -> None:
    worker = start_in_process(config_dir, tmp_path / "sessions", delay=0.05)
    with _client(worker) as client:
        shot = _open(client, tmp_path, 1, 300)
        shot.add_points(1, 1, [(5, 5)], [1])
        run = shot.propagate(credit=4)
        next(run)
        saves_before = worker.engine.sessions[-1].saves
        worker.worker.stop()
        with pytest.raises(PropagationCancelled, match="stopping"):
            list(run)
        assert run.state == "cancelled" and "stopping" in (run.reason or "") and run.received < 21
    worker.thread.join(20)
    assert worker.result == [0]
    session = worker.engine.sessions[-1]
    assert session.closed and session.saves > saves_before


def test_pushed_frames_are_stored_in_the_session(fake_worker: InProcessWorker, tmp_path: Path) -> None:
    with _client(fake_worker) as client:
        shot = client.open_session(pushed_plate(1, 3, width=8, height=6))
        assert (shot.first, shot.last, shot.width, shot.height) == (1, 3, 8, 6)
        frames = {f: np.full((6, 8, 3), f, np.uint8) for f in (1, 2, 3)}
        assert shot.push_frames(frames) == [1, 2, 3]
        folder = Path(client.list_sessions()[0]["matte_dir"]).parent / "frames"
        assert np.array_equal(np.load(folder / "2.npy"), frames[2])
        with pytest.raises(BadRequest, match="must be 6x8x3"):
            shot.push_frames({1: np.zeros((6, 8), np.uint8)})
        with pytest.raises(BadRequest, match="outside the plate"):
            shot.push_frames({9: frames[1]})
        file_shot = _open(client, tmp_path)
        with pytest.raises(BadRequest, match="only be pushed to a pushed plate"):
            file_shot.push_frames(frames)


def test_a_full_queue_answers_busy(fake_worker: InProcessWorker) -> None:
    scheduler = Scheduler(fake_worker.worker)  # never started: nothing drains its queue
    msg = codec.Message(type="status", request_id="r")
    for _ in range(fake_worker.config.max_pending_jobs):
        scheduler.submit(Job(b"id", msg))
    with pytest.raises(RequestError, match="queued") as info:
        scheduler.submit(Job(b"id", msg))
    assert info.value.code == protocol.E_BUSY


def test_queued_requests_are_bounded_in_bytes_not_only_in_count(fake_worker: InProcessWorker) -> None:
    scheduler = Scheduler(fake_worker.worker)  # never started: nothing drains its queue
    msg = codec.Message(type="status", request_id="r")
    budget = fake_worker.config.max_queued_bytes
    scheduler.submit(Job(b"id", msg, cost=budget // 2))
    scheduler.submit(Job(b"id", msg, cost=budget // 3))
    with pytest.raises(RequestError, match="queued requests hold") as info:
        scheduler.submit(Job(b"id", msg, cost=budget // 3))  # two jobs in the queue: far from 64
    assert info.value.code == protocol.E_BUSY
    assert scheduler.status()["queued_bytes"] == budget // 2 + budget // 3


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _token(config_dir: Path) -> str:
    from samroto.bridge import auth

    return auth.load_or_create_token(auth.token_path(config_dir))


def test_the_reply_cache_is_bounded_in_entries_and_bytes() -> None:
    from samroto.bridge.worker.server import ReplyCache

    cache = ReplyCache(max_entries=10, max_bytes=1000, max_reply_bytes=300)
    for i in range(50):
        cache.store((b"c", str(i)), [b"x" * 100])
    assert len(cache) == 10 and cache.bytes == 1000 and (b"c", "49") in cache and (b"c", "0") not in cache
    cache.store((b"c", "big"), [b"x" * 301])
    assert (b"c", "big") not in cache
    cache.mark_in_progress((b"c", "pending"))
    assert (b"c", "pending") in cache and cache.get((b"c", "pending")) is None
    for i in range(3):
        cache.store((b"c", "fat%d" % i), [b"y" * 300])
    assert cache.bytes <= 1000


def test_a_non_loopback_bind_requires_curve(config_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from samroto.bridge import ConnectionTimeout, auth

    worker = start_in_process(config_dir, tmp_path / "sessions", bind="tcp://0.0.0.0:0")
    try:
        assert worker.worker.curve and worker.address.startswith("tcp://0.0.0.0:")
        port = worker.address.rsplit(":", 1)[1]
        public = auth.read_server_public_key(config_dir)
        assert public is not None  # created on first start, for clients to copy
        with Client("tcp://127.0.0.1:" + port, curve_server_key=public, timeout=1.0, retries=0) as stranger:
            with pytest.raises(AuthenticationError, match="samroto keys add"):
                stranger.hello()  # this machine's client key is not authorised yet
        auth.add_authorized_key(auth.load_or_create_client_keys(config_dir)[0], "this test")
        with Client("tcp://127.0.0.1:" + port, curve_server_key=public, timeout=5.0) as client:
            assert client.hello().model == "fake"
        with Client("tcp://127.0.0.1:" + port, timeout=0.5, retries=0) as plain:
            with pytest.raises(ConnectionTimeout):
                plain.hello()  # no CURVE handshake, no conversation
        elsewhere = tmp_path / "other-config"
        monkeypatch.setenv("SAMROTO_CONFIG_DIR", str(elsewhere))
        with pytest.raises(AuthenticationError, match="curve/server.key"):
            Client("tcp://10.0.0.1:" + port, token="t" * 64)
    finally:
        worker.stop()


def test_an_unwritable_matte_folder_ends_the_stream_with_a_clear_error(fake_worker: InProcessWorker,
                                                                       tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with _client(fake_worker) as client:
        shot = _open(client, tmp_path)
        shot.add_points(1001, 1, [(5, 5)], [1])
        run = shot.propagate(matte_dir=str(blocker / "mattes"))
        with pytest.raises(BadRequest, match="a_file"):
            list(run)
        assert run.state == "error"
        updates = list(shot.propagate(write_mattes=False))
        assert len(updates) == 12 and all(not u.matte_paths for u in updates)


def test_memory_modes_are_offered_in_hello_and_taken_by_open_session(fake_worker: InProcessWorker,
                                                                     tmp_path: Path) -> None:
    from samroto.core.memory_modes import explanations

    with _client(fake_worker) as client:
        modes = client.hello().memory_modes()
        assert modes == explanations() and list(modes)[0] == "sam2" and "presence" in modes
        with pytest.raises(BadRequest, match="unknown memory_mode 'nope'; valid: sam2, presence"):
            client.open_session("fake:plate", 1001, 1012, memory_mode="nope")
        session = client.open_session("fake:plate", 1001, 1012, matte_dir=str(tmp_path / "m"), memory_mode="presence")
        assert session.info["memory_mode"] == "presence"
        assert fake_worker.engine.sessions[-1].created_with == {"memory_mode": "presence"}
        listed = {s["session"]: s for s in client.list_sessions()}
        assert listed[session.id]["memory_mode"] == "presence"
        default = _open(client, tmp_path)
        assert default.info["memory_mode"] == "sam2"
        assert fake_worker.engine.sessions[-1].created_with == {}  # exact SAM 2 needs no option
