"""Operators of the samroto sidebar (the click/box tool lives in `prompt_tool`)."""

# no `from __future__ import annotations` here: Blender reads the property annotations as objects

from typing import Any, Optional, Set

import bpy
from bpy.props import EnumProperty, IntProperty, StringProperty

from . import controller, plates, remote, tasks
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
    """Run `action()`; turn artist-facing failures into an error report (`self.report`, which
    Blender shows in the status bar and the Info log; the panel keeps the last message).
    The jobs `action` submits start once the operator call has returned (`controller.hold_jobs`)."""
    controller.hold_jobs()
    tasks.post(controller.release_jobs)  # runs on the main thread after the operator call
    try:
        action()
    except (remote.AddonError, plates.PlateError, ValueError, RuntimeError) as exc:
        controller.report(str(exc), error=True)
        operator.report({"ERROR"}, str(exc))
        return {"CANCELLED"}
    return {"FINISHED"}


class SAMROTO_OT_start_worker(bpy.types.Operator):
    """Start a local SamRoto worker with the start command of the add-on preferences, and connect to it"""

    bl_idname = "samroto.start_worker"
    bl_label = "Start Worker"

    def execute(self, context: bpy.types.Context) -> Set[str]:
        result = _started(self, lambda: controller.connect(context, start=True))
        if result == {"FINISHED"}:
            self.report({"INFO"}, "Starting the worker (loading the model can take a minute)")
        return result


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
    """Remove the active object from the session, with its mask layer and matte image (Undo brings its
    prompts back to the worker; propagate again for its mattes)"""

    bl_idname = "samroto.remove_object"
    bl_label = "Remove Object"
    bl_options = {"REGISTER", "UNDO"}

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

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> Set[str]:
        clip = clip_in_context(context)
        item = controller.find_object(clip, self.obj_id) if self.obj_id else controller.active_object(clip)
        name = item.name if item is not None else "the object"
        return context.window_manager.invoke_confirm(
            self, event, title="Remove %s?" % name, message="Its prompts, tracking on the worker, mask layer and "
            "matte image go (Undo restores the prompts)", confirm_text="Remove", icon="WARNING") \
            if bpy.app.version >= (4, 1, 0) else context.window_manager.invoke_confirm(self, event)


class SAMROTO_OT_clear_frame(bpy.types.Operator):
    """Remove the active object's clicks and box on the current frame"""

    bl_idname = "samroto.clear_frame"
    bl_label = "Clear Frame"
    bl_options = {"REGISTER", "UNDO"}

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
            self.report({"ERROR"}, str(exc))  # type: ignore[attr-defined]  # bpy.types.Operator's, mixed in
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

    def _running(self) -> bool:
        return self._job is not None and not self._job.finished

    def _cancel(self) -> None:
        controller.cancel_propagation()

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> Set[str]:
        job = self._job
        if not self._running():
            self._finish(context)
            if job is not None and job.state == "failed":
                self.report({"ERROR"}, job.error or "%s failed" % job.label)  # type: ignore[attr-defined]
                return {"CANCELLED"}
            return {"FINISHED"}
        if event.type == "ESC" and event.value == "PRESS":
            self._cancel()
            return {"RUNNING_MODAL"}
        if event.type == "TIMER":
            self._status(context)
            controller.redraw()
        return {"PASS_THROUGH"}


EXTENT_ITEMS = [
    ("AUTO", "Auto", "After a correction (a prompt on a frame the active object was already tracked on) re-track "
     "only the span it affects, up to the neighbouring keyframes; otherwise track to the end"),
    ("SPAN", "Span", "Re-track the active object from this corrected frame up to its neighbouring keyframes only"),
    ("FULL", "To the end", "Track every object to the end of the clip (both ways, or the direction asked)"),
]


class SAMROTO_OT_propagate(_PropagationOperator, bpy.types.Operator):
    """Track: after a correction only the span it affects (frames beyond keep their mattes), else every object
    through the clip; progress shows in the status bar, Esc cancels"""

    bl_idname = "samroto.propagate"
    bl_label = "Track"

    direction: EnumProperty(name="Direction", items=DIRECTION_ITEMS, default="both")  # type: ignore[valid-type]
    extent: EnumProperty(name="Extent", items=EXTENT_ITEMS, default="AUTO")  # type: ignore[valid-type]
    from_current: bpy.props.BoolProperty(  # type: ignore[valid-type]
        name="From current frame", default=True,
        description="Start at the current frame when it has clicks (else the earliest prompted frame)")

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _has_clip(context) and not controller.propagation_running()

    @classmethod
    def description(cls, context: bpy.types.Context, properties: Any) -> str:
        return next(item[2] for item in EXTENT_ITEMS if item[0] == properties.extent)

    def _start(self, context: bpy.types.Context) -> remote.Job:
        return controller.track(context, clip_in_context(context), extent=self.extent, direction=self.direction,
                                from_current=self.from_current)


LOCK_RANGE_ITEMS = [
    ("PREVIEW", "In/Out", "The scene's preview range (in/out) when one is set, else the current frame"),
    ("CURRENT", "Current frame", "The current frame only"),
    ("CUSTOM", "Custom", "The plate frames First to Last"),
]


class SAMROTO_OT_lock(bpy.types.Operator):
    """Lock the active object's approved frames (the scene's in/out range, else the current frame): tracking
    never rewrites them and tracks through them; prompts there are refused until unlocked"""

    bl_idname = "samroto.lock"
    bl_label = "Lock"
    bl_options = {"REGISTER"}

    unlock: bpy.props.BoolProperty(name="Unlock", default=False)  # type: ignore[valid-type]
    range: EnumProperty(name="Frames", items=LOCK_RANGE_ITEMS, default="PREVIEW")  # type: ignore[valid-type]
    first: IntProperty(name="First", description="First plate frame (Custom)")  # type: ignore[valid-type]
    last: IntProperty(name="Last", description="Last plate frame (Custom)")  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        clip = clip_in_context(context)
        return clip is not None and bool(clip.samroto.session_id) and controller.active_object(clip) is not None \
            and not controller.propagation_running()

    @classmethod
    def description(cls, context: bpy.types.Context, properties: Any) -> str:
        if properties.unlock:
            return "Unlock the active object's frames (the scene's in/out range, else the current frame)"
        return cls.__doc__ or ""

    def execute(self, context: bpy.types.Context) -> Set[str]:
        clip = clip_in_context(context)
        item = controller.active_object(clip) if clip is not None else None
        if clip is None or item is None:
            return {"CANCELLED"}
        obj_id = item.obj_id
        return _started(self, lambda: controller.set_lock(context, clip, obj_id, locked=not self.unlock,
                                                          mode=self.range, first=self.first, last=self.last))


class SAMROTO_OT_session_undo(bpy.types.Operator):
    """Undo the session's last step on the worker (a prompt change or a tracking run): the mattes and prompts
    it changed come back"""

    bl_idname = "samroto.session_undo"
    bl_label = "Undo"

    redo: bpy.props.BoolProperty(name="Redo", default=False)  # type: ignore[valid-type]

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        clip = clip_in_context(context)
        return clip is not None and bool(clip.samroto.session_id) and not controller.propagation_running()

    @classmethod
    def description(cls, context: bpy.types.Context, properties: Any) -> str:
        if properties.redo:
            return "Redo the session's step undone last on the worker"
        return cls.__doc__ or ""

    def execute(self, context: bpy.types.Context) -> Set[str]:
        clip = clip_in_context(context)
        return _started(self, lambda: controller.session_step(context, clip, redo=self.redo))


class SAMROTO_OT_before_after(bpy.types.Operator):
    """Toggle between the frame's current result and its previous one (what the last step that changed it
    overwrote)"""

    bl_idname = "samroto.before_after"
    bl_label = "Before / After"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        clip = clip_in_context(context)
        return clip is not None and bool(clip.samroto.session_id)

    def execute(self, context: bpy.types.Context) -> Set[str]:
        clip = clip_in_context(context)
        on = not clip.samroto.show_before
        return _started(self, lambda: controller.set_before(context, clip, on))


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
    """Cancel the running propagation or Mask build"""

    bl_idname = "samroto.cancel"
    bl_label = "Cancel"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return controller.propagation_running() or controller.build_running()

    def execute(self, context: bpy.types.Context) -> Set[str]:
        if not (controller.cancel_propagation() or controller.cancel_build()):
            self.report({"INFO"}, "Nothing to cancel")
        return {"FINISHED"}


class SAMROTO_OT_build_mask(_PropagationOperator, bpy.types.Operator):
    """Build the tracked objects' Mask layers from the worker's shapes, as layer shape keys (a few frames
    at a time: progress in the status bar, Esc cancels and keeps the old layers)"""

    bl_idname = "samroto.build_mask"
    bl_label = "Build Shapes"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return _has_clip(context) and not controller.propagation_running() and not controller.build_running()

    def _start(self, context: bpy.types.Context) -> remote.Job:
        job = controller.build_mask(context, clip_in_context(context))
        if job is None:
            raise remote.AddonError("Nothing tracked yet: propagate first")
        return job

    def _running(self) -> bool:
        return (self._job is not None and not self._job.finished) or controller.build_running()

    def _cancel(self) -> None:
        controller.cancel_build()

    def _status(self, context: bpy.types.Context) -> None:
        build = controller.runtime.building
        if build is not None and not build.finished:
            done, total = build.progress
            context.workspace.status_text_set("SamRoto: building shapes %d/%d (Esc to cancel)" % (done, total))
        else:
            context.workspace.status_text_set("SamRoto: fetching shapes from the worker (Esc to cancel)")


def _matte_objects(clip: bpy.types.MovieClip) -> Any:
    return [item for item in clip.samroto.objects if item.matte_path]


class SAMROTO_OT_add_matte_node(bpy.types.Operator):
    """Add the active object's matte sequence to the compositor as an Image node playing in step with the clip"""

    bl_idname = "samroto.add_matte_node"
    bl_label = "Matte to Compositor"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        clip = clip_in_context(context)
        item = controller.active_object(clip) if clip is not None else None
        return item is not None and bool(item.matte_path)

    def execute(self, context: bpy.types.Context) -> Set[str]:
        clip = clip_in_context(context)
        item = controller.active_object(clip)
        if item is None:
            return {"CANCELLED"}
        result = _started(self, lambda: controller.add_matte_node(context, clip, item.obj_id))
        if result == {"FINISHED"}:
            self.report({"INFO"}, "Added an Image node with %s's mattes to the compositor" % item.name)
        return result


class SAMROTO_OT_add_matte_strip(bpy.types.Operator):
    """Add the active object's matte sequence to the Video Sequencer as an image strip on the clip's frames"""

    bl_idname = "samroto.add_matte_strip"
    bl_label = "Matte to Sequencer"
    bl_options = {"REGISTER", "UNDO"}

    poll = SAMROTO_OT_add_matte_node.poll

    def execute(self, context: bpy.types.Context) -> Set[str]:
        clip = clip_in_context(context)
        item = controller.active_object(clip)
        if item is None:
            return {"CANCELLED"}
        result = _started(self, lambda: controller.add_matte_strip(context, clip, item.obj_id))
        if result == {"FINISHED"}:
            self.report({"INFO"}, "Added an image strip with %s's mattes to the Sequencer" % item.name)
        return result


def _active_mask_layer(context: bpy.types.Context) -> Any:
    space = context.space_data
    mask = getattr(space, "mask", None) if space is not None else None
    if mask is None:
        clip = clip_in_context(context)
        mask = bpy.data.masks.get(clip.samroto.mask_name) if clip is not None and clip.samroto.mask_name else None
    layer = mask.layers.active if mask is not None else None
    return mask, layer


class SAMROTO_OT_layer_as_prompt(bpy.types.Operator):
    """Use the active mask layer's shape on this frame as the object's mask prompt (the layer's own object
    when the add-on built it, else the active object)"""

    bl_idname = "samroto.layer_as_prompt"
    bl_label = "Use Mask Layer as Prompt"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        clip = clip_in_context(context)
        return clip is not None and _active_mask_layer(context)[1] is not None and \
            not controller.propagation_running()

    def execute(self, context: bpy.types.Context) -> Set[str]:
        from . import mask_builder

        clip = clip_in_context(context)
        mask, layer = _active_mask_layer(context)
        obj_id = mask_builder.object_of_layer(mask, layer)
        if obj_id is None:
            item = controller.active_object(clip)
            if item is None:
                self.report({"ERROR"}, "Add an object first: the layer %r is not one of SamRoto's" % layer.name)
                return {"CANCELLED"}
            obj_id = item.obj_id
        return _started(self, lambda: controller.layer_as_prompt(context, clip, layer, obj_id))


class SAMROTO_OT_send_edits(bpy.types.Operator):
    """Send every frame you edited in the active object's mask layer to the worker as a correction (a mask
    prompt); propagate afterwards"""

    bl_idname = "samroto.send_edits"
    bl_label = "Send Edits as Corrections"
    bl_options = {"REGISTER", "UNDO"}

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        clip = clip_in_context(context)
        return clip is not None and controller.active_object(clip) is not None and bool(clip.samroto.mask_name) \
            and not controller.propagation_running()

    def execute(self, context: bpy.types.Context) -> Set[str]:
        clip = clip_in_context(context)
        item = controller.active_object(clip)
        if item is None:
            return {"CANCELLED"}
        jobs: list = []
        result = _started(self, lambda: jobs.extend(controller.send_edits(context, clip, item.obj_id)))
        if result == {"FINISHED"}:
            self.report({"INFO"}, "Sent %d edited frame(s) of %s" % (len(jobs), item.name) if jobs
                        else "%s has no edited frames" % item.name)
        return result


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
            self.report({"INFO"}, "Loaded %s" % ", ".join(names))

        return _started(self, load)


CLASSES = (SAMROTO_OT_connect, SAMROTO_OT_start_worker, SAMROTO_OT_open_session, SAMROTO_OT_add_object,
           SAMROTO_OT_remove_object, SAMROTO_OT_clear_frame, SAMROTO_OT_propagate, SAMROTO_OT_lock,
           SAMROTO_OT_session_undo, SAMROTO_OT_before_after, SAMROTO_OT_compute_final,
           SAMROTO_OT_cancel, SAMROTO_OT_build_mask, SAMROTO_OT_load_mattes, SAMROTO_OT_add_matte_node,
           SAMROTO_OT_add_matte_strip, SAMROTO_OT_layer_as_prompt, SAMROTO_OT_send_edits)
