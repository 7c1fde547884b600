"""Helpers for the bridge tests: in-process workers on a fake engine, real worker processes."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from samroto.bridge import auth
from samroto.bridge.worker.server import Worker, WorkerConfig

from .worker.bridge_fakes import FakeEngine

REPO = Path(__file__).resolve().parents[2]
MICRO_CHECKPOINT = REPO / "tests" / "fixtures" / "sam2_reference" / "micro_sam2.1.pt"
MICRO_CONFIG = REPO / "tests" / "fixtures" / "sam2_reference" / "micro_config.json"


@dataclass
class InProcessWorker:
    worker: Worker
    engine: FakeEngine
    address: str
    thread: threading.Thread
    config: WorkerConfig
    result: list

    def stop(self, timeout: float = 20.0) -> None:
        self.worker.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the worker did not stop"


def start_in_process(config_dir: Path, session_dir: Path, *, delay: float = 0.01, bind: str = "tcp://127.0.0.1:0",
                     **overrides) -> InProcessWorker:
    """A worker on a fake engine, serving from a thread of the test process."""
    engine = FakeEngine(delay=delay)
    config = WorkerConfig(bind=bind, session_dir=session_dir, config_dir=config_dir, **overrides)
    worker = Worker(config, engine)
    address = worker.bind()
    result: list = []
    ready = threading.Event()
    thread = threading.Thread(target=lambda: result.append(worker.serve(install_signal_handlers=False,
                                                                        ready=lambda _: ready.set())),
                              name="test-worker", daemon=True)
    thread.start()
    assert ready.wait(30), "the in-process worker did not start"
    return InProcessWorker(worker, engine, address, thread, config, result)


# --- real worker processes --------------------------------------------------------------------


@dataclass
class WorkerProcess:
    process: subprocess.Popen
    address: str
    session_dir: Path
    config_dir: Path
    log_path: Path

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_worker_process(config_dir: Path, session_dir: Path, log_path: Path, *extra: str,
                         timeout: float = 120.0) -> WorkerProcess:
    """`samroto worker` on a free loopback port with the micro checkpoint; waits until it listens."""
    if not MICRO_CHECKPOINT.is_file():
        raise AssertionError(f"the micro checkpoint {MICRO_CHECKPOINT} is missing (it ships with the repository)")
    config_file = Path(log_path).with_name("micro_sam2.1_config.json")
    if not config_file.exists():
        models = json.loads(MICRO_CONFIG.read_text())["models"]
        config_file.write_text(json.dumps(models["sam2.1"]))
    env = dict(os.environ, SAMROTO_CONFIG_DIR=str(config_dir), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    # paths relative to the worker's folder, as a user types them: exported sidecars must still resolve
    command = [sys.executable, "-m", "samroto.scripts.cli", "worker", "--model", os.path.relpath(MICRO_CHECKPOINT, REPO),
               "--config", os.path.relpath(config_file, REPO),
               "--device", "cpu", "--bind", "tcp://127.0.0.1:0", "--session-dir", str(session_dir), *extra]
    log = open(log_path, "ab")
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, env=env, cwd=str(REPO))
    log.close()
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while True:
        line = process.stdout.readline().decode(errors="replace")
        if line.startswith("samroto worker listening on "):
            address = line.split(" on ", 1)[1].strip()
            break
        if not line and process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError("the worker did not start:\n" + log_path.read_text(errors="replace"))
    return WorkerProcess(process, address, session_dir, config_dir, log_path)


@contextlib.contextmanager
def running_worker(root: Path, *extra: str) -> Iterator[WorkerProcess]:
    """A worker process for the duration of a `with` block (config, sessions and log under `root`);
    stopped with SIGTERM, killed if it does not exit."""
    process = start_worker_process(root / "config", root / "sessions", root / "worker.log", *extra)
    try:
        yield process
    finally:
        process.process.terminate()
        try:
            process.process.wait(30)
        finally:
            process.kill()


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll until `predicate()` is truthy (no timing assertion: the deadline only stops a hang)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(interval)


def token_of(config_dir: Path) -> str:
    return auth.read_token(auth.token_path(config_dir))
