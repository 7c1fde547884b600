"""Frame sources: the frames of a plate, decoded on demand and addressed by the plate's own frame numbers.

A session never loads a whole shot: it asks a `FrameSource` for one frame at a time, so memory does
not grow with shot length. Every source returns H*W*3 RGB, display-referred (what the model was
trained on): uint8, uint16, or float32 in [0, 1].

Sources:

* `ArrayFrames`: an N*H*W*3 array already in memory (frames sent by a host), numbered from 0.
* `VideoFileFrames`: a video file read with PyAV, numbered from 0 in presentation order.
* `ImageSequenceFrames`: `plate.####.exr`, `plate.%04d.png`, `plate.@@@@.jpg` (the plate's numbers,
  e.g. 1001...), or a single still image.

Colour (`samroto.core.colour`). Float plates (EXR, float TIFF) are scene-linear, or in the
colourspace their header or the caller names: OpenColorIO converts them with the config's display
and view, as the host's viewer shows them. Integer plates (8/10/12/16-bit PNG, JPEG, TIFF, DPX,
video) are taken as display-referred and pass untouched, unless a colourspace is named for them
(a log DPX scan: `ColourSettings(colorspace="ACEScct")`). Without a config (`config="none"`), float
plates get a hand-written curve (`ViewTransform`: sRGB, Rec.709 or linear) and keep their primaries.

Video. Frame k is the k-th frame the decoder outputs in presentation order (edit lists honoured as
FFmpeg honours them). Rotation metadata and non-square pixel aspect ratios are ignored: frames come
back as stored. 10-bit and deeper streams come back as uint16 RGB.
"""

from __future__ import annotations

import abc
import bisect
import collections
import math
import operator
import os
import re
import stat
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .colour import (
    ColourError,
    ColourSettings,
    HeaderColour,
    PlateColour,
    ViewTransform,
    exr_header_colour,
    resolve_colour,
)

__all__ = [
    "ArrayFrames",
    "ColourSettings",
    "FrameError",
    "FramePattern",
    "FrameSource",
    "ImageSequenceFrames",
    "VideoFileFrames",
    "ViewTransform",
    "open_frames",
    "read_image",
]

VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mxf", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".gif"}
)
OPENCV_IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})
OPENIMAGEIO_EXTENSIONS = frozenset({".dpx", ".tif", ".tiff"})
IMAGE_EXTENSIONS = OPENCV_IMAGE_EXTENSIONS | OPENIMAGEIO_EXTENSIONS | {".exr"}

# Decoded video frames kept by a VideoFileFrames, in bytes of the decoder's own pixel format
# (yuv420p: 1.5 bytes a pixel, so 34 frames of 720p, 15 of 1080p, 3 of 4K). More frames make
# backward reading cheaper (one seek per cache-full) but cost resident memory for the whole
# session; forward reading needs none.
DEFAULT_VIDEO_CACHE_BYTES = 48 * 1024 * 1024
MIN_VIDEO_CACHE_FRAMES = 2
MAX_VIDEO_CACHE_FRAMES = 64


class FrameError(ValueError):
    """A plate cannot be opened or a frame cannot be read; the message names the file or frame."""


# ---------------------------------------------------------------------------------------------
# Frame number patterns


# `####` / `@@@@` (padding = count), `%04d` / `%d`. Only the file name is searched, not folders.
_FRAME_TOKEN = re.compile(r"#+|@+|%(?:0(\d+))?d")


@dataclass(frozen=True)
class FramePattern:
    """A file name with a frame-number token: `plate.####.exr`, `plate.%04d.png`, `plate.@@@@.jpg`.

    `####`/`@@@@` pad to as many digits as there are characters (a single `#`/`@` does not pad),
    `%04d` pads to 4, `%d` does not pad. Frames wider than the padding are written in full
    (10000 with `####`), as Nuke and printf do. The last token of the file name is the frame number.
    """

    folder: str
    prefix: str
    suffix: str
    padding: int
    token: str

    @classmethod
    def parse(cls, pattern: str | os.PathLike[str]) -> FramePattern | None:
        """The pattern's parts, or None when its file name has no frame token."""
        text = os.fspath(pattern)
        folder, name = os.path.split(text)
        matches = list(_FRAME_TOKEN.finditer(name))
        if not matches:
            return None
        token = matches[-1]
        if token.group(0).startswith("%"):
            padding = int(token.group(1)) if token.group(1) else 0
        else:
            padding = len(token.group(0))
        return cls(folder, name[: token.start()], name[token.end() :], padding if padding > 1 else 0, token.group(0))

    @property
    def pattern(self) -> str:
        return os.path.join(self.folder, self.prefix + self.token + self.suffix)

    def file_name(self, frame: int) -> str:
        return f"{self.prefix}{frame:0{self.padding}d}{self.suffix}"

    def path(self, frame: int) -> str:
        return os.path.join(self.folder, self.file_name(frame))

    def frame_of(self, file_name: str) -> int | None:
        """The frame number a file name stands for, or None if it is not this pattern's name for one."""
        if not (file_name.startswith(self.prefix) and file_name.endswith(self.suffix)):
            return None
        digits = file_name[len(self.prefix) : len(file_name) - len(self.suffix)]
        if not re.fullmatch(r"-?\d+", digits):
            return None
        frame = int(digits)
        # exactly the name this pattern writes for that frame: `0999` is not a frame of `#####`
        return frame if self.file_name(frame) == file_name else None

    def scan(self) -> list[int]:
        """Sorted frame numbers of the files that exist for this pattern."""
        folder = self.folder or "."
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            raise FrameError(f"folder {folder!r} of pattern {self.pattern!r} does not exist") from None
        except NotADirectoryError:
            raise FrameError(f"{folder!r} in pattern {self.pattern!r} is not a folder") from None
        frames = (self.frame_of(name) for name in names)
        return sorted(frame for frame in frames if frame is not None)


# ---------------------------------------------------------------------------------------------
# Single images


ColourSpec = ColourSettings | ViewTransform | PlateColour | Mapping[str, Any]


def require_regular_file(path: str, what: str) -> None:
    """Refuse anything but a regular file before opening it: reading a FIFO or a device named like a
    frame would block (or never end) and freeze all model work."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise FrameError(f"{what} {path!r} does not exist") from None
    if not stat.S_ISREG(mode):
        raise FrameError(f"{what} {path!r} is not a regular file (a FIFO, device or folder cannot be read as a frame)")


def read_image(path: str | os.PathLike[str], *, view: ColourSpec | None = None) -> np.ndarray:
    """One image file -> H*W*3 RGB: uint8, uint16, or float32 in [0, 1].

    Float files (scene-linear), and integer files in a named colourspace, are made display-referred
    by `view` (`ColourSettings`, a resolved `PlateColour`, or a `ViewTransform` curve; default:
    OCIO with the default config, see `samroto.core.colour`). Other integer files pass untouched.
    PNG/JPEG via OpenCV, TIFF (8 to 16-bit or float) and DPX via OpenImageIO (grayscale is repeated
    to RGB, alpha dropped, 10/12/16-bit integers come back as uint16 scaled to the full range), EXR
    via the OpenEXR package (R,G,B or Y, or the first RGB layer of a multi-layer or multi-part file;
    half or float).
    """
    path = os.fspath(path)
    extension = os.path.splitext(path)[1].lower()
    if extension not in IMAGE_EXTENSIONS:
        raise FrameError(f"{path!r}: unknown image extension {extension!r}; expected one of {sorted(IMAGE_EXTENSIONS)}")
    require_regular_file(path, "image file")
    image, header = _read_pixels(path)
    colour = view if isinstance(view, PlateColour) else plate_colour(view, image.dtype.kind == "f", header, path)
    return to_display(image, colour)


def plate_colour(view: ColourSpec | None, float_pixels: bool, header: HeaderColour | None, path: str) -> PlateColour:
    """The colour choices for a plate, resolved; colour errors become FrameErrors naming the plate."""
    if isinstance(view, PlateColour):
        return view
    try:
        return resolve_colour(view, float_pixels=float_pixels, header=header, path=path)
    except ColourError as error:
        raise FrameError(f"plate {path!r}: {error}") from None


def to_display(image: np.ndarray, colour: PlateColour) -> np.ndarray:
    """Float pixels, and integer pixels of a named colourspace, through the colour transform."""
    if image.dtype.kind == "f" or colour.converts:
        return colour.apply(image)
    return image


def _read_pixels(path: str) -> tuple[np.ndarray, HeaderColour | None]:
    extension = os.path.splitext(path)[1].lower()
    if extension == ".exr":
        data, header = _read_exr_rgb(path)
        return data, exr_header_colour(header)
    if extension in OPENIMAGEIO_EXTENSIONS:
        return _read_with_openimageio(path), None
    return _read_with_opencv(path), None


def _read_with_opencv(path: str) -> np.ndarray:
    import cv2

    # imdecode from bytes rather than imread: works for any path encoding on every OS
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise FrameError(f"cannot decode image {path!r} (corrupt or unsupported by OpenCV)")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] in (3, 4):
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB)
    else:
        raise FrameError(f"{path!r}: unsupported image layout {image.shape}; expected gray, RGB or RGBA")
    if image.dtype in (np.uint8, np.uint16):
        return image
    if image.dtype.kind == "f":
        return image.astype(np.float32, copy=False)
    raise FrameError(f"{path!r}: unsupported sample type {image.dtype}; expected 8/16-bit integer or float")


def _pick_rgb(names: list[str]) -> list[str] | None:
    """The channels that make the picture: R,G,B; else Y; else the first layer's `<layer>.R/G/B`."""
    present = set(names)
    if {"R", "G", "B"} <= present:
        return ["R", "G", "B"]
    if "Y" in present:
        return ["Y"] * 3
    layers = sorted({name.rsplit(".", 1)[0] for name in names if "." in name})
    for layer in layers:
        layered = [f"{layer}.{channel}" for channel in "RGB"]
        if set(layered) <= present:
            return layered
    if len(names) == 1:
        return names * 3
    return None


def _read_exr_rgb(path: str) -> tuple[np.ndarray, Mapping[str, Any]]:
    """EXR -> (H*W*3 float32 on the display window (0 outside the data window), the part's header).

    The picture is part 0's R,G,B (or Y), else the first part that has them, else the first layer
    with `.R .G .B` channels (multi-layer renders: `beauty.R`, ...).
    """
    import OpenEXR

    try:
        exr = OpenEXR.File(path, separate_channels=True)
        parts = [(part.header, {name: channel.pixels for name, channel in part.channels.items()}) for part in exr.parts]
    except Exception as error:  # the bindings raise RuntimeError with the library's message
        raise FrameError(f"cannot read EXR {path!r}: {error}") from None
    chosen = None
    for header, channels in parts:
        names = _pick_rgb(sorted(channels))
        if names is not None and (chosen is None or names[0] in ("R", "Y")):
            chosen = (header, [channels[name] for name in names])
            if names[0] in ("R", "Y"):
                break
    if chosen is None:
        found = sorted({name for _, channels in parts for name in channels})
        raise FrameError(f"EXR {path!r} has no R,G,B or Y channels, nor an RGB layer (it has {found})")
    header, planes = chosen
    if any(plane.dtype.kind != "f" for plane in planes):
        raise FrameError(f"EXR {path!r}: colour channels must be half or float, not {planes[0].dtype}")
    data = np.stack([plane.astype(np.float32, copy=False) for plane in planes], axis=-1)
    return _place_on_display_window(data, header, path), header


def _place_on_display_window(data: np.ndarray, header: Mapping[str, Any], path: str) -> np.ndarray:
    (data_min, data_max) = header["dataWindow"]
    (display_min, display_max) = header["displayWindow"]
    if np.array_equal(data_min, display_min) and np.array_equal(data_max, display_max):
        return data
    width = int(display_max[0] - display_min[0] + 1)
    height = int(display_max[1] - display_min[1] + 1)
    canvas = np.zeros((height, width, 3), dtype=np.float32)
    # overlap of the data window with the display window, in each one's pixel coordinates
    x0, y0 = max(data_min[0], display_min[0]), max(data_min[1], display_min[1])
    x1, y1 = min(data_max[0], display_max[0]), min(data_max[1], display_max[1])
    if x0 <= x1 and y0 <= y1:
        canvas[y0 - display_min[1] : y1 - display_min[1] + 1, x0 - display_min[0] : x1 - display_min[0] + 1] = data[
            y0 - data_min[1] : y1 - data_min[1] + 1, x0 - data_min[0] : x1 - data_min[0] + 1
        ]
    return canvas


def _exr_probe(path: str) -> tuple[int, int, HeaderColour | None]:
    import OpenEXR

    try:
        header = OpenEXR.File(path, header_only=True).header()
    except Exception as error:
        raise FrameError(f"cannot read EXR {path!r}: {error}") from None
    display_min, display_max = header["displayWindow"]
    height, width = int(display_max[1] - display_min[1] + 1), int(display_max[0] - display_min[0] + 1)
    return height, width, exr_header_colour(header)


def _read_with_openimageio(path: str) -> np.ndarray:
    """DPX and TIFF -> uint8, uint16 (10/12-bit scaled to the full 16-bit range) or float32 RGB.

    Chosen over FFmpeg for DPX: about twice as fast on 4K 10-bit scans, same pixels (`samroto
    bench read` measures both). Chosen over OpenCV for TIFF: OpenCV shifts 10/12-bit samples left
    (10-bit white becomes 65472, not 65535), OpenImageIO scales them."""
    import OpenImageIO as oiio

    image_input = oiio.ImageInput.open(path)
    if image_input is None:
        raise FrameError(f"cannot decode image {path!r}: {oiio.geterror() or 'unknown format'}")
    try:
        spec = image_input.spec()
        stored = str(spec.format)
        bits = spec.get_int_attribute("oiio:BitsPerSample", 8 if stored == "uint8" else 16)
        sample = "float" if stored in ("half", "float", "double") else "uint8" if bits <= 8 else "uint16"
        # RGB(A...) gives its first three channels; gray (with or without alpha) its first
        pixels = image_input.read_image(0, 0, 0, 3 if spec.nchannels >= 3 else 1, sample)
        if pixels is None or not isinstance(pixels, np.ndarray):
            raise FrameError(f"cannot decode image {path!r}: {image_input.geterror() or 'no pixels'}")
    finally:
        image_input.close()
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    elif pixels.shape[2] != 3:
        raise FrameError(f"{path!r}: unsupported image layout {pixels.shape}; expected gray or RGB")
    return np.ascontiguousarray(pixels)


def _read_with_ffmpeg(path: str) -> np.ndarray:
    """A single-image file FFmpeg decodes -> uint8 or uint16 RGB (the DPX reader before OpenImageIO;
    `samroto bench read` still times it)."""
    import av

    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            frame = next(container.decode(stream))
            return frame.to_ndarray(format=_rgb_format_for(frame.format))
    except (av.FFmpegError, StopIteration, IndexError) as error:
        raise FrameError(f"cannot decode image {path!r}: {error or 'no picture in file'}") from None


def _rgb_format_for(pixel_format: Any) -> str:
    """rgb24 for 8-bit pixel formats, rgb48le (uint16) for deeper ones."""
    bits = max((component.bits for component in pixel_format.components), default=8)
    return "rgb48le" if bits > 8 else "rgb24"


def _still_frame_number(path: str) -> int:
    """The frame number in a single image's name (`plate.1001.png` is frame 1001), else 0."""
    match = re.search(r"[._](\d+)\.[^.]+$", os.path.basename(path))
    return int(match.group(1)) if match else 0


def _png_size(path: str) -> tuple[int, int] | None:
    """(height, width) from a PNG's IHDR chunk without decoding it; None if the header is not PNG's."""
    with open(path, "rb") as file:
        head = file.read(24)
    if len(head) < 24 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return int.from_bytes(head[20:24], "big"), int.from_bytes(head[16:20], "big")


def image_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(height, width) of an image file, reading only the header for EXR and PNG."""
    text = os.fspath(path)
    if os.path.splitext(text)[1].lower() == ".png":
        try:
            size = _png_size(text)
        except OSError as error:
            raise FrameError(f"cannot read image {text!r}: {error}") from None
        if size is not None:
            return size
    height, width, _, _ = _probe(text)
    return height, width


def _probe(path: str) -> tuple[int, int, bool, HeaderColour | None]:
    """(height, width, float pixels, what the header says of colour) of an image file, decoding as
    little as the format allows."""
    require_regular_file(path, "image file")
    if os.path.splitext(path)[1].lower() == ".exr":
        height, width, header = _exr_probe(path)
        return height, width, True, header
    image, header = _read_pixels(path)
    return image.shape[0], image.shape[1], image.dtype.kind == "f", header


# ---------------------------------------------------------------------------------------------
# Sources


class FrameSource(abc.ABC):
    """Frames of a plate, decoded on demand, addressed by the plate's own frame numbers.

    `frame_numbers` is contiguous: a sequence `shot.####.exr` from 1001 has 1001, 1002, ...; a video
    file and an array start at 0. `read` returns a new H*W*3 RGB array the caller owns: uint8,
    uint16, or float32 in [0, 1]. Sources are context managers; `close` releases file handles.
    """

    frame_numbers: range
    height: int
    width: int

    def __len__(self) -> int:
        return len(self.frame_numbers)

    @property
    def first_frame(self) -> int:
        return self.frame_numbers.start

    @property
    def last_frame(self) -> int:
        return self.frame_numbers.stop - 1

    def index_of(self, frame: int) -> int:
        """Position of a plate frame number in this source (0 for the first frame)."""
        if isinstance(frame, bool):
            raise FrameError(f"frame number must be an integer, not {frame!r}")
        try:
            number = operator.index(frame)
        except TypeError:
            raise FrameError(f"frame number must be an integer, not {frame!r}") from None
        if number not in self.frame_numbers:
            raise FrameError(f"frame {number} is outside {self._name()}'s range {self.first_frame}-{self.last_frame}")
        return number - self.frame_numbers.start

    @abc.abstractmethod
    def read(self, frame: int) -> np.ndarray:
        """frame: a plate frame number -> H*W*3 RGB (uint8, uint16, or float32 in [0, 1])."""

    @abc.abstractmethod
    def describe(self) -> dict[str, Any]:
        """JSON-able spec that `open_frames` accepts to reopen the same frames."""

    def close(self) -> None:
        """Release file handles; reading after close is an error for file sources."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _name(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return f"<{self._name()} frames {self.first_frame}-{self.last_frame}, {self.width}x{self.height}>"


def _validated_range(available: range, first: int | None, last: int | None, what: str) -> range:
    first = available.start if first is None else operator.index(first)
    last = available.stop - 1 if last is None else operator.index(last)
    if first > last:
        raise FrameError(f"{what}: first frame {first} is after last frame {last}")
    if first not in available or last not in available:
        raise FrameError(
            f"{what}: requested frames {first}-{last} are outside the available {available.start}-{available.stop - 1}"
        )
    return range(first, last + 1)


class ArrayFrames(FrameSource):
    """Frames already in memory: array N*H*W*3 uint8, uint16 or float (display-referred [0, 1]).

    Float frames are clipped to [0, 1], or made display-referred by `view` (colour settings, see
    `read_image`) when it is given. `read` returns a copy, so the caller may modify it.
    """

    def __init__(self, array: np.ndarray, first_frame: int = 0, *, view: ColourSpec | None = None) -> None:
        array = np.asarray(array)
        if array.ndim != 4 or array.shape[-1] != 3 or 0 in array.shape:
            raise FrameError(f"frames array must be N*H*W*3 with N, H, W > 0, got shape {array.shape}")
        if not (array.dtype in (np.uint8, np.uint16) or array.dtype.kind == "f"):
            raise FrameError(f"frames array must be uint8, uint16 or float, not {array.dtype}")
        self._array = array
        self._colour = None if view is None else plate_colour(view, array.dtype.kind == "f", None, "frames array")
        self.frame_numbers = range(operator.index(first_frame), operator.index(first_frame) + array.shape[0])
        self.height, self.width = int(array.shape[1]), int(array.shape[2])

    def read(self, frame: int) -> np.ndarray:
        image = self._array[self.index_of(frame)]
        if self._colour is not None:
            return to_display(image.copy(), self._colour)
        if image.dtype.kind != "f":
            return image.copy()
        return np.clip(np.nan_to_num(image.astype(np.float32)), 0.0, 1.0)

    def describe(self) -> dict[str, Any]:
        # the pixels are not part of the description: an array source cannot be reopened from it
        return {
            "kind": "array",
            "first": self.first_frame,
            "last": self.last_frame,
            "height": self.height,
            "width": self.width,
            "dtype": str(self._array.dtype),
        }


class PushedFrames(FrameSource):
    """Frames a client pushed over the wire, one `<frame>.npy` file each in a folder.

    The range and size are fixed when the session opens; a frame not pushed yet is an error
    when read. Files are loaded without pickle.
    """

    def __init__(self, folder: str | os.PathLike[str], first: int, last: int, height: int, width: int) -> None:
        self.folder = os.fspath(folder)
        self.frame_numbers = range(operator.index(first), operator.index(last) + 1)
        self.height, self.width = int(height), int(width)

    def path_of(self, frame: int) -> str:
        return os.path.join(self.folder, f"{frame}.npy")

    def read(self, frame: int) -> np.ndarray:
        self.index_of(frame)
        path = self.path_of(frame)
        if not os.path.isfile(path):
            raise FrameError(f"frame {frame} has not been pushed yet")
        return np.load(path, allow_pickle=False)

    def describe(self) -> dict[str, Any]:
        return {"kind": "pushed", "first": self.first_frame, "last": self.last_frame,
                "height": self.height, "width": self.width}


class ImageSequenceFrames(FrameSource):
    """A numbered image sequence (`plate.####.exr`), or a single still image when the path has no token.

    first/last default to the range of files found in the folder. A frame missing inside the range
    is an error when it is read (naming the file), not when the source is opened. A still image is
    one frame, numbered `first` (default: the number in its name, `plate.1001.png` is 1001, else 0).
    Colour (`view`, see `read_image`) is resolved once, from the first file's header and sample type;
    `colour` holds every choice made.
    """

    def __init__(
        self,
        pattern: str | os.PathLike[str],
        first: int | None = None,
        last: int | None = None,
        *,
        view: ColourSpec | None = None,
    ) -> None:
        text = os.fspath(pattern)
        extension = os.path.splitext(text)[1].lower()
        if extension not in IMAGE_EXTENSIONS:
            raise FrameError(
                f"{text!r}: unknown image extension {extension!r}; expected one of {sorted(IMAGE_EXTENSIONS)}"
            )
        self._pattern = FramePattern.parse(text)
        if self._pattern is None:
            self._still_path: str | None = text
            if not os.path.isfile(text):
                raise FrameError(f"image file {text!r} does not exist")
            number = _still_frame_number(text) if first is None else operator.index(first)
            if last is not None and operator.index(last) != number:
                raise FrameError(f"{text!r} is a single image: it has one frame, so last must equal first")
            self.frame_numbers = range(number, number + 1)
            size_from = text
        else:
            self._still_path = None
            self.frame_numbers, size_from = self._find_range(first, last)
        # one file decides the sequence's colour: its header, and whether its pixels are float
        self.height, self.width, float_pixels, header = _probe(size_from)
        self.colour = plate_colour(view, float_pixels, header, size_from)

    def _find_range(self, first: int | None, last: int | None) -> tuple[range, str]:
        pattern = self._pattern
        assert pattern is not None
        if first is not None and last is not None and os.path.isfile(pattern.path(first)):
            found = [operator.index(first)]  # no folder scan needed when the caller knows the range
        else:
            found = pattern.scan()
        if not found:
            raise FrameError(f"no files match the pattern {pattern.pattern!r}")
        first = found[0] if first is None else operator.index(first)
        last = found[-1] if last is None else operator.index(last)
        if first > last:
            raise FrameError(f"{pattern.pattern!r}: first frame {first} is after last frame {last}")
        present = [frame for frame in found if first <= frame <= last]
        if not present:
            raise FrameError(
                f"no files of {pattern.pattern!r} in the range {first}-{last} (found {found[0]}-{found[-1]})"
            )
        return range(first, last + 1), pattern.path(present[0])

    @property
    def pattern(self) -> str:
        return self._pattern.pattern if self._pattern is not None else str(self._still_path)

    def path_of(self, frame: int) -> str:
        """The file that holds a frame."""
        self.index_of(frame)
        if self._pattern is None:
            return str(self._still_path)
        return self._pattern.path(frame)

    def read(self, frame: int) -> np.ndarray:
        path = self.path_of(frame)
        if not os.path.isfile(path):
            raise FrameError(f"frame {frame} of {self.pattern!r} is missing: {path!r} does not exist")
        image = read_image(path, view=self.colour)
        if image.shape[:2] != (self.height, self.width):
            raise FrameError(
                f"{path!r} is {image.shape[1]}x{image.shape[0]}, but the sequence is {self.width}x{self.height}"
            )
        return image

    def describe(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"first": self.first_frame, "last": self.last_frame, "colour": self.colour.to_dict()}
        if self._pattern is None:
            return {"kind": "image", "path": str(self._still_path), **spec}
        return {"kind": "image_sequence", "pattern": self._pattern.pattern, **spec}

    def _name(self) -> str:
        return self.pattern


class VideoFileFrames(FrameSource):
    """A video file decoded with PyAV; frame k is the k-th frame in presentation order (from 0).

    Opening demuxes the file once (packets only, no decoding) to learn every frame's timestamp and
    where the keyframes are: that makes the frame count exact and random access precise. Reading
    forward keeps the decoder going; a jump, or a step backward, seeks to the keyframe at or before
    the target and decodes forward. The last decoded frames are kept, in the decoder's own pixel
    format, up to `cache_bytes` (at least 2, at most 64 frames). A backward step that seeks decodes
    up to the target and keeps the frames just before it, so reading a shot backward costs one seek
    per cache-full of frames rather than one per frame.

    8-bit streams come back as uint8 RGB, deeper ones (yuv420p10le, ...) as uint16 RGB, converted
    with the stream's own YUV matrix and range. Safe to share between threads (reads are serialised).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        first: int | None = None,
        last: int | None = None,
        cache_bytes: int = DEFAULT_VIDEO_CACHE_BYTES,
        view: ColourSpec | None = None,
    ) -> None:
        import av

        self.path = os.fspath(path)
        self.seeks = 0  # decoder restarts so far (benchmarks and tests read it)
        self.decoded_frames = 0
        require_regular_file(self.path, "video file")
        # decoded video is display-referred unless the caller names its colourspace
        self.colour = plate_colour(view, False, None, self.path)
        try:
            self._container = av.open(self.path)
        except av.FFmpegError as error:
            raise FrameError(f"cannot open video {self.path!r}: {error}") from None
        try:
            if not self._container.streams.video:
                raise FrameError(f"{self.path!r} has no video stream")
            self._stream = self._container.streams.video[0]
            self._stream.thread_type = "AUTO"
            self._build_index_from_packets()
            self.frame_numbers = _validated_range(range(len(self._pts)), first, last, self.path)
            codec = self._stream.codec_context
            self.height, self.width = int(codec.height), int(codec.width)
            pixel_format = codec.format
            if not (self.height and self.width and pixel_format is not None):
                probe = self._decode_one(0)
                self.height, self.width, pixel_format = probe.height, probe.width, probe.format
            self._rgb_format = _rgb_format_for(pixel_format)
            frame_bytes = _frame_bytes(pixel_format, self.width, self.height)
        except BaseException:
            self._container.close()
            raise
        self.cache_capacity = int(
            min(MAX_VIDEO_CACHE_FRAMES, max(MIN_VIDEO_CACHE_FRAMES, cache_bytes // max(frame_bytes, 1)))
        )
        self._cache: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self._decoded: Iterator[tuple[int, Any]] | None = None
        self._position = -1  # index of the last frame `_decoded` produced
        self._lock = threading.Lock()
        self._closed = False

    # -- index ------------------------------------------------------------------------------

    def _build_index_from_packets(self) -> None:
        """Timestamps of all frames in presentation order, and which of them are keyframes."""
        import av

        pts: list[int] = []
        keyframe_pts: list[int] = []
        try:
            for packet in self._container.demux(self._stream):
                if packet.size == 0 or packet.is_discard:  # flush packet; frames FFmpeg drops (edit lists)
                    continue
                if packet.pts is None:
                    self._build_index_by_decoding()
                    return
                pts.append(packet.pts)
                if packet.is_keyframe:
                    keyframe_pts.append(packet.pts)
        except av.FFmpegError as error:
            raise FrameError(f"cannot read video {self.path!r}: {error}") from None
        self._set_index(pts, keyframe_pts)

    def _build_index_by_decoding(self) -> None:
        """The slow, authoritative index: decode everything once (for files whose packets lack timestamps)."""
        import av

        pts: list[int] = []
        keyframe_pts: list[int] = []
        try:
            self._reopen()  # not every file that needs this can seek back to its start
            for frame in self._container.decode(self._stream):
                if frame.pts is None:
                    raise FrameError(
                        f"{self.path!r}: video frames have no timestamps (a raw stream?); "
                        "convert it to MP4/MOV/MKV or an image sequence"
                    )
                pts.append(frame.pts)
                if frame.key_frame:
                    keyframe_pts.append(frame.pts)
        except av.FFmpegError as error:
            raise FrameError(f"cannot decode video {self.path!r}: {error}") from None
        self._set_index(pts, keyframe_pts)

    def _reopen(self) -> None:
        import av

        self._container.close()
        self._container = av.open(self.path)
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"

    def _set_index(self, pts: list[int], keyframe_pts: list[int]) -> None:
        if not pts:
            raise FrameError(f"{self.path!r} has no video frames")
        self._pts = sorted(pts)
        self._index_by_pts = {value: index for index, value in enumerate(self._pts)}
        if len(self._index_by_pts) != len(self._pts):
            raise FrameError(f"{self.path!r}: several video frames share a timestamp; convert it to an image sequence")
        self._keyframes = sorted({self._index_by_pts[value] for value in keyframe_pts}) or [0]
        if self._keyframes[0] != 0:
            self._keyframes.insert(0, 0)  # decoding from the very start always works

    # -- decoding ---------------------------------------------------------------------------

    def _decode_from(self, keyframe: int) -> Iterator[tuple[int, Any]]:
        """(index, frame) from the keyframe `keyframe` on, in presentation order."""
        self.seeks += 1
        self._container.seek(self._pts[keyframe], stream=self._stream, backward=True)  # also flushes the decoder
        floor: int | None = None  # first index that decodes correctly after the seek
        for packet in self._container.demux(self._stream):
            if floor is None and packet.pts is not None:
                if not packet.is_keyframe:
                    continue  # nothing before the first keyframe decodes correctly
                # frames shown before this keyframe (open-GOP leading pictures) reference the
                # previous GOP, which the decoder never saw: drop them
                floor = bisect.bisect_left(self._pts, packet.pts)
            for frame in packet.decode():
                index = None if frame.pts is None else self._index_by_pts.get(frame.pts)
                if index is None:
                    raise _IndexMismatch(frame.pts)
                if floor is None:  # packets without timestamps: start at the first keyframe shown
                    if not frame.key_frame:
                        continue
                    floor = index
                if index >= floor:
                    self.decoded_frames += 1
                    yield index, frame

    def _decode_one(self, index: int) -> Any:
        decoded = self._decode_from(0)
        try:
            for decoded_index, frame in decoded:
                if decoded_index == index:
                    return frame
        finally:
            decoded.close()  # type: ignore[attr-defined]
        raise FrameError(f"frame {index} of {self.path!r} could not be decoded")

    def _frame(self, index: int) -> Any:
        """The decoded frame at `index`, from the cache or the decoder (which then caches around it)."""
        cached = self._cache.get(index)
        if cached is not None:
            self._cache.move_to_end(index)
            return cached
        keyframe_position = bisect.bisect_right(self._keyframes, index) - 1
        keyframe = self._keyframes[keyframe_position]
        # keep going when no keyframe lies between the decoder and the target: cheaper than a seek
        if self._decoded is None or not (self._position < index and keyframe <= self._position + 1):
            self._restart(keyframe)
        while True:
            found = self._advance_to(index)
            if found is not None:
                return found
            # the seek landed after the target (container index disagrees with ours): start earlier
            if keyframe_position == 0:
                raise FrameError(f"frame {index} of {self.path!r} could not be decoded")
            keyframe_position -= 1
            self._restart(self._keyframes[keyframe_position])

    def _restart(self, keyframe: int) -> None:
        if self._decoded is not None:
            self._decoded.close()  # type: ignore[attr-defined]
        self._decoded = self._decode_from(keyframe)
        self._position = -1

    def _advance_to(self, index: int) -> Any | None:
        """Decode forward until `index`; None if the decoder passed it (or ended) without producing it."""
        assert self._decoded is not None
        keep_from = index - self.cache_capacity + 1
        for decoded_index, frame in self._decoded:
            self._position = decoded_index
            if decoded_index >= keep_from:
                self._remember(decoded_index, frame)
            if decoded_index == index:
                return frame
            if decoded_index > index:
                return None
        self._decoded = None
        return None

    def _remember(self, index: int, frame: Any) -> None:
        self._cache[index] = frame
        self._cache.move_to_end(index)
        while len(self._cache) > self.cache_capacity:
            self._cache.popitem(last=False)

    # -- public -----------------------------------------------------------------------------

    @property
    def cached_frames(self) -> int:
        """How many decoded frames are held right now (never more than `cache_capacity`)."""
        return len(self._cache)

    def read(self, frame: int) -> np.ndarray:
        import av

        index = self.index_of(frame) + self.frame_numbers.start  # a video's frame number is its index
        with self._lock:
            if self._closed:
                raise FrameError(f"{self.path!r} is closed")
            try:
                try:
                    decoded = self._frame(index)
                except _IndexMismatch:
                    # packets and decoder disagree on timestamps: rebuild the index from a full decode
                    self._cache.clear()
                    self._decoded = None
                    self._build_index_by_decoding()
                    try:
                        decoded = self._frame(index)
                    except _IndexMismatch as mismatch:
                        raise FrameError(
                            f"{self.path!r}: the decoder outputs a frame at timestamp {mismatch} that a full "
                            "decode did not; convert the file to an image sequence"
                        ) from None
                image = decoded.to_ndarray(format=self._rgb_format)
            except av.FFmpegError as error:
                self._decoded = None
                raise FrameError(f"cannot decode frame {frame} of {self.path!r}: {error}") from None
        return to_display(image, self.colour)

    def describe(self) -> dict[str, Any]:
        spec = {"kind": "video", "path": self.path, "first": self.first_frame, "last": self.last_frame}
        if self.colour.converts:
            spec["colour"] = self.colour.to_dict()
        return spec

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._decoded is not None:
                self._decoded.close()  # type: ignore[attr-defined]
                self._decoded = None
            self._cache.clear()
            self._container.close()

    def _name(self) -> str:
        return self.path


class _IndexMismatch(Exception):
    """A decoded frame's timestamp is not in the packet index."""


def _frame_bytes(pixel_format: Any, width: int, height: int) -> int:
    """Bytes of one decoded frame in its own pixel format (yuv420p: 1.5 a pixel)."""
    try:
        import av

        layout = av.VideoFormat(pixel_format.name, width, height)
        return sum(
            component.width * component.height * math.ceil(component.bits / 8) for component in layout.components
        )
    except Exception:  # an exotic format PyAV cannot describe: assume 16-bit RGBA, the worst case
        return width * height * 8


# ---------------------------------------------------------------------------------------------
# Factory


FrameSpec = str | os.PathLike | np.ndarray | FrameSource | Mapping[str, Any]


def open_frames(
    spec: FrameSpec | None = None,
    *,
    first: int | None = None,
    last: int | None = None,
    view: ColourSpec | None = None,
    colour: ColourSpec | None = None,
    kind: str | None = None,
    path: str | os.PathLike[str] | None = None,
    pattern: str | os.PathLike[str] | None = None,
) -> FrameSource:
    """Open a plate as a `FrameSource`.

    spec: a video file, an image sequence pattern (`plate.####.exr`, `plate.%04d.png`, `plate.@@@@.jpg`),
    a single image, an N*H*W*3 array, an open FrameSource (returned as is), or a `describe()` dict.
    The description's keys may also be given as keywords: `open_frames(**source.describe())`.

    first/last: for sequences, the range (default: the files found); for videos, a sub-range of
    0..N-1; for a still image, its frame number; for an array, the first frame's number.
    colour: how the plate becomes display-referred: `ColourSettings` (or its dict), a resolved
    `PlateColour`, or a `ViewTransform` curve; default OCIO with `$OCIO` or the built-in config
    (see `samroto.core.colour`). `view` is the older name of the same argument.
    """
    if colour is not None and view is not None:
        raise FrameError("give colour or view (its older name), not both")
    view = colour if colour is not None else view
    if spec is None:
        if kind is None:
            raise FrameError("open_frames needs a path, pattern, array, FrameSource or description")
        spec = {"kind": kind, "path": path, "pattern": pattern}
    elif kind is not None or path is not None or pattern is not None:
        raise FrameError("give either a spec or kind/path/pattern keywords, not both")
    if isinstance(spec, Mapping):
        return _open_description(spec, first=first, last=last, view=view)
    if isinstance(spec, FrameSource):
        if first is not None or last is not None:
            raise FrameError("first/last cannot be applied to an already open FrameSource")
        return spec
    if isinstance(spec, np.ndarray):
        array = spec[None] if spec.ndim == 3 else spec
        if last is not None and last != (first or 0) + len(array) - 1:
            raise FrameError(f"an array of {len(array)} frames from {first or 0} cannot end at {last}")
        return ArrayFrames(array, first_frame=first or 0, view=view)
    if not isinstance(spec, (str, os.PathLike)):
        raise FrameError(f"cannot open frames from a {type(spec).__name__}")
    text = os.fspath(spec)
    extension = os.path.splitext(text)[1].lower()
    if os.path.isdir(text):
        raise FrameError(f"{text!r} is a folder; give a file pattern such as {os.path.join(text, 'name.####.png')!r}")
    if extension in VIDEO_EXTENSIONS:
        return VideoFileFrames(text, first=first, last=last, view=view)
    if extension in IMAGE_EXTENSIONS:
        return ImageSequenceFrames(text, first, last, view=view)
    known = sorted(VIDEO_EXTENSIONS | IMAGE_EXTENSIONS)
    raise FrameError(f"{text!r}: unknown plate extension {extension!r}; expected one of {known}")


def _open_description(
    spec: Mapping[str, Any], *, first: int | None, last: int | None, view: ColourSpec | None
) -> FrameSource:
    kind = spec.get("kind")
    first = spec.get("first") if first is None else first
    last = spec.get("last") if last is None else last
    if view is None:
        # "colour" (ColourSettings.to_dict) or, in older descriptions, "view" (a curve)
        view = spec.get("colour") if spec.get("colour") is not None else spec.get("view")
    if kind == "video":
        return VideoFileFrames(_required(spec, "path"), first=first, last=last, view=view)
    if kind == "image":
        return ImageSequenceFrames(_required(spec, "path"), first, last, view=view)
    if kind == "image_sequence":
        return ImageSequenceFrames(_required(spec, "pattern"), first, last, view=view)
    if kind == "array":
        raise FrameError("an array source cannot be reopened from its description: pass the array itself")
    raise FrameError(f"unknown frame source kind {kind!r}; expected 'video', 'image_sequence' or 'image'")


def _required(spec: Mapping[str, Any], key: str) -> str:
    value = spec.get(key)
    if not value:
        raise FrameError(f"a {spec.get('kind')!r} description needs {key!r}")
    return os.fspath(value)
