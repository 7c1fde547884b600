"""Running the shots of a batch: one shot at a time (`ShotRunner`), locally or on Ray actors.

A shot's work lives in two places under the output folder:

    <out>/<shot>/<shot>_<obj>_matte.####.exr   the mattes (written atomically, frame numbers of the plate)
    <out>/.samroto/<shot>/manifest.json        the run's manifest: what the mattes are made from (plate,
                                               prompts, model, options), its fingerprint, and progress
    <out>/.samroto/<shot>/session/             the session state while the shot runs (removed when it is
                                               done, unless keep_state)

Resuming. Each frame's session state is stored before its mattes are written, so after an
interruption every frame with mattes on disk is also tracked in the saved session. The runner
reopens that session and continues each direction (forward from the earliest keyframe to the end,
then backward to the start) at the first frame that is missing a matte or a stored output; frames
already written are not written again. The outputs equal those of an uninterrupted run.

The fingerprint covers the sidecar (prompts, plate, range), the model and the matte options. If
it changed since a shot's mattes were made, or mattes with the shot's names are there without a
manifest (another run made them), the shot fails with a message instead of mixing two runs, unless
`restart` (`--overwrite`), which deletes the shot's state and mattes and starts it over.

`samroto matte` runs its one shot through the same runner (`flat`: mattes straight in `<out>`), so
it resumes, refuses to mix runs, and writes the confidence report on every exit the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from samroto.core.fileio import write_json_atomic

if TYPE_CHECKING:
    from samroto.core.frames import FrameSource
    from samroto.core.outputs.matte_output import MatteOutput
    from samroto.core.outputs.mattes import MatteSequenceWriter
    from samroto.core.model.sam2 import SAM2Model
    from samroto.core.sidecar import Sidecar
    from samroto.core.video_session import VideoSession

STATE_FOLDER = ".samroto"
MANIFEST_FILE = "manifest.json"
STATUS_FORMAT = 1
OVERWRITE_FLAG = "--overwrite"


class BatchError(Exception):
    """A problem with the batch as a whole (Ray missing, no cluster resources): nothing was run."""


class ShotError(Exception):
    """A shot cannot run; the message is what the summary shows."""


class ProgressBar(Protocol):
    def update(self, n: int = 1) -> Any: ...

    def close(self) -> Any: ...


# desc, total -> a bar (tqdm.tqdm and ray.experimental.tqdm_ray.tqdm both fit)
ProgressFactory = Callable[[str, int], ProgressBar]


@dataclass(frozen=True)
class ModelChoice:
    """The model every shot of a batch runs with; picklable, so Ray actors load it themselves."""

    checkpoint: str  # official name or checkpoint file
    config: dict[str, Any] | None = None  # SAM2Config.to_dict() form; None: inferred from the checkpoint
    device: str | None = None  # None: cuda if the process sees one, else cpu
    precision: str | None = None  # None: bfloat16 on CUDA, float32 on CPU
    compile: bool = False  # torch.compile the image encoder and memory attention

    @property
    def identity(self) -> str:
        """What changes the outputs (not the device): part of each shot's fingerprint."""
        return json.dumps({"checkpoint": self.checkpoint, "config": self.config}, sort_keys=True)

    def resolved_device(self) -> str:
        from .common import resolve_device

        return resolve_device(self.device)

    def resolved_precision(self) -> str:
        import torch

        from samroto.core.model.device import choose_precision

        return choose_precision(torch.device(self.resolved_device()), self.precision)

    def load(self) -> "SAM2Model":
        from samroto.core.model.checkpoint import load_model

        model = load_model(self.checkpoint, config=self.config, device=self.resolved_device())
        if self.compile:
            from samroto.core.model.runtime import compile_model, warm_up

            compile_model(model)
            warm_up(model, precision=self.resolved_precision())
        return model


@dataclass(frozen=True)
class BatchOptions:
    out_dir: str
    format: str = "exr"  # "exr" (half A) or "png" (16-bit)
    soft: bool = True  # sigmoid of the logits; False: hard 0/1
    restart: bool = False  # redo shots whose inputs changed since their mattes were made
    keep_state: bool = False  # keep each finished shot's session state (for later corrections)
    threads: int | None = None  # torch CPU threads (None: torch's default locally, cpus_per_worker on Ray)
    refine_edges: bool = False  # snap mattes to the plate's edges (core.edges)
    smooth_edges: bool = False  # calm edge chatter over time (restarts where a pass resumes)
    colour: dict[str, Any] | None = None  # ColourSettings.to_dict(): defaults where a sidecar records none
    missing: str = "error"  # frames missing from a sequence: "error", "hold" or "skip" (core.plate_check)
    image_size: int | None = None  # track at this internal size: a PREVIEW (None: the model's own)
    flat: bool = False  # mattes straight in out_dir (`samroto matte`) instead of out_dir/<shot>/
    matting: str | None = None  # learned matting pass for shots whose sidecar names none (session.matting)
    layered_exr: bool = False  # also one EXR per frame with every object's alpha as <object>.A


@dataclass
class ShotJob:
    """One shot to run: its sidecar, or why the sidecar could not be loaded."""

    name: str
    sidecar_file: str
    sidecar: "Sidecar | None" = None
    load_error: str | None = None


@dataclass
class ShotResult:
    name: str
    sidecar_file: str
    ok: bool
    frames: int = 0  # frames in the shot
    written: int = 0  # frames whose mattes this run wrote
    already_there: int = 0  # frames whose mattes were on disk before this run
    resumed: bool = False  # continued a saved session
    seconds: float = 0.0
    error: str | None = None
    mattes: list[str] = field(default_factory=list)  # sequence pattern per object
    confidence: str | None = None  # the confidence report beside the mattes
    review: list[int] = field(default_factory=list)  # frames the confidence report asks to review


def shot_manifest(sidecar: "Sidecar", model: ModelChoice, options: BatchOptions, precision: str) -> dict[str, Any]:
    """What a shot's mattes are made from: plate, range and prompts, model, matte options."""
    data = sidecar.to_dict()
    data["shot"]["plate"] = sidecar.plate_path  # the same file, however the sidecar names it
    data.pop("metadata", None)  # notes do not change mattes
    manifest = {
        "sidecar": data,
        "model": model.identity,
        "precision": precision,
        "format": options.format,
        "soft": options.soft,
        "refine_edges": options.refine_edges,
        "smooth_edges": options.smooth_edges,
        "colour": options.colour,
    }
    # only when set, so fingerprints of runs made before these options existed stay the same
    if options.missing != "error":
        manifest["missing"] = options.missing
    if options.image_size is not None:
        manifest["image_size"] = options.image_size
    matting = sidecar.session.matting or options.matting
    if matting:
        manifest["matting"] = matting
    if options.layered_exr:
        manifest["layered_exr"] = True
    return manifest


def shot_fingerprint(sidecar: "Sidecar", model: ModelChoice, options: BatchOptions, precision: str) -> str:
    key = shot_manifest(sidecar, model, options, precision)
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()


def shot_writer(name: str, sidecar: "Sidecar", options: BatchOptions) -> "MatteSequenceWriter":
    from samroto.core.outputs.mattes import MatteSequenceWriter

    out = Path(options.out_dir)
    return MatteSequenceWriter(
        out_dir=out if options.flat else out / name,
        shot=name,
        format=options.format,  # type: ignore[arg-type]
        soft=options.soft,
        object_names=sidecar.object_names,
    )


def check_outputs(name: str, sidecar: "Sidecar", choice: ModelChoice, options: BatchOptions) -> dict[str, Any] | None:
    """The shot's manifest from an earlier run, when its mattes can be continued or kept. Raises
    ShotError rather than mix two runs' mattes (the inputs changed, or mattes are there without a
    manifest), unless `options.restart`, which deletes the old mattes and state. No model needed:
    the command line calls this before loading one."""
    state_root = Path(options.out_dir) / STATE_FOLDER / name
    writer = shot_writer(name, sidecar, options)
    obj_ids = [obj.obj_id for obj in sidecar.objects]
    fingerprint = shot_fingerprint(sidecar, choice, options, choice.resolved_precision())
    status = _read_status(state_root)
    if status is not None and status.get("fingerprint") == fingerprint:
        return status
    if status is not None:
        problem = (f"its prompts, plate, model or matte options changed since the mattes in {writer.out_dir} "
                   "were made")
    else:
        stale = sorted(set().union(*(writer.existing_frames(o, verify=False) for o in obj_ids)))
        if not stale:
            return None
        problem = (f"{writer.out_dir} already holds {len(stale)} frames of {name} mattes from another run "
                   "(no manifest)")
    if not options.restart:
        raise ShotError(f"{problem}; pass {OVERWRITE_FLAG} to redo it (deletes those mattes), or use another --out")
    from samroto.core.outputs.confidence import SIDECAR_SUFFIX

    _delete_mattes(writer, obj_ids)
    (Path(writer.out_dir) / f"{name}{SIDECAR_SUFFIX}").unlink(missing_ok=True)  # its records are of that run
    shutil.rmtree(state_root, ignore_errors=True)
    return None


class ShotRunner:
    """Runs shots one after the other with one loaded model (a local batch, or one Ray actor)."""

    def __init__(
        self,
        model: "SAM2Model",
        *,
        choice: ModelChoice,
        options: BatchOptions,
        progress: ProgressFactory | None = None,
    ) -> None:
        self.model = model
        self.choice = choice
        self.options = options
        self.precision = choice.resolved_precision()
        self.progress = progress
        self._matting_models: dict[str, Any] = {}  # loaded once per runner, a fresh pass per shot

    def run(self, job: ShotJob) -> ShotResult:
        """Run one shot; never raises for a shot's own problems (they become a failed result)."""
        started = time.perf_counter()
        result = ShotResult(name=job.name, sidecar_file=job.sidecar_file, ok=False)
        try:
            if job.sidecar is None:
                raise ShotError(job.load_error or "the sidecar could not be loaded")
            self._run(job.name, job.sidecar, result)
            result.ok = True
        except KeyboardInterrupt:
            raise
        except (ShotError, ValueError, OSError) as exc:
            # ValueError covers the samroto errors (SidecarError, FrameError, SessionError, MatteError)
            result.error = str(exc) or type(exc).__name__
        except Exception as exc:  # a bug or a device failure: keep the other shots going, say where
            last = traceback.extract_tb(exc.__traceback__)[-1]
            where = f" (at {os.path.basename(last.filename)}:{last.lineno})"
            result.error = f"{type(exc).__name__}: {exc}{where}"
        result.seconds = time.perf_counter() - started
        return result

    # --- one shot ------------------------------------------------------------------------------

    def _run(self, name: str, sidecar: "Sidecar", result: ShotResult) -> None:
        from samroto.core.colour import ColourSettings
        from samroto.core.frames import open_frames
        from samroto.core.outputs.matte_output import MatteOptions, MatteOutput
        from samroto.core.plate_check import HoldFrames, check_plate

        out = Path(self.options.out_dir)
        state_root = out / STATE_FOLDER / name
        session_dir = state_root / "session"
        writer = shot_writer(name, sidecar, self.options)
        obj_ids = [obj.obj_id for obj in sidecar.objects]
        result.mattes = [writer.pattern_for(obj_id) for obj_id in obj_ids]
        fingerprint = shot_fingerprint(sidecar, self.choice, self.options, self.precision)
        status = check_outputs(name, sidecar, self.choice, self.options)

        # the sidecar's colour settings (what the artist saw), the batch's flags filling what it leaves open
        recorded = sidecar.shot.colour_settings()
        defaults = ColourSettings.from_dict(self.options.colour) if self.options.colour else None
        colour = recorded.merged_over(defaults) if recorded is not None else defaults
        plate = check_plate(sidecar.plate_path, first=sidecar.shot.first, last=sidecar.shot.last, colour=colour)
        problems = plate.problems(self.options.missing)
        if problems:
            raise ShotError("; ".join(problems))
        missing = set(plate.missing)

        def open_plate() -> FrameSource:
            source = open_frames(sidecar.plate_path, first=sidecar.shot.first, last=sidecar.shot.last, colour=colour)
            return HoldFrames(source, sorted(missing)) if missing else source

        frames = open_plate()
        numbers = list(frames.frame_numbers)
        result.frames = len(numbers)
        keyframe = sidecar.keyframe
        if keyframe not in frames.frame_numbers:
            frames.close()
            raise ShotError(
                f"the earliest prompt is on frame {keyframe}, outside the shot's frames {numbers[0]}-{numbers[-1]}"
            )
        prompted_missing = sorted(missing & {p.frame for obj in sidecar.objects for p in obj.prompts})
        if prompted_missing:
            frames.close()
            raise ShotError(f"prompts are on frames missing from the plate: {prompted_missing}")
        # frames that get no matte (`--missing skip`) count as done
        skipped = missing if self.options.missing == "skip" else set()
        done = set(numbers)
        for obj_id in obj_ids:
            done &= writer.existing_frames(obj_id) | skipped
        if status is not None and status.get("complete") and len(done) == len(numbers):
            frames.close()
            result.already_there = len(numbers)
            return
        if status is None:
            status = {"format": STATUS_FORMAT, "fingerprint": fingerprint, "sidecar": sidecar.source,
                      "prompts_applied": False,
                      "manifest": shot_manifest(sidecar, self.choice, self.options, self.precision)}
        status["complete"] = False
        _write_status(state_root, status)

        session, result.resumed = self._open_session(sidecar, frames, open_plate, session_dir, state_root, status)
        bar = self.progress(name, len(numbers)) if self.progress else None
        # mattes and, beside them, <shot>.confidence.json (carried on across interruptions)
        output = MatteOutput(writer, frames=session.frames, options=MatteOptions(
            refine_edges=self.options.refine_edges, smooth_edges=self.options.smooth_edges,
            layered_exr=self.options.layered_exr),
            matting=self._matting_pass(sidecar.session.matting or self.options.matting))
        try:
            self._track(session, keyframe, numbers, done, output, result, bar, skipped)
        finally:
            # also after Ctrl-C or a failure: the report covers every matte written
            report = output.finish()
            result.confidence = str(report) if report is not None else None
            result.review = output.tracker.review_frames()
            session.close()
            if bar is not None:
                bar.close()
        status["complete"] = True
        _write_status(state_root, status)
        if not self.options.keep_state:
            shutil.rmtree(session_dir, ignore_errors=True)

    def _matting_pass(self, name: str | None) -> Any:
        """A fresh matting pass (its own temporal state) for a shot, or None; a missing checkpoint fails
        the shot with how to get it (MattingCheckpointError is a ValueError)."""
        if not name:
            return None
        from samroto.core.matting import load_matting_model
        from samroto.core.matting.download import resolve_matting_checkpoint
        from samroto.core.matting_pass import MattingPass

        if name not in self._matting_models:
            path, preset = resolve_matting_checkpoint(name)
            self._matting_models[name] = load_matting_model(path, config=preset, device=self.model.device)
        return MattingPass(self._matting_models[name])

    def _open_session(
        self,
        sidecar: "Sidecar",
        frames: "FrameSource",
        open_plate: Callable[[], "FrameSource"],
        session_dir: Path,
        state_root: Path,
        status: dict[str, Any],
    ) -> tuple["VideoSession", bool]:
        """The saved session when there is a complete one, else a new one with the sidecar's prompts."""
        from samroto.core.sidecar import apply_prompts
        from samroto.core.video_session import SessionError, VideoSession

        if status.get("prompts_applied") and (session_dir / "session.json").is_file():
            try:
                session = VideoSession.open(session_dir, self.model, frames=frames)
            except (SessionError, OSError, ValueError, KeyError):
                # unreadable state: start the shot's tracking over (written mattes are kept)
                frames.close()
                frames = open_plate()
            else:
                if sorted(session.obj_ids) == sorted(obj.obj_id for obj in sidecar.objects):
                    return session, True
                session.close()  # closes the frames too
                frames = open_plate()
        # prompts are applied and saved before the state counts as usable: a run killed while
        # replaying them must not resume from half the prompts
        shutil.rmtree(session_dir, ignore_errors=True)
        status["prompts_applied"] = False
        _write_status(state_root, status)
        session = VideoSession(
            self.model,
            frames,
            state_dir=session_dir,
            fill_hole_area=sidecar.session.fill_hole_area,
            non_overlap_masks=sidecar.session.non_overlap_masks,
            precision=self.precision,
            image_size=self.options.image_size,
            history_steps=0,  # headless: nothing to undo, so no journal written per frame
        )
        try:
            apply_prompts(session, sidecar)
            session.save()
        except BaseException:
            session.close()
            raise
        status["prompts_applied"] = True
        _write_status(state_root, status)
        return session, False

    @staticmethod
    def _track(
        session: "VideoSession",
        keyframe: int,
        numbers: Sequence[int],
        done: set[int],
        output: "MatteOutput",
        result: ShotResult,
        bar: ProgressBar | None,
        skipped: set[int] = frozenset(),  # type: ignore[assignment]
    ) -> None:
        """Forward from the earliest keyframe to the end, then backward to the start, each resuming at
        its first unfinished frame; mattes already on disk are not written again."""
        obj_ids = session.obj_ids

        def finished(frame: int) -> bool:
            # a matte on disk and the frame's state in the session: tracking can go on from here
            return frame in done and all(session.frame_output(obj_id, frame) is not None for obj_id in obj_ids)

        passes = (
            (False, [f for f in numbers if f >= keyframe]),
            (True, [f for f in reversed(numbers) if f < keyframe]),
        )
        for reverse, order in passes:
            start = next((i for i, f in enumerate(order) if not finished(f)), len(order))
            result.already_there += start
            if bar is not None and start:
                bar.update(start)
            if start == len(order):
                continue
            begin = order[start]
            if reverse:
                # a backward pass cannot begin on the shot's first frame (nor can the reference's):
                # begin on the finished frame after it, or the keyframe; re-tracking that frame
                # restores the same state and writes nothing
                begin = order[start - 1] if start else keyframe
            remaining = set(order[start:])
            for frame_result in session.propagate(begin, reverse=reverse):
                if frame_result.frame not in remaining:
                    continue
                if frame_result.frame in skipped:
                    pass  # missing from the plate, and `--missing skip`: no matte
                elif frame_result.frame in done:
                    result.already_there += 1  # its state was lost, its matte was not
                else:
                    output.write(frame_result)
                    result.written += 1
                if bar is not None:
                    bar.update(1)


def _read_status(state_root: Path) -> dict[str, Any] | None:
    path = state_root / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        status = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return status if isinstance(status, dict) and status.get("format") == STATUS_FORMAT else None


def _write_status(state_root: Path, status: dict[str, Any]) -> None:
    state_root.mkdir(parents=True, exist_ok=True)
    write_json_atomic(state_root / MANIFEST_FILE, status)


def _delete_mattes(writer: "MatteSequenceWriter", obj_ids: Sequence[int]) -> None:
    for obj_id in obj_ids:
        for frame in writer.existing_frames(obj_id, verify=False):
            Path(writer.path_for(obj_id, frame)).unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Local execution


def run_local(
    jobs: Sequence[ShotJob],
    *,
    choice: ModelChoice,
    options: BatchOptions,
    on_result: Callable[[ShotResult], None] | None = None,
    show_progress: bool = True,
) -> list[ShotResult]:
    """Run every shot in this process, one after the other, with one model. Progress: bars on a
    terminal, a line every 10 percent in a log (`scripts.progress`), none without `show_progress`."""
    from .progress import progress

    def shot_bar(desc: str, total: int) -> ProgressBar:
        return progress(desc, total, position=1, leave=False)  # type: ignore[no-any-return]

    import torch

    results: list[ShotResult] = []
    runnable = [job for job in jobs if job.sidecar is not None]
    threads_before = torch.get_num_threads()
    try:
        runner = None
        if runnable:
            if options.threads:
                torch.set_num_threads(options.threads)
            runner = ShotRunner(choice.load(), choice=choice, options=options,
                                progress=shot_bar if show_progress else None)
        overall = progress("shots", len(jobs), quiet=not show_progress or len(jobs) < 2, unit="shot", position=0)
        try:
            for job in jobs:
                if runner is None:
                    result = ShotResult(name=job.name, sidecar_file=job.sidecar_file, ok=False, error=job.load_error)
                else:
                    result = runner.run(job)
                results.append(result)
                overall.update(1)
                if on_result is not None:
                    on_result(result)
        finally:
            overall.close()
    finally:
        torch.set_num_threads(threads_before)  # the caller's process may go on doing other work
    return results


# ---------------------------------------------------------------------------------------------
# Ray execution


@dataclass(frozen=True)
class RayOptions:
    address: str  # "auto", "ray://host:10001", "host:6379", or "local" (a private cluster for this run)
    cpus_per_worker: int = 2  # CPUs an actor reserves when the cluster has no GPU
    max_workers: int | None = None  # at most this many actors (default: one per GPU, or per N CPUs)


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise BatchError("--ray needs Ray, which is not installed: pip install samroto[ray]") from None
    return ray


def run_on_ray(
    jobs: Sequence[ShotJob],
    *,
    choice: ModelChoice,
    options: BatchOptions,
    ray_options: RayOptions,
    on_result: Callable[[ShotResult], None] | None = None,
) -> list[ShotResult]:
    """Run the shots on a Ray cluster: one actor per GPU (or per N CPUs) loads the model once and runs
    the shots `ray.util.ActorPool` hands it. Mattes go straight to `options.out_dir`, which must be
    storage every node sees. A process already connected to Ray (`ray.init` done) keeps that
    connection; otherwise this connects to `address` and disconnects at the end."""
    ray = import_ray()
    from ray.util import ActorPool

    connected_here = False
    if not ray.is_initialized():
        try:
            if ray_options.address == "local":
                ray.init(include_dashboard=False)
            else:
                ray.init(address=ray_options.address)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise BatchError(f"cannot connect to the Ray cluster at {ray_options.address!r}: {exc}") from None
        connected_here = True
    try:
        return _run_with_pool(ray, ActorPool, jobs, choice=choice, options=options,
                              ray_options=ray_options, on_result=on_result)
    finally:
        if connected_here:
            ray.shutdown()


def _run_with_pool(
    ray: Any,
    actor_pool: Any,
    jobs: Sequence[ShotJob],
    *,
    choice: ModelChoice,
    options: BatchOptions,
    ray_options: RayOptions,
    on_result: Callable[[ShotResult], None] | None,
) -> list[ShotResult]:
    from ray.experimental.tqdm_ray import tqdm as ray_tqdm

    results: dict[str, ShotResult] = {}

    def report(result: ShotResult) -> None:
        results[result.name] = result
        overall.update(1)
        if on_result is not None:
            on_result(result)

    overall = ray_tqdm(desc="shots", total=len(jobs), unit="shot")
    runnable = [job for job in jobs if job.sidecar is not None]
    for job in jobs:
        if job.sidecar is None:
            report(ShotResult(name=job.name, sidecar_file=job.sidecar_file, ok=False, error=job.load_error))
    if runnable:
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = int(resources.get("CPU", 0))
        use_gpu = gpus > 0 and not (choice.device or "").startswith("cpu")
        if use_gpu:
            count, actor_resources = gpus, {"num_gpus": 1}
            # each actor sees only the GPU Ray gave it (CUDA_VISIBLE_DEVICES): plain "cuda"
            actor_choice = replace(choice, device="cuda")
        else:
            count = cpus // max(1, ray_options.cpus_per_worker)
            actor_resources = {"num_cpus": ray_options.cpus_per_worker}
            actor_choice = replace(choice, device="cpu")
            if count == 0:
                raise BatchError(
                    f"the Ray cluster has no GPU and {cpus} CPUs, fewer than --cpus-per-worker "
                    f"{ray_options.cpus_per_worker}"
                )
        count = min(count, len(runnable), ray_options.max_workers or count)
        actor_class = ray.remote(max_restarts=1)(ShotActor)
        threads = options.threads or (0 if use_gpu else ray_options.cpus_per_worker)
        actors = [actor_class.options(**actor_resources).remote(actor_choice, options, threads)
                  for _ in range(count)]
        pool = actor_pool(actors)
        for job in runnable:
            pool.submit(lambda actor, j: actor.run.remote(j), job)
        dead = 0
        last_error = "its Ray actor failed"
        while pool.has_next():
            try:
                report(pool.get_next_unordered())
            except ray.exceptions.ActorDiedError as exc:
                dead += 1
                last_error = f"its Ray actor died: {_first_line(exc)}"
                if dead == len(actors):
                    break  # nothing left to run the queued shots
            except ray.exceptions.RayError as exc:
                last_error = f"Ray failed running it: {_first_line(exc)}"
        for actor in actors:
            ray.kill(actor)
        for job in runnable:
            if job.name not in results:  # lost with an actor: we cannot tell which error was its own
                report(ShotResult(name=job.name, sidecar_file=job.sidecar_file, ok=False, error=last_error))
    overall.close()
    return [results[job.name] for job in jobs]


class ShotActor:
    """Ray actor body: loads the model once, then runs the shots it is given."""

    def __init__(self, choice: ModelChoice, options: BatchOptions, threads: int) -> None:
        import torch

        if threads:
            torch.set_num_threads(threads)
        from ray.experimental.tqdm_ray import tqdm as ray_tqdm

        def shot_bar(desc: str, total: int) -> ProgressBar:
            return ray_tqdm(desc=desc, total=total, unit="frame")

        self.runner: ShotRunner | None = None
        self.load_error: str | None = None
        try:
            self.runner = ShotRunner(choice.load(), choice=choice, options=options, progress=shot_bar)
        except Exception as exc:  # reported with each shot rather than as an opaque dead actor
            self.load_error = f"the model could not be loaded on a Ray worker: {exc}"

    def run(self, job: ShotJob) -> ShotResult:
        if self.runner is None:
            return ShotResult(name=job.name, sidecar_file=job.sidecar_file, ok=False, error=self.load_error)
        return self.runner.run(job)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
