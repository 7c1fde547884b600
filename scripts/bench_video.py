"""`samroto bench video`: interactive latency, propagation speed and memory on a real clip.

Prints, for the tiny configuration at 1024 with random weights by default:
- click latency: a click on a frame whose image features are already computed (median of repeats);
- first-mask latency: opening a session on a long plate (1000 frames made from the clip) and getting the
  first mask;
- propagation time per frame for 1 and 3 objects, and peak RSS after 50 frames and at the end;
- the preview speed-up (tracking at 512 instead of 1024);
- with `--memory MODE`: propagation per frame in that memory mode beside exact SAM 2, for each object count.
Each measurement that reports memory runs in its own process, so peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared" / "media" / "02_cups.mp4"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="a real clip (default ../shared/media/02_cups.mp4)")
    parser.add_argument("--config", default="sam2.1_hiera_tiny", help="preset (random weights)")
    parser.add_argument("--model", help="checkpoint instead of random weights")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="auto: the device's (bf16 with TF32 on Ampere and later GPUs, float32 on the CPU)")
    parser.add_argument("--frames", type=int, default=50, help="frames to propagate")
    parser.add_argument("--objects", default="1,3", help="object counts to measure, comma-separated")
    parser.add_argument("--preview-size", type=int, default=512, help="internal size of the preview mode")
    parser.add_argument("--long-plate", type=int, default=1000, help="length of the plate for first-mask latency")
    parser.add_argument("--compile", action="store_true", help="torch.compile image encoder and memory attention")
    parser.add_argument("--memory", default="sam2", metavar="MODE",
                        help="also measure propagation in this memory mode, beside exact SAM 2 (sam2, presence, ...)")
    parser.add_argument(
        "--only",
        choices=["latency", "propagate", "preview"],
        help="run one measurement in this process (used internally; prints one JSON line)",
    )
    parser.add_argument("--image-size", type=int, default=None, help=argparse.SUPPRESS)


def _peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM on Linux (ru_maxrss survives exec there, so a child would
    report its parent's peak), ru_maxrss elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def _load(args: argparse.Namespace):  # noqa: ANN202
    from samroto.scripts.common import bench_model

    return bench_model(args, memory_attention=True)


def _prompts(width: int, height: int, count: int) -> list[tuple[float, float]]:
    spots = [(0.5, 0.5), (0.25, 0.4), (0.75, 0.6), (0.4, 0.75), (0.6, 0.25)]
    return [(width * x, height * y) for x, y in spots[:count]]


def _measure_latency(args: argparse.Namespace) -> dict:
    from samroto.core.frames import open_frames
    from samroto.core.video_session import VideoSession

    model = _load(args)
    with tempfile.TemporaryDirectory() as tmp:
        plate = _long_plate(args.clip, Path(tmp), args.long_plate)
        t0 = time.perf_counter()
        source = open_frames(plate)
        middle = source.frame_numbers[len(source) // 2]
        session = VideoSession(model, source, precision=args.precision)
        x, y = _prompts(source.width, source.height, 1)[0]
        session.add_points(middle, 1, [[x, y]], [1])
        first_mask = time.perf_counter() - t0
        clicks = []
        for i in range(10):
            t0 = time.perf_counter()
            session.add_points(middle, 1, [[x + 3 * i, y]], [1], clear=True)
            clicks.append(time.perf_counter() - t0)
        # a correction click on a tracked frame: memory attention once, then decoder only
        list(session.propagate(middle, max_frames=2))
        correction = []
        for i in range(6):
            t0 = time.perf_counter()
            session.add_points(middle + 2, 1, [[x, y + 2 * i]], [1])
            correction.append(time.perf_counter() - t0)
        session.close()
    return {
        "plate_frames": len(source),
        "first_mask_s": first_mask,
        "click_median_s": statistics.median(clicks),
        "click_max_s": max(clicks),
        "correction_first_s": correction[0],
        "correction_repeat_median_s": statistics.median(correction[1:]),
    }


def _long_plate(clip: Path, folder: Path, length: int) -> str:
    """An image sequence of `length` frames cycling through the clip's frames (JPEG, as the reference reads)."""
    import av
    import cv2

    frames = []
    with av.open(str(clip)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="bgr24"))
            if len(frames) >= 24:
                break
    for i in range(length):
        cv2.imwrite(str(folder / f"long.{i:04d}.jpg"), frames[i % len(frames)], [cv2.IMWRITE_JPEG_QUALITY, 90])
    return str(folder / "long.####.jpg")


def _measure_propagation(args: argparse.Namespace, objects: int) -> dict:
    from samroto.core.frames import open_frames
    from samroto.core.video_session import VideoSession

    model = _load(args)
    source = open_frames(str(args.clip), first=0, last=min(args.frames, 10**9) - 1)
    with tempfile.TemporaryDirectory() as tmp, VideoSession(
        model, source, precision=args.precision, state_dir=Path(tmp) / "state", memory_mode=args.memory
    ) as session:
        for obj_id, (x, y) in enumerate(_prompts(source.width, source.height, objects), start=1):
            session.add_points(source.frame_numbers[0], obj_id, [[x, y]], [1])
        times, rss_at_50 = [], None
        t_prev = time.perf_counter()
        for n, _ in enumerate(session.propagate(), start=1):
            now = time.perf_counter()
            times.append(now - t_prev)
            t_prev = now
            if n == 50:
                rss_at_50 = _peak_rss_mb()
    steady = times[1:] if len(times) > 1 else times  # the first frame is the prompted keyframe
    return {
        "objects": objects,
        "memory_mode": args.memory,
        "frames": len(times),
        "image_size": model.image_size,
        "s_per_frame": statistics.mean(steady),
        "s_per_frame_median": statistics.median(steady),
        "peak_rss_mb_after_50": rss_at_50,
        "peak_rss_mb_end": _peak_rss_mb(),
    }


def _child(args: argparse.Namespace, only: str, extra: list[str]) -> dict:
    cmd = [sys.executable, "-m", "samroto.scripts.cli", "bench", "video", "--only", only,
           "--clip", str(args.clip), "--config", args.config, "--device", args.device,
           "--precision", args.precision, "--frames", str(args.frames),
           "--long-plate", str(args.long_plate), *extra]
    if args.model:
        cmd += ["--model", args.model]
    if args.compile:
        cmd.append("--compile")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"benchmark step {only} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    import torch

    if args.only == "latency":
        print(json.dumps(_measure_latency(args)))
        return 0
    if args.only in ("propagate", "preview"):
        print(json.dumps(_measure_propagation(args, int(args.objects))))
        return 0
    if not args.clip.is_file():
        raise SystemExit(f"no clip at {args.clip}: pass --clip")
    from samroto.core.memory_modes import UnknownMemoryMode, check_mode

    try:
        check_mode(args.memory)
    except UnknownMemoryMode as exc:
        raise SystemExit(f"--memory: {exc}") from None

    print(f"# samroto bench video: {args.model or args.config + ' (random weights)'}, device {args.device}, "
          f"precision {args.precision}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"clip {args.clip.name}, compile {args.compile}")
    lat = _child(args, "latency", [])
    print(f"first mask on a {lat['plate_frames']}-frame plate (open + decode + encode + decode mask): "
          f"{lat['first_mask_s']:.2f} s")
    print(f"click on a frame with cached features: median {lat['click_median_s'] * 1000:.0f} ms "
          f"(max {lat['click_max_s'] * 1000:.0f} ms)")
    print(f"correction click on a tracked frame: first {lat['correction_first_s'] * 1000:.0f} ms, "
          f"then median {lat['correction_repeat_median_s'] * 1000:.0f} ms")
    full: dict[int, dict] = {}
    modes = ["sam2"] if args.memory == "sam2" else ["sam2", args.memory]
    for count in [int(c) for c in args.objects.split(",")]:
        for mode in modes:
            r = _child(args, "propagate", ["--objects", str(count), "--memory", mode])
            rss50 = f"{r['peak_rss_mb_after_50']:.0f} MB" if r["peak_rss_mb_after_50"] else "n/a"
            if mode == "sam2":
                full[count] = r
                beside = ""
            else:
                beside = f" ({r['s_per_frame'] / full[count]['s_per_frame']:.2f}x exact SAM 2)"
            print(f"propagation, memory {mode}, {count} object(s), {r['frames']} frames at {r['image_size']}: "
                  f"{r['s_per_frame']:.3f} s/frame (median {r['s_per_frame_median']:.3f}){beside}; "
                  f"peak RSS after 50 frames {rss50}, at the end {r['peak_rss_mb_end']:.0f} MB")
    first = min(full)
    preview = _child(args, "preview", ["--objects", str(first), "--image-size", str(args.preview_size)])
    print(f"PREVIEW at {preview['image_size']}, {first} object(s): {preview['s_per_frame']:.2f} s/frame, "
          f"{full[first]['s_per_frame'] / preview['s_per_frame']:.1f}x faster than full resolution")
    return 0
