"""`samroto bench WHAT`: benchmarks that print figures (never assertions).

Each benchmark lives in its own module `samroto.scripts.bench_<what>` with
`add_arguments(parser)` and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS: dict[str, str] = {
    "image": "image encoder and decoder time per image (tiny at 1024, random weights)",
    "video": "per-frame time and peak RSS while propagating through a real clip",
    "edges": "boundary accuracy of the edge refinement on a known alpha",
    "gpu": "prove and measure the GPU path (parity, bf16, compile, speed, VRAM, 8K plates, the official code)",
    "read": "read-path speed for 4K EXR and DPX plates (readers before/after) and the OCIO view",
    "matting": "learned matting pass: ms per frame (vitmatte small/base, 1080p/4K) and memory over a long shot",
    "review": "time and size of the review page for many shots, and its load time in Chromium",
    "history": "what the undo history costs: propagation with it on and off, journal size, undo/redo time",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    for name, help_text in BENCHMARKS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(f"samroto.scripts.bench_{name}")
        except ImportError as exc:  # a benchmark whose dependencies are missing stays listed, and says why
            p.set_defaults(unavailable=f"benchmark {name!r} is unavailable: {exc}")
            continue
        module.add_arguments(p)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "unavailable", None):
        raise SystemExit(args.unavailable)
    return int(importlib.import_module(f"samroto.scripts.bench_{args.benchmark}").run(args) or 0)
