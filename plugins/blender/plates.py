"""A Movie Clip's files as a worker plate, and its frame numbering. No bpy.

The worker reads the clip's own files: an image sequence becomes a `####` pattern, a movie file
is passed as is. Frames are addressed by the plate's own numbers on the wire (`shot.1001.png`
is frame 1001; a movie's first frame is 0), while Blender animates masks on scene frames.

Blender maps a scene frame to a file as (`get_sequence_filepath` / `movieclip_load_movie_file`):

    sequence: file number = number in clip.filepath + scene frame - clip.frame_start + clip.frame_offset
    movie:    frame index = scene frame - clip.frame_start + clip.frame_offset

so both are `plate = base + scene - frame_start + frame_offset` with `base` the number in the
clip's file name (0 for movies), which `ClipPlate` holds. Proxies use the same numbers
(`get_proxy_filepath`: `framenr - start_frame + 1 + frame_offset`), so they never change the mapping.
A scene frame whose file is not on disk shows nothing in Blender; the add-on refuses prompts there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Callable, Iterable, List, Tuple

SEQUENCE = "SEQUENCE"
MOVIE = "MOVIE"

# The frame number is the last run of digits in the file name before its extension
# (Blender's BLI_path_sequence_decode).
_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


class PlateError(ValueError):
    """The clip cannot be given to the worker (no files on disk, unsupported source)."""


@dataclass(frozen=True)
class ClipColour:
    """How Blender shows the clip: its OCIO config, the clip's colourspace, the scene's display
    and view transform. Empty values leave the choice to the worker."""

    config: str = ""
    colorspace: str = ""
    display: str = ""
    view: str = ""


@dataclass(frozen=True)
class ClipPlate:
    """What the worker needs to open a session on a clip, and the frame mapping.

    pattern: absolute path for the worker (`/shots/sh010/plate.####.exr` or the movie file);
    first/last: the plate frames the clip shows; base, frame_start, frame_offset: Blender's
    mapping (see the module docstring).
    """

    kind: str
    pattern: str
    first: int
    last: int
    base: int
    frame_start: int
    frame_offset: int

    def plate_frame(self, scene_frame: int) -> int:
        return self.base + int(scene_frame) - self.frame_start + self.frame_offset

    def scene_frame(self, plate_frame: int) -> int:
        return int(plate_frame) - self.base + self.frame_start - self.frame_offset

    @property
    def scene_range(self) -> Tuple[int, int]:
        return self.scene_frame(self.first), self.scene_frame(self.last)

    def contains(self, plate_frame: int) -> bool:
        return self.first <= plate_frame <= self.last


def sequence_pattern(path: str) -> Tuple[str, int, int]:
    """`/a/shot.1001.png` -> (`/a/shot.####.png`, 1001, 4): the pattern, the file's frame
    number and its padding. PlateError when the file name has no frame number."""
    folder, name = os.path.split(path)
    stem, ext = os.path.splitext(name)
    match = _LAST_NUMBER.search(stem)
    if match is None:
        raise PlateError("the clip file %s has no frame number in its name, so it is not an image sequence" % path)
    digits = match.group(1)
    pattern = stem[:match.start()] + "#" * len(digits) + stem[match.end():] + ext
    return os.path.join(folder, pattern), int(digits), len(digits)


def frame_path(pattern: str, frame: int) -> str:
    """The file of `frame` in a `####` pattern (numbers wider than the padding are written in full)."""
    folder, name = os.path.split(pattern)
    match = re.search(r"#+(?!.*#)", name)
    if match is None:
        return pattern
    number = "%0*d" % (len(match.group(0)), frame)
    return os.path.join(folder, name[:match.start()] + number + name[match.end():])


MAX_SEQUENCE_FRAMES = 1_000_000
"""Longest image sequence the add-on walks on disk (a sanity bound, far above any shot)."""


def sequence_run(pattern: str, base: int, exists: Callable[[str], bool] = os.path.isfile) -> Tuple[int, int]:
    """The first and last frame number of the unbroken run of files around `base` (the file the
    clip points at): Blender plays a sequence until the first missing number, so a gap ends it."""
    first = last = base
    while base - first < MAX_SEQUENCE_FRAMES and first > 0 and exists(frame_path(pattern, first - 1)):
        first -= 1
    while last - base < MAX_SEQUENCE_FRAMES and exists(frame_path(pattern, last + 1)):
        last += 1
    return first, last


def describe_clip(filepath: str, source: str, *, frame_start: int, frame_offset: int, frame_duration: int,
                  clip_name: str = "", exists: Callable[[str], bool] = os.path.isfile) -> ClipPlate:
    """The worker plate for a clip whose absolute file path is `filepath`.

    The plate is what is on disk, whatever the clip's start frame and offset: every file of the
    sequence's unbroken run around the clip's own file (an offset of +3 shows the fourth file on
    the start frame, one of -2 shows nothing on the first two frames; both are the same files),
    or every frame of the movie (`frame_duration`, Blender's own count, which does not change with
    the offset). Proxies change only what the Clip Editor displays, never these numbers. Raises
    PlateError with a message for the artist when the files are not on disk.
    """
    label = "clip %r" % clip_name if clip_name else "the clip"
    if not filepath:
        raise PlateError("%s has no file path" % label)
    if filepath.startswith("//") or not os.path.isabs(filepath):  # `//` is Blender's relative to the .blend
        raise PlateError("%s points to the relative path %s: save the .blend file first or make the path absolute"
                         % (label, filepath))
    if source == MOVIE:
        if not exists(filepath):
            raise PlateError("%s has no file on disk: %s does not exist" % (label, filepath))
        if frame_duration <= 0:
            raise PlateError("%s: Blender could not read any frame of the movie %s" % (label, filepath))
        return ClipPlate(MOVIE, filepath, 0, frame_duration - 1, 0, frame_start, frame_offset)
    if source != SEQUENCE:
        raise PlateError("%s has source %r; only image sequences and movie files can be tracked" % (label, source))
    pattern, base, _ = sequence_pattern(filepath)
    if not exists(frame_path(pattern, base)):
        raise PlateError("%s has no files on disk: %s does not exist (pattern %s)"
                         % (label, frame_path(pattern, base), pattern))
    first, last = sequence_run(pattern, base, exists)
    return ClipPlate(SEQUENCE, pattern, first, last, base, frame_start, frame_offset)


# ---------------------------------------------------------------------------------------------
# Frame sets as short strings ("1001-1012,1020"), for storing in the .blend file


def frames_to_ranges(frames: Iterable[int]) -> str:
    """Sorted, merged runs: [3, 1, 2, 7] -> "1-3,7"."""
    ordered = sorted(set(int(f) for f in frames))
    runs: List[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        runs.append(str(ordered[i]) if i == j else "%d-%d" % (ordered[i], ordered[j]))
        i = j + 1
    return ",".join(runs)


def ranges_to_frames(text: str) -> List[int]:
    """Inverse of `frames_to_ranges`; ValueError naming the bad part."""
    frames: List[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        match = re.fullmatch(r"(-?\d+)(?:-(-?\d+))?", part)
        if match is None:
            raise ValueError("bad frame range %r in %r" % (part, text))
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) is not None else lo
        if hi < lo:
            raise ValueError("frame range %r runs backwards" % part)
        frames.extend(range(lo, hi + 1))
    return sorted(set(frames))

