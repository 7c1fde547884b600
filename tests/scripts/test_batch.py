"""`samroto batch` end to end: three generated shots whose sidecars were exported from real sessions,
run locally, on a Ray cluster, interrupted and resumed, and with broken shots among them."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from samroto.scripts.cli import main

from .batch_support import MICRO as MICRO_MODEL
from .batch_support import (
    EXPECTED,
    TOTAL_FRAMES,
    disc_center,
    expected_files,
    make_shots,
    matte_files,
    micro_model,
    read_all,
    rewrite_json,
    stats,
)

# one thread everywhere: Ray actors get one CPU each, and results can differ in the last bit
# between thread counts
MICRO = [*MICRO_MODEL, "--threads", "1"]

# Runs the command line in a child process that kills itself (SIGKILL, no clean-up of any kind)
# right after its Nth matte file is written: a batch interrupted at a known point.
KILL_AFTER_WRITES = """
import os, signal, sys
from samroto.core.outputs import mattes

limit = int(os.environ["SAMROTO_TEST_KILL_AFTER"])
original = mattes.MatteSequenceWriter.write_alphas  # every frame's mattes go through it
written = 0

def write(self, *args, **kwargs):
    global written
    paths = original(self, *args, **kwargs)
    written += 1
    if written >= limit:
        os.kill(os.getpid(), signal.SIGKILL)
    return paths

mattes.MatteSequenceWriter.write_alphas = write
from samroto.scripts.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli_process(args: list[str], *, kill_after: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    if kill_after is not None:
        env["SAMROTO_TEST_KILL_AFTER"] = str(kill_after)
        command = [sys.executable, "-c", KILL_AFTER_WRITES, *args]
    else:
        command = [sys.executable, "-m", "samroto.scripts.cli", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of three sidecars (exported from prompted sessions) and their plates."""
    return make_shots(tmp_path_factory.mktemp("batch"), micro_model())


@pytest.fixture(scope="module")
def local_run(shots: Path) -> tuple[Path, str]:
    """An uninterrupted local batch: the reference every other run is compared with."""
    out = shots.parent / "out_local"
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        status = main(["batch", str(shots), "--out", str(out), "--quiet", *MICRO])
    assert status == 0, summary.getvalue()
    return out, summary.getvalue()


def test_local_batch_writes_every_frame_of_every_shot(local_run: tuple[Path, str]) -> None:
    out, summary = local_run
    assert matte_files(out) == expected_files(out)
    assert f"batch: 3 shots, 3 done, 0 failed; {TOTAL_FRAMES} frames written, 0 already there" in summary
    # each shot's confidence report sits beside its mattes and covers every frame of every object
    from samroto.core.outputs.confidence import read_sidecar

    for shot, (prefixes, frames) in EXPECTED.items():
        tracker, name = read_sidecar(out / shot / f"{shot}.confidence.json")
        assert name == shot and len(tracker.object_ids()) == len(prefixes)
        assert all([r.frame for r in tracker.records(o)] == list(frames) for o in tracker.object_ids())
    mattes = read_all(out)
    for name, alpha in mattes.items():
        assert alpha.shape == (120, 160) and 0.0 <= alpha.min() < alpha.max() <= 1.0, name
    # (the micro model has random weights: what it tracks means nothing, but each object and frame
    # gets its own matte)
    assert not np.array_equal(mattes["shot_a/shot_a_disc_matte.1005.exr"], mattes["shot_a/shot_a_square_matte.1005.exr"])
    assert not np.array_equal(mattes["shot_c/shot_c_obj7_matte.0002.exr"], mattes["shot_c/shot_c_obj7_matte.0007.exr"])
    # a mask prompt is its frame's output whatever the weights: shot b's replayed mask is there
    prompt = np.zeros((120, 160), np.uint8)
    cv2.circle(prompt, disc_center(2), 20, (1,), -1)
    inside, matte = prompt.astype(bool), mattes["b/b_obj1_matte.2003.exr"] > 0.5
    assert (inside & matte).sum() / (inside | matte).sum() > 0.95
    # the review page over the batch: every shot, its plate under its objects' mattes (named by the sidecar)
    page = (out / "review.html").read_text(encoding="utf-8")
    assert "review: " in summary and page.count('<section class="shot"') == len(EXPECTED)
    assert all(f'<h2>{shot}</h2>' in page for shot in EXPECTED)
    assert "no plate or matte" not in page and "mattes shown alone" not in page and "plate not readable" not in page
    # the session state is cleaned away once a shot is done; its status stays
    for shot in EXPECTED:
        assert not (out / ".samroto" / shot / "session").exists()
        assert json.loads((out / ".samroto" / shot / "manifest.json").read_text())["complete"] is True


def test_a_finished_batch_run_again_writes_nothing(shots: Path, local_run: tuple[Path, str]) -> None:
    out, _ = local_run
    before = stats(matte_files(out))
    assert main(["batch", str(shots), "--out", str(out), "--quiet", *MICRO]) == 0
    assert stats(matte_files(out)) == before


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[str]:
    """A Ray cluster on this machine (2 CPUs), shared by the module's Ray tests; its address."""
    try:
        import ray
    except ImportError:
        pytest.fail("these tests need Ray: pip install 'samroto[ray]' (or ray>=2.9)")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def test_ray_batch_matches_the_local_batch(shots: Path, local_run: tuple[Path, str], ray_cluster: str) -> None:
    out = shots.parent / "out_ray"
    # a separate driver process connecting to the cluster, as a farm submission would
    completed = run_cli_process(["batch", str(shots), "--out", str(out), "--ray", ray_cluster,
                                 "--cpus-per-worker", "1", "--quiet", *MICRO])
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "3 done, 0 failed" in completed.stdout
    local = read_all(local_run[0])
    distributed = read_all(out)
    assert sorted(distributed) == sorted(local)
    for name, alpha in local.items():
        np.testing.assert_array_equal(distributed[name], alpha, err_msg=name)


def test_ray_batch_reports_broken_shots_in_process(shots: Path, ray_cluster: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    shutil.copy(shots / "c.json", jobs / "c.json")
    (jobs / "x.json").write_text(json.dumps({"format": "samroto.sidecar", "version": 1,
                                             "shot": {"plate": str(tmp_path / "none.####.png")},
                                             "objects": [{"obj_id": 1, "prompts": [{"frame": 1, "box": [0, 0, 5, 5]}]}]}))
    # this process is already connected to the cluster: the command uses that connection
    status = main(["batch", str(jobs), "--out", str(tmp_path / "out"), "--ray", "auto", "--cpus-per-worker", "1",
                   "--workers", "1", "--quiet", *MICRO])
    summary = capsys.readouterr().out
    assert status == 1
    assert "2 shots, 1 done, 1 failed" in summary
    assert "FAILED  x  no files match the pattern" in summary
    assert len(matte_files(tmp_path / "out")) == len(EXPECTED["shot_c"][1])


def test_an_interrupted_batch_resumes_without_redoing_finished_frames(
    shots: Path, local_run: tuple[Path, str], capsys: pytest.CaptureFixture
) -> None:
    out = shots.parent / "out_interrupted"
    args = ["batch", str(shots), "--out", str(out), "--quiet", *MICRO]
    # killed in shot_a's backward pass (7 forward frames + 1 backward), then in b's forward pass
    # (2 more of shot_a + 4 of b)
    finished_before: dict[Path, tuple[int, int]] = {}
    for kill_after, files_expected in ((8, 8 * 2), (6, 10 * 2 + 4)):
        completed = run_cli_process(args, kill_after=kill_after)
        assert completed.returncode == -signal.SIGKILL, completed.stderr
        files = matte_files(out)
        assert len(files) == files_expected
        # frames finished by an earlier run were left alone by this one
        now = stats(files)
        assert {p: now[p] for p in finished_before} == finished_before
        finished_before = now

    capsys.readouterr()
    assert main(args) == 0
    summary = capsys.readouterr().out
    written_last = TOTAL_FRAMES - 10 - 4
    assert f"3 done, 0 failed; {written_last} frames written, 14 already there" in summary
    assert "b  8 frames: 4 written, 4 already there, resumed" in summary
    now = stats(matte_files(out))
    assert {p: now[p] for p in finished_before} == finished_before
    # and the result is exactly the uninterrupted run's
    local = read_all(local_run[0])
    resumed = read_all(out)
    assert sorted(resumed) == sorted(local)
    for name, alpha in local.items():
        np.testing.assert_array_equal(resumed[name], alpha, err_msg=name)


def test_broken_shots_are_reported_and_the_others_complete(shots: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    shutil.copy(shots / "c.json", jobs / "c.json")
    shutil.copy(shots / "c.json", jobs / "missing_plate.json")
    rewrite_json(jobs / "missing_plate.json", lambda d: d["shot"].update(plate="gone/plate.####.png", name="gone"))
    (jobs / "corrupt.json").write_text('{"format": "samroto.sidecar", "version": 1, "shot": ')
    (jobs / "shot_c.confidence.json").write_text("{}")  # a confidence report, not a sidecar: not a shot
    shutil.copy(shots / "c.json", jobs / "bad_frame.json")
    rewrite_json(jobs / "bad_frame.json",
                 lambda d: d.update(shot={**d["shot"], "name": "bad_frame"}) or
                 d["objects"][0]["prompts"].append({"frame": 50, "points": [[5, 5]], "labels": [1]}))
    shutil.copy(shots / "c.json", jobs / "bad_labels.json")
    rewrite_json(jobs / "bad_labels.json", lambda d: d["objects"][0]["prompts"][0].update(labels=[2]))
    shutil.copy(shots / "c.json", jobs / "bad_colour.json")
    rewrite_json(jobs / "bad_colour.json", lambda d: d["shot"].update(
        name="bad_colour", colour={"config": "ocio://cg-config-latest", "colorspace": "LogC9"}))

    out = tmp_path / "out"
    status = main(["batch", str(jobs), "--out", str(out), "--quiet", *MICRO])
    summary = capsys.readouterr().out
    assert status == 1
    assert "batch: 6 shots, 1 done, 5 failed" in summary
    lines = {line.split()[1]: line for line in summary.splitlines() if line.startswith("  FAILED")}
    assert sorted(lines) == ["bad_colour", "bad_frame", "bad_labels", "corrupt", "gone"]
    assert "colourspace 'LogC9' is not in OCIO config 'cg-config-v" in lines["bad_colour"]
    assert "not valid JSON (line 1" in lines["corrupt"]
    assert "objects[0].prompts[0].labels[0]: expected 1 (positive) or 0 (negative), got 2" in lines["bad_labels"]
    assert "object 7 frame 50" in lines["bad_frame"] and "outside" in lines["bad_frame"]
    # a relative plate path is taken from the sidecar's folder, and the message names it
    assert f"{jobs / 'gone'}' of pattern" in lines["gone"] and "does not exist" in lines["gone"]
    assert len(matte_files(out / "shot_c")) == len(EXPECTED["shot_c"][1])


def test_changed_prompts_fail_the_shot_unless_restart(shots: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    shutil.copy(shots / "c.json", jobs / "c.json")
    out = tmp_path / "out"
    assert main(["batch", str(jobs), "--out", str(out), "--quiet", *MICRO]) == 0
    first = read_all(out)
    rewrite_json(jobs / "c.json", lambda d: d["objects"][0]["prompts"][0].update(points=[[50, 60]], labels=[1]))
    capsys.readouterr()
    assert main(["batch", str(jobs), "--out", str(out), "--quiet", *MICRO]) == 1
    assert "changed since the mattes" in capsys.readouterr().out
    assert read_all(out).keys() == first.keys()

    before = stats(matte_files(out))
    assert main(["batch", str(jobs), "--out", str(out), "--quiet", "--restart", *MICRO]) == 0
    assert "9 frames written, 0 already there" in capsys.readouterr().out
    after = stats(matte_files(out))
    assert after.keys() == before.keys() and all(after[p] != before[p] for p in before)
    assert any(not np.array_equal(first[name], alpha) for name, alpha in read_all(out).items())


def test_batch_usage_errors(shots: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = str(tmp_path / "out")
    assert main(["batch", str(tmp_path / "nothing"), "--out", out, *MICRO]) == 2
    assert "no such sidecar file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["batch", str(tmp_path / "empty"), "--out", out, *MICRO]) == 2
    assert "no sidecar files" in capsys.readouterr().err

    # sidecars naming different models need --model
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    shutil.copy(shots / "a.json", jobs / "a.json")
    shutil.copy(shots / "c.json", jobs / "c.json")
    rewrite_json(jobs / "c.json", lambda d: d.update(model={"checkpoint": "sam2.1_hiera_large"}))
    assert main(["batch", str(jobs), "--out", out]) == 2
    assert "the sidecars name different models" in capsys.readouterr().err

    # without Ray installed, --ray says how to get it
    monkeypatch.setitem(sys.modules, "ray", None)
    assert main(["batch", str(shots / "c.json"), "--out", out, "--ray", "auto", *MICRO]) == 2
    assert "pip install samroto[ray]" in capsys.readouterr().err


def test_the_sidecars_own_model_is_used_without_model_flag(shots: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    sidecar = tmp_path / "c.json"
    shutil.copy(shots / "c.json", sidecar)
    micro_config = MICRO[3]
    rewrite_json(sidecar, lambda d: d["model"].update(config=micro_config))
    assert main(["batch", str(sidecar), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert "1 done, 0 failed" in capsys.readouterr().out


def test_ctrl_c_then_a_lost_session_state_still_skips_written_frames(
    shots: Path, local_run: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    from samroto.core.outputs import mattes

    original = mattes.MatteSequenceWriter.write_alphas  # every frame's mattes go through it
    calls = []

    def write_then_interrupt(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        paths = original(self, *args, **kwargs)
        calls.append(args[0])
        if len(calls) == 5:
            raise KeyboardInterrupt
        return paths

    out = tmp_path / "out"
    args = ["batch", str(shots / "c.json"), "--out", str(out), "--quiet", *MICRO]
    monkeypatch.setattr(mattes.MatteSequenceWriter, "write_alphas", write_then_interrupt)
    assert main(args) == 130  # Ctrl-C: the command stops, what it wrote stays usable
    monkeypatch.setattr(mattes.MatteSequenceWriter, "write_alphas", original)
    assert calls == [0, 1, 2, 3, 4]
    before = stats(matte_files(out))
    assert len(before) == 5

    # the session state is lost (a cleaned scratch disk): the shot is tracked again from its
    # keyframe, but the mattes on disk are not written again
    shutil.rmtree(out / ".samroto" / "shot_c" / "session")
    capsys.readouterr()
    assert main(args) == 0
    assert "9 frames: 4 written, 5 already there" in capsys.readouterr().out
    now = stats(matte_files(out))
    assert {p: now[p] for p in before} == before
    local = read_all(local_run[0])
    for name, alpha in read_all(out).items():
        np.testing.assert_array_equal(alpha, local[name], err_msg=name)


def test_quiet_batch_names_each_shot_once_strips_names_and_skips_other_json(tmp_path: Path,
                                                                           capsys: pytest.CaptureFixture) -> None:
    from .batch_support import make_sequence

    jobs = tmp_path / "jobs"
    plate = make_sequence(jobs / "plates", first=1, count=2, seed=0)
    sidecar = {"format": "samroto.sidecar", "version": 1,
               "shot": {"name": "sh010  ", "plate": os.path.relpath(plate, jobs)},
               "objects": [{"obj_id": 1, "prompts": [{"frame": 1, "points": [[60, 60]], "labels": [1]}]}]}
    (jobs / "sh010.json").write_text(json.dumps(sidecar))
    (jobs / "notes.json").write_text(json.dumps({"artist": "someone"}))  # not a sidecar
    out = tmp_path / "out"
    assert main(["batch", str(jobs), "--out", str(out), "--quiet", *MICRO]) == 0
    captured = capsys.readouterr()
    assert "warning: skipped" in captured.err and "notes.json" in captured.err
    assert "batch: 1 shots, 1 done, 0 failed" in captured.out
    assert (captured.out + captured.err).count("done    sh010") == 1, "each shot once"
    assert sorted(p.name for p in (out / "sh010").iterdir() if p.suffix == ".exr") == [
        "sh010_obj1_matte.0001.exr", "sh010_obj1_matte.0002.exr"]
    # a JSON file named on the command line is a job: it fails, it is not skipped
    assert main(["batch", str(jobs / "notes.json"), "--out", str(out), "--quiet", *MICRO]) == 1


def test_the_memory_mode_comes_from_the_sidecar_or_the_flag_and_is_part_of_the_fingerprint(
        shots: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    shutil.copy(shots / "c.json", jobs / "c.json")
    out = tmp_path / "out"
    assert main(["batch", str(jobs), "--out", str(out), "--quiet", "--memory", "presence", *MICRO]) == 0
    manifest = json.loads((out / ".samroto" / "shot_c" / "manifest.json").read_text())["manifest"]
    assert manifest["memory_mode"] == "presence"
    # the same mode named by the sidecar instead of the flag: the same run, nothing to do
    rewrite_json(jobs / "c.json", lambda d: d.setdefault("session", {}).update(memory_mode="presence"))
    capsys.readouterr()
    assert main(["batch", str(jobs), "--out", str(out), "--quiet", *MICRO]) == 0
    assert "0 frames written" in capsys.readouterr().out
    # exact SAM 2 over mattes made in presence mode: refused unless --restart
    assert main(["batch", str(jobs), "--out", str(out), "--quiet", "--memory", "sam2", *MICRO]) == 1
    assert "changed since the mattes" in capsys.readouterr().out
    # an unknown mode in a sidecar names the field and the valid modes
    rewrite_json(jobs / "c.json", lambda d: d["session"].update(memory_mode="crowds"))
    assert main(["batch", str(jobs), "--out", str(tmp_path / "out2"), "--quiet", *MICRO]) == 1
    assert "session.memory_mode: unknown memory mode 'crowds'; valid: sam2, presence" in capsys.readouterr().out
