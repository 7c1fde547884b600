"""samroto for Blender: SAM 2 rotoscoping in the Movie Clip Editor.

The add-on is a thin client: a resident `samroto worker` process (started separately, or by the
preferences' start command) hosts the model and the per-shot sessions; the add-on talks to it
through the bundled bridge client (`bridge/`, copied in by the build script) over ZeroMQ.

Modules without bpy (unit-testable outside Blender): `coords`, `plates`, `prompts`,
`keyframes`, `previews`, `remote`, `tasks`. The bpy side: `props`, `controller`,
`mask_builder`, `operators`, `prompt_tool`, `overlay`, `panels`, `review`. Importing this package does not
import bpy; `register()` does.
"""

from __future__ import annotations

from typing import Any, List

_registered: List[Any] = []


def register() -> None:
    import bpy

    from . import controller, operators, overlay, panels, prompt_tool, props, review, tasks

    props.register()
    for cls in operators.CLASSES + prompt_tool.CLASSES + panels.CLASSES:
        bpy.utils.register_class(cls)
        _registered.append(cls)
    panels.register()
    review.register()
    if not bpy.app.background:  # nothing draws without a window
        overlay.register()
    tasks.start_timer()
    bpy.app.handlers.load_post.append(controller.on_file_loaded)
    controller.runtime.message = ""


def unregister() -> None:
    import bpy

    from . import controller, overlay, panels, props, review, tasks

    controller.disconnect()
    if controller.on_file_loaded in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(controller.on_file_loaded)
    tasks.stop_timer()
    overlay.unregister()
    review.unregister()
    panels.unregister()
    while _registered:
        bpy.utils.unregister_class(_registered.pop())
    props.unregister()
