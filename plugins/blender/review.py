"""Frames to review: timeline markers on the flagged frames and a list in the sidebar to jump to each.

After each propagation the worker says which frames of the session's mattes need a look
(`RemoteSession.review()`, the `get_review` request): the object is lost, reappears, its score
drops, its area jumps, its edge is unstable. They become scene timeline markers named with the
object (``review: <object name>``, at the scene frame of the plate frame) and rows of the Review
sub-panel whose buttons jump the scene to that frame. Each new result replaces the clip's markers.
"""

# no `from __future__ import annotations` here: Blender reads the property annotations as objects

from typing import Any, List, Optional, Sequence, Set

import bpy
from bpy.props import CollectionProperty, IntProperty, StringProperty

from . import controller
from .operators import clip_in_context

MARKER_PREFIX = "review: "
MAX_MARKERS = 1000  # per clip: a timeline full of markers helps nobody; the list shows them all
MAX_ROWS = 40  # rows drawn in the sidebar (the rest: "... and N more", the markers show them)
REASON_TEXT = {
    "score_below_zero": "lost",
    "reappeared": "reappeared",
    "score_drop": "score drop",
    "area_jump": "area jump",
    "low_predicted_iou": "low IoU",
    "low_stability": "unstable edge",
}


class SamrotoReviewItem(bpy.types.PropertyGroup):
    """One flagged (frame, object) of a clip."""

    frame: IntProperty(name="Plate frame")  # type: ignore[valid-type]
    scene_frame: IntProperty(name="Scene frame")  # type: ignore[valid-type]
    obj_id: IntProperty(name="Object id")  # type: ignore[valid-type]
    object_name: StringProperty(name="Object")  # type: ignore[valid-type]
    reasons: StringProperty(name="Why")  # type: ignore[valid-type]


def reasons_text(reasons: Sequence[str]) -> str:
    return ", ".join(REASON_TEXT.get(r, r) for r in reasons)


def _object_name(clip: bpy.types.MovieClip, obj_id: int) -> str:
    item = controller.find_object(clip, obj_id)
    return item.name if item is not None and item.name else "obj%d" % obj_id


def clear_markers(scene: bpy.types.Scene, clip: bpy.types.MovieClip) -> None:
    """Remove this clip's review markers (those at the scene frames it recorded)."""
    frames = {item.scene_frame for item in clip.samroto_review}
    for marker in [m for m in scene.timeline_markers if m.name.startswith(MARKER_PREFIX) and m.frame in frames]:
        scene.timeline_markers.remove(marker)


def apply_review(scene: bpy.types.Scene, clip: bpy.types.MovieClip, items: Sequence[Any]) -> int:
    """Replace the clip's review list and markers with `items` (`ReviewFrame`s: frame, obj_id,
    reasons; plate frames). Returns the number of markers placed."""
    clear_markers(scene, clip)
    clip.samroto_review.clear()
    plate = controller.clip_plate(clip, check_files=False)
    placed = 0
    for review in items:
        entry = clip.samroto_review.add()
        entry.frame = int(review.frame)
        entry.scene_frame = plate.scene_frame(int(review.frame))
        entry.obj_id = int(review.obj_id)
        entry.object_name = _object_name(clip, entry.obj_id)
        entry.reasons = reasons_text(review.reasons)
        if placed < MAX_MARKERS:
            scene.timeline_markers.new(MARKER_PREFIX + entry.object_name, frame=entry.scene_frame)
            placed += 1
    return placed


def flagged_frames(clip: bpy.types.MovieClip) -> List[int]:
    """The clip's flagged scene frames, sorted."""
    return sorted({item.scene_frame for item in clip.samroto_review})


class SAMROTO_OT_jump_to_review(bpy.types.Operator):
    """Go to a frame to review (the scene frame of the flagged plate frame)"""

    bl_idname = "samroto.jump_to_review"
    bl_label = "Jump to Frame"
    bl_options = {"REGISTER"}

    frame: IntProperty(name="Scene frame")  # type: ignore[valid-type]
    step: IntProperty(name="Step", default=0, min=-1, max=1,  # type: ignore[valid-type]
                      description="0: go to `frame`; 1 / -1: the next / previous flagged frame")

    def execute(self, context: bpy.types.Context) -> Set[str]:
        target: Optional[int] = self.frame
        if self.step:
            clip = clip_in_context(context)
            frames = flagged_frames(clip) if clip is not None else []
            now = context.scene.frame_current
            later = [f for f in frames if (f > now if self.step > 0 else f < now)]
            target = (min(later) if self.step > 0 else max(later)) if later else None
            if target is None:
                self.report({"INFO"}, "No flagged frame %s" % ("after" if self.step > 0 else "before"))
                return {"CANCELLED"}
        context.scene.frame_current = int(target)
        return {"FINISHED"}


class SAMROTO_PT_review(bpy.types.Panel):
    bl_space_type = "CLIP_EDITOR"
    bl_region_type = "UI"
    bl_category = "samroto"
    bl_parent_id = "SAMROTO_PT_main"
    bl_label = "Review"
    bl_idname = "SAMROTO_PT_review"

    @classmethod
    def poll(cls, context: bpy.types.Context) -> bool:
        return clip_in_context(context) is not None

    def draw(self, context: bpy.types.Context) -> None:
        draw_review(self.layout, clip_in_context(context))


def draw_review(layout: Any, clip: Optional[bpy.types.MovieClip]) -> None:
    """The flagged frames, one row each with a jump button, and previous/next buttons."""
    if clip is None:
        return
    items = list(clip.samroto_review)
    if not items:
        layout.label(text="No frame to review" if clip.samroto.session_id else "Track to see frames to review")
        return
    frames = len({item.frame for item in items})
    layout.label(text="%d frame%s to review (markers on the timeline)" % (frames, "" if frames == 1 else "s"),
                 icon="ERROR")
    row = layout.row(align=True)
    op = row.operator("samroto.jump_to_review", text="Previous", icon="TRIA_LEFT")
    op.step = -1
    op = row.operator("samroto.jump_to_review", text="Next", icon="TRIA_RIGHT")
    op.step = 1
    col = layout.column(align=True)
    for item in items[:MAX_ROWS]:
        op = col.operator("samroto.jump_to_review",
                          text="%d  %s: %s" % (item.frame, item.object_name, item.reasons), icon="MARKER_HLT")
        op.frame = item.scene_frame
    if len(items) > MAX_ROWS:
        col.label(text="... and %d more" % (len(items) - MAX_ROWS))


CLASSES = (SamrotoReviewItem, SAMROTO_OT_jump_to_review, SAMROTO_PT_review)


def register() -> None:
    for cls in CLASSES:
        bpy.utils.register_class(cls)
    bpy.types.MovieClip.samroto_review = CollectionProperty(type=SamrotoReviewItem)


def unregister() -> None:
    del bpy.types.MovieClip.samroto_review
    for cls in reversed(CLASSES):
        bpy.utils.unregister_class(cls)
