"""Mattes: logits to alpha, EXR/PNG writers and readers, sequence naming, resume, atomic writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import OpenEXR
import pytest
import torch

from samroto.core.outputs.mattes import (
    MatteError,
    MatteSequenceWriter,
    format_frame_path,
    matte_from_logits,
    read_matte,
    read_matte_attributes,
    read_matte_layers,
    write_layered_matte_exr,
    write_matte_exr,
    write_matte_png,
)

HALF_TOLERANCE = 2.0**-11  # half floats keep 11 significant bits: error <= 2^-11 for values in [0, 1]


def random_alpha(seed: int, shape: tuple[int, ...] = (24, 40)) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def random_logits(seed: int, shape: tuple[int, ...]) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * 6).astype(np.float32)


def leftovers(folder: Path) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.endswith(".tmp"))


# ---------------------------------------------------------------------------------------------
# Values


def test_matte_from_logits() -> None:
    logits = np.array([[-1000.0, -2.0, 0.0, 2.0, 1000.0]], np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow on extreme logits
        soft = matte_from_logits(logits)
    assert soft.dtype == np.float32 and soft.shape == (1, 5)
    np.testing.assert_allclose(soft[0], [0.0, 1 / (1 + np.e**2), 0.5, 1 / (1 + np.e**-2), 1.0], atol=1e-7)
    np.testing.assert_array_equal(matte_from_logits(logits, soft=False), [[0, 0, 0, 1, 1]])
    batch = matte_from_logits(torch.from_numpy(random_logits(0, (3, 4, 5))))
    assert batch.shape == (3, 4, 5) and batch.dtype == np.float32
    with pytest.raises(MatteError, match="NaN"):
        matte_from_logits(np.array([[np.nan]], np.float32))
    with pytest.raises(MatteError, match="shape"):
        matte_from_logits(np.zeros(5, np.float32))


# ---------------------------------------------------------------------------------------------
# EXR and PNG files


def test_exr_round_trip_with_attributes(tmp_path: Path) -> None:
    alpha = random_alpha(1)
    alpha[0, :3] = (0.0, 1.0, 0.5)
    path = tmp_path / "matte.1001.exr"
    attributes = {"samroto/score": 0.875, "samroto/frame": 1001, "samroto/model": "sam2.1_hiera_large"}
    assert write_matte_exr(path, alpha, attributes=attributes) == str(path)

    back = read_matte(path)
    assert back.dtype == np.float32 and back.shape == alpha.shape
    assert np.abs(back - alpha).max() <= HALF_TOLERANCE
    assert tuple(back[0, :3]) == (0.0, 1.0, 0.5)

    # what another EXR reader sees: one half channel `A`, ZIP, and our attributes
    exr = OpenEXR.File(str(path))
    header = exr.header()
    assert list(exr.channels()) == ["A"]
    assert exr.channels()["A"].pixels.dtype == np.float16
    assert header["compression"] == OpenEXR.ZIP_COMPRESSION
    assert header["samroto/score"] == 0.875 and header["samroto/frame"] == 1001
    assert header["samroto/model"] == "sam2.1_hiera_large"
    assert read_matte_attributes(path) == attributes


def test_exr_attribute_validation(tmp_path: Path) -> None:
    alpha = random_alpha(2)
    with pytest.raises(MatteError, match="32 bits"):
        write_matte_exr(tmp_path / "a.exr", alpha, attributes={"big": 2**40})
    with pytest.raises(MatteError, match="reserved"):
        write_matte_exr(tmp_path / "a.exr", alpha, attributes={"channels": "A"})
    with pytest.raises(MatteError, match="float, int or str"):
        write_matte_exr(tmp_path / "a.exr", alpha, attributes={"list": [1, 2]})  # type: ignore[dict-item]
    with pytest.raises(MatteError, match="compression"):
        write_matte_exr(tmp_path / "a.exr", alpha, compression="jpeg")
    with pytest.raises(MatteError, match="H\\*W"):
        write_matte_exr(tmp_path / "a.exr", alpha[None])
    with pytest.raises(MatteError, match="NaN"):
        write_matte_exr(tmp_path / "a.exr", np.full((2, 2), np.nan, np.float32))
    with pytest.raises(MatteError, match="does not exist"):
        write_matte_exr(tmp_path / "no_such_folder" / "a.exr", alpha)
    assert not (tmp_path / "a.exr").exists() and leftovers(tmp_path) == []


def test_layered_exr(tmp_path: Path) -> None:
    alphas = np.stack([random_alpha(3), random_alpha(4), random_alpha(5)])
    path = tmp_path / "shot.1001.exr"
    write_layered_matte_exr(path, alphas, ["obj1", "obj2", "hero"], attributes={"hero/samroto/score": 0.5})
    assert sorted(OpenEXR.File(str(path)).channels()) == ["hero.A", "obj1.A", "obj2.A"]
    layers = read_matte_layers(path)
    assert sorted(layers) == ["hero", "obj1", "obj2"]
    for index, name in enumerate(["obj1", "obj2", "hero"]):
        assert np.abs(read_matte(path, layer=name) - alphas[index]).max() <= HALF_TOLERANCE
        assert np.abs(layers[name] - alphas[index]).max() <= HALF_TOLERANCE
    assert read_matte_attributes(path) == {"hero/samroto/score": 0.5}
    with pytest.raises(MatteError, match="several layers"):
        read_matte(path)
    with pytest.raises(MatteError, match="no layer 'villain'"):
        read_matte(path, layer="villain")
    with pytest.raises(MatteError, match="layer name"):
        write_layered_matte_exr(tmp_path / "bad.exr", alphas[:1], ["left hand"])
    with pytest.raises(MatteError, match="unique"):
        write_layered_matte_exr(tmp_path / "bad.exr", alphas[:2], ["a", "a"])
    with pytest.raises(MatteError, match="2 layer names"):
        write_layered_matte_exr(tmp_path / "bad.exr", alphas, ["a", "b"])


def test_png16_round_trip(tmp_path: Path) -> None:
    alpha = random_alpha(6)
    alpha[0, :4] = (0.0, 1.0, 0.5, 1.5)  # out-of-range values are clipped
    path = tmp_path / "matte.0001.png"
    write_matte_png(path, alpha)
    stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert stored is not None
    assert stored.dtype == np.uint16 and stored.shape == alpha.shape  # gray, 16-bit
    np.testing.assert_array_equal(stored, np.rint(np.clip(alpha, 0, 1) * 65535).astype(np.uint16))
    assert tuple(stored[0, :4]) == (0, 65535, 32768, 65535)
    back = read_matte(path)
    assert back.dtype == np.float32
    assert np.abs(back - np.clip(alpha, 0, 1)).max() <= 0.5 / 65535 + 1e-7


def test_reading_errors(tmp_path: Path) -> None:
    with pytest.raises(MatteError, match="does not exist"):
        read_matte(tmp_path / "missing.exr")
    (tmp_path / "broken.exr").write_bytes(b"v/1\x01 truncated")
    with pytest.raises(MatteError, match=r"broken\.exr"):
        read_matte(tmp_path / "broken.exr")
    (tmp_path / "matte.tif").write_bytes(b"")
    with pytest.raises(MatteError, match=".exr or .png"):
        read_matte(tmp_path / "matte.tif")
    OpenEXR.File({}, {"R": random_alpha(7)}).write(str(tmp_path / "rgb.exr"))
    # a one-channel file without an alpha is still not a matte this module wrote
    with pytest.raises(MatteError, match="no alpha channel"):
        read_matte(tmp_path / "rgb.exr")


# ---------------------------------------------------------------------------------------------
# Naming and sequences


@pytest.mark.parametrize(
    ("template", "frame", "expected"),
    [
        ("out/sh010_obj1_matte.####.exr", 1001, "out/sh010_obj1_matte.1001.exr"),
        ("m.####.exr", 7, "m.0007.exr"),
        ("m.####.exr", 12345, "m.12345.exr"),
        ("m.%04d.png", 42, "m.0042.png"),
        ("m.%d.png", 42, "m.42.png"),
        ("m.@@@@@.exr", 42, "m.00042.exr"),
        ("m_#.exr", 42, "m_42.exr"),
    ],
)
def test_format_frame_path(template: str, frame: int, expected: str) -> None:
    assert format_frame_path(template, frame) == expected


def test_format_frame_path_needs_a_token() -> None:
    with pytest.raises(MatteError, match="frame number token"):
        format_frame_path("matte.exr", 1)


def test_sequence_writer_per_object_exr(tmp_path: Path) -> None:
    writer = MatteSequenceWriter(tmp_path / "mattes", shot="sh010", object_names={2: "hero"})
    logits = random_logits(8, (2, 16, 24))
    written = writer.write(1001, [1, 2], logits, attributes={2: {"samroto/score": 0.25}})
    assert written == {
        1: str(tmp_path / "mattes" / "sh010_obj1_matte.1001.exr"),
        2: str(tmp_path / "mattes" / "sh010_hero_matte.1001.exr"),
    }
    assert writer.path_for(2, 1001) == written[2]
    assert writer.pattern_for(2) == str(tmp_path / "mattes" / "sh010_hero_matte.####.exr")
    assert np.abs(read_matte(written[1]) - matte_from_logits(logits[0])).max() <= HALF_TOLERANCE
    assert read_matte_attributes(written[2]) == {"samroto/frame": 1001, "samroto/obj_id": 2, "samroto/score": 0.25}
    writer.write(1002, [1], logits[:1])
    assert writer.existing_frames(1) == {1001, 1002}
    assert writer.existing_frames(2) == {1001}
    assert writer.existing_frames(3) == set()


def test_sequence_writer_binary_png_in_subfolders(tmp_path: Path) -> None:
    writer = MatteSequenceWriter(
        tmp_path, name_template="{obj}/{shot}_{obj_id}.%04d.png", shot="sh020", format="png", soft=False
    )
    logits = random_logits(9, (1, 10, 12))
    written = writer.write(5, [3], logits)
    assert written == {3: str(tmp_path / "obj3" / "sh020_3.0005.png")}
    np.testing.assert_array_equal(read_matte(written[3]), (logits[0] > 0).astype(np.float32))
    assert writer.existing_frames(3) == {5}


def test_sequence_writer_layers(tmp_path: Path) -> None:
    writer = MatteSequenceWriter(tmp_path, shot="sh030", layout="layers", object_names={4: "car"})
    logits = random_logits(10, (2, 8, 8))
    written = writer.write(1010, [4, 5], logits, attributes={4: {"samroto/score": 0.75}})
    path = str(tmp_path / "sh030_matte.1010.exr")
    assert written == {4: path, 5: path}
    assert sorted(read_matte_layers(path)) == ["car", "obj5"]
    assert np.abs(read_matte(path, layer="obj5") - matte_from_logits(logits[1])).max() <= HALF_TOLERANCE
    assert read_matte_attributes(path) == {"samroto/frame": 1010, "car/samroto/score": 0.75}
    assert writer.existing_frames(4) == {1010} and writer.existing_frames(5) == {1010}
    assert writer.existing_frames(6) == set()  # the file exists, but has no layer for object 6


def test_sequence_writer_validation(tmp_path: Path) -> None:
    with pytest.raises(MatteError, match="format"):
        MatteSequenceWriter(tmp_path, format="tif")  # type: ignore[arg-type]
    with pytest.raises(MatteError, match="needs format 'exr'"):
        MatteSequenceWriter(tmp_path, format="png", layout="layers")
    with pytest.raises(MatteError, match="frame number token"):
        MatteSequenceWriter(tmp_path, name_template="{shot}_{obj}.exr")
    with pytest.raises(MatteError, match="must end with .png"):
        MatteSequenceWriter(tmp_path, name_template="{shot}_{obj}.####.exr", format="png")
    with pytest.raises(MatteError, match="must contain"):
        MatteSequenceWriter(tmp_path, name_template="{shot}.####.exr")
    with pytest.raises(MatteError, match="share one file"):
        MatteSequenceWriter(tmp_path, name_template="{obj}.####.exr", layout="layers")
    with pytest.raises(MatteError, match="placeholders"):
        MatteSequenceWriter(tmp_path, name_template="{take}_{obj}.####.exr")
    with pytest.raises(MatteError, match="file name"):
        MatteSequenceWriter(tmp_path, shot="../elsewhere")
    with pytest.raises(MatteError, match="layer name"):
        MatteSequenceWriter(tmp_path, layout="layers", object_names={1: "left hand"})
    writer = MatteSequenceWriter(tmp_path)
    with pytest.raises(MatteError, match="N = 2"):
        writer.write(1, [1, 2], random_logits(11, (3, 4, 4)))
    with pytest.raises(MatteError, match="unique"):
        writer.write(1, [1, 1], random_logits(11, (2, 4, 4)))
    with pytest.raises(MatteError, match="not being written"):
        writer.write(1, [1], random_logits(11, (1, 4, 4)), attributes={9: {"a": 1}})


def test_existing_frames_skips_incomplete_files(tmp_path: Path) -> None:
    writer = MatteSequenceWriter(tmp_path, shot="sh040")
    for frame in (1, 2, 3):
        writer.write(frame, [1], random_logits(frame, (1, 32, 32)))
    good = Path(writer.path_for(1, 2)).read_bytes()
    Path(writer.path_for(1, 3)).write_bytes(good[: len(good) // 2])  # e.g. copied by a tool that died
    Path(writer.path_for(1, 4)).write_bytes(b"")
    (tmp_path / f".{Path(writer.path_for(1, 5)).name}.abcd1234.tmp").write_bytes(good)  # a killed writer's temp
    assert writer.existing_frames(1, verify=False) == {1, 2, 3, 4}
    assert writer.existing_frames(1) == {1, 2}


# ---------------------------------------------------------------------------------------------
# Atomicity


def test_failed_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "matte.1001.exr"
    write_matte_exr(path, np.zeros((8, 8), np.float32))
    before = path.read_bytes()

    def crash(source: str, destination: str) -> None:
        raise OSError("disk vanished")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk vanished"):
        write_matte_exr(path, np.ones((8, 8), np.float32))
    with pytest.raises(OSError, match="disk vanished"):
        write_matte_png(tmp_path / "other.0001.png", np.ones((8, 8), np.float32))
    monkeypatch.undo()
    assert path.read_bytes() == before  # the previous version is untouched
    assert not (tmp_path / "other.0001.png").exists()
    assert leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["matte.1001.exr"]


def test_killed_writer_never_exposes_a_partial_file(tmp_path: Path) -> None:
    """A writer killed after writing the bytes but before the rename leaves only its hidden temp file."""
    child = textwrap.dedent(
        f"""
        import os, sys, time
        import numpy as np
        from samroto.core.outputs.mattes import MatteSequenceWriter

        real_fsync = os.fsync
        def fsync_then_hang(fd):
            real_fsync(fd)
            if os.path.basename(os.readlink(f"/proc/self/fd/{{fd}}")).endswith(".tmp"):
                print("written", flush=True)
                time.sleep(60)
        os.fsync = fsync_then_hang
        writer = MatteSequenceWriter({str(tmp_path)!r}, shot="big")
        alpha = np.random.default_rng(0).standard_normal((1, 1080, 1920)).astype(np.float32)
        writer.write(1001, [1], alpha)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "written"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
    writer = MatteSequenceWriter(tmp_path, shot="big")
    assert not os.path.exists(writer.path_for(1, 1001))
    assert len(leftovers(tmp_path)) == 1 and leftovers(tmp_path)[0].startswith(".big_obj1_matte.1001.exr.")
    assert writer.existing_frames(1, verify=False) == set()


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = write_matte_png(tmp_path / "m.0001.png", np.zeros((2, 2), np.float32))
    finally:
        os.umask(previous)
    assert os.stat(path).st_mode & 0o777 == 0o644
