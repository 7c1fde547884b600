"""`samroto bench matting`: the learned matting pass's time per frame and memory, on CPU by default.

For each model (vitmatte-small, vitmatte-base; random weights unless `--cached`, the speed is the
same) and plate size (1080p, 4K), a child process runs the whole pass (trimap, crop, tiles, model,
deflicker, temporal smoother) on the synthetic scene of `bench edges` (a soft shape with strands
over a textured background, SAM 2-like logits) and prints ms per frame, tiles per frame and its
peak RSS. A long-shot run then feeds `--long` frames (the object moving) and prints RSS after the
first frames and at the end: the pass keeps no per-frame history, so it should stay flat.
Each measurement runs in its own process, so each peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

SIZES = {"1080p": (1920, 1080), "4k": (3840, 2160), "8k": (7680, 4320)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", default="vitmatte-small,vitmatte-base", help="comma-separated presets")
    parser.add_argument("--sizes", default="1080p,4k", help=f"comma-separated plate sizes ({', '.join(SIZES)})")
    parser.add_argument("--frames", type=int, default=2, help="timed frames per model and size")
    parser.add_argument("--warmup", type=int, default=1, help="untimed frames first (default 1)")
    parser.add_argument("--long", type=int, default=12, help="frames of the long-shot memory run (0: skip)")
    parser.add_argument("--long-model", default="vitmatte-small")
    parser.add_argument("--long-size", default="1080p")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--cached", action="store_true", help="load the cached checkpoints instead of random weights")
    parser.add_argument("--only", choices=["speed", "long"], help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)


def _rss_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _pass(args: argparse.Namespace):  # noqa: ANN202 - MattingPass
    import torch

    from samroto.core.matting import MattingModel, matting_preset
    from samroto.core.matting_pass import MattingPass, load_matting_pass

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cached:
        return load_matting_pass(args.model, device=args.device)
    torch.manual_seed(0)
    with torch.device(args.device):
        model = MattingModel(matting_preset(args.model))
    return MattingPass(model.eval())


def _scene(size: str, seed: int = 0):  # noqa: ANN202
    from samroto.scripts.bench_edges import degrade_to_logits, make_scene

    width, height = SIZES[size]
    scene = make_scene(width, height, seed=seed, supersample=1)
    return scene.plate, degrade_to_logits(scene.alpha)


def _measure_speed(args: argparse.Namespace) -> dict:
    matting = _pass(args)
    plate, logits = _scene(args.size)
    times, cpu_times = [], []
    for frame in range(args.warmup + args.frames):
        tiles = matting.tiles_run
        started, cpu_started = time.perf_counter(), time.process_time()
        matting.run(1001 + frame, plate, [1], logits[None])
        if frame >= args.warmup:
            times.append(time.perf_counter() - started)
            cpu_times.append(time.process_time() - cpu_started)
        tiles = matting.tiles_run - tiles
    return {"ms_per_frame": 1000 * statistics.median(times), "cpu_ms_per_frame": 1000 * statistics.median(cpu_times),
            "tiles_per_frame": tiles, "peak_rss_mb": _rss_mb("VmHWM")}


def _measure_long(args: argparse.Namespace) -> dict:
    matting = _pass(args)
    base_plate, base_logits = _scene(args.size)
    import numpy as np

    rss = []
    for frame in range(args.long):
        # the object drifts a pixel a frame (rolled plate and logits: cheap, and every frame differs)
        plate, logits = np.roll(base_plate, frame, axis=1), np.roll(base_logits, frame, axis=1)
        matting.run(1001 + frame, plate, [1], logits[None])
        rss.append(_rss_mb("VmRSS"))
    return {"frames": args.long, "rss_after_3_mb": rss[min(2, len(rss) - 1)], "rss_end_mb": rss[-1],
            "peak_rss_mb": _rss_mb("VmHWM")}


def _child(args: argparse.Namespace, only: str, model: str, size: str) -> dict:
    cmd = [sys.executable, "-m", "samroto.scripts.cli", "bench", "matting", "--only", only, "--model", model,
           "--size", size, "--frames", str(args.frames), "--warmup", str(args.warmup), "--long", str(args.long),
           "--device", args.device]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.cached:
        cmd.append("--cached")
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"benchmark step {only} {model} {size} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(args: argparse.Namespace) -> int:
    if args.only == "speed":
        print(json.dumps(_measure_speed(args)))
        return 0
    if args.only == "long":
        print(json.dumps(_measure_long(args)))
        return 0
    import torch

    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        raise SystemExit(f"unknown --sizes {unknown}; known: {', '.join(SIZES)}")
    print(f"# samroto bench matting: {'cached checkpoints' if args.cached else 'random weights'}, device "
          f"{args.device}, torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads; "
          "one object, the whole pass (trimap, crop, tiles, model, deflicker, smoother)")
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        for size in sizes:
            r = _child(args, "speed", model, size)
            print(f"{model} {size}: {r['ms_per_frame']:.0f} ms/frame wall, {r['cpu_ms_per_frame']:.0f} ms CPU "
                  f"(all threads; {r['tiles_per_frame']} tiles), "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    if args.long:
        r = _child(args, "long", args.long_model, args.long_size)
        print(f"long shot, {args.long_model} {args.long_size}, {r['frames']} frames: RSS after 3 frames "
              f"{r['rss_after_3_mb']:.0f} MB, at the end {r['rss_end_mb']:.0f} MB (peak {r['peak_rss_mb']:.0f} MB)")
    return 0
