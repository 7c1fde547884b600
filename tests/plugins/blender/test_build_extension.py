"""The extension zip: manifest, bundled bridge client, wheels for every platform."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from samroto.scripts import build_blender_extension as builder

VALID = {
    "schema_version": "1.0.0", "id": "samroto", "version": "0.1.0", "name": "samroto",
    "tagline": "SAM 2 rotoscoping in the Movie Clip Editor", "maintainer": "me", "type": "add-on",
    "blender_version_min": "4.2.0", "license": ["SPDX:Apache-2.0"],
    "permissions": {"network": "Talk to the worker", "files": "Read the plates"},
}


def test_the_built_zip_is_a_valid_extension_for_four_platforms(built_extension) -> None:
    result = built_extension
    manifest = builder.validate_zip(result.zip_path)
    assert result.zip_path.name == "samroto-0.1.0.zip"
    assert manifest["id"] == "samroto" and manifest["type"] == "add-on"
    assert manifest["blender_version_min"] == "4.2.0" and manifest["blender_version_max"] == "5.1.0"
    assert sorted(manifest["platforms"]) == ["linux-x64", "macos-arm64", "macos-x64", "windows-x64"]
    assert set(manifest["permissions"]) == {"network", "files"}
    assert all(not reason.endswith(".") for reason in manifest["permissions"].values())
    assert len(manifest["tagline"]) <= 64
    assert builder.check_wheel_coverage(manifest) == []
    # one pyzmq and one msgpack wheel per platform, a universal2 pyzmq wheel serving both Macs
    wheels = [builder.Wheel.parse(Path(w)) for w in manifest["wheels"]]
    for platform in builder.ALL_PLATFORMS:
        names = sorted(w.distribution for w in wheels if w is not None and w.runs_on(platform))
        assert names == ["msgpack", "pyzmq"], platform
    with zipfile.ZipFile(result.zip_path) as archive:
        members = set(archive.namelist())
        for wheel in manifest["wheels"]:
            assert wheel.startswith("./wheels/") and wheel[2:] in members
        # the bridge client is bundled byte for byte, as a sub-package of the add-on
        for name in builder.CLIENT_FILES:
            assert archive.read("bridge/" + name) == (builder.BRIDGE_SOURCE / name).read_bytes()
        assert archive.read("__init__.py") == (builder.ADDON_SOURCE / "__init__.py").read_bytes()
        assert not any("__pycache__" in n or n.endswith(".pyc") for n in members)
        assert not any(n.startswith(("tests/", "bridge/server", "bridge/handlers")) for n in members)
    # nothing in the add-on imports torch, numpy-free paths aside, or edits sys.path
    for path in builder.ADDON_SOURCE.glob("*.py"):
        text = path.read_text()
        assert "import torch" not in text and "sys.path" not in text, path.name
    # the copy happens in a staging folder: the source tree gets no second copy of the client
    assert not (builder.ADDON_SOURCE / "bridge").exists()


def test_a_rebuild_from_the_wheel_cache_is_identical_and_offline(built_extension, tmp_path: Path) -> None:
    cache = built_extension.zip_path.parent / "wheels"
    command = [sys.executable, "-m", "samroto.scripts.build_blender_extension", "--out", str(tmp_path),
               "--wheels-from", str(cache), "--no-download"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert "built %s" % (tmp_path / "samroto-0.1.0.zip") in completed.stdout
    assert (tmp_path / "samroto-0.1.0.zip").read_bytes() == built_extension.zip_path.read_bytes()
    assert not (tmp_path / "wheels").exists() or not any((tmp_path / "wheels").iterdir())


def test_missing_wheels_without_download_fail_clearly(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(builder.BuildError,
                       match="no pyzmq==[0-9.]+, msgpack==[0-9.]+ wheel for linux-x64 .*drop --no-download"):
        builder.build(tmp_path, download=False, platforms=["linux-x64"])
    assert builder.main(["--out", str(tmp_path), "--no-download", "--platform", "windows-x64"]) == 1
    assert "wheel for windows-x64 (CPython 3.11)" in capsys.readouterr().err
    with pytest.raises(builder.BuildError, match="is not a folder"):
        builder.build(tmp_path, wheels_from=tmp_path / "nope", download=False)


def test_the_source_manifest_is_valid_without_wheels() -> None:
    manifest = tomllib.loads((builder.ADDON_SOURCE / builder.MANIFEST).read_text())
    assert builder.validate_manifest(manifest) == []
    assert "wheels" not in manifest and "platforms" not in manifest  # the build script writes them


@pytest.mark.parametrize("change, problem", [
    (lambda m: m.pop("maintainer"), "missing required key 'maintainer'"),
    (lambda m: m.update(schema_version="2.0.0"), "schema_version must be"),
    (lambda m: m.update(tagline="x" * 65), "at most 64 characters"),
    (lambda m: m.update(tagline="Rotoscoping."), "must not end with punctuation"),
    (lambda m: m.update(id="1samroto"), "id must start with a letter"),
    (lambda m: m.update(version="1.0"), "version must be a semantic version"),
    (lambda m: m.update(blender_version_min="4.1.0"), "at least 4.2.0"),
    (lambda m: m.update(blender_version_max="4.2.0"), "must be above blender_version_min"),
    (lambda m: m.update(license=["Apache-2.0"]), "SPDX:"),
    (lambda m: m.update(type="plugin"), "type must be"),
    (lambda m: m["permissions"].update(network="Talk to the worker."), "must not end with punctuation"),
    (lambda m: m["permissions"].update(gpu="Use the GPU"), "unknown permission 'gpu'"),
    (lambda m: m["permissions"].update(files=""), "permission 'files' needs a reason"),
    (lambda m: m.update(platforms=["linux-arm64"]), "unknown platform 'linux-arm64'"),
    (lambda m: m.update(wheels=["wheels\\x.whl"]), "forward slashes"),
    (lambda m: m.update(wheels=["./wheels/absent-1.0-py3-none-any.whl"]), "not in the package"),
    (lambda m: m.update(tags=[]), "present but empty"),
])
def test_manifest_problems_are_found(change, problem: str) -> None:
    manifest = {k: (dict(v) if isinstance(v, dict) else v) for k, v in VALID.items()}
    assert builder.validate_manifest(manifest, ["__init__.py"]) == []
    change(manifest)
    problems = builder.validate_manifest(manifest, ["__init__.py"])
    assert any(problem in p for p in problems), problems


def test_wheel_names_and_platforms() -> None:
    zmq_mac = builder.Wheel.parse(Path("pyzmq-27.3.0-cp311-cp311-macosx_10_15_universal2.whl"))
    assert zmq_mac is not None and zmq_mac.distribution == "pyzmq" and zmq_mac.version == "27.3.0"
    assert zmq_mac.runs_on("macos-arm64") and zmq_mac.runs_on("macos-x64") and not zmq_mac.runs_on("linux-x64")
    linux = builder.Wheel.parse(Path(
        "msgpack-1.2.4-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64.manylinux_2_28_x86_64.whl"))
    assert linux.runs_on("linux-x64") and not linux.runs_on("windows-x64")
    assert not linux.runs_on("linux-x64", python_version="3.12")
    arm = builder.Wheel.parse(Path("msgpack-1.2.4-cp311-cp311-macosx_11_0_arm64.whl"))
    assert arm.runs_on("macos-arm64") and not arm.runs_on("macos-x64")
    pure = builder.Wheel.parse(Path("six-1.16.0-py2.py3-none-any.whl"))
    assert all(pure.runs_on(p) for p in builder.ALL_PLATFORMS)
    assert builder.Wheel.parse(Path("notawheel.zip")) is None
    assert builder.requirement_name("PyZMQ==27.3.0") == "pyzmq"
