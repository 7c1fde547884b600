"""Blender properties: add-on preferences, and the per-clip state saved in the .blend file."""

# no `from __future__ import annotations` here: Blender reads the property annotations as objects

import bpy
from bpy.props import (BoolProperty, CollectionProperty, EnumProperty, FloatProperty, FloatVectorProperty,
                       IntProperty, PointerProperty, StringProperty)

from .remote import DEFAULT_ADDRESS, Settings, memory_mode_items

ADDON_PACKAGE = __package__ or "samroto"

DIRECTION_ITEMS = [
    ("both", "Both", "Track forward and backward from the prompted frame"),
    ("forward", "Forward", "Track towards the end of the clip"),
    ("backward", "Backward", "Track towards the start of the clip"),
]


class SamrotoPreferences(bpy.types.AddonPreferences):
    bl_idname = ADDON_PACKAGE

    address: StringProperty(  # type: ignore[valid-type]
        name="Worker address",
        description="tcp://host:port of the SamRoto worker; empty uses the address a local worker announced "
                    "(or %s)" % DEFAULT_ADDRESS,
        default="")
    token_file: StringProperty(  # type: ignore[valid-type]
        name="Token file",
        description="The worker's token file; empty uses the samroto config folder "
                    "($SAMROTO_CONFIG_DIR or ~/.config/samroto/token)",
        default="", subtype="FILE_PATH")
    start_command: StringProperty(  # type: ignore[valid-type]
        name="Start command",
        description="Command line that starts a local worker (the Start Worker button, and Auto-start)",
        default="samroto worker")
    auto_start: BoolProperty(  # type: ignore[valid-type]
        name="Auto-start",
        description="Start the worker with the start command whenever none answers (else only the Start Worker "
                    "button starts it)",
        default=False)
    device: EnumProperty(  # type: ignore[valid-type]
        name="Worker device",
        description="Where a started worker runs the model (added to the start command as --device)",
        items=[("auto", "Auto", "CUDA, then Apple Metal (MPS), then the CPU"),
               ("cuda", "CUDA", "an NVIDIA GPU"), ("mps", "Apple Metal", "Apple silicon GPU"),
               ("cpu", "CPU", "no GPU")],
        default="auto")
    timeout: FloatProperty(  # type: ignore[valid-type]
        name="Reply timeout", description="Seconds to wait for each reply from the worker",
        default=10.0, min=0.5, max=600.0, unit="TIME_ABSOLUTE")
    start_timeout: FloatProperty(  # type: ignore[valid-type]
        name="Start timeout", description="Seconds a started worker may take to load its model",
        default=180.0, min=5.0, max=3600.0, unit="TIME_ABSOLUTE")

    def draw(self, context: bpy.types.Context) -> None:
        layout = self.layout
        layout.prop(self, "address")
        layout.prop(self, "token_file")
        row = layout.row()
        row.prop(self, "start_command")
        row.prop(self, "auto_start")
        layout.prop(self, "device")
        row = layout.row()
        row.prop(self, "timeout")
        row.prop(self, "start_timeout")


def settings(context: bpy.types.Context, *, start: bool = False) -> Settings:
    """The preferences as plain values (defaults when the add-on was registered by hand). The start
    command is passed on only for `start` (the Start Worker button) or with Auto-start on."""
    addon = context.preferences.addons.get(ADDON_PACKAGE)
    prefs = getattr(addon, "preferences", None)
    if prefs is None:
        return Settings(log_dir=user_folder(), start_command="samroto worker" if start else "")
    command = prefs.start_command if (start or prefs.auto_start) else ""
    return Settings(address=prefs.address, token_file=bpy.path.abspath(prefs.token_file) if prefs.token_file else "",
                    start_command=command, device=str(prefs.device), timeout_s=float(prefs.timeout),
                    start_timeout_s=float(prefs.start_timeout), log_dir=user_folder())


def user_folder() -> str:
    """The extension's writable folder (logs of a started worker); the temp folder outside extensions."""
    try:
        return bpy.utils.extension_path_user(ADDON_PACKAGE, path="", create=True)
    except (ValueError, AttributeError, RuntimeError):
        return bpy.app.tempdir


class SamrotoObject(bpy.types.PropertyGroup):
    """One tracked object of a clip."""

    obj_id: IntProperty(name="Object id", min=1)  # type: ignore[valid-type]
    name: StringProperty(name="Name", default="Object")  # type: ignore[valid-type]
    color: FloatVectorProperty(  # type: ignore[valid-type]
        name="Colour", subtype="COLOR", size=3, min=0.0, max=1.0, default=(1.0, 0.35, 0.2))
    layer_name: StringProperty(name="Mask layer", default="")  # type: ignore[valid-type]
    tracked: StringProperty(name="Tracked frames", default="")  # type: ignore[valid-type]
    matte_path: StringProperty(name="First matte file", default="", subtype="FILE_PATH")  # type: ignore[valid-type]
    image_name: StringProperty(name="Matte image", default="")  # type: ignore[valid-type]


class SamrotoClipState(bpy.types.PropertyGroup):
    """What the add-on keeps per Movie Clip (saved with the .blend file)."""

    key: StringProperty(default="")  # type: ignore[valid-type]
    session_id: StringProperty(name="Session", default="")  # type: ignore[valid-type]
    plate: StringProperty(name="Plate", default="")  # type: ignore[valid-type]
    first: IntProperty(default=0)  # type: ignore[valid-type]
    last: IntProperty(default=0)  # type: ignore[valid-type]
    width: IntProperty(default=0)  # type: ignore[valid-type]
    height: IntProperty(default=0)  # type: ignore[valid-type]
    matte_dir: StringProperty(name="Matte folder", default="")  # type: ignore[valid-type]
    objects: CollectionProperty(type=SamrotoObject)  # type: ignore[valid-type]
    active_index: IntProperty(name="Active object", default=0)  # type: ignore[valid-type]
    prompts: StringProperty(default="")  # type: ignore[valid-type]
    mask_name: StringProperty(name="Mask", default="")  # type: ignore[valid-type]
    direction: EnumProperty(name="Direction", items=DIRECTION_ITEMS, default="both")  # type: ignore[valid-type]
    matting: EnumProperty(  # type: ignore[valid-type]
        name="Matting", default="none",
        items=[("none", "None", "The tracked mattes (soft SAM 2 masks, optionally refined)"),
               ("vitmatte-small", "ViTMatte small", "Production alpha: the ViTMatte small matting model refines each "
                "matte's edge band on the worker (needs `samroto download vitmatte-small` there)"),
               ("vitmatte-base", "ViTMatte base", "Like small, slower, finer (needs `samroto download vitmatte-base`)")],
        description="Learned matting pass the worker runs on the mattes it writes (hair, motion blur, soft edges)")
    memory_mode: EnumProperty(  # type: ignore[valid-type]
        name="Memory", default="sam2", items=memory_mode_items(),
        description="Which tracked frames enter each object's memory (chosen when the session is opened)")
    auto_results: BoolProperty(  # type: ignore[valid-type]
        name="Load mattes after tracking",
        description="After each propagation load the matte images (the Mask shapes are built on request: Build "
                    "Shapes)", default=True)
    auto_shapes: BoolProperty(  # type: ignore[valid-type]
        name="Build shapes after tracking",
        description="Also rebuild the Mask layers after each propagation (in the background; Esc cancels)",
        default=False)
    tolerance: FloatProperty(  # type: ignore[valid-type]
        name="Shape tolerance", description="Largest distance in pixels between a mask spline and the matte edge "
        "(smaller: more points); 0 uses the worker's default", default=0.0, min=0.0, max=50.0)
    matte_format: EnumProperty(  # type: ignore[valid-type]
        name="Matte format", default="png",
        items=[("png", "PNG 16-bit", "Grey 16-bit PNG mattes: Blender reads them exactly (use Non-Color)"),
               ("exr", "EXR half alpha", "Half-float alpha-only EXR mattes (for Nuke and other hosts; Blender "
                "leaves their colour channels undefined, use the Alpha output)")],
        description="File format the worker writes the mattes in (chosen when the session is opened)")
    matte_dir_override: StringProperty(  # type: ignore[valid-type]
        name="Matte folder", description="Where the worker writes the mattes (empty: next to the clip's files)",
        default="", subtype="DIR_PATH")
    preview_mode: BoolProperty(  # type: ignore[valid-type]
        name="Preview mode", default=False,
        description="Open sessions that track at a lower internal resolution: fast feedback, but the mattes "
                    "are a preview (Compute Final Mattes makes the final ones). Applies when a session opens")
    preview_resolution: IntProperty(  # type: ignore[valid-type]
        name="Preview resolution", default=512, min=64, max=1024, step=32,
        description="Internal tracking size of a preview session in pixels (a multiple of 32 below the model's)")
    # what the open session is (from the worker): a preview tracked at track_resolution, or final
    preview_session: BoolProperty(name="Preview session", default=False)  # type: ignore[valid-type]
    track_resolution: IntProperty(name="Tracking resolution", default=0)  # type: ignore[valid-type]
    # the session's keyframes and locked ranges as the worker last said (JSON), and the timeline
    # markers this clip placed for them ([[name, scene frame], ...]) so a refresh replaces only those
    marks: StringProperty(default="")  # type: ignore[valid-type]
    markers: StringProperty(default="")  # type: ignore[valid-type]
    show_before: BoolProperty(  # type: ignore[valid-type]
        name="Before", default=False,
        description="Show each frame's previous result (what the last step that changed it overwrote) instead of "
                    "the current one")


CLASSES = (SamrotoPreferences, SamrotoObject, SamrotoClipState)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.MovieClip.samroto = PointerProperty(type=SamrotoClipState)


def unregister() -> None:
    del bpy.types.MovieClip.samroto
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
