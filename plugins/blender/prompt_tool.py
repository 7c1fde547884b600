"""The Click / Box tool: a modal operator over the Clip Editor's frame.

Left click adds an include point, Ctrl+click or right click an exclude point, a left drag draws a
box; each one goes to the worker at once and the object's mask appears on the frame. Ctrl+Z or
Backspace removes the last click; Esc, Enter or Tab leaves the tool. Wheel, middle mouse and
frame keys pass through, so the view can be zoomed and the frame changed while prompting.
"""

from __future__ import annotations

from typing import Any, Optional, Set, Tuple

import bpy

from . import controller, coords, plates, remote
from .operators import clip_in_context
from .overlay import frame_rect

HINT = ("samroto: LMB include | Ctrl+LMB / RMB exclude | drag: box | Ctrl+Z: undo | "
        "Esc / Enter: done")


def _main_region(area: bpy.types.Area) -> Optional[bpy.types.Region]:
    for region in area.regions:
        if region.type == "WINDOW":
            return region
    return None


class SAMROTO_OT_prompt_tool(bpy.types.Operator):
    """Click include/exclude points and drag boxes on the clip for the active object"""

    bl_idname = "samroto.prompt_tool"
    bl_label = "Click / Box"

    _region: Any = None
    _press: Optional[Tuple[float, float]] = None
    _press_negative: bool = False

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
        context.workspace.status_text_set(HINT)
        context.window.cursor_modal_set("CROSSHAIR")
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
        context.workspace.status_text_set(None)
        context.window.cursor_modal_restore()
        controller.redraw()
        return {"FINISHED"}

    def _send(self, context: bpy.types.Context, release: Tuple[float, float]) -> None:
        clip = clip_in_context(context)
        item = controller.active_object(clip)
        if clip is None or item is None:
            raise remote.AddonError("No active object: add one in the samroto panel")
        width, height = clip.size
        frame = controller.plate_frame(clip, context.scene.frame_current)
        assert self._press is not None
        action = coords.gesture(self._press, release, frame_rect(self._region), width, height,
                                negative=self._press_negative)
        if action.kind == "box":
            controller.set_box(context, clip, item.obj_id, frame, action.box)
        else:
            controller.add_click(context, clip, item.obj_id, frame, action.point, positive=action.positive)

    def modal(self, context: bpy.types.Context, event: bpy.types.Event) -> Set[str]:
        if context.area is None or controller.propagation_running():
            return self._finish(context)
        if event.type in ("ESC", "RET", "NUMPAD_ENTER", "TAB") and event.value == "PRESS":
            return self._finish(context)
        if event.type in ("LEFTMOUSE", "RIGHTMOUSE"):
            if event.value == "PRESS" and self._over_region(event):
                self._press = self._mouse(event)
                self._press_negative = event.type == "RIGHTMOUSE" or event.ctrl
                return {"RUNNING_MODAL"}
            if event.value == "RELEASE" and self._press is not None:
                release = self._mouse(event)
                try:
                    self._send(context, release)
                except (remote.AddonError, plates.PlateError, ValueError) as exc:
                    self.report({"WARNING"}, str(exc))
                    controller.report(str(exc), error=True)
                finally:
                    self._press = None
                    controller.runtime.drag_box = None
                    controller.redraw()
                return {"RUNNING_MODAL"}
        if event.type == "MOUSEMOVE" and self._press is not None:
            x, y = self._mouse(event)
            controller.runtime.drag_box = (self._press[0], self._press[1], x, y)
            controller.redraw()
            return {"RUNNING_MODAL"}
        if (event.type == "Z" and event.ctrl or event.type == "BACK_SPACE") and event.value == "PRESS":
            clip = clip_in_context(context)
            item = controller.active_object(clip)
            if clip is not None and item is not None:
                try:
                    frame = controller.plate_frame(clip, context.scene.frame_current)
                    if controller.undo_prompt(context, clip, item.obj_id, frame) is None:
                        self.report({"INFO"}, "No click to undo on this frame")
                except (remote.AddonError, plates.PlateError, ValueError) as exc:
                    controller.report(str(exc), error=True)
            return {"RUNNING_MODAL"}
        return {"PASS_THROUGH"}


CLASSES = (SAMROTO_OT_prompt_tool,)
