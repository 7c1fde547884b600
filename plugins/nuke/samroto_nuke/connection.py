"""The bridge client, and clear words for everything that can go wrong talking to the worker.

An installed plug-in carries the client as the sub-package `samroto_nuke.bridge` (copied from the
repository's `bridge/` by `scripts/install_nuke_plugin.py`, with pyzmq and msgpack in the
plug-in's `site-packages/<platform>/py3X`). In a development checkout that sub-package is absent
and `samroto.bridge` is used instead.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import TYPE_CHECKING, List, Optional, Tuple

from .plate import UnsupportedInput
from .prompts import NoPrompts
from .roto_plan import ShapeDataError
from .settings import ConnectionSettings

if TYPE_CHECKING:  # the names the plug-in uses; at run time they come from load_client()
    from samroto.bridge.client import Client

_BUNDLED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bridge", "client.py")


class ClientUnavailable(RuntimeError):
    """The bridge client (or pyzmq/msgpack) cannot be imported inside this Nuke."""


def load_client() -> ModuleType:
    """The bridge client module: the bundled copy when present, else `samroto.bridge.client`."""
    name = __name__.rsplit(".", 1)[0] + ".bridge.client" if os.path.isfile(_BUNDLED) else "samroto.bridge.client"
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or str(exc)
        raise ClientUnavailable(
            "SamRoto cannot load its worker client (%s missing). Reinstall the plug-in with "
            "`python -m samroto.scripts.install_nuke_plugin --dest <folder on NUKE_PATH>`, which bundles the client "
            "and installs pyzmq and msgpack for this Nuke's Python" % missing) from None


def load_protocol() -> ModuleType:
    """The bridge protocol module (stdlib only: loads without pyzmq), bundled or `samroto.bridge.protocol`."""
    bundled = os.path.join(os.path.dirname(_BUNDLED), "protocol.py")
    name = __name__.rsplit(".", 1)[0] + ".bridge.protocol" if os.path.isfile(bundled) else "samroto.bridge.protocol"
    return importlib.import_module(name)


def memory_modes() -> List[Tuple[str, str]]:
    """(name, when to use it) of every memory mode, the default first; exact SAM 2 alone when the
    client cannot be loaded (the node still builds)."""
    try:
        return [(str(name), str(line)) for name, line in load_protocol().MEMORY_MODES]
    except (ImportError, AttributeError):
        return [("sam2", "Exact SAM 2.")]


class WorkerUnreachable(RuntimeError):
    """The worker did not answer the quick ping that precedes every job."""

    def __init__(self, address: str, timeout_s: float) -> None:
        super().__init__("No SamRoto worker answers at %s (no reply to a ping within %.1f s). Press \"Start worker\" "
                         "on the SamRoto node to start one on this machine, or start one on the GPU machine with\n"
                         "    samroto worker --model <checkpoint.pt>\n"
                         "and set its address in the node's \"worker\" knob (or SamRoto > Worker address...)."
                         % (address, timeout_s))
        self.address = address


def connect(settings: ConnectionSettings) -> "Client":
    """A new client (one per thread: clients are not thread-safe), after a quick ping: a worker
    that does not answer within `settings.ping_timeout_s` raises WorkerUnreachable at once
    instead of after the long request timeout and its retries. Raises the client's
    AuthenticationError when no token file is found."""
    module = load_client()
    client: Client = module.Client(settings.address, timeout=settings.ping_timeout_s, retries=0,
                                   config_dir=settings.config_dir, as_numpy=False)
    try:
        client.ping()
    except Exception as exc:
        client.close()
        if type(exc).__name__ == "ConnectionTimeout":
            raise WorkerUnreachable(client.address, settings.ping_timeout_s) from None
        raise
    client.timeout, client.retries = float(settings.timeout_s), int(settings.retries)
    return client


def describe_error(exc: BaseException, *, address: Optional[str] = None) -> str:
    """One paragraph for the artist: what went wrong and what to do about it."""
    kind = type(exc).__name__
    text = str(exc)
    where = (" at %s" % address) if address else ""
    if isinstance(exc, (UnsupportedInput, NoPrompts, ShapeDataError, ClientUnavailable, WorkerUnreachable)):
        return text
    if kind == "ConnectionTimeout":
        return ("No SamRoto worker answers%s. Start one on the GPU machine with\n"
                "    samroto worker --model <checkpoint.pt>\n"
                "(or press \"Start worker\" on the SamRoto node), then try again." % where)
    if kind == "AuthenticationError":
        return ("The worker%s refused SamRoto's token (wrong token, or no token file). Nuke must read the same "
                "token as the worker: point SAMROTO_CONFIG_DIR at the worker's config folder, or copy its token "
                "file.\nDetails: %s" % (where, text))
    if kind == "ProtocolMismatch":
        return "The worker and this plug-in speak different protocol versions: update the older one.\n%s" % text
    if kind == "NotImplementedByWorker":
        return "This worker cannot do that yet (update the worker).\n%s" % text
    if kind == "WorkerBusy":
        return "The worker is busy (another propagation of this shot is running, or its queue is full). " \
               "Wait or cancel it.\n%s" % text
    if kind == "NoSuchSession":
        return "The worker no longer has this shot's session; press a track button again to open a new one.\n%s" % text
    if kind == "BadRequest":
        return "The worker refused the request: %s" % text
    if kind in ("RemoteError", "BridgeError"):
        return "The worker reported an error: %s" % text
    if isinstance(exc, ValueError):
        return text
    return "SamRoto failed: %s: %s" % (kind, text)


def is_bridge_error(exc: BaseException) -> bool:
    """Whether `exc` comes from the client (any copy of it)."""
    return any(c.__name__ == "BridgeError" for c in type(exc).__mro__)

