"""Command-line pieces shared by several commands: choosing and loading the model, parsing prompts."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from samroto.core.colour import ColourSettings
    from samroto.core.model.sam2 import SAM2Model

DEFAULT_MODEL = "sam2.1_hiera_base_plus"


def add_model_arguments(parser: argparse.ArgumentParser, *, default: str = DEFAULT_MODEL) -> None:
    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=default,
        help=f"checkpoint file or official name (cached by `samroto download`); default {default}",
    )
    group.add_argument(
        "--config",
        metavar="JSON|FILE[#NAME]",
        help="model configuration, when the checkpoint is not one of the eight official ones: JSON text, or a "
             "JSON file; a file holding several models ({\"models\": {NAME: ...}}) needs #NAME to pick one, "
             "e.g. micro_config.json#sam2.1",
    )
    group.add_argument("--device", default="auto",
                       help="auto (CUDA, then Apple MPS, then CPU), cpu, mps, cuda or cuda:N (default auto)")
    group.add_argument(
        "--precision",
        choices=["float32", "bfloat16", "float16"],
        default=None,
        help="autocast precision (default by device: bfloat16 on Ampere and later GPUs, float16 on Volta and "
        "Turing, float32 on older GPUs, MPS and the CPU)",
    )
    group.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the image encoder and memory attention (CUDA graphs on CUDA; compiled while "
        "starting up; not on MPS)",
    )


def add_colour_arguments(parser: argparse.ArgumentParser, *, defaults_for: str = "") -> None:
    """--ocio, --colorspace, --display, --view: how plates become what the model sees (OpenColorIO)."""
    what = f" ({defaults_for})" if defaults_for else ""
    group = parser.add_argument_group("colour" + what)
    group.add_argument("--ocio", metavar="CONFIG",
                       help="OCIO config file or built-in URI (ocio://studio-config-latest, ocio://cg-config-latest), "
                            "or 'none' for a plain curve; default $OCIO, else the built-in ACES studio config")
    group.add_argument("--colorspace", metavar="NAME",
                       help="the plate's colourspace (name, alias or role); default: the file's header, else "
                            "scene_linear for float plates; integer plates without one are taken as display-referred")
    group.add_argument("--display", metavar="NAME", help="OCIO display (default: the config's default display)")
    group.add_argument("--view", metavar="NAME",
                       help="OCIO view of the display (default: the display's default view); with --ocio none: "
                            "srgb, rec709 or linear")


def colour_from_args(args: argparse.Namespace) -> "ColourSettings | None":
    """The colour flags as settings (None: none given), errors as one line on stderr (exit status 2)."""
    from samroto.core.colour import ColourError, ColourSettings, load_config

    given = {key: getattr(args, key, None) for key in ("colorspace", "display", "view")}
    given["config"] = getattr(args, "ocio", None)
    if all(value is None for value in given.values()):
        return None
    try:
        settings = ColourSettings(**given)
        if not settings.uses_curves:
            load_config(settings.config)  # a bad config is said now, not on the first plate
    except ColourError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return settings


def resolve_device(name: str | None) -> str:
    """The device a command runs on, or one line on stderr and exit status 2 when the machine lacks it."""
    from samroto.core.model.device import DeviceError, enable_mps_fallback
    from samroto.core.model.device import resolve_device as resolve

    enable_mps_fallback()
    try:
        return str(resolve(name))
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def resolve_precision(args: argparse.Namespace, device: str) -> str:
    """`--precision` checked against the device, or the device's default; turns TF32 on for CUDA
    (the official predictor's setting: float32 parts then use tensor cores on Ampere and later)."""
    import torch

    from samroto.core.model.device import DeviceError, choose_precision, set_tf32

    where = torch.device(device)
    if where.type == "cuda":
        set_tf32(True)
    try:
        return choose_precision(where, args.precision)
    except DeviceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def load_model_from_args(args: argparse.Namespace) -> "SAM2Model":
    """The model named on the command line, with errors as one line on stderr (exit status 2)."""
    from samroto.core.model.checkpoint import CheckpointError, load_model
    from samroto.core.model.config import ConfigError, load_config_file
    from samroto.core.model.download import DownloadError

    device = resolve_device(args.device)
    try:
        config = load_config_file(args.config) if args.config else None
        model = load_model(args.model, config=config, device=device)
    except (CheckpointError, ConfigError, DownloadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if getattr(args, "compile", False):
        from samroto.core.model.device import DeviceError
        from samroto.core.model.runtime import compile_model

        try:
            compile_model(model)
        except DeviceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    return model


MATTING_MODELS = ("vitmatte-small", "vitmatte-base")


def add_matting_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("matting")
    group.add_argument(
        "--matting", default=None, metavar="MODEL",
        help=f"production alpha from a learned matting pass on the masks' edges: {' or '.join(MATTING_MODELS)} "
             "(cached by `samroto download`) or a ViTMatte checkpoint file",
    )
    group.add_argument("--layered-exr", action="store_true",
                       help="also write one EXR per frame holding every object's alpha as <object>.A")


def memory_modes_help() -> str:
    """The memory modes and when to use each, for `--memory` help texts."""
    from samroto.core.memory_modes import explanations

    return "; ".join(f"{name}: {line.rstrip('.')}" for name, line in explanations().items())


def add_memory_argument(parser: argparse.ArgumentParser, *, default: str | None, default_help: str) -> None:
    """`--memory MODE`: which tracked frames enter each object's memory (samroto.core.memory_modes)."""
    from samroto.core.memory_modes import mode_names

    parser.add_argument("--memory", choices=mode_names(), default=default, metavar="MODE",
                        help=f"which tracked frames enter memory ({default_help}). {memory_modes_help()}")


def matting_error(args: argparse.Namespace) -> str | None:
    """Why `--matting` cannot run (a missing or unknown checkpoint, with how to get it), or None."""
    if not getattr(args, "matting", None):
        return None
    from samroto.core.matting import MattingCheckpointError
    from samroto.core.matting.download import resolve_matting_checkpoint

    try:
        resolve_matting_checkpoint(args.matting)
    except MattingCheckpointError as exc:
        return str(exc)
    return None


def bench_model(args: argparse.Namespace, *, memory_attention: bool) -> "SAM2Model":
    """The benchmarks' model: `--model` loaded, or the `--config` preset with random weights, at
    `--image-size` if given; `--compile` compiles the image encoder (and memory attention if asked)."""
    import torch

    from samroto.core.model.checkpoint import build_model, load_model
    from samroto.core.model.runtime import compile_image_encoder, compile_memory_attention

    device = torch.device(args.device)
    if device.type == "cuda":
        from samroto.core.model.device import set_tf32

        set_tf32(True)  # as users run (and the official predictor): tensor cores for float32 parts
    model = load_model(args.model, device=device) if args.model else build_model(args.config, device=device)
    if args.image_size:
        model = model.at_image_size(args.image_size)
    if args.compile:
        from samroto.core.model.device import check_can_compile, compile_mode

        check_can_compile(device)
        compile_image_encoder(model, mode=compile_mode(device))
        if memory_attention:
            compile_memory_attention(model, mode=compile_mode(device))
    return model


def portable_checkpoint(model: str) -> str:
    """How to record `--model` so that it resolves from any folder (a sidecar exported by the worker
    is run by `samroto batch` elsewhere): an official name as it is, a file as an absolute path."""
    from samroto.core.model.config import PRESETS

    if model in PRESETS:
        return model
    return str(Path(model).expanduser().resolve())


def portable_config(config: str | None) -> str | None:
    """`--config` likewise: JSON text as it is, a file as an absolute path (keeping its `#NAME`)."""
    if config is None or config.lstrip().startswith("{"):
        return config
    file, hash_, name = config.partition("#")
    return str(Path(file).expanduser().resolve()) + hash_ + name


def parse_xy(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X,Y (two numbers), got {text!r}") from None
    return x, y


def parse_box(text: str) -> tuple[float, float, float, float]:
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1 (four numbers), got {text!r}") from None
    return x0, y0, x1, y1
