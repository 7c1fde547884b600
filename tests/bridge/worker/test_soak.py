"""A bounded soak: four clients prompting, propagating, cancelling and disconnecting at random on a
real worker process. Afterwards the worker's memory is within 10% of where it started and it has no
more threads or open files than before. `SAMROTO_SOAK_SECONDS` sets the length (default 15 s)."""

from __future__ import annotations

import os
import random
import threading
import time
from typing import Iterator

import pytest

from samroto.bridge import BridgeError, Client, WorkerBusy

from ..bridge_support import WorkerProcess, running_worker, token_of, wait_until
from .hostile_support import FIRST, HEIGHT, LAST, WIDTH, make_plate, open_fds, proc_status

SOAK_SECONDS = float(os.environ.get("SAMROTO_SOAK_SECONDS", "15"))
CLIENTS = 4


@pytest.fixture(scope="module")
def soak_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WorkerProcess, str]]:
    root = tmp_path_factory.mktemp("soak")
    plate = make_plate(root / "plate")
    with running_worker(root) as process:
        yield process, plate


def _client_life(worker: WorkerProcess, plate: str, seed: int, until: float, errors: list, counts: dict) -> None:
    rng = random.Random(seed)
    token = token_of(worker.config_dir)
    client = Client(worker.address, token=token, timeout=30)
    shot = client.open_session(plate, name="soak%d" % seed)
    shot.add_points(FIRST, 1, [(WIDTH / 2, HEIGHT / 2)], [1])
    try:
        while time.monotonic() < until:
            # a host's pace (tens of ms between actions), so reconnects stay within the worker's
            # per-client replay state (`max_peers` distinct clients in its replay window)
            time.sleep(rng.uniform(0.02, 0.06))
            action = rng.choice(["prompt", "prompt", "propagate", "cancel", "disconnect", "frame"])
            counts[action] = counts.get(action, 0) + 1
            if action == "prompt":
                point = (rng.uniform(0, WIDTH - 1), rng.uniform(0, HEIGHT - 1))
                shot.add_points(rng.randint(FIRST, LAST), rng.randint(1, 3), [point], [1])
            elif action == "propagate":
                try:
                    with shot.propagate(credit=rng.choice([1, 4, 8]), write_mattes=rng.random() < 0.3) as run:
                        for _ in run:
                            pass
                except WorkerBusy:  # a stream this client left behind before it reconnected is still ending
                    counts["busy"] = counts.get("busy", 0) + 1
            elif action == "cancel":
                try:
                    run = shot.propagate(credit=2, write_mattes=False)
                    next(run, None)
                except WorkerBusy:
                    counts["busy"] = counts.get("busy", 0) + 1
                    continue
                run.cancel()
            elif action == "disconnect":
                left_behind = False
                if rng.random() < 0.5:
                    try:
                        run = shot.propagate(credit=1, write_mattes=False)  # left behind, waiting for credit
                        next(run, None)
                        left_behind = True
                    except WorkerBusy:
                        counts["busy"] = counts.get("busy", 0) + 1
                client.close()
                client = Client(worker.address, token=token, timeout=30)
                shot = client.resume_session(shot.id)
                if left_behind:
                    # the session stays busy with the old stream until someone cancels it (any client may):
                    # a reconnecting host does this, and the worker must then let go of the stream's state
                    shot.cancel()
            else:
                shot.get_frame(rng.randint(FIRST, LAST))
        shot.close()  # a host done with a shot unloads it: its threads and files go with it
    except BridgeError as exc:  # any refusal or timeout is a finding
        errors.append(exc)
    finally:
        client.close()


def test_four_random_clients_leave_no_growth_and_no_leaks(soak_worker: tuple[WorkerProcess, str]) -> None:
    worker, plate = soak_worker
    pid = worker.process.pid
    errors: list = []
    counts: dict = {}

    def round_of(seconds: float, seed_base: int) -> None:
        until = time.monotonic() + seconds
        threads = [threading.Thread(target=_client_life, args=(worker, plate, seed_base + i, until, errors, counts))
                   for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 120)
            assert not thread.is_alive(), "a client hung"

    # one client polls the worker's status (a new client per poll would fill its per-client state)
    probe = Client(worker.address, token=token_of(worker.config_dir), timeout=30)
    round_of(min(5.0, SOAK_SECONDS / 3), 100)  # warm up: caches and allocator pools at working size
    wait_until(lambda: not _busy(probe), timeout=60, what="the warm-up to settle")
    rss0, threads0, fds0 = proc_status(pid, "VmRSS"), proc_status(pid, "Threads"), open_fds(pid)

    round_of(SOAK_SECONDS, 200)
    assert not errors, errors
    assert worker.process.poll() is None, "the worker died:\n" + worker.log()[-3000:]
    wait_until(lambda: not _busy(probe) and open_fds(pid) <= fds0 and proc_status(pid, "Threads") <= threads0,
               timeout=60, what="threads and files back to where they started (now %d threads, %d files)"
               % (proc_status(pid, "Threads"), open_fds(pid)))
    rss1 = proc_status(pid, "VmRSS")
    print("soak %.0f s, %s: RSS %.1f -> %.1f MB (%+.1f%%), threads %d, files %d"
          % (SOAK_SECONDS, counts, rss0 / 2 ** 20, rss1 / 2 ** 20, 100.0 * (rss1 - rss0) / rss0, threads0, fds0))
    assert rss1 <= rss0 * 1.10, "RSS grew from %.1f to %.1f MB" % (rss0 / 2 ** 20, rss1 / 2 ** 20)
    with probe:
        assert probe.ping()  # still serving


def _busy(probe: Client) -> bool:
    status = probe.status()
    return bool(status["streams"] or status["queued"] or status["running"])
