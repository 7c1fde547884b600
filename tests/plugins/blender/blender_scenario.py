"""Drives the samroto add-on inside real Blender (the `bpy` module) against a real worker.

Run by `test_blender_addon.py` in a subprocess (bpy is heavy and keeps global state):

    python blender_scenario.py --zip samroto-0.1.0.zip --address tcp://127.0.0.1:PORT \
        --plate /tmp/plate/shot.1001.png --dead-address tcp://127.0.0.1:PORT2 --out result.json

with SAMROTO_CONFIG_DIR pointing at the worker's config folder and BLENDER_USER_RESOURCES at an
empty folder (the extension is installed there). It installs the zip the way Blender does,
enables the add-on, and goes through the artist's steps by calling the add-on's controller
(operators need a Clip Editor, which the bpy module has no window for), pumping the main-thread
queue as Blender's timer would. Every observation goes into the JSON file for the test to check.
"""

from __future__ import annotations

import argparse
import glob
import importlib
import json
import os
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List

MODULE = "bl_ext.user_default.samroto"
RESULT: Dict[str, Any] = {"steps": []}
STARTED = time.monotonic()


def save(out: Path) -> None:
    out.write_text(json.dumps(RESULT, indent=1, sort_keys=True))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zip", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--dead-address", required=True)
    parser.add_argument("--plate", required=True, help="the first file of the PNG sequence")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    try:
        import bpy

        RESULT["bpy"] = bpy.app.version_string
    except ImportError as exc:
        RESULT["error"] = "cannot import bpy (%s): pip install bpy (Blender as a Python module, Python 3.11)" % exc
        save(args.out)
        return 3
    try:
        run(args)
    except BaseException:
        RESULT["error"] = traceback.format_exc()
        save(args.out)
        print(RESULT["error"], file=sys.stderr)
        return 1
    save(args.out)
    return 0


def step(name: str) -> None:
    RESULT["steps"].append(name)
    print("scenario: %s (at %.1f s)" % (name, time.monotonic() - STARTED), flush=True)


def run(args: argparse.Namespace) -> None:
    import bpy

    RESULT["blender"] = bpy.app.version_string

    # --- install and enable the built extension, as Blender does for a dropped zip ----------
    step("install")
    result = bpy.ops.extensions.package_install_files(filepath=args.zip, repo="user_default", enable_on_install=True)
    RESULT["install"] = sorted(result)
    RESULT["enabled"] = MODULE in bpy.context.preferences.addons
    addon = importlib.import_module(MODULE)
    controller = importlib.import_module(MODULE + ".controller")
    tasks = importlib.import_module(MODULE + ".tasks")
    mask_builder = importlib.import_module(MODULE + ".mask_builder")
    RESULT["registered"] = {
        "operators": sorted(name for name in dir(bpy.ops.samroto)),
        "panel": hasattr(bpy.types, "SAMROTO_PT_main"),
        "clip_property": hasattr(bpy.types.MovieClip, "samroto"),
        "timer": bpy.app.timers.is_registered(tasks.tick),
        "load_post": controller.on_file_loaded in bpy.app.handlers.load_post,
    }
    RESULT["bridge_module"] = importlib.import_module(MODULE + ".bridge.client").__file__
    site = os.path.join(os.environ["BLENDER_USER_RESOURCES"], "extensions", ".local", "lib",
                        "python%d.%d" % sys.version_info[:2], "site-packages")
    RESULT["wheels_installed"] = sorted(n for n in os.listdir(site) if not n.endswith(".dist-info")) \
        if os.path.isdir(site) else []

    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.address = args.address
    prefs.timeout = 30.0

    def wait(job: Any, timeout: float = 240.0) -> Any:
        assert job is not None
        finished = tasks.wait_for(lambda: job.finished, timeout=timeout)
        tasks.drain(budget=None)
        if not finished:
            raise AssertionError("job %s did not finish" % job.label)
        return job

    # --- connect through the operator (it needs no Clip Editor) ------------------------------
    step("connect")
    RESULT["connect_op"] = sorted(bpy.ops.samroto.connect())
    runner = controller.runtime.runner
    tasks.wait_for(lambda: controller.runtime.info is not None or controller.runtime.message_is_error, timeout=60)
    RESULT["connect"] = {"message": controller.runtime.message,
                         "device": getattr(controller.runtime.info, "device", None)}

    # --- a generated image-sequence clip ------------------------------------------------------
    step("open session")
    clip = bpy.data.movieclips.load(args.plate)
    state = controller.clip_state(clip)
    bpy.context.scene.view_settings.view_transform = "Standard"  # not the default (AgX): it must travel
    job = wait(controller.open_session(bpy.context, clip))
    RESULT["open"] = {"state": job.state, "error": job.error, "session": state.session_id, "first": state.first,
                      "last": state.last, "size": [state.width, state.height], "plate": state.plate,
                      "message": controller.runtime.message}
    RESULT["colour"] = {
        "clip_colorspace": clip.colorspace_settings.name,
        "display": bpy.context.scene.display_settings.display_device,
        "view": bpy.context.scene.view_settings.view_transform,
        "config": os.path.join(bpy.utils.resource_path("LOCAL"), "datafiles", "colormanagement", "config.ocio"),
        "worker": session_colour(args.address, state.session_id),
    }

    # --- objects and prompts: the mask shows at once ------------------------------------------
    step("prompts")
    one = controller.add_object(clip, "Chair")
    two = controller.add_object(clip)
    job_click = controller.add_click(bpy.context, clip, one.obj_id, 1006, (80.0, 60.0), positive=True)
    job_box = controller.set_box(bpy.context, clip, two.obj_id, 1001, (40.0, 20.0, 120.0, 100.0))
    wait(job_click)
    wait(job_box)
    previews = controller.runtime.previews[state.key]
    previews_module = importlib.import_module(MODULE + ".previews")
    RESULT["prompts"] = {
        "states": [job_click.state, job_box.state], "errors": [job_click.error, job_box.error],
        "objects": [(item.obj_id, item.name) for item in state.objects],
        "preview_frames": sorted(previews),
        "preview_1006": {str(o): previews_module.coverage(p) for o, p in previews.get(1006, {}).items()},
        "preview_1001": {str(o): previews_module.coverage(p) for o, p in previews.get(1001, {}).items()},
        "book": json.loads(state.prompts),
        "frame_rgba": list(previews_module.overlay_image(
            [(p, (1.0, 0.0, 0.0)) for p in previews[1006].values()]).rgba.shape),
    }

    # --- propagate both ways with progress, pumping the queue like Blender's timer ------------
    step("propagate")
    state.auto_shapes = True  # the shapes are built on request by default; here right after tracking
    progress: List[Any] = []
    job = controller.propagate(bpy.context, clip, direction="both")
    RESULT["running_during"] = controller.propagation_running()

    def note_progress() -> bool:
        if job.progress:
            progress.append(job.progress)
        return job.finished

    tasks.wait_for(note_progress, timeout=240)
    tasks.drain(budget=None)
    wait(job)
    RESULT["propagate"] = {
        "state": job.state, "error": job.error, "frames": job.result.frames if job.result else None,
        "last_progress": list(job.progress) if job.progress else None,
        "progress_seen": len({tuple(p) for p in progress}),
        "tracked": {str(item.obj_id): item.tracked for item in state.objects},
        "matte_paths": {str(item.obj_id): item.matte_path for item in state.objects},
        "message": controller.runtime.message,
        "mask_name": state.mask_name,
    }
    # the propagation's end started a Build Mask (shapes from the worker) and loaded the mattes
    build = controller.runtime.build
    RESULT["auto_build"] = build is not None
    if build is not None:
        wait(build)
        tasks.wait_for(lambda: not controller.build_running(), timeout=120)
        RESULT["build_job"] = [build.state, build.error, controller.runtime.message]
    RESULT["auto_images"] = sorted(item.image_name for item in state.objects)
    if build is not None and build.state == "done":
        replies = build.result
        RESULT["shapes_from"] = "worker"
    else:  # a worker without get_shapes yet: the same dicts made here with samroto.core.outputs.shapes
        replies = shapes_with_core(args.address, state.session_id, [item.obj_id for item in state.objects],
                                   state.first, state.last)
        RESULT["shapes_from"] = "core"
        for obj_id, reply in replies.items():
            controller.apply_shapes(clip, obj_id, reply)
    RESULT["mask"] = inspect_mask(bpy, clip, controller, mask_builder, replies)

    # --- matte sequences as images ------------------------------------------------------------
    step("mattes")
    images = {}
    for item in state.objects:
        image = controller.load_mattes(clip, item.obj_id)
        images[str(item.obj_id)] = {"name": image.name, "source": image.source,
                                    "filepath": bpy.path.abspath(image.filepath),
                                    "colorspace": image.colorspace_settings.name,
                                    "first": image.get("samroto_first_frame"),
                                    "offset": image.get("samroto_frame_offset")}
        # what Blender reads from the worker's matte file on another frame (16-bit grey PNG)
        head, _, tail = item.matte_path.rpartition("1001")
        check = bpy.data.images.load(head + "1006" + tail)
        check.colorspace_settings.name = "Non-Color"
        pixels = list(check.pixels[:])
        images[str(item.obj_id)]["inside_1006"] = sum(1 for v in pixels[0::4] if v >= 0.5)
        images[str(item.obj_id)]["grey_1006"] = all(r == g == b for r, g, b in zip(
            pixels[0::4], pixels[1::4], pixels[2::4]))
        bpy.data.images.remove(check)
    RESULT["images"] = images

    # --- frames to review: timeline markers named with the object, a list in the panel, jumps ----
    step("review")
    review_module = importlib.import_module(MODULE + ".review")
    report_files = glob.glob(os.path.join(os.path.dirname(state.objects[0].matte_path), "*.confidence.json"))
    drawn: List[Any] = []

    class ReviewLayout:  # records the rows and buttons the Review panel draws
        def label(self, text: str = "", **_: Any) -> None:
            drawn.append(["label", text])

        def operator(self, idname: str, text: str = "", **_: Any) -> Any:
            drawn.append(["operator", idname, text])
            return SimpleNamespace()

        def row(self, **_: Any) -> "ReviewLayout":
            return self

        column = row

    review_module.SAMROTO_PT_review.draw(SimpleNamespace(layout=ReviewLayout()),
                                         SimpleNamespace(space_data=None, edit_movieclip=clip))
    listed = [[item.frame, item.scene_frame, item.obj_id, item.object_name, item.reasons]
              for item in clip.samroto_review]
    jumps = {}
    with bpy.context.temp_override(edit_movieclip=clip):
        if listed:
            bpy.context.scene.frame_set(0)
            jumps["next"] = [sorted(bpy.ops.samroto.jump_to_review(step=1)), bpy.context.scene.frame_current]
            last = listed[-1][1]
            jumps["to_last"] = [sorted(bpy.ops.samroto.jump_to_review(frame=last)), bpy.context.scene.frame_current]
            jumps["previous"] = [sorted(bpy.ops.samroto.jump_to_review(step=-1)), bpy.context.scene.frame_current]
    RESULT["review"] = {
        "report": json.loads(open(report_files[0]).read())["review"] if report_files else None,
        "listed": listed,
        "markers": sorted([m.frame, m.name] for m in bpy.context.scene.timeline_markers
                          if m.name.startswith("review: ")),  # (keyframe markers: test_blender_corrections.py)
        "drawn": drawn,
        "jumps": jumps,
        "names": {str(item.obj_id): item.name for item in state.objects},
    }

    # --- correction on a later frame, re-propagate forward from there --------------------------
    step("correct")
    state.auto_results = state.auto_shapes = False  # shapes take seconds per object; checked once above
    before = controller.runtime.previews[state.key][1009][one.obj_id]
    wait(controller.add_click(bpy.context, clip, one.obj_id, 1009, (20.0, 20.0), positive=False))
    job = wait(controller.propagate(bpy.context, clip, direction="forward", start=1009))
    RESULT["correct"] = {"state": job.state, "frames": job.result.frames if job.result else None,
                         "error": job.error, "book_frames": sorted(json.loads(state.prompts)[str(one.obj_id)]),
                         "preview_changed": before != controller.runtime.previews[state.key][1009][one.obj_id],
                         "review_markers": sorted([m.frame, m.name] for m in bpy.context.scene.timeline_markers
                                                  if m.name.startswith("review: ")),
                         "review_listed": sorted([item.scene_frame, "review: " + item.object_name]
                                                 for item in clip.samroto_review)}

    # --- the operators themselves, with the clip in context as the Clip Editor gives it ----------
    step("operators")
    ops: Dict[str, Any] = {}
    bpy.context.scene.frame_set(9)  # scene frame 9 shows plate frame 1009, where the correction is
    with bpy.context.temp_override(edit_movieclip=clip):
        ops["add_object"] = sorted(bpy.ops.samroto.add_object(name="Hat"))
        hat_id = state.objects[state.active_index].obj_id
        ops["active"] = state.objects[state.active_index].name
        try:
            bpy.ops.samroto.clear_frame()
            ops["clear_frame"] = "no error"
        except RuntimeError as exc:  # the operator reports an error: Blender raises it here
            ops["clear_frame"] = str(exc)
        ops["cancel_poll"] = bpy.ops.samroto.cancel.poll()
        ops["propagate"] = sorted(bpy.ops.samroto.propagate(direction="forward"))
        job = controller.runtime.propagation
        ops["propagate_poll_while_running"] = bpy.ops.samroto.propagate.poll()
        ops["cancel_poll_while_running"] = bpy.ops.samroto.cancel.poll()
        wait(job)
        ops["propagate_job"] = [job.state, job.error, job.result.frames if job.result else None]
        ops["load_mattes"] = sorted(bpy.ops.samroto.load_mattes())
        ops["build_mask_poll"] = bpy.ops.samroto.build_mask.poll()
        ops["remove_object"] = sorted(bpy.ops.samroto.remove_object(obj_id=hat_id))
        tasks.wait_for(lambda: all(item.obj_id != hat_id for item in state.objects), timeout=60)
        ops["objects_after"] = [item.name for item in state.objects]
    RESULT["operators"] = ops

    # --- Esc: cancel a running propagation -----------------------------------------------------
    step("cancel")
    job = controller.propagate(bpy.context, clip, direction="backward", start=1012)
    cancelled = {"asked": False}

    def cancel_after_first() -> bool:
        if job.progress and not cancelled["asked"]:
            cancelled["asked"] = controller.cancel_propagation()
        return job.finished

    tasks.wait_for(cancel_after_first, timeout=120)
    tasks.drain(budget=None)
    RESULT["cancel"] = {"state": job.state, "error": job.error, "frames": job.result.frames if job.result else None,
                        "outcome": job.result.state if job.result else None, "asked": cancelled["asked"],
                        "running_after": controller.propagation_running()}

    # --- remove an object: worker, layer, image, clicks ----------------------------------------
    step("remove")
    layer_two = two.layer_name
    two_id = two.obj_id
    job = wait(controller.remove_object(bpy.context, clip, two_id))
    mask = bpy.data.masks[state.mask_name]
    RESULT["remove"] = {"state": job.state, "error": job.error, "removed_on_worker": job.result,
                        "objects": [item.obj_id for item in state.objects],
                        "layers": [layer.name for layer in mask.layers], "removed_layer": layer_two,
                        "record_left": str(two_id) in mask.get(mask_builder.WRITTEN, {}),
                        "book_objects": sorted(json.loads(state.prompts))}

    # --- the worker lost the clip's session: a new one gets every click again -------------------
    step("lost session")
    old_session = state.session_id
    state.session_id = "lost-00000000"
    controller.runtime.sessions.clear()
    job = wait(controller.add_click(bpy.context, clip, one.obj_id, 1003, (30.0, 30.0), positive=True))
    RESULT["lost"] = {"state": job.state, "error": job.error, "old": old_session, "new": state.session_id,
                      "worker_frames": frames_with_output(args.address, state.session_id, one.obj_id,
                                                          state.first, state.last)}

    # --- preview mode: track at a lower resolution, then Compute Final Mattes --------------------
    step("preview")
    RESULT["preview"] = preview_then_final(bpy, args, controller, tasks, wait)

    # --- clear messages --------------------------------------------------------------------------
    step("errors")
    errors: Dict[str, Any] = {}
    prefs.address = args.dead_address
    prefs.timeout = 0.5
    job = wait(controller.connect(bpy.context), timeout=30)
    errors["no_worker"] = {"state": job.state, "error": job.error, "message": controller.runtime.message}
    prefs.address = args.address
    prefs.timeout = 30.0
    wrong = Path(os.environ["BLENDER_USER_RESOURCES"]) / "wrong_token"
    wrong.write_text("f" * 64 + "\n")
    os.chmod(wrong, 0o600)
    prefs.token_file = str(wrong)
    job = wait(controller.connect(bpy.context), timeout=60)
    errors["wrong_token"] = {"state": job.state, "error": job.error}
    prefs.token_file = str(Path(os.environ["BLENDER_USER_RESOURCES"]) / "missing_token")
    job = wait(controller.connect(bpy.context), timeout=30)
    errors["missing_token"] = {"state": job.state, "error": job.error}
    prefs.token_file = ""
    job = wait(controller.connect(bpy.context), timeout=60)
    errors["reconnect"] = job.state
    # a clip whose files are gone
    gone_dir = Path(args.plate).parent.parent / "gone"
    gone_dir.mkdir()
    gone_file = gone_dir / "gone.0001.png"
    gone_file.write_bytes(Path(args.plate).read_bytes())
    gone = bpy.data.movieclips.load(str(gone_file))
    gone_file.unlink()
    try:
        controller.open_session(bpy.context, gone)
        errors["no_files"] = {"raised": None}
    except Exception as exc:
        errors["no_files"] = {"raised": type(exc).__name__, "message": str(exc)}
    RESULT["errors"] = errors
    RESULT["runner_replaced"] = controller.runtime.runner is not runner

    # --- disable: everything unregistered ------------------------------------------------------
    step("disable")
    bpy.ops.preferences.addon_disable(module=MODULE)
    RESULT["disabled"] = {
        "panel": hasattr(bpy.types, "SAMROTO_PT_main"),
        "clip_property": hasattr(bpy.types.MovieClip, "samroto"),
        "timer": bpy.app.timers.is_registered(tasks.tick),
        "load_post": controller.on_file_loaded in bpy.app.handlers.load_post,
        "runner": controller.runtime.runner is not None,
    }
    del addon


class Recorder:
    """Stands in for a panel's UILayout: records the labels, progress texts and operators drawn."""

    def __init__(self, out: List[Any]) -> None:
        self.out = out
        self.alert = False
        self.enabled = True

    def label(self, text: str = "", icon: str = "NONE", **_: Any) -> None:
        self.out.append(["label", text, icon, self.alert])

    def progress(self, text: str = "", **_: Any) -> None:
        self.out.append(["progress", text])

    def operator(self, idname: str, **_: Any) -> Any:
        self.out.append(["operator", idname])
        return SimpleNamespace()

    def prop(self, *_: Any, **__: Any) -> None:
        pass

    def box(self, **_: Any) -> "Recorder":
        return Recorder(self.out)

    column = row = box


def draw(panel_draw: Any, clip: Any) -> List[Any]:
    """What a panel's (or the status bar's) draw function puts in its layout for the clip."""
    out: List[Any] = []
    panel_draw(SimpleNamespace(layout=Recorder(out)), SimpleNamespace(space_data=None, edit_movieclip=clip))
    return out


def preview_then_final(bpy: Any, args: argparse.Namespace, controller: Any, tasks: Any, wait: Any) -> Dict[str, Any]:
    """A second clip on the same files tracked in preview mode, then its final mattes."""
    panels = importlib.import_module(MODULE + ".panels")
    clip = bpy.data.movieclips.load(args.plate)
    state = controller.clip_state(clip)
    state.matte_dir_override = str(args.out.parent / "preview_mattes")  # keep the first clip's mattes
    state.preview_mode = True
    state.auto_shapes = True
    state.preview_resolution = 100
    state.memory_mode = "presence"  # chosen in the panel before the session opens; the final session keeps it
    out: Dict[str, Any] = {"memory_items": [[item.identifier, item.name, item.description] for item in
                                            state.bl_rna.properties["memory_mode"].enum_items]}
    job = wait(controller.open_session(bpy.context, clip))
    out["bad_size"] = [job.state, job.error]
    state.preview_resolution = 128  # a multiple of 32 below the micro model's 256
    cup = controller.add_object(clip, "Cup")
    wait(controller.add_click(bpy.context, clip, cup.obj_id, 1004, (80.0, 60.0), positive=True))
    messages: List[str] = []  # every panel message (the end of a propagation reports, then Build Mask does)
    report = controller.report

    def logged(message: str, *, error: bool = False) -> None:
        messages.append(message)
        report(message, error=error)

    def track(job: Any) -> Dict[str, Any]:
        """Follow a propagation to its end and the Build Mask it starts; what the artist saw."""
        shown: List[Any] = []
        del messages[:]

        def follow() -> bool:
            if job.progress and controller.propagation_running():
                shown.extend(draw(panels.SAMROTO_PT_track.draw, clip) + draw(panels.draw_status, clip))
            return job.finished and not controller.propagation_running()  # its end was handled too

        tasks.wait_for(follow, timeout=240)
        wait(job)
        build = controller.runtime.build
        wait(build)
        tasks.wait_for(lambda: not controller.build_running(), timeout=120)
        mask = bpy.data.masks.get(state.mask_name)
        images = [bpy.data.images.get(item.image_name) for item in state.objects]
        return {
            "job": [job.state, job.error, job.label, sorted(job.result.frames) if job.result else None],
            "messages": list(messages), "build": [build.state, build.error],
            "progress_texts": sorted({entry[1] for entry in shown if entry[0] == "progress"}),
            "session": state.session_id, "preview_session": state.preview_session,
            "track_resolution": state.track_resolution, "preview_mode": state.preview_mode,
            "label": controller.preview_label(clip), "panel": draw(panels.SAMROTO_PT_main.draw, clip),
            "tracked": [item.tracked for item in state.objects],
            "matte_paths": [item.matte_path for item in state.objects],
            "images": [[image.name, bpy.path.abspath(image.filepath)] if image else None for image in images],
            "mask": state.mask_name, "mask_preview": mask.get("samroto_preview") if mask else None,
            "layers": [layer.name for layer in mask.layers] if mask else None,
            "worker_preview": session_is_preview(args.address, state.session_id),
            "memory_mode": state.memory_mode,
            "worker_memory_mode": session_info(args.address, state.session_id).get("memory_mode"),
            "worker_frames": frames_with_output(args.address, state.session_id, cup.obj_id, state.first, state.last),
        }

    controller.report = logged
    out["preview"] = track(controller.propagate(bpy.context, clip, direction="both"))
    with bpy.context.temp_override(edit_movieclip=clip):
        out["final_poll"] = bpy.ops.samroto.compute_final.poll()
    with bpy.context.temp_override(edit_movieclip=bpy.data.movieclips[0]):  # the first clip: not a preview
        out["final_poll_first_clip"] = bpy.ops.samroto.compute_final.poll()
    try:
        controller.compute_final(bpy.context, bpy.data.movieclips[0])
        out["final_first_clip"] = "no error"
    except Exception as exc:
        out["final_first_clip"] = str(exc)
    with bpy.context.temp_override(edit_movieclip=clip):
        out["final_op"] = sorted(bpy.ops.samroto.compute_final())
    out["final"] = track(controller.runtime.propagation)
    controller.report = report
    out["masks"] = sorted(mask.name for mask in bpy.data.masks)
    out["preview_matte_files"] = sorted(os.listdir(str(args.out.parent / "preview_mattes")))
    return out


def session_colour(address: str, session_id: str) -> Dict[str, Any]:
    """The colour choices the worker made for the session."""
    from samroto.bridge import Client, auth

    client = Client(address, token=auth.read_token(auth.token_path()), timeout=60)
    try:
        return dict(client.resume_session(session_id).info["colour"])
    finally:
        client.close()


def session_info(address: str, session_id: str) -> Dict[str, Any]:
    """What the worker itself says about the session."""
    from samroto.bridge import Client, auth

    client = Client(address, token=auth.read_token(auth.token_path()), timeout=60)
    try:
        return dict(client.resume_session(session_id).info)
    finally:
        client.close()


def session_is_preview(address: str, session_id: str) -> bool:
    """What the worker itself says about the session."""
    from samroto.bridge import Client, auth

    client = Client(address, token=auth.read_token(auth.token_path()), timeout=60)
    try:
        return client.resume_session(session_id).preview
    finally:
        client.close()


def frames_with_output(address: str, session_id: str, obj_id: int, first: int, last: int) -> List[int]:
    """Frames on which the worker's session holds an output for the object (frames never prompted
    or tracked carry the placeholder score -1024)."""
    from samroto.bridge import Client, auth

    client = Client(address, token=auth.read_token(auth.token_path()), timeout=60)
    try:
        session = client.resume_session(session_id)
        frames = []
        for frame in range(first, last + 1):
            stored = session.get_frame(frame)
            if obj_id in stored.obj_ids and stored.scores[stored.obj_ids.index(obj_id)] > -1000:
                frames.append(frame)
        return frames
    finally:
        client.close()


def shapes_with_core(address: str, session_id: str, obj_ids: List[int], first: int, last: int) -> Dict[int, Any]:
    """What `get_shapes` answers, made with samroto.core.outputs.shapes from the worker's stored masks."""
    from samroto.bridge import Client, auth
    from samroto.core.outputs.shapes import masks_to_shapes, shape_tracks_to_wire

    client = Client(address, token=auth.read_token(auth.token_path()), timeout=60)
    try:
        session = client.resume_session(session_id)
        frames = list(range(first, last + 1))
        stored = {f: session.get_frame(f) for f in frames}
        replies = {}
        for obj_id in obj_ids:
            masks = [stored[f].matte(obj_id) for f in frames]
            tracks = masks_to_shapes(masks, frames)
            height, width = masks[0].shape
            replies[obj_id] = {"obj_id": obj_id, "width": width, "height": height,
                               "shapes": shape_tracks_to_wire(tracks, space="pixel", width=width, height=height)}
        return replies
    finally:
        client.close()


def inspect_mask(bpy: Any, clip: Any, controller: Any, mask_builder: Any, replies: Dict[int, Any]) -> Dict[str, Any]:
    """Layers, splines, point counts and keyframes of the built Mask, plus evaluated positions."""
    state = clip.samroto
    mask = bpy.data.masks[state.mask_name]
    plate = controller.clip_plate(clip, check_files=False)
    out: Dict[str, Any] = {"name": mask.name, "frame_range": [mask.frame_start, mask.frame_end],
                           "layers": {}, "scene_range": list(plate.scene_range)}
    for item in state.objects:
        layer = mask.layers[item.layer_name]
        tracks = replies[item.obj_id]["shapes"]
        splines = []
        # the layer's shape keys are on the frames the add-on recorded writing (a layer is keyed as a whole)
        keyed = [int(f) for f in mask[mask_builder.WRITTEN][str(item.obj_id)]["frames"]]
        for index, spline in enumerate(layer.splines):
            track = tracks[index]
            expected_scene = [plate.scene_frame(f) for f in track["frames"]]
            splines.append({"points": len(spline.points), "track_points": len(track["corners"]),
                            "key_frames": keyed, "tracked_scene_frames": expected_scene, "kind": track["kind"],
                            "cyclic": spline.use_cyclic, "animation": mask.animation_data is not None})
        # evaluate the animation on a tracked frame and compare with the worker's shape there
        outer = next(i for i, t in enumerate(tracks) if t["kind"] == "outer")
        frame = tracks[outer]["frames"][len(tracks[outer]["frames"]) // 2]
        bpy.context.scene.frame_set(plate.scene_frame(frame))
        key_index = tracks[outer]["frames"].index(frame)
        from samroto.core.outputs.shapes import to_blender
        import numpy as np

        expected = to_blender(np.asarray(tracks[outer]["points"][key_index]), state.width, state.height)
        actual = np.asarray([tuple(p.co) for p in layer.splines[outer].points])
        expected_left = to_blender(np.asarray(tracks[outer]["handles_in"][key_index]), state.width, state.height)
        actual_left = np.asarray([tuple(p.handle_left) for p in layer.splines[outer].points])
        out["layers"][str(item.obj_id)] = {
            "layer": layer.name, "splines": splines, "fill_holes": layer.use_fill_holes,
            "evaluated_frame": frame, "co_error": float(np.abs(actual - expected).max()),
            "handle_error": float(np.abs(actual_left - expected_left).max()),
        }
    out["layer_names"] = [layer.name for layer in mask.layers]
    return out


if __name__ == "__main__":
    sys.exit(main())
