"""Where the plate comes from: the upstream Read node's file and frame range, or a render of the
upstream nodes to a temporary EXR sequence.

Frame numbers. The worker addresses frames by the *plate's* numbers: the numbers in the file
names of an image sequence (1001, 1002, ...), or 0, 1, ... for the frames of a movie file. Nuke's
timeline can differ: a Read node can shift its clip (`frame_mode` "start at" / "offset"), and a
movie's first frame sits at Nuke frame 1. `PlateSource.offset` is that shift:
``nuke_frame = plate_frame + offset``. Mattes are written with the plate's numbers, so the matte
Read node gets the same offset, and Roto keys are set at ``plate_frame + offset``.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

# Same list as the worker's frame sources (core/frames.py); the worker numbers movie frames from 0.
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mxf", ".mpg", ".mpeg", ".ts",
                              ".mts", ".m2ts", ".gif"})
IMAGE_EXTENSIONS = frozenset({".exr", ".dpx", ".png", ".jpg", ".jpeg", ".tif", ".tiff"})

# `####` (padding = count), `%04d` / `%d`; only in the file name, the last one is the frame number.
_FRAME_TOKEN = re.compile(r"#+|%(?:0(\d+))?d")
# nodes that pass their input through untouched: the plate is further up
PASS_THROUGH_CLASSES = frozenset({"Dot"})


class UnsupportedInput(ValueError):
    """The node's input cannot be used as a plate; the message says why and what to do."""


def _split_token(path: str) -> Tuple[str, str, str, int]:
    """(folder + name before the token, token, rest, padding) of a sequence path."""
    folder, name = os.path.split(path)
    matches = list(_FRAME_TOKEN.finditer(name))
    if not matches:
        raise UnsupportedInput("%r has no frame number token (#### or %%04d)" % path)
    token = matches[-1]
    text = token.group(0)
    padding = len(text) if text.startswith("#") else int(token.group(1) or 0)
    head = os.path.join(folder, name[:token.start()]) if folder else name[:token.start()]
    return head, text, name[token.end():], padding


def has_frame_token(path: str) -> bool:
    return bool(_FRAME_TOKEN.search(os.path.basename(path)))


def to_hash_pattern(path: str) -> str:
    """`plate.%04d.exr` -> `plate.####.exr`; `%d` -> `#` (no padding). Hashes stay as they are."""
    head, _, tail, padding = _split_token(path)
    return head + "#" * max(1, padding) + tail


def to_printf_pattern(path: str) -> str:
    """`plate.####.exr` -> `plate.%04d.exr`; a single `#` -> `%d`. printf forms stay as they are."""
    head, _, tail, padding = _split_token(path)
    return head + ("%%0%dd" % padding if padding > 1 else "%d") + tail


def frame_path(pattern: str, frame: int) -> str:
    """The file of one frame: `plate.####.exr`, 1001 -> `plate.1001.exr` (wider numbers in full)."""
    head, _, tail, padding = _split_token(pattern)
    digits = "%d" % abs(frame)
    return head + ("-" if frame < 0 else "") + digits.rjust(padding, "0") + tail


def pattern_from_frame_path(path: str, frame: int) -> str:
    """The sequence pattern of a file named with its frame number: (`m.1001.exr`, 1001) -> `m.####.exr`.

    The last run of digits in the file name equal to `frame` is the frame number; its width is
    the padding (a number wider than the padding cannot be told apart, so `10000` gives `#####`)."""
    folder, name = os.path.split(path)
    runs = [m for m in re.finditer(r"-?\d+", name) if int(m.group(0)) == int(frame)]
    if not runs:
        raise ValueError("the file name %r does not contain the frame number %d" % (name, frame))
    run = runs[-1]
    text = run.group(0).lstrip("-")
    hashes = "#" * len(text)
    return os.path.join(folder, name[:run.start()] + hashes + name[run.end():])


@dataclass(frozen=True)
class ReadInfo:
    """The knobs of a Read node that matter here, as plain values (read by host.py).

    file: the file knob, with TCL evaluated where Nuke could (`nuke.filename`); first/last: the
    clip's frame range in the file's own numbers; frame_mode: "expression", "start at" or
    "offset"; frame: the frame knob's text (the start frame, the offset or an expression)."""

    name: str
    file: str
    first: int
    last: int
    frame_mode: str = "expression"
    frame: str = ""
    width: int = 0
    height: int = 0
    colorspace: str = ""  # the colorspace knob as Nuke shows it ("ACEScg", "default (scene_linear)", ...)


@dataclass(frozen=True)
class PlateSource:
    """A plate the worker can read, and how its frame numbers map to Nuke's.

    plate: the path the worker opens (a `####` pattern, or a movie file); first/last: the plate's
    own frame numbers the session covers; offset: ``nuke_frame = plate_frame + offset``;
    origin: the Read node's name, or the node rendered to a temporary sequence; view: the view
    of a stereo (`%V`) Read the plate was taken from."""

    plate: str
    first: int
    last: int
    offset: int = 0
    kind: str = "sequence"  # "sequence" | "video"
    origin: str = ""
    rendered: bool = False
    view: str = ""  # the stereo view of a %V Read this plate is ("" : not stereo; not the OCIO view)
    colorspace: str = ""  # the plate's OCIO colourspace ("": the worker decides from the header)

    def __post_init__(self) -> None:
        if self.last < self.first:
            raise UnsupportedInput("the plate's frame range %d-%d is empty" % (self.first, self.last))

    @property
    def key(self) -> str:
        """Identifies the plate: a session opened on another key is not reused."""
        return "%s|%d-%d" % (self.plate, self.first, self.last)

    @property
    def nuke_first(self) -> int:
        return self.first + self.offset

    @property
    def nuke_last(self) -> int:
        return self.last + self.offset

    def to_plate_frame(self, nuke_frame: int) -> int:
        return int(nuke_frame) - self.offset

    def to_nuke_frame(self, plate_frame: int) -> int:
        return int(plate_frame) + self.offset

    def plate_frame_at(self, nuke_frame: int) -> int:
        """The plate frame shown at a Nuke frame; UnsupportedInput when the plate has none there."""
        frame = self.to_plate_frame(nuke_frame)
        if not self.first <= frame <= self.last:
            raise UnsupportedInput("frame %d is outside the plate (Nuke frames %d-%d): go to a frame of the shot"
                                   % (nuke_frame, self.nuke_first, self.nuke_last))
        return frame


def _read_offset(info: ReadInfo) -> int:
    """Nuke frame minus file frame for a Read's `frame_mode`/`frame` knobs."""
    text = (info.frame or "").strip()
    mode = (info.frame_mode or "expression").strip().lower()
    if not text:
        return 0
    try:
        value = int(float(text))
    except ValueError:
        raise UnsupportedInput("%s: its frame knob holds the expression %r; SamRoto follows only 'start at' and "
                               "'offset' frame modes (bake the retime into a new sequence first)"
                               % (info.name, text)) from None
    if mode == "start at":
        return value - info.first
    if mode == "offset":
        return value
    if mode == "expression":
        # a plain number in expression mode shows that one frame on every frame: a freeze frame
        raise UnsupportedInput("%s: its frame knob freezes the clip on frame %s; SamRoto needs a moving plate"
                               % (info.name, text))
    raise UnsupportedInput("%s: unknown frame mode %r" % (info.name, info.frame_mode))


_VIEW_TOKEN = re.compile(r"%[Vv]")


def is_stereo(path: str) -> bool:
    """Whether a file name holds a view token (`%V`: the view's name, `%v`: its first letter)."""
    return bool(_VIEW_TOKEN.search(path or ""))


def with_view(path: str, view: str) -> str:
    """`plate_%V.####.exr` for the view "left" -> `plate_left.####.exr` (`%v` -> `l`)."""
    return path.replace("%V", view).replace("%v", view[:1])


def plate_from_read(info: ReadInfo, *, view: str = "", views: Sequence[str] = ()) -> PlateSource:
    """The plate of a Read node: its sequence pattern or movie file, range and timeline offset.
    A stereo Read (`%V`/`%v` in its file) gives the plate of `view`; without a view it is
    refused with a message naming the views to pick from."""
    path = (info.file or "").strip()
    if not path:
        raise UnsupportedInput("%s has no file: pick a plate in the Read node first" % info.name)
    if is_stereo(path):
        if not view:
            raise UnsupportedInput("%s is a stereo plate (%s): pick the view to track in the SamRoto node's \"view\" "
                                   "knob (%s); use one SamRoto node per view, or switch the knob to track the other "
                                   "view in its own session" % (info.name, os.path.basename(path),
                                                                ", ".join(views) or "left, right"))
        if views and view not in views:
            raise UnsupportedInput("the view %r is not one of this script's views (%s)" % (view, ", ".join(views)))
        path = with_view(path, view)
    else:
        view = ""
    if info.last < info.first:
        raise UnsupportedInput("%s has an empty frame range %d-%d" % (info.name, info.first, info.last))
    offset = _read_offset(info)
    ext = os.path.splitext(path)[1].lower()
    if ext in VIDEO_EXTENSIONS:
        # Nuke numbers a movie's frames from 1 (its Read first/last are 1-based), the worker from 0
        return PlateSource(plate=path, first=info.first - 1, last=info.last - 1, offset=offset + 1, kind="video",
                           origin=info.name, view=view, colorspace=read_colorspace(info.colorspace))
    if ext not in IMAGE_EXTENSIONS:
        raise UnsupportedInput("%s reads %r: SamRoto's worker reads EXR, DPX, PNG, JPEG and TIFF sequences and movie "
                               "files (%s); convert the plate or render it to EXR"
                               % (info.name, os.path.basename(path), ", ".join(sorted(VIDEO_EXTENSIONS))))
    if not has_frame_token(path):
        raise UnsupportedInput("%s reads the single image %r: SamRoto tracks image sequences (name.####.ext) and "
                               "movies" % (info.name, os.path.basename(path)))
    return PlateSource(plate=to_hash_pattern(path), first=info.first, last=info.last, offset=offset,
                       kind="sequence", origin=info.name, view=view, colorspace=read_colorspace(info.colorspace))


@dataclass(frozen=True)
class UpstreamNode:
    """One node on the way up from the SamRoto node's input (read by host.py)."""

    name: str
    node_class: str
    read: Optional[ReadInfo] = None  # set for Read nodes


@dataclass(frozen=True)
class RenderPlan:
    """Render the upstream node to a temporary EXR sequence with a Write node."""

    node_name: str
    pattern: str  # `####` pattern of the files the Write node writes
    first: int
    last: int

    @property
    def printf_pattern(self) -> str:
        return to_printf_pattern(self.pattern)

    def plate(self) -> PlateSource:
        # the Write renders Nuke's working space (the scene_linear role) into the EXR
        return PlateSource(plate=self.pattern, first=self.first, last=self.last, offset=0, kind="sequence",
                           origin=self.node_name, rendered=True, colorspace="scene_linear")


def render_folder(base: Optional[str] = None) -> str:
    """Folder for rendered plates: `$SAMROTO_RENDER_DIR`, else `<temp>/samroto_render`."""
    return base or os.environ.get("SAMROTO_RENDER_DIR") or os.path.join(tempfile.gettempdir(), "samroto_render")


def plan_render(node_name: str, first: int, last: int, *, script_name: str = "", folder: Optional[str] = None,
                salt: str = "") -> RenderPlan:
    """Where a render of `node_name` over Nuke frames `first`-`last` goes. Different scripts,
    nodes or `salt` (e.g. the upstream's hash) give different folders, so stale renders are never
    reused for a changed comp."""
    if last < first:
        raise UnsupportedInput("cannot render %s: the frame range %d-%d is empty" % (node_name, first, last))
    digest = hashlib.sha1(("%s|%s|%s" % (script_name, node_name, salt)).encode("utf-8")).hexdigest()[:10]
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", node_name) or "node"
    pattern = os.path.join(render_folder(folder), "%s_%s" % (safe, digest), "plate.####.exr")
    return RenderPlan(node_name=node_name, pattern=pattern, first=int(first), last=int(last))


def find_plate(chain: Sequence[UpstreamNode], *, view: str = "",
               views: Sequence[str] = ()) -> Tuple[Optional[PlateSource], Optional[UpstreamNode]]:
    """Decide from the nodes above the SamRoto node (nearest first) where the plate comes from.

    Returns (plate, None) for a Read node reached through pass-through nodes (Dot), or
    (None, node) for any other node, which has to be rendered. UnsupportedInput when nothing
    is connected."""
    for node in chain:
        if node.node_class in PASS_THROUGH_CLASSES:
            continue
        if node.node_class == "Read" and node.read is not None:
            return plate_from_read(node.read, view=view, views=views), None
        return None, node
    raise UnsupportedInput("the SamRoto node has no input: connect it to the plate (a Read node or any image)")


def track_range(mode: str, *, input_range: Tuple[int, int], global_range: Tuple[int, int],
                custom_range: Tuple[int, int], plate: Optional[PlateSource] = None) -> Tuple[int, int]:
    """The Nuke frames to track for the frame-range knob: "input" (the node's input, handles
    included), "global" (the script's range) or "custom"; clipped to the plate when given."""
    ranges = {"input": input_range, "global": global_range, "custom": custom_range}
    if mode not in ranges:
        raise UnsupportedInput("unknown frame range %r (one of input, global, custom)" % mode)
    first, last = (int(v) for v in ranges[mode])
    if last < first:
        raise UnsupportedInput("the %s frame range %d-%d is empty" % (mode, first, last))
    if plate is not None:
        clipped = max(first, plate.nuke_first), min(last, plate.nuke_last)
        if clipped[1] < clipped[0]:
            raise UnsupportedInput("the %s frame range %d-%d does not overlap the plate (Nuke frames %d-%d)"
                                   % (mode, first, last, plate.nuke_first, plate.nuke_last))
        return clipped
    return first, last


def frames_in(plate: PlateSource, frames: Sequence[int]) -> List[int]:
    """The given plate frames that fall inside the plate, sorted and unique."""
    return sorted({int(f) for f in frames if plate.first <= int(f) <= plate.last})


# ---------------------------------------------------------------------------------------------
# Colour: the Read's colourspace and the viewer's display and view, for the worker's OCIO


@dataclass(frozen=True)
class HostColour:
    """How Nuke shows the plate: its OCIO config, the Read's colourspace, the viewer's display
    and view. Empty values leave the choice to the worker (its flags, the header, the config)."""

    config: str = ""
    colorspace: str = ""
    display: str = ""
    view: str = ""


def read_colorspace(knob_value: str) -> str:
    """The colourspace a Read's knob names: "ACEScg" as is, "default (ACEScg)" -> "ACEScg", and
    "" for a bare "default" (the worker then reads the file's header, as Nuke's default does)."""
    text = (knob_value or "").strip()
    match = re.match(r"^default\s*\((.*)\)$", text)
    if match:
        return match.group(1).strip()
    return "" if text == "default" else text


def parse_viewer_process(text: str) -> Tuple[str, str]:
    """(display, view) of a viewer process knob: Nuke 14+ shows OCIO pairs as "View (Display)";
    a bare name is a view of the default display; "None" is no view."""
    text = (text or "").strip()
    if not text or text == "None":
        return "", ""
    match = re.match(r"^(.*\S)\s*\(([^()]*)\)$", text)
    if match:
        return match.group(2).strip(), match.group(1).strip()
    return "", text


def config_source(ocio_config: str, custom_path: str, environment: Optional[str]) -> str:
    """The OCIO config Nuke uses, as the worker can load it: $OCIO wins (Nuke uses it too), then
    a custom config file, then Nuke's copies of OCIO's built-in configs ("fn-nuke_cg-config-...",
    loaded by their built-in name); "" for configs only Nuke has (the worker uses its own)."""
    if environment:
        return environment
    choice = (ocio_config or "").strip()
    if choice == "custom":
        return (custom_path or "").strip()
    for prefix in ("fn-nuke_cg-config-", "fn-nuke_studio-config-"):
        if choice.startswith(prefix):
            return "ocio://" + choice[len("fn-nuke_"):]
    return ""
