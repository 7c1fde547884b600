"""`samroto worker`: the resident worker that serves Blender, Nuke and scripts.

Loads the model once, then serves many clients and sessions over ZeroMQ until SIGINT or
SIGTERM (it finishes the frame in flight, flushes the sessions and exits 0). Binds loopback
by default; any other address needs CURVE (keys are created in the config folder).
The protocol is described in samroto/bridge/PROTOCOL.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from samroto.bridge import auth, protocol

from .common import (
    DEFAULT_MODEL,
    add_colour_arguments,
    add_model_arguments,
    colour_from_args,
    load_model_from_args,
    resolve_device,
    resolve_precision,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, default=os.environ.get("SAMROTO_MODEL", DEFAULT_MODEL))
    group = parser.add_argument_group("worker")
    group.add_argument("--bind", default=protocol.DEFAULT_ADDRESS, metavar="tcp://HOST:PORT",
                       help="address to listen on (default %(default)s; port 0 picks a free one); a non-loopback "
                       "address turns on CURVE encryption")
    group.add_argument("--session-dir", type=Path, default=None, metavar="DIR",
                       help="where sessions are kept (default: $SAMROTO_SESSION_DIR or the user data folder)")
    group.add_argument("--client-timeout", type=float, default=60.0, metavar="S",
                       help="cancel a paused propagation whose client stays silent this long (default %(default)s)")
    group.add_argument("--max-message-mb", type=float, default=protocol.DEFAULT_LIMITS.max_message_bytes / 2 ** 20,
                       metavar="MB", help="largest message accepted (default %(default).0f)")
    group.add_argument("--max-loaded-sessions", type=int, default=8, metavar="N",
                       help="sessions kept in memory; older ones are saved and reopened on demand (default 8)")
    group.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    add_colour_arguments(parser, defaults_for="defaults for sessions whose client leaves them open")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=getattr(logging, args.log_level), stream=sys.stderr,
                        format="%(asctime)s samroto worker %(levelname)s: %(message)s")
    log = logging.getLogger("samroto.worker")
    from samroto.bridge.worker.server import ModelEngine, Worker, WorkerConfig, default_session_dir

    if args.max_message_mb <= 0 or args.client_timeout <= 0:
        print("error: --max-message-mb and --client-timeout must be positive", file=sys.stderr)
        return 2
    limits = dataclasses.replace(protocol.DEFAULT_LIMITS, max_message_bytes=int(args.max_message_mb * 2 ** 20))
    limits = dataclasses.replace(limits, max_body_bytes=min(limits.max_body_bytes, limits.max_message_bytes))
    try:
        token = auth.load_or_create_token()
    except (auth.AuthError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = WorkerConfig(bind=args.bind, session_dir=args.session_dir or default_session_dir(), token=token,
                          limits=limits, client_timeout_s=args.client_timeout,
                          max_loaded_sessions=max(1, args.max_loaded_sessions))
    colour = colour_from_args(args)  # a bad config stops the worker here, with one line
    log.info("loading %s", args.model)
    model = load_model_from_args(args)  # one line on stderr and exit status 2 if it cannot
    device = resolve_device(args.device)
    engine = ModelEngine(model, name=str(args.model), precision=resolve_precision(args, device), config=args.config,
                         colour=colour)
    engine.check_precision(log=log.warning)
    if args.compile:
        # compile now, for the full size and the add-ons' default preview size, so the first click
        # does not wait minutes
        log.info("compiling the model for %s (the first start takes minutes; later starts reuse the cache)", device)
        engine.warm_up(image_sizes=[s for s in (512,) if s < model.image_size],
                       progress=lambda text: log.info("compiling: %s", text))
    worker = Worker(config, engine)
    try:
        worker.bind()
    except Exception as exc:  # zmq.ZMQError (address in use, bad address), AuthError (no CURVE)
        print(f"error: cannot listen on {args.bind}: {exc}", file=sys.stderr)
        return 2
    if worker.curve:
        log.info("%s is not a loopback address: CURVE is on; clients need %s and the token", args.bind,
                 auth.curve_dir() / auth.CURVE_PUBLIC_FILE)
    log.info("model %s on %s (%s); sessions in %s", engine.model_name, engine.device, engine.precision,
             config.session_dir)

    def ready(address: str) -> None:
        # one machine-readable line on stdout: scripts and tests read the address from it
        print(f"samroto worker listening on {address}", flush=True)

    code = worker.serve(ready=ready)
    log.info("stopped")
    return code
