"""Connection-level authentication (ZeroMQ's ZAP): a peer is checked during the handshake,
before the worker accepts a single message from it.

Without this, ZeroMQ would read a whole multipart message from anyone who connects (its size
limit is per part, not per message) before the worker could check the signature. With it:

- on a **loopback** bind the ROUTER is a PLAIN server and a client must give the password
  derived from the token (`auth.plain_password`); PLAIN sends it in clear, which on loopback
  only the machine's administrator could read, and the token itself never travels;
- on a **network** bind the ROUTER is a CURVE server and a client's public key must be in the
  worker's authorised-keys file (`<config>/curve/authorized_keys`, like SSH's), re-read when it
  changes, so `samroto keys add KEY` takes effect on a running worker.

Unknown peers are refused at the handshake: they never reach the I/O thread.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from pathlib import Path
from typing import Optional

import zmq
from zmq.utils import z85

from .. import auth

log = logging.getLogger("samroto.worker")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"


class ZapHandler:
    """Answers the context's ZAP requests on its own thread (cheap checks only)."""

    def __init__(self, context: zmq.Context, *, password: Optional[str] = None,
                 authorized_keys: Optional[Path] = None) -> None:
        self._context = context
        self._password = password.encode("ascii") if password is not None else None
        self._keys_path = authorized_keys
        self._keys: frozenset = frozenset()
        self._keys_stamp: Optional[tuple] = None
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="samroto-zap", daemon=True)
        self.accepted = 0
        self.refused = 0
        self._last_log = 0.0

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the ZAP handler did not start")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        sock = self._context.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(ZAP_ENDPOINT)
        self._ready.set()
        try:
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                request = sock.recv_multipart()
                try:
                    answer = self._answer(request)
                except Exception:  # never let the handler thread die: refuse instead
                    log.exception("the ZAP handler failed on a request")
                    answer = [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"internal error", b"", b""]
                sock.send_multipart(answer)
        finally:
            sock.close(linger=0)

    def _answer(self, request: list) -> list:
        if len(request) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, _domain, address, _identity, mechanism = request[:6]
        credentials = request[6:]
        ok, user = False, b""
        if version == b"1.0":
            if mechanism == b"PLAIN" and self._password is not None and len(credentials) == 2:
                ok = (hmac.compare_digest(credentials[0], auth.PLAIN_USERNAME.encode("ascii"))
                      and hmac.compare_digest(credentials[1], self._password))
                user = credentials[0]
            elif mechanism == b"CURVE" and self._keys_path is not None and len(credentials) == 1:
                key = z85.encode(credentials[0])
                ok = key in self._authorized_keys()
                user = key
        if ok:
            self.accepted += 1
            return [b"1.0", request_id, b"200", b"OK", user, b""]
        self.refused += 1
        now = time.monotonic()
        if now - self._last_log > 10:  # a flood of refused handshakes must not flood the log
            self._last_log = now
            log.warning("refused a %s connection from %s (%d refused so far): %s", mechanism.decode(errors="replace"),
                        address.decode(errors="replace"), self.refused,
                        "unknown client key (add it with `samroto keys add`)" if mechanism == b"CURVE"
                        else "wrong credentials (not this worker's token)")
        return [b"1.0", request_id, b"400", b"not authorised", b"", b""]

    def _authorized_keys(self) -> frozenset:
        """The authorised keys, re-read when the file changes (a missing file authorises nobody)."""
        assert self._keys_path is not None
        try:
            st = os.stat(self._keys_path)
            stamp: Optional[tuple] = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            stamp = None
        if stamp != self._keys_stamp:
            self._keys_stamp = stamp
            try:
                self._keys = frozenset(auth.read_authorized_keys(self._keys_path)) if stamp else frozenset()
            except (OSError, auth.AuthError) as exc:
                log.error("cannot read the authorised keys: %s; no client key is accepted until it is fixed", exc)
                self._keys = frozenset()
        return self._keys
