"""`samroto matte` end to end: a generated image sequence, the micro model, mattes on disk."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from samroto.core.outputs.confidence import read_sidecar
from samroto.core.outputs.mattes import read_matte, read_matte_attributes
from samroto.scripts.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sam2_reference"
MICRO = ["--model", str(FIXTURES / "micro_sam2.1.pt"), "--config", f"{FIXTURES / 'micro_config.json'}#sam2.1"]


def make_plate(folder: Path, count: int = 6, first: int = 1001) -> str:
    """A bright disc moving right over a dark textured background, 160x120."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    background = rng.integers(0, 60, size=(120, 160, 3), dtype=np.uint8)
    for i in range(count):
        frame = background.copy()
        cv2.circle(frame, (50 + 8 * i, 60), 22, (230, 200, 40), -1)
        cv2.imwrite(str(folder / f"plate.{first + i:04d}.png"), frame)
    return str(folder / "plate.####.png")


def test_matte_tracks_both_ways_and_writes_the_sequence(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plate = make_plate(tmp_path / "plate")
    out = tmp_path / "mattes"
    status = main(["matte", plate, "--point", "74,60", "--negative", "5,5", "--frame", "1003", "--out", str(out), *MICRO])
    assert status == 0
    files = sorted(p.name for p in out.iterdir() if p.suffix == ".exr")
    assert files == [f"plate_obj1_matte.{f}.exr" for f in range(1001, 1007)]
    for name in files:
        alpha = read_matte(out / name)
        assert alpha.shape == (120, 160) and alpha.dtype == np.float32
        assert 0.0 <= alpha.min() and alpha.max() <= 1.0
    printed = capsys.readouterr().out
    assert "6 mattes" in printed and "frames to review" in printed
    # confidence beside the mattes: a sidecar with every frame, and the same figures in each EXR header
    tracker, name = read_sidecar(out / "plate.confidence.json")
    assert name == "plate" and [r.frame for r in tracker.records(1)] == list(range(1001, 1007))
    header = read_matte_attributes(out / "plate_obj1_matte.1004.exr")
    record = tracker.records(1)[3]
    assert header["samroto/objectScore"] == pytest.approx(record.object_score, abs=1e-5)
    assert header["samroto/stability"] == pytest.approx(record.stability, abs=1e-5)


def test_matte_with_edge_refinement_and_smoothing(tmp_path: Path) -> None:
    plate = make_plate(tmp_path / "plate", count=4)
    plain, refined = tmp_path / "plain", tmp_path / "refined"
    assert main(["matte", plate, "--point", "60,60", "--out", str(plain), *MICRO]) == 0
    assert main(["matte", plate, "--point", "60,60", "--refine-edges", "--smooth-edges",
                 "--out", str(refined), *MICRO]) == 0
    a = read_matte(plain / "plate_obj1_matte.1002.exr")
    b = read_matte(refined / "plate_obj1_matte.1002.exr")
    assert a.shape == b.shape and not np.allclose(a, b), "the options change the mattes"
    assert 0.0 <= b.min() and b.max() <= 1.0


def test_matte_png_and_binary(tmp_path: Path) -> None:
    plate = make_plate(tmp_path / "plate", count=3)
    out = tmp_path / "png"
    assert main(["matte", plate, "--box", "20,30,90,95", "--format", "png", "--binary", "--out", str(out), *MICRO]) == 0
    alpha = read_matte(out / "plate_obj1_matte.1001.png")
    assert set(np.unique(alpha)) <= {0.0, 1.0}


def test_matte_reports_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plate = make_plate(tmp_path / "plate", count=2)
    assert main(["matte", plate, "--out", str(tmp_path / "o"), *MICRO]) == 2
    assert "--point or a --box" in capsys.readouterr().err
    assert main(["matte", plate, "--point", "1,1", "--frame", "5", "--out", str(tmp_path / "o"), *MICRO]) == 2
    assert "outside the plate's frames 1001-1002" in capsys.readouterr().err
    assert main(["matte", str(tmp_path / "none.####.png"), "--point", "1,1", "--out", str(tmp_path / "o"), *MICRO]) == 2
    assert "error:" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["matte", plate, "--point", "1;1", "--out", str(tmp_path / "o"), *MICRO])
    with pytest.raises(SystemExit) as exit_info:
        main(["matte", plate, "--point", "1,1", "--out", str(tmp_path / "o"), "--model", str(tmp_path / "x.pt")])
    assert exit_info.value.code == 2
    assert "no such file" in capsys.readouterr().err


def test_preview_then_final(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plate = make_plate(tmp_path / "plate", count=3)
    out = tmp_path / "mattes"
    assert main(["matte", plate, "--point", "60,60", "--preview", "128", "--out", str(out), *MICRO]) == 0
    names = sorted(p.name for p in out.iterdir() if p.suffix == ".exr")
    assert names == sorted(
        [f"plate_preview_obj1_matte.{f}.exr" for f in (1001, 1002, 1003)]
        + [f"plate_obj1_matte.{f}.exr" for f in (1001, 1002, 1003)]
    )
    captured = capsys.readouterr()
    assert "PREVIEW pass: tracking at 128 px" in captured.err
    preview, final = read_matte(out / names[3]), read_matte(out / names[0])
    assert preview.shape == final.shape == (120, 160)
    assert main(["matte", plate, "--point", "60,60", "--preview", "300", "--out", str(out), *MICRO]) == 2
    assert "between 64 and the model's 256" in capsys.readouterr().err


def exit_status(argv: list[str]) -> int:
    """main's return value, or the status of the SystemExit a flag check raises."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_colour_flags_are_checked_before_the_model_loads(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plate = make_plate(tmp_path / "plate", count=2)
    out = str(tmp_path / "mattes")
    args = ["matte", plate, "--point", "60,60", "--out", out, *MICRO]
    assert exit_status([*args, "--ocio", "ocio://cg-config-latest", "--colorspace", "Rec709-ish"]) == 2
    error = capsys.readouterr().err
    assert "colourspace 'Rec709-ish' is not in OCIO config 'cg-config-v" in error and "ACEScg" in error
    assert exit_status([*args, "--ocio", str(tmp_path / "missing.ocio")]) == 2
    assert "missing.ocio' (given): no such file" in capsys.readouterr().err
    assert exit_status([*args, "--ocio", "none", "--view", "ACES 2.0 - SDR 100 nits (Rec.709)"]) == 2
    assert "the view is a curve, one of ['srgb', 'rec709', 'linear']" in capsys.readouterr().err
    assert not Path(out).exists()
