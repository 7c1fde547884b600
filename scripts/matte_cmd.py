"""`samroto matte`: prompt one object on one frame, track it through the whole shot, write its mattes.

Everything that can be checked without the model is checked first, and every problem is said at
once: the plate (every frame of the range present, readable, of one size; `--missing` for gaps),
the prompts (on the plate), the output folder (writable, and not holding another run's mattes).
The shot then runs through the batch runner (`batch_runner.ShotRunner`, mattes straight in
`--out`): a manifest under `<out>/.samroto/<shot>/` records what the mattes are made from, an
interrupted run resumes when started again with the same arguments, a run with other inputs is
refused unless `--overwrite`, and the confidence report is written on every exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .common import (add_colour_arguments, add_matting_arguments, add_memory_argument, add_model_arguments,
                     colour_from_args, matting_error,
                     parse_box, parse_xy)

if TYPE_CHECKING:
    from samroto.core.colour import ColourSettings
    from samroto.core.model.sam2 import SAM2Model
    from samroto.core.sidecar import Sidecar

    from .batch_runner import ModelChoice

DEFAULT_PREVIEW_SIZE = 512
MIN_PREVIEW_SIZE = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plate", help="video file or image sequence (plate.####.exr, plate.%%04d.png)")
    parser.add_argument("--point", type=parse_xy, action="append", default=[], metavar="X,Y",
                        help="positive click in plate pixels (repeatable; negative numbers are fine: --point -1,5)")
    parser.add_argument("--negative", type=parse_xy, action="append", default=[], metavar="X,Y",
                        help="negative click in plate pixels (repeatable)")
    parser.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1", help="box around the object, plate pixels")
    parser.add_argument("--frame", type=int, default=None,
                        help="plate frame number the prompts are on (default: the first frame)")
    parser.add_argument("--first", type=int, default=None, help="first plate frame of the range to track")
    parser.add_argument("--last", type=int, default=None, help="last plate frame of the range to track")
    parser.add_argument("--missing", choices=["error", "hold", "skip"], default="error",
                        help="frames missing from an image sequence: error (default: list them and stop), hold "
                             "(use the previous frame's picture), skip (track through, write no matte for them)")
    parser.add_argument("--out", required=True, type=Path, help="folder for the matte sequence")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace mattes of this shot that another run (other prompts, plate, model or options) "
                             "left in --out; without it such a run is refused")
    parser.add_argument("--name", default=None, help="shot name used in file names (default: the plate's name)")
    parser.add_argument("--format", choices=["exr", "png"], default="exr", help="EXR half alpha or 16-bit PNG")
    parser.add_argument("--binary", action="store_true", help="hard 0/1 mattes instead of soft")
    parser.add_argument("--fill-holes", type=int, default=8, metavar="AREA",
                        help="fill background holes up to this many low-res pixels (0: off)")
    parser.add_argument("--preview", type=int, nargs="?", const=0, default=None, metavar="SIZE",
                        help=f"first write a fast PREVIEW tracked at SIZE px (default {DEFAULT_PREVIEW_SIZE}, or half "
                             "the model's input when that is smaller; files named *_preview_*), then the final "
                             "mattes at full resolution")
    parser.add_argument("--preview-only", action="store_true", help="with --preview: stop after the preview")
    parser.add_argument("--refine-edges", action="store_true",
                        help="snap the mattes to the plate's edges at full resolution (guided filter)")
    parser.add_argument("--smooth-edges", action="store_true", help="calm edge chatter from frame to frame")
    add_memory_argument(parser, default="sam2", default_help="default sam2, exact SAM 2")
    parser.add_argument("--quiet", action="store_true", help="no progress (results and errors are still printed)")
    parser.add_argument("--review", action="store_true",
                        help="also write <out>/<name>_review.html: confidence plots and the frames to review")
    add_colour_arguments(parser)
    add_matting_arguments(parser)
    add_model_arguments(parser)


def shot_name(plate: str) -> str:
    name = Path(plate).name
    for token in ("####", "%0", "@", "#"):
        if token in name:
            name = name.split(token)[0]
    name = name.split(".")[0].rstrip("._- ")
    return name or "shot"


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def check_output_folder(folder: Path) -> str | None:
    """Why mattes cannot be written to `folder` (None when they can): created if needed, then a file
    is written and removed, which is the only test that holds on every file system."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".samroto-write-test-"):
            pass
    except OSError as exc:
        return f"cannot write to --out {folder}: {exc.strerror or exc}"
    return None


def run(args: argparse.Namespace) -> int:
    from samroto.core.frames import FrameError
    from samroto.core.plate_check import check_plate, off_plate

    from .batch_runner import BatchOptions, ShotError, check_outputs

    if not args.point and not args.box:
        return _error("give at least one --point or a --box")
    if args.preview_only and args.preview is None:
        return _error("--preview-only needs --preview")
    # the plate: every frame of the range, before anything heavy
    try:
        colour = colour_from_args(args)
        plate = check_plate(args.plate, first=args.first, last=args.last, colour=colour)
    except FrameError as exc:
        return _error(str(exc))
    problems = plate.problems(args.missing)
    numbers = plate.frame_numbers
    frame = numbers[0] if args.frame is None else args.frame
    if frame not in numbers:
        problems.append(f"--frame {frame} is outside the plate's frames {numbers[0]}-{numbers[-1]}")
    elif frame in plate.missing:
        problems.append(f"--frame {frame} is missing from the plate: prompt a frame that exists")
    points = [*args.point, *args.negative]
    off = off_plate(plate.width, plate.height, points=points, box=args.box)
    if off is not None:
        problems.append(off)
    folder_problem = check_output_folder(args.out)
    if folder_problem is not None:
        problems.append(folder_problem)
    if problems:
        for problem in problems:
            print(f"error: {problem}", file=sys.stderr)
        return 2

    try:
        choice = _model_choice(args)
    except ValueError as exc:  # ConfigError
        return _error(str(exc))
    shot = (args.name or shot_name(args.plate)).strip()
    sidecar = _sidecar(args, shot, frame, points, colour)
    options = BatchOptions(out_dir=str(args.out.resolve()), format=args.format, soft=not args.binary,
                           restart=args.overwrite, refine_edges=args.refine_edges, smooth_edges=args.smooth_edges,
                           missing=args.missing, flat=True, matting=args.matting, layered_exr=args.layered_exr)
    problem = matting_error(args)  # before the model loads: a missing matting checkpoint fails fast
    if problem:
        return _error(problem)
    try:
        if not (args.preview is not None and args.preview_only):
            check_outputs(shot, sidecar, choice, options)  # another run's mattes: refused before the model loads
    except ShotError as exc:
        return _error(str(exc))

    model = _load(choice)
    if model is None:
        return 2
    passes: list[tuple[str, int | None]] = []
    if args.preview is not None:
        size = _preview_size(args.preview, model)
        if isinstance(size, str):
            return _error(size)
        passes.append((f"{shot}_preview", size))
    if not (args.preview is not None and args.preview_only):
        passes.append((shot, None))
    reports: list[Path] = []
    for name, image_size in passes:
        status = _run_pass(args, model, choice, sidecar, name, image_size, options, reports)
        if status:
            return status
    if args.review:
        return _write_review(args, reports, shot)
    return 0


def _write_review(args: argparse.Namespace, reports: list[Path], shot: str) -> int:
    """The review page of this run's passes (preview and final), named after the shot."""
    from samroto.core.outputs.review import ReviewError, load_shot

    from .review_cmd import write_report

    if not reports:
        return _error("--review: no confidence was recorded, nothing to review")
    try:
        shots = [load_shot(report) for report in reports]  # the reports name the plate and the mattes
        path = write_report(shots, args.out / f"{shot}_review.html", title=f"samroto review: {shot}",
                            quiet=args.quiet)
    except ReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"review: {path.resolve()}")
    return 0


def _preview_size(asked: int, model: "SAM2Model") -> int | str:
    """The preview's internal size: `asked`, or (0) the default that fits the model; a str says why not."""
    step = 2 * model.config.backbone_stride  # the sizes the network runs at
    if asked == 0:
        asked = min(DEFAULT_PREVIEW_SIZE, model.image_size // 2) // step * step
        return max(asked, step)
    if not MIN_PREVIEW_SIZE <= asked < model.image_size or asked % step:
        return (f"--preview SIZE must be a multiple of {step} between {MIN_PREVIEW_SIZE} and the model's "
                f"{model.image_size} (exclusive), got {asked}")
    return asked


def _model_choice(args: argparse.Namespace) -> "ModelChoice":
    from samroto.core.model.config import load_config_file

    from .batch_runner import ModelChoice

    config = load_config_file(args.config).to_dict() if args.config else None
    return ModelChoice(checkpoint=args.model, config=config, device=args.device, precision=args.precision,
                       compile=args.compile)


def _load(choice: "ModelChoice") -> "SAM2Model | None":
    from samroto.core.model.checkpoint import CheckpointError
    from samroto.core.model.config import ConfigError
    from samroto.core.model.download import DownloadError

    try:
        return choice.load()
    except (CheckpointError, ConfigError, DownloadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _sidecar(args: argparse.Namespace, shot: str, frame: int, points: list[tuple[float, float]],
             colour: "ColourSettings | None") -> "Sidecar":
    from samroto.core.sidecar import ModelSpec, ObjectPrompts, PromptSpec, SessionSettings, ShotSpec, Sidecar

    labels = [1] * len(args.point) + [0] * len(args.negative)
    prompt = PromptSpec(frame=frame, points=list(points), labels=labels, box=args.box)
    return Sidecar(
        shot=ShotSpec(plate=os.path.abspath(args.plate), first=args.first, last=args.last, name=shot,
                      colour=colour.to_dict() if colour is not None else None),
        objects=[ObjectPrompts(obj_id=1, prompts=[prompt])],
        model=ModelSpec(checkpoint=args.model, config=args.config),
        session=SessionSettings(fill_hole_area=args.fill_holes, memory_mode=args.memory),
        source="the command line",
    )


def _run_pass(args: argparse.Namespace, model: "SAM2Model", choice: "ModelChoice", sidecar: "Sidecar", name: str,
              image_size: int | None, options: object, reports: list[Path]) -> int:
    """One pass (the PREVIEW or the final mattes) through the batch runner; prints what it wrote and
    adds its confidence report to `reports`."""
    import dataclasses

    from .batch_runner import ShotJob, ShotRunner
    from .progress import progress

    preview = image_size is not None
    # the learned matting pass makes the final mattes; the PREVIEW stays the fast tracked matte
    options = dataclasses.replace(options, image_size=image_size,  # type: ignore[type-var]
                                  matting=None if preview else options.matting)  # type: ignore[attr-defined]
    if preview:
        print(f"PREVIEW pass: tracking at {image_size} px (fast, not the final mattes)", file=sys.stderr)
    desc = "PREVIEW" if preview else "tracking"
    runner = ShotRunner(model, choice=choice, options=options,  # type: ignore[arg-type]
                        progress=lambda _name, total: progress(desc, total, quiet=args.quiet))
    result = runner.run(ShotJob(name=name, sidecar_file="the command line", sidecar=sidecar))
    label = "PREVIEW" if preview else "final"
    if not result.ok:
        print(f"error: {result.error}", file=sys.stderr)
        return 1
    rate = f" ({result.seconds / result.written:.2f} s/frame)" if result.written else ""
    kept = f", {result.already_there} already there" if result.already_there else ""
    resumed = " (resumed)" if result.resumed else ""
    print(f"{label}: {result.written} mattes in {result.seconds:.1f} s{rate}{kept}{resumed}: {result.mattes[0]}")
    if result.confidence is not None:
        reports.append(Path(result.confidence))
        shown = ", ".join(str(f) for f in result.review[:20]) + (" ..." if len(result.review) > 20 else "")
        print(f"confidence: {result.confidence}; frames to review: {shown or 'none'}")
    return 0
