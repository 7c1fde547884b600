"""Install the SamRoto Nuke plug-in into a folder for `NUKE_PATH`.

    python -m samroto.scripts.install_nuke_plugin --dest DIR [--python 3.9 3.10 3.11] [--platform linux-x86_64 ...]

DIR receives `init.py`, `menu.py` and the `samroto_nuke` package from `plugins/nuke/`, the bridge
client copied into it as the `samroto_nuke.bridge` sub-package (copied here, never committed
twice), and pyzmq and msgpack for every Nuke Python (3.9: Nuke 14, 3.10: Nuke 15, 3.11: Nuke 16)
and platform, installed by pip for *that* Python and platform:

    pip install --target DIR/site-packages/<platform>/py3X --python-version 3.X
                --platform <tag> [--platform <older tag> ...] --only-binary=:all: pyzmq msgpack

At start-up the plug-in's `init.py` puts the folder matching the running Python and machine on
`sys.path`. Several `--platform` tags are passed per platform because pip matches them exactly:
pyzmq's Python 3.9 Linux wheels are tagged manylinux2014 only, its 3.10+ ones manylinux_2_28.
No torch goes into Nuke: the model runs in the `samroto worker` process.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from samroto.bridge import client_files

REPO = Path(__file__).resolve().parents[1]
PLUGIN_SOURCE = REPO / "plugins" / "nuke"
BRIDGE_SOURCE = REPO / "bridge"
PACKAGE = "samroto_nuke"
BUNDLED_BRIDGE = "bridge"
# The client and the modules it imports (relative imports only, so they work as a sub-package).
# the bridge client modules bundled into the add-on (one rule, see samroto.bridge.client_files)
CLIENT_FILES = tuple(client_files(str(BRIDGE_SOURCE)))
PLUGIN_FILES = ("init.py", "menu.py")
REQUIREMENTS = ("pyzmq>=25", "msgpack>=1.0")
IMPORT_NAMES = ("zmq", "msgpack")

NUKE_PYTHONS = ("3.9", "3.10", "3.11")  # Nuke 14, 15, 16
# platform folder name (samroto_nuke.platform_key) -> pip --platform tags, newest first
PLATFORM_TAGS: dict[str, tuple[str, ...]] = {
    "linux-x86_64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "windows-x86_64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64", "macosx_10_15_universal2", "macosx_10_9_universal2"),
    "macos-x86_64": ("macosx_10_15_x86_64", "macosx_10_9_x86_64", "macosx_10_15_universal2",
                     "macosx_10_9_universal2"),
}

_EXCLUDED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".mypy_cache", BUNDLED_BRIDGE, "site-packages")


class InstallError(RuntimeError):
    """The plug-in cannot be installed; the message says what to fix."""


def this_platform() -> str:
    system = {"darwin": "macos", "win32": "windows"}.get(platform.system().lower(), platform.system().lower())
    machine = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}.get(platform.machine().lower(),
                                                                           platform.machine().lower())
    return f"{system}-{machine}"


def dependency_dir(dest: Path, platform_key: str, python: str) -> Path:
    """`<dest>/site-packages/<platform>/py3X`, the folder init.py adds for that Python."""
    major, minor = _parse_python(python)
    return dest / "site-packages" / platform_key / f"py{major}{minor}"


def _parse_python(python: str) -> tuple[int, int]:
    parts = python.split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts[0] != "3":
        raise InstallError(f"--python takes versions like 3.9, 3.10, 3.11; got {python!r}")
    return int(parts[0]), int(parts[1])


def pip_command(target: Path, python: str, platform_key: str, extra: Sequence[str] = ()) -> list[str]:
    """The pip invocation installing pyzmq and msgpack for one Python and platform."""
    if platform_key not in PLATFORM_TAGS:
        raise InstallError(f"unknown platform {platform_key!r}; choose from {', '.join(PLATFORM_TAGS)}")
    _parse_python(python)
    command = [sys.executable, "-m", "pip", "install", "--target", str(target), "--python-version", python]
    for tag in PLATFORM_TAGS[platform_key]:
        command += ["--platform", tag]
    command += ["--only-binary=:all:", "--upgrade", "--no-compile", "--disable-pip-version-check", *extra,
                *REQUIREMENTS]
    return command


@dataclass
class InstallReport:
    dest: Path
    copied: list[str] = field(default_factory=list)
    dependencies: dict[str, list[str]] = field(default_factory=dict)  # folder -> installed distributions


Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def _run_pip(command: list[str]) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(command, capture_output=True, text=True, check=False)


def copy_plugin(dest: Path, *, plugin_source: Path = PLUGIN_SOURCE, bridge_source: Path = BRIDGE_SOURCE) -> list[str]:
    """Copy init.py, menu.py and the package, then the bridge client into the package."""
    dest = dest.resolve()
    if dest == plugin_source.resolve() or plugin_source.resolve() in dest.parents:
        raise InstallError(f"--dest {dest} is inside the plug-in's source folder; install somewhere else")
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in PLUGIN_FILES:
        shutil.copy2(plugin_source / name, dest / name)
        copied.append(name)
    package = dest / PACKAGE
    if package.exists():
        shutil.rmtree(package)
    shutil.copytree(plugin_source / PACKAGE, package, ignore=_EXCLUDED)
    copied.append(PACKAGE + "/")
    bundled = package / BUNDLED_BRIDGE
    bundled.mkdir()
    for name in CLIENT_FILES:
        source = bridge_source / name
        if not source.is_file():
            raise InstallError(f"the bridge client file {source} is missing: is this a full samroto checkout?")
        shutil.copy2(source, bundled / name)
    copied.append(f"{PACKAGE}/{BUNDLED_BRIDGE}/ ({len(CLIENT_FILES)} client files)")
    return copied


def install_dependencies(dest: Path, pythons: Iterable[str], platforms: Iterable[str], *, run: Runner = _run_pip,
                         extra: Sequence[str] = ()) -> dict[str, list[str]]:
    """pip-install pyzmq and msgpack into one folder per platform and Python; returns
    folder -> the distributions found there afterwards."""
    done: dict[str, list[str]] = {}
    for platform_key in platforms:
        for python in pythons:
            target = dependency_dir(dest, platform_key, python)
            target.mkdir(parents=True, exist_ok=True)
            completed = run(pip_command(target, python, platform_key, extra))
            if completed.returncode != 0:
                tail = "\n".join((completed.stderr or completed.stdout or "").strip().splitlines()[-6:])
                raise InstallError(f"pip could not install {' and '.join(REQUIREMENTS)} for Python {python} on "
                                   f"{platform_key} into {target}:\n{tail}")
            found = sorted(p.name for p in target.glob("*.dist-info"))
            missing = [name for name in IMPORT_NAMES if not (target / name).is_dir()]
            if missing:
                raise InstallError(f"after pip, {target} lacks {', '.join(missing)}")
            done[str(target)] = found
    return done


def install(dest: Path, *, pythons: Sequence[str] = NUKE_PYTHONS, platforms: Sequence[str] | None = None,
            dependencies: bool = True, run: Runner = _run_pip, extra: Sequence[str] = ()) -> InstallReport:
    platforms = list(platforms or [this_platform()])
    for key in platforms:
        if key not in PLATFORM_TAGS:
            raise InstallError(f"unknown platform {key!r}; choose from {', '.join(PLATFORM_TAGS)}")
    for python in pythons:
        _parse_python(python)
    report = InstallReport(dest=dest.resolve())
    report.copied = copy_plugin(dest)
    if dependencies:
        report.dependencies = install_dependencies(report.dest, pythons, platforms, run=run, extra=extra)
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dest", type=Path, required=True, help="the plug-in folder to create (put it on NUKE_PATH)")
    parser.add_argument("--python", nargs="+", default=list(NUKE_PYTHONS), metavar="3.X",
                        help="Nuke Python versions to install dependencies for (default: %(default)s)")
    parser.add_argument("--platform", nargs="+", default=None, metavar="NAME",
                        help=f"platforms ({', '.join(PLATFORM_TAGS)}; default: this machine's)")
    parser.add_argument("--no-deps", action="store_true", help="copy the plug-in only, do not run pip")
    parser.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                        help="extra argument for pip (repeat), e.g. --pip-arg=--index-url=URL")


def run(args: argparse.Namespace) -> int:
    try:
        report = install(args.dest, pythons=args.python, platforms=args.platform, dependencies=not args.no_deps,
                         extra=args.pip_arg)
    except InstallError as exc:
        print(f"install_nuke_plugin: {exc}", file=sys.stderr)
        return 1
    print(f"SamRoto Nuke plug-in installed in {report.dest}")
    for item in report.copied:
        print(f"  {item}")
    for folder, dists in report.dependencies.items():
        print(f"  {os.path.relpath(folder, report.dest)}: {', '.join(dists)}")
    print(f"Add {report.dest} to NUKE_PATH (or nuke.pluginAddPath({str(report.dest)!r}) in ~/.nuke/init.py).")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samroto.scripts.install_nuke_plugin", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
