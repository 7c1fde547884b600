"""RLE mask previews: numpy and pure-Python paths agree and round-trip."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from samroto.bridge import preview


@settings(max_examples=150, deadline=None)
@given(height=st.integers(0, 12), width=st.integers(0, 12), seed=st.integers(0, 2 ** 32 - 1),
       density=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]))
def test_numpy_and_pure_python_encodings_agree_and_round_trip(height: int, width: int, seed: int,
                                                              density: float) -> None:
    mask = np.random.default_rng(seed).random((height, width)) < density
    fast = preview.encode(mask)
    slow = preview.encode(mask.astype(np.uint8).tobytes(), height, width)
    assert fast == slow
    assert np.array_equal(preview.decode(fast), mask)
    assert preview.decode(fast, as_numpy=False) == mask.astype(np.uint8).tobytes()
    assert preview.area(fast) == int(mask.sum())


def test_runs_start_with_background() -> None:
    assert preview.encode(np.array([[1, 1, 0]]))["counts"] == [0, 2, 1]
    assert preview.encode(np.array([[0, 0, 1]]))["counts"] == [2, 1]
    assert preview.encode([0, 1, 1, 0], 2, 2)["counts"] == [1, 2, 1]


def test_preview_size_keeps_aspect_and_never_upscales() -> None:
    assert preview.preview_size(1080, 1920, 128) == (72, 128)
    assert preview.preview_size(50, 40, 128) == (50, 40)
    assert preview.preview_size(1, 10000, 100) == (1, 100)
    with pytest.raises(ValueError):
        preview.preview_size(10, 10, 0)


@pytest.mark.parametrize("bad, message", [
    ([1, 2], "map"),
    ({"height": 2, "width": 2, "counts": [1, 1]}, "add up to 2, expected 4"),
    ({"height": -1, "width": 2, "counts": []}, "height and width"),
    ({"height": 1, "width": 2, "counts": [1, -1, 2]}, "run lengths"),
])
def test_bad_previews_are_named(bad, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        preview.decode(bad)
    with pytest.raises(ValueError):
        preview.encode([1, 0, 1], 2, 2)
