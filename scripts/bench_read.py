"""`samroto bench read`: read-path speed for plates, file to display-referred pixels.

Writes synthetic plates (4K by default) to a temporary folder and times, best of `--runs`:
EXR (half, ZIP and PIZ) with the OpenEXR package (samroto's reader) and with OpenImageIO; 10-bit
DPX with FFmpeg (PyAV, the reader before) and with OpenImageIO (samroto's reader); the OCIO
display/view on one frame, on one thread and in row bands on all cores; and the whole read path
(`ImageSequenceFrames.read`) per format as the model gets it.
"""

from __future__ import annotations

import argparse
import functools
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", default="4096x2160", help="plate size WIDTHxHEIGHT (default 4096x2160)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per reader (the best is reported)")
    parser.add_argument("--ocio", default="ocio://studio-config-latest", help="OCIO config for the colour timings")
    parser.add_argument("--folder", help="write the plates here instead of a temporary folder")


def _best(function: Callable[[], Any], runs: int) -> tuple[float, Any]:
    seconds, _, result = _best_with_cpu(function, runs)
    return seconds, result


def _best_with_cpu(function: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """Best wall time and best CPU time (all threads of the process) over `runs` calls, and a result.

    CPU time says what a reader costs when other work shares the machine; wall time what one
    frame waits."""
    wall, cpu, result = float("inf"), float("inf"), None
    for _ in range(max(1, runs)):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = function()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu, result


def _compare(label: str, before: tuple[str, Callable[[], Any]], after: tuple[str, Callable[[], Any]],
             runs: int, size: int) -> None:
    """Two readers of one file, their runs interleaved so that changing load hits both alike."""
    results: dict[str, list[Any]] = {before[0]: [], after[0]: []}
    for _ in range(max(1, runs)):
        for name, function in (before, after):
            results[name].append(_best_with_cpu(function, 1))
    same = np.array_equal(results[before[0]][-1][2], results[after[0]][-1][2])
    figures = "   ".join(
        f"{name} {min(r[0] for r in rs) * 1000:7.1f} ms (CPU {min(r[1] for r in rs) * 1000:7.1f} ms)"
        for name, rs in results.items()
    )
    print(f"  {label:14s} {figures}   same pixels: {same}   {size / 2**20:.1f} MiB")


def _plate(width: int, height: int) -> np.ndarray:
    """Scene-linear float32 RGB with gradients and grain (so compression has real work to do)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / width * 2.0, y / height, (x + y) / (width + height) * 0.5], axis=-1)
    return (rgb + rng.random((height, width, 3), dtype=np.float32) * 0.05).astype(np.float32)


def _write_plates(folder: Path, plate: np.ndarray) -> dict[str, Path]:
    import OpenEXR
    import OpenImageIO as oiio

    paths: dict[str, Path] = {}
    half = {name: np.ascontiguousarray(plate[..., i].astype(np.float16)) for i, name in enumerate("RGB")}
    for label, compression in (("zip", OpenEXR.ZIP_COMPRESSION), ("piz", OpenEXR.PIZ_COMPRESSION)):
        paths[f"exr_half_{label}"] = folder / f"exr_half_{label}.1001.exr"
        OpenEXR.File({"compression": compression}, half).write(str(paths[f"exr_half_{label}"]))
    height, width = plate.shape[:2]
    spec = oiio.ImageSpec(width, height, 3, "uint16")
    spec.attribute("oiio:BitsPerSample", 10)
    paths["dpx_10bit"] = folder / "dpx_10bit.1001.dpx"
    output = oiio.ImageOutput.create(str(paths["dpx_10bit"]))
    output.open(str(paths["dpx_10bit"]), spec)
    output.write_image((np.clip(plate / 2.0, 0.0, 1.0) * 65535).astype(np.uint16))
    output.close()
    return paths


def _openexr_read(path: Path) -> np.ndarray:
    from samroto.core import frames

    return frames._read_exr_rgb(str(path))[0]


def _oiio_read(path: Path, sample: str) -> np.ndarray:
    import OpenImageIO as oiio

    image_input = oiio.ImageInput.open(str(path))
    try:
        return np.asarray(image_input.read_image(0, 0, 0, 3, sample))
    finally:
        image_input.close()


def run(args: argparse.Namespace) -> int:
    import OpenImageIO as oiio

    from samroto.core import frames
    from samroto.core.colour import ColourSettings, resolve_colour

    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise SystemExit(f"--size must be WIDTHxHEIGHT, e.g. 4096x2160, not {args.size!r}") from None
    plate = _plate(width, height)
    with tempfile.TemporaryDirectory(prefix="samroto-bench-read-") as temporary:
        folder = Path(args.folder or temporary)
        folder.mkdir(parents=True, exist_ok=True)
        paths = _write_plates(folder, plate)
        print(f"plates {width}x{height}, best of {args.runs}; {os.cpu_count()} CPUs; OpenImageIO threads "
              f"{oiio.get_int_attribute('threads')}")
        print("readers (file to pixels, no colour; wall and CPU time, best of interleaved runs):")
        for name in ("exr_half_zip", "exr_half_piz"):
            path = paths[name]
            _compare(name, ("OpenEXR", functools.partial(_openexr_read, path)),
                     ("OpenImageIO", functools.partial(_oiio_read, path, "float")), args.runs, path.stat().st_size)
        dpx = paths["dpx_10bit"]
        _compare("dpx_10bit", ("FFmpeg", lambda: frames._read_with_ffmpeg(str(dpx))),
                 ("OpenImageIO", lambda: frames._read_with_openimageio(str(dpx))), args.runs, dpx.stat().st_size)

        print(f"colour (one {width}x{height} float frame, OCIO config {args.ocio}):")
        settings = ColourSettings(config=args.ocio)
        default = resolve_colour(settings, float_pixels=True)
        config = default.settings
        views = [config.view, "Un-tone-mapped"]
        for view in views:
            colour = resolve_colour(ColourSettings(config=args.ocio, display=config.display, view=view),
                                    float_pixels=True)

            def one_thread(colour: Any = colour) -> None:
                colour._processor.applyRGB(np.array(plate))

            single, _ = _best(one_thread, args.runs)
            banded, banded_cpu, _ = _best_with_cpu(functools.partial(colour.apply, plate), args.runs)
            print(f"  {colour.describe()}: one thread {single * 1000:7.1f} ms, row bands on all cores "
                  f"{banded * 1000:7.1f} ms (CPU {banded_cpu * 1000:7.1f} ms, "
                  f"{banded_cpu / (width * height) * 1e9:.0f} ns a pixel)")
        curve = resolve_colour(ColourSettings(config="none"), float_pixels=True)
        seconds, _ = _best(lambda: curve.apply(plate), args.runs)
        print(f"  {curve.describe()}: {seconds * 1000:7.1f} ms")

        print("whole read path (ImageSequenceFrames.read: what the model gets):")
        for name, path in paths.items():
            pattern = str(path).replace(".1001.", ".####.")
            for label, colour_spec in (("default colour", None), ("no config, sRGB curve", {"config": "none"})):
                source = frames.open_frames(pattern, colour=colour_spec)
                seconds, cpu, image = _best_with_cpu(functools.partial(source.read, 1001), args.runs)
                print(f"  {name:14s} {label:22s} {seconds * 1000:8.1f} ms (CPU {cpu * 1000:8.1f} ms) -> {image.dtype} "
                      f"({source.colour.describe()})")
    return 0
