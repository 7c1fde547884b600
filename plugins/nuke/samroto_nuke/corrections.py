"""Corrections that keep approved work, as the SamRoto node shows and asks for them (no `nuke` here).

After a correction (a prompt of the chosen object on a frame it already has a tracked result
on) the node's Track button re-tracks only the span that correction affects: that object, from
the frame up to its neighbouring keyframes (`propagate(span=True)`); the direction buttons still
track to the end. Approved ranges can be locked. The node lists each object's keyframes and
locked ranges (and its label says the chosen object's), Undo / Redo step the session's history
on the worker, and "show before" puts a frame's previous result in the viewer.
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

LABEL_PREFIX = "keys "
BEFORE_FOLDER = "samroto_before"


def frames_to_ranges(frames: Iterable[int]) -> List[List[int]]:
    """[3, 1, 2, 7] -> [[1, 3], [7, 7]]."""
    ordered = sorted(set(int(f) for f in frames))
    runs: List[List[int]] = []
    for frame in ordered:
        if runs and frame == runs[-1][1] + 1:
            runs[-1][1] = frame
        else:
            runs.append([frame, frame])
    return runs


def ranges_to_frames(ranges: Sequence[Sequence[int]]) -> List[int]:
    return sorted({f for a, b in ranges for f in range(int(a), int(b) + 1)})


def ranges_text(ranges: Sequence[Sequence[int]], to_nuke: Callable[[int], int] = int) -> str:
    """[[1003, 1006], [1010, 1010]] -> "1003-1006, 1010" (in Nuke frames with `to_nuke`)."""
    return ", ".join(str(to_nuke(a)) if a == b else "%d-%d" % (to_nuke(a), to_nuke(b)) for a, b in ranges)


def prompted_frames(sidecar: Optional[Mapping[str, Any]], obj_id: int) -> List[int]:
    """The plate frames an object has prompts on, in a worker's `export_prompts` sidecar."""
    for obj in (sidecar or {}).get("objects") or []:
        if int(obj.get("obj_id", -1)) == int(obj_id):
            return sorted({int(p["frame"]) for p in obj.get("prompts") or []})
    return []


def wants_span(sidecar: Optional[Mapping[str, Any]], obj_id: int, frame: int, tracked: Iterable[int]) -> bool:
    """Whether Track re-tracks a span: the object has a prompt on plate frame `frame` and had
    already been tracked there (a correction)."""
    return frame in prompted_frames(sidecar, obj_id) and int(frame) in set(int(f) for f in tracked)


def lock_range(first: int, last: int, plate_first: int, plate_last: int) -> Tuple[int, int]:
    """A lock or unlock range in plate frames, clipped to the plate; ValueError (for the artist)
    when it misses the plate."""
    first, last = (int(first), int(last)) if first <= last else (int(last), int(first))
    if last < plate_first or first > plate_last:
        raise ValueError("frames %d-%d are outside the plate's frames %d-%d" % (first, last, plate_first, plate_last))
    return max(first, plate_first), min(last, plate_last)


@dataclass
class Marks:
    """Keyframes and locked ranges per object (plate frames)."""

    keyframes: Dict[int, List[int]] = field(default_factory=dict)
    locks: Dict[int, List[List[int]]] = field(default_factory=dict)

    @classmethod
    def from_history(cls, history: Mapping[str, Any]) -> "Marks":
        keyframes = {int(o): sorted(int(f) for f in frames) for o, frames in (history.get("keyframes") or {}).items()}
        locks = {int(o): [[int(a), int(b)] for a, b in ranges] for o, ranges in (history.get("locks") or {}).items()}
        return cls({o: f for o, f in keyframes.items() if f}, {o: r for o, r in locks.items() if r})

    @classmethod
    def from_sidecar(cls, sidecar: Optional[Mapping[str, Any]],
                     locks: Optional[Mapping[int, Sequence[Sequence[int]]]] = None) -> "Marks":
        """From a worker without a history: its prompted frames, and the locks last heard."""
        keyframes = {int(o["obj_id"]): prompted_frames(sidecar, int(o["obj_id"]))
                     for o in (sidecar or {}).get("objects") or []}
        return cls({o: f for o, f in keyframes.items() if f},
                   {int(o): [[int(a), int(b)] for a, b in r] for o, r in (locks or {}).items() if r})

    def to_json(self) -> Dict[str, Any]:
        return {"keyframes": {str(o): f for o, f in sorted(self.keyframes.items())},
                "locks": {str(o): r for o, r in sorted(self.locks.items())}}

    def text(self, names: Mapping[int, str], to_nuke: Callable[[int], int]) -> str:
        """The node's read-only listing, one line per object: "hero: keys 1003, 1009; locked 1010-1012"."""
        lines = []
        for obj_id in sorted(set(self.keyframes) | set(self.locks)):
            keys = ", ".join(str(to_nuke(f)) for f in self.keyframes.get(obj_id, [])) or "none"
            locked = ranges_text(self.locks.get(obj_id, []), to_nuke) or "none"
            lines.append("%s: keys %s; locked %s" % (names.get(obj_id, "obj%d" % obj_id), keys, locked))
        return "\n".join(lines) or "no keyframes yet"

    def label_line(self, obj_id: int, to_nuke: Callable[[int], int]) -> str:
        """The node label's line for the chosen object: "keys 1003 1009 | locked 1010-1012"."""
        keys = self.keyframes.get(obj_id, [])
        locks = self.locks.get(obj_id, [])
        if not keys and not locks:
            return ""
        line = LABEL_PREFIX + (" ".join(str(to_nuke(f)) for f in keys) or "none")
        return line + (" | locked " + ranges_text(locks, to_nuke) if locks else "")


def with_label_line(label: str, line: str) -> str:
    """The node's label with its keyframes line replaced (the artist's own lines stay, in order)."""
    lines = [text for text in label.splitlines() if not text.startswith(LABEL_PREFIX)]
    return "\n".join(lines + ([line] if line else []))


def before_pattern(matte_pattern: str) -> str:
    """Where a frame's previous result of an object is written for the viewer: a `samroto_before`
    folder beside the object's mattes, same file names, as 8-bit PNG."""
    folder, name = os.path.split(matte_pattern)
    stem = re.sub(r"\.[A-Za-z0-9]+$", "", name)
    return os.path.join(folder, BEFORE_FOLDER, stem + ".png")


def frame_file(pattern: str, frame: int) -> str:
    """`name.####.png` -> `name.0012.png`."""
    match = list(re.finditer(r"#+", pattern))[-1]
    return pattern[:match.start()] + str(frame).rjust(len(match.group(0)), "0") + pattern[match.end():]


def png_bytes(mask: bytes, width: int, height: int) -> bytes:
    """An 8-bit grey PNG of a 0/1 mask (row-major, top row first): plain zlib, nothing to install
    inside Nuke."""
    if len(mask) != width * height:
        raise ValueError("the mask has %d values for %dx%d" % (len(mask), width, height))
    scaled = mask.translate(bytes([0, 255] + [255] * 254))
    rows = b"".join(b"\x00" + scaled[y * width:(y + 1) * width] for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b"")


def write_before(pattern: str, frame: int, mask: bytes, width: int, height: int) -> str:
    """Write one object's previous result on `frame` (atomically); returns the file."""
    path = frame_file(pattern, frame)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = path + ".part"
    with open(temp, "wb") as handle:
        handle.write(png_bytes(mask, width, height))
    os.replace(temp, path)
    return path
