"""Mattes: from logits to files a compositor loads, and back.

Files are EXR (one half-float `A` channel per file, or one `<name>.A` layer per object; ZIP
compression; optional header attributes such as `samroto/score`) or 16-bit grayscale PNG
(value = round(alpha * 65535)). Frame numbers in file names are the plate's (`name.####.exr`).

Every write is atomic: the bytes go to a hidden temporary file in the same folder
(`.<name>.<random>.tmp`), are fsynced, then renamed over the final name. A reader (Nuke, a
resuming batch job) sees either no file or a complete one, even if the writer is killed
mid-write. A killed writer can leave a temporary file behind; it never matches a sequence pattern.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..fileio import write_bytes_atomic
from ..frames import FramePattern

__all__ = [
    "MatteError",
    "MatteSequenceWriter",
    "format_frame_path",
    "matte_from_logits",
    "read_matte",
    "read_matte_attributes",
    "read_matte_layers",
    "write_layered_matte_exr",
    "write_matte_exr",
    "write_matte_png",
]

AttributeValue = float | int | str

_EXR_COMPRESSIONS = ("zip", "zips", "piz", "rle", "none")
# header entries that describe the image itself; everything else is a user attribute
_EXR_STANDARD_ATTRIBUTES = frozenset(
    {
        "channels",
        "compression",
        "dataWindow",
        "displayWindow",
        "lineOrder",
        "pixelAspectRatio",
        "screenWindowCenter",
        "screenWindowWidth",
        "type",
        "name",
        "version",
        "chunkCount",
        "tiles",
    }
)
_LAYER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_INT32 = (-(2**31), 2**31 - 1)


class MatteError(ValueError):
    """A matte cannot be written or read; the message names the file or the bad value."""


# ---------------------------------------------------------------------------------------------
# Values


def matte_from_logits(logits: Any, *, soft: bool = True) -> np.ndarray:
    """logits: H*W or N*H*W (numpy or torch) -> float32 alpha of the same shape.

    soft: sigmoid(logits), the model's probability; otherwise 1 where logits > 0, else 0.
    """
    x = _as_float_array(logits, "logits")
    if x.ndim not in (2, 3):
        raise MatteError(f"logits must be H*W or N*H*W, got shape {x.shape}")
    if np.isnan(x).any():
        raise MatteError("logits contain NaN")
    if not soft:
        return (x > 0).astype(np.float32)
    # sigmoid written so that exp never overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def _as_float_array(values: Any, what: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, possibly on the GPU
        values = values.detach().float().cpu().numpy()
    array = np.asarray(values)
    if array.dtype.kind not in "fiub":
        raise MatteError(f"{what} must be numeric, not {array.dtype}")
    return array.astype(np.float32, copy=False)


def _alpha(alpha: Any, what: str = "alpha", ndim: int = 2) -> np.ndarray:
    a = _as_float_array(alpha, what)
    if a.ndim != ndim or 0 in a.shape:
        expected = "H*W" if ndim == 2 else "N*H*W"
        raise MatteError(f"{what} must be {expected}, got shape {a.shape}")
    if np.isnan(a).any():
        raise MatteError(f"{what} contains NaN")
    return np.clip(a, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Atomic files


def _write_atomically(path: str, data: bytes) -> None:
    """Write `data` to `path` so that no partial file is ever visible under `path`."""
    try:
        write_bytes_atomic(path, data)
    except FileNotFoundError as exc:
        raise MatteError(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# EXR


def _exr_header(attributes: Mapping[str, AttributeValue] | None, compression: str) -> dict[str, Any]:
    import OpenEXR

    if compression not in _EXR_COMPRESSIONS:
        raise MatteError(f"EXR compression must be one of {_EXR_COMPRESSIONS}, not {compression!r}")
    header: dict[str, Any] = {
        "compression": getattr(OpenEXR, f"{compression.upper()}_COMPRESSION"),
        "type": OpenEXR.scanlineimage,
    }
    for key, value in (attributes or {}).items():
        if not isinstance(key, str) or not key:
            raise MatteError(f"EXR attribute names must be non-empty strings, not {key!r}")
        if key in _EXR_STANDARD_ATTRIBUTES:
            raise MatteError(f"EXR attribute {key!r} is reserved by the format")
        header[key] = _attribute_value(key, value)
    return header


def _attribute_value(key: str, value: Any) -> AttributeValue:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        if not _INT32[0] <= value <= _INT32[1]:
            raise MatteError(f"EXR attribute {key!r}: integer {value} does not fit in 32 bits")
        return value
    if isinstance(value, float):
        return value  # stored as a 32-bit float: about 7 significant digits survive
    if isinstance(value, str):
        return value
    raise MatteError(f"EXR attribute {key!r} must be a float, int or str, not {type(value).__name__}")


def _encode_exr(header: dict[str, Any], channels: dict[str, np.ndarray]) -> bytes:
    import OpenEXR

    buffer = io.BytesIO()
    try:
        OpenEXR.File(header, channels).write(buffer)
    except Exception as error:  # the bindings raise RuntimeError
        raise MatteError(f"cannot encode EXR: {error}") from None
    return buffer.getvalue()


def write_matte_exr(
    path: str | os.PathLike[str],
    alpha: Any,
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
    compression: str = "zip",
) -> str:
    """alpha: H*W in [0, 1] -> an EXR with one half-float `A` channel (and `attributes` in its header)."""
    path = os.fspath(path)
    a = _alpha(alpha)
    header = _exr_header(attributes, compression)
    _write_atomically(path, _encode_exr(header, {"A": a.astype(np.float16)}))
    return path


def write_layered_matte_exr(
    path: str | os.PathLike[str],
    alphas: Any,
    layer_names: Sequence[str],
    *,
    attributes: Mapping[str, AttributeValue] | None = None,
    compression: str = "zip",
) -> str:
    """alphas: N*H*W in [0, 1] -> one EXR with a half-float `<layer>.A` channel per object."""
    path = os.fspath(path)
    a = _alpha(alphas, "alphas", ndim=3)
    names = list(layer_names)
    if len(names) != a.shape[0]:
        raise MatteError(f"{a.shape[0]} mattes but {len(names)} layer names")
    if len(set(names)) != len(names):
        raise MatteError(f"layer names must be unique, got {names}")
    for name in names:
        _check_layer_name(name)
    header = _exr_header(attributes, compression)
    channels = {f"{name}.A": a[i].astype(np.float16) for i, name in enumerate(names)}
    _write_atomically(path, _encode_exr(header, channels))
    return path


def _check_layer_name(name: str) -> None:
    # Nuke layer names are identifiers; a dot would split the layer from the channel
    if not isinstance(name, str) or not _LAYER_NAME.fullmatch(name):
        raise MatteError(f"layer name {name!r} must be letters, digits and underscores, not starting with a digit")


def _exr_channels(path: str) -> dict[str, np.ndarray]:
    import OpenEXR

    try:
        exr = OpenEXR.File(path, separate_channels=True)
        # a truncated file opens with no parts; asking for its channels is what fails
        return {name: channel.pixels for name, channel in exr.channels().items()}
    except Exception as error:
        raise MatteError(f"cannot read EXR matte {path!r}: {error}") from None


def read_matte_layers(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Layer name -> H*W float32 for a layered EXR matte; a plain matte is the single layer ''."""
    path = _existing(path)
    channels = _exr_channels(path)
    layers = {name[: -len(".A")]: pixels for name, pixels in channels.items() if name.endswith(".A")}
    if "A" in channels:
        layers[""] = channels["A"]
    if not layers:
        raise MatteError(f"{path!r} has no alpha channel `A` or `<layer>.A` (it has {sorted(channels)})")
    return {name: pixels.astype(np.float32) for name, pixels in layers.items()}


def read_matte_attributes(path: str | os.PathLike[str]) -> dict[str, AttributeValue]:
    """The user attributes in an EXR matte's header (format entries left out)."""
    import OpenEXR

    path = _existing(path)
    try:
        header = OpenEXR.File(path, header_only=True).header()
    except Exception as error:
        raise MatteError(f"cannot read EXR matte {path!r}: {error}") from None
    return {key: value for key, value in header.items() if key not in _EXR_STANDARD_ATTRIBUTES}


# ---------------------------------------------------------------------------------------------
# PNG


def write_matte_png(path: str | os.PathLike[str], alpha: Any) -> str:
    """alpha: H*W in [0, 1] -> a 16-bit grayscale PNG, value = round(alpha * 65535)."""
    import cv2

    path = os.fspath(path)
    a = _alpha(alpha)
    levels = np.rint(a * 65535.0).astype(np.uint16)
    ok, encoded = cv2.imencode(".png", levels)
    if not ok:
        raise MatteError(f"cannot encode PNG matte for {path!r}")
    _write_atomically(path, encoded.tobytes())
    return path


# ---------------------------------------------------------------------------------------------
# Reading


def read_matte(path: str | os.PathLike[str], *, layer: str | None = None) -> np.ndarray:
    """An EXR or PNG matte -> H*W float32 in [0, 1].

    EXR: the `A` channel, or `<layer>.A` (a layered file with one layer needs no `layer`).
    PNG: 16- or 8-bit gray (RGBA: its alpha; RGB: its red).
    """
    path = _existing(path)
    extension = os.path.splitext(path)[1].lower()
    if extension == ".exr":
        layers = read_matte_layers(path)
        if layer is not None:
            if layer not in layers:
                raise MatteError(f"{path!r} has no layer {layer!r} (layers: {sorted(layers)})")
            return layers[layer]
        if "" in layers:
            return layers[""]
        if len(layers) == 1:
            return next(iter(layers.values()))
        raise MatteError(f"{path!r} has several layers {sorted(layers)}; say which one with layer=")
    if extension == ".png":
        if layer is not None:
            raise MatteError(f"{path!r}: PNG mattes have no layers")
        return _read_png_matte(path)
    raise MatteError(f"{path!r}: mattes are .exr or .png, not {extension!r}")


def _read_png_matte(path: str) -> np.ndarray:
    import cv2

    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise MatteError(f"cannot decode PNG matte {path!r}")
    if image.ndim == 3:
        image = image[:, :, 3] if image.shape[2] == 4 else image[:, :, -1]  # BGR(A) order
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    return (image.astype(np.float32) / np.float32(scale)).astype(np.float32)


def _existing(path: str | os.PathLike[str]) -> str:
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MatteError(f"matte file {path!r} does not exist")
    return path


# ---------------------------------------------------------------------------------------------
# Sequences


def format_frame_path(template: str | os.PathLike[str], frame: int) -> str:
    """`shot_matte.####.exr`, 1001 -> `shot_matte.1001.exr`; also `%04d`, `@@@@` and unpadded `#`/`%d`."""
    pattern = FramePattern.parse(template)
    if pattern is None:
        raise MatteError(f"{os.fspath(template)!r} has no frame number token (####, %04d, @@@@ or #)")
    return pattern.path(int(frame))


@dataclass
class MatteSequenceWriter:
    """Writes each frame's mattes for a shot, named with the plate's frame numbers.

    name_template: placeholders `{shot}`, `{obj}` (the object's name) and `{obj_id}`, plus a frame token;
    it may contain sub-folders. Default: `{shot}_{obj}_matte.####.<ext>` for one file per object,
    `{shot}_matte.####.exr` for one file with a layer per object (`layout="layers"`, EXR only).
    object_names: obj_id -> name for file and layer names (default `obj<id>`).
    EXR files carry `samroto/frame` and `samroto/obj_id` (per-object files) plus the attributes
    given to `write`; PNG files cannot carry attributes.
    """

    out_dir: str | os.PathLike[str]
    name_template: str | None = None
    shot: str = "shot"
    format: Literal["exr", "png"] = "exr"
    soft: bool = True
    layout: Literal["per_object", "layers"] = "per_object"
    object_names: Mapping[int, str] = field(default_factory=dict)
    compression: str = "zip"

    def __post_init__(self) -> None:
        if self.format not in ("exr", "png"):
            raise MatteError(f"matte format must be 'exr' or 'png', not {self.format!r}")
        if self.layout not in ("per_object", "layers"):
            raise MatteError(f"matte layout must be 'per_object' or 'layers', not {self.layout!r}")
        if self.layout == "layers" and self.format != "exr":
            raise MatteError("one file with a layer per object needs format 'exr'")
        if self.compression not in _EXR_COMPRESSIONS:
            raise MatteError(f"EXR compression must be one of {_EXR_COMPRESSIONS}, not {self.compression!r}")
        _check_name_part(self.shot, "shot name")
        for obj_id, name in self.object_names.items():
            _check_name_part(name, f"name of object {obj_id}")
            if self.layout == "layers":
                _check_layer_name(name)
        if self.name_template is None:
            self.name_template = (
                f"{{shot}}_{{obj}}_matte.####.{self.format}" if self.layout == "per_object" else "{shot}_matte.####.exr"
            )
        template = self.name_template
        if not template.lower().endswith(f".{self.format}"):
            raise MatteError(f"name template {template!r} must end with .{self.format} for format {self.format!r}")
        try:
            first = template.format(shot=self.shot, obj="a", obj_id=1)
            second = template.format(shot=self.shot, obj="b", obj_id=2)
        except (KeyError, IndexError, ValueError) as error:
            raise MatteError(
                f"name template {template!r}: placeholders are {{shot}}, {{obj}} and {{obj_id}} ({error})"
            ) from None
        if FramePattern.parse(first) is None:
            raise MatteError(f"name template {template!r} has no frame number token (####, %04d, @@@@ or #)")
        if self.layout == "per_object" and first == second:
            raise MatteError(f"name template {template!r} must contain {{obj}} or {{obj_id}}: one file per object")
        if self.layout == "layers" and first != second:
            raise MatteError(f"name template {template!r}: with layout 'layers' all objects share one file")

    def object_name(self, obj_id: int) -> str:
        return self.object_names.get(obj_id, f"obj{obj_id}")

    def pattern_for(self, obj_id: int) -> str:
        """The sequence pattern of an object's mattes (`.../shot_obj1_matte.####.exr`), for a Read node."""
        assert self.name_template is not None
        name = self.name_template.format(shot=self.shot, obj=self.object_name(obj_id), obj_id=obj_id)
        return os.path.join(os.fspath(self.out_dir), name)

    def path_for(self, obj_id: int, frame: int) -> str:
        """The file holding object `obj_id`'s matte for plate frame `frame`."""
        return format_frame_path(self.pattern_for(obj_id), frame)

    def write(
        self,
        frame: int,
        obj_ids: Sequence[int],
        logits: Any,
        attributes: Mapping[int, Mapping[str, AttributeValue]] | None = None,
    ) -> dict[int, str]:
        """logits: N*H*W (one per obj_id) -> files for plate frame `frame`; returns obj_id -> path.

        attributes: obj_id -> extra EXR header entries (`{"samroto/score": 0.93}`); in a layered
        file they are stored as `<layer>/<key>`.
        """
        return self.write_alphas(frame, obj_ids, matte_from_logits(logits, soft=self.soft), attributes)

    def write_alphas(
        self,
        frame: int,
        obj_ids: Sequence[int],
        alphas: Any,
        attributes: Mapping[int, Mapping[str, AttributeValue]] | None = None,
    ) -> dict[int, str]:
        """Like `write`, from mattes already made (N*H*W in [0, 1]: refined, smoothed ...)."""
        ids = [int(obj_id) for obj_id in obj_ids]
        if len(set(ids)) != len(ids):
            raise MatteError(f"object ids must be unique, got {ids}")
        alphas = np.asarray(alphas, dtype=np.float32)
        if alphas.ndim == 2 and len(ids) == 1:
            alphas = alphas[None]
        if alphas.ndim != 3 or alphas.shape[0] != len(ids):
            raise MatteError(f"mattes must be N*H*W with N = {len(ids)} objects, got shape {alphas.shape}")
        attributes = attributes or {}
        unknown = set(attributes) - set(ids)
        if unknown:
            raise MatteError(f"attributes given for objects {sorted(unknown)} that are not being written")
        written: dict[int, str] = {}
        if self.layout == "layers":
            path = self.path_for(ids[0], frame)
            names = [self.object_name(obj_id) for obj_id in ids]
            header: dict[str, AttributeValue] = {"samroto/frame": int(frame)}
            for obj_id, name in zip(ids, names):
                for key, value in attributes.get(obj_id, {}).items():
                    header[f"{name}/{key}"] = value
            self._make_folder(path)
            write_layered_matte_exr(path, alphas, names, attributes=header, compression=self.compression)
            return {obj_id: path for obj_id in ids}
        for index, obj_id in enumerate(ids):
            path = self.path_for(obj_id, frame)
            self._make_folder(path)
            if self.format == "png":
                write_matte_png(path, alphas[index])
            else:
                header = {"samroto/frame": int(frame), "samroto/obj_id": obj_id, **attributes.get(obj_id, {})}
                write_matte_exr(path, alphas[index], attributes=header, compression=self.compression)
            written[obj_id] = path
        return written

    def existing_frames(self, obj_id: int, *, verify: bool = True) -> set[int]:
        """Plate frames whose matte for `obj_id` is on disk (complete and readable when `verify`).

        Lets a batch job resume: frames not in the set still need writing.
        """
        pattern = FramePattern.parse(self.pattern_for(obj_id))
        assert pattern is not None
        if not os.path.isdir(pattern.folder or "."):
            return set()
        frames = set(pattern.scan())
        if not verify:
            return frames
        layer = self.object_name(obj_id) if self.layout == "layers" else None
        readable = set()
        for frame in frames:
            try:
                read_matte(pattern.path(frame), layer=layer)
            except MatteError:
                continue
            readable.add(frame)
        return readable

    @staticmethod
    def _make_folder(path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _check_name_part(name: str, what: str) -> None:
    # names become parts of file names: no folders, no escaping out_dir
    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise MatteError(f"{what} {name!r} cannot be used in a file name")
