"""What goes inside the SamRoto Group: the node is the matte.

The Group passes its input (the plate) through and adds the tracked mattes: one channel per
object in the `samroto` layer (`samroto.<object name>`; four channels a layer, so objects 5-8
go to `samroto2`, ...) and the alpha: every object merged (the maximum), or the chosen object.
Inside, per object, a Read node on the object's matte sequence (timed like the plate, an error
on a missing frame so a farm machine that cannot see the mattes fails instead of rendering
black; a second Read that shows black there, chosen by a `$gui` Switch, keeps the viewer usable
while the artist tracks) and a Copy node moving its alpha into the object's channel; an Expression node fills the
alpha. Everything inside is a stock Nuke node: a script renders with the plug-in absent.

This module plans that content as plain data; host.py builds it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from .settings import CHANNELS_PER_LAYER, MATTE_LAYER

_NAME = re.compile(r"[^A-Za-z0-9_]+")


def object_names(text: str, obj_ids: Sequence[int]) -> Dict[int, str]:
    """Object names from the node's names knob ("hero, car": objects 1 and 2), made valid as
    Nuke channel names and unique; `obj<id>` where none is given."""
    given = [part.strip() for part in (text or "").split(",")]
    names: Dict[int, str] = {}
    used = set()
    for obj_id in sorted(set(int(o) for o in obj_ids)):
        raw = given[obj_id - 1] if 0 < obj_id <= len(given) else ""
        name = _NAME.sub("_", raw).strip("_") or "obj%d" % obj_id
        if name[0].isdigit():
            name = "obj_" + name
        if name in used or name in ("red", "green", "blue", "alpha"):
            name = "%s_%d" % (name, obj_id)
        used.add(name)
        names[obj_id] = name
    return names


def stereo_pattern(pattern: str, view: str, folder_template: str = "") -> str:
    """A view's matte pattern with the view's name as Nuke's `%V` (`sh_SamRoto_left_obj1_matte.####.exr`
    -> `sh_SamRoto_%V_obj1_matte.####.exr`), so the Group's Read shows each view its own mattes.
    folder_template: the matte folder with `%V` where the view's folder has its name."""
    folder, name = os.path.split(pattern)
    token = "_%s_" % view
    index = name.rfind(token)
    if not view or index < 0:
        return pattern
    if folder_template and os.path.normpath(folder_template.replace("%V", view).replace("%v", view[:1])) == \
            os.path.normpath(folder):
        folder = folder_template
    return os.path.join(folder, name[:index] + "_%V_" + name[index + len(token):])


@dataclass(frozen=True)
class ObjectMatte:
    """One object of the Group: its matte sequence (`####` pattern, plate frame numbers)."""

    obj_id: int
    name: str
    pattern: str


@dataclass(frozen=True)
class GroupPlan:
    """The Group's content. `reads`: (internal node name, object) in object order; `layers`:
    (layer, its channels) to create; `channels`: obj_id -> its `layer.channel`; `alpha`: the
    Expression that fills rgba.alpha; frames: how the matte Reads map plate frames onto Nuke's."""

    objects: Tuple[ObjectMatte, ...]
    layers: Tuple[Tuple[str, Tuple[str, ...]], ...]
    channels: Mapping[int, str]
    alpha: str
    first: int
    last: int
    offset: int

    def read_name(self, obj: ObjectMatte) -> str:
        return "matte_%s" % obj.name

    def copy_name(self, obj: ObjectMatte) -> str:
        return "channel_%s" % obj.name


def plan_group(objects: Sequence[ObjectMatte], *, chosen: Optional[int], first: int, last: int,
               offset: int = 0) -> GroupPlan:
    """The Group's content for `objects`; `chosen`: the object in alpha (None: all merged)."""
    ordered = tuple(sorted(objects, key=lambda o: o.obj_id))
    channels: Dict[int, str] = {}
    layers: List[Tuple[str, Tuple[str, ...]]] = []
    for start in range(0, len(ordered), CHANNELS_PER_LAYER):
        index = start // CHANNELS_PER_LAYER
        layer = MATTE_LAYER if index == 0 else "%s%d" % (MATTE_LAYER, index + 1)
        members = ordered[start:start + CHANNELS_PER_LAYER]
        names = tuple("%s.%s" % (layer, o.name) for o in members)
        layers.append((layer, names))
        channels.update({o.obj_id: name for o, name in zip(members, names)})
    return GroupPlan(objects=ordered, layers=tuple(layers), channels=channels,
                     alpha=alpha_expression(channels, chosen), first=int(first), last=int(last), offset=int(offset))


def alpha_expression(channels: Mapping[int, str], chosen: Optional[int]) -> str:
    """The alpha as a Nuke expression: the chosen object's channel, or the maximum of all
    (0 when nothing is tracked yet, or the chosen object is not)."""
    if chosen is not None:
        return channels.get(chosen, "0")
    ordered = [channels[o] for o in sorted(channels)]
    if not ordered:
        return "0"
    expression = ordered[0]
    for channel in ordered[1:]:
        expression = "max(%s, %s)" % (expression, channel)
    return expression
