"""samroto for Blender: SAM 2 rotoscoping in the Movie Clip Editor.

The add-on is a thin client: a resident `samroto worker` process (started separately, or by the
preferences' start command) hosts the model and the per-shot sessions; the add-on talks to it
through the bundled bridge client (`bridge/`, copied in by the build script) over ZeroMQ.

Modules without bpy (unit-testable outside Blender; `BPY_FREE_MODULES`, checked by the tests):
`coords`, `corrections`, `plates`, `prompts`, `keyframes`, `previews`, `rasterize`, `remote`, `tasks`. The bpy
side (`BPY_MODULES`): `props`, `controller`, `mask_builder`, `operators`, `prompt_tool`,
`overlay`, `panels`, `review`. Importing this package does not import bpy; `register()` does.
"""

from __future__ import annotations

from typing import Any, List

BPY_FREE_MODULES = ("coords", "corrections", "plates", "prompts", "keyframes", "previews", "rasterize", "remote",
                    "tasks")
BPY_MODULES = ("props", "controller", "mask_builder", "operators", "prompt_tool", "overlay", "panels", "review")

_registered: List[Any] = []
_HANDLERS = (("load_post", "on_file_loaded"), ("undo_post", "on_undo_redo"), ("redo_post", "on_undo_redo"),
             ("load_pre", "before_data_change"), ("undo_pre", "before_data_change"),
             ("redo_pre", "before_data_change"), ("frame_change_post", "on_frame_changed"))


def register() -> None:
    import bpy

    from . import controller, operators, overlay, panels, prompt_tool, props, review, tasks

    props.register()
    for cls in operators.CLASSES + prompt_tool.CLASSES + panels.CLASSES:
        bpy.utils.register_class(cls)
        _registered.append(cls)
    panels.register()
    prompt_tool.register()
    review.register()
    if not bpy.app.background:  # nothing draws without a window
        overlay.register()
    if not bpy.app.timers.is_registered(tasks.tick):
        bpy.app.timers.register(tasks.tick, first_interval=tasks.IDLE_INTERVAL, persistent=True)
    for handlers, name in _HANDLERS:
        getattr(bpy.app.handlers, handlers).append(getattr(controller, name))
    controller.runtime.message = ""


def unregister() -> None:
    import bpy

    from . import controller, overlay, panels, prompt_tool, props, review, tasks

    controller.cancel_build()
    controller.disconnect()
    for handlers, name in _HANDLERS:
        registered = getattr(bpy.app.handlers, handlers)
        if getattr(controller, name) in registered:
            registered.remove(getattr(controller, name))
    if bpy.app.timers.is_registered(tasks.tick):
        bpy.app.timers.unregister(tasks.tick)
    prompt_tool.unregister()
    overlay.unregister()
    review.unregister()
    panels.unregister()
    while _registered:
        bpy.utils.unregister_class(_registered.pop())
    props.unregister()
