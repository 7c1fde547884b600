"""Operators of the samroto sidebar (the click/box tool lives in `prompt_tool`)."""

# no `from __future__ import annotations` here: Blender reads the property annotations as objects

from typing import Any, Optional, Set

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from . import controller, plates, remote
from .props import DIRECTION_ITEMS


def clip_in_context(context: bpy.types.Context) -> Optional[bpy.types.MovieClip]:
    """The Clip Editor's clip (the operators work from its sidebar)."""
    space = context.space_data
    if space is not None and space.type == "CLIP_EDITOR":
        return space.clip
    return getattr(context, "edit_movieclip", None)


def _has_clip(context: bpy.types.Context) -> bool:
    return clip_in_context(context) is not None


def _started(operator: bpy.types.Operator, action: Any) -> Set[str]:
    """Run `action()`; turn artist-facing failures into an error report."""
    try:
        action()
    except (remote.AddonError, plates.PlateError, ValueError) as exc:
        controller.report(str(exc), error=True)
        operator.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
    return {"FINISHED"}


class SAMROTO_OT_connect(bpy.types.Operator):
    """Connect to the samroto worker (starts it with the preferences' start command if none answers)"""

    bl_idname = "samroto.connect"
    bl_label = "Connect"

    def execute(self, context: bpy.types.Context) -> Set[str]:
        return _started(self, lambda: controller.connect(context))


class SAMROTO_OT_open_session(bpy.types.Operator):
    """Open a worker session on the active clip (the worker reads the clip's own files)"""

    bl_idname = "samroto.open_session"
    bl_label = "Open Session"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _has_clip(context)

    def execute(self, context: bpy.types.Context) -> Set[str]:
        clip = clip_in_context(context)
        return _started(self, lambda: controller.open_session(context, clip))


class SAMROTO_OT_add_object(bpy.types.Operator):
    """Add an object to track on this clip"""

    bl_idname = "samroto.add_object"
    bl_label = "Add Object"
    bl_options = {"UNDO"}

    name: StringProperty(name="Name", default="")  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _has_clip(context)

    def execute(self, context: bpy.types.Context) -> Set[str]:
        item = controller.add_object(clip_in_context(context), self.name)
        self.report({"INFO"}, "Added %s: click on it with the Click / Box tool" % item.name)
        return {"FINISHED"}


class SAMROTO_OT_remove_object(bpy.types.Operator):
    """Remove the active object from the session, with its mask layer and matte image"""

    bl_idname = "samroto.remove_object"
    bl_label = "Remove Object"

    obj_id: IntProperty(name="Object id", default=0)  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        clip = clip_in_context(context)
        return clip is not None and controller.active_object(clip) is not None and \
            not controller.propagation_running()

    def execute(self, context: bpy.types.Context) -> Set[str]:
        clip = clip_in_context(context)
        item = controller.find_object(clip, self.obj_id) if self.obj_id else controller.active_object(clip)
        if item is None:
            self.report({"ERROR"}, "No such object")
            return {"CANCELLED"}
        obj_id = item.obj_id
        return _started(self, lambda: controller.remove_object(context, clip, obj_id))


class SAMROTO_OT_clear_frame(bpy.types.Operator):
    """Remove the active object's clicks and box on the current frame"""

    bl_idname = "samroto.clear_frame"
    bl_label = "Clear Frame"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        clip = clip_in_context(context)
        return clip is not None and controller.active_object(clip) is not None

    def execute(self, context: bpy.types.Context) -> Set[str]:
        clip = clip_in_context(context)
        item = controller.active_object(clip) if clip is not None else None
        if clip is None or item is None:
            return {"CANCELLED"}

        def clear() -> None:
            frame = controller.plate_frame(clip, context.scene.frame_current)
            if controller.clear_prompts(context, clip, item.obj_id, frame) is None:
                raise ValueError("%s has no clicks on this frame" % item.name)

        return _started(self, clear)


class _PropagationOperator:
    """Start a propagation job, then follow it modally: progress in the status bar, Esc cancels."""

    _timer: Any = None
    _job: Optional[remote.Job] = None

    def _start(self, context: bpy.types.Context) -> remote.Job:
        raise NotImplementedError

    def execute(self, context: bpy.types.Context) -> Set[str]:
        return _started(self, lambda: self._start(context))

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> Set[str]:
        try:
            self._job = self._start(context)
        except (remote.AddonError, plates.PlateError, ValueError) as exc:
            controller.report(str(exc), error=True)
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        wm = context.window_manager
        self._timer = wm.event_timer_add(0.1, window=context.window)
        wm.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _status(self, context: bpy.types.Context) -> None:
        if self._job is not None:
            context.workspace.status_text_set("samroto: %s (Esc to cancel)" % controller.progress_text(self._job))

    def _finish(self, context: bpy.types.Context) -> None:
        context.window_manager.event_timer_remove(self._timer)
        context.workspace.status_text_set(None)
        controller.redraw()

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> Set[str]:
        job = self._job
        if job is None or job.finished:
            self._finish(context)
            if job is not None and job.state == "failed":
                self.report({"ERROR"}, job.error or "propagation failed")
                return {"CANCELLED"}
            return {"FINISHED"}
        if event.type == "ESC" and event.value == "PRESS":
            controller.cancel_propagation()
            return {"RUNNING_MODAL"}
        if event.type == "TIMER":
            self._status(context)
            controller.redraw()
        return {"PASS_THROUGH"}


class SAMROTO_OT_propagate(_PropagationOperator, bpy.types.Operator):
    """Track every object through the clip; progress shows in the status bar, Esc cancels"""

    bl_idname = "samroto.propagate"
    bl_label = "Propagate"

    direction: EnumProperty(name="Direction", items=DIRECTION_ITEMS, default="both")  # type: ignore[valid-type]
    from_current: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="From current frame", default=True,
        description="Start at the current frame when it has clicks (else the earliest prompted frame)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _has_clip(context) and not controller.propagation_running()

    def _start(self, context: bpy.types.Context) -> remote.Job:
        clip = clip_in_context(context)
        start = None
        if self.from_current:
            frame = controller.plate_frame(clip, context.scene.frame_current)
            if frame in controller.prompt_book(clip).frames():
                start = frame
        return controller.propagate(context, clip, direction=self.direction, start=start)


class SAMROTO_OT_compute_final(_PropagationOperator, bpy.types.Operator):
    """Track the preview's clicks again at full resolution for the final mattes and mask; the clip
    then works on the full-resolution session. Progress shows in the status bar, Esc cancels"""

    bl_idname = "samroto.compute_final"
    bl_label = "Compute Final Mattes"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        clip = clip_in_context(context)
        return clip is not None and bool(controller.preview_label(clip)) and not controller.propagation_running()

    def _start(self, context: bpy.types.Context) -> remote.Job:
        return controller.compute_final(context, clip_in_context(context))


class SAMROTO_OT_cancel(bpy.types.Operator):
    """Cancel the running propagation"""

    bl_idname = "samroto.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return controller.propagation_running()

    def execute(self, context: bpy.types.Context) -> Set[str]:
        controller.cancel_propagation()
        return {"FINISHED"}


class SAMROTO_OT_build_mask(bpy.types.Operator):
    """Rebuild the Mask layers of the tracked objects from the worker's shapes"""

    bl_idname = "samroto.build_mask"
    bl_label = "Build Mask"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _has_clip(context) and not controller.propagation_running()

    def execute(self, context: bpy.types.Context) -> Set[str]:
        clip = clip_in_context(context)
        return _started(self, lambda: controller.build_mask(context, clip))


class SAMROTO_OT_load_mattes(bpy.types.Operator):
    """Load the tracked objects' matte sequences as images"""

    bl_idname = "samroto.load_mattes"
    bl_label = "Load Mattes"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        clip = clip_in_context(context)
        return clip is not None and any(item.matte_path for item in clip.samroto.objects)

    def execute(self, context: bpy.types.Context) -> Set[str]:
        clip = clip_in_context(context)
        if clip is None:
            return {"CANCELLED"}

        def load() -> None:
            names = [controller.load_mattes(clip, item.obj_id).name for item in clip.samroto.objects
                     if item.matte_path]
            controller.report("Loaded %s" % ", ".join(names))

        return _started(self, load)


CLASSES = (SAMROTO_OT_connect, SAMROTO_OT_open_session, SAMROTO_OT_add_object, SAMROTO_OT_remove_object,
           SAMROTO_OT_clear_frame, SAMROTO_OT_propagate, SAMROTO_OT_compute_final, SAMROTO_OT_cancel,
           SAMROTO_OT_build_mask, SAMROTO_OT_load_mattes)
