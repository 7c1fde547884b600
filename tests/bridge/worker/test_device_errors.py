"""GPU failures on the worker, injected from a fake session: out of memory leaves the worker
serving (memory handed back, the client told `out_of_memory`, nothing of the failed frame sent);
a sticky CUDA error stops the worker with exit status 4 (EXIT_DEVICE_LOST)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest
import torch

from samroto.bridge import Client, RemoteError, protocol
from samroto.bridge.worker.backend import classify_device_error
from samroto.bridge.worker.server import EXIT_DEVICE_LOST

from ..bridge_support import start_in_process, wait_until


def _failing(propagate: Any, at_frame: int, error: BaseException) -> Any:
    def run(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for result in propagate(*args, **kwargs):
            if result.frame == at_frame:
                raise error
            yield result
    return run


def test_out_of_memory_is_reported_and_the_worker_keeps_serving(config_dir: Path, tmp_path: Path) -> None:
    worker = start_in_process(config_dir, tmp_path / "sessions")
    released: list[int] = []
    worker.engine.classify_error = classify_device_error  # type: ignore[attr-defined]
    worker.engine.release_memory = lambda: released.append(1)  # type: ignore[attr-defined]
    try:
        with Client(worker.address, timeout=5.0) as client:
            shot = client.open_session("fake:plate", 1001, 1012, matte_dir=str(tmp_path / "mattes"))
            shot.add_points(1001, 1, [(5, 5)], [1])
            session = worker.engine.sessions[-1]
            healthy = session.propagate
            session.propagate = _failing(healthy, 1004, torch.OutOfMemoryError("CUDA out of memory. Tried to "
                                                                              "allocate 2.00 GiB"))
            run = shot.propagate()
            frames = []
            with pytest.raises(RemoteError, match="ran out of memory on propagate; nothing was written") as info:
                for update in run:
                    frames.append(update.frame)
            assert info.value.code == protocol.E_OUT_OF_MEMORY
            assert frames == [1001, 1002, 1003] and run.state == "error"
            assert released == [1]
            status = client.status()
            assert status["streams"] == [] and "vram" in status
            # the same session goes on once memory is back
            session.propagate = healthy
            assert [u.frame for u in shot.propagate(start=1004)] == list(range(1004, 1013))
            # a prompt that runs out of memory is an error too, and nothing changes
            add_points = session.add_points

            def oom(*args: Any, **kwargs: Any) -> Any:
                raise torch.OutOfMemoryError("CUDA out of memory")

            session.add_points = oom
            with pytest.raises(RemoteError) as info:
                shot.add_points(1005, 2, [(5, 5)], [1])
            assert info.value.code == protocol.E_OUT_OF_MEMORY and released == [1, 1]
            session.add_points = add_points
            assert shot.add_points(1005, 2, [(5, 5)], [1]).present(2)
    finally:
        worker.stop()


def test_a_sticky_cuda_error_stops_the_worker_with_a_clear_code(config_dir: Path, tmp_path: Path) -> None:
    worker = start_in_process(config_dir, tmp_path / "sessions")
    worker.engine.classify_error = classify_device_error  # type: ignore[attr-defined]
    with Client(worker.address, timeout=5.0) as client:
        shot = client.open_session("fake:plate", 1001, 1012, matte_dir=str(tmp_path / "mattes"))
        session = worker.engine.sessions[-1]

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

        session.add_points = broken
        with pytest.raises(RemoteError, match="cannot recover .* restart it") as info:
            shot.add_points(1001, 1, [(5, 5)], [1])
        assert info.value.code == protocol.E_DEVICE_LOST
    wait_until(lambda: not worker.thread.is_alive(), timeout=20)
    assert worker.result == [EXIT_DEVICE_LOST]
