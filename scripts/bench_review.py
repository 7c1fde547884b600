"""`samroto bench review`: how long the review page takes to make and open for many shots.

Writes N made-up shots (confidence records with a few flagged frames, two objects each) on a real
clip into a temporary folder, times `write_review`, and prints the page's size; with a Chromium
on PATH (or `--browser`), also how long a headless Chromium takes to load it (`--dump-dom`).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared" / "media" / "bedroom.mp4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--shots", type=int, default=300, help="number of shots (default 300)")
    parser.add_argument("--frames", type=int, default=200, help="frames per shot (default 200)")
    parser.add_argument("--flagged", type=float, default=0.03, help="fraction of frames flagged (default 0.03)")
    parser.add_argument("--plate", type=Path, default=DEFAULT_CLIP, help="the clip every shot shows")
    parser.add_argument("--browser", default=None, help="Chromium to time the page's load with (default: on PATH)")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from samroto.core.frames import open_frames
    from samroto.core.outputs.confidence import ConfidenceTracker, FrameConfidence
    from samroto.core.outputs.review import load_shot, write_review

    if args.shots < 1 or args.frames < 2 or not 0 <= args.flagged <= 1:
        raise SystemExit("--shots >= 1, --frames >= 2, --flagged in [0, 1]")
    with open_frames(args.plate) as plate:
        frames = min(args.frames, len(plate))
        spec = plate.describe()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="samroto-bench-review-") as folder:
        root = Path(folder)
        shots = []
        for i in range(args.shots):
            tracker = ConfidenceTracker()
            for obj_id in (1, 2):
                for frame in range(spec.get("first", 0), spec.get("first", 0) + frames):
                    bad = rng.random() < args.flagged
                    tracker.add(FrameConfidence(frame, obj_id, float(rng.normal(6, 1)),
                                                0.3 if bad else float(rng.uniform(0.8, 1)),
                                                float(rng.uniform(0.85, 1)), 50_000, 0.1))
            (root / f"sh{i:03d}").mkdir()
            path = tracker.write_sidecar(root / f"sh{i:03d}", f"sh{i:03d}", plate=spec)
            shots.append(load_shot(path))
        started = time.perf_counter()
        page = write_review(shots, root / "review.html")
        seconds = time.perf_counter() - started
        text = page.read_text(encoding="utf-8")
        thumbnails = len(re.findall(r'src="data:image/jpeg', text))
        plots = len(re.findall(r'src="data:image/svg', text))
        flagged = sum(len(shot.tracker.review_frames()) for shot in shots)
        print(f"review page: {args.shots} shots x {frames} frames, {flagged} flagged frames: "
              f"{seconds:.1f} s ({seconds / args.shots:.2f} s/shot), {page.stat().st_size / 1e6:.1f} MB, "
              f"{thumbnails} thumbnails, {plots} plots")
        browser = args.browser or shutil.which("chromium") or shutil.which("chromium-browser")
        if browser:
            started = time.perf_counter()
            subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600, check=False)
            print(f"headless Chromium: loaded in {time.perf_counter() - started:.1f} s (start-up included)")
        else:
            print("no Chromium on PATH: load time not measured")
    return 0
