"""`samroto bench gpu`: one command that proves and measures the GPU path, writing a JSON report.

Steps (each guarded: a failure is recorded and the next step runs, so there is always a report):

- `environment`: torch, CUDA, the GPU, its compute capability and memory;
- `parity`: the reference scenarios (tests/fixtures/sam2_reference) replayed on the device in
  float32 with TF32 off: max abs difference against the official outputs (limit 1e-3);
- `bf16`: the same scenarios in bfloat16 (float16 before Ampere): finite, and on which share of
  pixels the mask agrees with float32 (limit 95%);
- `speed`: each model (`--configs`, random weights, at `--image-size`) on a `--frames` synthetic plate
  at `--plate`: seconds a frame, model-only ms, CPU ms a frame, peak VRAM, with 1 and 3 objects;
- `long`: `--long-frames` frames of tiny, VRAM allocated at frame 50 and at the end (flat or not);
- `plates`: 4K and 8K plates resized to the model input on the device, against the CPU result;
- `official`: the official `SAM2VideoPredictor` FPS on the same plate (`--official-src PATH` to a
  checkout of facebookresearch/sam2, with hydra-core, omegaconf and iopath installed);
- `compile`: compile time, steady FPS and the number of graphs compiled (recompiles);
- `cache`: click A, click B, click A, two corrections on one frame, eager and compiled: latency and
  the largest difference between the two (after `compile`, whose kernels it reuses).

Steps run in this order, cheapest and most telling first.

Runs offline. On a machine without the full install, run it as `python scripts/bench_gpu.py ...`
from the repository root: it finds the packages itself (only torch, numpy and OpenCV are needed).
The CPU dry run (`--device cpu --small`) is part of the test suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

REPO = Path(__file__).resolve().parents[1]
DEFAULT_FIXTURES = REPO / "tests" / "fixtures" / "sam2_reference"
# cheapest and most telling first: compiling (ours, then the official's) can take minutes each
STEPS = ("environment", "parity", "bf16", "speed", "long", "plates", "official", "compile", "cache")
PARITY_LIMIT = 1e-3
AGREEMENT_LIMIT = 0.95


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto, cuda, cuda:N, mps or cpu (default auto)")
    parser.add_argument("--out", type=Path, default=Path("bench_gpu.json"), help="JSON report (default %(default)s)")
    parser.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES, help="reference fixtures folder")
    parser.add_argument("--steps", default=",".join(STEPS), help="steps to run, comma-separated (default: all)")
    parser.add_argument("--configs", default="sam2.1_hiera_tiny,sam2.1_hiera_large",
                        help="presets measured by `speed` (random weights)")
    parser.add_argument("--image-size", type=int, default=1024, help="model input size for speed steps")
    parser.add_argument("--plate", default="1920x1080", help="synthetic plate size WxH (default %(default)s)")
    parser.add_argument("--frames", type=int, default=30, help="frames propagated by `speed` and `official`")
    parser.add_argument("--long-frames", type=int, default=300, help="frames of the `long` step")
    parser.add_argument("--objects", default="1,3", help="object counts for `speed`")
    parser.add_argument("--precision", default=None, choices=["float32", "bfloat16", "float16"],
                        help="speed steps' precision (default: by compute capability)")
    parser.add_argument("--official-src", type=Path, default=None,
                        help="checkout of facebookresearch/sam2 to measure the official predictor beside ours")
    parser.add_argument("--scenarios", type=int, default=0, help="reference scenarios replayed (default 0: all 4)")
    parser.add_argument("--scenario-steps", type=int, default=0,
                        help="replay only the first N steps of each scenario (default 0: all)")
    parser.add_argument("--budget-s", type=float, default=510.0,
                        help="stop starting steps after this many seconds (default %(default)s: under 9 minutes)")
    parser.add_argument("--small", action="store_true",
                        help="dry-run sizes: the reduced reference model at 256, 160x120 plate, 3 frames, "
                        "one scenario (CPU tests)")


@dataclass
class StepResult:
    name: str
    status: str = "skipped"  # ok, failed, skipped
    seconds: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class Bench:
    args: argparse.Namespace
    device: Any = None  # torch.device
    precision: str = "float32"
    steps: list[StepResult] = field(default_factory=list)
    selected: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def remaining(self) -> float:
        return self.args.budget_s - (time.perf_counter() - self.started)

    def run_step(self, name: str, body: Callable[["Bench"], dict[str, Any]]) -> StepResult:
        step = StepResult(name)
        self.steps.append(step)
        if self.remaining() <= 0:
            step.error = "time budget spent"
            return step
        t0 = time.perf_counter()
        print(f"[bench gpu] {name} ...", file=sys.stderr, flush=True)
        try:
            step.result = body(self)
            step.status = "ok"
        except BaseException as exc:  # noqa: BLE001 - every failure is recorded; Ctrl-C still stops
            if isinstance(exc, KeyboardInterrupt):
                raise
            step.status = "failed"
            step.error = f"{type(exc).__name__}: {exc}"
            step.result["traceback"] = traceback.format_exc(limit=8)
        finally:
            step.seconds = round(time.perf_counter() - t0, 2)
            _release(self.device)
        return step

    def report(self) -> dict[str, Any]:
        return {
            "device": str(self.device),
            "precision": self.precision,
            "arguments": {k: str(v) for k, v in vars(self.args).items() if k not in ("func",)},
            "steps": {s.name: {"status": s.status, "seconds": s.seconds, "error": s.error, **s.result}
                      for s in self.steps},
        }


def _release(device: Any) -> None:
    with contextlib.suppress(Exception):
        from samroto.core.model.device import release_device_memory

        if device is not None:
            release_device_memory(device)


def _sync(device: Any) -> None:
    import torch

    if device is not None and device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mb(device: Any) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def _allocated_mb(device: Any) -> float | None:
    import torch

    if device.type != "cuda":
        return None
    return round(torch.cuda.memory_allocated(device) / 2**20, 1)


def _plate_size(text: str) -> tuple[int, int]:
    width, height = (int(v) for v in text.lower().split("x"))
    return height, width


# --- synthetic plates ----------------------------------------------------------------------------


def synthetic_plate(frames: int, height: int, width: int, *, seed: int = 0) -> Any:
    """N*H*W*3 uint8: textured background and three discs moving across it (something to track)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, size=(max(height // 8, 2), max(width // 8, 2), 3), dtype=np.uint8)
    import cv2

    background = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    yy, xx = np.mgrid[0:height, 0:width]
    out = np.empty((frames, height, width, 3), np.uint8)
    colours = [(250, 40, 40), (40, 250, 40), (40, 40, 250)]
    for t in range(frames):
        frame = background.copy()
        for k, (cx, cy) in enumerate(_disc_centres(t, height, width)):
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= (min(height, width) * 0.12) ** 2
            frame[disc] = colours[k]
        out[t] = frame
    return out


def _disc_centres(t: int, height: int, width: int) -> list[tuple[float, float]]:
    return [
        (width * (0.25 + 0.004 * t), height * 0.5),
        (width * 0.5, height * (0.3 + 0.003 * t)),
        (width * (0.75 - 0.003 * t), height * 0.7),
    ]


# --- steps ---------------------------------------------------------------------------------------


def step_environment(bench: Bench) -> dict[str, Any]:
    import numpy as np
    import torch

    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "cuda_build": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(bench.device),
        "precision": bench.precision,
    }
    for name in ("cv2", "av", "zmq", "OpenEXR", "PIL", "hydra", "omegaconf", "iopath"):
        try:
            module = __import__(name)
            info[f"has_{name}"] = getattr(module, "__version__", True)
        except ImportError:
            info[f"has_{name}"] = False
    if bench.device.type == "cuda":
        props = torch.cuda.get_device_properties(bench.device)
        info.update(
            gpu=props.name,
            capability=f"{props.major}.{props.minor}",
            vram_gb=round(props.total_memory / 2**30, 1),
            multiprocessors=props.multi_processor_count,
        )
    return info


def _scenarios(fixtures: Path, limit: int = 0) -> list[tuple[str, bool]]:
    found = []
    for variant in ("sam2.1", "sam2"):
        for occluded in (False, True):
            name = f"scenario_{variant}{'_occluded' if occluded else ''}"
            if (fixtures / f"{name}.json").is_file() and (fixtures / f"{name}.npz").is_file():
                found.append((variant, occluded))
    if not found:
        raise FileNotFoundError(f"no reference scenarios in {fixtures} (give --fixtures)")
    return found[:limit] if limit else found


def _scenario_model(fixtures: Path, variant: str, spec: dict, device: Any) -> Any:
    import torch

    from samroto.core.model.checkpoint import load_model
    from samroto.core.model.config import load_config_file

    model = load_model(
        fixtures / f"micro_{variant}.pt",
        config=load_config_file(str(fixtures / "micro_config.json"), variant=variant),
    )
    for key, edit in spec.get("checkpoint_edit", {}).items():
        op, value = edit.split()
        if op != "add":
            raise ValueError(f"unknown checkpoint edit {edit!r}")
        with torch.no_grad():
            model.state_dict()[key].add_(float(value))
    return model.to(device)


def replay_scenario(fixtures: Path, variant: str, occluded: bool, device: Any, precision: str,
                    max_steps: int = 0) -> dict[str, Any]:
    """Replay one scripted reference session; every video-resolution output by step and frame."""
    import numpy as np

    from samroto.core.video_session import VideoSession

    name = f"scenario_{variant}{'_occluded' if occluded else ''}"
    spec = json.loads((fixtures / f"{name}.json").read_text())
    frames = np.load(fixtures / "video_frames.npy")[: spec["num_frames"]]
    height, width = spec["video_size_hw"]
    model = _scenario_model(fixtures, variant, spec, device)
    outputs: dict[str, Any] = {}
    with VideoSession(model, frames, video_size=(height, width), fill_hole_area=0, keep_in_memory=True,
                      precision=precision) as session:
        for i, step in enumerate(spec["steps"][: max_steps or None]):
            op = step["op"]
            if op == "add_points":
                result = session.add_points(step["frame"], step["obj_id"], step["points"], step["labels"],
                                            clear=step["clear_old_points"])
                outputs[f"s{i}_video_res"] = result.logits
            elif op == "add_box":
                outputs[f"s{i}_video_res"] = session.add_box(step["frame"], step["obj_id"], step["box"]).logits
            elif op == "add_mask":
                e = step["ellipse"]
                yy, xx = np.mgrid[0:height, 0:width]
                mask = ((yy - e["cy"]) / e["ry"]) ** 2 + ((xx - e["cx"]) / e["rx"]) ** 2 <= 1
                outputs[f"s{i}_video_res"] = session.add_mask(step["frame"], step["obj_id"], mask).logits
            elif op == "propagate":
                for result in session.propagate(step["start_frame"], step["max_frames"], step["reverse"]):
                    outputs[f"s{i}_video_res_f{result.frame}"] = result.logits
                for obj_id in session.obj_ids:  # the stored state of every tracked frame
                    for frame in session.frame_numbers:
                        stored = session.frame_output(obj_id, frame)
                        if stored is not None:
                            outputs[f"s{i}_obj{obj_id}_f{frame}_lowres"] = stored.lowres_logits
            elif op == "remove_object":
                session.remove_object(step["obj_id"])
    return outputs


def step_parity(bench: Bench) -> dict[str, Any]:
    import numpy as np

    from samroto.core.model.device import set_tf32

    set_tf32(False)
    out: dict[str, Any] = {}
    worst = 0.0
    for variant, occluded in _scenarios(bench.args.fixtures, bench.args.scenarios):
        name = f"scenario_{variant}{'_occluded' if occluded else ''}"
        ref = np.load(bench.args.fixtures / f"{name}.npz")
        ours = replay_scenario(bench.args.fixtures, variant, occluded, bench.device, "float32",
                               bench.args.scenario_steps)
        compared = [k for k in ours if k in ref.files]
        if not compared:
            raise RuntimeError(f"{name}: no output to compare with the reference")
        diff = max(float(np.abs(ours[k].reshape(ref[k].shape) - ref[k]).max()) for k in compared)
        out[name] = {"max_abs_diff": diff, "outputs": len(compared)}
        worst = max(worst, diff)
    out["max_abs_diff"] = worst
    out["pass"] = worst <= PARITY_LIMIT
    if not out["pass"]:
        raise AssertionError(f"largest difference {worst:.3g} > {PARITY_LIMIT} (details in the report)")
    return out


def step_bf16(bench: Bench) -> dict[str, Any]:
    import numpy as np

    from samroto.core.model.device import default_precision

    precision = "bfloat16" if bench.device.type in ("cpu", "cuda") else "float16"
    if bench.device.type == "cuda":
        precision = default_precision(bench.device, _capability(bench.device))
        precision = "bfloat16" if precision == "float32" else precision
    out: dict[str, Any] = {"precision": precision}
    worst = 1.0
    for variant, occluded in _scenarios(bench.args.fixtures, bench.args.scenarios):
        name = f"scenario_{variant}{'_occluded' if occluded else ''}"
        steps = bench.args.scenario_steps
        full = replay_scenario(bench.args.fixtures, variant, occluded, bench.device, "float32", steps)
        half = replay_scenario(bench.args.fixtures, variant, occluded, bench.device, precision, steps)
        finite = all(bool(np.isfinite(v).all()) for v in half.values())
        agree = [float(((half[k] > 0) == (full[k] > 0)).mean()) for k in full]
        share = min(agree) if agree else 1.0
        out[name] = {"finite": finite, "min_agreement": round(share, 4)}
        worst = min(worst, share if finite else 0.0)
    out["min_agreement"] = round(worst, 4)
    out["pass"] = worst > AGREEMENT_LIMIT
    if not out["pass"]:
        raise AssertionError(f"{precision} agrees with float32 on only {worst:.1%} of pixels (or is not finite)")
    return out


def _capability(device: Any) -> tuple[int, int] | None:
    import torch

    return torch.cuda.get_device_capability(device) if device.type == "cuda" else None


def _bench_model(bench: Bench, config: str, *, compile_model: bool = False) -> Any:
    from samroto.core.model.checkpoint import build_model
    from samroto.core.model.config import load_config_file
    from samroto.core.model.runtime import compile_model as compile_for_device

    if config == "micro":  # the reduced reference model (256 input), for dry runs
        micro = load_config_file(str(bench.args.fixtures / "micro_config.json"), variant="sam2.1")
        model = build_model(micro, device=bench.device)
    else:
        model = build_model(config, device=bench.device)
    if bench.args.image_size != model.image_size:
        model = model.at_image_size(bench.args.image_size)
    if compile_model:
        compile_for_device(model)
    return model


def _clicks(height: int, width: int, t: int, count: int) -> list[tuple[float, float]]:
    return _disc_centres(t, height, width)[:count]


def step_cache(bench: Bench) -> dict[str, Any]:
    """Click A, click B, click A, then two corrections on the same frame: eager and compiled."""
    import numpy as np

    height, width = _plate_size(bench.args.plate)
    plate = synthetic_plate(2, height, width)
    config = bench.args.configs.split(",")[0]
    runs: dict[str, Any] = {}
    outputs: dict[str, list[Any]] = {}
    modes = ["eager"] + (["compiled"] if "compile" in bench.selected else [])
    for mode in modes:
        model = _bench_model(bench, config, compile_model=mode == "compiled")
        latencies, logits = [], []
        from samroto.core.video_session import VideoSession

        with VideoSession(model, plate, precision=bench.precision, keep_in_memory=True) as session:
            (ax, ay), (bx, by), _ = _disc_centres(0, height, width)
            sequence = [(1, [[ax, ay]], [1]), (2, [[bx, by]], [1]), (1, [[ax, ay]], [1]),
                        (1, [[ax + 5, ay + 5], [bx, by]], [1, 0]), (1, [[ax - 5, ay], [bx, by + 5]], [1, 0])]
            for obj_id, points, labels in sequence:
                t0 = time.perf_counter()
                result = session.add_points(0, obj_id, points, labels)
                latencies.append(round((time.perf_counter() - t0) * 1000, 1))
                logits.append(result.logits)
        runs[mode] = {"click_ms": latencies}
        outputs[mode] = logits
    if "compiled" in outputs:
        runs["max_abs_diff_compiled_vs_eager"] = max(
            float(np.abs(a - b).max()) for a, b in zip(outputs["eager"], outputs["compiled"])
        )
    return runs


def _propagate_timed(bench: Bench, model: Any, plate: Any, objects: int) -> dict[str, Any]:
    import torch

    from samroto.core.video_session import VideoSession

    _, height, width, _ = plate.shape
    device = bench.device
    _reset_peak(device)
    with tempfile.TemporaryDirectory() as tmp, VideoSession(model, plate, precision=bench.precision,
                                                            state_dir=Path(tmp) / "state") as session:
        for obj_id, (x, y) in enumerate(_clicks(height, width, 0, objects), start=1):
            session.add_points(0, obj_id, [[x, y]], [1])
        walls, cpus = [], []
        t_wall, t_cpu = time.perf_counter(), time.thread_time()
        for _ in session.propagate(0):
            now_wall, now_cpu = time.perf_counter(), time.thread_time()
            walls.append(now_wall - t_wall)
            cpus.append(now_cpu - t_cpu)
            t_wall, t_cpu = now_wall, now_cpu
    steady = walls[2:] or walls
    return {
        "s_per_frame": round(statistics.median(steady), 4),
        "fps": round(1.0 / max(statistics.median(steady), 1e-9), 2),
        "cpu_ms_per_frame": round(statistics.median(cpus[2:] or cpus) * 1000, 1),
        "first_frame_s": round(walls[0], 3) if walls else None,
        "peak_vram_mb": _peak_mb(device),
        "frames": len(walls),
        "threads": torch.get_num_threads(),
    }


def _model_only_ms(bench: Bench, model: Any, objects: int, repeats: int = 5) -> float:
    """The per-frame arithmetic without the session: image encoder, memory attention over a full
    bank (7 memories, 16 pointers), heads and memory encoder, for `objects` objects."""
    import torch

    from samroto.core.model.device import check_precision
    from samroto.core.model.runtime import autocast_context

    size = model.image_size
    device = bench.device
    check_precision(device, bench.precision)
    image = torch.randn(1, 3, size, size, device=device)
    c = model.config
    s = c.feature_size if hasattr(c, "feature_size") else size // 16
    with torch.inference_mode(), autocast_context(device, bench.precision):
        features = model.encode_image(image).expand(objects)
        memory = torch.randn(objects, c.mem_dim, s, s, device=device, dtype=torch.bfloat16)
        spatial = [(memory, t) for t in range(c.num_maskmem)]
        pointers = [(t, torch.randn(objects, c.hidden_dim, device=device)) for t in range(1, 16)]
        times = []
        for _ in range(repeats):
            _sync(device)
            t0 = time.perf_counter()
            features = model.encode_image(image).expand(objects)
            mem, pos, num_ptr = model.assemble_memory(spatial, pointers, 100)
            pix = model.condition_on_memory(features, mem, pos, num_ptr)
            heads = model.predict_masks(pix, features.high_res, points=None, multimask=True)
            model.encode_memory(features.vision, heads.highres, heads.object_score, binarize=False)
            _sync(device)
            times.append(time.perf_counter() - t0)
    return round(statistics.median(times[1:] or times) * 1000, 1)


def step_speed(bench: Bench) -> dict[str, Any]:
    height, width = _plate_size(bench.args.plate)
    plate = synthetic_plate(bench.args.frames, height, width)
    out: dict[str, Any] = {"plate": f"{width}x{height}", "frames": bench.args.frames,
                           "image_size": bench.args.image_size, "precision": bench.precision}
    for config in bench.args.configs.split(","):
        model = _bench_model(bench, config)
        for objects in (int(n) for n in bench.args.objects.split(",")):
            key = f"{config}/{objects}obj"
            try:
                figures = _propagate_timed(bench, model, plate, objects)
                figures["model_ms"] = _model_only_ms(bench, model, objects, repeats=1 if bench.args.small else 5)
                out[key] = figures
            except Exception as exc:  # one configuration failing (e.g. out of memory) leaves the others
                out[key] = {"error": f"{type(exc).__name__}: {exc}"}
            _release(bench.device)
        del model
    return out


def step_long(bench: Bench) -> dict[str, Any]:
    """VRAM over a long propagation: allocated at frame 50 (or a tenth in) and at the end."""
    from samroto.core.video_session import VideoSession

    height, width = _plate_size(bench.args.plate)
    frames = bench.args.long_frames
    plate = synthetic_plate(min(frames, 60), height, width)
    model = _bench_model(bench, bench.args.configs.split(",")[0])
    marks: dict[int, Any] = {}
    checkpoint = 50 if frames > 100 else max(1, frames // 3)
    from samroto.core.frames import FrameSource

    class Looped(FrameSource):
        """A long plate from the short synthetic one, played back and forth (no extra memory)."""

        def __init__(self) -> None:
            self.frame_numbers = range(frames)
            self.height, self.width = height, width

        def read(self, frame: int) -> Any:
            period = 2 * len(plate) - 2
            k = frame % period if period else 0
            return plate[k if k < len(plate) else period - k]

        def describe(self) -> dict[str, Any]:
            return {"kind": "synthetic", "frames": frames}

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, VideoSession(model, Looped(), precision=bench.precision,
                                                            state_dir=Path(tmp) / "state") as session:
        session.add_points(0, 1, [_clicks(height, width, 0, 1)[0]], [1])
        for count, _ in enumerate(session.propagate(0), start=1):
            if count in (checkpoint, frames):
                marks[count] = {"allocated_mb": _allocated_mb(bench.device), "rss_mb": _rss_mb()}
    first, last = marks.get(checkpoint, {}), marks.get(frames, {})
    growth = None
    if first.get("allocated_mb") is not None and last.get("allocated_mb") is not None:
        growth = round(last["allocated_mb"] - first["allocated_mb"], 1)
    return {"frames": frames, "at": marks, "vram_growth_mb": growth,
            "fps": round(frames / (time.perf_counter() - t0), 2)}


def _rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def step_compile(bench: Bench) -> dict[str, Any]:
    import torch

    from samroto.core.model.device import check_can_compile
    from samroto.core.video_session import VideoSession

    check_can_compile(bench.device)
    height, width = _plate_size(bench.args.plate)
    plate = synthetic_plate(bench.args.frames, height, width)
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    t0 = time.perf_counter()
    model = _bench_model(bench, bench.args.configs.split(",")[0], compile_model=True)
    from samroto.core.model.runtime import warm_up

    warm_up(model, precision=bench.precision)
    compile_s = time.perf_counter() - t0
    graphs_after_warm_up = int(counters["stats"]["unique_graphs"])
    with VideoSession(model, plate, precision=bench.precision, keep_in_memory=True) as session:
        session.add_points(0, 1, [_clicks(height, width, 0, 1)[0]], [1])
        walls = []
        t = time.perf_counter()
        for _ in session.propagate(0):
            now = time.perf_counter()
            walls.append(now - t)
            t = now
    steady = walls[3:] or walls
    return {
        "compile_s": round(compile_s, 1),
        "first_frame_s": round(walls[0], 3) if walls else None,
        "steady_fps": round(1.0 / max(statistics.median(steady), 1e-9), 2),
        "graphs_after_warm_up": graphs_after_warm_up,
        "graphs": int(counters["stats"]["unique_graphs"]),
        "recompiles": int(counters["stats"]["unique_graphs"]) - graphs_after_warm_up,
        "peak_vram_mb": _peak_mb(bench.device),
    }


def step_plates(bench: Bench) -> dict[str, Any]:
    import numpy as np

    from samroto.core.model.preprocess import to_model_input

    size = bench.args.image_size
    plates = {"4K": (2160, 3840), "8K": (4320, 7680)} if not bench.args.small else {"4K": (216, 384),
                                                                                     "8K": (432, 768)}
    out: dict[str, Any] = {}
    rng = np.random.default_rng(1)
    for name, (h, w) in plates.items():
        image = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        _sync(bench.device)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            x = to_model_input(image, size, device=bench.device)
            _sync(bench.device)
            times.append(time.perf_counter() - t0)
        on_host = to_model_input(image, size, device="cpu")
        out[name] = {
            "ms": round(min(times) * 1000, 1),
            "finite": bool(x.isfinite().all()),
            "max_abs_diff_vs_cpu": float((x.float().cpu() - on_host).abs().max()),
        }
    return out


def step_official(bench: Bench) -> dict[str, Any]:
    """The official predictor (vos_optimized, bf16, TF32 as its benchmark sets them) on the same plate."""
    source = bench.args.official_src
    if source is None:
        raise FileNotFoundError("no --official-src given: the official predictor was not measured")
    import cv2
    import torch

    source = Path(source).resolve()
    if not (source / "sam2" / "build_sam.py").is_file():
        raise FileNotFoundError(f"{source} is not a checkout of facebookresearch/sam2 (no sam2/build_sam.py)")
    sys.path.insert(0, str(source))
    from sam2.build_sam import build_sam2_video_predictor  # type: ignore[import-not-found]

    height, width = _plate_size(bench.args.plate)
    plate = synthetic_plate(bench.args.frames, height, width)
    configs = {"sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
               "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml"}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for t, frame in enumerate(plate):
            cv2.imwrite(str(Path(tmp) / f"{t:05d}.jpg"), frame[..., ::-1])
        for config in bench.args.configs.split(","):
            if config not in configs:
                continue
            # compiled (vos_optimized: minutes to compile) for the first configuration only
            first = config == bench.args.configs.split(",")[0]
            for compiled in (False, True) if bench.device.type == "cuda" and first else (False,):
                key = f"{config}/{'compiled' if compiled else 'eager'}"
                try:
                    predictor = build_sam2_video_predictor(configs[config], None, device=bench.device,
                                                           vos_optimized=compiled)
                    with torch.autocast(bench.device.type, dtype=torch.bfloat16,
                                        enabled=bench.device.type == "cuda"), torch.inference_mode():
                        state = predictor.init_state(video_path=tmp)
                        (x, y), = _clicks(height, width, 0, 1)
                        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1,
                                                        points=[[x, y]], labels=[1])
                        runs = []
                        for _ in range(3 if compiled else 2):  # the first run warms up (compiles)
                            _sync(bench.device)
                            t0 = time.perf_counter()
                            count = sum(1 for _ in predictor.propagate_in_video(state))
                            _sync(bench.device)
                            runs.append(count / (time.perf_counter() - t0))
                    out[key] = {"fps": round(max(runs[1:]), 2), "warm_up_fps": round(runs[0], 2)}
                    del predictor, state
                except Exception as exc:
                    out[key] = {"error": f"{type(exc).__name__}: {exc}"}
                _release(bench.device)
    return out


STEP_BODIES: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "environment": step_environment,
    "parity": step_parity,
    "bf16": step_bf16,
    "cache": step_cache,
    "speed": step_speed,
    "long": step_long,
    "compile": step_compile,
    "plates": step_plates,
    "official": step_official,
}


# --- the table -----------------------------------------------------------------------------------


def _flatten(prefix: str, value: Any) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "traceback":
                continue
            yield from _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
    else:
        yield prefix, value


def format_table(report: dict[str, Any]) -> str:
    lines = [f"samroto bench gpu on {report['device']} ({report['precision']})", ""]
    for name, step in report["steps"].items():
        status = step["status"].upper()
        lines.append(f"{name:<12} {status:<8} {step['seconds']:>7.1f} s" + (f"  {step['error']}" if step["error"]
                                                                            else ""))
        for key, value in _flatten("", {k: v for k, v in step.items() if k not in ("status", "seconds", "error")}):
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            lines.append(f"    {key:<44} {text}")
    return "\n".join(lines)


# --- entry ---------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    if args.small:
        args.image_size, args.plate, args.frames = 256, "160x120", 3
        args.long_frames, args.configs, args.objects = 4, "micro", "1,2"
        args.scenarios = args.scenarios or 1
        args.scenario_steps = args.scenario_steps or 5  # the prompts and the first propagation
    from samroto.core.model.device import DeviceError, choose_precision, enable_mps_fallback, resolve_device, set_tf32

    enable_mps_fallback()
    bench = Bench(args)
    try:
        bench.device = resolve_device(args.device)
        bench.precision = choose_precision(bench.device, args.precision)
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    selected = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = sorted(set(selected) - set(STEPS))
    if unknown:
        print(f"error: unknown steps {', '.join(unknown)}; steps are {', '.join(STEPS)}", file=sys.stderr)
        return 2
    bench.selected = selected
    for name in STEPS:
        if name not in selected:
            continue
        # parity runs with TF32 off; everything measured after it runs as users run (TF32 on Ampere+)
        set_tf32(name not in ("parity",) and bench.device.type == "cuda")
        bench.run_step(name, STEP_BODIES[name])
        _write(args.out, bench.report())
    report = bench.report()
    _write(args.out, report)
    print(format_table(report))
    print(f"\nreport: {args.out}")
    return 0


def _write(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp, path)


def _bootstrap_packages() -> None:
    """Run from a checkout without `pip install`: map samroto.core/bridge/scripts to the folders
    (as pyproject's package-dir does), so only torch, numpy and OpenCV are needed."""
    try:
        import samroto.core  # noqa: F401

        return
    except ImportError:
        pass
    import importlib.util
    import types

    root = types.ModuleType("samroto")
    root.__path__ = []  # type: ignore[attr-defined]
    sys.modules["samroto"] = root
    for name in ("core", "bridge", "scripts"):
        init = REPO / name / "__init__.py"
        spec = importlib.util.spec_from_file_location(f"samroto.{name}", init,
                                                      submodule_search_locations=[str(REPO / name)])
        if spec is None or spec.loader is None:
            continue
        module = importlib.util.module_from_spec(spec)
        sys.modules[f"samroto.{name}"] = module
        setattr(root, name, module)
        spec.loader.exec_module(module)


if __name__ == "__main__":
    os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")  # read when torch loads
    _bootstrap_packages()
    cli = argparse.ArgumentParser(prog="bench_gpu", description=__doc__.splitlines()[0])
    add_arguments(cli)
    sys.exit(run(cli.parse_args()))
