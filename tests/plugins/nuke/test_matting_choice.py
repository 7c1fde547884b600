"""The SamRoto node's "matting" menu: its choices, what it asks the worker for, and old nodes without it."""

from __future__ import annotations

from typing import Any

import pytest

from samroto_nuke.settings import MATTING_CHOICES, MATTING_KNOB, TrackSettings

from . import fake_nuke


@pytest.fixture
def host(nuke: object) -> Any:
    import samroto_nuke.host as module

    return module


def test_matting_menu_names_the_models_and_reaches_the_track_settings(host: Any) -> None:
    control = fake_nuke.control
    control.selected = control.make_read("/s/p.####.exr", 1, 10, width=640, height=480)
    node = host.create_node()
    assert node[MATTING_KNOB].value() == "none"
    assert MATTING_CHOICES == ("none", "vitmatte-small", "vitmatte-base")
    assert host.read_settings(node).track.matting is None
    node[MATTING_KNOB].setValue("vitmatte-base")
    assert host.read_settings(node).track.matting == "vitmatte-base"


def test_a_node_saved_before_the_matting_menu_still_reads(host: Any) -> None:
    control = fake_nuke.control
    control.selected = control.make_read("/s/p.####.exr", 1, 10, width=640, height=480)
    node = host.create_node()
    del node._knobs[MATTING_KNOB]  # as if saved by an older plug-in (the fake has no removeKnob)
    assert host.read_settings(node).track.matting is None


def test_track_settings_refuse_unknown_matting_models() -> None:
    with pytest.raises(ValueError, match="matting must be one of"):
        TrackSettings(matting="vitmatte-huge")
