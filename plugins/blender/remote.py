"""Everything the add-on asks the worker, through the bundled bridge client. No bpy.

Functions here run on the network thread (`Runner`), take plain values, and raise `AddonError`
with a message an artist can act on; the bpy side (`controller`) turns results into Blender
data on the main thread. Tests call these functions directly against a real worker.
"""

from __future__ import annotations

import os
import queue
import shlex
import subprocess
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from .bridge import auth, protocol
from .bridge.client import (AuthenticationError, BadRequest, BridgeError, Client, ConnectionTimeout, FrameUpdate,
                            NoSuchSession, NotImplementedByWorker, ProtocolMismatch, RemoteError, RemoteSession,
                            WorkerBusy, WorkerInfo, find_worker_address)
from .plates import MOVIE, ClipColour, ClipPlate
from .prompts import FramePrompt, PromptBook

DIRECTIONS = protocol.DIRECTIONS
PROMPT_PREVIEW_SIZE = 512
"""Longest side of the mask preview after a click: large enough to judge the edge."""
SHAPES_TIMEOUT = 600.0
"""Seconds to wait for the worker to fit one object's shapes over the shot."""
PROPAGATION_PREVIEW_SIZE = 256
"""Longest side of the per-frame previews kept while propagating (one per object and frame)."""
PING_TIMEOUT = 1.0
"""Seconds the quick check before queueing work waits for the worker: a dead worker is reported
at once instead of after the full reply timeout and its retries."""
DEFAULT_ADDRESS = protocol.DEFAULT_ADDRESS


class AddonError(Exception):
    """A failure explained for the artist (shown in Blender's status bar and panel)."""


class WorkerUnavailable(AddonError):
    """No worker answers at the address."""


class TokenRejected(AddonError):
    """The token file is missing, unsafe, or not the worker's."""


@dataclass
class Settings:
    """The add-on preferences as plain values.

    address: `tcp://host:port`, empty = the address the local worker announced (or the default);
    token_file: the worker token, empty = the samroto config folder's `token`;
    start_command: run when no worker answers (e.g. `samroto worker`), empty = never start one;
    timeout_s: seconds to wait for each reply; start_timeout_s: seconds a started worker may take
    to load its model; log_dir: where a started worker's output goes (empty: temp folder).
    """

    address: str = ""
    token_file: str = ""
    start_command: str = ""
    timeout_s: float = 10.0
    start_timeout_s: float = 180.0
    log_dir: str = ""
    device: str = "auto"  # added to a started worker's command unless it names one: auto, cuda, mps, cpu


@dataclass
class Connection:
    client: Client
    info: WorkerInfo
    address: str
    started: Optional[subprocess.Popen] = None


@dataclass
class PropagationOutcome:
    """How a propagation ended: state "done" | "cancelled" | "error", frames received, reason."""

    state: str
    frames: List[int]
    reason: str = ""
    review: List[Any] = field(default_factory=list)  # ReviewFrame: the frames to review after it
    history: Optional[Dict[str, Any]] = None  # the session's keyframes, locks and undo steps after it


# ---------------------------------------------------------------------------------------------
# Connecting


def resolve_address(settings: Settings) -> str:
    return settings.address.strip() or find_worker_address()


def token_for(settings: Settings) -> str:
    """The token from the configured file (or the default one); TokenRejected saying how to fix it."""
    configured = settings.token_file.strip()
    path = Path(os.path.expanduser(configured)) if configured else auth.token_path()
    if not path.is_file():
        raise TokenRejected("No worker token at %s: start the worker once (it creates the token there), or set "
                            "'Token file' in the samroto add-on preferences to the worker's token file" % path)
    try:
        return auth.read_token(path)
    except auth.AuthError as exc:
        raise TokenRejected("Cannot use the worker token: %s" % exc) from None
    except OSError as exc:
        raise TokenRejected("Cannot read the worker token file %s: %s" % (path, exc.strerror or exc)) from None


WORKER_DEVICES = ("auto", "cuda", "mps", "cpu")


def worker_argv(command: str, device: str = "auto") -> List[str]:
    """The start command as arguments, with `--device` added when it does not name one already
    (auto: CUDA, then Apple's Metal, then the CPU)."""
    try:
        argv = shlex.split(command, posix=os.name != "nt")
    except ValueError as exc:
        raise AddonError("The start command %r cannot be parsed: %s" % (command, exc)) from None
    if not argv:
        raise AddonError("The start command is empty")
    if device not in WORKER_DEVICES:
        raise AddonError("Unknown worker device %r: use one of %s" % (device, ", ".join(WORKER_DEVICES)))
    if not any(a == "--device" or a.startswith("--device=") for a in argv):
        argv += ["--device", device]
    return argv


def start_worker(command: str, log_dir: str = "", device: str = "auto") -> subprocess.Popen:
    """Start a local worker with the preference's command line, output going to a log file."""
    argv = worker_argv(command, device)
    folder = Path(log_dir) if log_dir else Path(os.environ.get("TMPDIR", "/tmp" if os.name != "nt" else "."))
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "samroto_worker.log"
    log = open(log_path, "ab")
    try:
        kwargs: Dict[str, Any] = {"stdout": log, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL}
        if os.name == "nt":
            kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
        else:
            # keeps running when Blender quits; Ctrl+C in Blender's terminal spares it
            kwargs["start_new_session"] = True
        return subprocess.Popen(argv, **kwargs)
    except OSError as exc:
        raise AddonError("Cannot run the start command %r: %s" % (command, exc.strerror or exc)) from None
    finally:
        log.close()


def ping(settings: Settings, timeout: float = PING_TIMEOUT) -> bool:
    """Whether a worker answers at the configured address within `timeout` seconds (one try, no
    start command). False too when the token is missing or refused: connecting explains why."""
    try:
        client = Client(resolve_address(settings), token=token_for(settings), timeout=timeout, retries=0)
    except (AddonError, BridgeError):
        return False
    try:
        return client.ping()
    except BridgeError:
        return False
    finally:
        client.close()


def quick_ping(client: Client) -> None:
    """ConnectionTimeout within about two PING_TIMEOUTs when the worker behind `client` is gone."""
    client.request(protocol.PING, timeout=PING_TIMEOUT)


def _hello(address: str, token: str, timeout: float, retries: int) -> Tuple[Client, WorkerInfo]:
    client = Client(address, token=token, timeout=timeout, retries=retries)
    try:
        return client, client.hello()
    except BaseException:
        client.close()
        raise


def connect(settings: Settings) -> Connection:
    """Say hello to the worker (starting one with the start command if none answers)."""
    address = resolve_address(settings)
    can_start = bool(settings.start_command.strip())
    try:
        token: Optional[str] = token_for(settings)
    except TokenRejected:
        if not can_start:
            raise
        token = None  # no worker ever ran here: the one we start creates the token
    if token is not None:
        try:
            # one quick try: a dead worker is reported within a second, not after timeout * retries
            client, info = _hello(address, token, min(PING_TIMEOUT * 2, settings.timeout_s), 0)
            client.timeout, client.retries = settings.timeout_s, 1
            return Connection(client, info, address)
        except ConnectionTimeout:
            if not can_start:
                raise WorkerUnavailable(
                    "No samroto worker answers at %s. Start one in a terminal (`samroto worker`) or set "
                    "'Start command' in the samroto add-on preferences." % address) from None
        except AuthenticationError:
            raise TokenRejected("The worker at %s refused this add-on's token: %s is not the worker's token file. "
                                "Set 'Token file' in the samroto add-on preferences to the file the worker uses"
                                % (address, settings.token_file.strip() or auth.token_path())) from None
        except ProtocolMismatch as exc:
            raise AddonError("The worker and the add-on speak different protocol versions: %s" % exc) from None
        except BridgeError as exc:
            raise AddonError("Cannot talk to the worker at %s: %s" % (address, exc)) from None
    process = start_worker(settings.start_command, settings.log_dir, settings.device)
    deadline = time.monotonic() + settings.start_timeout_s
    while True:
        if process.poll() is not None:
            raise WorkerUnavailable("The start command exited with code %s before the worker answered; see "
                                    "samroto_worker.log in %s"
                                    % (process.returncode, settings.log_dir or "the temp folder"))
        # a worker started with port 0 announces its address in the config folder
        address = resolve_address(settings)
        try:
            client, info = _hello(address, token_for(settings), min(2.0, settings.timeout_s), 0)
            return Connection(client, info, address, started=process)
        except ConnectionTimeout:
            pass
        except TokenRejected:
            pass  # the new worker writes its token file on start
        except AuthenticationError:
            raise TokenRejected("The started worker refused this add-on's token: it uses another token file "
                                "than %s" % (settings.token_file.strip() or auth.token_path())) from None
        if time.monotonic() > deadline:
            raise WorkerUnavailable("The worker started with %r did not answer at %s within %.0f s"
                                    % (settings.start_command, address, settings.start_timeout_s))
        time.sleep(0.25)


def describe(exc: BaseException) -> str:
    """A one-line explanation of any failure, for the artist."""
    if isinstance(exc, AddonError):
        return str(exc)
    if isinstance(exc, ConnectionTimeout):
        return "The worker stopped answering: %s" % exc
    if isinstance(exc, NotImplementedByWorker):
        return "This worker does not support that yet (%s); update samroto on the worker machine" % exc.message
    if isinstance(exc, WorkerBusy):
        return "The worker is busy (%s); wait for the running propagation or cancel it" % exc.message
    if isinstance(exc, NoSuchSession):
        return "The worker no longer has this session: open the session again"
    if isinstance(exc, RemoteError):
        return "The worker refused: %s" % exc.message
    if isinstance(exc, BridgeError):
        return str(exc)
    if isinstance(exc, ValueError):
        return str(exc)
    return "%s: %s" % (type(exc).__name__, exc)


# ---------------------------------------------------------------------------------------------
# Sessions, prompts, propagation, shapes


MEMORY_MODE_LABELS = {"sam2": "Exact SAM 2", "presence": "Presence"}


def memory_mode_items() -> List[Tuple[str, str, str]]:
    """(identifier, label, explanation) of every memory mode, the default first (a Blender enum's items)."""
    return [(name, MEMORY_MODE_LABELS.get(name, name.replace("-", " ").capitalize()), explanation)
            for name, explanation in protocol.MEMORY_MODES]


def open_session(client: Client, plate: ClipPlate, *, session_id: str = "", name: Optional[str] = None,
                 matte_dir: Optional[str] = None, matte_format: str = "png",
                 track_resolution: Optional[int] = None,
                 colour: Optional[ClipColour] = None,
                 memory_mode: str = protocol.DEFAULT_MEMORY_MODE) -> Tuple[RemoteSession, bool]:
    """Resume the clip's session when the worker still has it (and it is of the kind asked for),
    else open a new one. Returns (session, resumed). `matte_format`: "png" (16-bit grey, which
    Blender reads exactly) or "exr" (half-float alpha only: Blender leaves the colour channels of
    such files undefined). `track_resolution`: open a PREVIEW session tracking at that size.
    `colour`: the clip's colourspace and the scene's view, for the worker's OpenColorIO.
    `memory_mode`: which tracked frames enter memory (a session in another mode is not resumed)."""
    colour = colour or ClipColour()
    if session_id:
        try:
            session = client.resume_session(session_id)
        except NoSuchSession:
            pass
        else:
            # a preview must not stand in for the final session, nor the other way round
            same_kind = ((session.info.get("track_resolution") or None) == track_resolution
                         and (session.info.get("memory_mode") or protocol.DEFAULT_MEMORY_MODE) == memory_mode)
            same_frames = plate.kind == MOVIE or (session.first, session.last) == (plate.first, plate.last)
            if same_frames and same_kind and _same_colour(session.info, colour):
                return session, True
    # a movie: the worker counts its frames (from 0) itself; a sequence: exactly the files on disk
    first, last = (None, None) if plate.kind == MOVIE else (plate.first, plate.last)
    try:
        return client.open_session(plate.pattern, first, last, name=name, matte_dir=matte_dir,
                                   matte_format=matte_format, track_resolution=track_resolution,
                                   ocio=colour.config or None, colorspace=colour.colorspace or None,
                                   display=colour.display or None, view=colour.view or None,
                                   # only when chosen: a worker that predates memory modes still opens the rest
                                   memory_mode=None if memory_mode == protocol.DEFAULT_MEMORY_MODE else memory_mode,
                                   ), False
    except RemoteError as exc:
        raise AddonError("The worker cannot open %s (frames %d-%d): %s" % (plate.pattern, plate.first, plate.last,
                                                                          exc.message)) from None


def _same_colour(info: Dict[str, Any], colour: ClipColour) -> bool:
    """Whether a session shows the plate as asked (a new view or colourspace needs a new session).
    A worker that reports no colour (older) is taken at its word."""
    if "colour" not in info:
        return True
    made = info.get("colour") or {}
    asked = {"config": colour.config, "colorspace": colour.colorspace, "display": colour.display, "view": colour.view}
    return all(made.get(key) == value for key, value in asked.items() if value)


def open_final_session(client: Client, plate: ClipPlate, preview: RemoteSession, *, matte_dir: Optional[str] = None,
                       matte_format: str = "png", colour: Optional[ClipColour] = None) -> RemoteSession:
    """A full-resolution session on the preview's plate holding the preview's prompts (propagate
    it for the final mattes), tracking with the preview's memory mode. The preview session stays on
    the worker as it was."""
    memory_mode = str(preview.info.get("memory_mode") or protocol.DEFAULT_MEMORY_MODE)
    final, _ = open_session(client, plate, matte_dir=matte_dir, matte_format=matte_format, colour=colour,
                            memory_mode=memory_mode)
    try:
        final.import_prompts(preview.export_prompts())
    except RemoteError as exc:
        raise AddonError("The worker cannot copy the preview's prompts to a full-resolution session: %s"
                         % exc.message) from None
    return final


def send_prompt(session: RemoteSession, frame: int, obj_id: int, prompt: FramePrompt, *,
                preview_size: int = PROMPT_PREVIEW_SIZE) -> Optional[FrameUpdate]:
    """Send all of an object's prompts on a frame (replacing what the worker had there).
    An empty prompt clears the frame's prompts; returns None when there was nothing to clear."""
    if prompt.empty:
        if obj_id not in session.obj_ids:
            return None
        return session.clear_prompts(frame, obj_id)
    if prompt.mask is not None:
        return session.add_mask(frame, obj_id, rle_rows(prompt.mask), preview_size=preview_size)
    if prompt.box is not None:
        return session.add_box(frame, obj_id, prompt.box, points=prompt.points or None,
                               labels=prompt.labels or None, preview_size=preview_size)
    return session.add_points(frame, obj_id, prompt.points, prompt.labels, clear=True, preview_size=preview_size)


def rle_rows(mask: Dict[str, Any]) -> Any:
    """A run-length mask as what `add_mask` takes: an H*W uint8 array (numpy, which Blender ships)."""
    import numpy as np

    height, width = int(mask["height"]), int(mask["width"])
    counts = np.asarray(mask["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2
    return np.repeat(values.astype(np.uint8), counts).reshape(height, width)


def worker_prompts(session: RemoteSession) -> PromptBook:
    """What the worker holds for the session (its `export_prompts`), as a book."""
    plate = session.info.get("plate")
    try:  # the worker needs a plate name for frames it did not read from files; any label does here
        sidecar = session.export_prompts(plate=plate if isinstance(plate, str) and plate else session.name or "plate")
    except BadRequest as exc:
        if "no prompts" in exc.message:
            return PromptBook()
        raise
    return PromptBook.from_sidecar(sidecar)


@dataclass
class SyncOutcome:
    """What a re-sync did: prompts sent (set or cleared), objects removed, and the worker's book after."""

    sent: List[Tuple[int, int]]
    removed: List[int]
    book: PromptBook


def sync_prompts(session: RemoteSession, book: PromptBook, objects: List[int]) -> SyncOutcome:
    """Make the worker hold exactly `book` (the prompts drawn in Blender): frames that differ are
    imported in one `import_prompts` request, frames the book no longer has are cleared, objects
    that are not in `objects` (the clip's object list) are removed. Frames outside the session's
    range are left out. Returns what the worker holds afterwards (read back with `export_prompts`)."""
    inside = PromptBook()
    for obj_id, frame, prompt in book.items():
        if session.first <= frame <= session.last:
            inside.set(obj_id, frame, prompt)
    try:
        held = worker_prompts(session)
    except RemoteError as exc:
        if isinstance(exc, (NoSuchSession, WorkerBusy)):
            raise
        # a worker that cannot export its prompts: give it every drawn frame (nothing to compare with)
        for obj_id, frame, prompt in inside.items():
            send_prompt(session, frame, obj_id, prompt, preview_size=0)
        return SyncOutcome([(o, f) for o, f, _ in inside.items()], [], inside)
    changes = inside.diff(held)
    removed = [obj_id for obj_id in list(session.obj_ids) if obj_id not in objects]
    for obj_id in removed:
        session.remove_object(obj_id)
    changes = [(o, f, p) for o, f, p in changes if o not in removed]
    for obj_id, frame, prompt in changes:
        if prompt.empty and obj_id in session.obj_ids:
            session.clear_prompts(frame, obj_id)
    to_import = [(o, f, p) for o, f, p in changes if not p.empty]
    if to_import:
        try:
            session.import_prompts({"format": "samroto.sidecar", "version": 1,
                                    "shot": {"plate": session.info.get("plate") or session.name or session.id,
                                             "first": session.first, "last": session.last},
                                    "objects": inside.sidecar_objects(to_import)})
        except RemoteError as exc:
            raise AddonError("The worker cannot take the clip's prompts back: %s" % exc.message) from None
    after = held
    if changes or removed:
        try:
            after = worker_prompts(session)
        except RemoteError as exc:
            if isinstance(exc, (NoSuchSession, WorkerBusy)):
                raise
            after = inside  # sent, but the worker cannot say what it holds: take it that it holds them
    return SyncOutcome([(o, f) for o, f, _ in changes], removed, after)


def replay_prompts(session: RemoteSession, book: PromptBook) -> int:
    """Give a new session every prompt of the book (the clip's old session was lost). Returns how
    many frames were sent."""
    return len(sync_prompts(session, book, book.objects()).sent)


def send_stroke(session: RemoteSession, frame: int, obj_id: int, points: List[Tuple[float, float]], *,
                kind: str, label: int, radius: float = 8.0,
                preview_size: int = PROMPT_PREVIEW_SIZE) -> Tuple[FrameUpdate, FramePrompt]:
    """A brush stroke (clicks along it) or lasso (filled into the mask) drawn in clip pixels. The
    worker converts it; returns its frame result and the frame's prompt as the worker now holds it
    (the clicks or the mask it made), for the clip's book."""
    try:
        update = session.add_stroke(frame, obj_id, points, label=label, kind=kind, radius=radius,
                                    preview_size=preview_size)
    except BadRequest as exc:
        raise AddonError("The worker cannot use that %s: %s" % (kind, exc.message)) from None
    return update, worker_prompts(session).get(obj_id, frame)


def propagate(session: RemoteSession, *, direction: str = "both", start: Optional[int] = None,
              on_update: Callable[[FrameUpdate], None], cancelled: threading.Event,
              preview_size: int = PROPAGATION_PREVIEW_SIZE, matting: str = "none", span: bool = False,
              obj_id: Optional[int] = None) -> PropagationOutcome:
    """Track every object; `on_update` sees each frame as it arrives. Setting `cancelled` stops
    the worker within a frame. `matting`: "none", or the learned matting model the worker runs on
    the mattes ("vitmatte-small", "vitmatte-base"). `span`: after a correction on `start`,
    re-track only the object `obj_id` from there up to its neighbouring keyframes (frames beyond
    keep their mattes); `direction` does not apply."""
    if direction not in DIRECTIONS:
        raise ValueError("direction must be one of %s, got %r" % (", ".join(DIRECTIONS), direction))
    if not session.obj_ids:
        raise AddonError("Nothing to propagate: click on an object first")
    frames: List[int] = []
    try:
        if span:
            run = session.propagate(start, preview_size=preview_size, matting=None if matting == "none" else matting,
                                    span=True, obj_id=obj_id)
        else:
            run = session.propagate(start, direction=direction, preview_size=preview_size,
                                    matting=None if matting == "none" else matting)
    except BadRequest as exc:
        raise AddonError("The worker cannot track from there: %s" % exc.message) from None
    try:
        for update in run:
            frames.append(update.frame)
            on_update(update)
            if cancelled.is_set():
                break
    finally:
        if run.running:  # cancelled by the artist, or an error in on_update: stop the worker too
            try:
                run.cancel()
            except BridgeError:
                pass
    return PropagationOutcome(run.state, frames, run.reason or "", fetch_review(session) if frames else [],
                              fetch_history(session))


def set_lock(session: RemoteSession, obj_id: int, first: int, last: int, *, locked: bool) -> Dict[int, List[List[int]]]:
    """Lock (or unlock) the object's plate frames `first`..`last`; every object's locked ranges after."""
    try:
        if locked:
            return session.lock(obj_id, first, last)
        return session.unlock(obj_id, first, last)
    except NotImplementedByWorker:
        raise AddonError("This worker cannot lock frames (it needs protocol 1.2): update samroto on the worker") \
            from None
    except BadRequest as exc:
        raise AddonError("The worker cannot %s frames %d-%d: %s" % ("lock" if locked else "unlock", first, last,
                                                                   exc.message)) from None


def fetch_history(session: RemoteSession) -> Optional[Dict[str, Any]]:
    """The session's undo history, keyframes and locks (`history()`); None from a worker (or a
    bundled client) that cannot tell."""
    history = getattr(session, "history", None)
    if history is None:
        return None
    try:
        return dict(history())
    except NotImplementedByWorker:
        return None


@dataclass
class StepOutcome:
    """One undo or redo on the worker: the step's label, the plate frames whose results it
    changed, the history after it, and the prompts the worker holds now."""

    step: str
    frames: List[int]
    history: Dict[str, Any]
    book: PromptBook


def step_history(session: RemoteSession, *, redo: bool = False) -> StepOutcome:
    """Undo (or redo) the session's last step on the worker; AddonError when there is none."""
    method = getattr(session, "redo" if redo else "undo", None)
    if method is None:
        raise AddonError("This add-on's bridge client cannot undo on the worker: update the add-on")
    try:
        reply = method()
    except NotImplementedByWorker:
        raise AddonError("This worker cannot undo (it needs a newer samroto): update samroto on the worker") from None
    except BadRequest as exc:  # "nothing to undo" (or why not)
        raise AddonError(exc.message[:1].upper() + exc.message[1:]) from None
    return StepOutcome(str(reply.get("step", "")), sorted(int(f) for f in reply.get("frames") or []),
                       dict(reply.get("history") or {}), worker_prompts(session))


def frame_previews(session: RemoteSession, frame: int, *, before: bool = False,
                   max_side: int = PROMPT_PREVIEW_SIZE) -> Dict[int, Dict[str, Any]]:
    """Every object's stored mask on a plate frame as preview dicts (the overlay's format); with
    `before`, the frame's previous result (what the last step overwrote) where the worker has one."""
    import numpy as np

    from .bridge import preview as preview_rle

    try:
        mattes = session.get_frame(frame, what="mask", before=True) if before else session.get_frame(frame, what="mask")
    except TypeError:
        raise AddonError("This add-on's bridge client cannot ask for a frame's previous result: update the add-on") \
            from None
    except BadRequest as exc:
        raise AddonError("The worker has no %sresult on frame %d: %s" % ("previous " if before else "", frame,
                                                                        exc.message)) from None
    out: Dict[int, Dict[str, Any]] = {}
    if mattes.mattes is None:
        return out
    for obj_id in mattes.obj_ids:
        mask = np.asarray(mattes.matte(obj_id))
        height, width = preview_rle.preview_size(int(mask.shape[0]), int(mask.shape[1]), max_side)
        rows = np.arange(height) * mask.shape[0] // height
        cols = np.arange(width) * mask.shape[1] // width
        out[int(obj_id)] = preview_rle.encode(np.ascontiguousarray(mask[rows][:, cols]))
    return out


def fetch_review(session: RemoteSession) -> List[Any]:
    """The frames to review of the session's mattes (`ReviewFrame`s); none from a worker that
    cannot tell (older than `get_review`) or when asking fails: the mattes are there either way."""
    try:
        return list(session.review())
    except (NotImplementedByWorker, BridgeError):
        return []


def fetch_shapes(session: RemoteSession, obj_id: int, *, first: Optional[int] = None, last: Optional[int] = None,
                 tolerance: Optional[float] = None) -> Dict[str, Any]:
    """The object's animated Bezier shapes in clip pixels (see `keyframes`)."""
    options: Dict[str, Any] = {"obj_id": int(obj_id), "space": "pixel"}
    if first is not None:
        options["first"] = int(first)
    if last is not None:
        options["last"] = int(last)
    if tolerance is not None:
        options["tolerance"] = float(tolerance)
    try:
        # fitting splines to a long shot takes the worker a while: allow minutes, not the prompt timeout
        reply = session.client.request(protocol.GET_SHAPES, options, session=session.id,
                                       timeout=max(session.client.timeout, SHAPES_TIMEOUT)).body
    except NotImplementedByWorker:
        raise AddonError("This worker cannot turn mattes into shapes yet (get_shapes is not implemented); update "
                         "samroto on the worker. The matte images can still be loaded.") from None
    if not isinstance(reply.get("shapes"), list):
        raise AddonError("The worker's shapes reply has no 'shapes' list")
    return reply


# ---------------------------------------------------------------------------------------------
# The network thread


@dataclass
class Job:
    """One unit of network work. `progress` is (done, total) for propagations."""

    label: str
    state: str = "queued"  # queued | running | done | failed | cancelled
    result: Any = None
    error: Optional[str] = None
    progress: Optional[Tuple[int, int]] = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    exception: Optional[BaseException] = None  # what made it fail

    @property
    def lost_worker(self) -> bool:
        """Failed because the worker stopped answering or forgot the session (a restart)."""
        return isinstance(self.exception, (ConnectionTimeout, NoSuchSession, WorkerUnavailable))

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")

    def cancel(self) -> None:
        self.cancel_event.set()
        if self.state == "queued":
            self.state = "cancelled"


class Runner:
    """One background thread that owns the worker connection and runs jobs in order.

    A bridge `Client` must stay on one thread, so every network call goes through here.
    `post` delivers callbacks to the main thread (`tasks.post` in Blender).
    """

    def __init__(self, post: Callable[[Callable[[], None]], None]) -> None:
        self._post = post
        self._jobs: "queue.Queue[Optional[Tuple[Job, Callable[[Job], Any], Any, Any]]]" = queue.Queue()
        self.connection: Optional[Connection] = None
        # jobs submitted while held (see `hold`), in order; None when not held
        self._on_hold: Optional[List[Tuple[Job, Callable[[Job], Any], Any, Any]]] = None
        # jobs handed to the network thread and not finished yet (see `idle`)
        self._unfinished = 0
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="samroto-network", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, label: str, work: Callable[[Job], Any], *, on_done: Optional[Callable[[Job], None]] = None,
               on_error: Optional[Callable[[Job], None]] = None) -> Job:
        """Queue `work(job)`; afterwards `on_done(job)` or `on_error(job)` runs on the main thread."""
        job = Job(label)
        if self._on_hold is not None:
            self._on_hold.append((job, work, on_done, on_error))
        else:
            self._put((job, work, on_done, on_error))
        return job

    def _put(self, item: Tuple[Job, Callable[[Job], Any], Any, Any]) -> None:
        with self._count_lock:
            self._unfinished += 1
        self._jobs.put(item)

    @property
    def idle(self) -> bool:
        """No job queued or running on the network thread (main thread: with `hold`, none can start
        until `release`), so Blender operators called inside `temp_override` are safe."""
        return self._unfinished == 0

    def hold(self) -> None:
        """Keep the jobs submitted from now on off the network thread until `release()` (they keep
        their order). Waking the thread inside an operator that Python called with
        `context.temp_override` corrupts memory in Blender: Blender runs the operator with the GIL
        released and reads the override without taking it back while another thread runs Python."""
        if self._on_hold is None:
            self._on_hold = []

    def release(self) -> None:
        """Hand the held jobs to the network thread (main thread, outside any operator)."""
        held, self._on_hold = self._on_hold, None
        for item in held or []:
            self._put(item)

    def _loop(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                break
            job, work, on_done, on_error = item
            if job.state == "cancelled":
                self._deliver(on_error, job)
                self._finished_one()
                continue
            job.state = "running"
            try:
                job.result = work(job)
                stopped = job.cancel_event.is_set() and getattr(job.result, "state", None) == "cancelled"
                job.state = "cancelled" if stopped else "done"
                self._deliver(on_done, job)
            except BaseException as exc:  # reported to the artist, never raised into Blender
                job.error = describe(exc)
                job.exception = exc
                job.state = "failed"
                if not isinstance(exc, (AddonError, BridgeError, ValueError)):
                    traceback.print_exc()
                self._deliver(on_error, job)
            finally:
                self._finished_one()  # the last Python this thread runs before it waits again
        if self.connection is not None:
            self.connection.client.close()
            self.connection = None

    def _finished_one(self) -> None:
        with self._count_lock:
            self._unfinished -= 1

    def _deliver(self, callback: Optional[Callable[[Job], None]], job: Job) -> None:
        if callback is not None:
            self._post(lambda: callback(job))

    def stop(self, timeout: float = 5.0) -> None:
        """Finish the queued jobs, close the connection and end the thread."""
        self.release()  # held jobs run first
        self._jobs.put(None)
        self._thread.join(timeout)
