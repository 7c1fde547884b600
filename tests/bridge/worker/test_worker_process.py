"""A real `samroto worker` process with the micro checkpoint, driven through the client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import pytest

from samroto.bridge import BadRequest, Client, PropagationCancelled
from samroto.core.outputs.mattes import read_matte

from ..bridge_support import (MICRO_CHECKPOINT, MICRO_CONFIG, REPO, WorkerProcess, running_worker, start_worker_process, token_of,
                             wait_until)

FRAMES = REPO / "tests" / "fixtures" / "sam2_reference" / "video_frames.npy"
FIRST, LAST = 1001, 1012
HEIGHT, WIDTH = 120, 160


def make_plate(folder: Path) -> str:
    """12 frames of 160x120 (a real clip: the reference bedroom frames), numbered from 1001."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(np.load(FRAMES)):
        small = cv2.resize(frame, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"shot.{FIRST + i:04d}.png"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    return str(folder / "shot.####.png")


@pytest.fixture(scope="module")
def plate(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_plate(tmp_path_factory.mktemp("plate"))


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    with running_worker(tmp_path_factory.mktemp("worker")) as process:
        yield process


def connect(worker: WorkerProcess, **kwargs) -> Client:
    return Client(worker.address, token=token_of(worker.config_dir), timeout=kwargs.pop("timeout", 30.0), **kwargs)


@pytest.fixture(scope="module")
def reference_model():
    import torch

    from samroto.core.model.checkpoint import load_model
    from samroto.core.model.config import load_config_file

    # one thread: two OpenMP threads on a busy 2-core machine run many times slower
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield load_model(MICRO_CHECKPOINT, config=load_config_file(str(MICRO_CONFIG), variant="sam2.1"))
    finally:
        torch.set_num_threads(threads)


def test_prompt_and_propagate_both_ways_match_a_direct_session(worker: WorkerProcess, plate: str, tmp_path: Path,
                                                              reference_model) -> None:
    from samroto.core.video_session import VideoSession

    with connect(worker) as client:
        info = client.hello()
        assert info.model == str(MICRO_CHECKPOINT) and info.device == "cpu"
        shot = client.open_session(plate, matte_dir=str(tmp_path / "mattes"))
        assert (shot.first, shot.last, shot.width, shot.height) == (FIRST, LAST, WIDTH, HEIGHT)
        prompt = shot.add_points(1006, 1, [(80, 60)], [1])
        assert prompt.frame == 1006 and prompt.obj_ids == [1]
        updates = list(shot.propagate(direction="both"))
        assert [u.frame for u in updates] == list(range(1006, 1013)) + list(range(1005, 1000, -1))
        assert updates[-1].progress == (12, 12)
        logits = {f: shot.get_frame(f, what="logits").mattes[0] for f in range(FIRST, LAST + 1)}

    # the worker computes what the core session computes for the same calls
    direct = VideoSession(reference_model, plate, state_dir=tmp_path / "direct")
    direct.add_points(1006, 1, [(80, 60)], [1])
    expected = {r.frame: r.logits[0] for r in direct.propagate()}
    expected.update({r.frame: r.logits[0] for r in direct.propagate(start=1006, reverse=True)})
    direct.close()
    for frame in range(FIRST, LAST + 1):
        np.testing.assert_allclose(logits[frame], expected[frame], atol=1e-3, err_msg=f"frame {frame}")

    for update in updates:
        path = update.matte_paths[1]
        assert Path(path).name == "shot_obj1_matte.%04d.exr" % update.frame
        matte = read_matte(path)
        assert matte.shape == (HEIGHT, WIDTH) and matte.dtype == np.float32
        alpha = 1 / (1 + np.exp(-logits[update.frame].astype(np.float64)))
        np.testing.assert_allclose(matte, alpha, atol=2e-3)
        assert update.areas[0] == int((logits[update.frame] > 0).sum())


def test_cancel_mid_run(worker: WorkerProcess, plate: str, tmp_path: Path) -> None:
    with connect(worker) as client:
        shot = client.open_session(plate, matte_dir=str(tmp_path / "mattes"))
        shot.add_box(1001, 1, (40, 20, 120, 100))
        run = shot.propagate(credit=1)
        assert next(run).frame == 1001
        run.cancel()
        assert run.state == "cancelled" and run.received < 12
        assert client.status()["streams"] == []
        assert len(list(shot.propagate())) == 12  # the session carries on normally


def test_two_clients_on_different_sessions_at_the_same_time(worker: WorkerProcess, plate: str,
                                                           tmp_path: Path) -> None:
    outcome: dict[str, object] = {}

    def work(name: str, point: tuple[int, int]) -> None:
        try:
            with connect(worker) as client:
                shot = client.open_session(plate, name=name, matte_dir=str(tmp_path / name))
                shot.add_points(1001, 1, [point], [1])
                frames = [u.frame for u in shot.propagate(credit=2)]
                outcome[name] = (frames, shot.get_frame(1012, what="logits").mattes.copy())
        except Exception as exc:  # reported by the assertion below
            outcome[name] = exc

    threads = [threading.Thread(target=work, args=("left", (40, 60))),
               threading.Thread(target=work, args=("right", (120, 60)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for name in ("left", "right"):
        assert not isinstance(outcome[name], Exception), outcome[name]
        assert outcome[name][0] == list(range(FIRST, LAST + 1))
    # no cross-talk: each equals the same work done alone
    with connect(worker) as client:
        alone = client.open_session(plate, matte_dir=str(tmp_path / "alone"))
        alone.add_points(1001, 1, [(120, 60)], [1])
        list(alone.propagate())
        np.testing.assert_allclose(alone.get_frame(1012, what="logits").mattes, outcome["right"][1], atol=1e-5)
    assert not np.allclose(outcome["left"][1], outcome["right"][1])


_DOOMED_CLIENT = r'''
import sys, time
from samroto.bridge import BadRequest, Client
address, token, plate, out = sys.argv[1:5]
with Client(address, token=token, timeout=30) as client:
    shot = client.open_session(plate, matte_dir=out)
    shot.add_points(1001, 1, [(80, 60)], [1])
    print(shot.id, flush=True)
    for update in shot.propagate(credit=2):
        print(update.frame, flush=True)
        time.sleep(600)  # killed here, mid-stream
'''


def test_a_client_killed_mid_stream_does_not_disturb_the_others(worker: WorkerProcess, plate: str,
                                                                 tmp_path: Path) -> None:
    doomed = subprocess.Popen([sys.executable, "-c", _DOOMED_CLIENT, worker.address, token_of(worker.config_dir),
                               plate, str(tmp_path / "doomed")], stdout=subprocess.PIPE, text=True, cwd=str(REPO))
    try:
        assert doomed.stdout is not None
        session_id = doomed.stdout.readline().strip()
        assert doomed.stdout.readline().strip() == "1001"
        with connect(worker) as client:
            assert any(s["session"] == session_id for s in client.status()["streams"])
            doomed.send_signal(signal.SIGKILL)
            doomed.wait(30)
            other = client.open_session(plate, matte_dir=str(tmp_path / "other"))
            other.add_points(1004, 1, [(60, 50)], [1])
            assert len(list(other.propagate(direction="both"))) == 12
            wait_until(lambda: client.status()["streams"] == [], what="the dead client's stream to be cancelled")
            # its session is consistent and can be taken over
            taken = client.resume_session(session_id)
            assert [u.frame for u in taken.propagate()] == list(range(FIRST, LAST + 1))
    finally:
        if doomed.poll() is None:
            doomed.kill()


def test_sigkill_mid_propagation_then_restart_resumes_the_session(plate: str, tmp_path: Path) -> None:
    config_dir, sessions = tmp_path / "config", tmp_path / "sessions"
    first = start_worker_process(config_dir, sessions, tmp_path / "worker1.log")
    try:
        with connect(first) as client:
            shot = client.open_session(plate, matte_dir=str(tmp_path / "mattes"))
            shot.add_points(1001, 1, [(80, 60)], [1])
            run = shot.propagate(credit=1)
            announced = {}
            for _ in range(5):
                update = next(run)
                announced[update.frame] = update.matte_paths[1]
            first.process.send_signal(signal.SIGKILL)
            first.process.wait(30)
    finally:
        first.kill()
    assert sorted(announced) == list(range(1001, 1006))
    # every matte on disk is complete: announced ones and any written just before the kill
    on_disk = sorted((tmp_path / "mattes").glob("*.exr"))
    assert {str(p) for p in on_disk} >= set(announced.values())
    for path in on_disk:
        assert read_matte(path).shape == (HEIGHT, WIDTH)
    before = {f: read_matte(p) for f, p in announced.items()}

    second = start_worker_process(config_dir, sessions, tmp_path / "worker2.log")
    try:
        with connect(second) as client:
            listed = {s["session"]: s for s in client.list_sessions()}
            assert shot.id in listed and listed[shot.id]["matte_dir"] == str(tmp_path / "mattes")
            resumed = client.resume_session(shot.id)
            assert resumed.obj_ids == [1]
            updates = {u.frame: u.matte_paths[1] for u in resumed.propagate()}
            assert sorted(updates) == list(range(FIRST, LAST + 1))
            for frame, path in announced.items():
                assert updates[frame] == path  # same outputs, same files
                np.testing.assert_allclose(read_matte(path), before[frame], atol=1e-3)
            # and the same values as a run that was never interrupted
            fresh = client.open_session(plate, matte_dir=str(tmp_path / "fresh"))
            fresh.add_points(1001, 1, [(80, 60)], [1])
            for update in fresh.propagate():
                np.testing.assert_allclose(read_matte(update.matte_paths[1]), read_matte(updates[update.frame]),
                                           atol=1e-3)

            # SIGTERM while propagating: the frame in flight finishes, the stream ends, exit code 0
            run = resumed.propagate(credit=1)
            next(run)
            second.process.send_signal(signal.SIGTERM)
            with pytest.raises(PropagationCancelled, match="stopping"):
                list(run)
            assert run.state == "cancelled" and "stopping" in (run.reason or "") and run.received <= 3
        assert second.process.wait(60) == 0
        assert "stopped" in second.log()
    finally:
        second.kill()
    saved = json.loads((sessions / shot.id / "session.json").read_text())
    assert saved["first"] == FIRST and saved["last"] == LAST


def test_the_worker_command_explains_a_model_it_cannot_load(tmp_path: Path) -> None:
    env = dict(os.environ, SAMROTO_CONFIG_DIR=str(tmp_path / "config"))
    command = [sys.executable, "-m", "samroto.scripts.cli", "worker", "--model", str(tmp_path / "missing.pt"),
               "--session-dir", str(tmp_path / "sessions"), "--bind", "tcp://127.0.0.1:0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=str(REPO))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: ") and "missing.pt" in done.stderr
    assert "Traceback" not in done.stderr
    help_text = subprocess.run([sys.executable, "-m", "samroto.scripts.cli", "worker", "--help"],
                               capture_output=True, text=True, timeout=60, cwd=str(REPO)).stdout
    for option in ("--model", "--config", "--device", "--bind", "--session-dir"):
        assert option in help_text


def test_shapes_of_a_tracked_object_in_host_spaces(worker: WorkerProcess, tmp_path: Path) -> None:
    """Splines served by the worker: constant point count per shape, keys on the tracked frames,
    coordinates flipped for Nuke; a disc moving over the plate gives one outer shape."""
    folder = tmp_path / "disc"
    folder.mkdir()
    for i in range(6):
        frame = np.full((HEIGHT, WIDTH, 3), 20, np.uint8)
        cv2.circle(frame, (50 + 10 * i, 60), 25, (240, 240, 240), -1)
        cv2.imwrite(str(folder / f"disc.{FIRST + i:04d}.png"), frame)
    with connect(worker) as client:
        shot = client.open_session(str(folder / "disc.####.png"), matte_dir=str(tmp_path / "mattes"))
        mask = np.zeros((HEIGHT, WIDTH), bool)
        cv2.circle(mask.view(np.uint8), (50, 60), 25, 1, -1)
        shot.add_mask(FIRST, 1, mask)
        list(shot.propagate(last=FIRST + 3))
        pixel = shot.get_shapes(1)
        nuke = shot.get_shapes(1, space="nuke")
        coarse = shot.get_shapes(1, tolerance=4.0)
        with pytest.raises(BadRequest, match="no object 5"):
            shot.get_shapes(5)
        with pytest.raises(BadRequest, match="space must be"):
            shot.get_shapes(1, space="maya")
    assert pixel["frames"] == [FIRST, FIRST + 1, FIRST + 2, FIRST + 3], "only frames with output get keys"
    assert (pixel["width"], pixel["height"]) == (WIDTH, HEIGHT)
    for shape in pixel["shapes"]:
        counts = {len(points) for points in shape["points"]}
        assert len(counts) == 1 and counts.pop() >= 4, "same number of points on every key"
        assert set(shape["frames"]) <= set(pixel["frames"])
    keyed = {f for shape in pixel["shapes"] for f in shape["frames"]}
    assert FIRST in keyed, "the prompted frame is keyed (the mask prompt is inside the plate)"
    first_outer = next(s for s in pixel["shapes"] if s["kind"] == "outer")
    ys = [p[1] for p in first_outer["points"][0]]
    assert 30 <= min(ys) and max(ys) <= 90, "pixel space: the disc spans y 35..85"
    nuke_outer = next(s for s in nuke["shapes"] if s["kind"] == "outer")
    expected = [[[x, HEIGHT - y] for x, y in key] for key in first_outer["points"]]
    np.testing.assert_allclose(nuke_outer["points"], expected, atol=1e-6, err_msg="Nuke: origin bottom-left, y up")
    coarse_outer = next(s for s in coarse["shapes"] if s["kind"] == "outer")
    assert len(coarse_outer["points"][0]) < len(first_outer["points"][0]), "a looser tolerance needs fewer points"


def test_exported_prompts_replay_headless_with_the_same_mattes(worker: WorkerProcess, plate: str, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """An artist's worker session exported as a sidecar, then run by `samroto batch` from another folder
    (the worker was started with --model and --config relative to its own folder)."""
    from samroto.core.sidecar import load_sidecar
    from samroto.scripts.cli import main as cli_main

    with connect(worker) as client:
        shot = client.open_session(plate, name="exported", matte_dir=str(tmp_path / "interactive"))
        shot.add_points(1003, 1, [(80, 60)], [1])
        shot.add_box(1003, 2, (10, 10, 70, 100))
        list(shot.propagate(direction="both"))
        path = tmp_path / "jobs" / "exported.json"
        sidecar = shot.export_prompts(path=path)
        interactive = {f: shot.get_frame(f, what="logits").mattes for f in (1001, 1007, 1012)}
    assert sidecar["model"]["checkpoint"] == str(MICRO_CHECKPOINT)
    assert Path(sidecar["model"]["config"]).is_absolute() and Path(sidecar["shot"]["plate"]).is_absolute()
    loaded = load_sidecar(path)
    assert loaded.to_dict() == sidecar
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert [o.obj_id for o in loaded.objects] == [1, 2]
    out = tmp_path / "batch"
    assert cli_main(["batch", os.path.relpath(path), "--out", "../batch", "--format", "exr", "--threads", "1",
                     "--quiet"]) == 0
    for frame, logits in interactive.items():
        for i, obj in enumerate((1, 2)):
            matte = read_matte(next(out.rglob(f"*obj{obj}_matte.{frame}.exr")))
            alpha = 1 / (1 + np.exp(-logits[i].astype(np.float64)))
            np.testing.assert_allclose(matte, alpha, atol=2e-3, err_msg=f"object {obj} frame {frame}")


def test_mattes_carry_confidence_and_a_report_beside_them(worker: WorkerProcess, plate: str, tmp_path: Path) -> None:
    from samroto.core.outputs.confidence import read_sidecar
    from samroto.core.outputs.mattes import read_matte_attributes

    out = tmp_path / "mattes"
    with connect(worker) as client:
        shot = client.open_session(plate, name="conf", matte_dir=str(out))
        shot.add_points(1003, 1, [(80, 60)], [1])
        forward = list(shot.propagate(last=1006))
        refined = list(shot.propagate(start=1003, last=1005, refine_edges=True, smooth_edges=True,
                                      matte_dir=str(tmp_path / "refined")))
        review = shot.review()  # what the hosts mark on their timelines
        review_refined = shot.review(matte_dir=str(tmp_path / "refined"))
        assert shot.review(matte_dir=str(tmp_path / "none")) == []
    tracker, name = read_sidecar(out / "conf.confidence.json")
    assert name == "conf" and [r.frame for r in tracker.records(1)] == [1003, 1004, 1005, 1006]
    assert [(r.frame, r.obj_id, tuple(r.reasons)) for r in review] == [
        (i.frame, i.object_id, i.reasons) for i in tracker.review()]
    refined_tracker, _ = read_sidecar(tmp_path / "refined" / "conf.confidence.json")
    assert [r.frame for r in review_refined] == [i.frame for i in refined_tracker.review()]
    # the report names the plate and the mattes, for the review page
    report = json.loads((out / "conf.confidence.json").read_text())
    assert report["plate"]["kind"] == "image_sequence" and report["mattes"] == {"1": "conf_obj1_matte.####.exr"}
    header = read_matte_attributes(forward[1].matte_paths[1])
    assert header["samroto/frame"] == 1004
    assert header["samroto/objectScore"] == pytest.approx(forward[1].scores[0], abs=1e-4)
    plain = read_matte(forward[1].matte_paths[1])
    smoothed = read_matte(refined[1].matte_paths[1])
    assert plain.shape == smoothed.shape and not np.allclose(plain, smoothed)


def test_preview_session_then_final_mattes_from_its_prompts(worker: WorkerProcess, plate: str,
                                                            tmp_path: Path) -> None:
    """Track at a lower internal resolution for fast feedback (labelled a preview), then compute the
    final mattes at full resolution from the same prompts."""
    with connect(worker) as client:
        preview = client.open_session(plate, name="pv", matte_dir=str(tmp_path / "m"), track_resolution=128)
        assert preview.preview
        prompt = preview.add_points(1002, 1, [(80, 60)], [1])
        assert prompt.preview
        updates = list(preview.propagate(last=1004))
        assert all(u.preview for u in updates)
        assert Path(updates[0].matte_paths[1]).name == "pv_preview_obj1_matte.1002.exr"
        final = client.open_session(plate, name="pv", matte_dir=str(tmp_path / "m"))
        assert not final.preview
        assert final.import_prompts(preview.export_prompts()) == [1]
        assert final.obj_ids == [1]
        finals = list(final.propagate(last=1004))
        assert not any(u.preview for u in finals)
        assert Path(finals[0].matte_paths[1]).name == "pv_obj1_matte.1002.exr"
        with pytest.raises(BadRequest, match="track_resolution must be a multiple of 32"):
            client.open_session(plate, track_resolution=100)
    assert read_matte(finals[0].matte_paths[1]).shape == read_matte(updates[0].matte_paths[1]).shape == (HEIGHT, WIDTH)


def write_acescg_plate(folder: Path) -> str:
    """Two scene-linear EXR frames whose header says ACEScg (AP1 chromaticities)."""
    import OpenEXR

    folder.mkdir(parents=True, exist_ok=True)
    linear = np.load(FRAMES)[:2].astype(np.float32) / 64.0
    for i, frame in enumerate(linear):
        small = cv2.resize(frame, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)
        channels = {c: np.ascontiguousarray(small[..., k]) for k, c in enumerate("RGB")}
        header = {"chromaticities": (0.713, 0.293, 0.165, 0.830, 0.128, 0.044, 0.32168, 0.33767)}
        OpenEXR.File(header, channels).write(str(folder / f"lin.{FIRST + i}.exr"))
    return str(folder / "lin.####.exr")


def test_open_session_takes_the_hosts_colour_settings(worker: WorkerProcess, plate: str, tmp_path: Path) -> None:
    exr = write_acescg_plate(tmp_path / "exr")
    with connect(worker) as client:
        shot = client.open_session(exr, ocio="ocio://studio-config-latest", display="Display P3 - Display",
                                   view="Un-tone-mapped")
        assert "colour.ocio" in client.hello().capabilities
        colour = shot.info["colour"]
        assert colour["config"].startswith("ocio://studio-config-v") and colour["colorspace"] == "ACEScg"
        assert (colour["display"], colour["view"]) == ("Display P3 - Display", "Un-tone-mapped")
        shot.add_points(FIRST, obj_id=1, points=[(80, 60)], labels=[1])
        assert shot.export_prompts()["shot"]["colour"] == colour  # a batch replays it with the same colour
        # reopened from disk (another client, the same worker): the same choices
        assert client.resume_session(shot.id).info["colour"] == colour
        # the host's colourspace wins over the header; a display-referred PNG plate needs no colour
        flagged = client.open_session(exr, colorspace="Linear Rec.709 (sRGB)")
        assert flagged.info["colour"]["colorspace"] == "Linear Rec.709 (sRGB)"
        assert client.open_session(plate).info["colour"] == {}
        with pytest.raises(BadRequest, match="colourspace 'LogC9' is not in OCIO config .*it has: .*ACEScg"):
            client.open_session(exr, colorspace="LogC9")
        with pytest.raises(BadRequest, match="view 'Nope' is not a view of display"):
            client.open_session(exr, view="Nope")


def test_the_workers_colour_flags_fill_what_the_client_leaves_open(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from samroto.bridge.worker.backend import ModelEngine
    from samroto.core.colour import ColourSettings

    exr = write_acescg_plate(tmp_path / "exr")
    defaults = ColourSettings(config="ocio://cg-config-latest", display="sRGB - Display", view="Un-tone-mapped")
    engine = ModelEngine(SimpleNamespace(device="cpu"), name="none", colour=defaults)
    frames = engine.open_frames(exr, None, None, {"view": "Raw"})
    settings = frames.colour.settings
    assert settings.config.startswith("ocio://cg-config-v") and settings.colorspace == "ACEScg"
    assert (settings.display, settings.view) == ("sRGB - Display", "Raw")
    assert engine.open_frames(exr, None, None).colour.settings.view == "Un-tone-mapped"
    # a saved session's description keeps its own choices
    assert engine.open_frames(frames.describe(), None, None).colour.settings == settings


def test_span_retrack_and_locks_over_the_socket(worker: WorkerProcess, plate: str, tmp_path: Path) -> None:
    with connect(worker) as client:
        assert {"propagate.span", "locks"} <= set(client.hello().capabilities)
        shot = client.open_session(plate, matte_dir=str(tmp_path / "mattes"), name="span")
        shot.add_points(1002, 1, [(80, 60)], [1])
        shot.add_points(1008, 1, [(70, 55)], [1])
        list(shot.propagate(direction="both", write_mattes=False))
        before = {f: shot.get_frame(f, what="logits").mattes[0] for f in range(FIRST, LAST + 1)}

        # a correction on 1005 re-tracks 1005-1007 forward and 1004-1003 backward, nothing else
        shot.add_points(1005, 1, [(60, 50), (20, 100)], [1, 0])
        with pytest.raises(BadRequest, match="no object has a prompt on frame 1004"):
            list(shot.propagate(1004, span=True))
        updates = list(shot.propagate(1005, span=True, write_mattes=False))
        assert [u.frame for u in updates] == [1005, 1006, 1007, 1004, 1003]
        assert updates[-1].progress == (5, 5)
        after = {f: shot.get_frame(f, what="logits").mattes[0] for f in range(FIRST, LAST + 1)}
        for f in (1001, 1002, 1008, 1009, 1010, 1011, 1012):
            assert np.array_equal(after[f], before[f]), f"frame {f} outside the span changed"
        assert not np.array_equal(after[1006], before[1006])

        # locked frames keep their results through a propagation over them, and refuse prompts
        assert shot.lock(1, 1009, 1011) == {1: [[1009, 1011]]}
        with pytest.raises(BadRequest, match="locked"):
            shot.add_points(1010, 1, [(60, 50)], [1])
        with pytest.raises(BadRequest, match="no object 7"):
            shot.lock(7, 1009, 1011)
        shot.add_points(1008, 1, [(72, 58)], [1])
        assert [u.frame for u in shot.propagate(1008, write_mattes=False)] == list(range(1008, 1013))
        for f in (1009, 1010, 1011):
            assert np.array_equal(shot.get_frame(f, what="logits").mattes[0], after[f]), f"locked frame {f} changed"
        assert shot.unlock(1, 1010, 1011) == {1: [[1009, 1009]]}
        assert shot.unlock(1) == {}
