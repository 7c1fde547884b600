"""The samroto tab in the Movie Clip Editor sidebar, and the progress bar in the status bar."""

from __future__ import annotations

import os

import bpy

from . import controller, corrections, plates, remote
from .operators import clip_in_context


class SAMROTO_UL_objects(bpy.types.UIList):
    bl_idname = "SAMROTO_UL_objects"

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):  # noqa: ANN001
        row = layout.row(align=True)
        row.prop(item, "color", text="", emboss=True)
        row.prop(item, "name", text="", emboss=False)
        row.label(text=item.tracked or "not tracked")


class _ClipPanel:
    bl_space_type = "CLIP_EDITOR"
    bl_region_type = "UI"
    bl_category = "SamRoto"


class _ClipSubPanel(_ClipPanel):
    """A sub-panel of the main one, shown when the editor has a clip."""

    bl_parent_id = "SAMROTO_PT_main"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return clip_in_context(context) is not None


class SAMROTO_PT_main(_ClipPanel, bpy.types.Panel):
    bl_label = "SamRoto"
    bl_idname = "SAMROTO_PT_main"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        runtime = controller.runtime
        box = layout.box()
        if runtime.info is not None:
            box.label(text="Worker %s" % runtime.address, icon="LINKED")
            box.label(text="%s on %s" % (os.path.basename(runtime.info.model), runtime.info.device))
        else:
            box.label(text="Not connected", icon="UNLINKED")
        row = box.row(align=True)
        row.operator("samroto.connect", text="Reconnect" if runtime.info is not None else "Connect")
        if runtime.info is None:
            row.operator("samroto.start_worker", icon="PLAY")

        clip = clip_in_context(context)
        if clip is None:
            layout.label(text="Open a clip in this editor", icon="INFO")
        else:
            state = clip.samroto
            col = layout.column()
            if state.session_id:
                col.label(text="Session %s" % state.session_id)
                col.label(text="Frames %d-%d, %dx%d" % (state.first, state.last, state.width, state.height))
            warning = controller.preview_label(clip)
            if warning:  # never let a preview pass for the final mattes
                preview = col.box()
                preview.alert = True
                preview.label(text=warning, icon="ERROR")
                preview.operator("samroto.compute_final", icon="RENDER_RESULT")
            col.operator("samroto.open_session", icon="FILE_MOVIE")
        if runtime.message:
            layout.label(text=runtime.message, icon="ERROR" if runtime.message_is_error else "INFO")


class SAMROTO_PT_objects(_ClipSubPanel, bpy.types.Panel):
    bl_label = "Objects"
    bl_idname = "SAMROTO_PT_objects"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        clip = clip_in_context(context)
        if clip is None:
            return
        state = clip.samroto
        row = layout.row()
        row.template_list("SAMROTO_UL_objects", "", state, "objects", state, "active_index", rows=3)
        col = row.column(align=True)
        col.operator("samroto.add_object", icon="ADD", text="")
        col.operator("samroto.remove_object", icon="REMOVE", text="")
        row = layout.row(align=True)
        row.operator("samroto.prompt_tool", icon="RESTRICT_SELECT_OFF")
        row.operator("samroto.clear_frame", icon="X", text="")
        layout.operator("samroto.layer_as_prompt", icon="MOD_MASK")


class SAMROTO_PT_track(_ClipSubPanel, bpy.types.Panel):
    bl_label = "Track"
    bl_idname = "SAMROTO_PT_track"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        clip = clip_in_context(context)
        if clip is None:
            return
        state = clip.samroto
        job = controller.runtime.propagation
        if controller.propagation_running() and job is not None:
            _progress(layout, job)
            layout.operator("samroto.cancel", icon="CANCEL")
        elif controller.build_running():
            _build_progress(layout)
            layout.operator("samroto.cancel", icon="CANCEL")
        else:
            span = _span_pending(context, clip)
            op = layout.operator("samroto.propagate", text="Re-track Span" if span else "Track", icon="PLAY")
            op.extent = "AUTO"
            layout.label(text="To the end:" if span else "Track to the end:")
            row = layout.row(align=True)
            for direction, label, icon in (("backward", "Backward", "TRIA_LEFT"), ("both", "Both", "ARROW_LEFTRIGHT"),
                                           ("forward", "Forward", "TRIA_RIGHT")):
                op = row.operator("samroto.propagate", text=label, icon=icon)
                op.direction = direction
                op.extent = "FULL"
        row = layout.row(align=True)
        row.prop(state, "auto_results")
        row.prop(state, "auto_shapes")
        layout.prop(state, "matting")
        row = layout.row(align=True)
        row.prop(state, "preview_mode")
        size = row.row(align=True)
        size.enabled = state.preview_mode
        size.prop(state, "preview_resolution", text="px")
        col = layout.column()
        col.enabled = not state.session_id  # both are fixed when the session opens
        col.prop(state, "matte_format")
        col.prop(state, "memory_mode")
        col.prop(state, "matte_dir_override")


def _span_pending(context: bpy.types.Context, clip: bpy.types.MovieClip) -> bool:
    """Whether Track re-tracks a span here (the current frame is a correction of the active object)."""
    try:
        return controller.track_plan(context, clip).span
    except (ValueError, remote.AddonError, plates.PlateError):
        return False


class SAMROTO_PT_corrections(_ClipSubPanel, bpy.types.Panel):
    """The session's undo and redo, before/after, and the active object's keyframes and locks."""

    bl_label = "Corrections"
    bl_idname = "SAMROTO_PT_corrections"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        clip = clip_in_context(context)
        if clip is None:
            return
        state = clip.samroto
        runtime = controller.runtime
        undo_steps = runtime.undo_steps.get(state.key, [])
        redo_steps = runtime.redo_steps.get(state.key, [])
        row = layout.row(align=True)
        op = row.operator("samroto.session_undo", text="Undo %s" % undo_steps[-1] if undo_steps else "Undo",
                          icon="LOOP_BACK")
        op.redo = False
        op = row.operator("samroto.session_undo", text="Redo %s" % redo_steps[-1] if redo_steps else "Redo",
                          icon="LOOP_FORWARD")
        op.redo = True
        layout.operator("samroto.before_after", text="Showing: Before" if state.show_before else "Showing: After",
                        icon="HIDE_OFF" if not state.show_before else "HIDE_ON", depress=state.show_before)
        item = controller.active_object(clip)
        keys, locks = corrections.summary(controller.clip_marks(clip), item.obj_id if item is not None else None)
        if item is not None:
            col = layout.column(align=True)
            col.label(text=keys, icon="KEYFRAME")
            col.label(text=locks, icon="LOCKED")
        row = layout.row(align=True)
        op = row.operator("samroto.lock", text="Lock", icon="LOCKED")
        op.unlock = False
        op = row.operator("samroto.lock", text="Unlock", icon="UNLOCKED")
        op.unlock = True
        scene = context.scene
        layout.label(text="Frames: in/out %d-%d" % (scene.frame_preview_start, scene.frame_preview_end)
                     if scene.use_preview_range else "Frames: the current frame (set in/out to lock a range)")


class SAMROTO_PT_results(_ClipSubPanel, bpy.types.Panel):
    bl_label = "Results"
    bl_idname = "SAMROTO_PT_results"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        clip = clip_in_context(context)
        if clip is None:
            return
        state = clip.samroto
        layout.prop(state, "tolerance")
        row = layout.row(align=True)
        row.operator("samroto.build_mask", icon="MOD_MASK")
        row.operator("samroto.load_mattes", icon="IMAGE_DATA")
        row = layout.row(align=True)
        row.operator("samroto.add_matte_node", icon="NODETREE")
        row.operator("samroto.add_matte_strip", icon="SEQUENCE")
        if state.mask_name:
            layout.label(text="Mask: %s" % state.mask_name)
            layout.operator("samroto.send_edits", icon="EXPORT")


def _progress(layout: bpy.types.UILayout, job: remote.Job) -> None:
    done, total = job.progress or (0, 0)
    text = controller.progress_text(job)
    if hasattr(layout, "progress"):  # Blender 4.0+
        layout.progress(factor=done / total if total else 0.0, type="BAR", text=text)
    else:  # pragma: no cover - older Blender
        layout.label(text=text)


def _build_progress(layout: bpy.types.UILayout) -> None:
    build = controller.runtime.building
    done, total = build.progress if build is not None else (0, 0)
    text = "Building shapes %d/%d" % (done, total)
    if hasattr(layout, "progress"):
        layout.progress(factor=done / total if total else 0.0, type="BAR", text=text)
    else:  # pragma: no cover - older Blender
        layout.label(text=text)


def draw_status(self: bpy.types.Header, context: bpy.types.Context) -> None:
    """Status bar: the running propagation's or Mask build's progress (Esc in the editor cancels)."""
    job = controller.runtime.propagation
    if controller.propagation_running() and job is not None:
        row = self.layout.row(align=True)
        row.label(text="SamRoto")
        _progress(row, job)
    elif controller.build_running():
        row = self.layout.row(align=True)
        row.label(text="SamRoto")
        _build_progress(row)


CLASSES = (SAMROTO_UL_objects, SAMROTO_PT_main, SAMROTO_PT_objects, SAMROTO_PT_track, SAMROTO_PT_corrections,
           SAMROTO_PT_results)


def register() -> None:
    bpy.types.STATUSBAR_HT_header.append(draw_status)


def unregister() -> None:
    bpy.types.STATUSBAR_HT_header.remove(draw_status)
