"""Memory modes: which tracked frames an object remembers. Exact SAM 2 is the default.

A mode is a `MemoryMode` subclass, registered in `_MODES` below with its name, a one-line
explanation of when to use it (shown by the command line help, the worker's `hello` and the
add-ons; `bridge/protocol.py` MEMORY_MODES keeps the add-ons' copy, a test compares them) and how to
load its class (imported on first use: this registry is torch-free, sidecars and help read it).
A session (`SessionOptions.memory_mode`) makes one instance and consults it at three points:

(a) Recording. After the session tracks a frame (never on a prompt), it calls
    `frame_data(TrackedFrame, state)` for each object tracked there. The `TrackedFrame` holds that
    object's heads (every candidate mask and its predicted IoU, the chosen mask, object score,
    pointer). The returned dict (small JSON values) is stored in the frame's `FrameRecord.data`, in
    both record stores (the disk store writes it in the record's header), and kept in RAM in the
    object's index (`ObjectIndex.data`, a few bytes per frame) so choosing memory reads no records.
    Prompted frames have no data. A record that is replaced (re-tracked, prompted) replaces its data.
(b) Choosing memory. For each object on each tracked (or corrected) frame, `choose_memory(
    MemoryContext)` returns the non-keyframe frames whose memories enter the bank, with their
    temporal positions, and the frames whose object pointers do, with theirs. Keyframes attended to
    (`max_cond_frames_in_attn`) and their pointers come first, from the session, as in SAM 2. A mode
    may only pick frames `ctx.usable(frame)` says have a settled non-keyframe record.
(c) State. Each object has a JSON dict (`new_state()`, then whatever `frame_data` and
    `choose_memory` make of it), saved in prompts.json with the object when the session saves its
    prompts (on prompts, at the start and end of every propagation, on `save()`), and restored on
    reopen. Prefer per-frame data where possible: it is written with each frame, so a session
    killed mid-propagation keeps it.

The base class is exact SAM 2; `tests/core/test_video_parity.py` runs through these hooks.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from .base import FrameData, MemoryChoice, MemoryContext, MemoryMode, ObjectState, TrackedFrame


@dataclass(frozen=True)
class ModeEntry:
    name: str
    explanation: str  # one line: when to use it
    load: Callable[[], type[MemoryMode]]


def _lazy(module: str, cls: str) -> Callable[[], type[MemoryMode]]:
    return lambda: getattr(importlib.import_module(module, __package__), cls)


DEFAULT_MODE = "sam2"

_MODES: dict[str, ModeEntry] = {entry.name: entry for entry in (
    ModeEntry("sam2", "Exact SAM 2 (the default): memory is the last six tracked frames, whatever they hold.",
              _lazy(".sam2", "Sam2Memory")),
    ModeEntry("presence", "Occlusions and objects that leave the frame: only frames where the object is clearly "
                          "present enter memory (SAM 3's filter).", _lazy(".presence", "PresenceMemory")),
    ModeEntry("distractor-aware", "Look-alikes, crowds and occlusions: memory skips frames where the object is lost "
                                  "and keeps anchor frames when a similar object is near (DAM4SAM).",
              _lazy(".distractor_aware", "DistractorAwareMemory")),
)}


class UnknownMemoryMode(ValueError):
    """A memory mode name that is not registered."""


def mode_names() -> list[str]:
    """Registered modes, the default first."""
    return list(_MODES)


def explanations() -> dict[str, str]:
    """Mode name -> one line saying when to use it."""
    return {name: entry.explanation for name, entry in _MODES.items()}


def check_mode(name: str) -> str:
    """`name` if it is a registered mode, else UnknownMemoryMode listing the valid ones."""
    if name not in _MODES:
        raise UnknownMemoryMode(f"unknown memory mode {name!r}; valid: {', '.join(_MODES)}")
    return name


def create_mode(name: str) -> MemoryMode:
    """A fresh instance of mode `name`."""
    return _MODES[check_mode(name)].load()()


__all__ = [
    "DEFAULT_MODE",
    "FrameData",
    "MemoryChoice",
    "MemoryContext",
    "MemoryMode",
    "ModeEntry",
    "ObjectState",
    "TrackedFrame",
    "UnknownMemoryMode",
    "check_mode",
    "create_mode",
    "explanations",
    "mode_names",
]
