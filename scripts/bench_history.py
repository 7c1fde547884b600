"""`samroto bench history`: what the undo history costs on a real clip.

Prints, for the tiny configuration with random weights by default (state on disk, as the worker
keeps it):
- propagation time per frame with the history on and off (the journal is written on this path);
- the journal's size after a full propagation, and after a correction and its span re-track (what
  a step overwrote stays on disk until the step leaves the history; the journal takes it by hard
  link where the record file was already written, so it costs no copy);
- the time of an undo and a redo of the span re-track, and of a before/after lookup.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared" / "media" / "02_cups.mp4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a real clip (default ../shared/media/02_cups.mp4)")
    parser.add_argument("--config", default="sam2.1_hiera_tiny", help="preset (random weights)")
    parser.add_argument("--model", help="checkpoint instead of random weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    parser.add_argument("--frames", type=int, default=30, help="frames of the clip to track (default 30)")
    parser.add_argument("--image-size", type=int, default=None, help="track at this internal size (e.g. 512)")
    parser.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)


def _bytes(root: Path, pattern: str = "*") -> int:
    return sum(p.stat().st_size for p in root.rglob(pattern) if p.is_file())


def _track(model, plate: str, frames: int, state: Path, history_steps: int, precision: str):  # noqa: ANN001, ANN202
    from samroto.core.video_session import VideoSession

    session = VideoSession(model, plate, state_dir=state, last=frames - 1, precision=precision,
                           history_steps=history_steps)
    first, last = session.frame_numbers[0], session.frame_numbers[-1]
    centre = (session.width / 2, session.height / 2)
    session.add_points(first, 1, [centre], [1])
    session.add_points(last, 1, [centre], [1])
    list(session.propagate(first, max_frames=0))  # features and memory of the first keyframe
    started = time.perf_counter()
    list(session.propagate(first))
    return session, (time.perf_counter() - started) / max(1, frames - 1)


def run(args: argparse.Namespace) -> int:
    from samroto.core.frames import open_frames
    from samroto.scripts.common import bench_model

    if args.frames < 6:
        raise SystemExit("--frames must be at least 6")
    with open_frames(str(args.clip)) as clip:
        frames = min(args.frames, len(clip))
    model = bench_model(args, memory_attention=True)
    print(f"samroto bench history: {args.config if not args.model else args.model} at {model.image_size} on "
          f"{args.device}, {frames} frames of {args.clip.name}, state on disk")
    with tempfile.TemporaryDirectory(prefix="samroto-bench-history-") as folder:
        root = Path(folder)
        off, off_s = _track(model, str(args.clip), frames, root / "off", 0, args.precision)
        off.close()
        session, on_s = _track(model, str(args.clip), frames, root / "on", 20, args.precision)
        history = root / "on" / "history"
        print(f"propagation, s/frame        history off {off_s:.3f}   on {on_s:.3f}   ({(on_s / off_s - 1) * 100:+.1f}%)")
        print(f"journal after propagation   {_bytes(history) / 1e6:.2f} MB (nothing was overwritten: markers only)")

        middle = session.frame_numbers[frames // 2]
        session.add_points(middle, 1, [(session.width / 3, session.height / 3)], [1])
        started = time.perf_counter()
        retracked = list(session.propagate(middle, span=True))
        span_s = time.perf_counter() - started
        print(f"span re-track from {middle}      {len(retracked)} frames in {span_s:.2f} s; journal now "
              f"{_bytes(history) / 1e6:.2f} MB, records {_bytes(root / 'on' / 'records', '*.rec') / 1e6:.2f} MB")

        started = time.perf_counter()
        undone = session.undo()
        undo_s = time.perf_counter() - started
        started = time.perf_counter()
        session.redo()
        redo_s = time.perf_counter() - started
        started = time.perf_counter()
        session.frame_result(middle + 1, before=True)
        before_s = time.perf_counter() - started
        print(f"undo of {undone['step']!r}: {undo_s * 1000:.0f} ms ({len(undone['frames'])} frames); "
              f"redo {redo_s * 1000:.0f} ms; before/after lookup {before_s * 1000:.1f} ms")
        print(f"history: {len(session.history()['undo'])} steps, {sum(1 for _ in history.rglob('*'))} entries "
              f"under {os.path.relpath(history, root)}")
        session.close()
    return 0
