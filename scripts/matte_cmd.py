"""`samroto matte`: prompt one object on one frame, track it through the whole shot, write its mattes."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .common import (
    add_colour_arguments,
    add_model_arguments,
    colour_from_args,
    load_model_from_args,
    parse_box,
    parse_xy,
    resolve_device,
    resolve_precision,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("plate", help="video file or image sequence (plate.####.exr, plate.%%04d.png)")
    parser.add_argument("--point", type=parse_xy, action="append", default=[], metavar="X,Y",
                        help="positive click in plate pixels (repeatable)")
    parser.add_argument("--negative", type=parse_xy, action="append", default=[], metavar="X,Y",
                        help="negative click in plate pixels (repeatable)")
    parser.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1", help="box around the object, plate pixels")
    parser.add_argument("--frame", type=int, default=None,
                        help="plate frame number the prompts are on (default: the first frame)")
    parser.add_argument("--first", type=int, default=None, help="first plate frame of the range to track")
    parser.add_argument("--last", type=int, default=None, help="last plate frame of the range to track")
    parser.add_argument("--out", required=True, type=Path, help="folder for the matte sequence")
    parser.add_argument("--name", default=None, help="shot name used in file names (default: the plate's name)")
    parser.add_argument("--format", choices=["exr", "png"], default="exr", help="EXR half alpha or 16-bit PNG")
    parser.add_argument("--binary", action="store_true", help="hard 0/1 mattes instead of soft")
    parser.add_argument("--fill-holes", type=int, default=8, metavar="AREA",
                        help="fill background holes up to this many low-res pixels (0: off)")
    parser.add_argument("--preview", type=int, nargs="?", const=512, default=None, metavar="SIZE",
                        help="first write a fast PREVIEW tracked at SIZE (default 512; files named *_preview_*), "
                             "then the final mattes at full resolution")
    parser.add_argument("--preview-only", action="store_true", help="with --preview: stop after the preview")
    parser.add_argument("--refine-edges", action="store_true",
                        help="snap the mattes to the plate's edges at full resolution (guided filter)")
    parser.add_argument("--smooth-edges", action="store_true", help="calm edge chatter from frame to frame")
    add_colour_arguments(parser)
    add_model_arguments(parser)


def shot_name(plate: str) -> str:
    name = Path(plate).name
    for token in ("####", "%0", "@", "#"):
        if token in name:
            name = name.split(token)[0]
    name = name.split(".")[0].rstrip("._-")
    return name or "shot"


def run(args: argparse.Namespace) -> int:
    from samroto.core.frames import FrameError, open_frames
    from samroto.core.outputs.matte_output import MatteOptions, MatteOutput
    from samroto.core.outputs.mattes import MatteError, MatteSequenceWriter

    if not args.point and not args.box:
        print("error: give at least one --point or a --box", file=sys.stderr)
        return 2
    try:
        source = open_frames(args.plate, first=args.first, last=args.last, colour=colour_from_args(args))
    except FrameError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    frame = source.frame_numbers[0] if args.frame is None else args.frame
    if frame not in source.frame_numbers:
        print(f"error: --frame {frame} is outside the plate's frames "
              f"{source.frame_numbers[0]}-{source.frame_numbers[-1]}", file=sys.stderr)
        return 2

    device = resolve_device(args.device)
    model = load_model_from_args(args)
    points = [*args.point, *args.negative]
    labels = [1] * len(args.point) + [0] * len(args.negative)
    if args.preview is not None and not 64 <= args.preview < model.image_size:
        print(f"error: --preview SIZE must be between 64 and the model's {model.image_size}", file=sys.stderr)
        return 2
    shot = args.name or shot_name(args.plate)
    passes: list[tuple[str, int | None]] = []
    if args.preview:
        passes.append(("PREVIEW", args.preview))
    if not (args.preview and args.preview_only):
        passes.append(("final", None))
    for label, image_size in passes:
        try:
            writer = MatteSequenceWriter(
                out_dir=args.out,
                shot=f"{shot}_preview" if label == "PREVIEW" else shot,
                format=args.format,
                soft=not args.binary,
            )
        except MatteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        size = image_size or model.image_size
        if label == "PREVIEW":
            print(f"PREVIEW pass: tracking at {size} px (fast, not the final mattes)", file=sys.stderr)
        output = MatteOutput(writer, frames=source,
                             options=MatteOptions(refine_edges=args.refine_edges, smooth_edges=args.smooth_edges))
        status = _track_and_write(args, model, source, frame, points, labels, output, image_size, device, label)
        if status:
            return status
    return 0


def _track_and_write(args, model, source, frame, points, labels, output, image_size, device, label) -> int:  # noqa: ANN001
    """One pass: prompt, track forward then backward from the prompted frame, write every frame's matte."""
    from tqdm import tqdm

    from samroto.core.video_session import SessionError, VideoSession

    started = time.perf_counter()
    obj_id = 1
    with VideoSession(model, source, fill_hole_area=args.fill_holes, image_size=image_size,
                      precision=resolve_precision(args, device)) as session:
        try:
            if args.box:
                session.add_box(frame, obj_id, args.box, points=points or None, labels=labels or None)
            else:
                session.add_points(frame, obj_id, points, labels)
        except SessionError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        written = 0
        desc = "PREVIEW" if session.preview else "tracking"
        with tqdm(total=len(source), unit="frame", desc=desc, file=sys.stderr) as bar:
            for reverse in (False, True):
                for result in session.propagate(frame, reverse=reverse):
                    if reverse and result.frame == frame:
                        continue  # written by the forward pass
                    output.write(result)
                    written += 1
                    bar.update(1)
    elapsed = time.perf_counter() - started
    report = output.finish()
    print(f"{label}: {written} mattes in {elapsed:.1f} s ({elapsed / max(written, 1):.2f} s/frame): "
          f"{os.fspath(output.writer.pattern_for(obj_id))}")
    if report is not None:
        review = output.tracker.review_frames()
        shown = ", ".join(str(f) for f in review[:20]) + (" ..." if len(review) > 20 else "")
        print(f"confidence: {report}; frames to review: {shown or 'none'}")
    return 0
