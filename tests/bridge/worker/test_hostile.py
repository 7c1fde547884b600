"""The worker against hostile and broken clients, on a real worker process (micro checkpoint).

Each test runs an attack of one class while a well-behaved client keeps prompting its own session,
and checks: the worker's peak memory (VmHWM) grew by less than 256 MB, the other client was served
throughout (its requests have a 10 s timeout and no retries: a stuck worker fails them), the attack
was refused with a clear error code, and the worker serves afterwards. `scripts/hostile_figures.py`
prints the same figures as numbers.
"""

from __future__ import annotations

import math
import os
import stat
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import zmq

from samroto.bridge import AuthenticationError, BadRequest, Client, PropagationCancelled, auth, codec, protocol
from samroto.bridge.client import LimitReached

from ..bridge_support import WorkerProcess, running_worker, token_of, wait_until
from .hostile_support import (FIRST, HEIGHT, LAST, MB, WIDTH, RawPeer, WellBehavedClient, empty_arrays_body,
                              make_plate, measure)

GROWTH_LIMIT = 256 * MB
MAX_OBJECTS = 6


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="module")
def plate(root: Path) -> str:
    return make_plate(root / "plate")


@pytest.fixture(scope="module")
def worker(root: Path) -> Iterator[WorkerProcess]:
    (root / "shared").mkdir()
    (root / "w").mkdir()
    with running_worker(root / "w", "--max-objects", str(MAX_OBJECTS), "--read-root", str(root / "shared")) as process:
        yield process


@pytest.fixture(scope="module")
def probe(worker: WorkerProcess, plate: str) -> Iterator[WellBehavedClient]:
    client = WellBehavedClient(worker, plate)
    try:
        yield client
    finally:
        client.close()


def connect(worker: WorkerProcess, **kwargs) -> Client:
    return Client(worker.address, token=token_of(worker.config_dir), timeout=kwargs.pop("timeout", 30.0), **kwargs)


def held(m, worker: WorkerProcess) -> None:
    """The class's pass criteria, shared by every test."""
    assert not m.errors, "the well-behaved client failed during the attack: %r" % m.errors
    assert m.rounds > 0, "the well-behaved client got nothing done during the attack"
    assert m.growth_bytes < GROWTH_LIMIT, m.describe()
    assert worker.process.poll() is None, "the worker died:\n" + worker.log()[-3000:]


def refused(call, kind=BadRequest, match: str | None = None):
    def attack():
        with pytest.raises(kind, match=match) as info:
            call()
        return info.value
    return attack


def sidecar(objects: list) -> dict:
    return {"format": "samroto.sidecar", "version": 1, "shot": {"plate": "x.####.png"}, "objects": objects}


# --- 1. memory sized by the client ------------------------------------------------------------


def test_sizes_in_a_request_are_checked_before_anything_is_allocated(worker, probe, plate) -> None:
    with connect(worker) as client:
        shot = client.open_session(plate)
        shot.add_points(FIRST, 1, [(80, 60)], [1])
        bomb = sidecar([{"obj_id": 1, "prompts": [{"frame": FIRST, "mask": {
            "height": 40000, "width": 40000, "counts": [40000 * 40000]}}]}])
        attacks = {
            "40000x40000 RLE mask": refused(lambda: shot.import_prompts(bomb), LimitReached, "larger than the limit"),
            "20 million frames to open": refused(lambda: client.open_session(plate, 0, 20_000_000), LimitReached,
                                                 "frames"),
            "20 million frames to write": refused(
                lambda: shot.client.request(protocol.WRITE_MATTES, {"first": FIRST, "last": 20_000_000},
                                            session=shot.id), BadRequest, "outside the plate"),
            "a million-frame pushed plate of 65536 px": refused(
                lambda: client.open_session({"kind": "pushed", "first": 0, "last": 999_999, "width": 65536,
                                             "height": 65536}), LimitReached),
        }
        for name, attack in attacks.items():
            m = measure(worker, probe, attack)
            held(m, worker)
            print(name, m.describe())
        assert shot.get_frame(FIRST).obj_ids == [1]


def test_a_small_body_cannot_decode_into_gigabytes(worker, probe) -> None:
    token = token_of(worker.config_dir)
    peer = RawPeer(worker.address, token)
    try:
        peer.request(protocol.PING)  # learn the epoch
        body = empty_arrays_body(protocol.DEFAULT_LIMITS.max_body_bytes - 16)
        headers = [codec.encode(peer.signer, protocol.STATUS, epoch=peer.epoch)[1] for _ in range(3)]

        def attack() -> list:
            for header in headers:  # queued copies must not multiply it
                peer.send_parts([peer.signer.sign([header, body]), header, body])
            return [peer.receive(30) for _ in headers]

        m = measure(worker, probe, attack)
        held(m, worker)
        replies = m.result
        assert replies[0] is not None and replies[0].body["code"] == protocol.E_TOO_LARGE, replies[0]
        assert "maps and arrays" in replies[0].body["message"]
    finally:
        peer.close()


# --- 2. before authentication -----------------------------------------------------------------


@pytest.mark.parametrize("credentials", ["none", "wrong"])
def test_a_peer_without_the_token_cannot_make_the_worker_hold_its_messages(worker, probe, credentials) -> None:
    peer = RawPeer(worker.address, None, credentials=credentials)
    junk = b"\0" * (32 * MB)

    def attack() -> object:
        for _ in range(4):
            try:  # a DEALER with no accepted connection has nowhere to send: it would block
                peer.socket.send_multipart([b"", b"h", b"b"] + [junk] * 8, copy=False, flags=zmq.NOBLOCK)
            except zmq.Again:
                pass
            time.sleep(0.2)
        return peer.socket.poll(1000)

    try:
        m = measure(worker, probe, attack)
    finally:
        peer.close()
    held(m, worker)
    assert m.growth_bytes < 32 * MB, m.describe()  # 1 GB was sent: none of it was held
    assert not m.result, "an unauthenticated peer got an answer"


def test_a_network_worker_accepts_only_authorised_client_keys(tmp_path: Path, config_dir: Path) -> None:
    from samroto.scripts.cli import main

    from ..bridge_support import start_in_process

    handle = start_in_process(config_dir, tmp_path / "sessions", bind="tcp://0.0.0.0:0")
    try:
        port = handle.address.rsplit(":", 1)[1]
        server_key = auth.read_server_public_key(config_dir)
        client_config = tmp_path / "client"
        (client_config).mkdir()
        token = auth.read_token(auth.token_path(config_dir))
        stranger = Client("tcp://127.0.0.1:%s" % port, token=token, timeout=1.5, retries=0,
                          curve_server_key=server_key, config_dir=client_config)
        with pytest.raises(AuthenticationError, match="samroto keys add"):
            stranger.ping()  # refused at the handshake, before any message
        public = auth.load_or_create_client_keys(client_config)[0]
        assert main(["keys", "add", public.decode(), "--comment", "test client"]) == 0
        assert stat.S_IMODE(auth.authorized_keys_path(config_dir).stat().st_mode) == 0o600
        stranger.close()
        with Client("tcp://127.0.0.1:%s" % port, token=token, timeout=10, curve_server_key=server_key,
                    config_dir=client_config) as friend:
            assert friend.ping()
    finally:
        handle.stop()


# --- 3. a stuck compute thread ----------------------------------------------------------------


def test_plates_and_mask_files_must_be_regular_files(worker, probe, root: Path) -> None:
    fifo_plate = root / "fifo_plate"
    fifo_plate.mkdir()
    os.mkfifo(fifo_plate / "f.0001.png")
    os.mkfifo(root / "shared" / "mask_fifo.png")
    with connect(worker) as client:
        m = measure(worker, probe, refused(lambda: client.open_session(str(fifo_plate / "f.####.png")),
                                           BadRequest, "not a regular file"))
        held(m, worker)
        shot = client.open_session(probe.shot.info["plate"])
        mask_fifo = sidecar([{"obj_id": 1, "prompts": [{"frame": FIRST,
                                                        "mask": {"file": str(root / "shared" / "mask_fifo.png")}}]}])
        m = measure(worker, probe, refused(lambda: shot.import_prompts(mask_fifo), BadRequest, "not a regular file"))
        held(m, worker)


def test_every_way_of_prompting_shares_the_same_limits(worker, probe, plate) -> None:
    many = [[float(i % WIDTH), float(i % HEIGHT)] for i in range(100_000)]
    with connect(worker) as client:
        shot = client.open_session(plate)
        clicks = sidecar([{"obj_id": 1, "prompts": [{"frame": FIRST, "points": many, "labels": [1] * len(many)}]}])
        entries = sidecar([{"obj_id": 1, "prompts": [{"frame": FIRST + (i % 12), "points": [[1, 1]], "labels": [1]}
                                                     for i in range(2001)]}])
        for attack in (refused(lambda: shot.import_prompts(clicks), LimitReached, "clicks"),
                       refused(lambda: shot.import_prompts(entries), LimitReached, "prompts"),
                       refused(lambda: shot.add_points(FIRST, 1, many[:1001], [1] * 1001), LimitReached, "clicks")):
            m = measure(worker, probe, attack)
            held(m, worker)
            assert m.worst_latency_s < 10


# --- 4. replays -------------------------------------------------------------------------------


def test_after_a_restart_old_messages_are_refused_and_stale_temporaries_are_gone(tmp_path: Path,
                                                                                 config_dir: Path) -> None:
    """Replay across a restart (class 4) and temporary files a killed writer left (class 7), with one
    restart of an in-process worker on the same folders."""
    from ..bridge_support import start_in_process

    first = start_in_process(config_dir, tmp_path / "sessions")
    token = auth.read_token(auth.token_path(config_dir))
    try:
        with Client(first.address, token=token, timeout=10) as client:
            shot = client.open_session("fake:plate", matte_dir=str(tmp_path / "mattes"))
            shot.add_points(FIRST, 1, [(5, 5)], [1])
        peer = RawPeer(first.address, token)
        peer.request(protocol.PING)
        captured = codec.encode(peer.signer, protocol.DELETE_SESSION, body={"session": shot.id}, epoch=peer.epoch)
        peer.close()
    finally:
        first.stop()
    (tmp_path / "mattes").mkdir(exist_ok=True)
    leftovers = [tmp_path / "mattes" / ".shot_obj1_matte.1001.exr.0123abcd.tmp",
                 tmp_path / "sessions" / shot.id / ".session.json.89abcdef.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    keep = tmp_path / "mattes" / "notes.tmp"
    keep.write_text("not ours")
    second = start_in_process(config_dir, tmp_path / "sessions")
    try:
        assert not any(p.exists() for p in leftovers)  # removed before the worker listened
        assert keep.exists()
        peer = RawPeer(second.address, token)
        peer.send_parts(captured)
        reply = peer.receive(10)
        peer.close()
        assert reply is not None and reply.body["code"] == protocol.E_EPOCH, reply
        with Client(second.address, token=token, timeout=10) as client:
            assert shot.id in [s["session"] for s in client.list_sessions()]  # nothing was deleted
    finally:
        second.stop()


def test_replays_and_skewed_clocks_are_refused_on_a_real_worker(worker, probe) -> None:
    peer = RawPeer(worker.address, token_of(worker.config_dir))
    try:
        peer.request(protocol.PING)

        def attack() -> list:
            parts = codec.encode(peer.signer, protocol.PING, epoch=peer.epoch)
            codes = []
            for message in (parts, parts,  # the second is a replay
                            codec.encode(peer.signer, protocol.PING, epoch="0" * 32),  # another run's epoch
                            codec.encode(peer.signer, protocol.PING, epoch=peer.epoch, timestamp=time.time() + 900)):
                peer.send_parts(message)
                reply = peer.receive(10)
                codes.append(reply.body.get("code", "reply") if reply is not None else None)
            for _ in range(500):  # a fast clock inside the window: only this client's own state
                peer.send_parts(codec.encode(peer.signer, protocol.PING, epoch=peer.epoch,
                                             timestamp=time.time() + 290))
            return codes + [sum(peer.receive(10) is not None for _ in range(500))]

        m = measure(worker, probe, attack)
        held(m, worker)
        assert m.result == ["reply", protocol.E_REPLAY, protocol.E_EPOCH, protocol.E_REPLAY, 500], m.result
    finally:
        peer.close()


def test_a_client_with_a_fast_clock_locks_out_no_one(tmp_path: Path, config_dir: Path) -> None:
    import dataclasses

    from ..bridge_support import start_in_process

    limits = dataclasses.replace(protocol.DEFAULT_LIMITS, max_remembered_nonces=300)
    handle = start_in_process(config_dir, tmp_path / "sessions", limits=limits)
    token = auth.read_token(auth.token_path(config_dir))
    try:
        fast = RawPeer(handle.address, token)
        fast.request(protocol.PING)
        for _ in range(1000):  # more than the cache holds: it evicts, and the floor moves
            parts = codec.encode(fast.signer, protocol.PING, epoch=fast.epoch, timestamp=time.time() + 290)
            fast.send_parts(parts)
        for _ in range(1000):
            assert fast.receive(10) is not None
        too_fast = fast.request(protocol.PING, timestamp=time.time() + 900)
        assert too_fast is not None and too_fast.body["code"] == protocol.E_REPLAY
        assert "ahead of the worker's clock" in too_fast.body["message"]
        fast.close()
        with Client(handle.address, token=token, timeout=5, retries=0) as honest:
            assert honest.ping() and honest.status()["queued"] == 0
    finally:
        handle.stop()


# --- 5. caps that count everything -------------------------------------------------------------


def test_objects_per_session_are_capped(worker, probe, plate) -> None:
    with connect(worker) as client:
        shot = client.open_session(plate)
        for obj in range(1, MAX_OBJECTS + 1):
            shot.add_points(FIRST, obj, [(10 * obj, 20)], [1])

        def attack() -> None:
            for obj in range(MAX_OBJECTS + 1, MAX_OBJECTS + 300):
                with pytest.raises(LimitReached, match="objects"):
                    shot.add_points(FIRST, obj, [(10, 20)], [1])
            seven = sidecar([{"obj_id": o, "prompts": [{"frame": FIRST, "points": [[5, 5]], "labels": [1]}]}
                             for o in range(100, 100 + MAX_OBJECTS + 1)])
            with pytest.raises(LimitReached, match="objects"):
                shot.import_prompts(seven)

        m = measure(worker, probe, attack)
        held(m, worker)
        assert len(shot.get_frame(FIRST).obj_ids) == MAX_OBJECTS


def test_sessions_waiting_for_credit_count_against_the_loaded_cap(tmp_path: Path, config_dir: Path) -> None:
    from ..bridge_support import start_in_process

    handle = start_in_process(config_dir, tmp_path / "sessions", max_loaded_sessions=2, keepalive_interval_s=0.2)
    token = auth.read_token(auth.token_path(config_dir))
    try:
        with Client(handle.address, token=token, timeout=10) as client:
            streams = []
            for i in range(5):
                shot = client.open_session("fake:plate_%d" % i, 1, 40)
                shot.add_points(1, 1, [(5, 5)], [1])
                run = shot.propagate(credit=1)  # one frame, then it waits for credit that never comes
                next(run)
                streams.append(run)
                status = client.status()
                assert len(status["loaded_sessions"]) <= 2, status
            reasons = []
            for run in streams:
                try:
                    list(run)
                except PropagationCancelled as exc:  # ended by the worker, not by this client
                    reasons.append(exc.reason)
            assert reasons and all("loaded" in reason for reason in reasons), reasons
    finally:
        handle.stop()


def test_mask_files_are_read_only_from_allowed_folders_and_errors_reveal_nothing(worker, probe, plate,
                                                                                root: Path) -> None:
    inside = root / "shared" / "mask.png"
    import cv2

    cv2.imwrite(str(inside), np.full((HEIGHT, WIDTH), 255, np.uint8))
    with connect(worker) as client:
        shot = client.open_session(plate)
        messages = []
        for path in ("/etc/hostname", "/nonexistent/mask.png", str(root / "plate" / ".." / ".." / "x.png")):
            with pytest.raises(BadRequest) as info:
                shot.import_prompts(sidecar([{"obj_id": 1, "prompts": [{"frame": FIRST, "mask": {"file": path}}]}]))
            messages.append(info.value.message.replace(path, "<path>"))
        assert len(set(messages)) == 1 and "read-root" in messages[0], messages
        assert shot.import_prompts(sidecar([{"obj_id": 1, "prompts": [{"frame": FIRST,
                                                                       "mask": {"file": str(inside)}}]}])) == [1]


# --- 6. identity ------------------------------------------------------------------------------


def test_a_peer_without_the_token_cannot_take_over_a_clients_routing_id(worker, probe) -> None:
    with connect(worker, timeout=10, retries=0) as client:
        client.ping()

        def attack() -> list:
            impostor = RawPeer(worker.address, None, credentials="wrong", identity=client._identity)
            try:
                try:
                    impostor.socket.send_multipart([b"", b"h", b"b"], flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass
                time.sleep(0.5)
                return [client.ping() for _ in range(3)]  # still ours: answers still reach this client
            finally:
                impostor.close()

        m = measure(worker, probe, attack)
        held(m, worker)
        assert m.result == [True, True, True]


# --- 7. smaller --------------------------------------------------------------------------------


def test_session_folders_are_private_and_requests_with_nonsense_are_refused(worker, plate) -> None:
    with connect(worker) as client:
        shot = client.open_session(plate)
        folder = Path(worker.session_dir) / shot.id
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        shot.add_points(FIRST, 1, [(80, 60)], [1])
        with pytest.raises(BadRequest, match="after"):
            client.request(protocol.WRITE_MATTES, {"first": LAST, "last": FIRST}, session=shot.id)
        with pytest.raises(BadRequest, match="float32"):
            client.request(protocol.ADD_MASK, {"frame": FIRST, "obj_id": 2},
                           arrays={"mask": np.ones((HEIGHT, WIDTH), np.float32)}, session=shot.id)
        for aspect in (0, -1, math.nan, math.inf):
            with pytest.raises(BadRequest, match="pixel_aspect"):
                client.request(protocol.GET_SHAPES, {"obj_id": 1, "pixel_aspect": aspect}, session=shot.id)
        assert shot.get_shapes(1)["frames"] == [FIRST]


def test_stop_is_honoured_within_seconds_while_a_request_is_stuck(tmp_path: Path, config_dir: Path) -> None:
    import threading

    from samroto.bridge.worker.server import EXIT_STUCK

    from ..bridge_support import start_in_process

    handle = start_in_process(config_dir, tmp_path / "sessions", stop_grace_s=1.0)
    token = auth.read_token(auth.token_path(config_dir))
    try:
        with Client(handle.address, token=token, timeout=10) as client:
            shot = client.open_session("fake:plate")
            shot.add_points(FIRST, 1, [(5, 5)], [1])
        session = handle.engine.sessions[0]
        saves = session.saves
        stuck = Client(handle.address, token=token, timeout=30, retries=0)

        def open_stuck_plate() -> None:
            try:
                stuck.open_session("fake:stuck")  # a read that never returns
            except Exception:
                pass  # refused as the worker stops, or no answer: either way the request never finished

        threading.Thread(target=open_stuck_plate, daemon=True).start()
        wait_until(lambda: handle.worker.scheduler.busy_with == protocol.OPEN_SESSION, what="the stuck request")
        handle.worker.stop()
        handle.thread.join(15)  # well before the stuck request would ever end
        assert not handle.thread.is_alive(), "stop was not honoured while a request was stuck"
        assert handle.result == [EXIT_STUCK]
        assert session.saves > saves  # the session the stuck request does not hold was saved
    finally:
        handle.engine.unstick.set()
        stuck.close()
