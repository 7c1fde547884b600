"""`samroto download NAME`: fetch an official checkpoint (SAM 2, or a ViTMatte matting model) into the user cache."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from samroto.core.model.config import PRESETS

from .common import MATTING_MODELS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"checkpoint names: {', '.join(PRESETS)}; matting models: {', '.join(MATTING_MODELS)}")
    parser.add_argument("--all", action="store_true", help="download all eight SAM 2 checkpoints")
    parser.add_argument("--dir", type=Path, help="cache folder (default: the user cache, see SAMROTO_CACHE_DIR)")
    parser.add_argument("--sha256", help="expected SHA-256 of the file (one NAME only)")
    parser.add_argument("--force", action="store_true", help="download again even if cached")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from samroto.core.matting.download import download_matting_checkpoint, is_matting_name
    from samroto.core.model.download import DownloadError, cache_dir, download_checkpoint

    names = list(PRESETS) if args.all else args.names
    if not names:
        print("name a checkpoint to download (or --all): " + ", ".join(PRESETS), file=sys.stderr)
        return 2
    if args.sha256 and len(names) != 1:
        print("--sha256 applies to a single NAME", file=sys.stderr)
        return 2
    status = 0
    for name in names:
        bar = tqdm(desc=name, unit="B", unit_scale=True, unit_divisor=1024, leave=True)

        def progress(done: int, total: int | None, bar: tqdm = bar) -> None:
            if total is not None and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        try:
            if is_matting_name(name):
                path = download_matting_checkpoint(name, directory=args.dir, force=args.force, progress=progress)
            else:
                path = download_checkpoint(
                    name, directory=args.dir, sha256=args.sha256, force=args.force, progress=progress
                )
        except DownloadError as exc:
            bar.close()
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        bar.close()
        print(f"{name}: {path}")
    if status == 0 and args.dir is None:
        print(f"cache: {cache_dir()}")
    return status
