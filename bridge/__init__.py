"""samroto.bridge: the worker protocol, its codec, the worker server and the client.

Importing this package must not import torch: the add-ons load the client inside
Blender and Nuke (Python 3.9 to 3.11). The server lives in `samroto.bridge.worker.server`.

The client names below are loaded on first use, so `import samroto.bridge` needs
neither pyzmq nor msgpack until a client is made.
"""

from __future__ import annotations

import os
from typing import Any, List, Optional

from .protocol import PROTOCOL_VERSION

_CLIENT_NAMES = (
    "Client", "RemoteSession", "Propagation", "FrameUpdate", "FrameMattes", "ReviewFrame", "WorkerInfo", "pushed_plate",
    "find_worker_address", "BridgeError", "ConnectionTimeout", "AuthenticationError", "ProtocolMismatch",
    "RemoteError", "BadRequest", "NoSuchSession", "WorkerBusy", "NotImplementedByWorker", "PropagationCancelled",
    "Stream",
)

__all__ = ["PROTOCOL_VERSION", "client_files", *_CLIENT_NAMES]


def client_files(folder: Optional[str] = None) -> List[str]:
    """The modules the add-ons bundle: every `.py` file directly in the bridge folder.

    The rule is the folder itself: the worker lives in the `worker/` subpackage and is never
    bundled, so a new client module is picked up by the Blender build, the Nuke installer and
    the portability tests alike.
    """
    folder = folder or os.path.dirname(os.path.abspath(__file__))
    return sorted(name for name in os.listdir(folder) if name.endswith(".py"))


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from . import client

        return getattr(client, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
