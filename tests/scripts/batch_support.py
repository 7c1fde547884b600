"""Generated shots and sidecars for the batch tests: small plates, prompts made in real sessions."""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np

from samroto.core.model.checkpoint import load_model
from samroto.core.model.config import load_config_file
from samroto.core.outputs.mattes import read_matte
from samroto.core.model.sam2 import SAM2Model
from samroto.core.sidecar import save_sidecar, session_to_sidecar
from samroto.core.video_session import VideoSession

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sam2_reference"
MICRO_CHECKPOINT = FIXTURES / "micro_sam2.1.pt"
MICRO_CONFIG = f"{FIXTURES / 'micro_config.json'}#sam2.1"
MICRO = ["--model", str(MICRO_CHECKPOINT), "--config", MICRO_CONFIG]
WIDTH, HEIGHT = 160, 120


def micro_model() -> SAM2Model:
    return load_model(MICRO_CHECKPOINT, config=load_config_file(MICRO_CONFIG))


def _frames(count: int, seed: int) -> list[np.ndarray]:
    """A bright disc moving right and a square moving down over a dark textured background (RGB)."""
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 60, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames = []
    for i in range(count):
        frame = background.copy()
        cv2.circle(frame, (40 + 6 * i, 60), 20, (230, 200, 40), -1)
        cv2.rectangle(frame, (110, 15 + 5 * i), (140, 45 + 5 * i), (40, 90, 220), -1)
        frames.append(frame)
    return frames


def disc_center(i: int) -> tuple[int, int]:
    return 40 + 6 * i, 60


def square_box(i: int) -> list[float]:
    return [108.0, 13.0 + 5 * i, 142.0, 47.0 + 5 * i]


def make_sequence(folder: Path, *, first: int, count: int, seed: int) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(_frames(count, seed)):
        cv2.imwrite(str(folder / f"plate.{first + i:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return str(folder / "plate.####.png")


def make_video(path: Path, *, count: int, seed: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=24)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for frame in _frames(count, seed):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return str(path)


def make_shots(root: Path, model: SAM2Model) -> Path:
    """Three shots (two PNG sequences with different ranges, one video) and their sidecars, each
    exported from a real session after prompting it. Returns the folder of sidecars."""
    jobs = root / "jobs"
    jobs.mkdir(parents=True)

    # A: 1001-1010, clicks on 1004 (tracks both ways), a box on a second object on 1006
    plate_a = make_sequence(root / "plates" / "a", first=1001, count=10, seed=1)
    with VideoSession(model, plate_a, state_dir=root / "prompting" / "a") as session:
        x, y = disc_center(3)
        session.add_points(1004, 1, [[x, y], [5, 5]], [1, 0])
        session.add_box(1006, 2, square_box(5))
        save_sidecar(session_to_sidecar(session, model=str(MICRO_CHECKPOINT), name="shot_a",
                                         object_names={1: "disc", 2: "square"}), jobs / "a.json")

    # B: plate 2001-2012, shot 2002-2009; a mask prompt on 2003, a later correction with clicks
    # added one at a time on 2007
    plate_b = make_sequence(root / "plates" / "b", first=2001, count=12, seed=2)
    with VideoSession(model, plate_b, first=2002, last=2009, state_dir=root / "prompting" / "b") as session:
        mask = np.zeros((HEIGHT, WIDTH), bool)
        cv2.circle(mask.view(np.uint8), disc_center(2), 20, (1,), -1)
        session.add_mask(2003, 1, mask)
        session.add_points(2007, 1, [disc_center(6)], [1])
        session.add_points(2007, 1, [[150, 110]], [0], clear=False)
        save_sidecar(session_to_sidecar(session, model=str(MICRO_CHECKPOINT)), jobs / "b.json")

    # C: a video, frames 0-8, prompted on its first frame
    video = make_video(root / "plates" / "c.mp4", count=9, seed=3)
    with VideoSession(model, video, state_dir=root / "prompting" / "c") as session:
        session.add_box(0, 7, square_box(0), points=[disc_center(0)], labels=[0])
        save_sidecar(session_to_sidecar(session, model=str(MICRO_CHECKPOINT), name="shot_c"), jobs / "c.json")
    return jobs


# expected outputs: shot folder -> (file prefix per object, frame range)
EXPECTED = {
    "shot_a": (["shot_a_disc_matte", "shot_a_square_matte"], range(1001, 1011)),
    "b": (["b_obj1_matte"], range(2002, 2010)),
    "shot_c": (["shot_c_obj7_matte"], range(0, 9)),
}
TOTAL_FRAMES = sum(len(frames) for _, frames in EXPECTED.values())


def expected_files(out: Path) -> list[Path]:
    return sorted(out / shot / f"{prefix}.{frame:04d}.exr"
                  for shot, (prefixes, frames) in EXPECTED.items() for prefix in prefixes for frame in frames)


def matte_files(out: Path) -> list[Path]:
    """Every matte under `out`, state folder left out."""
    return sorted(p for p in out.rglob("*.exr") if ".samroto" not in p.parts)


def read_all(out: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(out)): read_matte(p) for p in matte_files(out)}


def stats(files: list[Path]) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files}


def rewrite_json(path: Path, edit) -> None:  # noqa: ANN001 - a callable editing the dict in place
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
