"""How a request fails: `RequestError` (an `error` reply with a protocol code) and its helpers.
Shared by the handlers, the session registry, the scheduler and the server."""

from __future__ import annotations

from .. import protocol


class RequestError(Exception):
    """A request that cannot be served; becomes an `error` reply with `code`."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def bad(message: str) -> RequestError:
    """A valid message with invalid arguments (`bad_request`)."""
    return RequestError(protocol.E_BAD_REQUEST, message)


def over_limit(message: str) -> RequestError:
    """A request that would pass one of the worker's caps (`over_limit`)."""
    return RequestError(protocol.E_LIMIT, message)


def describe_error(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, KeyError):
        text = "missing %s" % text
    return text if len(text) <= 2000 else text[:1997] + "..."
