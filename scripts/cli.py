"""Entry point of the `samroto` command.

Each sub-command lives in its own module exposing `add_arguments(parser)` and
`run(args) -> int`; modules are imported only when their command runs, so
`samroto --help` stays fast and a broken optional dependency only affects the
command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
from typing import Sequence

# command name -> (module under samroto.scripts, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "worker": ("worker_cmd", "run the resident worker that serves Blender, Nuke and scripts"),
    "matte": ("matte_cmd", "track objects through a shot and write the matte sequence"),
    "batch": ("batch_cmd", "generate mattes for many shots from prompt sidecars (optionally on Ray)"),
    "review": ("review_cmd", "write an HTML page of the frames to review (confidence plots, thumbnails)"),
    "download": ("download_cmd", "download an official SAM 2 / SAM 2.1 checkpoint into the cache"),
    "bench": ("bench_cmd", "print speed and memory figures (image, video, edges, read)"),
    "keys": ("keys_cmd", "CURVE keys for network workers: show this machine's client key, authorise a client's"),
}


# options whose values are coordinates, which may be negative (`--point -10,300`)
COORDINATE_OPTIONS = ("--point", "--negative", "--box")
_NEGATIVE_NUMBERS = re.compile(r"-\d*\.?\d+(?:[eE][-+]?\d+)?(?:,\s*-?\d*\.?\d+(?:[eE][-+]?\d+)?)*")


# a CURVE key is 40 characters of Z85, whose alphabet includes `-`: one in five keys starts with it
_Z85_KEY = re.compile(r"[0-9a-zA-Z.\-:+=^!/*?&<>()\[\]{}@%$#]{40}")


def version() -> str:
    """The installed samroto's version."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as package_version

    try:
        return package_version("samroto")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "unknown (not installed)"


def join_negative_values(argv: Sequence[str]) -> list[str]:
    """`--point -10,300` as `--point=-10,300`: argparse takes a value that starts with `-` and is not a
    plain number for an option, so without this only the `=` form would work."""
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        if args[i] in COORDINATE_OPTIONS and i + 1 < len(args) and _NEGATIVE_NUMBERS.fullmatch(args[i + 1]):
            out.append(f"{args[i]}={args[i + 1]}")
            i += 2
            continue
        if args[i] == "--":
            out.extend(args[i:])
            break
        out.append(args[i])
        i += 1
    return out


def protect_dash_keys(argv: Sequence[str]) -> list[str]:
    """`samroto keys add -Kx...` as `samroto keys add -- -Kx...`: argparse would take a key that starts
    with `-` for an unknown option and refuse it."""
    args = list(argv)
    if args[:2] != ["keys", "add"] or "--" in args:
        return args
    keys = [a for a in args[2:] if a.startswith("-") and _Z85_KEY.fullmatch(a)]
    if not keys:
        return args
    return [a for a in args if a not in keys] + ["--"] + keys


def _load(name: str):  # noqa: ANN202 - returns a module
    module_name, _ = COMMANDS[name]
    return importlib.import_module(f"samroto.scripts.{module_name}")


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="samroto", description="SAM 2 rotoscoping for compositors")
    parser.add_argument("--version", action="version", version=f"samroto {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (_, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _load(name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Apple's Metal backend reads this when torch loads: ops it lacks then run on the CPU instead of
    # failing the first click (no effect elsewhere)
    os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")
    args_list = protect_dash_keys(join_negative_values(sys.argv[1:] if argv is None else argv))
    parser = build_parser(args_list)
    args = parser.parse_args(args_list)
    if not args.command:
        parser.print_help()
        return 2
    try:
        return int(_load(args.command).run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
