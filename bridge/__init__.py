"""samroto.bridge: the worker protocol, its codec, the worker server and the client.

Importing this package must not import torch: the add-ons load the client inside
Blender and Nuke (Python 3.9 to 3.11). The server lives in `samroto.bridge.server`.

The client names below are loaded on first use, so `import samroto.bridge` needs
neither pyzmq nor msgpack until a client is made.
"""

from __future__ import annotations

from typing import Any

from .protocol import PROTOCOL_VERSION

_CLIENT_NAMES = (
    "Client", "RemoteSession", "Propagation", "FrameUpdate", "FrameMattes", "WorkerInfo", "pushed_plate",
    "find_worker_address", "BridgeError", "ConnectionTimeout", "AuthenticationError", "ProtocolMismatch",
    "RemoteError", "BadRequest", "NoSuchSession", "WorkerBusy", "NotImplementedByWorker", "PropagationCancelled",
    "Stream",
)

__all__ = ["PROTOCOL_VERSION", *_CLIENT_NAMES]


def __getattr__(name: str) -> Any:
    if name in _CLIENT_NAMES:
        from . import client

        return getattr(client, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
