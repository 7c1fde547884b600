"""The worker's log: what a farm or a support person needs to follow it, and how errors are classed.

At INFO the worker logs one line per event: session opened, loaded again, unloaded; each request
(type, session, client, outcome, duration; `status`, `ping` and `hello`, which hosts poll, only
at DEBUG); each propagation started and ended (frames sent of total, how it ended and why); and
every internal error with its traceback at ERROR. `configure` sends it to stderr and, with
`log_file`, to a file that rotates (`max_bytes`, `backups`), as text or as JSON lines.

`is_client_error` decides what a failure is: the client's (`bad_request`: a samroto check
refused the input, or a file could not be read or written) or the worker's own (`internal`:
anything raised inside a library, such as a singular matrix in numpy, or a KeyError), which is
logged with its traceback.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import traceback
from pathlib import Path
from typing import Any, Optional

LOGGER = "samroto.worker"
log = logging.getLogger(LOGGER)

TEXT_FORMAT = "%(asctime)s samroto worker %(levelname)s: %(message)s"
QUIET_REQUESTS = frozenset({"status", "ping", "hello"})  # polled by hosts: DEBUG only
DEFAULT_MAX_BYTES = 10 * 2 ** 20
DEFAULT_BACKUPS = 5


class JsonLinesFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, the event's fields, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + ".%03d" % record.msecs,
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", *, log_file: Optional[Path] = None, json_lines: bool = False,
              max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS) -> None:
    """Send the worker's log (the `samroto` loggers) to stderr and optionally to a rotating file."""
    formatter: logging.Formatter = JsonLinesFormatter() if json_lines else logging.Formatter(TEXT_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(log_file, maxBytes=max_bytes, backupCount=backups,
                                                             encoding="utf-8"))
    root = logging.getLogger("samroto")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
    root.propagate = False


def _event(level: int, message: str, **fields: Any) -> None:
    if log.isEnabledFor(level):
        text = message + "".join(" %s=%s" % (k, v) for k, v in fields.items() if v is not None)
        log.log(level, text, extra={"fields": {k: v for k, v in fields.items() if v is not None}})


def client_name(identity: bytes) -> str:
    return identity.decode("ascii", "replace")[-16:] if identity else "?"


def request_done(mtype: str, *, session: Optional[str], identity: bytes, request_id: str, seconds: float,
                 outcome: str = "ok") -> None:
    """One request answered; `outcome` is "ok" or the error code."""
    level = logging.DEBUG if mtype in QUIET_REQUESTS and outcome == "ok" else logging.INFO
    _event(level, "request %s %s" % (mtype, outcome), session=session, client=client_name(identity),
           request=request_id, seconds=round(seconds, 3))


def stream_started(*, request_id: str, session: str, identity: bytes, total: int) -> None:
    _event(logging.INFO, "propagation started", session=session, client=client_name(identity), request=request_id,
           total=total)


def stream_ended(*, request_id: str, session: str, kind: str, sent: int, total: int, seconds: float,
                 reason: Optional[str] = None) -> None:
    _event(logging.INFO, "propagation %s" % kind, session=session, request=request_id, sent=sent, total=total,
           seconds=round(seconds, 1), reason=reason)


def session_event(what: str, session: str, **fields: Any) -> None:
    """`opened`, `loaded` (reopened from disk), `unloaded`, `deleted`."""
    _event(logging.INFO, "session %s" % what, session=session, **fields)


def internal_error(what: str, exc: BaseException) -> None:
    """An error of the worker's own, with its traceback."""
    log.error("%s failed: %s: %s\n%s", what, type(exc).__name__, exc,
              "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip(),
              extra={"fields": {"error": type(exc).__name__, "what": what}})


def _package_folders() -> tuple[str, ...]:
    import samroto.bridge
    import samroto.core
    import samroto.scripts

    return tuple(os.path.dirname(os.path.abspath(m.__file__ or "")) + os.sep
                 for m in (samroto.core, samroto.bridge, samroto.scripts))


def is_client_error(exc: BaseException) -> bool:
    """Whether a failure is the client's doing (answered `bad_request`) rather than the worker's
    (`internal`, logged with its traceback)."""
    if isinstance(exc, OSError):
        return True  # an unreadable plate, an unwritable matte folder
    if not isinstance(exc, ValueError):
        return False  # KeyError, IndexError, TypeError, RuntimeError, ...: a bug or a failure inside
    if type(exc).__module__.startswith("samroto."):
        return True  # FrameError, SessionError, StrokeError, MatteError, SidecarError, ...
    # a plain ValueError is the client's only when samroto's own check raised it, not a library
    # (numpy's LinAlgError is a ValueError too)
    frames = traceback.extract_tb(exc.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(_package_folders())
