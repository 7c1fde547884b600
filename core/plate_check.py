"""Checking a plate before any work, and what to do about frames missing from a sequence.

A farm job should fail in its first second with every problem listed, not after the model loaded
and nine mattes were written. `check_plate` opens the plate and, for an image sequence, looks at
every frame of the range: present, its header readable, and of the sequence's size. It reads only
headers where the format allows (EXR, PNG), so it is cheap on long shots.

Sequences with gaps get the choice a compositor's Read node gives (`MISSING_POLICIES`):

- `error` (default): refuse the plate, listing every missing frame at once;
- `hold`: a missing frame shows the nearest earlier present frame (the first present one before
  the first), so tracking goes through the gap and every frame gets a matte;
- `skip`: tracked the same way, but no matte is written for a missing frame.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .frames import FrameError, FrameSource, ImageSequenceFrames, image_size, open_frames

MISSING_POLICIES = ("error", "hold", "skip")


@dataclass
class PlateCheck:
    """What `check_plate` found: the plate's frames and size, and its problems."""

    plate: str
    frame_numbers: range
    width: int
    height: int
    missing: list[int] = field(default_factory=list)  # frames of the range without a file
    unreadable: list[str] = field(default_factory=list)  # one message per frame that cannot be used

    def problems(self, missing: str = "error") -> list[str]:
        """Messages for what makes the plate unusable under the `missing` policy (empty: usable)."""
        out = list(self.unreadable)
        if self.missing and missing == "error":
            out.insert(0, f"{len(self.missing)} of {len(self.frame_numbers)} frames of {self.plate!r} are missing: "
                          f"{format_frames(self.missing)} (--missing hold or skip tracks through the gaps)")
        if len(self.missing) == len(self.frame_numbers):
            out.insert(0, f"no frame of {self.plate!r} exists in {self.frame_numbers.start}-"
                          f"{self.frame_numbers.stop - 1}")
        return out


def check_plate(plate: Any, *, first: int | None = None, last: int | None = None,
                colour: Any = None) -> PlateCheck:
    """Open the plate (FrameError when it cannot be opened at all) and check each frame's file;
    `colour` as `open_frames` takes it."""
    with open_frames(plate, first=first, last=last, colour=colour) as source:
        check = PlateCheck(plate=_name(plate, source), frame_numbers=range(source.first_frame, source.last_frame + 1),
                           width=source.width, height=source.height)
        if isinstance(source, ImageSequenceFrames):
            for frame in source.frame_numbers:
                path = source.path_of(frame)
                if not os.path.isfile(path):
                    check.missing.append(frame)
                    continue
                try:
                    size = image_size(path)
                except FrameError as exc:
                    check.unreadable.append(f"frame {frame}: {exc}")
                    continue
                if size != (source.height, source.width):
                    check.unreadable.append(f"frame {frame}: {path!r} is {size[1]}x{size[0]}, but the sequence is "
                                            f"{source.width}x{source.height}")
    return check


def format_frames(frames: Sequence[int], limit: int = 40) -> str:
    """Frame numbers as ranges: `1005, 1010-1012, 1020`."""
    spans: list[tuple[int, int]] = []
    for frame in sorted(frames):
        if spans and frame == spans[-1][1] + 1:
            spans[-1] = (spans[-1][0], frame)
        else:
            spans.append((frame, frame))
    parts = [str(a) if a == b else f"{a}-{b}" for a, b in spans]
    if len(parts) > limit:
        parts = parts[:limit] + [f"... ({len(parts) - limit} more ranges)"]
    return ", ".join(parts)


class HoldFrames(FrameSource):
    """A sequence whose missing frames show the nearest earlier present frame (or the first present one)."""

    def __init__(self, inner: FrameSource, missing: Sequence[int]) -> None:
        self.inner = inner
        self.missing = frozenset(int(f) for f in missing)
        self.present = [f for f in inner.frame_numbers if f not in self.missing]
        if not self.present:
            raise FrameError(f"every frame of {inner!r} is missing")
        self.frame_numbers = inner.frame_numbers
        self.height, self.width = inner.height, inner.width

    def held_frame(self, frame: int) -> int:
        """The present frame whose picture stands for `frame`."""
        if frame not in self.missing:
            return frame
        i = bisect.bisect_right(self.present, frame)
        return self.present[i - 1] if i else self.present[0]

    def read(self, frame: int) -> np.ndarray:
        self.index_of(frame)
        return self.inner.read(self.held_frame(int(frame)))

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "missing": sorted(self.missing)}

    def close(self) -> None:
        self.inner.close()

    def _name(self) -> str:
        return f"HoldFrames({self.inner!r})"


def _name(plate: Any, source: FrameSource) -> str:
    if isinstance(plate, (str, os.PathLike)):
        return os.fspath(plate)
    return repr(source)


def off_plate(width: int, height: int, *, points: Any = (), box: Any = None) -> str | None:
    """Why prompts cannot be on a `width`x`height` plate (None when they fit): a point outside it, a
    box of zero size or wholly outside it. Coordinates are plate pixels; the edges (0 and width or
    height) count as inside. A box may reach past the edges, as artists drag them."""
    size = f"the {width}x{height} plate (x 0-{width}, y 0-{height})"
    for x, y in np.asarray(points, dtype=np.float64).reshape(-1, 2):
        if not (0 <= x <= width and 0 <= y <= height):
            return f"point ({x:g}, {y:g}) is outside {size}"
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
        if x1 <= x0 or y1 <= y0:
            return (f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) has no area: give left, top, right, bottom with "
                    "right > left and bottom > top")
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            return f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) is outside {size}"
    return None
