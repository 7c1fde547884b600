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
from samroto.core.history import MAX_HISTORY_STEPS
from samroto.core.sidecar import PromptLimits

from .common import (
    DEFAULT_MODEL,
    add_colour_arguments,
    add_model_arguments,
    colour_from_args,
    load_model_from_args,
    portable_checkpoint,
    portable_config,
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
    limits = parser.add_argument_group("limits (PROTOCOL.md, section 3; defaults suit a 16 GB workstation)")
    limits.add_argument("--max-body-mb", type=float, default=protocol.DEFAULT_LIMITS.max_body_bytes / 2 ** 20,
                        metavar="MB", help="largest msgpack body (default %(default).0f)")
    limits.add_argument("--max-queued-mb", type=float, default=1024, metavar="MB",
                        help="memory queued requests may hold together (default %(default).0f)")
    limits.add_argument("--max-objects", type=int, default=PromptLimits.max_objects, metavar="N",
                        help="objects per session (default %(default)s)")
    limits.add_argument("--max-points", type=int, default=PromptLimits.max_points, metavar="N",
                        help="clicks in one prompt (default %(default)s)")
    limits.add_argument("--max-prompts", type=int, default=PromptLimits.max_prompts, metavar="N",
                        help="prompt entries in one imported sidecar (default %(default)s)")
    limits.add_argument("--max-frames", type=int, default=100_000, metavar="N",
                        help="frames in one session's range (default %(default)s)")
    limits.add_argument("--history-steps", type=int, default=20, metavar="N",
                        help="undo steps kept per new session, 0 to %d (0: no undo; default %%(default)s)"
                        % MAX_HISTORY_STEPS)
    limits.add_argument("--history-max-mb", type=float, default=8192.0, metavar="MB",
                        help="size on disk of a session's undo journal past which its oldest steps go "
                        "(0: no cap; default %(default).0f)")
    limits.add_argument("--read-root", action="append", type=Path, default=[], metavar="DIR",
                        help="a folder requests may read mask files from, besides the plate's folder and the "
                        "session folder (repeat for more)")
    limits.add_argument("--stop-grace", type=float, default=10.0, metavar="S",
                        help="on SIGTERM, wait this long for a running request before saving the other sessions and "
                        "exiting with status 3 (default %(default)s)")
    add_colour_arguments(parser, defaults_for="defaults for sessions whose client leaves them open")
    logging_group = parser.add_argument_group("log")
    logging_group.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                               help="INFO (default): sessions opened and closed, each request, each propagation, "
                                    "errors with tracebacks; DEBUG adds the requests hosts poll (status, ping)")
    logging_group.add_argument("--log-file", type=Path, default=None, metavar="FILE",
                               help="also log to FILE, which rotates at --log-max-mb (FILE.1, FILE.2, ...)")
    logging_group.add_argument("--log-max-mb", type=float, default=10.0, metavar="MB",
                               help="size at which --log-file rotates (default %(default).0f; 5 old files kept)")
    logging_group.add_argument("--log-json", action="store_true",
                               help="log JSON lines (time, level, message and the event's fields) instead of text")


def run(args: argparse.Namespace) -> int:
    from samroto.bridge.worker import logs
    from samroto.bridge.worker.server import EXIT_STUCK, ModelEngine, Worker, WorkerConfig, default_session_dir

    if args.log_max_mb <= 0:
        print("error: --log-max-mb must be positive", file=sys.stderr)
        return 2
    try:
        logs.configure(args.log_level, log_file=args.log_file, json_lines=args.log_json,
                       max_bytes=int(args.log_max_mb * 2 ** 20))
    except OSError as exc:
        print(f"error: cannot write the log file {args.log_file}: {exc}", file=sys.stderr)
        return 2
    log = logging.getLogger(logs.LOGGER)

    numbers = (args.max_message_mb, args.client_timeout, args.max_body_mb, args.max_queued_mb, args.max_objects,
               args.max_points, args.max_prompts, args.max_frames, args.stop_grace)
    if min(numbers) <= 0:
        print("error: --max-message-mb, --max-body-mb, --max-queued-mb, --max-objects, --max-points, --max-prompts, "
              "--max-frames, --client-timeout and --stop-grace must be positive", file=sys.stderr)
        return 2
    if not 0 <= args.history_steps <= MAX_HISTORY_STEPS or not args.history_max_mb >= 0:
        print(f"error: --history-steps must be 0 to {MAX_HISTORY_STEPS} and --history-max-mb >= 0", file=sys.stderr)
        return 2
    missing = [str(p) for p in args.read_root if not p.is_dir()]
    if missing:
        print("error: --read-root folders do not exist: %s" % ", ".join(missing), file=sys.stderr)
        return 2
    limits = dataclasses.replace(protocol.DEFAULT_LIMITS, max_message_bytes=int(args.max_message_mb * 2 ** 20))
    limits = dataclasses.replace(limits, max_body_bytes=min(int(args.max_body_mb * 2 ** 20), limits.max_message_bytes))
    prompt_limits = dataclasses.replace(PromptLimits(), max_objects=args.max_objects, max_points=args.max_points,
                                        max_prompts=args.max_prompts)
    try:
        token = auth.load_or_create_token()
    except (auth.AuthError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    config = WorkerConfig(bind=args.bind, session_dir=args.session_dir or default_session_dir(), token=token,
                          limits=limits, client_timeout_s=args.client_timeout,
                          max_loaded_sessions=max(1, args.max_loaded_sessions),
                          max_queued_bytes=int(args.max_queued_mb * 2 ** 20), prompt_limits=prompt_limits,
                          max_frames=args.max_frames, read_roots=tuple(p.resolve() for p in args.read_root),
                          stop_grace_s=args.stop_grace)
    colour = colour_from_args(args)  # a bad config stops the worker here, with one line
    log.info("loading %s", args.model)
    model = load_model_from_args(args)  # one line on stderr and exit status 2 if it cannot
    device = resolve_device(args.device)
    # recorded in exported sidecars: names and absolute paths resolve from any folder
    engine = ModelEngine(model, name=portable_checkpoint(args.model), precision=resolve_precision(args, device),
                         config=portable_config(args.config), colour=colour, history_steps=args.history_steps,
                         history_max_mb=args.history_max_mb)
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
    if code == EXIT_STUCK:
        # the compute thread is stuck in a request: exit without waiting for it (the other sessions are saved)
        log.error("stopped with a request still running (exit status %d)", code)
        logging.shutdown()
        sys.stderr.flush()
        os._exit(code)
    log.info("stopped")
    return code
