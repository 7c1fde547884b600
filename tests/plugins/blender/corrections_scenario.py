"""Corrections keep approved work, in real Blender (the `bpy` module) against a real worker this
script starts itself: correct -> span -> undo, keyframes and locks on the timeline, locks respected,
before/after, markers cleaned up with their object.

Run by `test_blender_corrections.py` in a subprocess (its own script: the other scenarios' steps
do not run here):

    python corrections_scenario.py --zip samroto-0.1.0.zip --plate-dir /tmp/plate --root /tmp/work --out result.json

Every observation goes into the JSON file for the test to check.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
import time
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List

MODULE = "bl_ext.user_default.samroto"
REPO = Path(__file__).resolve().parents[3]
RESULT: Dict[str, Any] = {"steps": []}
STARTED = time.monotonic()


def save(out: Path) -> None:
    out.write_text(json.dumps(RESULT, indent=1, sort_keys=True, default=str))


def step(name: str) -> None:
    RESULT["steps"].append(name)
    print("scenario: %s (at %.1f s)" % (name, time.monotonic() - STARTED), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zip", required=True)
    parser.add_argument("--plate-dir", required=True, type=Path, help="shot.1001.png ... shot.1012.png")
    parser.add_argument("--root", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    try:
        import bpy  # noqa: F401
    except ImportError as exc:
        RESULT["error"] = "cannot import bpy (%s): pip install bpy (Blender as a Python module, Python 3.11)" % exc
        save(args.out)
        return 3
    sys.path.insert(0, str(REPO))
    import os

    from tests.bridge.bridge_support import start_worker_process

    worker = start_worker_process(args.root / "config", args.root / "sessions", args.root / "worker.log")
    os.environ["SAMROTO_CONFIG_DIR"] = str(args.root / "config")
    try:
        run(args, worker)
    except BaseException:
        RESULT["error"] = traceback.format_exc()
        save(args.out)
        print(RESULT["error"], file=sys.stderr)
        return 1
    finally:
        worker.process.kill()
    save(args.out)
    return 0


def run(args: argparse.Namespace, worker: Any) -> None:
    import bpy

    step("install")
    bpy.ops.extensions.package_install_files(filepath=args.zip, repo="user_default", enable_on_install=True)
    controller = importlib.import_module(MODULE + ".controller")
    tasks = importlib.import_module(MODULE + ".tasks")
    remote = importlib.import_module(MODULE + ".remote")
    prefs = bpy.context.preferences.addons[MODULE].preferences
    prefs.address = worker.address
    prefs.timeout = 30.0
    scene = bpy.context.scene

    def wait(job: Any, timeout: float = 240.0) -> Any:
        assert job is not None
        finished = tasks.wait_for(lambda: job.finished, timeout=timeout)
        tasks.drain(budget=None)
        if not finished:
            raise AssertionError("job %s did not finish" % job.label)
        return job

    def own_session(clip: Any) -> Any:
        from samroto.bridge import Client, auth

        client = Client(prefs.address, token=auth.read_token(auth.token_path()), timeout=60)
        return client, client.resume_session(clip.samroto.session_id)

    def worker_book(clip: Any) -> Dict[str, Any]:
        client, session = own_session(clip)
        try:
            return json.loads(remote.worker_prompts(session).to_json())
        finally:
            client.close()

    def worker_previews(clip: Any, frame: int) -> Dict[str, Any]:
        client, session = own_session(clip)
        try:
            return {str(o): p for o, p in remote.frame_previews(session, frame).items()}
        finally:
            client.close()

    def drawn(clip: Any) -> Dict[str, Any]:
        return json.loads(clip.samroto.prompts or "{}")

    def matte_hashes(item: Any) -> Dict[int, str]:
        """Plate frame -> digest of the object's matte file on disk."""
        first = Path(item.matte_path)
        stem, number, ext = first.name.rsplit(".", 2)
        out = {}
        for path in sorted(first.parent.glob("%s.*.%s" % (stem, ext))):
            out[int(path.name.rsplit(".", 2)[1])] = hashlib.sha1(path.read_bytes()).hexdigest()
        return out

    def changed(a: Dict[int, str], b: Dict[int, str]) -> List[int]:
        return sorted(f for f in set(a) | set(b) if a.get(f) != b.get(f))

    def markers() -> List[Any]:
        """The keyframe and lock markers (the review markers are another feature's)."""
        return sorted([m.frame, m.name] for m in bpy.context.scene.timeline_markers
                      if m.name.startswith(("key: ", "locked: ")))

    step("connect")
    wait(controller.connect(bpy.context))
    clip = bpy.data.movieclips.load(str(sorted(args.plate_dir.glob("shot.*.png"))[0]))
    clip.use_fake_user = True
    clip_name = clip.name
    state = controller.clip_state(clip)
    key = state.key
    wait(controller.open_session(bpy.context, clip))
    chair = controller.add_object(clip, "Chair")
    chair_id = chair.obj_id
    plate = controller.clip_plate(clip)

    # --- track with keyframes on 1003 and 1009 ---------------------------------------------------
    step("first track")
    first: Dict[str, Any] = {}
    RESULT["first"] = first
    wait(controller.add_click(bpy.context, clip, chair_id, 1003, (80.0, 60.0), positive=True))
    wait(controller.add_click(bpy.context, clip, chair_id, 1009, (80.0, 60.0), positive=True))
    scene.frame_set(plate.scene_frame(1003))
    plan = controller.track_plan(bpy.context, clip)
    first["plan"] = [plan.span, plan.start, plan.obj_id, plan.direction]
    job = wait(controller.track(bpy.context, clip))
    first["job"] = [job.state, job.error, sorted(job.result.frames) if job.result else None]
    item = controller.find_object(clip, chair_id)
    tracked = matte_hashes(item)
    first["matte_frames"] = sorted(tracked)
    first["markers"] = markers()
    first["marks"] = json.loads(state.marks or "{}")

    # --- a correction on 1006: Track re-tracks the span 1004-1008 only ----------------------------
    step("correct and span")
    span: Dict[str, Any] = {}
    RESULT["span"] = span
    span["before_preview"] = worker_previews(clip, 1005)  # inside the span, not a keyframe
    scene.frame_set(plate.scene_frame(1006))
    wait(controller.add_click(bpy.context, clip, chair_id, 1006, (30.0, 30.0), positive=False))
    after_prompt = matte_hashes(controller.find_object(clip, chair_id))
    plan = controller.track_plan(bpy.context, clip)
    span["plan"] = [plan.span, plan.start, plan.obj_id]
    with bpy.context.temp_override(edit_movieclip=clip):
        span["operator"] = sorted(bpy.ops.samroto.propagate())  # the Track button's default: AUTO
    job = wait(controller.runtime.propagation)
    span["job"] = [job.state, job.error, job.label]
    span["order"] = list(job.result.frames) if job.result else None
    item = controller.find_object(clip, chair_id)
    after_span = matte_hashes(item)
    span["changed_by_prompt"] = changed(tracked, after_prompt)
    span["changed_by_span"] = changed(after_prompt, after_span)
    span["kept_beyond"] = all(after_span[f] == tracked[f] for f in tracked if f < 1004 or f > 1008)
    span["markers"] = markers()
    span["after_preview"] = worker_previews(clip, 1005)

    # --- before/after: the previous result of 1006 ----------------------------------------------
    step("before/after")
    before: Dict[str, Any] = {}
    RESULT["before"] = before
    scene.frame_set(plate.scene_frame(1005))
    with bpy.context.temp_override(edit_movieclip=clip):
        before["operator"] = sorted(bpy.ops.samroto.before_after())
    tasks.wait_for(lambda: 1005 in controller.runtime.before.get(key, {}), timeout=60)
    tasks.drain(budget=None)
    before["state"] = clip.samroto.show_before
    shown = controller.shown_previews(clip, 1005) or {}
    before["shown"] = {str(o): p for o, p in shown.items()}
    # another frame while "before" shows: its previous result is fetched (1002 never changed: none)
    scene.frame_set(plate.scene_frame(1002))
    tasks.wait_for(lambda: 1002 in controller.runtime.before.get(key, {}), timeout=60)
    tasks.drain(budget=None)
    before["unchanged_frame"] = controller.shown_previews(clip, 1002)
    scene.frame_set(plate.scene_frame(1005))
    controller.set_before(bpy.context, clip, False)
    shown = controller.shown_previews(clip, 1005) or {}
    before["after_shown"] = {str(o): p for o, p in shown.items()}

    # --- undo the span, then the correction; redo both ------------------------------------------
    step("undo")
    undo: Dict[str, Any] = {}
    RESULT["undo"] = undo
    job = wait(controller.session_step(bpy.context, clip))
    undo["job"] = [job.state, job.error]
    clip = bpy.data.movieclips[clip_name]
    state = clip.samroto
    item = controller.find_object(clip, chair_id)
    undo["step"] = job.result[0].step if job.result else None
    undo["frames"] = job.result[0].frames if job.result else None
    undone = matte_hashes(item)
    undo["restored"] = changed(after_prompt, undone)
    undo["shown"] = {str(o): p for o, p in (controller.runtime.previews.get(key, {}).get(1005) or {}).items()}
    undo["worker_shown"] = worker_previews(clip, 1005)
    undo["message"] = controller.runtime.message
    job = wait(controller.session_step(bpy.context, clip))  # the correction's prompt
    undo["prompt_job"] = [job.state, job.error]
    undo["drawn"] = drawn(clip)
    undo["worker"] = worker_book(clip)
    undo["tracked_restored"] = changed(tracked, matte_hashes(controller.find_object(clip, chair_id)))
    undo["markers"] = markers()
    job = wait(controller.session_step(bpy.context, clip, redo=True))
    job = wait(controller.session_step(bpy.context, clip, redo=True))
    undo["redo_job"] = [job.state, job.error]
    undo["redone"] = changed(after_span, matte_hashes(controller.find_object(clip, chair_id)))
    undo["redo_drawn"] = drawn(clip)
    undo["redo_markers"] = markers()
    # the platform's undo / redo keys inside the prompt tool step the session's history too
    prompt_tool = importlib.import_module(MODULE + ".prompt_tool")
    keys: List[Any] = []
    for shift, said in ((False, "Undid "), (True, "Redid ")):
        context = SimpleNamespace(area=SimpleNamespace(type="CLIP_EDITOR"), scene=scene,
                                  space_data=SimpleNamespace(type="CLIP_EDITOR", clip=clip),
                                  preferences=bpy.context.preferences, window_manager=bpy.context.window_manager)
        event = SimpleNamespace(type="Z", value="PRESS", shift=shift, ctrl=True, oskey=True, alt=False)
        tool = SimpleNamespace(_path=[], report=lambda *args: None)
        controller.runtime.message = ""
        answer = prompt_tool.SAMROTO_OT_prompt_tool.modal(tool, context, event)
        tasks.wait_for(lambda: controller.runtime.message.startswith(said), timeout=60)
        tasks.drain(budget=None)
        keys.append([sorted(answer), controller.runtime.message])
    undo["keys"] = keys
    undo["keys_kept"] = changed(after_span, matte_hashes(controller.find_object(clip, chair_id)))
    job = wait(controller.session_step(bpy.context, clip, redo=True))
    undo["nothing_to_redo"] = [job.state, job.error]

    # --- locks: 1010-1012 (the scene's in/out) stay as they are ---------------------------------
    step("locks")
    locks: Dict[str, Any] = {}
    RESULT["locks"] = locks
    clip = bpy.data.movieclips[clip_name]
    state = clip.samroto
    scene.use_preview_range = True
    scene.frame_preview_start, scene.frame_preview_end = plate.scene_frame(1010), plate.scene_frame(1012)
    with bpy.context.temp_override(edit_movieclip=clip):
        locks["operator"] = sorted(bpy.ops.samroto.lock())
    tasks.wait_for(lambda: controller.runtime.message.startswith(("Locked", "Lock failed")), timeout=60)
    tasks.drain(budget=None)
    locks["marks"] = json.loads(state.marks or "{}")
    locks["markers"] = markers()
    panels = importlib.import_module(MODULE + ".panels")
    scene.frame_set(plate.scene_frame(1006))  # the correction's frame: Track re-tracks a span here
    locks["panels"] = {name: drawn_panel(getattr(panels, name).draw, clip, scene)
                       for name in ("SAMROTO_PT_track", "SAMROTO_PT_corrections")}
    locks["message"] = controller.runtime.message
    before_lock = matte_hashes(controller.find_object(clip, chair_id))
    # a prompt on a locked frame is refused by the worker: rolled back and reported, no traceback
    job = wait(controller.add_click(bpy.context, clip, chair_id, 1011, (40.0, 40.0), positive=True))
    locks["locked_prompt"] = [job.state, job.error]
    locks["locked_prompt_drawn"] = sorted(drawn(clip).get(str(chair_id), {}))
    locks["popup"] = controller.runtime.popups[-1] if controller.runtime.popups else None
    # tracking to the end from 1003 goes through the locked frames without rewriting them
    scene.frame_set(plate.scene_frame(1003))
    job = wait(controller.track(bpy.context, clip, extent="FULL", direction="forward"))
    locks["full_job"] = [job.state, job.error, sorted(job.result.frames) if job.result else None]
    after_full = matte_hashes(controller.find_object(clip, chair_id))
    locks["locked_kept"] = all(after_full[f] == before_lock[f] for f in (1010, 1011, 1012))
    # a bad range is refused before anything is sent
    try:
        controller.set_lock(bpy.context, clip, chair_id, mode="CUSTOM", first=2000, last=2005)
        locks["bad_range"] = None
    except (ValueError, remote.AddonError) as exc:
        locks["bad_range"] = str(exc)
    scene.frame_set(plate.scene_frame(1011))
    job = wait(controller.set_lock(bpy.context, clip, chair_id, locked=False, mode="CURRENT"))
    locks["unlock"] = [job.state, job.error, json.loads(state.marks or "{}").get("locks")]
    locks["unlock_markers"] = markers()

    # --- save and reload: the markers come back and are refreshed from the worker -----------------
    step("reload")
    reload: Dict[str, Any] = {}
    RESULT["reload"] = reload
    blend = args.root / "shot.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    tasks.wait_for(lambda: not controller.runtime.needs_sync and not _busy(controller), timeout=60)
    tasks.drain(budget=None)
    scene = bpy.context.scene
    clip = bpy.data.movieclips[clip_name]
    reload["markers"] = markers()
    reload["marks"] = json.loads(clip.samroto.marks or "{}")

    # --- removing the object takes its markers along --------------------------------------------
    step("remove")
    job = wait(controller.remove_object(bpy.context, clip, chair_id))
    RESULT["remove"] = {"job": [job.state, job.error], "markers": markers()}


class Recorder:
    """Stands in for a panel's UILayout: records the texts of its labels and buttons."""

    def __init__(self, out: List[Any]) -> None:
        self.out = out
        self.alert = False
        self.enabled = True

    def label(self, text: str = "", **_: Any) -> None:
        self.out.append(["label", text])

    def operator(self, idname: str, text: str = "", **_: Any) -> Any:
        self.out.append([idname, text])
        return SimpleNamespace()

    def prop(self, *_: Any, **__: Any) -> None:
        pass

    def box(self, **_: Any) -> "Recorder":
        return Recorder(self.out)

    column = row = box


def drawn_panel(panel_draw: Any, clip: Any, scene: Any) -> List[Any]:
    out: List[Any] = []
    panel_draw(SimpleNamespace(layout=Recorder(out)), SimpleNamespace(space_data=None, edit_movieclip=clip, scene=scene))
    return out


def _busy(controller: Any) -> bool:
    runner = controller.runtime.runner
    return runner is not None and not runner._jobs.empty()


if __name__ == "__main__":
    sys.exit(main())
