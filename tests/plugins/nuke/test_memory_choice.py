"""The SamRoto node's "memory" menu: the modes with their explanations, what it asks the worker for,
and old nodes without it."""

from __future__ import annotations

from typing import Any

import pytest

from samroto.core.memory_modes import explanations
from samroto_nuke.settings import MEMORY_KNOB, TrackSettings

from . import fake_nuke


@pytest.fixture
def host(nuke: object) -> Any:
    import samroto_nuke.host as module

    return module


def test_the_memory_menu_lists_the_modes_explains_them_and_reaches_the_track_settings(host: Any) -> None:
    control = fake_nuke.control
    control.selected = control.make_read("/s/p.####.exr", 1, 10, width=640, height=480)
    node = host.create_node()
    knob = node[MEMORY_KNOB]
    assert list(knob.values()) == list(explanations()) and knob.value() == "sam2"
    for name, line in explanations().items():
        assert "%s: %s" % (name, line) in knob.tooltip()
    assert "takes effect when a session opens" in knob.tooltip()
    assert host.read_settings(node).track.memory_mode == "sam2"
    knob.setValue("presence")
    assert host.read_settings(node).track.memory_mode == "presence"


def test_a_node_saved_before_the_memory_menu_still_reads(host: Any) -> None:
    control = fake_nuke.control
    control.selected = control.make_read("/s/p.####.exr", 1, 10, width=640, height=480)
    node = host.create_node()
    del node._knobs[MEMORY_KNOB]  # as if saved by an older plug-in (the fake has no removeKnob)
    assert host.read_settings(node).track.memory_mode == "sam2"


def test_track_settings_need_a_memory_mode_name() -> None:
    with pytest.raises(ValueError, match="memory_mode must name a memory mode"):
        TrackSettings(memory_mode="")
