"""`samroto review`: one self-contained HTML page showing which frames of which shots need a look.

    samroto review /show/mattes [more folders or *.confidence.json files] [--out review.html]

Every ``*.confidence.json`` under the folders (recursively) is a shot; see
`samroto.core.outputs.review` for what the page holds. No model, no torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from samroto.core.outputs.review import ReviewOptions, ShotReview


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", type=Path, metavar="DIR",
                        help="folders of mattes (searched for *.confidence.json) or confidence files")
    parser.add_argument("--out", type=Path, default=None,
                        help="the HTML file to write (default: review.html in the first folder given)")
    parser.add_argument("--every", type=int, default=10, metavar="N",
                        help="a contact-sheet thumbnail every N frames (default 10; larger for long shots)")
    parser.add_argument("--max-thumbnails", type=int, default=60, metavar="N",
                        help="thumbnails of at most N flagged frames per shot (all are listed; default 60)")
    parser.add_argument("--thumbnail-width", type=int, default=240, metavar="PX", help="default 240")
    parser.add_argument("--title", default=None, help="the page's title")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def default_report_path(paths: Sequence[Path]) -> Path:
    from samroto.core.outputs.review import REPORT_NAME

    first = paths[0]
    return (first if first.is_dir() else first.parent) / REPORT_NAME


def write_report(shots: "Sequence[ShotReview]", out: Path, options: "ReviewOptions | None" = None, *,
                 title: str | None = None, quiet: bool = False) -> Path:
    """Write the page with a progress bar on stderr (shared by `batch` and `matte --review`)."""
    from tqdm import tqdm

    from samroto.core.outputs.review import write_review

    with tqdm(total=len(shots), unit="shot", desc="review", file=sys.stderr, disable=quiet) as bar:
        return write_review(shots, out, options, title=title or _default_title(shots),
                            progress=lambda shot: bar.update(1))


def _default_title(shots: "Sequence[ShotReview]") -> str:
    if len(shots) == 1:
        return f"samroto review: {shots[0].name}"
    return f"samroto review: {len(shots)} shots"


def run(args: argparse.Namespace) -> int:
    from samroto.core.outputs.review import ReviewError, ReviewOptions, find_shots

    try:
        options = ReviewOptions(contact_every=args.every, max_flagged_thumbnails=args.max_thumbnails,
                                thumbnail_width=args.thumbnail_width)
        shots = find_shots(args.paths, on_error=lambda message: print(f"warning: {message}", file=sys.stderr))
        if not shots:
            print(f"error: no readable *.confidence.json under {', '.join(map(str, args.paths))} "
                  "(samroto matte, batch and the worker write one beside each shot's mattes)", file=sys.stderr)
            return 2
        out = args.out or default_report_path(args.paths)
        path = write_report(shots, out, options, title=args.title, quiet=args.quiet)
    except ReviewError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    flagged = sum(len(shot.tracker.review_frames()) for shot in shots)
    print(f"review: {len(shots)} shot(s), {flagged} frame(s) to review: {path.resolve()}")
    return 0
