"""`samroto worker`: the resident worker that serves Blender, Nuke and scripts.

Loads the model once, then serves many clients and sessions over ZeroMQ until SIGINT or
SIGTERM (it finishes the frame in flight, flushes the sessions and exits 0). Binds loopback
by default; any other address needs CURVE (keys are created in the config folder).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from samroto.bridge import auth, protocol

DEFAULT_MODEL = "sam2.1_hiera_tiny"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=os.environ.get("SAMROTO_MODEL", DEFAULT_MODEL), metavar="PATH|NAME",
                        help="checkpoint file, or an official model name found in the cache (default: "
                        "$SAMROTO_MODEL or %(default)s)")
    parser.add_argument("--config", metavar="JSON", default=None,
                        help="model configuration: a JSON file or JSON text (default: inferred from the checkpoint)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="where the model runs (default: cuda when available)")
    parser.add_argument("--bind", default=protocol.DEFAULT_ADDRESS, metavar="tcp://HOST:PORT",
                        help="address to listen on (default %(default)s; port 0 picks a free one); a non-loopback "
                        "address requires CURVE")
    parser.add_argument("--session-dir", type=Path, default=None, metavar="DIR",
                        help="where sessions are kept (default: $SAMROTO_SESSION_DIR or the user data folder)")
    parser.add_argument("--client-timeout", type=float, default=60.0, metavar="S",
                        help="cancel a propagation whose client stays silent this long without credit "
                        "(default %(default)s)")
    parser.add_argument("--max-message-mb", type=float, default=protocol.DEFAULT_LIMITS.max_message_bytes / 2 ** 20,
                        metavar="MB", help="largest message accepted (default %(default).0f)")
    parser.add_argument("--max-loaded-sessions", type=int, default=8, metavar="N",
                        help="sessions kept in memory; older ones are saved and reopened on demand (default 8)")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s samroto worker %(levelname)s: %(message)s")
    log = logging.getLogger("samroto.worker")
    from samroto.bridge.server import ModelEngine, Worker, WorkerConfig, default_session_dir

    if not auth.is_local_address(args.bind):
        log.info("%s is not a loopback address: CURVE encryption is on; clients need %s and the token",
                 args.bind, auth.curve_dir() / auth.CURVE_PUBLIC_FILE)
    if args.max_message_mb <= 0:
        print("samroto worker: --max-message-mb must be positive", file=sys.stderr)
        return 2
    limits = dataclasses.replace(protocol.DEFAULT_LIMITS, max_message_bytes=int(args.max_message_mb * 2 ** 20))
    limits = dataclasses.replace(limits, max_body_bytes=min(limits.max_body_bytes, limits.max_message_bytes))
    config = WorkerConfig(bind=args.bind, session_dir=args.session_dir or default_session_dir(), limits=limits,
                          client_timeout_s=args.client_timeout, max_loaded_sessions=max(1, args.max_loaded_sessions))
    try:
        token = auth.load_or_create_token()
    except auth.AuthError as exc:
        print("samroto worker: %s" % exc, file=sys.stderr)
        return 2
    config.token = token
    log.info("loading %s", args.model)
    try:
        engine = ModelEngine(args.model, config=args.config, device=args.device)
    except (ValueError, OSError, RuntimeError) as exc:
        print("samroto worker: cannot load the model: %s" % exc, file=sys.stderr)
        return 2
    worker = Worker(config, engine)
    try:
        address = worker.bind()
    except Exception as exc:  # zmq.ZMQError (address in use), AuthError (CURVE unavailable)
        print("samroto worker: cannot listen on %s: %s" % (args.bind, exc), file=sys.stderr)
        return 2
    log.info("model %s on %s; sessions in %s", engine.model_name, engine.device, config.session_dir)

    def ready(addr: str) -> None:
        # one machine-readable line on stdout: scripts and tests read the address from it
        print("samroto worker listening on %s" % addr, flush=True)

    code = worker.serve(ready=ready)
    log.info("stopped")
    return code
