"""Print, for each class of hostile-client attack, what it does to a real worker process: its peak
memory growth (VmHWM), the worst round trip of a well-behaved client working meanwhile, and the
outcome. Runs against whichever samroto is importable, so the same script measures a tree before
and after a change (it speaks both the 1.0 and the 1.1 handshake):

    python tests/bridge/worker/hostile_figures.py                     # this tree
    PYTHONPATH=/path/to/old/pkg python tests/bridge/worker/hostile_figures.py

Prints numbers only; the assertions live in test_hostile.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import numpy as np
import zmq

from samroto.bridge import Client, auth, codec, protocol

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "sam2_reference"
MB = 2 ** 20
FIRST, LAST, HEIGHT, WIDTH = 1001, 1012, 120, 160
NEW = hasattr(auth, "configure_client_socket")  # the 1.1 handshake and epoch


def status_field(pid: int, name: str) -> int:
    for line in open("/proc/%d/status" % pid):
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0]) * (1024 if "kB" in value else 1)
    return -1


class Worker:
    def __init__(self, root: Path, *extra: str) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.config_dir = root / "config"
        config_file = root / "micro_config.json"
        config_file.write_text(json.dumps(json.loads((FIXTURES / "micro_config.json").read_text())["models"]["sam2.1"]))
        env = dict(os.environ, SAMROTO_CONFIG_DIR=str(self.config_dir), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "samroto.scripts.cli", "worker", "--model", str(FIXTURES / "micro_sam2.1.pt"),
             "--config", str(config_file), "--device", "cpu", "--bind", "tcp://127.0.0.1:0", "--session-dir",
             str(root / "sessions"), *extra], stdout=subprocess.PIPE, stderr=open(root / "worker.log", "ab"), env=env)
        assert self.process.stdout is not None
        while True:
            line = self.process.stdout.readline().decode()
            if line.startswith("samroto worker listening on "):
                self.address = line.split(" on ", 1)[1].strip()
                break
            if not line:
                raise SystemExit("the worker did not start:\n" + (root / "worker.log").read_text())
        self.token = auth.read_token(auth.token_path(self.config_dir))

    def client(self, timeout: float = 30.0, retries: int = 2) -> Client:
        return Client(self.address, token=self.token, timeout=timeout, retries=retries)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def make_plate(folder: Path) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(np.load(FIXTURES / "video_frames.npy")[: LAST - FIRST + 1]):
        small = cv2.resize(frame, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"shot.{FIRST + i:04d}.png"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    return str(folder / "shot.####.png")


class Probe:
    """A well-behaved client prompting its own session in a loop; worst round trip, or None if stuck."""

    def __init__(self, worker: Worker, plate: str) -> None:
        self.client = worker.client(timeout=10.0, retries=0)
        self.shot = self.client.open_session(plate)
        self.worst = 0.0
        self.failed: Optional[str] = None
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.is_set() and self.failed is None:
            started = time.monotonic()
            try:
                self.shot.add_points(FIRST, 1, [(40, 40)], [1])
            except Exception as exc:  # noqa: BLE001 - a failure is the figure
                self.failed = type(exc).__name__
            self.worst = max(self.worst, time.monotonic() - started)
            self._stop.wait(0.05)

    def __enter__(self) -> "Probe":
        self._stop.clear()
        self.worst, self.failed = 0.0, None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self.thread.join(30)


def measure(name: str, worker: Worker, probe: Probe, attack: Callable[[], str]) -> None:
    pid = worker.process.pid
    with open("/proc/%d/clear_refs" % pid, "w") as handle:
        handle.write("5")
    before = status_field(pid, "VmRSS")
    started = time.monotonic()
    with probe:
        try:
            outcome = attack()
        except Exception as exc:  # noqa: BLE001
            outcome = "%s: %s" % (type(exc).__name__, str(exc)[:100])
        time.sleep(0.5)
    growth = (status_field(pid, "VmHWM") - before) / MB
    served = "stuck (%s)" % probe.failed if probe.failed else "worst %.2f s" % probe.worst
    print("%-44s RSS %+8.1f MB | other client %-26s | %5.1f s | %s"
          % (name, growth, served, time.monotonic() - started, outcome), flush=True)


def refused(call: Callable[[], Any]) -> str:
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001
        return "refused: %s" % str(exc)[:110]
    return "accepted: %s" % str(result)[:80]


def raw_peer(worker: Worker, *, token: bool = True, identity: Optional[bytes] = None) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if identity is not None:
        sock.setsockopt(zmq.ROUTING_ID, identity)
    if NEW:
        auth.configure_client_socket(sock, worker.token if token else "w" * 64)
    sock.connect(worker.address)
    return sock


def signed(worker: Worker, sock: zmq.Socket, mtype: str, **kwargs: Any) -> list:
    signer = codec.Signer(worker.token)
    if NEW:
        hello = codec.encode(signer, protocol.HELLO)
        sock.send_multipart(hello)
        sock.poll(10000)
        kwargs["epoch"] = codec.decode(sock.recv_multipart(), signer).body["epoch"]
    return codec.encode(signer, mtype, **kwargs)


def empty_arrays(worker: Worker, chunks: int) -> str:
    """Three signed bodies of `chunks` million empty arrays each (one byte per array on the wire)."""
    sock = raw_peer(worker)
    per = 1_000_000
    inner = b"\xdd" + struct.pack(">I", per) + b"\x90" * per
    body = b"\x81\xa1x\xdd" + struct.pack(">I", chunks) + inner * chunks
    signer = codec.Signer(worker.token)
    first = signed(worker, sock, protocol.STATUS)  # learns the epoch once (1.1)
    epoch = getattr(codec.decode(first, signer), "epoch", None)
    for _ in range(3):
        header = codec.encode(signer, protocol.STATUS, **({"epoch": epoch} if NEW else {}))[1]
        sock.send_multipart([signer.sign([header, body]), header, body])
    replies = [sock.recv_multipart() if sock.poll(60000) else None for _ in range(3)]
    sock.close()
    codes = [codec.decode(r, None).body.get("code", "reply") if r else "none" for r in replies]
    return "3 x %.0f MB bodies of empty arrays: %s" % (len(body) / MB, codes)


def main(only: Optional[str] = None) -> None:
    root = Path(tempfile.mkdtemp(prefix="hostile_figures_"))
    plate = make_plate(root / "plate")
    print("samroto from %s (%s handshake)" % (Path(codec.__file__).parents[1], "1.1" if NEW else "1.0"))
    worker = Worker(root / "w1")
    probe = Probe(worker, plate)
    admin = worker.client()
    shot = admin.open_session(plate)
    shot.add_points(FIRST, 1, [(80, 60)], [1])

    print("-- 1. memory sized by the client")
    measure("15 MB body of 15M empty arrays, 3 queued", worker, probe, lambda: empty_arrays(worker, 15))
    measure("7 MB body of 7M empty arrays, 3 queued", worker, probe, lambda: empty_arrays(worker, 7))
    if only == "bodies":
        worker.stop()
        return
    bomb = {"format": "samroto.sidecar", "version": 1, "shot": {"plate": plate}, "objects": [
        {"obj_id": 1, "prompts": [{"frame": FIRST, "mask": {"height": 40000, "width": 40000,
                                                           "counts": [1600000000]}}]}]}
    measure("200-byte sidecar, 40000x40000 RLE mask", worker, probe, lambda: refused(lambda: shot.import_prompts(bomb)))
    measure("open_session of 20M frames on a 12-frame plate", worker, probe,
            lambda: refused(lambda: admin.open_session(plate, 0, 20_000_000)))
    measure("write_mattes of 20M frames", worker, probe, lambda: refused(
        lambda: admin.request(protocol.WRITE_MATTES, {"first": FIRST, "last": 20_000_000}, session=shot.id)))


    print("-- 2. before authentication")

    def unauthenticated() -> str:
        sock = raw_peer(worker, token=False)
        junk = b"\0" * (32 * MB)
        sent = 0
        for _ in range(4):
            try:
                sock.send_multipart([b"", b"h", b"b"] + [junk] * 8, flags=zmq.NOBLOCK)
                sent += 1
            except zmq.Again:
                pass
            time.sleep(0.3)
        time.sleep(2)
        answered = sock.poll(500)
        sock.close()
        return "%d unsigned messages of 8 x 32 MB parts queued by the peer, answered: %s" % (sent, bool(answered))

    measure("no token: 4 messages of 8 parts x 32 MB", worker, probe, unauthenticated)

    print("-- 3. a stuck compute thread")
    many = [[float(i % WIDTH), float(i % HEIGHT)] for i in range(100_000)]
    clicks = dict(bomb, objects=[{"obj_id": 1, "prompts": [{"frame": FIRST, "points": many,
                                                             "labels": [1] * len(many)}]}])
    slow = worker.client(timeout=20.0, retries=0)
    slow_shot = slow.resume_session(shot.id)
    measure("sidecar with 100,000 clicks (20 s window)", worker, probe,
            lambda: refused(lambda: slow_shot.import_prompts(clicks)))
    fifo_dir = root / "fifo"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / "f.0001.png")
    fifo_client = worker.client(timeout=10.0, retries=0)
    measure("FIFO named like a frame (f.0001.png)", worker, probe,
            lambda: refused(lambda: fifo_client.open_session(str(fifo_dir / "f.####.png"))))
    released = threading.Thread(target=lambda: open(fifo_dir / "f.0001.png", "wb").close(), daemon=True)
    released.start()  # a writer that closes: the worker's read ends (if it was stuck on it)
    started = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    try:
        code: Any = worker.process.wait(60)
    except subprocess.TimeoutExpired:
        code = "still running after 60 s"
    print("%-44s exit status %s after %.1f s" % ("SIGTERM after these", code, time.monotonic() - started))
    if worker.process.poll() is None:
        worker.process.kill()
        worker.process.wait()

    worker = Worker(root / "w1")  # the same config and sessions
    probe = Probe(worker, plate)
    admin = worker.client()
    shot = admin.resume_session(shot.id)

    print("-- 4. replays")

    def fast_clock() -> str:
        sock = raw_peer(worker)
        signer = codec.Signer(worker.token)
        epoch = None
        if NEW:
            sock.send_multipart(codec.encode(signer, protocol.HELLO))
            sock.poll(10000)
            epoch = codec.decode(sock.recv_multipart(), signer).body["epoch"]
        count = protocol.DEFAULT_LIMITS.max_remembered_nonces + 5000
        replies = 0
        for i in range(count):
            kwargs = {"epoch": epoch} if NEW else {}
            sock.send_multipart(codec.encode(signer, protocol.PING, timestamp=time.time() + 290, **kwargs))
            while sock.poll(0):
                sock.recv_multipart()
                replies += 1
        while replies < count and sock.poll(30000):  # every message processed: the cache is full
            sock.recv_multipart()
            replies += 1
        sock.close()
        with worker.client(timeout=10, retries=0) as honest:
            return "after %d fast-clock messages an honest client's ping: %s" % (count, refused(honest.ping))

    measure("a token holder whose clock runs 290 s fast", worker, probe, fast_clock)
    sock = raw_peer(worker)
    captured = signed(worker, sock, protocol.DELETE_SESSION, body={"session": shot.id})
    sock.close()
    worker.stop()
    worker = Worker(root / "w1")
    sock = raw_peer(worker)
    sock.send_multipart(captured)
    answer = codec.decode(sock.recv_multipart(), None).body if sock.poll(10000) else {}
    sock.close()
    print("%-44s %s" % ("delete_session captured before a restart", answer.get("code") or answer))
    probe = Probe(worker, plate)
    admin = worker.client()
    shot = admin.open_session(plate)
    shot.add_points(FIRST, 1, [(80, 60)], [1])

    print("-- 5. caps that count everything")

    def objects() -> str:
        added = 0
        for obj in range(1, 301):
            try:
                shot.add_points(FIRST, obj, [(obj % WIDTH, 30)], [1])
                added += 1
            except Exception as exc:  # noqa: BLE001
                return "%d objects added, then refused: %s" % (added, str(exc)[:70])
        return "%d objects added" % added

    measure("300 objects in one session", worker, probe, objects)

    def parked() -> str:
        runs = []
        for i in range(12):
            s = admin.open_session(plate, name="parked%d" % i)
            s.add_points(FIRST, 1, [(80, 60)], [1])
            run = s.propagate(credit=1, write_mattes=False)
            next(run, None)
            runs.append(run)
        return "12 streams waiting for credit, cap 8: %d sessions loaded" % len(admin.status()["loaded_sessions"])

    measure("sessions with streams waiting for credit", worker, probe, parked)

    def mask_paths() -> str:
        texts = []
        for path in ("/etc/hostname", "/nonexistent/mask.png"):
            sidecar = dict(bomb, objects=[{"obj_id": 1, "prompts": [{"frame": FIRST, "mask": {"file": path}}]}])
            texts.append(refused(lambda: shot.import_prompts(sidecar)).replace(path, "<path>"))
        return "same error for an existing and a missing file: %s (%s)" % (texts[0] == texts[1], texts[0][:60])

    measure("import_prompts reading /etc/hostname", worker, probe, mask_paths)

    print("-- 6. identity")

    def takeover() -> str:
        victim = worker.client(timeout=5, retries=0)
        victim.ping()
        sock = raw_peer(worker, token=False, identity=victim._identity)
        try:
            sock.send_multipart([b"", b"h", b"b"], flags=zmq.NOBLOCK)
        except zmq.Again:
            pass
        time.sleep(1)
        result = refused(victim.ping)
        sock.close()
        victim.close()
        return "the client whose routing id was reused: %s" % result

    measure("no token, a client's routing id reused", worker, probe, takeover)

    print("-- 7. smaller")
    mode = oct((root / "w1" / "sessions" / shot.id).stat().st_mode & 0o777)
    print("%-44s %s" % ("session folder mode", mode))
    print("%-44s %s" % ("write_mattes first > last", refused(
        lambda: admin.request(protocol.WRITE_MATTES, {"first": LAST, "last": FIRST}, session=shot.id).body)))
    print("%-44s %s" % ("add_mask with a float32 mask", refused(lambda: admin.request(
        protocol.ADD_MASK, {"frame": FIRST, "obj_id": 2}, arrays={"mask": np.ones((HEIGHT, WIDTH), np.float32)},
        session=shot.id).type)))
    for aspect in (0, float("nan")):
        print("%-44s %s" % ("get_shapes pixel_aspect %r" % aspect, refused(lambda: admin.request(
            protocol.GET_SHAPES, {"obj_id": 1, "pixel_aspect": aspect}, session=shot.id).type)))
    stale = root / "w1" / "sessions" / shot.id / ".session.json.0123abcd.tmp"
    stale.write_bytes(b"half")
    worker.stop()
    worker = Worker(root / "w1")
    time.sleep(1)
    print("%-44s %s" % ("temporary file after a restart", "left" if stale.exists() else "removed"))
    worker.stop()
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)  # "bodies": stop after the empty-array bodies
