"""The `presence` memory mode reproduces SAM 3's memory frame filter, run by the reference code on
SAM 2 (tests/fixtures/memory_modes/presence), with both record stores and across a reopen."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from samroto.core.memory_modes import MemoryContext, explanations
from samroto.core.memory_modes.presence import PresenceMemory
from samroto.core.model.config import preset
from samroto.core.video_session import VideoSession

from .presence_replay import clip_model, load_fixture, open_clip_session, run_and_compare

REPO = Path(__file__).resolve().parents[2]
SPEC, REF = load_fixture()


def test_the_fixtures_make_the_filter_choose() -> None:
    """A fixture where nothing is rejected would prove nothing."""
    for name, clip in SPEC["clips"].items():
        rejected = sum(len(frames) for frames in clip["rejected_frames"].values())
        tracked = sum(SPEC["num_frames"] - 1 for _ in clip["rejected_frames"])
        assert 0 < rejected < tracked, name
    assert "presence" in explanations()


def replay(name: str, state_dir: "Path | None", steps: "range | None" = None) -> VideoSession:
    clip = SPEC["clips"][name]
    session = open_clip_session(clip_model(clip), REF[f"{name}_frames"], state_dir)
    for index, step in enumerate(clip["steps"]):
        if steps is None or index in steps:
            run_and_compare(session, name, index, step, REF)
    return session


@pytest.mark.parametrize("name", sorted(SPEC["clips"]))
def test_presence_matches_the_reference_with_records_in_memory(name: str) -> None:
    replay(name, None).close()


def test_presence_matches_the_reference_with_records_on_disk(tmp_path: Path) -> None:
    replay("lookalike", tmp_path / "state").close()


RESUME = """
import sys
sys.path.insert(0, {repo!r})
from samroto.core.video_session import VideoSession
from tests.core.presence_replay import clip_model, load_fixture, run_and_compare
spec, ref = load_fixture()
clip = spec["clips"]["occluded"]
session = VideoSession.open({state!r}, clip_model(clip), frames=ref["occluded_frames"])
assert session.options.memory_mode == "presence", session.options.memory_mode
for index, step in enumerate(clip["steps"]):
    if index >= {split}:
        run_and_compare(session, "occluded", index, step, ref)
session.close()
print("resumed in presence mode: steps", {split}, "to", len(clip["steps"]) - 1, "match the reference")
"""


def test_presence_on_disk_saved_and_resumed_in_another_process_matches_the_reference(tmp_path: Path) -> None:
    state = tmp_path / "state"
    split = 3  # a prompt, a propagation and a correction here; the rest in another process
    session = replay("occluded", state, range(split))
    session.save()
    session.close()
    done = subprocess.run([sys.executable, "-c", RESUME.format(repo=str(REPO), state=str(state), split=split)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "match the reference" in done.stdout


def test_the_filter_keeps_the_previous_frame_and_skips_absent_ones() -> None:
    c = preset("sam2.1_hiera_tiny")  # num_maskmem 7, 16 pointers
    committed = {0: True, **{t: False for t in range(1, 40)}}
    data = {t: {"presence": 0.0 if t >= 20 else 0.5} for t in range(1, 40)}  # absent from frame 20
    ctx = MemoryContext(obj_id=1, frame=40, reverse=False, num_frames=100, config=c, committed=committed,
                        unselected=frozenset(), data=data, state={})
    mode = PresenceMemory()
    valid = mode.valid_frames(ctx)
    assert valid == [5, *range(6, 20), 39]  # 15 present frames before the occlusion, then the previous frame
    choice = mode.choose_memory(ctx)
    assert choice.spatial == [(15, 1), (16, 2), (17, 3), (18, 4), (19, 5), (39, 6)]
    assert choice.pointers[0] == (39, 1) and choice.pointers[-1] == (6, 15)
