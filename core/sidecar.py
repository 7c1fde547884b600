"""Prompt sidecars: an artist's prompts for one shot, as a versioned JSON file that replays headless.

An interactive session (local `VideoSession`, or one on the worker through its `export_prompts`
request) exports its prompts with `session_to_sidecar`; `samroto batch` loads the file and replays
the prompts with `apply_prompts` on a fresh session, possibly with a larger model, then tracks the
shot. The file is meant to be written by hand or by other tools too, so it is plain JSON with few
rules, and `load_sidecar` names the field at fault when something is wrong.

Format, version 1 (`*.json`, UTF-8)::

    {
      "format": "samroto.sidecar",          # required, always this string
      "version": 1,                         # required; files from a newer samroto are refused
      "shot": {
        "name": "sh010",                    # optional: names the output files (default: the file name)
        "plate": "plates/sh010.####.exr",   # required: video file or image sequence; relative paths
                                            #   are relative to the sidecar's folder
        "first": 1001, "last": 1096,        # optional: plate frame range (default: the whole plate)
        "colour": {                         # optional: how the plate became what the model saw
          "config": "ocio://studio-config-v5.0.0_aces-v2.1_ocio-v2.6",   # OCIO config file or URI,
                                            #   or "none" (then "view" is a curve: srgb, rec709, linear)
          "colorspace": "ACEScg", "display": "sRGB - Display", "view": "ACES 2.0 - SDR 100 nits (Rec.709)"
        }                                   #   (older files: "view": {"curve": "srgb", "exposure": 0.0})
      },
      "model": {                            # optional: the model the prompts were made with;
        "checkpoint": "sam2.1_hiera_base_plus",      #   official name or checkpoint file
        "config": null                      #   optional: JSON text, a file (`x.json#variant`) or an object
      },
      "session": {"fill_hole_area": 8, "non_overlap_masks": false},   # optional, these defaults;
                                            #   also "matting": "vitmatte-small" | "vitmatte-base" for a
                                            #   learned matting pass on the mattes (default none), and
                                            #   "memory_mode": "sam2" (default) | "presence" | ... (which
                                            #   tracked frames enter memory: samroto.core.memory_modes)
      "objects": [                          # required, at least one object
        {
          "obj_id": 1,                      # required, a unique integer
          "name": "hero",                   # optional: names the object's matte files (default obj<id>)
          "prompts": [                      # required, at least one; frames are plate frame numbers
            {"frame": 1003, "points": [[74, 60], [5, 5]], "labels": [1, 0]},
            {"frame": 1040, "box": [20, 30, 90, 95], "points": [[50, 60]], "labels": [1]},
            {"frame": 1060, "mask": {"height": 1080, "width": 1920, "counts": [1000, 20, 1900, ...]}},
            {"frame": 1080, "mask": {"file": "sh010_masks/hero.1080.png"}}
          ]
        }
      ],
      "metadata": {}                        # optional, free-form (artist, host, notes); not interpreted
    }

Prompts: coordinates are plate pixels (x right, y down). Labels are 1 (positive) and 0 (negative)
clicks. A prompt holds clicks, or a box (with optional clicks), or a mask; a mask replaces the other
prompts of that frame, so it stands alone.

Replay. A sidecar holds each frame's final prompts, not the history of the interactive session: the
replay applies them all to a fresh session, then tracks. A frame prompted in one step (one click
set, a box, a mask) gives exactly the interactive result. Where the artist refined a frame step by
step (clicks added one at a time, or a correction on a frame that was already tracked), each step
saw the previous mask; the replay gives the frame's clicks at once, so its result can differ a little
from what the artist saw, and it is the same on every replay. Replay order does not matter: every
prompt is applied before anything is tracked, so a frame's result depends only on its own prompts.

Masks: stored inline as run-length encoding (the same encoding as the worker's mask previews): the
mask read row by row, top row first, as alternating run lengths starting with a run of 0s (which may
be 0 long); `height * width` must equal the sum of the counts. Inline masks keep a sidecar one
self-contained file that can be copied to a farm or sent over a socket. For masks painted in other
tools, `{"file": "relative/or/absolute.png"}` is also read (8/16-bit gray; non-zero is the object).
Exports always write the inline form.

Unknown keys are errors (a typo would otherwise be silently ignored), except inside `metadata`.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .colour import ColourError, ColourSettings
from .fileio import write_json_atomic
from .memory_modes import DEFAULT_MODE, UnknownMemoryMode, check_mode

if TYPE_CHECKING:
    from .video_session import VideoSession

SIDECAR_FORMAT = "samroto.sidecar"
SIDECAR_VERSION = 1

__all__ = [
    "SIDECAR_FORMAT",
    "SIDECAR_VERSION",
    "ModelSpec",
    "ObjectPrompts",
    "PromptSpec",
    "SessionSettings",
    "ShotSpec",
    "Sidecar",
    "SidecarError",
    "PromptLimits",
    "DEFAULT_PROMPT_LIMITS",
    "apply_prompts",
    "decode_mask_rle",
    "encode_mask_rle",
    "load_sidecar",
    "save_sidecar",
    "session_to_sidecar",
]


class SidecarError(ValueError):
    """A sidecar cannot be read, written or replayed; the message names the file and the field."""


class PromptLimitError(SidecarError):
    """A sidecar or prompt request passes one of the `PromptLimits` (the worker answers `over_limit`)."""


@dataclass(frozen=True)
class PromptLimits:
    """How much prompting one request, sidecar or batch job may ask for. One set of limits for every
    way of adding prompts (the worker's `add_*` requests and `import_prompts`, sidecar files, batch),
    checked before any of it runs, so no client can keep the model busy for minutes with one request.
    The defaults are far above what an artist clicks."""

    max_objects: int = 64                  # objects in one session or sidecar
    max_points: int = 1000                 # clicks in one prompt (one object on one frame)
    max_prompts: int = 2000                # prompt entries (object x frame) in one sidecar
    max_total_points: int = 20_000         # clicks in one sidecar, all prompts together
    max_mask_pixels: int = 8192 * 8192     # a mask prompt's height x width (a 64 MB boolean image)


DEFAULT_PROMPT_LIMITS = PromptLimits()


# ---------------------------------------------------------------------------------------------
# Masks


def encode_mask_rle(mask: np.ndarray) -> dict[str, Any]:
    """mask: H*W (non-zero = object) -> {"height", "width", "counts"} (row-major runs, 0s first)."""
    m = np.asarray(mask)
    if m.ndim != 2 or 0 in m.shape:
        raise SidecarError(f"a mask is H*W with H, W > 0, got shape {m.shape}")
    flat = m.reshape(-1) != 0
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], change, [flat.size]))).tolist()
    if flat[0]:
        counts.insert(0, 0)
    return {"height": int(m.shape[0]), "width": int(m.shape[1]), "counts": [int(c) for c in counts]}


def decode_mask_rle(rle: Mapping[str, Any], *, where: str = "mask",
                    max_pixels: int = DEFAULT_PROMPT_LIMITS.max_mask_pixels) -> np.ndarray:
    """{"height", "width", "counts"} -> H*W bool. The declared size is checked against `max_pixels`
    before anything is allocated (a 200-byte RLE can declare 40000 x 40000)."""
    height = _int(rle.get("height"), f"{where}.height", minimum=1)
    width = _int(rle.get("width"), f"{where}.width", minimum=1)
    if height * width > max_pixels:
        raise PromptLimitError(f"{where}: a {width}x{height} mask is larger than the limit of {max_pixels} pixels")
    counts = rle.get("counts")
    if not isinstance(counts, list) or not all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        raise SidecarError(f"{where}.counts: expected a list of run lengths (integers)")
    if any(c < 0 for c in counts):
        raise SidecarError(f"{where}.counts: run lengths cannot be negative")
    if sum(counts) != height * width:
        raise SidecarError(f"{where}.counts: the runs cover {sum(counts)} pixels, height*width is {height * width}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    return np.repeat(values, counts).reshape(height, width)


def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from a PNG's header, without decoding it; None when not a PNG."""
    with open(path, "rb") as handle:
        head = handle.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _read_mask_file(path: Path, where: str, *, roots: tuple[Path, ...] | None = None,
                    max_pixels: int = DEFAULT_PROMPT_LIMITS.max_mask_pixels) -> np.ndarray:
    """A mask image: a regular file (never a FIFO or device, which would block), size checked from
    its header before decoding. With `roots` (a sidecar that came over the wire) only files under
    those folders are read, and the error for any other path is the same whether it exists or not."""
    import stat

    import cv2

    if roots is not None:
        real = Path(os.path.realpath(path))
        if not any(real == root or root in real.parents for root in roots):
            raise SidecarError(f"{where}.file: the worker reads mask files only from the plate's folder, the session "
                               "folder and its --read-root folders; send the mask inline (RLE) instead")
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise SidecarError(f"{where}.file: {str(path)!r} does not exist") from None
    if not stat.S_ISREG(mode):
        raise SidecarError(f"{where}.file: {str(path)!r} is not a regular file")
    size = _png_size(path)
    if size is not None and size[0] * size[1] > max_pixels:
        raise PromptLimitError(f"{where}.file: a {size[0]}x{size[1]} mask is larger than the limit of {max_pixels} "
                               "pixels")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise SidecarError(f"{where}.file: cannot decode {str(path)!r} as an image")
    if image.ndim == 3:
        image = image[:, :, 3] if image.shape[2] == 4 else image[:, :, 0]
    return image != 0


# ---------------------------------------------------------------------------------------------
# The format as dataclasses


@dataclass
class PromptSpec:
    """One object's prompts on one frame, in plate pixels."""

    frame: int  # plate frame number
    points: list[tuple[float, float]] = field(default_factory=list)  # (x, y) clicks
    labels: list[int] = field(default_factory=list)  # 1 positive, 0 negative, one per point
    box: tuple[float, float, float, float] | None = None  # (x0, y0, x1, y1)
    mask: np.ndarray | None = None  # H*W bool at the plate's resolution

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"frame": self.frame}
        if self.mask is not None:
            out["mask"] = encode_mask_rle(self.mask)
            return out
        if self.box is not None:
            out["box"] = [float(v) for v in self.box]
        if self.points:
            out["points"] = [[float(x), float(y)] for x, y in self.points]
            out["labels"] = [int(v) for v in self.labels]
        return out


@dataclass
class ObjectPrompts:
    obj_id: int
    prompts: list[PromptSpec]
    name: str | None = None  # names the matte files; default obj<id>

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"obj_id": self.obj_id}
        if self.name is not None:
            out["name"] = self.name
        out["prompts"] = [p.to_dict() for p in sorted(self.prompts, key=lambda p: p.frame)]
        return out


@dataclass
class ShotSpec:
    plate: str  # as written in the file; see Sidecar.plate_path for the resolved path
    first: int | None = None
    last: int | None = None
    name: str | None = None
    view: dict[str, Any] | None = None  # older files: ViewTransform.to_dict() form
    colour: dict[str, Any] | None = None  # ColourSettings.to_dict() form

    def colour_settings(self) -> ColourSettings | None:
        """The plate's colour settings (None: the defaults of whoever replays it)."""
        if self.colour is not None:
            return ColourSettings.from_dict(self.colour)
        if self.view is not None:
            return ColourSettings.from_dict(self.view)
        return None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name is not None:
            out["name"] = self.name
        out["plate"] = self.plate
        if self.first is not None:
            out["first"] = self.first
        if self.last is not None:
            out["last"] = self.last
        if self.view is not None:
            out["view"] = dict(self.view)
        if self.colour is not None:
            out["colour"] = dict(self.colour)
        return out


@dataclass
class ModelSpec:
    checkpoint: str  # official name or checkpoint file
    config: str | dict[str, Any] | None = None  # as `--config` takes it, or a config object

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"checkpoint": self.checkpoint}
        if self.config is not None:
            out["config"] = self.config
        return out


# the learned matting passes a sidecar may ask for (samroto.core.matting presets; named here to stay torch-free)
MATTING_MODELS = ("vitmatte-small", "vitmatte-base")


@dataclass
class SessionSettings:
    fill_hole_area: int = 8
    non_overlap_masks: bool = False
    matting: str | None = None  # a learned matting pass for the shot's mattes (MATTING_MODELS)
    memory_mode: str = DEFAULT_MODE  # which tracked frames enter memory (core.memory_modes)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fill_hole_area": self.fill_hole_area, "non_overlap_masks": self.non_overlap_masks}
        if self.matting is not None:
            out["matting"] = self.matting
        if self.memory_mode != DEFAULT_MODE:
            out["memory_mode"] = self.memory_mode
        return out


@dataclass
class Sidecar:
    shot: ShotSpec
    objects: list[ObjectPrompts]
    model: ModelSpec | None = None
    session: SessionSettings = field(default_factory=SessionSettings)
    metadata: dict[str, Any] = field(default_factory=dict)
    version: int = SIDECAR_VERSION
    # the folder relative paths are resolved against (the sidecar's own folder once loaded)
    base_dir: Path | None = None
    source: str = "<sidecar>"  # file name or description, for error messages
    # what parsing allowed: the limits, and the folders mask files may come from (None: anywhere)
    limits: PromptLimits = field(default=DEFAULT_PROMPT_LIMITS, repr=False, compare=False)
    mask_roots: tuple[Path, ...] | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str | None:
        return self.shot.name

    def resolve(self, path: str) -> str:
        """A path from the file, made absolute against the sidecar's folder when relative."""
        expanded = os.path.expanduser(path)
        if os.path.isabs(expanded) or self.base_dir is None:
            return expanded
        return os.path.normpath(os.path.join(self.base_dir, expanded))

    @property
    def plate_path(self) -> str:
        return self.resolve(self.shot.plate)

    def resolved_model(self) -> ModelSpec | None:
        """The model with file paths made absolute (official names stay names; JSON text stays text)."""
        if self.model is None:
            return None
        checkpoint = self.model.checkpoint
        if _looks_like_path(checkpoint):
            checkpoint = self.resolve(checkpoint)
        config = self.model.config
        if isinstance(config, str) and not config.lstrip().startswith("{"):
            file, hash_, variant = config.partition("#")
            config = self.resolve(file) + hash_ + variant
        return ModelSpec(checkpoint=checkpoint, config=config)

    @property
    def keyframe(self) -> int:
        """The earliest prompted frame: tracking starts there, forward to the end and back to the start."""
        return min(p.frame for obj in self.objects for p in obj.prompts)

    @property
    def object_names(self) -> dict[int, str]:
        return {obj.obj_id: obj.name for obj in self.objects if obj.name is not None}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": SIDECAR_FORMAT, "version": self.version, "shot": self.shot.to_dict()}
        if self.model is not None:
            out["model"] = self.model.to_dict()
        out["session"] = self.session.to_dict()
        out["objects"] = [obj.to_dict() for obj in self.objects]
        if self.metadata:
            out["metadata"] = dict(self.metadata)
        return out

    @classmethod
    def from_dict(
        cls, data: Any, *, base_dir: "str | os.PathLike[str] | None" = None, source: str = "<sidecar>",
        limits: PromptLimits = DEFAULT_PROMPT_LIMITS, mask_roots: "tuple[Path, ...] | None" = None,
    ) -> "Sidecar":
        """Validate a parsed sidecar; errors are SidecarError naming `source` and the field.
        limits: checked while parsing, before any mask is decoded; mask_roots: the only folders
        mask files may be read from (None: anywhere, for a sidecar file the user gave)."""
        try:
            return _parse(data, Path(base_dir) if base_dir is not None else None, source, limits, mask_roots)
        except PromptLimitError as exc:
            raise PromptLimitError(f"{source}: {exc}") from None
        except SidecarError as exc:
            raise SidecarError(f"{source}: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Parsing (errors name the field as a path: objects[0].prompts[1].labels)


def _parse(data: Any, base_dir: Path | None, source: str, limits: PromptLimits = DEFAULT_PROMPT_LIMITS,
           mask_roots: tuple[Path, ...] | None = None) -> Sidecar:
    top = _mapping(data, "the sidecar")
    _known_keys(top, "", {"format", "version", "shot", "model", "session", "objects", "metadata"})
    if top.get("format") != SIDECAR_FORMAT:
        raise SidecarError(f"format: expected {SIDECAR_FORMAT!r}, got {top.get('format')!r} (is this a sidecar?)")
    version = top.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise SidecarError(f"version: expected a positive integer, got {version!r}")
    if version > SIDECAR_VERSION:
        raise SidecarError(
            f"version: the file is version {version}, written by a newer samroto; this one reads up to "
            f"{SIDECAR_VERSION}"
        )
    shot = _parse_shot(top.get("shot"))
    model = _parse_model(top["model"]) if top.get("model") is not None else None
    session = _parse_session(top.get("session", {}))
    sidecar = Sidecar(
        shot=shot,
        objects=[],
        model=model,
        session=session,
        metadata=dict(_mapping(top.get("metadata", {}), "metadata")),
        version=version,
        base_dir=base_dir,
        source=source,
        limits=limits,
        mask_roots=tuple(Path(os.path.realpath(r)) for r in mask_roots) if mask_roots is not None else None,
    )
    objects = top.get("objects")
    if not isinstance(objects, list) or not objects:
        raise SidecarError("objects: expected a non-empty list of objects")
    _check_counts(objects, limits)
    seen: set[int] = set()
    for i, entry in enumerate(objects):
        obj = _parse_object(entry, f"objects[{i}]", sidecar)
        if obj.obj_id in seen:
            raise SidecarError(f"objects[{i}].obj_id: object {obj.obj_id} appears twice")
        seen.add(obj.obj_id)
        sidecar.objects.append(obj)
    names = [obj.name for obj in sidecar.objects if obj.name is not None]
    if len(set(names)) != len(names):
        raise SidecarError(f"objects: names must be unique, got {names}")
    return sidecar


def _check_counts(objects: list, limits: PromptLimits) -> None:
    """Objects, prompt entries and clicks against the limits, before any prompt is parsed."""
    if len(objects) > limits.max_objects:
        raise PromptLimitError(f"objects: {len(objects)} objects is more than the limit of {limits.max_objects}")
    prompts = [p for o in objects if isinstance(o, Mapping) and isinstance(o.get("prompts"), list)
               for p in o["prompts"]]
    if len(prompts) > limits.max_prompts:
        raise PromptLimitError(f"objects: {len(prompts)} prompts is more than the limit of {limits.max_prompts}")
    clicks = [len(p["points"]) for p in prompts if isinstance(p, Mapping) and isinstance(p.get("points"), list)]
    if any(n > limits.max_points for n in clicks):
        raise PromptLimitError(f"objects: a prompt has {max(clicks)} clicks, more than the limit of "
                               f"{limits.max_points}")
    if sum(clicks) > limits.max_total_points:
        raise PromptLimitError(f"objects: {sum(clicks)} clicks in all is more than the limit of "
                               f"{limits.max_total_points}")


def _parse_shot(value: Any) -> ShotSpec:
    shot = _mapping(value, "shot")
    _known_keys(shot, "shot.", {"name", "plate", "first", "last", "view", "colour"})
    plate = shot.get("plate")
    if not isinstance(plate, str) or not plate.strip():
        raise SidecarError(f"shot.plate: expected a video file or image sequence pattern, got {plate!r}")
    first = _int(shot["first"], "shot.first") if shot.get("first") is not None else None
    last = _int(shot["last"], "shot.last") if shot.get("last") is not None else None
    if first is not None and last is not None and first > last:
        raise SidecarError(f"shot.first {first} is after shot.last {last}")
    name = _name(shot["name"], "shot.name") if shot.get("name") is not None else None
    view = None
    if shot.get("view") is not None:
        view = dict(_mapping(shot["view"], "shot.view"))
        _known_keys(view, "shot.view.", {"curve", "exposure"})
        if view.get("curve", "srgb") not in ("srgb", "rec709", "linear"):
            raise SidecarError(f"shot.view.curve: expected 'srgb', 'rec709' or 'linear', got {view.get('curve')!r}")
        exposure = view.get("exposure", 0.0)
        if not isinstance(exposure, (int, float)) or isinstance(exposure, bool) or not math.isfinite(exposure):
            raise SidecarError(f"shot.view.exposure: expected a finite number of stops, got {exposure!r}")
    colour = None
    if shot.get("colour") is not None:
        try:
            colour = ColourSettings.from_dict(_mapping(shot["colour"], "shot.colour")).to_dict()
        except ColourError as error:
            raise SidecarError(f"shot.colour: {error}") from None
    return ShotSpec(plate=plate, first=first, last=last, name=name, view=view, colour=colour)


def _parse_model(value: Any) -> ModelSpec:
    model = _mapping(value, "model")
    _known_keys(model, "model.", {"checkpoint", "config"})
    checkpoint = model.get("checkpoint")
    if not isinstance(checkpoint, str) or not checkpoint.strip():
        raise SidecarError(f"model.checkpoint: expected an official model name or a checkpoint file, got {checkpoint!r}")
    config = model.get("config")
    if config is not None and not isinstance(config, (str, dict)):
        raise SidecarError(f"model.config: expected JSON text, a file name or an object, got {type(config).__name__}")
    return ModelSpec(checkpoint=checkpoint, config=config)


def _parse_session(value: Any) -> SessionSettings:
    session = _mapping(value, "session")
    _known_keys(session, "session.", {"fill_hole_area", "non_overlap_masks", "matting", "memory_mode"})
    fill = _int(session.get("fill_hole_area", 8), "session.fill_hole_area", minimum=0)
    non_overlap = session.get("non_overlap_masks", False)
    if not isinstance(non_overlap, bool):
        raise SidecarError(f"session.non_overlap_masks: expected true or false, got {non_overlap!r}")
    matting = session.get("matting")
    if matting is not None and matting not in MATTING_MODELS:
        raise SidecarError(f"session.matting: expected one of {', '.join(MATTING_MODELS)} or null, got {matting!r}")
    memory_mode = session.get("memory_mode", DEFAULT_MODE)
    try:
        if not isinstance(memory_mode, str):
            raise UnknownMemoryMode(f"a memory mode is a name, got {memory_mode!r}")
        check_mode(memory_mode)
    except UnknownMemoryMode as exc:
        raise SidecarError(f"session.memory_mode: {exc}") from None
    return SessionSettings(fill_hole_area=fill, non_overlap_masks=non_overlap, matting=matting, memory_mode=memory_mode)


def _parse_object(value: Any, where: str, sidecar: Sidecar) -> ObjectPrompts:
    obj = _mapping(value, where)
    _known_keys(obj, f"{where}.", {"obj_id", "name", "prompts"})
    obj_id = _int(obj.get("obj_id"), f"{where}.obj_id")
    name = _name(obj["name"], f"{where}.name") if obj.get("name") is not None else None
    prompts = obj.get("prompts")
    if not isinstance(prompts, list) or not prompts:
        raise SidecarError(f"{where}.prompts: expected a non-empty list of prompts")
    parsed = [_parse_prompt(p, f"{where}.prompts[{i}]", sidecar) for i, p in enumerate(prompts)]
    frames = [p.frame for p in parsed]
    duplicates = sorted({f for f in frames if frames.count(f) > 1})
    if duplicates:
        raise SidecarError(f"{where}.prompts: frame {duplicates[0]} has more than one prompt entry; merge them")
    return ObjectPrompts(obj_id=obj_id, prompts=parsed, name=name)


def _parse_prompt(value: Any, where: str, sidecar: Sidecar) -> PromptSpec:
    prompt = _mapping(value, where)
    _known_keys(prompt, f"{where}.", {"frame", "points", "labels", "box", "mask"})
    frame = _int(prompt.get("frame"), f"{where}.frame")
    if prompt.get("mask") is not None:
        if any(prompt.get(k) is not None for k in ("points", "labels", "box")):
            raise SidecarError(f"{where}: a mask prompt stands alone (no points, labels or box on the same frame)")
        return PromptSpec(frame=frame, mask=_parse_mask(prompt["mask"], f"{where}.mask", sidecar))
    points = prompt.get("points")
    labels = prompt.get("labels")
    if (points is None) != (labels is None):
        raise SidecarError(f"{where}: points and labels go together (one label per point)")
    parsed_points: list[tuple[float, float]] = []
    parsed_labels: list[int] = []
    if points is not None:
        if not isinstance(points, list):
            raise SidecarError(f"{where}.points: expected a list of [x, y] pairs")
        for j, p in enumerate(points):
            if not (isinstance(p, list) and len(p) == 2 and all(_is_number(v) for v in p)):
                raise SidecarError(f"{where}.points[{j}]: expected [x, y] (two finite numbers), got {p!r}")
            parsed_points.append((float(p[0]), float(p[1])))
        if not isinstance(labels, list) or len(labels) != len(points):
            raise SidecarError(f"{where}.labels: expected {len(points)} labels (one per point), got {labels!r}")
        for j, label in enumerate(labels):
            if label not in (0, 1) or isinstance(label, bool):
                raise SidecarError(f"{where}.labels[{j}]: expected 1 (positive) or 0 (negative), got {label!r}")
            parsed_labels.append(int(label))
    box = None
    if prompt.get("box") is not None:
        b = prompt["box"]
        if not (isinstance(b, list) and len(b) == 4 and all(_is_number(v) for v in b)):
            raise SidecarError(f"{where}.box: expected [x0, y0, x1, y1] (four finite numbers), got {b!r}")
        if b[2] < b[0] or b[3] < b[1]:
            raise SidecarError(f"{where}.box: corners must be [left, top, right, bottom], got {b!r}")
        box = (float(b[0]), float(b[1]), float(b[2]), float(b[3]))
    if box is None and not parsed_points:
        raise SidecarError(f"{where}: a prompt needs points (with labels), a box or a mask")
    return PromptSpec(frame=frame, points=parsed_points, labels=parsed_labels, box=box)


def _parse_mask(value: Any, where: str, sidecar: Sidecar) -> np.ndarray:
    mask = _mapping(value, where)
    if "file" in mask:
        _known_keys(mask, f"{where}.", {"file"})
        if not isinstance(mask["file"], str) or not mask["file"]:
            raise SidecarError(f"{where}.file: expected a PNG file name")
        return _read_mask_file(Path(sidecar.resolve(mask["file"])), where, roots=sidecar.mask_roots,
                               max_pixels=sidecar.limits.max_mask_pixels)
    _known_keys(mask, f"{where}.", {"height", "width", "counts"})
    return decode_mask_rle(mask, where=where, max_pixels=sidecar.limits.max_mask_pixels)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise SidecarError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _known_keys(mapping: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
    unknown = sorted(set(mapping) - allowed)
    if unknown:
        raise SidecarError(f"{prefix}{unknown[0]}: unknown field; expected one of {sorted(allowed)}")


def _int(value: Any, where: str, *, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SidecarError(f"{where}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise SidecarError(f"{where}: expected an integer >= {minimum}, got {value}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _name(value: Any, where: str) -> str:
    # names become parts of file names
    if not isinstance(value, str) or not value or value in (".", "..") or any(c in value for c in "/\\\0"):
        raise SidecarError(f"{where}: {value!r} cannot be used in a file name")
    return value


def _looks_like_path(checkpoint: str) -> bool:
    """A checkpoint file rather than an official model name (which has no folder and no extension)."""
    return os.sep in checkpoint or "/" in checkpoint or checkpoint.endswith((".pt", ".pth", ".safetensors"))


# ---------------------------------------------------------------------------------------------
# Files


def load_sidecar(path: "str | os.PathLike[str]") -> Sidecar:
    """Read and validate a sidecar file; relative paths in it are taken from its folder."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SidecarError(f"{file}: no such sidecar file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SidecarError(f"{file}: cannot read the sidecar: {exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SidecarError(f"{file}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    return Sidecar.from_dict(data, base_dir=file.resolve().parent, source=str(file))


def save_sidecar(sidecar: "Sidecar | Mapping[str, Any]", path: "str | os.PathLike[str]") -> Path:
    """Write a sidecar (validated first) atomically as indented JSON; returns the path."""
    file = Path(path)
    data = sidecar.to_dict() if isinstance(sidecar, Sidecar) else dict(sidecar)
    Sidecar.from_dict(data, base_dir=file.resolve().parent, source=str(file))  # refuse to write a bad file
    file.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_json_atomic(file, data)
    except (TypeError, ValueError) as exc:
        raise SidecarError(f"{file}: the sidecar holds something JSON cannot store ({exc})") from None
    return file


# ---------------------------------------------------------------------------------------------
# Sessions


def session_to_sidecar(
    session: "VideoSession",
    *,
    plate: "str | os.PathLike[str] | Mapping[str, Any] | None" = None,
    first: int | None = None,
    last: int | None = None,
    model: "str | ModelSpec | Mapping[str, Any] | None" = None,
    name: str | None = None,
    object_names: Mapping[int, str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A session's prompts as a sidecar dict (see the module docstring for the format).

    plate: the path or pattern to write as given (default: the session's own plate, made absolute),
        or a frame source description (`FrameSource.describe()`, whose colour settings are kept; its
        path made absolute); a path keeps the session's own colour settings. Frames pushed in
        memory have no path: give `plate`.
    first/last: the shot's frame range (default: the session's).
    model: checkpoint name or file, or {"checkpoint", "config"} (default: the session model's name
        when it is one of the official ones, else no model entry).
    Mask prompts are read back from the session folder and written inline (RLE).
    """
    from .model.config import PRESETS

    source = session.frames.describe()
    view: dict[str, Any] | None = None
    colour: dict[str, Any] | None = None
    if plate is None:
        plate_text = source.get("pattern") or source.get("path")
        if not plate_text:
            raise SidecarError("the session's frames were pushed in memory and have no file: pass plate=")
        view, colour = source.get("view"), source.get("colour")
    elif isinstance(plate, Mapping):
        plate_text = plate.get("pattern") or plate.get("path")
        if not plate_text:
            raise SidecarError(f"plate description {dict(plate)!r} has no 'pattern' or 'path'")
        view, colour = plate.get("view"), plate.get("colour")
    else:
        plate_text = os.fspath(plate)
        view, colour = source.get("view"), source.get("colour")  # the colour the prompts were made seeing
    if not isinstance(plate, (str, os.PathLike)):
        # a path the session opened relative to this process's folder means nothing elsewhere
        plate_text = os.path.abspath(os.path.expanduser(str(plate_text)))
    shot = ShotSpec(
        plate=str(plate_text),
        first=session.frames.first_frame if first is None else int(first),
        last=session.frames.last_frame if last is None else int(last),
        name=name,
        view=dict(view) if view else None,
        colour=dict(colour) if colour else None,
    )

    model_spec: ModelSpec | None
    if model is None:
        config_name = session.model.config.name
        model_spec = ModelSpec(checkpoint=config_name) if config_name in PRESETS else None
    elif isinstance(model, ModelSpec):
        model_spec = model
    elif isinstance(model, Mapping):
        model_spec = _parse_model(model)
    else:
        model_spec = ModelSpec(checkpoint=os.fspath(model))

    names = dict(object_names or {})
    objects: list[ObjectPrompts] = []
    for obj_id, frames in session.prompts().items():
        prompts: list[PromptSpec] = []
        for frame, p in sorted(frames.items()):
            if p.get("mask_file"):
                prompts.append(PromptSpec(frame=int(frame), mask=_session_mask(session, p["mask_file"], obj_id, frame)))
            elif p.get("points") or p.get("box"):
                box = p.get("box")
                prompts.append(
                    PromptSpec(
                        frame=int(frame),
                        points=[(float(x), float(y)) for x, y in p.get("points", [])],
                        labels=[int(v) for v in p.get("labels", [])],
                        box=tuple(float(v) for v in box) if box is not None else None,  # type: ignore[arg-type]
                    )
                )
            else:
                raise SidecarError(
                    f"object {obj_id} frame {frame}: the prompt is a mask the session did not keep "
                    "(sessions without a state folder do not store mask prompts)"
                )
        if prompts:
            objects.append(ObjectPrompts(obj_id=int(obj_id), prompts=prompts, name=names.get(int(obj_id))))
    if not objects:
        raise SidecarError("the session has no prompts to export")
    sidecar = Sidecar(
        shot=shot,
        objects=objects,
        model=model_spec,
        session=SessionSettings(
            fill_hole_area=session.options.fill_hole_area, non_overlap_masks=session.options.non_overlap_masks,
            memory_mode=session.options.memory_mode,
        ),
        metadata=dict(metadata or {}),
    )
    data = sidecar.to_dict()
    Sidecar.from_dict(data, source="the exported sidecar")  # what we hand out must load
    return data


def _session_mask(session: "VideoSession", mask_file: str, obj_id: int, frame: int) -> np.ndarray:
    if session.state_dir is None:
        raise SidecarError(f"object {obj_id} frame {frame}: the session has no folder holding its mask prompt")
    mask = _read_mask_file(session.state_dir / mask_file, f"object {obj_id} frame {frame} mask")
    return mask


def apply_prompts(session: "VideoSession", sidecar: "Sidecar | Mapping[str, Any]", *,
                  before_each: "Callable[[], None] | None" = None) -> None:
    """Replay a sidecar's prompts onto a session (nothing is tracked yet: call `propagate` next).

    Every object's prompts are applied frame by frame; errors (a frame outside the shot, a mask of
    the wrong size) are SidecarErrors naming the object and frame. `before_each` runs before every
    prompt (the worker raises from it when it is asked to stop).
    """
    from .frames import FrameError
    from .video_session import SessionError

    if not isinstance(sidecar, Sidecar):
        sidecar = Sidecar.from_dict(sidecar)
    for obj in sidecar.objects:
        for prompt in sorted(obj.prompts, key=lambda p: p.frame):
            if before_each is not None:
                before_each()
            try:
                if prompt.mask is not None:
                    session.add_mask(prompt.frame, obj.obj_id, prompt.mask)
                elif prompt.box is not None:
                    session.add_box(
                        prompt.frame,
                        obj.obj_id,
                        prompt.box,
                        points=prompt.points or None,
                        labels=prompt.labels or None,
                    )
                else:
                    session.add_points(prompt.frame, obj.obj_id, prompt.points, prompt.labels, clear=True)
            except (SessionError, FrameError) as exc:
                raise SidecarError(f"{sidecar.source}: object {obj.obj_id} frame {prompt.frame}: {exc}") from None

