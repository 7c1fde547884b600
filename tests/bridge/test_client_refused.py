"""A client the worker refused at the handshake never hangs: every later request, stream or retry
fails at once with AuthenticationError (a DEALER with no live connection blocks on send for ever)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, List

import pytest

from samroto.bridge import protocol
from samroto.bridge.client import AuthenticationError, Client

from .bridge_support import InProcessWorker


def _finishes(action: Callable[[], Any], within_s: float) -> List[BaseException]:
    """Run `action` in a thread; the exceptions it raised (fails the test if it is still running)."""
    raised: List[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within_s)
    assert not thread.is_alive(), "the client hung (still blocked after %.0f s)" % within_s
    return raised


@pytest.mark.parametrize("retries", [0, 2])
def test_every_request_after_a_refused_handshake_fails_at_once(fake_worker: InProcessWorker, retries: int) -> None:
    client = Client(fake_worker.address, token="f" * 64, timeout=3.0, retries=retries)
    try:
        first = _finishes(client.hello, 60)
        assert len(first) == 1 and isinstance(first[0], AuthenticationError)
        time.sleep(0.5)  # the refused connection is gone by now: nothing can queue a message
        for action in (client.hello, client.status, lambda: client.start_stream(protocol.STATUS, {})):
            raised = _finishes(action, 60)
            assert len(raised) == 1 and isinstance(raised[0], AuthenticationError), raised
            assert "token" in str(raised[0])
    finally:
        client.close()
