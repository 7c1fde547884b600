"""The Blender panel's "Matting" choice reaches the worker with each propagation (in-process fake worker)."""

from __future__ import annotations

import threading

import pytest

from ...bridge.bridge_support import InProcessWorker
from .test_remote import _fake_plate, fake_worker, plates, remote, settings_for  # noqa: F401 - fixtures


def test_matting_choice_is_sent_and_checked_by_the_worker(remote, plates, addon_module,  # noqa: F811
                                                          fake_worker: InProcessWorker) -> None:  # noqa: F811
    prompts = addon_module("prompts")
    connection = remote.connect(settings_for(remote, fake_worker))
    client = connection.client
    try:
        session, _ = remote.open_session(client, _fake_plate(plates))
        remote.send_prompt(session, 1003, 1, prompts.FramePrompt([(10.0, 12.0)], [1]))
        for choice in ("none", "vitmatte-small"):
            outcome = remote.propagate(session, direction="forward", on_update=lambda u: None,
                                       cancelled=threading.Event(), matting=choice)
            assert outcome.state == "done", outcome.reason
        # the worker sees the field: an unknown model is refused there, by name
        with pytest.raises(Exception, match="matting must be one of"):
            remote.propagate(session, direction="forward", on_update=lambda u: None, cancelled=threading.Event(),
                             matting="vitmatte-huge")
    finally:
        client.close()
