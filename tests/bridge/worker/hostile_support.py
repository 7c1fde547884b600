"""Tools for the hostile-client suite: a real worker process, its memory (VmHWM), a well-behaved
client working alongside an attack, and raw peers that speak the wire format badly on purpose."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Optional

import zmq

from samroto.bridge import Client, auth, codec, protocol

from ..bridge_support import WorkerProcess, token_of

MB = 2 ** 20


def proc_status(pid: int, field_name: str) -> int:
    """A `/proc/<pid>/status` size field (VmRSS, VmHWM, Threads...) in bytes (kB fields) or as a count."""
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            name, _, value = line.partition(":")
            if name == field_name:
                parts = value.split()
                return int(parts[0]) * 1024 if len(parts) > 1 and parts[1] == "kB" else int(parts[0])
    raise AssertionError("no %s in /proc/%d/status" % (field_name, pid))


def reset_peak(pid: int) -> None:
    """Make VmHWM start again from the current RSS (Linux: write 5 to clear_refs)."""
    with open("/proc/%d/clear_refs" % pid, "w") as handle:
        handle.write("5")


def open_fds(pid: int) -> int:
    return len(os.listdir("/proc/%d/fd" % pid))


class WellBehavedClient:
    """A client that keeps prompting its own session while an attack runs: every round trip
    goes through the worker's I/O thread and its compute thread. Records each latency."""

    def __init__(self, worker: WorkerProcess, plate: str, *, timeout: float = 10.0) -> None:
        self.client = Client(worker.address, token=token_of(worker.config_dir), timeout=timeout, retries=0)
        self.shot = self.client.open_session(plate)
        self.latencies: List[float] = []
        self.errors: List[BaseException] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _run(self) -> None:
        x = 10
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.client.ping()
                self.shot.add_points(self.shot.first, 1, [(x, 20)], [1])
            except BaseException as exc:  # noqa: BLE001 - every failure is a finding
                self.errors.append(exc)
                return
            self.latencies.append(time.monotonic() - started)
            x = 10 + (x + 7) % 100
            self._stop.wait(0.05)

    def __enter__(self) -> "WellBehavedClient":
        self._stop.clear()
        self.latencies, self.errors = [], []
        self._thread = threading.Thread(target=self._run, name="well-behaved", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)

    @property
    def worst(self) -> float:
        return max(self.latencies) if self.latencies else float("nan")

    def close(self) -> None:
        self.client.close()


@dataclass
class Measurement:
    growth_bytes: int          # VmHWM during the attack minus VmRSS before it
    worst_latency_s: float     # the well-behaved client's slowest round trip meanwhile
    rounds: int                # its round trips meanwhile
    errors: List[BaseException] = field(default_factory=list)
    result: Any = None

    def describe(self) -> str:
        return "RSS +%.1f MB, other client's worst round trip %.2f s over %d rounds" % (
            self.growth_bytes / MB, self.worst_latency_s, self.rounds)


def measure(worker: WorkerProcess, probe: WellBehavedClient, attack: Callable[[], Any], *,
            settle_s: float = 0.3) -> Measurement:
    """Run `attack` against the worker while `probe` works; peak memory growth and latency."""
    pid = worker.process.pid
    reset_peak(pid)
    before = proc_status(pid, "VmRSS")
    with probe:
        result = attack()
        time.sleep(settle_s)  # the worker may still be chewing on what it was sent
        rounds_before = len(probe.latencies)
        deadline = time.monotonic() + 30
        while len(probe.latencies) < rounds_before + 1 and not probe.errors and time.monotonic() < deadline:
            time.sleep(0.05)  # at least one full round after the attack: the worker still serves
    peak = proc_status(pid, "VmHWM")
    return Measurement(peak - before, probe.worst, len(probe.latencies), list(probe.errors), result)


class RawPeer:
    """A DEALER that sends whatever it is given (signed with `token` when given) and returns
    the replies. `credentials`: "token" (the right handshake), "none" or "wrong"."""

    def __init__(self, address: str, token: Optional[str], *, credentials: str = "token",
                 identity: Optional[bytes] = None, config_dir: Optional[Path] = None) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        if identity is not None:
            self.socket.setsockopt(zmq.ROUTING_ID, identity)
        if credentials == "token":
            assert token is not None
            auth.configure_client_socket(self.socket, token, config_dir=config_dir)
        elif credentials == "wrong":
            auth.configure_client_socket(self.socket, "w" * 64)
        self.socket.connect(address)
        self.signer = codec.Signer(token) if token else None
        self.epoch: Optional[str] = None

    def send_parts(self, parts: list) -> None:
        self.socket.send_multipart(parts, copy=False)

    def request(self, mtype: str, body: Optional[dict] = None, *, session: Optional[str] = None,
                arrays: Optional[dict] = None, timeout: float = 10.0, **header: Any) -> Optional[codec.Message]:
        assert self.signer is not None
        if self.epoch is None and mtype != protocol.HELLO:
            hello = self.request(protocol.HELLO, {}, timeout=timeout)
            assert hello is not None, "no answer to hello"
            self.epoch = hello.body["epoch"]
        header.setdefault("epoch", None if mtype == protocol.HELLO else self.epoch)
        parts = codec.encode(self.signer, mtype, body=body, session=session, arrays=arrays, **header)
        self.send_parts(parts)
        return self.receive(timeout)

    def receive(self, timeout: float = 10.0) -> Optional[codec.Message]:
        if not self.socket.poll(int(timeout * 1000)):
            return None
        parts = self.socket.recv_multipart()
        return codec.decode(parts, self.signer if parts[0] else None, check_version=False)

    def close(self) -> None:
        self.socket.close(linger=0)


# --- a small real plate -------------------------------------------------------------------------

FIRST, LAST = 1001, 1012
HEIGHT, WIDTH = 120, 160


def make_plate(folder: Path) -> str:
    """12 frames of 160x120 from the reference clip, numbered from 1001 (`shot.####.png`)."""
    import cv2
    import numpy as np

    from ..bridge_support import REPO

    frames = np.load(REPO / "tests" / "fixtures" / "sam2_reference" / "video_frames.npy")
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames[: LAST - FIRST + 1]):
        small = cv2.resize(frame, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"shot.{FIRST + i:04d}.png"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    return str(folder / "shot.####.png")


def empty_arrays_body(size: int, *, per_array: int = 1_000_000) -> bytes:
    """A msgpack body of about `size` bytes `{"x": [[[], [], ...], ...]}`: one byte per empty array
    on the wire (in lists of `per_array`, the longest list msgpack is allowed to decode)."""
    import struct

    chunks = max(1, size // (per_array + 5))
    inner = b"\xdd" + struct.pack(">I", per_array) + b"\x90" * per_array
    return b"\x81\xa1x\xdd" + struct.pack(">I", chunks) + inner * chunks


def sign_raw(token: str, header: bytes, body: bytes, *buffers: bytes) -> list:
    """Parts of a message with a hand-made body, signed with `token`."""
    parts = [header, body, *buffers]
    return [codec.Signer(token).sign(parts)] + parts
