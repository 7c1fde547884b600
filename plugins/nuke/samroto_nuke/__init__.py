"""SamRoto for Nuke: SAM 2 rotoscoping through a resident samroto worker.

Only `samroto_nuke.host` imports `nuke`; every other module is plain Python 3.9+ and is tested
without Nuke. This package file stays cheap: Nuke imports it from init.py in every session,
render and terminal sessions included.
"""

from __future__ import annotations

import os
import platform
import sys
from typing import List, Optional, Tuple

__version__ = "0.1.0"

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The plug-in folder (the one on NUKE_PATH, holding init.py and menu.py)."""


def platform_key(system: Optional[str] = None, machine: Optional[str] = None) -> str:
    """`linux-x86_64`, `windows-x86_64`, `macos-arm64`, ...: the folder name of the compiled
    dependencies for this machine."""
    system = (system or platform.system()).lower()
    machine = (machine or platform.machine()).lower()
    os_name = {"darwin": "macos", "win32": "windows"}.get(system, system)
    arch = {"amd64": "x86_64", "x64": "x86_64", "aarch64": "arm64"}.get(machine, machine)
    return "%s-%s" % (os_name, arch)


def dependency_folder(plugin_dir: str = PLUGIN_DIR, version: Optional[Tuple[int, int]] = None,
                      key: Optional[str] = None) -> str:
    """`<plug-in>/site-packages/<platform>/py3X`: pyzmq and msgpack for this Python and machine."""
    major, minor = (version or sys.version_info)[:2]
    return os.path.join(plugin_dir, "site-packages", key or platform_key(), "py%d%d" % (major, minor))


def add_dependency_path(plugin_dir: str = PLUGIN_DIR) -> List[str]:
    """Put this Nuke's dependency folder on sys.path (once); returns the folders added. Prints
    a warning, and adds nothing, when the install script did not fill it for this Python."""
    folder = dependency_folder(plugin_dir)
    if not os.path.isdir(folder):
        print("SamRoto: no dependencies for Python %d.%d on %s in %s; run "
              "`python -m samroto.scripts.install_nuke_plugin --dest %s --python %d.%d`"
              % (sys.version_info[0], sys.version_info[1], platform_key(), folder, plugin_dir,
                 sys.version_info[0], sys.version_info[1]))
        return []
    if folder in sys.path:
        return []
    sys.path.insert(0, folder)
    return [folder]
