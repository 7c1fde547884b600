"""The nuke-free side of corrections in the Nuke node: when Track re-tracks a span, what the node
lists and labels, and the previous results written for the viewer (plain zlib PNGs)."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest

from samroto_nuke.corrections import (Marks, alpha_samples, before_pattern, frames_to_ranges, lock_range, png_bytes,
                                      ranges_to_frames, wants_span, with_label_line, write_before)

SIDECAR = {"objects": [{"obj_id": 1, "prompts": [{"frame": 1002}, {"frame": 1004}]},
                       {"obj_id": 2, "prompts": [{"frame": 1006}]}]}


def test_track_re_tracks_a_span_only_on_a_corrected_frame() -> None:
    assert wants_span(SIDECAR, 1, 1004, range(1001, 1009))
    assert not wants_span(SIDECAR, 1, 1004, [1001, 1002])  # prompted, never tracked there: to the end
    assert not wants_span(SIDECAR, 1, 1005, range(1001, 1009))  # tracked, no prompt there
    assert not wants_span(None, 1, 1004, range(1001, 1009))  # a worker that cannot say: to the end


def test_ranges_locks_and_what_the_node_shows() -> None:
    assert frames_to_ranges([1007, 1003, 1004, 1005]) == [[1003, 1005], [1007, 1007]]
    assert ranges_to_frames([[1003, 1005], [1007, 1007]]) == [1003, 1004, 1005, 1007]
    assert lock_range(1010, 990, 1001, 1008) == (1001, 1008)
    with pytest.raises(ValueError, match="outside the plate's frames 1001-1008"):
        lock_range(2000, 2001, 1001, 1008)
    marks = Marks.from_sidecar(SIDECAR, {1: [[1007, 1008]]})
    assert marks == Marks.from_history(marks.to_json())
    to_nuke = lambda frame: frame - 1000  # noqa: E731  (a Read starting the plate at frame 1)
    assert marks.text({1: "hero", 2: "car"}, to_nuke) == "hero: keys 2, 4; locked 7-8\ncar: keys 6; locked none"
    assert marks.label_line(1, to_nuke) == "keys 2 4 | locked 7-8" and marks.label_line(3, to_nuke) == ""
    # the artist's lines and the review count stay; the keys line is replaced, never doubled
    assert with_label_line("my note\nkeys 1\n3 frames to review", "keys 2 4") == "my note\n3 frames to review\nkeys 2 4"
    assert with_label_line("my note\nkeys 2 4", "") == "my note"


def test_previous_results_are_16_bit_grey_and_alpha_pngs_beside_the_mattes(tmp_path: Path) -> None:
    pattern = before_pattern(str(tmp_path / "shot_obj1_matte.####.exr"))
    assert pattern == str(tmp_path / "samroto_before" / "shot_obj1_matte.####.png")
    alpha = np.array([[0.0, 0.25, 1.0], [0.5, 0.75, 0.125]], np.float16)
    path = write_before(pattern, 12, alpha, 3, 2)
    assert path == str(tmp_path / "samroto_before" / "shot_obj1_matte.0012.png")
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    assert image.shape == (2, 3, 4) and image.dtype == np.uint16
    assert np.array_equal(image[..., 0], image[..., 3])
    assert np.abs(image[..., 3] / 65535.0 - alpha.astype(np.float32)).max() < 1e-5
    # without numpy (Nuke's Python): the bridge's raw little-endian half floats give the same samples

    class Raw:
        dtype = "float16"

        def tobytes(self) -> bytes:
            return alpha.tobytes()

    assert alpha_samples(Raw()) == alpha_samples(alpha)
    with pytest.raises(ValueError, match="not 3x2 16-bit samples"):
        png_bytes(struct.pack(">2H", 1, 2), 3, 2)
