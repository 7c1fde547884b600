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
    folder beside the object's mattes, same file names, as 16-bit PNG."""
    folder, name = os.path.split(matte_pattern)
    stem = re.sub(r"\.[A-Za-z0-9]+$", "", name)
    return os.path.join(folder, BEFORE_FOLDER, stem + ".png")


def frame_file(pattern: str, frame: int) -> str:
    """`name.####.png` -> `name.0012.png`."""
    match = list(re.finditer(r"#+", pattern))[-1]
    return pattern[:match.start()] + str(frame).rjust(len(match.group(0)), "0") + pattern[match.end():]


def png_bytes(samples: bytes, width: int, height: int) -> bytes:
    """A 16-bit grey + alpha PNG of big-endian samples (row-major, top row first; the matte in both,
    so a Read's alpha carries it as the matte files' does): plain zlib, nothing to install in Nuke."""
    if len(samples) != 2 * width * height:
        raise ValueError("%d bytes are not %dx%d 16-bit samples" % (len(samples), width, height))
    stride = 2 * width
    rows = []
    for y in range(height):
        row = samples[y * stride:(y + 1) * stride]
        pairs = bytearray(2 * stride)
        for i in (0, 1):  # each sample twice: grey, then alpha
            pairs[i::4] = row[i::2]
            pairs[2 + i::4] = row[i::2]
        rows.append(b"\x00" + bytes(pairs))
    rows_data = b"".join(rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 16, 4, 0, 0, 0)  # 16 bits, grey + alpha
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows_data, 6)) + \
        chunk(b"IEND", b"")


def alpha_samples(alpha: Any) -> bytes:
    """An object's H*W alpha (float16 from `get_frame(what="alpha")`: numpy, or raw little-endian
    bytes where Nuke's Python has no numpy) as big-endian 16-bit samples."""
    if hasattr(alpha, "astype"):  # numpy
        scaled = (alpha.astype("float32").clip(0.0, 1.0) * 65535.0 + 0.5).astype(">u2")
        return bytes(scaled.tobytes())
    raw = alpha.tobytes() if hasattr(alpha, "tobytes") else bytes(alpha)  # the bridge's RawArray
    code, size = {"float16": ("e", 2), "float32": ("f", 4), "uint8": ("B", 1)}[str(getattr(alpha, "dtype", "float16"))]
    values = struct.unpack("<%d%s" % (len(raw) // size, code), raw)
    return struct.pack(">%dH" % len(values), *(int(min(max(float(v), 0.0), 1.0) * 65535.0 + 0.5) for v in values))


def write_before(pattern: str, frame: int, alpha: Any, width: int, height: int) -> str:
    """Write one object's previous result (its alpha) on `frame`, atomically; returns the file."""
    path = frame_file(pattern, frame)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temp = path + ".part"
    with open(temp, "wb") as handle:
        handle.write(png_bytes(alpha_samples(alpha), width, height))
    os.replace(temp, path)
    return path
