"""Frame sources: image sequences in every plate format, videos with random access, arrays, errors."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np
import OpenEXR
import pytest

from samroto.core.frames import (
    ArrayFrames,
    FrameError,
    FramePattern,
    ImageSequenceFrames,
    VideoFileFrames,
    ViewTransform,
    open_frames,
    read_image,
)

MEDIA = Path(__file__).resolve().parents[3] / "shared" / "media"
FIRST = 1001
HEIGHT, WIDTH = 12, 20


# ---------------------------------------------------------------------------------------------
# Helpers


def plate_frame(index: int, dtype: type = np.uint8) -> np.ndarray:
    """A distinct HEIGHT*WIDTH*3 picture per index: gradients offset by the index."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    rgb = np.stack([x * 12 + index * 7, y * 20 + index * 3, (x + y) * 6 + 50], axis=-1) % 256
    if dtype == np.uint16:
        return (rgb * 257 + index).astype(np.uint16)
    if dtype == np.float32:
        return (rgb / 200.0).astype(np.float32)  # scene-linear: some values above 1
    return rgb.astype(np.uint8)


def write_opencv(path: Path, rgb: np.ndarray) -> None:
    params = []
    if path.suffix == ".tif" and rgb.dtype == np.float32:
        # OpenCV 4 writes 3-channel float TIFF as lossy LogLuv unless told otherwise
        params = [cv2.IMWRITE_TIFF_COMPRESSION, 1]
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params), path


def write_exr(path: Path, rgb: np.ndarray, pixel_type: type) -> None:
    channels: dict[str, np.ndarray] = {
        name: np.ascontiguousarray(rgb[..., i].astype(pixel_type)) for i, name in enumerate("RGB")
    }
    OpenEXR.File({"compression": OpenEXR.ZIP_COMPRESSION}, channels).write(str(path))


def write_dpx(path: Path, rgb: np.ndarray) -> None:
    """8-bit (uint8 input) or 10-bit (uint16 input) DPX through FFmpeg's encoder."""
    ten_bit = rgb.dtype == np.uint16
    with av.open(str(path), "w", format="image2") as output:
        stream: Any = output.add_stream("dpx", rate=1)
        stream.width, stream.height = rgb.shape[1], rgb.shape[0]
        stream.pix_fmt = "gbrp10le" if ten_bit else "rgb24"
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if ten_bit else "rgb24")
        for packet in stream.encode(frame.reformat(format=stream.pix_fmt)):
            output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)


def srgb(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear.astype(np.float64), 0, 1)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def video_picture(index: int, height: int, width: int) -> np.ndarray:
    """A frame whose index can be read back after lossy coding: 8 black/white bit bars plus a grey band."""
    image = np.zeros((height, width, 3), np.uint8)
    for bit in range(8):
        if (index >> bit) & 1:
            image[height // 4 :, bit * width // 8 : (bit + 1) * width // 8] = 255
    image[: height // 4] = (index * 37) % 256
    return image


def read_index(image: np.ndarray) -> int:
    """The index a `video_picture` carries."""
    height, width = image.shape[:2]
    bars = image[height // 4 :, :, :].astype(np.float32).mean(axis=(0, 2))
    return sum(1 << bit for bit in range(8) if bars[bit * width // 8 : (bit + 1) * width // 8].mean() > 127)


def encode_video(
    path: Path,
    frames: int,
    *,
    width: int = 64,
    height: int = 48,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
) -> Path:
    with av.open(str(path), "w") as output:
        stream: Any = output.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.options = options or {
            # short GOPs with B-frames: random access must seek and reorder
            "x264-params": "keyint=8:min-keyint=8:bframes=3:scenecut=0:log-level=none",
            "qp": "8",
        }
        for index in range(frames):
            picture = av.VideoFrame.from_ndarray(video_picture(index, height, width), format="rgb24")
            for packet in stream.encode(picture):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def sequential_decode(path: Path, rgb_format: str = "rgb24") -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format=rgb_format) for frame in container.decode(video=0)]


# ---------------------------------------------------------------------------------------------
# Image sequences


LOSSLESS_FORMATS = [
    # (extension, dtype written, dtype read back)
    ("png", np.uint8, np.uint8),
    ("tif", np.uint8, np.uint8),
    ("png", np.uint16, np.uint16),
    ("tiff", np.uint16, np.uint16),
]


def make_sequence(folder: Path, extension: str, dtype: type, frames: range = range(FIRST, FIRST + 4)) -> str:
    for index in frames:
        path = folder / f"plate.{index:04d}.{extension}"
        write_opencv(path, plate_frame(index, dtype))
    return str(folder / f"plate.####.{extension}")


@pytest.mark.parametrize(("extension", "written", "expected"), LOSSLESS_FORMATS)
def test_lossless_sequences_read_back_exactly(tmp_path: Path, extension: str, written: type, expected: type) -> None:
    source = open_frames(make_sequence(tmp_path, extension, written))
    assert isinstance(source, ImageSequenceFrames)
    assert list(source.frame_numbers) == [1001, 1002, 1003, 1004]
    assert (source.height, source.width) == (HEIGHT, WIDTH)
    for index in (1003, 1001, 1004):
        image = source.read(index)
        assert image.dtype == expected and image.shape == (HEIGHT, WIDTH, 3)
        np.testing.assert_array_equal(image, plate_frame(index, written))


def test_jpeg_sequence_is_close(tmp_path: Path) -> None:
    def smooth(index: int) -> np.ndarray:  # JPEG keeps smooth pictures well
        y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
        return np.stack([x * 4 + index % 50, y * 6 + 20, np.full_like(x, 200 - index % 50)], axis=-1).astype(np.uint8)

    for index in range(FIRST, FIRST + 3):
        write_opencv(tmp_path / f"plate.{index}.jpg", smooth(index))
    source = open_frames(tmp_path / "plate.####.jpg")
    image = source.read(1002)
    assert image.dtype == np.uint8 and image.shape == (HEIGHT, WIDTH, 3)
    # JPEG is lossy: close to the original, and clearly frame 1002 rather than 1001
    error = np.abs(image.astype(int) - smooth(1002)).mean()
    assert error < 2
    assert error < np.abs(image.astype(int) - smooth(1001)).mean()


def test_float_tiff_is_scene_linear(tmp_path: Path) -> None:
    linear = plate_frame(FIRST, np.float32)
    write_opencv(tmp_path / "plate.1001.tif", linear)
    image = open_frames(tmp_path / "plate.####.tif", view=ViewTransform("srgb")).read(FIRST)
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, srgb(linear), atol=1e-5)


@pytest.mark.parametrize("pixel_type", [np.float16, np.float32], ids=["half", "float"])
def test_exr_sequence_gets_the_view_transform(tmp_path: Path, pixel_type: type) -> None:
    for index in range(FIRST, FIRST + 3):
        write_exr(tmp_path / f"plate.{index}.exr", plate_frame(index, np.float32), pixel_type)
    source = open_frames(str(tmp_path / "plate.####.exr"), colour={"config": "none"})  # the sRGB curve
    assert list(source.frame_numbers) == [1001, 1002, 1003]
    image = source.read(1002)
    assert image.dtype == np.float32 and image.shape == (HEIGHT, WIDTH, 3)
    assert image.min() >= 0.0 and image.max() <= 1.0
    linear = plate_frame(1002, np.float32).astype(pixel_type).astype(np.float32)
    np.testing.assert_allclose(image, srgb(linear), atol=1e-5)
    # other curves and exposure on the same file
    flat = ImageSequenceFrames(tmp_path / "plate.####.exr", view=ViewTransform("linear", exposure=-1.0)).read(1002)
    np.testing.assert_allclose(flat, np.clip(linear / 2, 0, 1), atol=1e-6)


def test_exr_luminance_only_and_data_window(tmp_path: Path) -> None:
    y = np.full((HEIGHT, WIDTH), 0.18, np.float32)
    OpenEXR.File({}, {"Y": y}).write(str(tmp_path / "gray.exr"))
    gray = read_image(tmp_path / "gray.exr", view=ViewTransform("linear"))
    np.testing.assert_allclose(gray, np.full((HEIGHT, WIDTH, 3), 0.18), atol=1e-6)

    # a render whose pixels cover only part of the frame (data window inside the display window)
    patch = np.ones((3, 4), np.float32)
    header = {
        "dataWindow": (np.array([5, 2], np.int32), np.array([8, 4], np.int32)),
        "displayWindow": (np.array([0, 0], np.int32), np.array([WIDTH - 1, HEIGHT - 1], np.int32)),
    }
    OpenEXR.File(header, {"R": patch, "G": patch, "B": patch}).write(str(tmp_path / "crop.exr"))
    image = read_image(tmp_path / "crop.exr", view=ViewTransform("linear"))
    assert image.shape == (HEIGHT, WIDTH, 3)
    assert image[2:5, 5:9].min() == 1.0
    assert image.sum() == 3 * 4 * 3


@pytest.mark.parametrize("ten_bit", [False, True], ids=["8bit", "10bit"])
def test_dpx_sequence(tmp_path: Path, ten_bit: bool) -> None:
    dtype = np.uint16 if ten_bit else np.uint8
    for index in range(FIRST, FIRST + 2):
        write_dpx(tmp_path / f"scan.{index:07d}.dpx", plate_frame(index, dtype))
    source = open_frames(str(tmp_path / "scan.%07d.dpx"))
    assert list(source.frame_numbers) == [1001, 1002]
    image = source.read(1002)
    assert image.dtype == dtype and image.shape == (HEIGHT, WIDTH, 3)
    expected = plate_frame(1002, dtype).astype(int)
    # 10-bit keeps the top 10 of 16 bits: within one 10-bit step (64 levels of 16-bit)
    tolerance = 64 if ten_bit else 0
    assert np.abs(image.astype(int) - expected).max() <= tolerance


def test_gray_and_rgba_pngs_become_rgb(tmp_path: Path) -> None:
    gray = plate_frame(0)[..., 0]
    cv2.imwrite(str(tmp_path / "gray.png"), gray)
    image = read_image(tmp_path / "gray.png")
    assert image.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(image, np.repeat(gray[..., None], 3, axis=2))

    rgba = np.dstack([plate_frame(0, np.uint16), np.full((HEIGHT, WIDTH), 1234, np.uint16)])
    cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    image = read_image(tmp_path / "rgba.png")
    assert image.dtype == np.uint16 and image.shape == (HEIGHT, WIDTH, 3)
    np.testing.assert_array_equal(image, plate_frame(0, np.uint16))


@pytest.mark.parametrize(
    ("name", "pattern"),
    [
        ("plate.1001.png", "plate.####.png"),
        ("plate.1001.png", "plate.%04d.png"),
        ("plate.1001.png", "plate.@@@@.png"),
        ("plate_1001.png", "plate_#.png"),
        ("plate_1001.png", "plate_%d.png"),
    ],
)
def test_pattern_spellings(tmp_path: Path, name: str, pattern: str) -> None:
    for index in (1001, 1002):
        write_opencv(tmp_path / name.replace("1001", str(index)), plate_frame(index))
    source = open_frames(tmp_path / pattern)
    assert list(source.frame_numbers) == [1001, 1002]
    np.testing.assert_array_equal(source.read(1002), plate_frame(1002))


def test_pattern_parsing_and_naming() -> None:
    pattern = FramePattern.parse("/shots/sh010/plate.####.exr")
    assert pattern is not None
    assert pattern.path(1001) == "/shots/sh010/plate.1001.exr"
    assert pattern.path(12) == "/shots/sh010/plate.0012.exr"
    assert pattern.path(10000) == "/shots/sh010/plate.10000.exr"
    assert pattern.frame_of("plate.1001.exr") == 1001
    assert pattern.frame_of("plate.01001.exr") is None  # not how #### spells 1001
    assert pattern.frame_of("plate.1001.exr.bak") is None
    unpadded = FramePattern.parse("plate.%d.png")
    assert unpadded is not None and unpadded.path(7) == "plate.7.png" and unpadded.frame_of("plate.07.png") is None
    assert FramePattern.parse("/dir#1/plate.png") is None  # only the file name carries the token


def test_unpadded_scan_finds_all_widths(tmp_path: Path) -> None:
    for index in (8, 9, 10, 11):
        write_opencv(tmp_path / f"f.{index}.png", plate_frame(index))
    source = open_frames(tmp_path / "f.#.png")
    assert list(source.frame_numbers) == [8, 9, 10, 11]
    np.testing.assert_array_equal(source.read(10), plate_frame(10))


def test_range_detection_and_explicit_range(tmp_path: Path) -> None:
    pattern = make_sequence(tmp_path, "png", np.uint8, range(995, 1010))
    (tmp_path / "plate.####.png.txt").write_text("not a frame")
    (tmp_path / "other.1000.png").write_bytes(b"")
    assert open_frames(pattern).frame_numbers == range(995, 1010)
    assert open_frames(pattern, first=1000).frame_numbers == range(1000, 1010)
    assert open_frames(pattern, last=1000).frame_numbers == range(995, 1001)
    explicit = open_frames(pattern, first=1001, last=1003)
    assert explicit.frame_numbers == range(1001, 1004)
    with pytest.raises(FrameError, match="1001-1003"):
        explicit.read(1004)


def test_missing_frame_in_the_middle_is_named_when_read(tmp_path: Path) -> None:
    pattern = make_sequence(tmp_path, "png", np.uint8, range(1001, 1006))
    os.remove(tmp_path / "plate.1003.png")
    source = open_frames(pattern)
    assert source.frame_numbers == range(1001, 1006)
    np.testing.assert_array_equal(source.read(1004), plate_frame(1004))
    with pytest.raises(FrameError, match=r"plate\.1003\.png"):
        source.read(1003)


def test_frame_of_another_size_is_an_error(tmp_path: Path) -> None:
    pattern = make_sequence(tmp_path, "png", np.uint8, range(1, 3))
    cv2.imwrite(str(tmp_path / "plate.0002.png"), np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(FrameError, match=r"plate\.0002\.png.*5x5"):
        open_frames(pattern).read(2)


def test_corrupt_image_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "bad.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "bad.exr").write_bytes(b"v/1\x01 nope")
    with pytest.raises(FrameError, match=r"bad\.png"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(FrameError, match=r"bad\.exr"):
        read_image(tmp_path / "bad.exr")


def test_still_image_is_one_frame(tmp_path: Path) -> None:
    write_opencv(tmp_path / "still.png", plate_frame(3))
    still = open_frames(tmp_path / "still.png")
    assert still.frame_numbers == range(0, 1) and len(still) == 1
    np.testing.assert_array_equal(still.read(0), plate_frame(3))
    numbered = open_frames(tmp_path / "still.png", first=1001)
    assert numbered.frame_numbers == range(1001, 1002)
    assert numbered.describe()["kind"] == "image"


def test_describe_reopens_the_same_frames(tmp_path: Path) -> None:
    for index in range(FIRST, FIRST + 3):
        write_exr(tmp_path / f"plate.{index}.exr", plate_frame(index, np.float32), np.float16)
    source = open_frames(tmp_path / "plate.####.exr", first=1002, view=ViewTransform("rec709", exposure=0.5))
    spec = json.loads(json.dumps(source.describe()))
    assert spec["kind"] == "image_sequence" and spec["first"] == 1002 and spec["last"] == 1003
    for again in (open_frames(spec), open_frames(**spec)):
        assert again.frame_numbers == source.frame_numbers
        np.testing.assert_array_equal(again.read(1003), source.read(1003))

    video = encode_video(tmp_path / "clip.mp4", 10)
    with open_frames(video, first=2, last=7) as clip:
        reopened = open_frames(json.loads(json.dumps(clip.describe())))
        assert reopened.frame_numbers == range(2, 8)
        np.testing.assert_array_equal(reopened.read(5), clip.read(5))
        reopened.close()


def test_bad_plates_get_one_clear_error_each(tmp_path: Path) -> None:
    with pytest.raises(FrameError, match="does not exist"):
        open_frames(tmp_path / "nothing.png")
    with pytest.raises(FrameError, match="does not exist"):
        open_frames(tmp_path / "nothing.mov")
    with pytest.raises(FrameError, match="unknown plate extension '.xyz'"):
        open_frames(tmp_path / "plate.####.xyz")
    with pytest.raises(FrameError, match="no files match"):
        open_frames(tmp_path / "plate.####.exr")
    with pytest.raises(FrameError, match="does not exist"):
        open_frames(tmp_path / "missing_folder" / "plate.####.exr")
    with pytest.raises(FrameError, match="is a folder"):
        open_frames(tmp_path)
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(FrameError, match=r"junk\.mp4"):
        open_frames(tmp_path / "junk.mp4")
    with pytest.raises(FrameError, match="cannot be reopened"):
        open_frames({"kind": "array", "first": 0, "last": 3})
    with pytest.raises(FrameError, match="unknown frame source kind"):
        open_frames({"kind": "tape"})
    with pytest.raises(FrameError, match="cannot open frames from a int"):
        open_frames(42)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Arrays


def test_array_frames() -> None:
    frames = np.stack([plate_frame(i) for i in range(5)])
    source = open_frames(frames, first=10)
    assert isinstance(source, ArrayFrames)
    assert source.frame_numbers == range(10, 15) and (source.height, source.width) == (HEIGHT, WIDTH)
    image = source.read(12)
    np.testing.assert_array_equal(image, plate_frame(2))
    image[:] = 0  # the caller owns what read returns
    np.testing.assert_array_equal(source.read(12), plate_frame(2))
    assert source.index_of(14) == 4
    with pytest.raises(FrameError, match="10-14"):
        source.index_of(15)
    with pytest.raises(FrameError, match="integer"):
        source.read(11.5)  # type: ignore[arg-type]
    assert source.describe() == {
        "kind": "array", "first": 10, "last": 14, "height": HEIGHT, "width": WIDTH, "dtype": "uint8"
    }

    floats = np.stack([np.full((2, 3, 3), value, np.float32) for value in (-0.5, 0.25, 2.0, np.nan)])
    clipped = ArrayFrames(floats)
    assert [float(clipped.read(i).max()) for i in range(4)] == [0.0, 0.25, 1.0, 0.0]
    viewed = ArrayFrames(floats, view=ViewTransform())
    assert viewed.read(1)[0, 0, 0] == pytest.approx(srgb(np.array(0.25)), abs=1e-6)
    assert ArrayFrames(np.zeros((1, 2, 2, 3), np.uint16)).read(0).dtype == np.uint16

    with pytest.raises(FrameError, match="N\\*H\\*W\\*3"):
        ArrayFrames(np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(FrameError, match="int32"):
        ArrayFrames(np.zeros((1, 2, 2, 3), np.int32))


def test_view_transform_curves() -> None:
    linear = np.array([-1.0, 0.0, 0.001, 0.18, 1.0, 4.0, np.inf, np.nan], np.float32)
    assert np.array_equal(ViewTransform("linear").apply(linear), np.array([0, 0, 0.001, 0.18, 1, 1, 1, 0], np.float32))
    np.testing.assert_allclose(ViewTransform("srgb").apply(linear[:6]), srgb(linear[:6]), atol=1e-6)
    rec709 = ViewTransform("rec709").apply(np.array([0.01, 0.18], np.float32))
    np.testing.assert_allclose(rec709, [0.045, 1.099 * 0.18**0.45 - 0.099], atol=1e-6)
    assert ViewTransform("linear", exposure=2).apply(np.array([0.1], np.float32))[0] == pytest.approx(0.4)
    with pytest.raises(ValueError, match="curve"):
        ViewTransform("log")  # type: ignore[arg-type]
    assert ViewTransform.from_dict(ViewTransform("rec709", 1.5).to_dict()) == ViewTransform("rec709", 1.5)


# ---------------------------------------------------------------------------------------------
# Video


@pytest.fixture(scope="module")
def short_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return encode_video(tmp_path_factory.mktemp("video") / "index.mp4", 30)


def test_video_reports_count_and_size(short_video: Path) -> None:
    with open_frames(short_video) as source:
        assert isinstance(source, VideoFileFrames)
        assert source.frame_numbers == range(0, 30)
        assert (source.height, source.width) == (48, 64)
        assert source.describe() == {"kind": "video", "path": str(short_video), "first": 0, "last": 29}


def test_video_random_access_returns_the_right_frame(short_video: Path) -> None:
    reference = sequential_decode(short_video)
    assert [read_index(image) for image in reference] == list(range(30))  # the pattern survives coding
    # a small cache forces seeks on every jump and on most backward steps
    with VideoFileFrames(short_video, cache_bytes=1) as source:
        assert source.cache_capacity == 2
        order = [0, 1, 2, 3, 29, 28, 27, 26, 25, 15, 16, 17, 8, 7, 9, 5, 5, 22, 4, 29, 0, 13, 12, 11, 10]
        order += list(range(29, -1, -1)) + list(range(30))
        for frame in order:
            image = source.read(frame)
            assert image.dtype == np.uint8 and image.shape == (48, 64, 3)
            assert read_index(image) == frame
            np.testing.assert_array_equal(image, reference[frame])
        assert source.seeks > 10  # jumps really went through the seek path
        assert source.cached_frames <= 2


def test_index_is_rebuilt_when_decoder_and_packets_disagree(short_video: Path) -> None:
    with VideoFileFrames(short_video) as source:
        # as if the demuxer had reported other timestamps than the decoder outputs
        source._set_index([pts + 1 for pts in source._pts], [])
        assert read_index(source.read(17)) == 17
        assert read_index(source.read(3)) == 3
        assert len(source) == 30


def test_stream_without_timestamps_is_a_clear_error(tmp_path: Path, short_video: Path) -> None:
    raw = tmp_path / "raw.h264"
    with av.open(str(short_video)) as source, av.open(str(raw), "w", format="h264") as output:
        stream = output.add_stream_from_template(source.streams.video[0])
        for packet in source.demux(video=0):
            if packet.size:
                packet.stream = stream
                output.mux(packet)
    with pytest.raises(FrameError, match="no timestamps"):
        VideoFileFrames(raw)


def test_video_subrange_and_errors(short_video: Path) -> None:
    with open_frames(short_video, first=10, last=19) as source:
        assert source.frame_numbers == range(10, 20)
        assert read_index(source.read(19)) == 19
        with pytest.raises(FrameError, match="10-19"):
            source.read(20)
        with pytest.raises(FrameError, match="10-19"):
            source.read(9)
    with pytest.raises(FrameError, match="outside"):
        open_frames(short_video, first=25, last=40)
    source = open_frames(short_video)
    source.close()
    with pytest.raises(FrameError, match="closed"):
        source.read(0)


def test_video_backward_reading_is_chunked(tmp_path: Path) -> None:
    """Reading backward seeks about once per cache-full, not once per frame."""
    one_gop = {"x264-params": "keyint=60:min-keyint=60:scenecut=0:bframes=2:log-level=none"}
    path = encode_video(tmp_path / "long_gop.mp4", 60, options=one_gop)
    with VideoFileFrames(path, cache_bytes=10 * 64 * 48 * 3 // 2) as source:
        assert source.cache_capacity == 10
        frames = [read_index(source.read(frame)) for frame in range(59, -1, -1)]
        assert frames == list(range(59, -1, -1))
        assert source.seeks <= 6
        # one GOP of 60 frames read backward with a 10-frame cache: 60 + 50 + ... + 10 frames decoded
        assert source.decoded_frames <= 60 + 50 + 40 + 30 + 20 + 10


@pytest.mark.parametrize(
    ("name", "codec", "pix_fmt", "options"),
    [
        ("open_gop.mkv", "libx264", "yuv420p", {"x264-params": "keyint=6:bframes=3:open-gop=1:log-level=none"}),
        ("hevc.mp4", "libx265", "yuv420p", {"x265-params": "keyint=7:bframes=4:open-gop=1:log-level=none"}),
        ("intra.avi", "mjpeg", "yuvj420p", {}),
    ],
)
def test_video_containers_and_codecs(
    tmp_path: Path, name: str, codec: str, pix_fmt: str, options: dict[str, str]
) -> None:
    path = encode_video(tmp_path / name, 20, codec=codec, pix_fmt=pix_fmt, options=options)
    reference = sequential_decode(path)
    with VideoFileFrames(path, cache_bytes=1) as source:
        assert len(source) == len(reference) == 20
        for frame in [19, 3, 4, 18, 0, 12, 11, 10]:
            np.testing.assert_array_equal(source.read(frame), reference[frame])


def test_ten_bit_video_comes_back_as_uint16(tmp_path: Path) -> None:
    path = encode_video(
        tmp_path / "deep.mov", 12, pix_fmt="yuv420p10le", options={"x264-params": "keyint=4:log-level=none", "qp": "4"}
    )
    reference = sequential_decode(path, "rgb48le")
    with open_frames(path) as source:
        for frame in (11, 2, 7):
            image = source.read(frame)
            assert image.dtype == np.uint16 and image.shape == (48, 64, 3)
            np.testing.assert_array_equal(image, reference[frame])
            assert read_index((image >> 8).astype(np.uint8)) == frame


def test_reading_in_order_keeps_the_cache_bounded(tmp_path: Path) -> None:
    path = encode_video(
        tmp_path / "long.mp4",
        300,
        width=640,
        height=360,
        options={"preset": "ultrafast", "x264-params": "keyint=100:scenecut=0:log-level=none"},
    )
    with VideoFileFrames(path) as source:
        assert len(source) == 300
        # 640x360 yuv420p is 345,600 bytes a frame: the default 48 MiB budget holds 145, capped at 64
        assert source.cache_capacity == 64
        for frame in source.frame_numbers:
            assert read_index(source.read(frame)) == frame % 256  # the picture carries 8 bits
            assert source.cached_frames <= source.cache_capacity
        assert source.cached_frames == source.cache_capacity
        assert source.decoded_frames == 300 and source.seeks == 1  # one pass, each frame decoded once
    with VideoFileFrames(path, cache_bytes=4 * 345_600) as small:
        assert small.cache_capacity == 4
        for frame in range(0, 300, 3):
            small.read(frame)
            assert small.cached_frames <= 4


def test_real_clip_random_access_matches_sequential_decode() -> None:
    clip = MEDIA / "bedroom.mp4"
    assert clip.is_file(), f"{clip} is missing: the shared media folder must sit beside the repository"
    with av.open(str(clip)) as container:
        reference: dict[int, str] = {}
        for index, decoded in enumerate(container.decode(video=0)):
            reference[index] = hashlib.sha1(decoded.to_ndarray(format="rgb24").tobytes()).hexdigest()
            if index == 40:
                break
    with open_frames(clip) as source:
        assert len(source) == 200 and (source.width, source.height) == (960, 540)
        for frame in [40, 3, 39, 38, 0, 25, 24, 26]:
            assert hashlib.sha1(source.read(frame).tobytes()).hexdigest() == reference[frame], frame
