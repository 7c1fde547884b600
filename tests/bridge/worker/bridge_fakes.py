"""A small stand-in for the model side, to test the worker's scheduling without a model.

Each object is a disc that moves 2 pixels right per frame from the frame it was clicked on;
propagation sleeps `delay` seconds per frame to stand in for model time.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np

# the errors core raises for a client's mistakes: the worker answers them as bad_request
from samroto.core.frames import FrameError
from samroto.core.video_session import SessionError


@dataclass
class FakeResult:
    frame: int
    obj_ids: list
    logits: np.ndarray
    scores: np.ndarray
    ious: np.ndarray


class FakeFrames:
    def __init__(self, first: int, last: int, height: int = 24, width: int = 32, colour: Any = None) -> None:
        self.frame_numbers = range(first, last + 1)
        self.height, self.width = height, width
        self.colour = dict(colour or {})  # the colour settings asked for, kept as given

    def describe(self) -> dict:
        spec = {"kind": "fake", "first": self.frame_numbers[0], "last": self.frame_numbers[-1],
                "height": self.height, "width": self.width}
        if self.colour:
            spec["colour"] = dict(self.colour)
        return spec

    def close(self) -> None:
        pass


class FakeSession:
    def __init__(self, frames: Any, state_dir: Path, delay: float) -> None:
        self.frames = frames
        self.state_dir = Path(state_dir)
        self.delay = delay
        self.obj_ids: list[int] = []
        self.centres: dict[int, dict[int, tuple[float, float]]] = {}  # obj -> keyframe -> centre
        self.computed: dict[int, dict[int, tuple[float, float]]] = {}  # frame -> obj -> centre
        self.closed = False
        self.saves = 0
        self.calls: list[str] = []
        self.locked: dict[int, set[int]] = {}

    @property
    def keyframes(self) -> list[int]:
        return sorted({f for per_obj in self.centres.values() for f in per_obj})

    def prompts(self) -> dict[int, dict[int, dict]]:
        return {obj: {f: {"centre": list(c)} for f, c in sorted(per.items())} for obj, per in self.centres.items()}

    def _check(self, frame: int) -> None:
        if frame not in self.frames.frame_numbers:
            raise SessionError(f"frame {frame} is outside {self.frames.frame_numbers}")

    def _disc(self, centre: Optional[tuple[float, float]]) -> np.ndarray:
        h, w = self.frames.height, self.frames.width
        if centre is None:
            return np.full((h, w), -1024.0, np.float32)
        yy, xx = np.mgrid[0:h, 0:w]
        return (6.0 - np.hypot(xx - centre[0], yy - centre[1])).astype(np.float32)

    def frame_result(self, frame: int) -> FakeResult:
        self._check(frame)
        per_obj = self.computed.get(frame, {})
        logits = np.stack([self._disc(per_obj.get(o)) for o in self.obj_ids]) if self.obj_ids else \
            np.zeros((0, self.frames.height, self.frames.width), np.float32)
        scores = np.array([5.0 if o in per_obj else -10.0 for o in self.obj_ids], np.float32)
        return FakeResult(frame, list(self.obj_ids), logits, scores, np.full(len(self.obj_ids), 0.9, np.float32))

    def _prompt(self, frame: int, obj_id: int, centre: tuple[float, float]) -> FakeResult:
        self._check(frame)
        if obj_id not in self.obj_ids:
            self.obj_ids.append(obj_id)
        self.centres.setdefault(obj_id, {})[frame] = centre
        self.computed.setdefault(frame, {})[obj_id] = centre
        return self.frame_result(frame)

    def add_points(self, frame: int, obj_id: int, points: Any, labels: Any, *, clear: bool = True) -> FakeResult:
        self.calls.append("add_points")
        pts = np.asarray(points, np.float64)[np.asarray(labels) == 1]
        centre = tuple(pts.mean(axis=0)) if len(pts) else (0.0, 0.0)
        return self._prompt(frame, obj_id, centre)

    def add_box(self, frame: int, obj_id: int, box: Any, *, points: Any = None, labels: Any = None) -> FakeResult:
        x0, y0, x1, y1 = [float(v) for v in box]
        return self._prompt(frame, obj_id, ((x0 + x1) / 2, (y0 + y1) / 2))

    def add_mask(self, frame: int, obj_id: int, mask: Any) -> FakeResult:
        self.calls.append("add_mask")
        ys, xs = np.nonzero(np.asarray(mask))
        return self._prompt(frame, obj_id, (float(xs.mean()), float(ys.mean())) if len(xs) else (0.0, 0.0))

    def clear_prompts(self, frame: int, obj_id: int) -> FakeResult:
        self.centres.get(obj_id, {}).pop(frame, None)
        self.computed.get(frame, {}).pop(obj_id, None)
        return self.frame_result(frame)

    def remove_object(self, obj_id: int) -> None:
        self.obj_ids.remove(obj_id)
        self.centres.pop(obj_id, None)

    def reset(self) -> None:
        self.obj_ids, self.centres, self.computed = [], {}, {}

    def span_frames(self, start: int, obj_id: Optional[int] = None) -> list[int]:
        """The fake's span: the corrected frame alone (it has no memory to re-track with)."""
        self._check(start)
        if start not in self.keyframes:
            raise SessionError(f"no object has a prompt on frame {start}: nothing to re-track")
        return [start]

    def lock(self, obj_id: int, first: Optional[int] = None, last: Optional[int] = None) -> dict[int, list[list[int]]]:
        numbers = self.frames.frame_numbers
        lo, hi = numbers[0] if first is None else first, numbers[-1] if last is None else last
        self.locked.setdefault(obj_id, set()).update(range(lo, hi + 1))
        return self.locks()

    def unlock(self, obj_id: int, first: Optional[int] = None, last: Optional[int] = None) -> dict[int, list[list[int]]]:
        numbers = self.frames.frame_numbers
        lo, hi = numbers[0] if first is None else first, numbers[-1] if last is None else last
        self.locked.get(obj_id, set()).difference_update(range(lo, hi + 1))
        return self.locks()

    def locks(self) -> dict[int, list[list[int]]]:
        return {o: [[min(f), max(f)]] for o, f in sorted(self.locked.items()) if f}

    def propagate(self, start: Optional[int] = None, max_frames: Optional[int] = None,
                  reverse: bool = False, *, span: bool = False, obj_id: Optional[int] = None) -> Iterator[FakeResult]:
        if span:
            assert start is not None
            max_frames = 0
        numbers = self.frames.frame_numbers
        start = self.keyframes[0] if start is None else start
        step = -1 if reverse else 1
        frame, count = start, 0
        while frame in numbers and (max_frames is None or count <= max_frames):  # the reference's semantics
            time.sleep(self.delay)
            for obj in self.obj_ids:
                keys = self.centres.get(obj, {})
                if not keys:
                    continue
                nearest = min(keys, key=lambda k: abs(k - frame))
                cx, cy = keys[nearest]
                self.computed.setdefault(frame, {})[obj] = (cx + 2.0 * (frame - nearest), cy)
            yield self.frame_result(frame)
            frame += step
            count += 1

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        data = {"obj_ids": self.obj_ids,
                "centres": {str(o): {str(f): c for f, c in v.items()} for o, v in self.centres.items()},
                "computed": {str(f): {str(o): c for o, c in v.items()} for f, v in self.computed.items()}}
        tmp = self.state_dir / "fake.json.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.state_dir / "fake.json")
        self.saves += 1

    def close(self) -> None:
        self.closed = True

    @classmethod
    def open(cls, state_dir: Path, frames: Any, delay: float) -> "FakeSession":
        session = cls(frames, state_dir, delay)
        data = json.loads((Path(state_dir) / "fake.json").read_text())
        session.obj_ids = [int(o) for o in data["obj_ids"]]
        session.centres = {int(o): {int(f): tuple(c) for f, c in v.items()} for o, v in data["centres"].items()}
        session.computed = {int(f): {int(o): tuple(c) for o, c in v.items()} for f, v in data["computed"].items()}
        return session


class FakeWriter:
    def __init__(self, out_dir: Path, name: str) -> None:
        self.out_dir = Path(out_dir)
        self.name = name

    def write(self, result: Any) -> dict:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        out = {}
        for i, obj in enumerate(result.obj_ids):
            path = self.out_dir / f"{self.name}_obj{obj}.{result.frame:04d}.npy"
            tmp = path.with_suffix(".tmp")
            with open(tmp, "wb") as handle:
                np.save(handle, (np.asarray(result.logits)[i] > 0).astype(np.uint8))
            os.replace(tmp, path)
            out[obj] = str(path)
        return out

    def finish(self) -> None:
        self.finished = getattr(self, "finished", 0) + 1


class FakeEngine:
    model_name = "fake"
    device = "cpu"
    model_spec = {"checkpoint": "fake"}

    def check_track_resolution(self, size: int) -> None:
        if not (64 <= size < 1024 and size % 32 == 0):
            raise ValueError("track_resolution must be a multiple of 32 from 64 to below 1024, got %d" % size)

    def __init__(self, *, delay: float = 0.01, plates: Optional[dict] = None) -> None:
        self.delay = delay
        self.sessions: list[FakeSession] = []
        # opening a 'fake:stuck' plate blocks until this is set (a read that never returns)
        self.unstick = threading.Event()

    def open_frames(self, plate: Any, first: Optional[int], last: Optional[int], view: Any = None) -> FakeFrames:
        if isinstance(plate, dict):
            first = plate.get("first") if first is None else first
            last = plate.get("last") if last is None else last
        elif not str(plate).startswith("fake:"):
            raise FrameError(f"{plate!r}: the fake engine only opens 'fake:' plates")
        elif str(plate) == "fake:stuck":
            self.unstick.wait()
        return FakeFrames(1001 if first is None else first, 1012 if last is None else last, colour=view)

    def pushed_frames(self, folder: Path, frame_numbers: Any, height: int, width: int) -> FakeFrames:
        return FakeFrames(frame_numbers[0], frame_numbers[-1], height, width)

    def create_session(self, frames: Any, state_dir: Path, **options: Any) -> FakeSession:
        session = FakeSession(frames, state_dir, self.delay)
        session.created_with = options
        self.sessions.append(session)
        return session

    def memory_modes(self) -> dict:
        from samroto.core.memory_modes import explanations

        return explanations()

    def reopen_session(self, state_dir: Path, frames: Any) -> FakeSession:
        session = FakeSession.open(state_dir, frames, self.delay)
        self.sessions.append(session)
        return session

    def matte_writer(self, out_dir: Path, name: str, fmt: str, *, frames: Any = None,
                     options: Optional[dict] = None) -> FakeWriter:
        return FakeWriter(out_dir, name)
