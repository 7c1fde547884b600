"""The artist's SamRoto preferences, kept between Nuke sessions: the worker's address, the shared
folder for rendered plates, and the command that starts a local worker.

A JSON file, `$SAMROTO_NUKE_PREFERENCES` or `~/.nuke/samroto_preferences.json`. A node's own
knobs win over the preferences; the preferences win over `$SAMROTO_WORKER`/`$SAMROTO_RENDER_DIR`
and the worker's announced address.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field, fields
from typing import Dict, List, Optional


def preferences_path() -> str:
    return os.environ.get("SAMROTO_NUKE_PREFERENCES") or os.path.join(os.path.expanduser("~"), ".nuke",
                                                                       "samroto_preferences.json")


@dataclass
class Preferences:
    """worker_address: `tcp://host:port` ("" : `$SAMROTO_WORKER`, else the address the worker
    announced in the config folder); render_dir: where plates of non-Read upstreams are rendered,
    a folder the worker's machine can read ("" : `$SAMROTO_RENDER_DIR`, else the temp folder,
    which only a local worker sees); worker_command: how "Start worker" starts a local worker."""

    worker_address: str = ""
    render_dir: str = ""
    worker_command: List[str] = field(default_factory=lambda: ["samroto", "worker"])

    def __post_init__(self) -> None:
        if not isinstance(self.worker_command, list) or not all(isinstance(a, str) for a in self.worker_command):
            raise ValueError("worker_command must be a list of strings")
        if self.worker_address and not self.worker_address.startswith(("tcp://", "ipc://")):
            raise ValueError("the worker address must look like tcp://host:port, got %r" % self.worker_address)
        if self.render_dir and not os.path.isabs(self.render_dir):
            raise ValueError("the render folder must be an absolute path, got %r" % self.render_dir)


def load_preferences(path: Optional[str] = None) -> Preferences:
    """The saved preferences (defaults when there is no file; a broken file is reported)."""
    path = path or preferences_path()
    if not os.path.isfile(path):
        return Preferences()
    try:
        with open(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
        known = {f.name for f in fields(Preferences)}
        return Preferences(**{k: v for k, v in dict(data).items() if k in known})
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError("SamRoto's preferences file %s is damaged (%s): fix or delete it" % (path, exc)) from None


def save_preferences(preferences: Preferences, path: Optional[str] = None) -> str:
    """Write the preferences atomically; returns the file."""
    path = path or preferences_path()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".samroto_prefs", dir=os.path.dirname(path) or ".")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(asdict(preferences), out, indent=2)
    os.replace(temporary, path)
    return path


def worker_address(node_knob: str, preferences: Preferences) -> Optional[str]:
    """The address to connect to (None: let the client find it)."""
    return node_knob.strip() or preferences.worker_address or None


def render_folder(node_knob: str, preferences: Preferences) -> Optional[str]:
    """The folder for rendered plates (None: `plate.render_folder`'s default)."""
    folder = node_knob.strip() or preferences.render_dir
    if folder and not os.path.isabs(folder):
        raise ValueError("the render folder must be an absolute path, got %r" % folder)
    return folder or None


def parse_command(text: str) -> List[str]:
    """A worker command typed by the artist, split like a shell does."""
    command = shlex.split(text, posix=os.name != "nt")
    if not command:
        raise ValueError("the worker command is empty")
    return command


def start_worker(command: List[str], *, log_path: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None) -> "subprocess.Popen[bytes]":
    """Start a worker process that outlives Nuke's interaction (its own session, output to a
    log file in the temp folder). The caller pings it until it answers."""
    log_path = log_path or os.path.join(tempfile.gettempdir(), "samroto_worker.log")
    log = open(log_path, "ab")
    try:
        if os.name == "nt":
            return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                    creationflags=getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0))
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True)
    except OSError as exc:
        raise ValueError("could not start the worker with `%s`: %s (set the command in SamRoto > Preferences)"
                         % (" ".join(command), exc)) from None
    finally:
        log.close()
