"""The clicks-and-boxes book stored on the clip."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def prompts(addon_module):
    return addon_module("prompts")


def test_clicks_and_boxes_accumulate_per_object_and_frame(prompts) -> None:
    book = prompts.PromptBook()
    book.add_click(1, 1001, (10, 20), True)
    book.add_click(1, 1001, (30, 40), False)
    book.set_box(1, 1001, (0, 0, 50, 60))
    book.add_click(2, 1005, (5, 5), True)
    one = book.get(1, 1001)
    assert one.points == [(10.0, 20.0), (30.0, 40.0)] and one.labels == [1, 0] and one.box == (0, 0, 50, 60)
    assert book.frames() == [1001, 1005] and book.frames(1) == [1001] and book.frames(3) == []
    assert sorted(book.on_frame(1001)) == [1] and sorted(book.on_frame(1005)) == [2]
    assert [(o, f) for o, f, _ in book.items()] == [(1, 1001), (2, 1005)]
    assert book.get(1, 999).empty


def test_undo_removes_clicks_last_first_then_the_box(prompts) -> None:
    book = prompts.PromptBook()
    book.set_box(1, 1001, (0, 0, 50, 60))
    book.add_click(1, 1001, (10, 20), True)
    book.add_click(1, 1001, (30, 40), False)
    assert book.undo(1, 1001).points == [(10.0, 20.0)]
    assert book.undo(1, 1001).points == []
    last = book.undo(1, 1001)
    assert last.empty and last.box is None
    assert book.undo(1, 1001) is None and book.frames() == []


def test_clear_and_remove_object(prompts) -> None:
    book = prompts.PromptBook()
    book.add_click(1, 1001, (10, 20), True)
    book.add_click(1, 1002, (10, 20), True)
    book.add_click(2, 1002, (10, 20), True)
    book.clear(1, 1001)
    assert book.frames(1) == [1002]
    book.remove_object(1)
    assert book.frames() == [1002] and list(book.on_frame(1002)) == [2]


def test_the_book_survives_json(prompts) -> None:
    book = prompts.PromptBook()
    book.add_click(1, 1001, (10.5, 20.25), True)
    book.set_box(3, 1010, (1, 2, 3, 4))
    again = prompts.PromptBook.from_json(book.to_json())
    assert again.get(1, 1001) == book.get(1, 1001) and again.get(3, 1010) == book.get(3, 1010)
    assert again.to_json() == book.to_json()
    assert prompts.PromptBook.from_json("").frames() == []


@pytest.mark.parametrize("text", ["{", '{"1": {"1001": {"points": [[1, 2]], "labels": []}}}', '{"x": {}}',
                                  '{"1": {"1001": {"points": [[1]], "labels": [1]}}}'])
def test_a_damaged_book_is_refused_clearly(prompts, text: str) -> None:
    with pytest.raises(ValueError, match="stored samroto prompts are damaged"):
        prompts.PromptBook.from_json(text)
