"""Settings of the Nuke plug-in, as dataclasses: how to reach the worker, how to track, how to
build Roto shapes, and the names of the knobs on the SamRoto node.

The node's knobs are the persistent form (they are saved with the Nuke script); `host.py` reads
them into these dataclasses on the main thread and the rest of the plug-in only sees the
dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Tuple

NODE_CLASS_LABEL = "SamRoto"
"""Name prefix of the SamRoto node (a Group with the knobs below); Nuke appends 1, 2, ..."""

# Knobs on the SamRoto node -------------------------------------------------------------------

MARKER_KNOB = "samroto_node"         # hidden; tells a SamRoto NoOp from any other NoOp
SESSION_KNOB = "samroto_session"     # hidden; the worker session id of this node
PLATE_KEY_KNOB = "samroto_plate"     # hidden; the plate the session was opened on
STATUS_KNOB = "samroto_status"       # read-only text line
OBJECT_KNOB = "samroto_object"       # which object the knob prompts describe (1, 2, ...)
PROMPT_SOURCE_KNOB = "samroto_prompt_source"
ROTO_INPUT_KNOB = "samroto_roto_node"  # name of a Roto node whose shapes are prompts
ROTO_GROUPING_KNOB = "samroto_roto_grouping"
TOLERANCE_KNOB = "samroto_shape_tolerance"
HOLES_KNOB = "samroto_roto_holes"
MATTE_DIR_KNOB = "samroto_matte_dir"
BOX_ENABLE_KNOB = "samroto_box_on"
BOX_KNOB = "samroto_box"
PREVIEW_KNOB = "samroto_preview"     # checkbox: new sessions track at a lower resolution (fast feedback)
PREVIEW_RESOLUTION_KNOB = "samroto_preview_resolution"
MATTING_KNOB = "samroto_matting"     # menu: a learned matting pass on the mattes' edges ("none" or a model)
MATTING_CHOICES: Tuple[str, ...] = ("none", "vitmatte-small", "vitmatte-base")
MEMORY_KNOB = "samroto_memory"       # menu: which tracked frames enter memory (bridge protocol MEMORY_MODES)
DEFAULT_MEMORY_MODE = "sam2"         # exact SAM 2
SESSION_RESOLUTION_KNOB = "samroto_session_resolution"  # hidden; the session's preview size (0: final)
MODE_KNOB = "samroto_mode"           # read-only text line: PREVIEW or final mattes
FINAL_KNOB = "samroto_final"         # button: full-resolution mattes from a preview's prompts
TRACK_KNOB = "samroto_track"         # button: the span after a correction, else both ways to the end
SESSIONS_KNOB = "samroto_sessions"   # hidden; JSON {plate key: session id}: one session per plate (and view)
ALPHA_KNOB = "samroto_alpha_from"    # the Group's alpha: every object merged, or the chosen object
OBJECT_NAMES_KNOB = "samroto_object_names"  # "hero, car": names of objects 1, 2, ... (channels, layers)
RANGE_KNOB = "samroto_range"         # frames to track: the input's, the script's, or custom
RANGE_FIRST_KNOB = "samroto_range_first"
RANGE_LAST_KNOB = "samroto_range_last"
WORKER_KNOB = "samroto_worker"       # worker address for this node ("" : preference, $SAMROTO_WORKER, announced)
RENDER_DIR_KNOB = "samroto_render_dir"  # shared folder for plates rendered from a non-Read upstream
VIEW_KNOB = "samroto_view"           # the view of a stereo (%V) plate this node tracks
CLICK_ADDS_KNOB = "samroto_click_adds"  # what a Ctrl+click in the viewer adds when Shift cannot be read
CLICK_KINDS: Tuple[str, ...] = ("include", "exclude")
ADD_INCLUDE_KNOB = "samroto_add_include"  # viewer handle: drop it on the image to add an include point
ADD_EXCLUDE_KNOB = "samroto_add_exclude"  # ... an exclude point (the handle then jumps back)
MARKS_KNOB = "samroto_marks"         # read-only text: every object's keyframes and locked ranges
TRACKED_KNOB = "samroto_tracked"     # hidden; JSON {obj_id: [[first, last], ...]} plate frames tracked
LOCK_FRAMES_KNOB = "samroto_lock_frames"  # what Lock / Unlock apply to: the current frame or the frame range
LOCK_FRAME_MODES: Tuple[str, ...] = ("current frame", "frame range")
BEFORE_KNOB = "samroto_show_before"  # checkbox: the viewer shows each frame's previous result
HISTORY_KNOB = "samroto_history"     # read-only text: the session's last undo / redo steps

ALPHA_SOURCES: Tuple[str, ...] = ("all objects", "chosen object")
RANGE_MODES: Tuple[str, ...] = ("input", "global", "custom")
MATTE_LAYER = "samroto"              # per-object channels: samroto.<object name> (4 per layer: samroto2, ...)
CHANNELS_PER_LAYER = 4
QUICK_RESULT_DELAY_S = 0.35          # a prompt edit is sent this long after the last knob change

DEFAULT_PREVIEW_RESOLUTION = 512
PREVIEW_TILE_COLOR = 0xFF8000FF      # orange node tiles: a preview, not the final mattes

PROMPT_SOURCES: Tuple[str, ...] = ("knobs", "roto")
ROTO_GROUPINGS: Tuple[str, ...] = ("layer", "colour")
HOLE_MODES: Tuple[str, ...] = ("skip", "layer")


def positive_point_knob(index: int) -> str:
    """XY knob of the index-th positive click (1-based)."""
    return "samroto_pos%d" % index


def positive_enable_knob(index: int) -> str:
    return "samroto_pos%d_on" % index


def negative_point_knob(index: int) -> str:
    return "samroto_neg%d" % index


def negative_enable_knob(index: int) -> str:
    return "samroto_neg%d_on" % index


# Buttons: knob name -> action understood by host.on_button. Only "Send prompts" sends prompts
# (a prompt knob edit sends the current frame's prompts by itself, after QUICK_RESULT_DELAY_S);
# the track buttons track what the worker holds.
ACTIONS: Tuple[Tuple[str, str, str], ...] = (
    # (knob name, label, action)
    ("samroto_send", "Send prompts", "prompts"),
    ("samroto_load", "Show worker prompts", "load"),
    ("samroto_track_backward", "<< Track backward", "backward"),
    ("samroto_track_frame", "Current frame", "frame"),
    ("samroto_track_forward", "Track forward >>", "forward"),
    ("samroto_track_both", "<< Track both >>", "both"),
    ("samroto_cancel", "Cancel", "cancel"),
    ("samroto_make_roto", "Create Roto shapes", "roto"),
    ("samroto_reset", "Reset session", "reset"),
    (FINAL_KNOB, "Compute final mattes", "final"),  # enabled while the session is a preview
    ("samroto_start_worker", "Start worker", "start_worker"),
    # after a correction only the span it affects (the chosen object, up to its neighbouring keyframes)
    (TRACK_KNOB, "Track", "track"),
    ("samroto_lock", "Lock", "lock"),
    ("samroto_unlock", "Unlock", "unlock"),
    ("samroto_undo", "Undo", "undo"),
    ("samroto_redo", "Redo", "redo"),
)
TRACK_ACTIONS: Tuple[str, ...] = ("forward", "backward", "both", "frame", "track")
HISTORY_ACTIONS: Tuple[str, ...] = ("undo", "redo")
WORKER_ACTIONS: Tuple[str, ...] = TRACK_ACTIONS + ("prompts", "load", "roto", "reset", "final", "lock", "unlock",
                                                   "undo", "redo", "before")


@dataclass(frozen=True)
class PromptLayout:
    """How many viewer-draggable prompt knobs the node carries."""

    positive_points: int = 8
    negative_points: int = 8

    def __post_init__(self) -> None:
        if not (1 <= self.positive_points <= 32 and 0 <= self.negative_points <= 32):
            raise ValueError("a SamRoto node has 1 to 32 positive and 0 to 32 negative point knobs, got %d and %d"
                             % (self.positive_points, self.negative_points))


@dataclass(frozen=True)
class ConnectionSettings:
    """How to reach the worker. None fields follow the bridge client's own discovery:
    `$SAMROTO_WORKER`, the address the worker announced in the config folder, the token file in
    `$SAMROTO_CONFIG_DIR` (or the user's config folder)."""

    address: Optional[str] = None
    config_dir: Optional[str] = None
    timeout_s: float = 10.0
    retries: int = 1
    ping_timeout_s: float = 1.0  # a dead worker is reported after this, before any work is queued

    def __post_init__(self) -> None:
        if self.timeout_s <= 0 or self.retries < 0 or self.ping_timeout_s <= 0:
            raise ValueError("timeout_s and ping_timeout_s must be positive and retries at least 0")


@dataclass(frozen=True)
class TrackSettings:
    """How propagations run. `matte_dir`: where the worker writes the mattes (None: next to the
    plate when that folder is writable, else in the worker's session folder).
    `preview_resolution`: new sessions are PREVIEW sessions tracking at this internal size (a
    multiple of 32 below the model's, which the worker checks); None: full resolution."""

    matte_dir: Optional[str] = None
    credit: int = 8
    matte_format: str = "exr"
    preview_resolution: Optional[int] = None
    matting: Optional[str] = None  # "vitmatte-small" / "vitmatte-base": production alpha from a matting pass
    memory_mode: str = DEFAULT_MEMORY_MODE  # for new sessions; the worker checks the name

    def __post_init__(self) -> None:
        if not self.memory_mode:
            raise ValueError("memory_mode must name a memory mode (sam2, presence, ...)")
        if self.matting is not None and self.matting not in MATTING_CHOICES[1:]:
            raise ValueError("matting must be one of %s, got %r" % (", ".join(MATTING_CHOICES), self.matting))
        if self.preview_resolution is not None and not (self.preview_resolution >= 64
                                                        and self.preview_resolution % 32 == 0):
            raise ValueError("the preview resolution must be a multiple of 32 from 64 up (e.g. 512), got %d"
                             % self.preview_resolution)
        if self.credit < 1:
            raise ValueError("credit must be at least 1, got %d" % self.credit)
        if self.matte_format not in ("exr", "png"):
            raise ValueError("matte_format must be 'exr' or 'png', got %r" % (self.matte_format,))


@dataclass(frozen=True)
class RotoSettings:
    """How tracked mattes become Roto shapes.

    tolerance: largest distance in pixels between a shape and the matte edge, on any frame
    (smaller: more points); None lets the worker choose (one model-input pixel at the plate's
    resolution). holes: "skip" leaves holes out (the shapes cover the object's outline and its
    separate islands), "layer" puts hole shapes in their own `<object>_holes` layer for the
    artist to subtract (Nuke's blending enum is not part of the Python API we can rely on, so
    the plug-in does not set a blending mode)."""

    tolerance: Optional[float] = None
    holes: str = "skip"

    def __post_init__(self) -> None:
        if self.tolerance is not None and not self.tolerance > 0:
            raise ValueError("the shape tolerance must be positive (pixels) or None, got %r" % (self.tolerance,))
        if self.holes not in HOLE_MODES:
            raise ValueError("holes must be one of %s, got %r" % (", ".join(HOLE_MODES), self.holes))


@dataclass(frozen=True)
class PluginSettings:
    """Everything a worker job needs besides the plate and the prompts."""

    connection: ConnectionSettings = field(default_factory=ConnectionSettings)
    track: TrackSettings = field(default_factory=TrackSettings)
    roto: RotoSettings = field(default_factory=RotoSettings)
    layout: PromptLayout = field(default_factory=PromptLayout)
