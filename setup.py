"""Maps the code folders to the `samroto` packages, finding every subpackage (metadata: pyproject.toml)."""

from setuptools import find_packages, setup

FOLDERS = ("core", "bridge", "scripts")

setup(
    package_dir={f"samroto.{folder}": folder for folder in FOLDERS},
    packages=[f"samroto.{name}" for name in find_packages(".", include=[f"{f}" for f in FOLDERS] + [f"{f}.*" for f in FOLDERS])],
)
