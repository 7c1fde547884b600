"""The worker's log (bridge/worker/logs.py): events at INFO, internal errors with tracebacks and
reported as `internal`, JSON lines, a rotating file."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

from samroto.bridge import Client, RemoteError, protocol
from samroto.bridge.worker import logs
from samroto.core.frames import FrameError

from ..bridge_support import InProcessWorker, wait_until


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """The worker's log as JSON lines in a file; the `samroto` loggers are put back afterwards."""
    root = logging.getLogger("samroto")
    saved = (list(root.handlers), root.level, root.propagate)
    path = tmp_path / "logs" / "worker.log"
    logs.configure("INFO", log_file=path, json_lines=True)
    try:
        yield path
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        root.propagate = saved[2]


def entries(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_sessions_requests_streams_and_internal_errors_are_logged(fake_worker: InProcessWorker, tmp_path: Path,
                                                                  log_file: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from samroto.bridge.worker.handlers import HANDLERS

    def singular(*args: object, **kwargs: object) -> None:
        np.linalg.inv(np.zeros((2, 2)))  # numpy's own failure (a ValueError), deep in a library

    monkeypatch.setitem(HANDLERS, protocol.GET_SHAPES, singular)
    with Client(fake_worker.address, timeout=5.0) as client:
        client.status()
        shot = client.open_session("fake:plate", 1001, 1004, matte_dir=str(tmp_path / "mattes"))
        shot.add_points(1001, 1, [(5, 5)], [1])
        assert len(list(shot.propagate())) == 4
        with pytest.raises(RemoteError) as raised:
            shot.get_shapes(1)
        assert raised.value.code == protocol.E_INTERNAL and "Singular matrix" in raised.value.message
        shot.close()
    # a request is logged when it ends, just after its reply went out: wait for the last one
    wait_until(lambda: any(e["message"].startswith("request close ok") for e in entries(log_file)), timeout=10,
               what="the close request in the log")
    found = entries(log_file)
    messages = [e["message"].split(" session=")[0].split(" client=")[0] for e in found]
    for expected in ("session opened", "request open_session ok", "request add_points ok", "propagation started",
                     "propagation done", "request get_shapes internal", "session unloaded", "request close ok"):
        assert expected in messages, (expected, messages)
    assert "request status ok" not in messages, "polled requests only at DEBUG"
    opened = next(e for e in found if e["message"].startswith("session opened"))
    assert opened["session"] == shot.id and opened["frames"] == "1001-1004" and opened["level"] == "INFO"
    done = next(e for e in found if e["message"].startswith("propagation done"))
    assert done["sent"] == 4 and done["total"] == 4
    error = next(e for e in found if e["level"] == "ERROR")
    assert "request get_shapes failed: LinAlgError: Singular matrix" in error["message"]
    assert "Traceback" in error["message"] and "singular" in error["message"]


def test_client_errors_and_the_workers_own() -> None:
    def raised(action) -> BaseException:  # noqa: ANN001
        try:
            action()
        except Exception as exc:
            return exc
        raise AssertionError("nothing raised")

    from samroto.core.frames import ViewTransform

    assert logs.is_client_error(raised(lambda: ViewTransform(curve="log")))  # a plain ValueError from samroto
    assert logs.is_client_error(FrameError("missing frame"))
    assert logs.is_client_error(raised(lambda: open("/nonexistent/plate.exr")))
    assert not logs.is_client_error(raised(lambda: np.linalg.inv(np.zeros((2, 2)))))
    assert not logs.is_client_error(raised(lambda: {}["x"]))
    assert not logs.is_client_error(raised(lambda: np.zeros(3).reshape(2, 2)))


def test_the_log_file_rotates_and_text_is_the_default(tmp_path: Path) -> None:
    root = logging.getLogger("samroto")
    saved = (list(root.handlers), root.level, root.propagate)
    path = tmp_path / "worker.log"
    try:
        logs.configure("INFO", log_file=path, max_bytes=2000, backups=2)
        for i in range(100):
            logs.session_event("opened", "shot-%03d" % i)
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
            handler.close()
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        root.propagate = saved[2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["worker.log", "worker.log.1", "worker.log.2"]
    assert path.stat().st_size <= 2000
    assert "samroto worker INFO: session opened session=shot-099" in path.read_text()
