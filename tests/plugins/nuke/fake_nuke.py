"""A small fake of the `nuke` module for the plug-in tests: nodes, knobs, Roto curves and keys,
ProgressTask and executeInMainThread, Groups with their Input/Output nodes, layers, knobChanged
callbacks (the artist's knob edits and frame changes), recording what the plug-in does.

Only names in `__all__` are Nuke API; `test_fake_nuke.py` checks each of them (and every method
of the fake classes, with its parameter names) against the `types-nuke` stubs, so the fake
cannot grow calls that real Nuke does not have. `control` is the tests' handle (not Nuke API):
main-thread queue, renders, messages.

Like Nuke, the fake allows node and knob access only on the main thread (the thread that
imported it, i.e. pytest's): anything else raises `WrongThread`, which is how the tests check
that the plug-in's worker thread goes through `executeInMainThread`.
"""

from __future__ import annotations

import queue
import sys
import threading
import types
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

__all__ = [
    # constants
    "GUI", "INVISIBLE", "STARTLINE", "WRITE_NON_DEFAULT_ONLY", "NUKE_VERSION_MAJOR", "NUKE_VERSION_STRING",
    # classes
    "Node", "Knob", "Array_Knob", "Int_Knob", "Double_Knob", "Boolean_Knob", "XY_Knob", "BBox_Knob", "String_Knob",
    "EvalString_Knob", "Multiline_Eval_String_Knob", "File_Knob", "Unsigned_Knob", "ColorChip_Knob",
    "Enumeration_Knob", "Text_Knob", "Tab_Knob", "Script_Knob", "PyScript_Knob", "Channel_Knob", "ChannelMask_Knob",
    "Format", "ProgressTask", "Root", "Menu", "ToolBar", "Group", "Layer", "ViewerWindow",
    "Nodes", "NodeConstructor",
    # functions
    "createNode", "toNode", "delete", "allNodes", "frame", "root", "message", "filename", "execute",
    "executeInMainThread", "views", "toolbar", "thisNode", "thisKnob", "ask", "getInput", "layers",
    "addKnobChanged", "removeKnobChanged", "activeViewer", "addOnScriptClose", "removeOnScriptClose",
    # module attribute
    "nodes",
]

# Choices of the colour knobs as Nuke 15 lists them with its ACES config (abridged): the project's
# OCIO configs, a Read's colourspaces, a viewer's processes ("View (Display)")
_OCIO_CONFIGS = ("fn-nuke_cg-config-v2.1.0_aces-v1.3_ocio-v2.3", "fn-nuke_studio-config-v2.1.0_aces-v1.3_ocio-v2.3",
                "nuke-default", "custom")
_READ_COLORSPACES = ("default", "scene_linear", "ACEScg", "ACES2065-1", "ACEScct", "Linear Rec.709 (sRGB)",
                    "sRGB Encoded Rec.709 (sRGB)", "Raw")
_VIEWER_PROCESSES = ("ACES 1.0 - SDR Video (sRGB - Display)", "Un-tone-mapped (sRGB - Display)",
                    "Un-tone-mapped (Display P3 - Display)", "Raw (sRGB - Display)", "None")

GUI = True
INVISIBLE = 0x400
STARTLINE = 0x1000
WRITE_NON_DEFAULT_ONLY = 0x10
NUKE_VERSION_MAJOR = 15
NUKE_VERSION_STRING = "15.1v5 (fake)"


class WrongThread(AssertionError):
    """Nuke was touched outside the main thread."""


_MAIN = threading.main_thread()


def _main_only(what: str) -> None:
    if threading.current_thread() is not _MAIN:
        raise WrongThread("%s called from thread %r: Nuke objects may only be used on the main thread "
                          "(use nuke.executeInMainThread)" % (what, threading.current_thread().name))


# --- knobs ------------------------------------------------------------------------------------


class Knob:
    def __init__(self, name: str, label: Optional[str] = None, *args: Any) -> None:
        self._name = name
        self._label = label if label is not None else name
        self._value: Any = args[0] if args else self._default()
        self._flags = 0
        self._tooltip = ""
        self._enabled = True
        self._node: Optional[Node] = None

    def _default(self) -> Any:
        return None

    def name(self) -> str:
        _main_only("Knob.name")
        return self._name

    def label(self) -> str:
        return self._label

    def node(self) -> "Node":
        assert self._node is not None
        return self._node

    def value(self) -> Any:
        _main_only("%s.value" % self._name)
        return self._value

    def getValue(self) -> Any:
        return self.value()

    def setValue(self, val: Any) -> bool:
        _main_only("%s.setValue" % self._name)
        self._value = val
        if self._node is not None:
            control.knob_log.append((self._node._name, self._name, val))
        return True

    def setFlag(self, flag: int) -> None:
        self._flags |= flag

    def clearFlag(self, flag: int) -> None:
        self._flags &= ~flag

    def getFlag(self, flag: int) -> bool:
        return bool(self._flags & flag)

    def setTooltip(self, tooltip: str) -> None:
        self._tooltip = tooltip

    def tooltip(self) -> str:
        return self._tooltip

    def setEnabled(self, enabled: bool) -> None:
        _main_only("Knob.setEnabled")
        self._enabled = bool(enabled)

    def enabled(self) -> bool:
        return self._enabled

    def setExpression(self, expression: str, *args: Any, **kwargs: Any) -> bool:
        """(Knob: index, view; Array_Knob: channel, view.) The fake keeps one expression."""
        _main_only("Knob.setExpression")
        self._expression = str(expression)
        return True

    def hasExpression(self, *args: Any, **kwargs: Any) -> bool:
        return getattr(self, "_expression", None) is not None

    def setVisible(self, visible: bool) -> None:
        _main_only("Knob.setVisible")
        self._visible = bool(visible)

    def visible(self) -> bool:
        return getattr(self, "_visible", True)


class Array_Knob(Knob):
    _size = 1

    def _default(self) -> Any:
        return [0.0] * self._size if self._size > 1 else 0

    def setValue(self, *args: Any, **kwargs: Any) -> Any:
        value = args[0]
        if self._size > 1:
            if not isinstance(value, (list, tuple)) or len(value) != self._size:
                raise TypeError("%s takes %d values" % (type(self).__name__, self._size))
            value = [float(v) for v in value]
        return Knob.setValue(self, value)

    def value(self, *args: Any, **kwargs: Any) -> Any:
        return Knob.value(self)


class Unsigned_Knob(Array_Knob):
    pass


class ColorChip_Knob(Unsigned_Knob):
    """A node's `tile_color`: 0xRRGGBBAA, 0 for the node class's own colour."""

    def setValue(self, *args: Any, **kwargs: Any) -> Any:
        if not isinstance(args[0], int) or not 0 <= args[0] <= 0xFFFFFFFF:
            raise TypeError("a colour chip takes an int 0xRRGGBBAA, got %r" % (args[0],))
        return Knob.setValue(self, args[0])


class Int_Knob(Array_Knob):
    def setValue(self, val: Any) -> bool:
        return bool(Array_Knob.setValue(self, int(val)))

    def value(self) -> int:
        return int(Knob.value(self))


class Double_Knob(Array_Knob):
    def _default(self) -> Any:
        return 0.0


class Boolean_Knob(Array_Knob):
    def _default(self) -> Any:
        return False

    def setValue(self, b: Any) -> bool:
        return bool(Knob.setValue(self, bool(b)))

    def value(self) -> bool:
        return bool(Knob.value(self))


class XY_Knob(Array_Knob):
    _size = 2

    def x(self) -> float:
        return float(Knob.value(self)[0])

    def y(self) -> float:
        return float(Knob.value(self)[1])


class BBox_Knob(Array_Knob):
    _size = 4

    def x(self) -> float:
        return float(Knob.value(self)[0])

    def y(self) -> float:
        return float(Knob.value(self)[1])

    def r(self) -> float:
        return float(Knob.value(self)[2])

    def t(self) -> float:
        return float(Knob.value(self)[3])


class String_Knob(Knob):
    def _default(self) -> Any:
        return ""

    def setValue(self, val: Any) -> None:
        if not isinstance(val, str):
            raise TypeError("String_Knob.setValue takes a str, got %r" % (val,))
        Knob.setValue(self, val)

    def value(self) -> str:
        return str(Knob.value(self))


class EvalString_Knob(String_Knob):
    pass


class Multiline_Eval_String_Knob(EvalString_Knob):
    pass


class File_Knob(EvalString_Knob):
    pass


class Enumeration_Knob(Unsigned_Knob):
    def __init__(self, name: str, label: Optional[str] = None, values: Sequence[str] = ()) -> None:
        super().__init__(name, label)
        self._values = list(values)
        self._value = self._values[0] if self._values else ""

    def setValue(self, *args: Any, **kwargs: Any) -> Any:
        value = args[0]
        if isinstance(value, int):
            value = self._values[value]
        if self._values and value not in self._values:
            raise ValueError("%r is not one of %s's values %s" % (value, self._name, self._values))
        return Knob.setValue(self, value)

    def value(self) -> Any:
        return Knob.value(self)

    def values(self) -> Any:
        return list(self._values)


class Text_Knob(Knob):
    def setValue(self, *args: Any, **kwargs: Any) -> Any:
        return Knob.setValue(self, str(args[0]))

    def value(self, *args: Any, **kwargs: Any) -> Any:
        return Knob.value(self)


class Tab_Knob(Knob):
    pass


class Script_Knob(String_Knob):
    def setValue(self, cmd: Any) -> None:
        String_Knob.setValue(self, cmd)

    def command(self) -> str:
        return str(self._value)

    def execute(self) -> None:
        """Runs the command as Nuke does: with `nuke` imported and thisNode() the knob's node."""
        _main_only("Script_Knob.execute")
        control.this_node.append(self.node())
        try:
            exec(compile(self.command(), "<%s>" % self._name, "exec"), {"nuke": sys.modules[__name__]})
        finally:
            control.this_node.pop()


class PyScript_Knob(Script_Knob):
    pass


_BUILTIN_LAYERS = {"rgba": ["rgba.red", "rgba.green", "rgba.blue", "rgba.alpha"], "rgb": [], "alpha": []}


class Channel_Knob(Knob):
    def _default(self) -> Any:
        return "none"

    def setValue(self, name: Any) -> bool:
        if not isinstance(name, str) or (name != "none" and "." not in name and name not in ("rgb", "rgba", "alpha")):
            raise ValueError("not a channel: %r" % (name,))
        if "." in name:  # like Nuke: a channel of a layer nobody created is refused
            layer = name.split(".", 1)[0]
            known = _BUILTIN_LAYERS.get(layer) or control.layers.get(layer)
            if known is None or (known and name not in known):
                raise ValueError("no channel %r: create its layer first (nuke.Layer)" % (name,))
        return Knob.setValue(self, name)


class ChannelMask_Knob(Channel_Knob):
    pass


# --- nodes ------------------------------------------------------------------------------------


class Format:
    def __init__(self, width: int = 1920, height: int = 1080) -> None:
        self._width, self._height = int(width), int(height)

    def width(self) -> int:
        return self._width

    def height(self) -> int:
        return self._height


class Node:
    def __init__(self, node_class: str = "NoOp", **knob_values: Any) -> None:
        _main_only("creating a %s node" % node_class)
        self._class = node_class
        self._parent: Optional[Group] = control.context[-1] if control.context else None
        self._name = _unique_name(node_class, self._registry())
        self._knobs: Dict[str, Knob] = {}
        self._inputs: Dict[int, Optional[Node]] = {}
        self._xy = (0, 0)
        self._format: Optional[Format] = None
        self._first_last: Optional[Tuple[int, int]] = None
        for knob in _class_knobs(node_class):
            self._attach(knob)
        self._registry()[self._name] = self
        for name, value in knob_values.items():
            if name == "inputs":
                for i, node in enumerate(value):
                    self.setInput(i, node)
            else:
                self[name].setValue(value)

    def _attach(self, knob: Knob) -> None:
        knob._node = self
        self._knobs[knob._name] = knob

    def _registry(self) -> Dict[str, "Node"]:
        """The nodes next to this one: its Group's, or the script's top level."""
        return self._parent._children if self._parent is not None else control.nodes

    def Class(self) -> str:
        _main_only("Node.Class")
        return self._class

    def name(self) -> str:
        _main_only("Node.name")
        return self._name

    def fullName(self) -> str:
        return self.name() if self._parent is None else "%s.%s" % (self._parent.fullName(), self.name())

    def setName(self, name: str, uncollide: bool = True, updateExpressions: bool = False) -> None:
        _main_only("Node.setName")
        registry = self._registry()
        if name != self._name and name in registry:
            if not uncollide:
                raise ValueError("a node is already called %r" % name)
            n = 1
            while "%s%d" % (name, n) in registry:
                n += 1
            name = "%s%d" % (name, n)
        del registry[self._name]
        self._name = name
        registry[name] = self

    def knob(self, p: Any, follow_link: bool = True) -> Optional[Knob]:
        _main_only("Node.knob")
        return self._knobs.get(p)

    def knobs(self) -> Dict[str, Knob]:
        _main_only("Node.knobs")
        return dict(self._knobs)

    def __getitem__(self, name: str) -> Knob:
        _main_only("Node[%r]" % name)
        if name not in self._knobs:
            raise NameError("%s has no knob %r" % (self._name, name))  # what Nuke raises
        return self._knobs[name]

    def addKnob(self, knob: Knob) -> None:
        _main_only("Node.addKnob")
        if knob._name in self._knobs:
            raise ValueError("%s already has a knob %r" % (self._name, knob._name))
        self._attach(knob)

    def input(self, index: int) -> Optional["Node"]:
        _main_only("Node.input")
        return self._inputs.get(index)

    def inputs(self) -> int:
        return max(self._inputs) + 1 if self._inputs else 0

    def setInput(self, i: int, node: Optional["Node"]) -> bool:
        _main_only("Node.setInput")
        self._inputs[i] = node
        return True

    def format(self) -> Format:
        _main_only("Node.format")
        if self._format is not None:
            return self._format
        upstream = self._inputs.get(0)
        return upstream.format() if upstream is not None else control.root_format

    def firstFrame(self) -> int:
        return self._range()[0]

    def pixelAspect(self) -> float:
        return 1.0

    def lastFrame(self) -> int:
        return self._range()[1]

    def _range(self) -> Tuple[int, int]:
        _main_only("Node frame range")
        if self._class == "Read":
            offset = _read_offset(self)
            return int(self["first"].value()) + offset, int(self["last"].value()) + offset
        if self._first_last is not None:
            return self._first_last
        upstream = self._inputs.get(0)
        return upstream._range() if upstream is not None else (control.root.firstFrame(), control.root.lastFrame())

    def writeKnobs(self, flags: int = 0) -> str:
        _main_only("Node.writeKnobs")
        return " ".join("%s %r" % (k, knob._value) for k, knob in sorted(self._knobs.items())
                        if not isinstance(knob, Script_Knob))

    def xpos(self) -> int:
        return self._xy[0]

    def ypos(self) -> int:
        return self._xy[1]

    def setXYpos(self, x: int, y: int) -> None:
        _main_only("Node.setXYpos")
        self._xy = (int(x), int(y))

    def __repr__(self) -> str:
        return "<fake %s %s>" % (self._class, self._name)


class Group(Node):
    """A node holding nodes: Input nodes are its inputs, its Output node its result."""

    def __init__(self, node_class: str = "Group", **knob_values: Any) -> None:
        self._children: Dict[str, Node] = {}
        super().__init__(node_class, **knob_values)

    def begin(self) -> "Group":
        _main_only("Group.begin")
        control.context.append(self)
        return self

    def end(self) -> None:
        _main_only("Group.end")
        if not control.context or control.context[-1] is not self:
            raise RuntimeError("Group.end() without its begin()")
        control.context.pop()

    def __enter__(self) -> "Group":
        return self.begin()

    def __exit__(self, type: Any, value: Any, traceback: Any) -> Any:
        self.end()
        return None

    def node(self, s: str) -> Optional[Node]:
        _main_only("Group.node")
        return self._children.get(s)

    def nodes(self) -> List[Node]:
        _main_only("Group.nodes")
        return list(self._children.values())


class Root(Group):
    def __init__(self) -> None:  # not in the node registry, as in Nuke
        self._class, self._name = "Root", "root"
        self._parent = None
        self._children = {}
        self._knobs, self._inputs, self._xy = {}, {}, (0, 0)
        self._format: Optional[Format] = None
        self._first_last: Optional[Tuple[int, int]] = None
        self._frames = (1, 100)
        proxy = Boolean_Knob("proxy")
        proxy._node = self
        self._knobs["proxy"] = proxy
        # the project's colour management (Project Settings > Color)
        for knob in (Enumeration_Knob("OCIO_config", None, list(_OCIO_CONFIGS)), File_Knob("customOCIOConfigPath")):
            self._attach(knob)

    def firstFrame(self) -> int:
        return self._frames[0]

    def lastFrame(self) -> int:
        return self._frames[1]

    def proxy(self, *args: Any, **kwargs: Any) -> Any:
        return bool(self._knobs["proxy"].value())

    def setProxy(self, *args: Any, **kwargs: Any) -> Any:
        self._knobs["proxy"].setValue(bool(args[0]))


class Layer:
    """`nuke.Layer(name, [layer.channel, ...])` creates a layer for the whole script."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _main_only("nuke.Layer")
        name = str(args[0])
        channels = [str(c) for c in (args[1] if len(args) > 1 else kwargs.get("channels", []))]
        if not name or "." in name or not all(c.startswith(name + ".") for c in channels):
            raise ValueError("a layer's channels are named <layer>.<channel>, got %r for layer %r" % (channels, name))
        known = control.layers.setdefault(name, [])
        known.extend(c for c in channels if c not in known)
        self._name = name

    def name(self) -> str:
        return self._name

    def channels(self, *args: Any, **kwargs: Any) -> Any:
        return list(control.layers[self._name])

    def setName(self, newName: str) -> None:
        raise NotImplementedError("the fake does not rename layers")

    def visible(self) -> bool:
        return True


_NukeLayer = Layer  # nuke.Layer; the rotopaint Layer below takes the name until the end of the module


def layers(node: Optional[Node] = None) -> List[str]:
    return ["rgba"] + sorted(control.layers)


def _read_offset(node: Node) -> int:
    mode, text = node["frame_mode"].value(), node["frame"].value().strip()
    if not text:
        return 0
    return int(text) - int(node["first"].value()) if mode == "start at" else int(text) if mode == "offset" else 0


def _class_knobs(node_class: str) -> List[Knob]:
    """The built-in knobs a node class has (only those the plug-in uses)."""
    common: List[Knob] = [Multiline_Eval_String_Knob("label"), ColorChip_Knob("tile_color")]  # on every node
    if node_class == "Expression":
        return common + [ChannelMask_Knob("channel3", None, "alpha"), String_Knob("expr3")]
    if node_class == "Read":
        return common + [Script_Knob("reload", None, ""), File_Knob("file"), Int_Knob("first", None, 1),
                         Int_Knob("last", None, 1),
                         Int_Knob("origfirst", None, 1), Int_Knob("origlast", None, 1),
                         Enumeration_Knob("frame_mode", None, ["expression", "start at", "offset"]),
                         String_Knob("frame"),
                         Enumeration_Knob("before", None, ["hold", "loop", "bounce", "black"]),
                         Enumeration_Knob("after", None, ["hold", "loop", "bounce", "black"]),
                         Enumeration_Knob("on_error", None, ["error", "black", "checkerboard", "nearest frame"]),
                         Enumeration_Knob("colorspace", None, list(_READ_COLORSPACES))]
    if node_class == "Write":
        return common + [File_Knob("file"),
                         Enumeration_Knob("file_type", None, [" ", "exr", "png", "jpeg", "tiff", "dpx"]),
                         ChannelMask_Knob("channels", None, "rgb")]
    if node_class == "Viewer":  # colour_sample_bbox: what Ctrl+click / Ctrl+Shift+drag in the viewer set
        return common + [Enumeration_Knob("viewerProcess", None, list(_VIEWER_PROCESSES)), Int_Knob("frame", None, 1),
                         BBox_Knob("colour_sample_bbox")]
    if node_class == "Copy":
        return common + [Channel_Knob("from0", None, "rgba.alpha"), Channel_Knob("to0", None, "rgba.alpha")]
    if node_class == "Input":
        return common + [Int_Knob("number", None, 0)]
    if node_class == "Switch":
        return common + [Int_Knob("which", None, 0)]
    if node_class in ("Roto", "RotoPaint"):
        return common + [rotopaint.CurveKnob("curves")]
    return common


def _unique_name(node_class: str, registry: Dict[str, Node]) -> str:
    n = 1
    while "%s%d" % (node_class, n) in registry:
        n += 1
    return "%s%d" % (node_class, n)


def _make(node_class: str, **kwargs: Any) -> Node:
    return Group(node_class, **kwargs) if node_class == "Group" else Node(node_class, **kwargs)


class NodeConstructor:
    def __init__(self, node_class: str) -> None:
        self._class = node_class

    def __call__(self, *args: Any, **kwargs: Any) -> Node:
        return _make(self._class, **kwargs)


class Nodes:
    def __getattr__(self, item: str) -> NodeConstructor:
        if item.startswith("_"):
            raise AttributeError(item)
        return NodeConstructor(item)


nodes = Nodes()


def createNode(typ: str, knobs: str = "", inpanel: bool = True) -> Node:
    """Like Nuke: the new node is connected below the selected node."""
    node = _make(typ)
    if control.selected is not None:
        node.setInput(0, control.selected)
    control.selected = node
    return node


def toNode(s: str) -> Optional[Node]:
    """A node by its full name (`Group1.Read1` inside a Group)."""
    _main_only("nuke.toNode")
    registry = control.context[-1]._children if control.context else control.nodes
    node: Optional[Node] = None
    for part in s.split("."):
        node = registry.get(part)
        if node is None:
            return None
        registry = node._children if isinstance(node, Group) else {}
    return node


def delete(n: Optional[Node]) -> None:
    _main_only("nuke.delete")
    if n is not None:
        n._registry().pop(n._name, None)
        control.deleted.append(n.fullName())


def allNodes(*args: Any, **kwargs: Any) -> List[Node]:
    _main_only("nuke.allNodes")
    return list(control.nodes.values())


def frame(f: Optional[int] = None) -> int:
    _main_only("nuke.frame")
    if f is not None:
        control.current_frame = int(f)
    return control.current_frame


def root() -> Root:
    return control.root


class ViewerWindow:
    """The viewer window around a Viewer node (`activeViewer()`)."""

    def __init__(self, node: Node) -> None:
        self._node = node

    def node(self) -> Node:
        _main_only("ViewerWindow.node")
        return self._node

    def activeInput(self, secondary: Any = False) -> int:
        return control.active_input


def activeViewer() -> Optional[ViewerWindow]:  # Nuke returns None when no viewer is open
    _main_only("nuke.activeViewer")
    return ViewerWindow(control.viewer) if control.viewer is not None else None


def message(prompt: str) -> None:
    _main_only("nuke.message")
    control.messages.append(prompt)


def filename(node: Node, i: int = 0) -> Optional[str]:
    """The file knob's value (the fake has no TCL to evaluate)."""
    _main_only("nuke.filename")
    knob = node.knob("file")
    return knob.value() if knob is not None and knob.value() else None


def execute(nameOrNode: Any, start: int, end: int, incr: int = 1, views: Optional[List[str]] = None,
            continueOnError: bool = False) -> None:
    """Renders a Write node: `control.render(write, frame, path)` writes each file."""
    _main_only("nuke.execute")
    node = nameOrNode if isinstance(nameOrNode, Node) else control.nodes[nameOrNode]
    if node.Class() != "Write":
        raise RuntimeError("%s cannot be executed" % node.name())
    if control.render is None:
        raise RuntimeError("the fake has no renderer: set fake_nuke.control.render")
    pattern = node["file"].value()
    for f in range(int(start), int(end) + 1, int(incr)):
        control.render(node, f, _frame_file(pattern, f))
    control.executed.append((node.name(), int(start), int(end)))
    control.executed_in_proxy.append(bool(control.root.proxy()))


def _frame_file(pattern: str, f: int) -> str:
    import re

    match = list(re.finditer(r"#+|%0(\d+)d", pattern))[-1]
    width = len(match.group(0)) if match.group(0).startswith("#") else int(match.group(1))
    return pattern[:match.start()] + str(f).rjust(width, "0") + pattern[match.end():]


def executeInMainThread(call: Callable[..., Any], args: Any = (), kwargs: Any = None) -> None:
    """Queued like Nuke does; the test's main thread runs the queue (`control.pump`)."""
    if not isinstance(args, tuple):
        args = (args,)  # Nuke accepts a single non-tuple argument too
    control.main_queue.put((call, args, dict(kwargs or {})))
    control.posted += 1


def views() -> List[str]:
    return list(control.views)


def thisNode() -> Node:
    if not control.this_node:
        raise RuntimeError("thisNode() outside a knob callback")
    return control.this_node[-1]


def thisKnob() -> Knob:
    if not control.this_knob:
        raise RuntimeError("thisKnob() outside a knobChanged callback")
    return control.this_knob[-1]


def ask(prompt: str) -> bool:
    """A yes/no dialog: answered from `control.answers` (the test says what the artist clicks)."""
    _main_only("nuke.ask")
    control.asked.append(prompt)
    if not control.answers:
        raise AssertionError("the plug-in asked %r but the test gave no answer" % prompt)
    return bool(control.answers.pop(0))


def getInput(prompt: str, default: str = "") -> str:
    _main_only("nuke.getInput")
    control.asked.append(prompt)
    return str(control.answers.pop(0)) if control.answers else default


def addKnobChanged(call: Callable[..., Any], args: Any = (), kwargs: Any = None, nodeClass: str = "*",
                   node: Any = None) -> None:
    control.knob_changed.append((call, tuple(args), dict(kwargs or {}), nodeClass))


def addOnScriptClose(call: Callable[..., Any], args: Any = (), kwargs: Any = None, nodeClass: str = "*") -> None:
    control.on_script_close.append(call)


def removeOnScriptClose(call: Callable[..., Any], args: Any = (), kwargs: Any = None, nodeClass: str = "*") -> None:
    control.on_script_close[:] = [c for c in control.on_script_close if c != call]


def removeKnobChanged(call: Callable[..., Any], args: Any = (), kwargs: Any = None, nodeClass: str = "*",
                      node: Any = None) -> None:
    control.knob_changed[:] = [c for c in control.knob_changed if (c[0], c[3]) != (call, nodeClass)]


class ProgressTask:
    """Usable from any thread, as in Nuke; records every update."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.title = str(args[0]) if args else ""
        self.updates: List[Tuple[str, Any]] = []
        self.cancel_after: Optional[int] = control.cancel_progress_after
        control.progress_tasks.append(self)

    def setProgress(self, *args: Any, **kwargs: Any) -> Any:
        value = args[0]
        if not isinstance(value, int) or not 0 <= value <= 100:
            raise ValueError("ProgressTask.setProgress takes an int from 0 to 100, got %r" % (value,))
        self.updates.append(("progress", value))

    def setMessage(self, *args: Any, **kwargs: Any) -> Any:
        self.updates.append(("message", str(args[0])))

    def isCancelled(self, *args: Any, **kwargs: Any) -> Any:
        progress = [u for u in self.updates if u[0] == "progress"]
        return self.cancel_after is not None and len(progress) >= self.cancel_after


class _MenuBase:
    def __init__(self, name: str) -> None:
        self._name = name
        self.commands: Dict[str, Any] = {}
        self.menus: Dict[str, Menu] = {}

    def name(self) -> str:
        return self._name

    def addCommand(self, *args: Any, **kwargs: Any) -> Any:
        self.commands[str(args[0])] = args[1] if len(args) > 1 else kwargs.get("command")
        return None

    def addMenu(self, *args: Any, **kwargs: Any) -> Any:
        return self.menus.setdefault(str(args[0]), Menu(str(args[0])))


class Menu(_MenuBase):
    pass


class ToolBar(_MenuBase):
    pass


def toolbar(name: str, create: bool = True) -> Optional[ToolBar]:
    _main_only("nuke.toolbar")
    return control.toolbars.setdefault(name, ToolBar(name))


# --- nuke.rotopaint ---------------------------------------------------------------------------


class CVec2:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.x, self.y = float(args[0]), float(args[1])


class CVec3:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.x, self.y = float(args[0]), float(args[1])
        self.z = float(args[2]) if len(args) > 2 else 0.0


class AnimControlPoint:
    """Keys: time -> (x, y); between keys the position is linear, outside it is held."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.constant = (float(args[0]), float(args[1])) if len(args) >= 2 else (0.0, 0.0)
        self.keys: Dict[float, Tuple[float, float]] = {}

    def addPositionKey(self, time: Any, positionOrDim: Any, view: Any) -> None:
        _main_only("AnimControlPoint.addPositionKey")
        if view not in views():
            raise ValueError("no view %r" % (view,))
        if isinstance(positionOrDim, (CVec2, CVec3)):
            self.keys[float(time)] = (positionOrDim.x, positionOrDim.y)
        else:
            raise TypeError("the fake takes CVec2/CVec3 positions, got %r" % (positionOrDim,))

    def getControlPointKeyTimes(self, view: str = "main") -> List[float]:
        _main_only("AnimControlPoint.getControlPointKeyTimes")
        return sorted(self.keys)

    def getPosition(self, time: float, view: str = "main") -> CVec3:
        _main_only("AnimControlPoint.getPosition")
        if not self.keys:
            return CVec3(self.constant[0], self.constant[1], 0.0)
        times = sorted(self.keys)
        if time <= times[0]:
            return CVec3(*self.keys[times[0]])
        if time >= times[-1]:
            return CVec3(*self.keys[times[-1]])
        after = next(t for t in times if t >= time)
        before = max(t for t in times if t <= time)
        if after == before:
            return CVec3(*self.keys[before])
        w = (time - before) / (after - before)
        (x0, y0), (x1, y1) = self.keys[before], self.keys[after]
        return CVec3(x0 + w * (x1 - x0), y0 + w * (y1 - y0))


class AnimAttributes:
    kInvertedAttribute = "inv"
    kRedOverlayAttribute = "ro"
    kGreenOverlayAttribute = "go"
    kBlueOverlayAttribute = "bo"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.values: Dict[str, float] = {"inv": 0.0, "ro": 1.0, "go": 1.0, "bo": 1.0}

    def getValue(self, time: Any, indexOrName: Any, view: Any) -> float:
        _main_only("AnimAttributes.getValue")
        return self.values[indexOrName]


class Element:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.name = ""
        self.visibility: Dict[float, bool] = {}

    def setVisible(self, time: float, value: bool) -> None:
        _main_only("Element.setVisible")
        if not isinstance(value, bool):
            raise TypeError("setVisible takes a bool")
        self.visibility[float(time)] = value

    def getVisible(self, time: float) -> bool:
        times = [t for t in sorted(self.visibility) if t <= time]
        return self.visibility[times[-1]] if times else True


class ShapeControlPoint:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.center = AnimControlPoint(*args)
        self.leftTangent = AnimControlPoint()
        self.rightTangent = AnimControlPoint()
        self.featherCenter = AnimControlPoint()
        self.featherLeftTangent = AnimControlPoint()
        self.featherRightTangent = AnimControlPoint()


class Shape(Element):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        if not args or not isinstance(args[0], CurveKnob):
            raise TypeError("Shape(curvesKnob): the fake wants the curve knob, as Nuke does")
        self.points: List[ShapeControlPoint] = []
        self.attributes = AnimAttributes()

    def append(self, shapeControlPoint: Any) -> None:
        _main_only("Shape.append")
        if not isinstance(shapeControlPoint, ShapeControlPoint):
            raise TypeError("Shape.append takes a ShapeControlPoint")
        self.points.append(shapeControlPoint)

    def getAttributes(self) -> AnimAttributes:
        return self.attributes

    def __getitem__(self, index: int) -> ShapeControlPoint:
        return self.points[index]

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[ShapeControlPoint]:
        return iter(self.points)


class Layer(Element):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.elements: List[Element] = []

    def append(self, element: Element) -> None:
        _main_only("Layer.append")
        if not isinstance(element, Element):
            raise TypeError("Layer.append takes a Shape, Stroke or Layer")
        self.elements.append(element)

    def remove(self, index: int) -> None:
        _main_only("Layer.remove")
        del self.elements[index]

    def __getitem__(self, index: int) -> Element:
        return self.elements[index]

    def __len__(self) -> int:
        return len(self.elements)

    def __iter__(self) -> Iterator[Element]:
        return iter(self.elements)


_RotoLayer = Layer  # nuke.rotopaint.Layer (the module-level name becomes nuke.Layer at the end)


class CurveKnob(Knob):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args)
        self.rootLayer = _RotoLayer()
        self.rootLayer.name = "Root"
        self.changes = 0

    def changed(self) -> None:
        _main_only("CurveKnob.changed")
        self.changes += 1

    def toElement(self, path: str) -> Optional[Element]:
        element: Optional[Element] = self.rootLayer
        for part in path.split("/"):
            children = list(element) if isinstance(element, _RotoLayer) else []
            element = next((e for e in children if e.name == part), None)
            if element is None:
                return None
        return element


rotopaint = types.ModuleType(__name__ + ".rotopaint", "fake nuke.rotopaint")
rotopaint.__all__ = ["CVec2", "CVec3", "AnimControlPoint", "AnimAttributes", "Element", "ShapeControlPoint",
                     "Shape", "Layer", "CurveKnob"]
for _name in rotopaint.__all__:
    setattr(rotopaint, _name, globals()[_name])
Layer = _NukeLayer  # type: ignore[misc]  # nuke.Layer at module level; nuke.rotopaint.Layer in rotopaint


# --- the tests' handle (not Nuke API) ---------------------------------------------------------


class Control:
    """State of the fake Nuke session, and helpers to drive it."""

    def __init__(self) -> None:
        self.nodes: Dict[str, Node] = {}
        self.main_queue: "queue.Queue[Tuple[Callable[..., Any], tuple, dict]]" = queue.Queue()
        self.reset()

    def reset(self) -> None:
        self.nodes = {}
        self.context: List[Group] = []
        self.layers: Dict[str, List[str]] = {}
        self.views: List[str] = ["main"]
        self.this_knob: List[Knob] = []
        self.knob_changed: List[Tuple[Callable[..., Any], tuple, dict, str]] = []
        self.answers: List[Any] = []
        self.asked: List[str] = []
        self.executed_in_proxy: List[bool] = []
        self.active_input = 0
        self.on_script_close: List[Callable[..., Any]] = []
        while not self.main_queue.empty():
            self.main_queue.get_nowait()
        self.posted = 0
        self.ran_on_main = 0
        self.messages: List[str] = []
        self.knob_log: List[Tuple[str, str, Any]] = []
        self.progress_tasks: List[ProgressTask] = []
        self.cancel_progress_after: Optional[int] = None
        self.toolbars: Dict[str, ToolBar] = {}
        self.executed: List[Tuple[str, int, int]] = []
        self.deleted: List[str] = []
        self.render: Optional[Callable[[Node, int, str], None]] = None
        self.selected: Optional[Node] = None
        self.this_node: List[Node] = []
        self.current_frame = 1
        self.root_format = Format(1920, 1080)
        self.root = Root()
        self.viewer: Optional[Node] = None  # the active viewer's node (make_viewer)

    def make_read(self, path: str, first: int, last: int, *, width: int, height: int, frame_mode: str = "expression",
                  frame: str = "") -> Node:
        """A Read node as Nuke makes one for a sequence (its format is the files' size)."""
        read = Node("Read", file=path, first=first, last=last, origfirst=first, origlast=last)
        read["frame_mode"].setValue(frame_mode)
        read["frame"].setValue(frame)
        read._format = Format(width, height)
        return read

    def make_viewer(self, viewer_process: str) -> Node:
        """A Viewer node showing its input through `viewer_process`, made the active viewer."""
        self.viewer = Node("Viewer")
        self.viewer["viewerProcess"].setValue(viewer_process)
        return self.viewer

    def make_node(self, node_class: str, *, input: Optional[Node] = None, frames: Optional[Tuple[int, int]] = None,
                  width: Optional[int] = None, height: Optional[int] = None) -> Node:
        """Any other node (a Grade, a Dot, ...), optionally below `input`."""
        node = Node(node_class)
        if input is not None:
            node.setInput(0, input)
        if frames is not None:
            node._first_last = (int(frames[0]), int(frames[1]))
        if width is not None and height is not None:
            node._format = Format(width, height)
        return node

    def user_sets(self, node: Node, knob: str, value: Any) -> None:
        """The artist changes a knob in the node's panel (or drags its handle in the viewer):
        the value is set, then Nuke's knobChanged callbacks run with thisNode/thisKnob."""
        node[knob].setValue(value)
        self.fire_knob_changed(node, node[knob])

    def fire_knob_changed(self, node: Node, knob: Knob) -> None:
        for call, args, kwargs, node_class in list(self.knob_changed):
            if node_class not in ("*", node.Class()):
                continue
            self.this_node.append(node)
            self.this_knob.append(knob)
            try:
                call(*args, **kwargs)
            finally:
                self.this_node.pop()
                self.this_knob.pop()

    def viewer_node(self) -> Node:
        """The Viewer node the artist looks through: the active viewer's, else the script's
        first Viewer (made on first use; it does not become the active viewer)."""
        return self.viewer or self.nodes.get("Viewer1") or Node("Viewer")

    def viewer_sample(self, node: Node, box: Tuple[float, float, float, float]) -> None:
        """The artist views `node` and Ctrl+clicks (or Ctrl+Shift+drags) in the viewer: Nuke
        stores the sampled box, in its normalised viewer units, in the Viewer's
        colour_sample_bbox and calls the knobChanged callbacks."""
        viewer = self.viewer_node()
        viewer.setInput(0, node)
        self.active_input = 0
        self.user_sets(viewer, "colour_sample_bbox", list(box))

    def change_frame(self, frame: int) -> None:
        """The artist moves the timeline: the viewer's frame knob changes."""
        self.current_frame = int(frame)
        viewer = self.viewer_node()
        viewer["frame"].setValue(frame)
        self.fire_knob_changed(viewer, viewer["frame"])

    def pump(self) -> int:
        """Run the calls queued with executeInMainThread, on this (main) thread."""
        _main_only("control.pump")
        count = 0
        while True:
            try:
                call, args, kwargs = self.main_queue.get_nowait()
            except queue.Empty:
                return count
            call(*args, **kwargs)
            count += 1
            self.ran_on_main += 1

    def run_until(self, done: Callable[[], bool], timeout: float = 120.0) -> None:
        """Pump the main-thread queue until `done()` (then once more, for the last calls)."""
        import time

        deadline = time.monotonic() + timeout
        while not done():
            self.pump()
            if time.monotonic() > deadline:
                raise AssertionError("gave up waiting for the plug-in's background job")
            time.sleep(0.01)
        self.pump()


control = Control()
