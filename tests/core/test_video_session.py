"""VideoSession behaviour beyond the reference replay: persistence, hole filling, options and errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from samroto.core.video_session import SessionError, VideoSession, fill_holes

from .conftest import FIXTURES, micro_model
from .scenario import compare_step, run_step, scenario_model

REPO = Path(__file__).resolve().parents[2]


def write_sequence(frames: np.ndarray, folder: Path, first: int = 0) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"plate.{first + i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return str(folder / "plate.####.png")


RESUME_SCRIPT = """
import json, sys
import numpy as np
sys.path.insert(0, {repo!r})
from tests.core.scenario import compare_step, run_step, scenario_model
from tests.core.conftest import FIXTURES, assert_close
from samroto.core.video_session import VideoSession
model, spec = scenario_model({variant!r}, False)
ref = dict(np.load(FIXTURES / "scenario_{variant}.npz"))
session = VideoSession.open({state!r}, model)
h, w = spec["video_size_hw"]
for i, step in enumerate(spec["steps"]):
    if i < {split}:
        continue
    compare_step(i, step, run_step(session, step, h, w), ref, session, assert_close)
session.close()
print("resumed steps", {split}, "to", len(spec["steps"]) - 1, "match the reference")
"""


@pytest.mark.parametrize("variant", ["sam2.1"])
def test_saved_session_resumes_in_a_new_process_with_the_same_outputs(variant: str, tmp_path: Path) -> None:
    model, spec = scenario_model(variant, False)
    ref = dict(np.load(FIXTURES / f"scenario_{variant}.npz"))
    frames = np.load(FIXTURES / "video_frames.npy")[: spec["num_frames"]]
    pattern = write_sequence(frames, tmp_path / "frames")
    state = tmp_path / "state"
    height, width = spec["video_size_hw"]
    session = VideoSession(model, pattern, video_size=(height, width), fill_hole_area=0, state_dir=state)
    split = 6  # prompts, a propagation and a correction here; the rest in another process
    checks: list[str] = []

    def check(actual, expected, what):  # noqa: ANN001
        diff = np.abs(np.asarray(actual).reshape(expected.shape) - expected).max()
        assert diff <= 1e-3, f"{what}: {diff}"
        checks.append(what)

    for i, step in enumerate(spec["steps"][:split]):
        compare_step(i, step, run_step(session, step, height, width), ref, session, check)
    session.save()
    session.close()
    assert checks and state.joinpath("session.json").is_file()

    script = RESUME_SCRIPT.format(repo=str(REPO), variant=variant, state=str(state), split=split)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "match the reference" in done.stdout


def test_prompts_export_and_missing_saved_session(tmp_path: Path) -> None:
    model = micro_model("sam2.1")
    frames = np.load(FIXTURES / "video_frames.npy")[:4]
    with VideoSession(model, frames, video_size=(120, 160), state_dir=tmp_path / "s") as session:
        session.add_points(1, 5, [[80, 60]], [1])
        session.add_points(1, 5, [[20, 20]], [0], clear=False)
        session.add_box(2, 7, [10, 10, 90, 100])
        mask = np.zeros((120, 160), bool)
        mask[40:80, 50:120] = True
        session.add_mask(3, 9, mask)
        prompts = session.prompts()
    assert prompts[5][1] == {"points": [[80.0, 60.0], [20.0, 20.0]], "labels": [1, 0]}
    assert prompts[7][2] == {"box": [10.0, 10.0, 90.0, 100.0]}
    assert prompts[9][3]["mask_file"].endswith(".png")
    with pytest.raises(SessionError, match="no saved session"):
        VideoSession.open(tmp_path / "nothing", model)


def _brute_force_fill(logits: np.ndarray, max_area: int) -> np.ndarray:
    """Flood fill of 8-connected background regions, for checking `fill_holes`."""
    out = logits.copy()
    h, w = logits.shape
    seen = np.zeros((h, w), bool)
    for y0 in range(h):
        for x0 in range(w):
            if seen[y0, x0] or logits[y0, x0] > 0:
                continue
            stack, region = [(y0, x0)], []
            seen[y0, x0] = True
            while stack:
                y, x = stack.pop()
                region.append((y, x))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < h and 0 <= xx < w and not seen[yy, xx] and logits[yy, xx] <= 0:
                            seen[yy, xx] = True
                            stack.append((yy, xx))
            if len(region) <= max_area:
                for y, x in region:
                    out[y, x] = 0.1
    return out


def test_hole_filling_on_cpu_matches_a_flood_fill() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(1.0, 1.0, size=(3, 1, 40, 40)).astype(np.float32)
    logits[0, 0, 10:13, 10:13] = -5  # a 9-pixel hole: too big for area 8
    logits[1, 0, 0:2, 0:2] = -5  # a hole on the border
    filled = fill_holes(torch.from_numpy(logits), 8).numpy()
    for b in range(3):
        np.testing.assert_array_equal(filled[b, 0], _brute_force_fill(logits[b, 0], 8))
    assert (filled != logits).any(), "the random logits have small holes to fill"
    assert (filled[0, 0, 10:13, 10:13] == -5).all()


def test_hole_filling_changes_session_outputs(tmp_path: Path) -> None:
    model = micro_model("sam2.1")
    frames = np.load(FIXTURES / "video_frames.npy")[:3]
    outputs = {}
    for area in (0, 8):
        with VideoSession(model, frames, video_size=(120, 160), fill_hole_area=area) as session:
            session.add_points(0, 1, [[80, 60]], [1])
            outputs[area] = [session.frame_output(1, 0).lowres_logits] + [
                session.frame_output(1, r.frame).lowres_logits for r in session.propagate()
            ]
    expected = [fill_holes(torch.from_numpy(o)[None, None], 8)[0, 0].numpy() for o in outputs[0][:1]]
    np.testing.assert_array_equal(outputs[8][0], expected[0])


def test_non_overlapping_outputs() -> None:
    model = micro_model("sam2.1")
    frames = np.load(FIXTURES / "video_frames.npy")[:2]
    with VideoSession(model, frames, video_size=(120, 160), non_overlap_masks=True) as session:
        session.add_box(0, 1, [10, 10, 150, 110])
        result = session.add_box(0, 2, [20, 20, 140, 100])
    both = (result.logits[0] > 0) & (result.logits[1] > 0)
    assert not both.any()


def test_errors_are_clear() -> None:
    model = micro_model("sam2.1")
    frames = np.load(FIXTURES / "video_frames.npy")[:3]
    with VideoSession(model, frames, video_size=(120, 160)) as session:
        with pytest.raises(SessionError, match="no objects"):
            next(session.propagate())
        with pytest.raises(SessionError, match="3 frames|0 to 2|range"):
            session.add_points(7, 1, [[1, 1]], [1])
        with pytest.raises(SessionError, match="2 points but 1 labels"):
            session.add_points(0, 1, [[1, 1], [2, 2]], [1])
        with pytest.raises(SessionError, match="labels are 1"):
            session.add_points(0, 1, [[1, 1]], [3])
        with pytest.raises(SessionError, match=r"\(x, y\) pairs"):
            session.add_points(0, 1, [[1, 1, 1]], [1])
        with pytest.raises(SessionError, match="4 finite numbers"):
            session.add_box(0, 1, [1, 2, 3])
        with pytest.raises(SessionError, match="left, top, right, bottom"):
            session.add_box(0, 1, [10, 10, 5, 5])
        with pytest.raises(SessionError, match="the shot is 160x120"):
            session.add_mask(0, 1, np.ones((10, 10), bool))
        with pytest.raises(SessionError, match="no object 4"):
            session.remove_object(4)
        session.add_points(1, 1, [[80, 60]], [1])
        session.clear_prompts(1, 1)
        with pytest.raises(SessionError, match="object 1 has no prompt"):
            next(session.propagate())
    with pytest.raises(SessionError, match="closed"):
        session.add_points(0, 1, [[1, 1]], [1])
    with pytest.raises(SessionError, match="must be the model input"):
        VideoSession(model, np.zeros((2, 100, 100, 3), np.uint8), video_size=(120, 160))


def test_removing_objects_and_reset_keep_others_tracking() -> None:
    model = micro_model("sam2.1")
    frames = np.load(FIXTURES / "video_frames.npy")[:4]
    with VideoSession(model, frames, video_size=(120, 160)) as session:
        session.add_points(0, 1, [[80, 60]], [1])
        session.add_points(0, 2, [[30, 30]], [1])
        list(session.propagate())
        session.remove_object(1)
        assert session.obj_ids == [2]
        assert session.frame_output(1, 2) is None
        assert [r.obj_ids for r in session.propagate()] == [[2]] * 4
        session.reset()
        assert session.obj_ids == []


def test_objects_added_after_tracking_and_reverse_propagation() -> None:
    model = micro_model("sam2.1")
    frames = np.load(FIXTURES / "video_frames.npy")[:6]
    with VideoSession(model, frames, video_size=(120, 160)) as session:
        session.add_points(2, 1, [[80, 60]], [1])
        forward = [r.frame for r in session.propagate(2)]
        backward = [r.frame for r in session.propagate(2, reverse=True)]
        assert forward == [2, 3, 4, 5] and backward == [2, 1, 0]
        session.add_points(4, 3, [[40, 40]], [1])
        assert session.obj_ids == [1, 3]
        results = list(session.propagate(0, max_frames=2))
        assert [r.frame for r in results] == [0, 1, 2]
        # a correction on a tracked frame becomes a keyframe that later propagations keep
        session.add_points(1, 1, [[60, 50]], [1])
        list(session.propagate())
        assert session.frame_output(1, 1).keyframe


def test_prefetcher_reads_ahead_in_order_and_stays_bounded() -> None:
    import threading
    import time

    from samroto.core.video_session import FramePrefetcher

    loaded: list[int] = []
    gate = threading.Event()

    def load(idx: int) -> torch.Tensor:
        if idx == 13:
            raise OSError("unreadable frame")
        loaded.append(idx)
        gate.set()
        return torch.full((1,), float(idx))

    prefetcher = FramePrefetcher(load, [10, 11, 12, 13, 14], ahead=2)
    gate.wait(5)
    # a busy machine may take long to read the second frame: wait for it (the deadline only stops a
    # hang), then give a third read time to happen if it wrongly could; a slow machine cannot fail this
    deadline = time.monotonic() + 30
    while len(loaded) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert loaded == [10, 11], "reads at most `ahead` frames before the consumer moves"
    assert prefetcher.take(10).item() == 10
    assert prefetcher.take(14) is None, "a frame too far ahead is not waited for"
    prefetcher.advance(10)
    prefetcher.advance(11)  # consumed without taking (e.g. a frame where every object is a keyframe)
    assert prefetcher.take(12).item() == 12
    prefetcher.advance(12)
    assert prefetcher.take(13) is None, "a failed read is left to the caller, who reports it"
    prefetcher.advance(13)
    assert prefetcher.take(14).item() == 14
    prefetcher.stop()
    assert 11 in loaded and prefetcher.take(99) is None


def test_repeated_correction_clicks_reuse_the_memory_conditioned_feature(monkeypatch: pytest.MonkeyPatch) -> None:
    model = micro_model("sam2.1")
    frames = np.load(FIXTURES / "video_frames.npy")[:5]
    calls = []
    original = model.condition_on_memory

    def counting(features, memory, *args):  # noqa: ANN001, ANN002, ANN202
        if memory is not None:
            calls.append(1)
        return original(features, memory, *args)

    monkeypatch.setattr(model, "condition_on_memory", counting)
    with VideoSession(model, frames, video_size=(120, 160)) as session:
        session.add_points(0, 1, [[80, 60]], [1])
        list(session.propagate())
        calls.clear()
        first = session.add_points(3, 1, [[70, 50]], [1])
        second = session.add_points(3, 1, [[72, 50]], [1])
        assert len(calls) == 1, "the second click on the same frame runs the decoder only"
        list(session.propagate())
        calls.clear()
        session.add_points(3, 1, [[74, 50]], [1])
        assert len(calls) == 1, "after a propagation the memory changed: conditioning runs again"
    with VideoSession(micro_model("sam2.1"), frames, video_size=(120, 160)) as fresh:
        fresh.add_points(0, 1, [[80, 60]], [1])
        list(fresh.propagate())
        fresh.add_points(3, 1, [[70, 50]], [1])
        expected = fresh.add_points(3, 1, [[72, 50]], [1])
    np.testing.assert_allclose(second.logits, expected.logits, atol=1e-4)
    assert not np.allclose(first.logits, second.logits)


def test_preview_session_shares_weights_and_runs_at_lower_resolution(tmp_path: Path) -> None:
    model = micro_model("sam2.1")
    view = model.at_image_size(128)
    assert view.no_mem_embed is model.no_mem_embed, "the preview model shares the weights"
    assert model.image_size == 256 and model.sam_prompt_encoder.image_size == 256
    assert view.sam_prompt_encoder.image_size == 128 and view.config.feature_size == 8
    frames = np.load(FIXTURES / "video_frames.npy")[:4]
    pattern = write_sequence(frames, tmp_path / "frames")
    with VideoSession(model, pattern, image_size=128, state_dir=tmp_path / "s") as session:
        assert session.preview
        result = session.add_points(0, 1, [[128, 100]], [1])
        assert result.logits.shape == (1, 256, 256)
        assert session.frame_output(1, 0).lowres_logits.shape == (32, 32)
        assert [r.frame for r in session.propagate()] == [0, 1, 2, 3]
        session.save()
    reopened = VideoSession.open(tmp_path / "s", model)
    assert reopened.preview and reopened.model.image_size == 128
    reopened.close()
    with VideoSession(model, pattern) as full:
        assert not full.preview


def test_bfloat16_autocast_runs_the_same_code_path() -> None:
    """The dtype plumbing used on CUDA (autocast bf16), exercised on the CPU."""
    model = micro_model("sam2.1")
    frames = np.load(FIXTURES / "video_frames.npy")[:4]
    outputs = {}
    for precision in ("float32", "bfloat16"):
        with VideoSession(model, frames, video_size=(120, 160), precision=precision) as session:
            session.add_points(0, 1, [[80, 60]], [1])
            session.add_mask(1, 2, np.pad(np.ones((40, 60), bool), ((40, 40), (50, 50))))
            outputs[precision] = [r.logits for r in session.propagate()]
    for full, low in zip(outputs["float32"], outputs["bfloat16"]):
        assert low.dtype == np.float32 and np.isfinite(low).all()
        agree = ((full > 0) == (low > 0)).mean()
        assert agree > 0.95, f"bf16 masks agree with float32 on {agree:.1%} of pixels"
    with pytest.raises(SessionError, match="precision must be one of"):
        VideoSession(model, frames, video_size=(120, 160), precision="int8")


def test_a_private_session_folder_is_removed_even_without_close(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import gc
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where mkdtemp puts it, for this test
    frames = np.zeros((2, 32, 32, 3), np.uint8)
    session = VideoSession(micro_model("sam2.1"), frames)
    folder = session.state_dir
    assert folder is not None and folder.is_dir() and folder.name.startswith("samroto-")
    del session
    gc.collect()
    assert not folder.exists(), "a dropped session leaves no samroto-* folder behind"
    saved = VideoSession(micro_model("sam2.1"), frames)
    saved.save()  # saved on purpose: kept
    kept = saved.state_dir
    del saved
    gc.collect()
    assert kept is not None and kept.is_dir()
