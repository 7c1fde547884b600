"""Build the samroto Blender extension zip.

    python -m samroto.scripts.build_blender_extension --out dist/blender [--wheels-from DIR] [--no-download]

The zip holds `plugins/blender/` (manifest, add-on modules), the bridge client copied into the
add-on as its `bridge` sub-package (the files are copied here, never committed twice), and the
pyzmq and msgpack wheels for every platform Blender runs on, listed in the manifest's `wheels`.
Blender installs those wheels into the extension's own site-packages: no torch and no
`sys.path` edits in the add-on.

Wheels come from `--wheels-from` when a matching file is there, else `pip download` fetches them
into `<out>/wheels/` (kept as a cache for the next build); `--no-download` never touches the
network and fails when a platform has no wheel. The manifest and the zip are validated (the
keys and rules of Blender's manifest schema 1.0.0) before the command reports success.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from samroto.bridge import client_files

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the worker runs there, the build needs 3.11
    tomllib = None  # type: ignore[assignment]

REPO = Path(__file__).resolve().parents[1]
ADDON_SOURCE = REPO / "plugins" / "blender"
BRIDGE_SOURCE = REPO / "bridge"
MANIFEST = "blender_manifest.toml"

# The client and what it imports; all relative imports, so they work as the add-on's sub-package.
# the bridge client modules bundled into the add-on (one rule, see samroto.bridge.client_files)
CLIENT_FILES = tuple(client_files(str(BRIDGE_SOURCE)))
BUNDLED_BRIDGE = "bridge"

# Pinned for reproducible zips; the worker is tested against the same versions.
WHEEL_REQUIREMENTS = ("pyzmq==27.3.0", "msgpack==1.2.4")
PYTHON_VERSION = "3.11"  # Blender 4.2 LTS to 5.0

# Blender platform name -> pip `--platform` tags to ask for (pip also accepts older compatible
# tags, so these are upper bounds: manylinux_2_28 takes manylinux2014 wheels too).
PLATFORM_TAGS: dict[str, tuple[str, ...]] = {
    "linux-x64": ("manylinux_2_28_x86_64",),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64",),
    "macos-x64": ("macosx_10_15_x86_64",),
}
ALL_PLATFORMS = tuple(PLATFORM_TAGS)

# What a wheel's platform tag must look like to serve a Blender platform.
_PLATFORM_PATTERNS: dict[str, re.Pattern[str]] = {
    "linux-x64": re.compile(r"^(manylinux\d*_?\w*_x86_64|musllinux_\d+_\d+_x86_64)$"),
    "windows-x64": re.compile(r"^win_amd64$"),
    "macos-arm64": re.compile(r"^macosx_\d+_\d+_(arm64|universal2)$"),
    "macos-x64": re.compile(r"^macosx_\d+_\d+_(x86_64|universal2|intel)$"),
}

# Manifest schema 1.0.0 (https://developer.blender.org/docs/features/extensions/schema/1.0.0/).
REQUIRED_KEYS = ("schema_version", "id", "version", "name", "tagline", "maintainer", "type",
                 "blender_version_min", "license")
KNOWN_PERMISSIONS = ("files", "network", "clipboard", "camera", "microphone")
MAX_TAGLINE = 64
MAX_PERMISSION_REASON = 64
_SEMVER = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")
_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_EXCLUDED_DIRS = {"__pycache__", ".mypy_cache", ".pytest_cache", "wheels", BUNDLED_BRIDGE}
_EXCLUDED_SUFFIXES = (".pyc", ".pyo", ".zip", ".whl", ".blend1")


class BuildError(RuntimeError):
    """The extension cannot be built or is invalid; the message says what to fix."""


@dataclass(frozen=True)
class Wheel:
    """A wheel file and what its name says about it."""

    path: Path
    distribution: str
    version: str
    python_tags: tuple[str, ...]
    abi_tags: tuple[str, ...]
    platform_tags: tuple[str, ...]

    @classmethod
    def parse(cls, path: Path) -> "Wheel | None":
        """None when the file name is not `name-version[-build]-python-abi-platform.whl`."""
        if not path.name.endswith(".whl"):
            return None
        parts = path.name[:-4].split("-")
        if len(parts) not in (5, 6):
            return None
        name, version, python, abi, platform = parts[0], parts[1], parts[-3], parts[-2], parts[-1]
        return cls(path, name.lower().replace("_", "-"), version, tuple(python.split(".")), tuple(abi.split(".")),
                   tuple(platform.split(".")))

    def runs_on(self, platform: str, python_version: str = PYTHON_VERSION) -> bool:
        """Whether Blender on `platform` with CPython `python_version` can use this wheel."""
        cp = "cp" + python_version.replace(".", "")
        python_ok = cp in self.python_tags or "py3" in self.python_tags or (
            "abi3" in self.abi_tags and any(t.startswith("cp3") and int(t[3:] or 0) <= int(cp[3:])
                                            for t in self.python_tags))
        if "any" in self.platform_tags:
            return python_ok
        pattern = _PLATFORM_PATTERNS[platform]
        return python_ok and any(pattern.match(tag) for tag in self.platform_tags)


@dataclass
class BuildResult:
    zip_path: Path
    wheels: list[str]
    platforms: list[str]
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Wheels


def requirement_name(requirement: str) -> str:
    """`pyzmq==27.3.0` -> `pyzmq` (normalised the way wheel file names are)."""
    return re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0].strip().lower().replace("_", "-")


def find_wheel(folders: Iterable[Path], requirement: str, platform: str) -> Wheel | None:
    """A wheel in `folders` for `requirement`'s distribution (and pinned version) on `platform`."""
    name = requirement_name(requirement)
    pinned = requirement.split("==", 1)[1].strip() if "==" in requirement else None
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.whl")):
            wheel = Wheel.parse(path)
            if (wheel is not None and wheel.distribution == name and (pinned is None or wheel.version == pinned)
                    and wheel.runs_on(platform)):
                return wheel
    return None


def download_wheels(requirements: Sequence[str], platform: str, dest: Path) -> None:
    """`pip download` the cp311 binary wheels of `requirements` for one Blender platform."""
    dest.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", "--no-deps",
               "--python-version", PYTHON_VERSION, "--implementation", "cp", "--dest", str(dest), "--quiet"]
    for tag in PLATFORM_TAGS[platform]:
        command += ["--platform", tag]
    command += list(requirements)
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        raise BuildError("pip could not download %s for %s (%s):\n%s" % (
            ", ".join(requirements), platform, " ".join(PLATFORM_TAGS[platform]),
            (completed.stderr or completed.stdout).strip()[-2000:]))


def collect_wheels(platforms: Sequence[str], *, wheels_from: Path | None, cache: Path, download: bool,
                   requirements: Sequence[str] = WHEEL_REQUIREMENTS) -> list[Wheel]:
    """One wheel per requirement and platform (a universal2 wheel serves both macOS platforms)."""
    folders = [p for p in (wheels_from, cache) if p is not None]
    chosen: dict[Path, Wheel] = {}
    for platform in platforms:
        missing = [r for r in requirements if find_wheel(folders, r, platform) is None]
        if missing and download:
            download_wheels(missing, platform, cache)
            missing = [r for r in requirements if find_wheel(folders, r, platform) is None]
        if missing:
            where = " or ".join(str(f) for f in folders) or "no folder"
            raise BuildError("no %s wheel for %s (CPython %s) in %s%s" % (
                ", ".join(missing), platform, PYTHON_VERSION, where,
                "; drop --no-download to fetch it from PyPI" if not download else ""))
        for requirement in requirements:
            wheel = find_wheel(folders, requirement, platform)
            assert wheel is not None
            chosen.setdefault(wheel.path.resolve(), wheel)
    return sorted(chosen.values(), key=lambda w: w.path.name)


# ---------------------------------------------------------------------------------------------
# Staging: the extension folder as Blender will see it


def _copy_tree(source: Path, dest: Path) -> None:
    for path in sorted(source.rglob("*")):
        relative = path.relative_to(source)
        if any(part in _EXCLUDED_DIRS or part.startswith(".") for part in relative.parts):
            continue
        if path.is_dir() or path.name.endswith(_EXCLUDED_SUFFIXES):
            continue
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)


def _set_top_level_list(manifest_text: str, key: str, values: Sequence[str]) -> str:
    """The manifest with `key = [...]` set at top level (before the first table), replacing any old value."""
    lines = manifest_text.splitlines()
    out: list[str] = []
    skipping = False
    for line in lines:
        if skipping:
            if line.rstrip().endswith("]"):
                skipping = False
            continue
        if re.match(r"^\s*%s\s*=" % re.escape(key), line):
            skipping = not line.rstrip().endswith("]")
            continue
        out.append(line)
    entries = "".join('\n  "%s",' % v for v in values)
    block = "%s = [%s\n]" % (key, entries)
    first_table = next((i for i, line in enumerate(out) if line.lstrip().startswith("[")
                        and not re.match(r"^\s*\w+\s*=", line)), len(out))
    while first_table > 0 and not out[first_table - 1].strip():
        first_table -= 1
    out[first_table:first_table] = [block]
    return "\n".join(out) + "\n"


def stage_extension(dest: Path, *, wheels: Sequence[Wheel] = (), platforms: Sequence[str] | None = None,
                    addon_source: Path = ADDON_SOURCE, bridge_source: Path = BRIDGE_SOURCE) -> Path:
    """Lay the extension out in `dest` (created, must be empty or absent): add-on files, the
    bridge client as `dest/bridge/`, wheels in `dest/wheels/` with the manifest listing them.

    Tests use this too (without wheels) to import the add-on exactly as the zip ships it.
    """
    if not (addon_source / MANIFEST).is_file():
        raise BuildError("no %s in %s: run from a samroto checkout (the add-on source is not installed "
                         "with the package)" % (MANIFEST, addon_source))
    if dest.exists() and any(dest.iterdir()):
        raise BuildError("staging folder %s is not empty" % dest)
    dest.mkdir(parents=True, exist_ok=True)
    _copy_tree(addon_source, dest)
    bundled = dest / BUNDLED_BRIDGE
    bundled.mkdir()
    for name in CLIENT_FILES:
        source = bridge_source / name
        if not source.is_file():
            raise BuildError("bridge client file %s is missing" % source)
        shutil.copy2(source, bundled / name)
    text = (dest / MANIFEST).read_text(encoding="utf-8")
    if wheels:
        (dest / "wheels").mkdir()
        for wheel in wheels:
            shutil.copy2(wheel.path, dest / "wheels" / wheel.path.name)
        text = _set_top_level_list(text, "wheels", ["./wheels/" + w.path.name for w in wheels])
    if platforms:
        text = _set_top_level_list(text, "platforms", list(platforms))
    (dest / MANIFEST).write_text(text, encoding="utf-8")
    return dest


# ---------------------------------------------------------------------------------------------
# Validation


def _read_toml(text: str) -> dict[str, Any]:
    if tomllib is None:
        raise BuildError("building the Blender extension needs Python 3.11 or newer (tomllib)")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise BuildError("%s is not valid TOML: %s" % (MANIFEST, exc)) from None


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("-")[0].split("+")[0].split("."))


def validate_manifest(manifest: Mapping[str, Any], files: Iterable[str] = ()) -> list[str]:
    """Problems with a parsed manifest (empty list when valid). `files`: paths in the package,
    relative to its root with forward slashes, used to check that listed wheels are there."""
    problems: list[str] = []
    for key in REQUIRED_KEYS:
        if key not in manifest:
            problems.append("missing required key %r" % key)
    for key, value in manifest.items():
        if value in ("", [], {}):
            problems.append("optional key %r is present but empty (leave it out)" % key)
    if manifest.get("schema_version", "1.0.0") != "1.0.0":
        problems.append("schema_version must be \"1.0.0\", got %r" % manifest.get("schema_version"))
    ext_id = manifest.get("id", "x")
    if not isinstance(ext_id, str) or not _ID.match(ext_id):
        problems.append("id must start with a letter and hold only letters, digits and _, got %r" % ext_id)
    for key in ("version", "blender_version_min", "blender_version_max"):
        value = manifest.get(key)
        if value is not None and (not isinstance(value, str) or not _SEMVER.match(value)):
            problems.append("%s must be a semantic version like \"4.2.0\", got %r" % (key, value))
    tagline = manifest.get("tagline", "")
    if not isinstance(tagline, str) or len(tagline) > MAX_TAGLINE:
        problems.append("tagline must be a string of at most %d characters, got %d" % (MAX_TAGLINE, len(str(tagline))))
    elif tagline and not tagline[-1].isalnum():
        problems.append("tagline must not end with punctuation: %r" % tagline)
    if manifest.get("type", "add-on") not in ("add-on", "theme"):
        problems.append("type must be \"add-on\" or \"theme\", got %r" % manifest.get("type"))
    minimum = manifest.get("blender_version_min")
    if isinstance(minimum, str) and _SEMVER.match(minimum):
        if _version_tuple(minimum) < (4, 2, 0):
            problems.append("blender_version_min must be at least 4.2.0 (extensions), got %s" % minimum)
        maximum = manifest.get("blender_version_max")
        if isinstance(maximum, str) and _SEMVER.match(maximum) and _version_tuple(maximum) <= _version_tuple(minimum):
            problems.append("blender_version_max %s must be above blender_version_min %s" % (maximum, minimum))
    licenses = manifest.get("license", ["SPDX:x"])
    if not isinstance(licenses, list) or not licenses or not all(
            isinstance(x, str) and x.startswith("SPDX:") for x in licenses):
        problems.append("license must be a non-empty list of \"SPDX:<identifier>\" strings, got %r" % (licenses,))
    permissions = manifest.get("permissions", {})
    if not isinstance(permissions, Mapping):
        problems.append("permissions must be a table of name = \"reason\"")
    else:
        for name, reason in permissions.items():
            if name not in KNOWN_PERMISSIONS:
                problems.append("unknown permission %r (known: %s)" % (name, ", ".join(KNOWN_PERMISSIONS)))
            if not isinstance(reason, str) or not reason.strip():
                problems.append("permission %r needs a reason" % name)
            elif reason.rstrip()[-1] in ".!?;:,":
                problems.append("permission %r reason must not end with punctuation: %r" % (name, reason))
            elif len(reason) > MAX_PERMISSION_REASON:
                problems.append("permission %r reason is longer than %d characters" % (name, MAX_PERMISSION_REASON))
    platforms = manifest.get("platforms")
    if platforms is not None:
        known = ("windows-x64", "windows-arm64", "macos-x64", "macos-arm64", "linux-x64")
        for platform in platforms:
            if platform not in known:
                problems.append("unknown platform %r (known: %s)" % (platform, ", ".join(known)))
    file_set = set(files)
    for entry in manifest.get("wheels", []) or []:
        if not isinstance(entry, str) or not entry.startswith("./") or "\\" in entry or not entry.endswith(".whl"):
            problems.append("wheel entry %r must be a ./relative/path.whl with forward slashes" % (entry,))
        elif file_set and entry[2:] not in file_set:
            problems.append("wheel %s is listed in the manifest but not in the package" % entry)
    return problems


def check_wheel_coverage(manifest: Mapping[str, Any], requirements: Sequence[str] = WHEEL_REQUIREMENTS) -> list[str]:
    """Problems when a platform in the manifest has no wheel for one of the requirements."""
    wheels = [Wheel.parse(Path(entry)) for entry in manifest.get("wheels", []) or []]
    problems = []
    for platform in manifest.get("platforms", []) or []:
        if platform not in _PLATFORM_PATTERNS:
            continue
        for requirement in requirements:
            name = requirement_name(requirement)
            if not any(w is not None and w.distribution == name and w.runs_on(platform) for w in wheels):
                problems.append("platform %s has no %s wheel" % (platform, name))
    return problems


def validate_zip(zip_path: Path) -> dict[str, Any]:
    """The manifest of a built extension zip; BuildError listing every problem found."""
    with zipfile.ZipFile(zip_path) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
        if MANIFEST not in names:
            raise BuildError("%s has no %s at its root" % (zip_path, MANIFEST))
        manifest = _read_toml(archive.read(MANIFEST).decode("utf-8"))
    problems = validate_manifest(manifest, names)
    problems += check_wheel_coverage(manifest)
    if "__init__.py" not in names:
        problems.append("no __init__.py at the root of the zip")
    for name in CLIENT_FILES:
        if "%s/%s" % (BUNDLED_BRIDGE, name) not in names:
            problems.append("bundled bridge client file %s/%s is missing" % (BUNDLED_BRIDGE, name))
    stray = [n for n in names if "__pycache__" in n or n.endswith((".pyc", ".pyo"))]
    if stray:
        problems.append("compiled Python files in the zip: %s" % ", ".join(stray[:5]))
    if problems:
        raise BuildError("invalid extension %s:\n  - %s" % (zip_path, "\n  - ".join(problems)))
    return manifest


# ---------------------------------------------------------------------------------------------
# Build


def _write_zip(folder: Path, zip_path: Path) -> None:
    """A reproducible zip: sorted entries, fixed timestamps, the extension at the root."""
    tmp = zip_path.with_suffix(".zip.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=(2024, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_STORED if path.suffix == ".whl" else zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    os.replace(tmp, zip_path)


def build(out_dir: Path, *, wheels_from: Path | None = None, download: bool = True,
          platforms: Sequence[str] = ALL_PLATFORMS, addon_source: Path = ADDON_SOURCE,
          bridge_source: Path = BRIDGE_SOURCE) -> BuildResult:
    """Build and validate `<out_dir>/samroto-<version>.zip`."""
    unknown = [p for p in platforms if p not in PLATFORM_TAGS]
    if unknown or not platforms:
        raise BuildError("platforms must be some of %s, got %s" % (", ".join(ALL_PLATFORMS), ", ".join(platforms)))
    if wheels_from is not None and not wheels_from.is_dir():
        raise BuildError("--wheels-from %s is not a folder" % wheels_from)
    out_dir.mkdir(parents=True, exist_ok=True)
    wheels = collect_wheels(platforms, wheels_from=wheels_from, cache=out_dir / "wheels", download=download)
    with tempfile.TemporaryDirectory(prefix="samroto-blender-") as tmp:
        staged = stage_extension(Path(tmp) / "samroto", wheels=wheels, platforms=platforms,
                                 addon_source=addon_source, bridge_source=bridge_source)
        manifest = _read_toml((staged / MANIFEST).read_text(encoding="utf-8"))
        problems = validate_manifest(manifest)
        if problems:
            raise BuildError("invalid %s:\n  - %s" % (addon_source / MANIFEST, "\n  - ".join(problems)))
        zip_path = out_dir / ("%s-%s.zip" % (manifest["id"], manifest["version"]))
        _write_zip(staged, zip_path)
    manifest = validate_zip(zip_path)
    return BuildResult(zip_path, [w.path.name for w in wheels], list(platforms), manifest)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m samroto.scripts.build_blender_extension",
                                     description="Build the samroto Blender extension zip (add-on, bridge client, "
                                     "pyzmq and msgpack wheels for every platform).")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="where the zip goes (downloaded wheels are cached in DIR/wheels)")
    parser.add_argument("--wheels-from", type=Path, default=None, metavar="DIR",
                        help="use wheels found in this folder before downloading")
    parser.add_argument("--no-download", action="store_true", help="never run pip download")
    parser.add_argument("--platform", dest="platforms", action="append", choices=ALL_PLATFORMS,
                        help="build for these platforms only (repeatable; default: all four)")
    args = parser.parse_args(argv)
    try:
        result = build(args.out, wheels_from=args.wheels_from, download=not args.no_download,
                       platforms=args.platforms or ALL_PLATFORMS)
    except BuildError as exc:
        print("build_blender_extension: %s" % exc, file=sys.stderr)
        return 1
    print("built %s (%s; %d wheels: %s)" % (result.zip_path, ", ".join(result.platforms), len(result.wheels),
                                           ", ".join(result.wheels)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
