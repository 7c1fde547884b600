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


def _rle(rows) -> dict:
    import numpy as np

    from samroto.core.sidecar import encode_mask_rle

    return encode_mask_rle(np.asarray(rows, dtype=bool))


def test_a_mask_prompt_stands_alone_and_round_trips(prompts) -> None:
    book = prompts.PromptBook()
    book.add_click(1, 1001, (10, 20), True)
    book.set_mask(1, 1001, _rle([[0, 1], [1, 1]]))
    assert book.get(1, 1001).points == [] and book.get(1, 1001).mask == {"height": 2, "width": 2, "counts": [1, 3]}
    assert prompts.PromptBook.from_json(book.to_json()).get(1, 1001).mask == book.get(1, 1001).mask
    book.add_click(1, 1001, (5, 5), False)  # a click replaces the mask, as on the worker
    assert book.get(1, 1001).mask is None and book.get(1, 1001).labels == [0]
    book.set_mask(1, 1002, _rle([[1, 1]]))
    assert book.undo(1, 1002) is not None and book.get(1, 1002).empty
    with pytest.raises(ValueError, match="add up to its 2x2 pixels"):
        book.set_mask(1, 1003, {"height": 2, "width": 2, "counts": [1, 1]})


def test_the_book_compares_with_the_workers_sidecar(prompts) -> None:
    from samroto.core.sidecar import Sidecar

    drawn = prompts.PromptBook()
    drawn.add_click(1, 1001, (10.0, 20.0), True)
    drawn.set_box(2, 1005, (1.0, 2.0, 30.0, 40.0))
    drawn.set_mask(3, 1007, _rle([[0, 1, 1], [0, 0, 1]]))
    # the sidecar the worker exports for the same prompts (float32 coordinates, its own mask runs)
    sidecar = {"format": "samroto.sidecar", "version": 1, "shot": {"plate": "/p/s.####.png", "first": 1001,
                                                                   "last": 1012},
               "objects": drawn.sidecar_objects()}
    Sidecar.from_dict(sidecar)  # what the add-on sends to import_prompts is a valid sidecar
    held = prompts.PromptBook.from_sidecar(sidecar)
    assert held.diff(drawn) == [] and drawn.diff(held) == []
    sidecar["objects"][0]["prompts"][0]["points"] = [[10.0000001, 19.9999999]]
    sidecar["objects"][2]["prompts"][0]["mask"]["counts"] = [1, 0, 0, 2, 2, 1]  # the same mask, other runs
    assert drawn.diff(prompts.PromptBook.from_sidecar(sidecar)) == []
    # the worker has an extra frame and lacks one: send an empty prompt there, the drawn one here
    worker = prompts.PromptBook.from_sidecar(sidecar)
    worker.add_click(1, 1009, (1.0, 1.0), False)
    worker.clear(2, 1005)
    changes = drawn.diff(worker)
    assert [(o, f, p.empty) for o, f, p in changes] == [(1, 1009, True), (2, 1005, False)]
    assert drawn.sidecar_objects(changes) == [{"obj_id": 2, "prompts": [
        {"frame": 1005, "points": [], "labels": [], "box": [1.0, 2.0, 30.0, 40.0]}]}]
    with pytest.raises(ValueError, match="worker's prompts cannot be read"):
        prompts.PromptBook.from_sidecar({"objects": [{"obj_id": 1, "prompts": [{"points": [[1, 2]]}]}]})
