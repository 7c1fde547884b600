"""Fuzzing a real worker: thousands of malformed, truncated, unsigned, replayed and oversized
messages must neither crash nor block it, nor make its memory grow."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Iterator

import msgpack
import psutil
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from samroto.bridge import Client, auth, codec, protocol

from ..bridge_support import WorkerProcess, running_worker, token_of
from .test_worker_process import FIRST, LAST, make_plate

MAX_MESSAGE_MB = 1
# requests with side effects beyond the session under test (writing files elsewhere, deleting)
SKIPPED_TYPES = {protocol.PROPAGATE, protocol.WRITE_MATTES, protocol.DELETE_SESSION, protocol.CLOSE,
                 protocol.RESET, protocol.PUSH_FRAMES}
FUZZ_TYPES = sorted(set(protocol.REQUEST_TYPES) - SKIPPED_TYPES) + ["", "x" * 64, "propagate2", "\u2603"]
FIELDS = ["frame", "obj_id", "points", "labels", "box", "clear", "kind", "mode", "radius", "label", "request", "n",
          "plate", "resume", "first", "last", "what", "frames", "preview_size", "credit", "direction", "start",
          "return_masks", "protocol", "session", "buffers", "view", "name", "matte_format"]


@pytest.fixture(scope="module")
def fuzz_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    with running_worker(tmp_path_factory.mktemp("fuzz"), "--max-message-mb", str(MAX_MESSAGE_MB)) as process:
        yield process


class Peer:
    """A raw DEALER that sends whatever it is given and counts the worker's refusals."""

    def __init__(self, address: str, token: str) -> None:
        self.signer = codec.Signer(token)
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDHWM, 100_000)
        auth.configure_client_socket(self.socket, token)  # the handshake a client with the token makes
        self.socket.connect(address)
        self.replies = 0
        self.codes: dict[str, int] = {}

    def send(self, parts: list) -> None:
        self.socket.send_multipart(parts)
        self.drain()

    def drain(self, wait_ms: int = 0) -> None:
        while self.socket.poll(wait_ms):
            wait_ms = 0
            parts = self.socket.recv_multipart()
            self.replies += 1
            try:
                msg = codec.decode(parts, None, check_version=False)
            except codec.ProtocolError:
                continue
            if msg.type == protocol.ERROR:
                code = str(msg.body.get("code"))
                self.codes[code] = self.codes.get(code, 0) + 1

    def close(self) -> None:
        self.socket.close(0)


values = st.recursive(
    st.none() | st.booleans() | st.integers(-2 ** 40, 2 ** 40) | st.floats() | st.text(max_size=12)
    | st.binary(max_size=12) | st.sampled_from([1001, 1006, 1012, 0, -1, 1, 2 ** 31]),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)


@st.composite
def messages(draw, signer: codec.Signer, session_id: str, captured: list, epoch: str) -> list:
    kind = draw(st.sampled_from(["garbage", "unsigned", "bad_signature", "truncated", "resigned_truncated",
                                 "replayed", "stale", "oversized_header", "too_many_parts", "bad_buffers",
                                 "signed_request", "signed_request", "signed_request", "raw_header"]))
    if kind == "garbage":
        return draw(st.lists(st.binary(max_size=300), min_size=1, max_size=6))
    mtype = draw(st.sampled_from(FUZZ_TYPES))
    session = draw(st.sampled_from([None, session_id, "nope", "../x", ""]))
    body = draw(st.dictionaries(st.sampled_from(FIELDS), values, max_size=6))
    body.pop("buffers", None)
    try:
        parts = [bytes(p) for p in codec.encode(signer, mtype, body=body, session=session or None,
                                                epoch=draw(st.sampled_from([epoch, epoch, epoch, None, "stale"])))]
    except (TypeError, ValueError, OverflowError):
        return [b"x"]
    if kind == "unsigned":
        return [b""] + parts[1:]
    if kind == "bad_signature":
        return [draw(st.binary(min_size=32, max_size=32))] + parts[1:]
    if kind == "truncated":
        cut = draw(st.integers(0, max(0, len(parts[2]) - 1)))
        return parts[:2] + [parts[2][:cut]]
    if kind == "resigned_truncated":
        which = draw(st.sampled_from([1, 2]))
        parts[which] = parts[which][: draw(st.integers(0, max(0, len(parts[which]) - 1)))]
        return [signer.sign(parts[1:])] + parts[1:]
    if kind == "replayed":
        if not captured:
            captured.append(parts)
        return captured[0]
    if kind == "stale":
        old = codec.encode(signer, mtype, body=body, timestamp=time.time() - draw(st.floats(301, 1e9)), epoch=epoch)
        return [bytes(p) for p in old]
    if kind == "oversized_header":
        header = msgpack.packb({"v": [1, 0], "type": mtype, "id": "x" * 5000, "ts": time.time(),
                                "nonce": os.urandom(16)})
        return [signer.sign([header, parts[2]]), header, parts[2]]
    if kind == "too_many_parts":
        extra = [b"p"] * draw(st.integers(protocol.DEFAULT_LIMITS.max_parts, 40))
        return [signer.sign(parts[1:] + extra)] + parts[1:] + extra
    if kind == "bad_buffers":
        desc = draw(st.lists(st.dictionaries(st.sampled_from(["name", "dtype", "shape"]), values, max_size=3),
                             max_size=3))
        bufs = draw(st.lists(st.binary(max_size=64), max_size=3))
        rest = [parts[1], msgpack.packb(dict(body, buffers=desc), use_bin_type=True)] + bufs
        return [signer.sign(rest)] + rest
    if kind == "raw_header":
        header = draw(st.dictionaries(st.sampled_from(["v", "type", "id", "re", "session", "ts", "nonce"]), values,
                                      max_size=7))
        try:
            rest = [msgpack.packb(header, use_bin_type=True), parts[2]]
        except (TypeError, ValueError, OverflowError):
            return [b"y"]
        return [signer.sign(rest)] + rest
    return parts  # a validly signed request with arbitrary fields


def _rss(process: psutil.Process) -> int:
    return process.memory_info().rss


def _valid_round(worker: WorkerProcess, plate: str, tmp_path: Path, name: str) -> None:
    with Client(worker.address, token=token_of(worker.config_dir), timeout=30.0) as client:
        assert client.hello().protocol == protocol.version_string()
        shot = client.open_session(plate, name=name, matte_dir=str(tmp_path / name))
        shot.add_points(1001, 1, [(80, 60)], [1])
        assert [u.frame for u in shot.propagate()] == list(range(FIRST, LAST + 1))
        client.delete_session(shot.id)


def test_fuzzing_neither_crashes_blocks_nor_grows_the_worker(fuzz_worker: WorkerProcess, tmp_path: Path) -> None:
    plate = make_plate(tmp_path / "plate")
    worker_process = psutil.Process(fuzz_worker.process.pid)
    token = token_of(fuzz_worker.config_dir)
    with Client(fuzz_worker.address, token=token, timeout=30.0) as client:
        epoch = client.hello().raw["epoch"]
        target = client.open_session(plate, matte_dir=str(tmp_path / "target"))
        target.add_points(1001, 1, [(80, 60)], [1])
    peer = Peer(fuzz_worker.address, token)
    captured: list = []
    sent = {"n": 0}

    @settings(max_examples=1000, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(message=messages(peer.signer, target.id, captured, epoch))
    def fuzz(message: list) -> None:
        peer.send(message)
        sent["n"] += 1

    rng = random.Random(1234)

    def garbage(count: int) -> None:
        for _ in range(count):
            parts = [rng.randbytes(rng.choice([0, 1, 31, 32, 33, 200, 4097])) for _ in range(rng.randint(1, 5))]
            peer.send(parts)
            sent["n"] += 1

    def oversized(count: int) -> None:
        # over MAXMSGSIZE: ZeroMQ drops the connection without reading the payload into memory
        for _ in range(count):
            peer.send([b"s" * 32, b"h", b"b" * (MAX_MESSAGE_MB * 2 ** 20 + 1)])
            sent["n"] += 1

    try:
        # warm up every path once, so caches and allocator pools are at their working size
        garbage(500)
        fuzz()
        _valid_round(fuzz_worker, plate, tmp_path, "warm")
        peer.drain(500)
        baseline = _rss(worker_process)

        fuzz()
        garbage(3000)
        oversized(20)
        garbage(500)
        peer.drain(1000)
        assert fuzz_worker.process.poll() is None, "the worker died:\n" + fuzz_worker.log()
        _valid_round(fuzz_worker, plate, tmp_path, "after")
        grown = _rss(worker_process) - baseline
    finally:
        peer.close()

    assert sent["n"] >= 6000
    # refusals came back for the kinds of damage that allow a reply
    for code in (protocol.E_AUTH, protocol.E_MALFORMED, protocol.E_REPLAY, protocol.E_TOO_LARGE, protocol.E_EPOCH):
        assert peer.codes.get(code, 0) > 0, (code, peer.codes)
    assert grown < 16 * 2 ** 20, f"worker RSS grew by {grown / 2 ** 20:.1f} MiB while fuzzed"
    print(f"fuzz: {sent['n']} messages, {peer.replies} replies, codes {peer.codes}, RSS change "
          f"{grown / 2 ** 20:+.1f} MiB")
