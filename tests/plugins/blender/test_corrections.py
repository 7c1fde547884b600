"""The bpy-free side of corrections: when Track re-tracks a span, lock ranges, timeline markers."""

from __future__ import annotations

from typing import Any, Callable

import pytest


@pytest.fixture
def corrections(addon_module: Callable[[str], Any]) -> Any:
    return addon_module("corrections")


@pytest.fixture
def book(addon_module: Callable[[str], Any]) -> Any:
    book = addon_module("prompts").PromptBook()
    book.add_click(1, 1003, (10.0, 10.0), True)
    book.add_click(1, 1006, (12.0, 10.0), False)
    book.add_click(2, 1006, (50.0, 50.0), True)
    return book


def test_track_re_tracks_the_span_only_after_a_correction(corrections: Any, book: Any) -> None:
    tracked = range(1001, 1013)
    plan = corrections.plan_track(book, 1, 1006, tracked)
    assert (plan.span, plan.start, plan.obj_id) == (True, 1006, 1)
    # a prompt on a frame not tracked yet (the first track): to the end, both ways from the frame
    plan = corrections.plan_track(book, 1, 1006, [1001, 1002])
    assert (plan.span, plan.start, plan.direction) == (False, 1006, "both")
    # to the end stays one choice away
    plan = corrections.plan_track(book, 1, 1006, tracked, extent="FULL", direction="forward")
    assert (plan.span, plan.start, plan.direction) == (False, 1006, "forward")
    # no prompt of the active object here: Track tracks to the end, from the earliest prompt
    plan = corrections.plan_track(book, 1, 1008, tracked)
    assert (plan.span, plan.start) == (False, None)
    with pytest.raises(ValueError, match="starts on a corrected frame"):
        corrections.plan_track(book, 1, 1008, tracked, extent="SPAN")
    with pytest.raises(ValueError, match="extent must be one of"):
        corrections.plan_track(book, 1, 1006, tracked, extent="SIDEWAYS")


def test_lock_ranges_are_checked_and_clipped(corrections: Any) -> None:
    assert corrections.lock_range(1012, 1010, 1001, 1012) == (1010, 1012)
    assert corrections.lock_range(990, 1003, 1001, 1012) == (1001, 1003)
    with pytest.raises(ValueError, match="outside the clip's frames 1001-1012"):
        corrections.lock_range(2000, 2005, 1001, 1012)


def test_markers_show_keyframes_and_both_ends_of_locked_ranges(corrections: Any, book: Any) -> None:
    marks = corrections.Marks.from_history({"keyframes": {"1": [1009, 1003]}, "locks": {"1": [[1010, 1012]],
                                                                                        "2": [[1005, 1005]]}})
    plan = corrections.marker_plan(marks, {1: "Chair", 2: "Cup"}, lambda f: f - 1000)
    assert plan == [("key: Chair", 3), ("key: Chair", 9), ("locked: Chair 1010-1012", 10),
                    ("locked: Chair 1010-1012", 12), ("locked: Cup 1005", 5)]
    # objects the clip no longer has get no markers
    assert corrections.marker_plan(marks.without(1), {2: "Cup"}, lambda f: f) == [("locked: Cup 1005", 1005)]
    # without a history from the worker: keyframes from the prompts drawn, locks as last heard
    fallback = corrections.Marks.from_book(book, {1: [[1010, 1012]]})
    assert fallback.keyframes == {1: [1003, 1006], 2: [1006]} and fallback.locks == {1: [[1010, 1012]]}
    assert corrections.Marks.from_history(fallback.to_json()) == fallback
    assert corrections.summary(fallback, 1) == ("Keyframes: 1003, 1006", "Locked: 1010-1012")
