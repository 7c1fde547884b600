"""`samroto batch`: mattes for many shots from prompt sidecars, here or on a Ray cluster.

    samroto batch shots/ --out /show/mattes [--model sam2.1_hiera_large] [--ray auto]

JOBS are sidecar files (see `samroto.core.sidecar`) or folders of them (every `*.json` directly in
the folder, except `*.confidence.json` reports; other JSON files there are skipped with a warning).
Each shot gets one session; its mattes go to `<out>/<shot>/`. A run that is
interrupted resumes where it stopped when started again with the same arguments; a shot that
fails is reported and the others go on. The exit status is 0 when every shot is done, 1 when any
failed, 2 when the batch could not start.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .common import DEFAULT_MODEL, add_colour_arguments, add_memory_argument, add_model_arguments, colour_from_args

if TYPE_CHECKING:
    from samroto.core.sidecar import ModelSpec

    from .batch_runner import ModelChoice, ShotJob, ShotResult

EPILOG = (
    "The model: --model when given, else the one the sidecars name (they must agree), else "
    f"{DEFAULT_MODEL}. With --ray, mattes are written by the cluster's workers: --out must be "
    "storage every node sees, and samroto must be installed on the nodes."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.add_argument("jobs", nargs="+", type=Path, metavar="JOBS",
                        help="sidecar files, or folders holding them (*.json, not *.confidence.json)")
    parser.add_argument("--out", required=True, type=Path, help="output folder: one sub-folder of mattes per shot")
    parser.add_argument("--format", choices=["exr", "png"], default="exr", help="EXR half alpha or 16-bit PNG")
    parser.add_argument("--binary", action="store_true", help="hard 0/1 mattes instead of soft")
    parser.add_argument("--refine-edges", action="store_true",
                        help="snap the mattes to the plate's edges at full resolution (guided filter)")
    parser.add_argument("--smooth-edges", action="store_true", help="calm edge chatter from frame to frame")
    parser.add_argument("--matting", choices=["vitmatte-small", "vitmatte-base"], default=None,
                        help="learned matting pass for shots whose sidecar sets no session.matting")
    parser.add_argument("--overwrite", "--restart", dest="overwrite", action="store_true",
                        help="redo shots whose prompts, plate, model or options changed since their mattes were "
                             "made, or whose mattes another run left (their old mattes are deleted); without it "
                             "such shots fail rather than mix two runs")
    parser.add_argument("--missing", choices=["error", "hold", "skip"], default="error",
                        help="frames missing from an image sequence: error (default: the shot fails, listing "
                             "them), hold (use the previous frame's picture), skip (no matte for them)")
    add_memory_argument(parser, default=None, default_help="default: each sidecar's session.memory_mode, else sam2")
    parser.add_argument("--keep-state", action="store_true",
                        help="keep each finished shot's session state under <out>/.samroto/")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for the model (default: torch's choice here, --cpus-per-worker on "
                             "Ray CPU workers); results can differ in the last bit between thread counts")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress; only the summary (each shot once) and errors")
    ray = parser.add_argument_group("Ray (pip install samroto[ray])")
    ray.add_argument("--ray", metavar="ADDRESS",
                     help="run the shots on a Ray cluster: 'auto' (the cluster this machine belongs to), an "
                          "address (host:6379, ray://host:10001), or 'local' (a private cluster on this machine)")
    ray.add_argument("--cpus-per-worker", type=int, default=2, metavar="N",
                     help="CPUs each model-holding actor reserves when the cluster has no GPU (default 2)")
    ray.add_argument("--workers", type=int, default=None, metavar="N",
                     help="at most N actors (default: one per GPU, or one per N CPUs)")
    add_colour_arguments(parser, defaults_for="for sidecars that do not record them")
    add_model_arguments(parser)
    parser.set_defaults(model=None)  # None: the sidecars' model (see the epilog)


def collect_sidecar_files(paths: list[Path]) -> list[Path]:
    """Sidecar files named on the command line, folders expanded (sorted, not recursive). JSON files
    found in a folder that are not sidecars (no `"format": "samroto.sidecar"`) are skipped with a
    warning; a file named on the command line is always a job."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            # confidence reports (`*.confidence.json`, written next to mattes) are not prompt sidecars
            for found in sorted(p for p in path.iterdir() if p.suffix == ".json" and p.is_file()
                                and not p.name.endswith(".confidence.json")):
                if _is_other_json(found):
                    print(f"warning: skipped {found}: a JSON file that is not a samroto sidecar", file=sys.stderr)
                else:
                    files.append(found)
        elif path.is_file():
            files.append(path)
        else:
            raise ValueError(f"{path}: no such sidecar file or folder")
    return files


def _is_other_json(file: Path) -> bool:
    """Valid JSON that is not a sidecar (no sidecar `format`); a damaged sidecar is not "other"."""
    from samroto.core.sidecar import SIDECAR_FORMAT

    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # unreadable: reported as that shot's failure
    return not (isinstance(data, dict) and data.get("format") == SIDECAR_FORMAT)


def shot_name_for(file: Path) -> str:
    name = file.name
    for suffix in (".json", ".sidecar", ".samroto"):
        name = name.removesuffix(suffix)
    return name.strip() or "shot"


def run(args: argparse.Namespace) -> int:
    from samroto.core.model.config import ConfigError
    from samroto.core.model.download import DownloadError
    from samroto.core.sidecar import SidecarError, load_sidecar

    from .batch_runner import STATE_FOLDER, BatchError, BatchOptions, RayOptions, ShotJob, run_local, run_on_ray

    if args.cpus_per_worker < 1:
        print("error: --cpus-per-worker must be at least 1", file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print("error: --threads must be at least 1", file=sys.stderr)
        return 2
    if args.workers is not None and args.workers < 1:
        print("error: --workers must be at least 1", file=sys.stderr)
        return 2
    try:
        files = collect_sidecar_files(args.jobs)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not files:
        print(f"error: no sidecar files (*.json) in {', '.join(map(str, args.jobs))}", file=sys.stderr)
        return 2

    jobs: list[ShotJob] = []
    used: dict[str, str] = {}
    for file in files:
        try:
            sidecar = load_sidecar(file)
        except SidecarError as exc:
            jobs.append(ShotJob(name=shot_name_for(file), sidecar_file=str(file), load_error=str(exc)))
            continue
        name = (sidecar.shot.name or "").strip() or shot_name_for(file)
        if name == STATE_FOLDER:
            jobs.append(ShotJob(name=name, sidecar_file=str(file), load_error=f"shot name {name!r} is reserved"))
        elif name in used:
            jobs.append(ShotJob(name=f"{name} ({file.name})", sidecar_file=str(file),
                                load_error=f"shot name {name!r} is also used by {used[name]}: rename one "
                                           "(shot.name in the sidecar)"))
        else:
            used[name] = str(file)
            jobs.append(ShotJob(name=name, sidecar_file=str(file), sidecar=sidecar))

    try:
        choice = _model_choice(args, jobs)
    except (ValueError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"error: cannot create --out {args.out}: {exc}", file=sys.stderr)
        return 2
    colour = colour_from_args(args)
    options = BatchOptions(out_dir=str(args.out.resolve()), format=args.format, soft=not args.binary,
                           restart=args.overwrite, keep_state=args.keep_state, threads=args.threads,
                           refine_edges=args.refine_edges, smooth_edges=args.smooth_edges, missing=args.missing,
                           colour=colour.to_dict() if colour is not None else None, matting=args.matting,
                           memory_mode=args.memory)

    def on_result(result: "ShotResult") -> None:
        # each shot as it ends (stderr); quiet: only the summary lists the shots
        if args.quiet:
            return
        line = _result_line(result)
        if sys.stderr.isatty():
            from tqdm import tqdm

            tqdm.write(line, file=sys.stderr)
        else:
            print(line, file=sys.stderr, flush=True)

    started = time.perf_counter()
    try:
        if args.ray:
            results = run_on_ray(jobs, choice=choice, options=options, on_result=on_result,
                                 ray_options=RayOptions(address=args.ray, cpus_per_worker=args.cpus_per_worker,
                                                        max_workers=args.workers))
        else:
            results = run_local(jobs, choice=choice, options=options, on_result=on_result,
                                show_progress=not args.quiet)
    except BatchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, DownloadError) as exc:  # the model could not be loaded (CheckpointError, ...)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_summary(results, time.perf_counter() - started)
    _write_review(jobs, results, args)
    return 0 if all(r.ok for r in results) else 1


def _write_review(jobs: list[ShotJob], results: list[ShotResult], args: argparse.Namespace) -> Path | None:
    """`<out>/review.html` over this batch's shots (done or partly done); a failure here is only a warning."""
    from samroto.core.outputs.confidence import SIDECAR_SUFFIX
    from samroto.core.outputs.review import REPORT_NAME, ReviewError, load_shot

    from .review_cmd import write_report

    by_name = {r.name: r for r in results}
    shots = []
    for job in jobs:
        result = by_name.get(job.name)
        confidence = Path(result.confidence) if result is not None and result.confidence else \
            args.out / job.name / f"{job.name}{SIDECAR_SUFFIX}"
        if job.sidecar is None or not confidence.is_file():
            continue
        obj_ids = [obj.obj_id for obj in job.sidecar.objects]
        mattes = dict(zip(obj_ids, result.mattes if result is not None else []))  # in the sidecar's object order
        try:
            shot = load_shot(confidence, mattes=mattes)
            if shot.plate is None:  # a report from before reports named their plate
                shot.plate, shot.colour = job.sidecar.plate_path, job.sidecar.shot.colour or job.sidecar.shot.view
            shots.append(shot)
        except ReviewError as exc:
            print(f"warning: review: {exc}", file=sys.stderr)
    if not shots:
        return None
    try:
        path = write_report(shots, args.out / REPORT_NAME, quiet=args.quiet)
    except (ReviewError, OSError) as exc:
        print(f"warning: the review page could not be written: {exc}", file=sys.stderr)
        return None
    flagged = sum(len(shot.tracker.review_frames()) for shot in shots)
    print(f"review: {flagged} frame(s) to review in {len(shots)} shot(s): {path.resolve()}")
    return path


def _model_choice(args: argparse.Namespace, jobs: list[ShotJob]) -> ModelChoice:
    """--model/--config, else the sidecars' model (all the same), else the default; the config is
    resolved here so Ray workers need no config file."""
    from samroto.core.model.config import load_config_file, resolve_config

    from .batch_runner import ModelChoice

    if args.model:
        checkpoint, config = args.model, args.config
    else:
        named: dict[str, tuple[ModelSpec, str]] = {}
        for job in jobs:
            spec = job.sidecar.resolved_model() if job.sidecar is not None else None
            if spec is not None:
                key = json.dumps([spec.checkpoint, spec.config], sort_keys=True)
                named.setdefault(key, (spec, job.sidecar_file))
        if len(named) > 1:
            listing = "; ".join(f"{file}: {spec.checkpoint}" for spec, file in named.values())
            raise ValueError(f"the sidecars name different models ({listing}): choose one with --model")
        if named:
            spec = next(iter(named.values()))[0]
            checkpoint, config = spec.checkpoint, spec.config
        else:
            checkpoint, config = DEFAULT_MODEL, args.config
    resolved = None
    if isinstance(config, str):
        resolved = load_config_file(config).to_dict()
    elif isinstance(config, dict):
        resolved = resolve_config(config).to_dict()
    return ModelChoice(checkpoint=checkpoint, config=resolved, device=args.device, precision=args.precision,
                       compile=args.compile)


def _result_line(r: ShotResult) -> str:
    if r.ok:
        detail = f"{r.frames} frames: {r.written} written, {r.already_there} already there"
        if r.resumed:
            detail += ", resumed"
        return f"  done    {r.name}  {detail} ({r.seconds:.1f} s)"
    return f"  FAILED  {r.name}  {r.error}"


def _print_summary(results: list[ShotResult], elapsed: float) -> None:
    done = [r for r in results if r.ok]
    failed = [r for r in results if not r.ok]
    written = sum(r.written for r in results)
    already = sum(r.already_there for r in results)
    print(f"batch: {len(results)} shots, {len(done)} done, {len(failed)} failed; "
          f"{written} frames written, {already} already there; {elapsed:.1f} s")
    for r in done:
        print(_result_line(r))
        for pattern in r.mattes:
            print(f"          {pattern}")
    for r in failed:
        print(_result_line(r))
        print(f"          sidecar: {r.sidecar_file}")
