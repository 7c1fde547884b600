"""`samroto matte` end to end: a generated image sequence, the micro model, mattes on disk."""

from __future__ import annotations

import json
import shutil
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
    assert main(["matte", plate, "--point", "1,1", "--out", str(tmp_path / "o"),
                 "--model", str(tmp_path / "x.pt")]) == 2
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


# --- issue 21: a command line that behaves like a pipeline tool -------------------------------------------------


MISSING_MODEL = ["--model", "/nonexistent/checkpoint.pt"]  # loading it fails: proves a check came first


def make_video(path: Path, count: int = 4) -> str:
    """The moving disc of `make_plate` as an MPEG-4 file (frames numbered from 0)."""
    import av

    rng = np.random.default_rng(0)
    background = rng.integers(0, 60, size=(120, 160, 3), dtype=np.uint8)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(count):
            frame = background.copy()
            cv2.circle(frame, (50 + 8 * i, 60), 22, (230, 200, 40), -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return str(path)


def exr_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix == ".exr")


def test_preview_on_a_video_plate_then_final_with_a_size_that_fits_the_model(tmp_path: Path,
                                                                            capsys: pytest.CaptureFixture) -> None:
    video = make_video(tmp_path / "clip.mp4", count=3)
    out = tmp_path / "mattes"
    # no SIZE: 512 does not fit the micro model (input 256), so the preview runs at 128
    assert main(["matte", video, "--point", "60,60", "--preview", "--out", str(out), *MICRO]) == 0
    assert exr_names(out) == sorted([f"clip_preview_obj1_matte.{f:04d}.exr" for f in range(3)]
                                    + [f"clip_obj1_matte.{f:04d}.exr" for f in range(3)])
    captured = capsys.readouterr()
    assert "PREVIEW pass: tracking at 128 px" in captured.err
    assert "PREVIEW: 3 mattes" in captured.out and "final: 3 mattes" in captured.out


def test_prompts_off_the_plate_are_refused_naming_its_size_before_the_model_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plate = make_plate(tmp_path / "plate", count=2)
    out = str(tmp_path / "o")
    for prompt in (["--point", "5000,60"], ["--point", "-10,60"], ["--point", "5,5", "--negative", "-0.5,-3"],
                   ["--box", "10,10,10,40"], ["--box", "-50,-50,-10,-10"]):
        assert main(["matte", plate, *prompt, "--out", out, *MISSING_MODEL]) == 2, prompt
        err = capsys.readouterr().err
        assert "the 160x120 plate" in err or "has no area" in err, (prompt, err)
        assert "no such file" not in err and "usage:" not in err, "checked before the model, and parsed"
    # on the plate, a negative number in another option still parses (and then the model is missing)
    assert main(["matte", plate, "--point", "0,0", "--box", "-5,-5,100,100", "--out", out, *MISSING_MODEL]) == 2
    assert "no such file" in capsys.readouterr().err


def test_plate_and_output_are_checked_before_the_model_loads(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture) -> None:
    plate = make_plate(tmp_path / "plate", count=8)
    for frame in (1003, 1005, 1006):
        (tmp_path / "plate" / f"plate.{frame}.png").unlink()
    out = tmp_path / "o"
    assert main(["matte", plate, "--point", "60,60", "--out", str(out), *MISSING_MODEL]) == 2
    err = capsys.readouterr().err
    assert "3 of 8 frames" in err and "1003, 1005-1006" in err, "every missing frame, at once"
    assert "no such file" not in err and not exr_names(out)
    # a frame of another size is named too
    cv2.imwrite(str(tmp_path / "plate" / "plate.1003.png"), np.zeros((60, 80, 3), np.uint8))
    assert main(["matte", plate, "--point", "60,60", "--missing", "hold", "--out", str(out), *MISSING_MODEL]) == 2
    assert "plate.1003.png' is 80x60, but the sequence is 160x120" in capsys.readouterr().err
    (tmp_path / "plate" / "plate.1003.png").unlink()
    # an output folder that cannot be made
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert main(["matte", plate, "--point", "60,60", "--missing", "hold", "--out", str(blocker / "mattes"),
                 *MISSING_MODEL]) == 2
    err = capsys.readouterr().err
    assert "cannot write to --out" in err and "no such file" not in err


def test_missing_frames_hold_or_skip(tmp_path: Path) -> None:
    plate = make_plate(tmp_path / "plate", count=5)
    (tmp_path / "plate" / "plate.1003.png").unlink()
    held, skipped = tmp_path / "held", tmp_path / "skipped"
    assert main(["matte", plate, "--point", "60,60", "--missing", "hold", "--out", str(held), *MICRO]) == 0
    assert exr_names(held) == [f"plate_obj1_matte.{f}.exr" for f in range(1001, 1006)]
    assert main(["matte", plate, "--point", "60,60", "--missing", "skip", "--out", str(skipped), *MICRO]) == 0
    assert exr_names(skipped) == [f"plate_obj1_matte.{f}.exr" for f in (1001, 1002, 1004, 1005)]
    # the present frames are tracked the same way under both policies
    assert np.array_equal(read_matte(held / "plate_obj1_matte.1005.exr"),
                          read_matte(skipped / "plate_obj1_matte.1005.exr"))


def test_runs_do_not_mix_unless_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plate = make_plate(tmp_path / "plate", count=3)
    out = tmp_path / "mattes"
    assert main(["matte", plate, "--point", "60,60", "--out", str(out), *MICRO]) == 0
    manifest = json.loads((out / ".samroto" / "plate" / "manifest.json").read_text())
    assert manifest["complete"] is True
    recorded = manifest["manifest"]
    assert recorded["sidecar"]["objects"][0]["prompts"] == [{"frame": 1001, "points": [[60.0, 60.0]], "labels": [1]}]
    assert recorded["sidecar"]["shot"]["plate"] == plate and "micro_sam2.1.pt" in recorded["model"]
    assert recorded["format"] == "exr" and recorded["soft"] is True
    first = read_matte(out / "plate_obj1_matte.1002.exr")
    capsys.readouterr()
    # the same command again: nothing to do
    assert main(["matte", plate, "--point", "60,60", "--out", str(out), *MICRO]) == 0
    assert "final: 0 mattes" in capsys.readouterr().out
    # another prompt into the same folder: refused, before the model loads
    assert main(["matte", plate, "--point", "100,20", "--out", str(out), *MISSING_MODEL]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["matte", plate, "--point", "100,20", "--overwrite", "--out", str(out), *MICRO]) == 0
    assert exr_names(out) == [f"plate_obj1_matte.{f}.exr" for f in (1001, 1002, 1003)]
    assert not np.array_equal(first, read_matte(out / "plate_obj1_matte.1002.exr")), "all frames are the new run's"
    # mattes of an unknown run (no manifest) are not mixed with either
    other = tmp_path / "other"
    other.mkdir()
    (out / "plate_obj1_matte.1002.exr").rename(other / "plate_obj1_matte.1002.exr")
    for path in out.iterdir():
        if path.is_file() or path.name == ".samroto":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    (other / "plate_obj1_matte.1002.exr").rename(out / "plate_obj1_matte.1002.exr")
    assert main(["matte", plate, "--point", "60,60", "--out", str(out), *MISSING_MODEL]) == 2
    assert "1 frames of plate mattes from another run" in capsys.readouterr().err


def test_interrupted_matte_keeps_its_confidence_report_and_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    from samroto.core.outputs.matte_output import MatteOutput

    plate = make_plate(tmp_path / "plate", count=6)
    out = tmp_path / "mattes"
    write = MatteOutput.write
    calls = []

    def interrupted_write(self: MatteOutput, result: object) -> dict:
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C while tracking the fourth frame
        calls.append(result)
        return write(self, result)

    monkeypatch.setattr(MatteOutput, "write", interrupted_write)
    assert main(["matte", plate, "--point", "60,60", "--out", str(out), *MICRO]) == 130
    assert exr_names(out) == [f"plate_obj1_matte.{f}.exr" for f in (1001, 1002, 1003)]
    tracker, _ = read_sidecar(out / "plate.confidence.json")
    assert [r.frame for r in tracker.records(1)] == [1001, 1002, 1003], "the report covers what was written"

    monkeypatch.setattr(MatteOutput, "write", write)
    capsys.readouterr()
    assert main(["matte", plate, "--point", "60,60", "--out", str(out), *MICRO]) == 0
    printed = capsys.readouterr().out
    assert "final: 3 mattes" in printed and "3 already there" in printed and "(resumed)" in printed
    tracker, _ = read_sidecar(out / "plate.confidence.json")
    assert [r.frame for r in tracker.records(1)] == list(range(1001, 1007))
    # the same as a run that was never interrupted
    fresh = tmp_path / "fresh"
    assert main(["matte", plate, "--point", "60,60", "--out", str(fresh), *MICRO]) == 0
    for frame in range(1001, 1007):
        assert np.array_equal(read_matte(out / f"plate_obj1_matte.{frame}.exr"),
                              read_matte(fresh / f"plate_obj1_matte.{frame}.exr")), frame


def test_progress_in_a_log_is_lines_and_quiet_is_silent(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plate = make_plate(tmp_path / "plate", count=4)
    assert main(["matte", plate, "--point", "60,60", "--out", str(tmp_path / "a"), *MICRO]) == 0
    err = capsys.readouterr().err  # not a terminal here, as on a farm
    assert "\r" not in err
    assert "tracking: 4/4 frames (100%)" in err.splitlines()[-1]
    assert main(["matte", plate, "--point", "60,60", "--quiet", "--out", str(tmp_path / "b"), *MICRO]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "final: 4 mattes" in captured.out


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("samroto 0.")


def test_config_help_and_a_file_of_several_models(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["matte", "--help"])
    assert "#NAME" in capsys.readouterr().out
    plate = make_plate(tmp_path / "plate", count=2)
    assert main(["matte", plate, "--point", "60,60", "--out", str(tmp_path / "o"), "--model", MICRO[1],
                 "--config", str(FIXTURES / "micro_config.json")]) == 2
    assert "micro_config.json#sam2" in capsys.readouterr().err


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


def test_matte_memory_mode(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    plate = make_plate(tmp_path / "plate", count=4)
    out = tmp_path / "mattes"
    assert main(["matte", plate, "--point", "60,60", "--memory", "presence", "--out", str(out), *MICRO]) == 0
    assert exr_names(out) == [f"plate_obj1_matte.{f}.exr" for f in range(1001, 1005)]
    recorded = json.loads((out / ".samroto" / "plate" / "manifest.json").read_text())["manifest"]
    assert recorded["memory_mode"] == "presence"
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["matte", plate, "--point", "60,60", "--memory", "crowds", "--out", str(out), *MICRO])
    error = capsys.readouterr().err
    assert "--memory: invalid choice: 'crowds'" in error and "sam2" in error and "presence" in error
