"""A tiny renderer for the fake `nuke`: evaluates the stock nodes the SamRoto Group is made of
(Read, Copy, Expression, Switch, Input, Output, Group, Dot, NoOp) on one frame, from the files on disk,
as Nuke's render would. It never imports the plug-in, so a script renders here exactly when it
would render on a farm machine without SamRoto installed.

The result is {channel: H*W float32 array}, channels named like Nuke's (`rgba.red`, ...,
`samroto.hero`). A Read whose file is missing raises `RenderError` when its `on_error` says
"error", as Nuke fails the render.
"""

from __future__ import annotations

import os
import re
import types
from typing import Dict, List, Optional

import cv2
import numpy as np

from . import fake_nuke

Image = Dict[str, np.ndarray]


class RenderError(RuntimeError):
    """What Nuke reports when a node cannot produce its frame."""


def _frame_file(pattern: str, frame: int, view: str) -> str:
    pattern = pattern.replace("%V", view).replace("%v", view[:1])
    match = list(re.finditer(r"#+|%0(\d+)d", pattern))[-1]
    width = len(match.group(0)) if match.group(0).startswith("#") else int(match.group(1))
    return pattern[:match.start()] + str(frame).rjust(width, "0") + pattern[match.end():]


def _load(path: str) -> Image:
    if path.lower().endswith(".exr"):
        import OpenEXR

        with OpenEXR.File(path) as exr:
            out: Image = {}
            for name, channel in exr.channels().items():
                pixels = np.asarray(channel.pixels, dtype=np.float32)
                if pixels.ndim == 3:  # interleaved RGB(A)
                    for i, part in enumerate("RGBA"[:pixels.shape[2]]):
                        out["rgba." + {"R": "red", "G": "green", "B": "blue", "A": "alpha"}[part]] = pixels[..., i]
                else:
                    key = {"R": "rgba.red", "G": "rgba.green", "B": "rgba.blue", "A": "rgba.alpha"}.get(name, name)
                    out[key] = pixels
            return out
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise RenderError("cannot read %s" % path)
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    image = image.astype(np.float32) / scale
    if image.ndim == 2:
        return {"rgba.red": image, "rgba.green": image, "rgba.blue": image}
    out = {"rgba.blue": image[..., 0], "rgba.green": image[..., 1], "rgba.red": image[..., 2]}
    if image.shape[2] == 4:
        out["rgba.alpha"] = image[..., 3]
    return out


def _fit(pixels: np.ndarray, shape: tuple) -> np.ndarray:
    """A's channel in B's format, as Copy does: the overlap (from the bottom-left corner, Nuke's
    origin), black elsewhere."""
    if pixels.shape == shape:
        return pixels
    out = np.zeros(shape, np.float32)
    rows, cols = min(shape[0], pixels.shape[0]), min(shape[1], pixels.shape[1])
    out[shape[0] - rows:, :cols] = pixels[pixels.shape[0] - rows:, :cols]
    return out


def _size(node: fake_nuke.Node) -> tuple:
    fmt = node.format()
    return fmt.height(), fmt.width()


class Renderer:
    """Evaluates one frame of one view; `reads` lists the files the Reads opened."""

    def __init__(self, view: str = "main", *, gui: bool = False) -> None:
        self.view = view
        self.gui = gui  # the viewer in Nuke's GUI ($gui is 1) rather than a render ($gui is 0)
        self.reads: List[str] = []

    def render(self, node: fake_nuke.Node, frame: int) -> Image:
        return self._eval(node, frame, [])

    def _eval(self, node: Optional[fake_nuke.Node], frame: int, groups: List[fake_nuke.Group]) -> Image:
        if node is None:
            raise RenderError("a node has no input connected")
        kind = node.Class()
        if kind == "Read":
            return self._read(node, frame)
        if kind in ("Dot", "NoOp"):
            return self._eval(node.input(0), frame, groups)
        if kind == "Input":
            group = groups[-1]
            return self._eval(group.input(int(node["number"].value())), frame, groups[:-1])
        if kind == "Output":
            return self._eval(node.input(0), frame, groups)
        if kind == "Switch":
            which = node["which"]
            expression = getattr(which, "_expression", None)
            if expression is None:
                index = int(which.value())
            elif expression == "$gui":
                index = int(self.gui)
            else:
                raise RenderError("the fake renderer does not evaluate the expression %r" % expression)
            return self._eval(node.input(min(index, node.inputs() - 1)), frame, groups)
        if kind == "Group":
            group = node
            assert isinstance(group, fake_nuke.Group)
            outputs = [n for n in group._children.values() if n.Class() == "Output"]
            if len(outputs) != 1:
                raise RenderError("%s has %d Output nodes" % (node.name(), len(outputs)))
            return self._eval(outputs[0], frame, groups + [group])
        if kind == "Copy":
            b = dict(self._eval(node.input(0), frame, groups))
            a = self._eval(node.input(1), frame, groups)
            source, target = node["from0"].value(), node["to0"].value()
            if source != "none" and target != "none":
                if source not in a:
                    raise RenderError("%s: its A input has no channel %s" % (node.name(), source))
                b[target] = _fit(a[source], next(iter(b.values())).shape)
            return b
        if kind == "Expression":
            image = dict(self._eval(node.input(0), frame, groups))
            shape = next(iter(image.values())).shape
            layers: Dict[str, types.SimpleNamespace] = {}
            for name, pixels in image.items():
                layer, _, channel = name.partition(".")
                layers.setdefault(layer, types.SimpleNamespace())
                setattr(layers[layer], channel, pixels)
            scope = dict(layers, max=np.maximum, min=np.minimum)
            value = eval(node["expr3"].value() or "0", {"__builtins__": {}}, scope)  # noqa: S307 - test renderer
            target = node["channel3"].value()
            image["rgba.alpha" if target == "alpha" else target] = np.broadcast_to(
                np.asarray(value, dtype=np.float32), shape).copy()
            return image
        raise RenderError("the fake renderer does not know %s nodes" % kind)

    def _read(self, node: fake_nuke.Node, frame: int) -> Image:
        first, last = int(node["first"].value()), int(node["last"].value())
        mode, text = node["frame_mode"].value(), node["frame"].value().strip()
        offset = int(text) if text and mode == "offset" else (int(text) - first if text and mode == "start at" else 0)
        file_frame = frame - offset
        black = {"rgba.red": None, "rgba.green": None, "rgba.blue": None, "rgba.alpha": None}
        if file_frame < first or file_frame > last:
            if node["before" if file_frame < first else "after"].value() == "black":
                h, w = _size(node)
                return {name: np.zeros((h, w), np.float32) for name in black}
            file_frame = min(max(file_frame, first), last)  # hold
        path = _frame_file(node["file"].value(), file_frame, self.view)
        if not os.path.isfile(path):
            if node["on_error"].value() == "error":
                raise RenderError("%s: missing file %s" % (node.fullName(), path))
            h, w = _size(node)
            return {name: np.zeros((h, w), np.float32) for name in black}
        self.reads.append(path)
        return _load(path)
