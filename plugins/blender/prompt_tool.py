"""The SamRoto prompt tool: a panel in the Movie Clip Editor's toolbar (T) and its modal operator.

The Clip Editor has no tool system of Blender's own, so the tool lives in its toolbar region as a
panel, like the editor's tracking and mask tools. Three modes: Click / Box (a click is an include
point, a drag a box), Brush (a stroke: clicks spread along it) and Lasso (filled into the
object's mask). Ctrl+click or a right click excludes (brush and lasso then cut away). Each
prompt goes to the worker at once, the object's mask appears on the frame, and each one is an
undo step (Blender's own Ctrl+Z / Cmd+Z undoes it, and the worker follows). While the tool runs,
Ctrl+Z / Ctrl+Shift+Z (Cmd on macOS) undo and redo the session's own steps on the worker.
"""

from __future__ import annotations

import sys
from typing import Any, List, Optional, Set, Tuple

import bpy
from bpy.props import EnumProperty

from . import controller, coords, plates, remote
from .operators import clip_in_context
from .overlay import frame_rect

MODES = [
    ("CLICK", "Click / Box", "Click an include point, drag a box", "RESTRICT_SELECT_OFF", 0),
    ("BRUSH", "Brush", "Paint a stroke: clicks spread along it", "BRUSH_DATA", 1),
    ("LASSO", "Lasso", "Draw around the object: the shape fills the object's mask", "MOD_MASK", 2),
]
MACOS = sys.platform == "darwin"
UNDO_KEY = "Cmd+Z" if MACOS else "Ctrl+Z"
REDO_KEY = "Cmd+Shift+Z" if MACOS else "Ctrl+Shift+Z"
UNDO_MODIFIER = "oskey" if MACOS else "ctrl"
"""Blender's undo and redo keys (platform-aware): inside the tool they undo and redo the session's
steps on the worker (prompts and tracking runs; Backspace takes back the frame's last prompt);
outside it Blender's own undo does, and the worker's prompts follow (every prompt is an undo step)."""
EXCLUDE_MODIFIER = "ctrl"
STROKE_RADIUS = 8.0


def tool_mode(context: bpy.types.Context) -> str:
    return getattr(context.window_manager, "samroto_tool_mode", "CLICK")


def _main_region(area: bpy.types.Area) -> Optional[bpy.types.Region]:
    for region in area.regions:
        if region.type == "WINDOW":
            return region
    return None


def send_gesture(context: bpy.types.Context, clip: bpy.types.MovieClip, obj_id: int, frame: int, mode: str,
                 path: List[Tuple[float, float]], rect: coords.FrameRect, *, negative: bool) -> remote.Job:
    """A finished gesture (region pixels along the mouse path) -> the right prompt for the worker."""
    width, height = clip.size
    if mode == "CLICK":
        action = coords.gesture(path[0], path[-1], rect, width, height, negative=negative)
        if action.kind == "box":
            return controller.set_box(context, clip, obj_id, frame, action.box, undo="SamRoto: box")
        return controller.add_click(context, clip, obj_id, frame, action.point, positive=action.positive,
                                    undo="SamRoto: %s click" % ("include" if action.positive else "exclude"))
    points = coords.stroke_to_clip_pixels(path, rect, width, height)
    kind = "brush" if mode == "BRUSH" else "lasso"
    return controller.add_stroke(context, clip, obj_id, frame, points, kind=kind, positive=not negative,
                                 radius=STROKE_RADIUS, undo="SamRoto: %s" % kind)


HINT = ("SamRoto %s: LMB include | Ctrl+LMB / RMB exclude | %s / %s: undo / redo | Backspace: remove the last "
        "prompt | Esc / Enter: done")


class SAMROTO_OT_prompt_tool(bpy.types.Operator):
    """Prompt SAM 2 for the active object on the clip: click or drag a box, paint a brush stroke or draw a
    lasso (the mode in the SamRoto toolbar panel). Each prompt is an undo step"""

    bl_idname = "samroto.prompt_tool"
    bl_label = "Prompt"

    mode: EnumProperty(name="Mode", items=[(m[0], m[1], m[2]) for m in MODES] + [  # type: ignore[valid-type]
        ("TOOL", "Toolbar setting", "The mode chosen in the SamRoto toolbar panel")], default="TOOL")

    _region: Any = None
    _path: List[Tuple[float, float]] = []
    _negative: bool = False
    _mode: str = "CLICK"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        clip = clip_in_context(context)
        return (context.area is not None and context.area.type == "CLIP_EDITOR" and clip is not None
                and controller.active_object(clip) is not None and not controller.propagation_running())

    def invoke(self, context: bpy.types.Context, event: bpy.types.Event) -> Set[str]:
        self._region = _main_region(context.area)
        if self._region is None:
            self.report({"ERROR"}, "The Clip Editor has no main region")
            return {"CANCELLED"}
        self._mode = tool_mode(context) if self.mode == "TOOL" else self.mode
        self._path = []
        label = next(m[1] for m in MODES if m[0] == self._mode)
        context.workspace.status_text_set(HINT % (label, UNDO_KEY, REDO_KEY))
        context.window.cursor_modal_set("CROSSHAIR" if self._mode == "CLICK" else "PAINT_BRUSH")
        context.window_manager.modal_handler_add(self)
        return {"RUNNING_MODAL"}

    def _mouse(self, event: bpy.types.Event) -> Tuple[float, float]:
        """The mouse in main-region pixels (events carry window coordinates too)."""
        return float(event.mouse_x - self._region.x), float(event.mouse_y - self._region.y)

    def _over_region(self, event: bpy.types.Event) -> bool:
        x, y = self._mouse(event)
        return 0 <= x < self._region.width and 0 <= y < self._region.height

    def _finish(self, context: bpy.types.Context) -> Set[str]:
        controller.runtime.drag_box = None
        controller.runtime.drag_path = []
        context.workspace.status_text_set(None)
        context.window.cursor_modal_restore()
        controller.redraw()
        return {"FINISHED"}

    def _release(self, context: bpy.types.Context) -> None:
        clip = clip_in_context(context)
        item = controller.active_object(clip) if clip is not None else None
        try:
            if clip is None or item is None:
                raise remote.AddonError("No active object: add one in the SamRoto panel")
            frame = controller.plate_frame(clip, context.scene.frame_current)
            send_gesture(context, clip, item.obj_id, frame, self._mode, self._path, frame_rect(self._region),
                         negative=self._negative)
        except (remote.AddonError, plates.PlateError, ValueError) as exc:
            self.report({"WARNING"}, str(exc))
            controller.report(str(exc), error=True)
        finally:
            self._path = []
            controller.runtime.drag_box = None
            controller.runtime.drag_path = []
            controller.redraw()

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> Set[str]:
        if context.area is None or controller.propagation_running():
            return self._finish(context)
        if event.type in ("ESC", "RET", "NUMPAD_ENTER") and event.value == "PRESS":
            return self._finish(context)
        if event.type in ("LEFTMOUSE", "RIGHTMOUSE"):
            if event.value == "PRESS" and self._over_region(event):
                self._path = [self._mouse(event)]
                self._negative = event.type == "RIGHTMOUSE" or bool(getattr(event, EXCLUDE_MODIFIER))
                return {"RUNNING_MODAL"}
            if event.value == "RELEASE" and self._path:
                self._path.append(self._mouse(event))
                self._release(context)
                return {"RUNNING_MODAL"}
        if event.type == "MOUSEMOVE" and self._path:
            self._path.append(self._mouse(event))
            if self._mode == "CLICK":
                x, y = self._path[-1]
                controller.runtime.drag_box = (self._path[0][0], self._path[0][1], x, y)
            else:
                controller.runtime.drag_path = list(self._path)
            controller.redraw()
            return {"RUNNING_MODAL"}
        undo_key = event.type == "Z" and bool(getattr(event, UNDO_MODIFIER))
        if undo_key and event.value == "PRESS":
            # the platform's undo / redo keys step the session's history on the worker (prompts and tracking)
            clip = clip_in_context(context)
            if clip is not None:
                try:
                    controller.session_step(context, clip, redo=bool(event.shift))
                except (remote.AddonError, plates.PlateError, ValueError) as exc:
                    self.report({"WARNING"}, str(exc))
                    controller.report(str(exc), error=True)
            return {"RUNNING_MODAL"}
        if event.type == "BACK_SPACE" and event.value == "PRESS":
            clip = clip_in_context(context)
            item = controller.active_object(clip) if clip is not None else None
            if clip is not None and item is not None:
                try:
                    frame = controller.plate_frame(clip, context.scene.frame_current)
                    if controller.undo_prompt(context, clip, item.obj_id, frame, undo="SamRoto: undo prompt") is None:
                        self.report({"INFO"}, "No prompt to undo on this frame")
                except (remote.AddonError, plates.PlateError, ValueError) as exc:
                    self.report({"WARNING"}, str(exc))
                    controller.report(str(exc), error=True)
            return {"RUNNING_MODAL"}
        return {"PASS_THROUGH"}


class SAMROTO_PT_tool(bpy.types.Panel):
    """The SamRoto prompt tool in the Clip Editor's toolbar (T)."""

    bl_space_type = "CLIP_EDITOR"
    bl_region_type = "TOOLS"
    bl_category = "SamRoto"
    bl_label = "SamRoto Prompt"
    bl_idname = "SAMROTO_PT_tool"

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        col = layout.column(align=True)
        col.prop(context.window_manager, "samroto_tool_mode", expand=True)
        layout.operator("samroto.prompt_tool", icon="RESTRICT_SELECT_OFF")
        layout.operator("samroto.layer_as_prompt", icon="MOD_MASK")


CLASSES = (SAMROTO_OT_prompt_tool, SAMROTO_PT_tool)
KEYMAP_NAME = "Clip Editor"
_keymap_items: List[Tuple[Any, Any]] = []


def _add_keymaps() -> None:
    """Shift+P starts the prompt tool in the Clip Editor (Blender's add-on keymap, editable in the
    preferences); inside it, the platform's undo and redo keys (Ctrl+Z / Ctrl+Shift+Z, Cmd on macOS)
    step the session's history on the worker."""
    keyconfig = bpy.context.window_manager.keyconfigs.addon
    if keyconfig is None:  # background Blender has no add-on keymaps
        return
    keymap = keyconfig.keymaps.new(name=KEYMAP_NAME, space_type="CLIP_EDITOR")
    item = keymap.keymap_items.new(SAMROTO_OT_prompt_tool.bl_idname, "P", "PRESS", shift=True)
    _keymap_items.append((keymap, item))


def register() -> None:
    bpy.types.WindowManager.samroto_tool_mode = EnumProperty(name="SamRoto prompt", items=MODES, default="CLICK")
    _add_keymaps()


def unregister() -> None:
    for keymap, item in _keymap_items:
        try:
            keymap.keymap_items.remove(item)
        except (ReferenceError, RuntimeError):
            pass
    _keymap_items.clear()
    if hasattr(bpy.types.WindowManager, "samroto_tool_mode"):
        del bpy.types.WindowManager.samroto_tool_mode
