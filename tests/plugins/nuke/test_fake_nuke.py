"""Keep the fake `nuke` honest: every name it offers as Nuke API, every method of its classes and
their parameter names must exist in the `types-nuke` stubs (Nuke's API as Foundry ships it,
13.2 era), and its class hierarchy must follow the stubs'.

The stubs are read as source (ast), so nothing here depends on mypy's view of them.
"""

from __future__ import annotations

import ast
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Set

import pytest

from . import fake_nuke

# module attributes of the fake that are the tests' handle, not Nuke API
TEST_HELPERS = {"control", "Control", "WrongThread", "rotopaint"}


@dataclass
class StubFunction:
    params: List[List[inspect.Parameter]]  # one list per overload

    def accepts(self, fake: inspect.Signature) -> Optional[str]:
        """None when one overload takes the fake's parameters (same names, same order), else why not."""
        reasons = []
        for params in self.params:
            named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY, p.POSITIONAL_ONLY)]
            has_varargs = any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params)
            names = [p.name for p in named if p.name != "self"]
            fake_names = [p.name for p in fake.parameters.values()
                          if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"]
            if has_varargs and not names:
                return None
            if fake_names == names[:len(fake_names)] or (has_varargs and set(fake_names) <= set(names)):
                return None
            reasons.append("stub takes (%s), the fake (%s)" % (", ".join(names), ", ".join(fake_names)))
        return "; ".join(reasons)


@dataclass
class StubClass:
    name: str
    bases: List[str]
    members: Dict[str, Optional[StubFunction]] = field(default_factory=dict)  # None: an attribute


@dataclass
class StubModule:
    functions: Dict[str, StubFunction] = field(default_factory=dict)
    classes: Dict[str, StubClass] = field(default_factory=dict)
    constants: Set[str] = field(default_factory=set)


def _stub_dir() -> Path:
    """The `nuke-stubs` folder of the installed types-nuke (not importable by that name)."""
    for entry in sys.path:
        candidate = Path(entry) / "nuke-stubs"
        if (candidate / "__init__.pyi").is_file():
            return candidate
    raise AssertionError("the types-nuke stubs are missing: `pip install types-nuke`")


def _parameters(node: ast.FunctionDef) -> List[inspect.Parameter]:
    args = node.args
    params: List[inspect.Parameter] = []
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    for arg, default in zip(positional, defaults):
        params.append(inspect.Parameter(arg.arg, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        default=inspect.Parameter.empty if default is None else ...))
    if args.vararg is not None:
        params.append(inspect.Parameter(args.vararg.arg, inspect.Parameter.VAR_POSITIONAL))
    for arg, default in zip(args.kwonlyargs, args.kw_defaults):
        params.append(inspect.Parameter(arg.arg, inspect.Parameter.KEYWORD_ONLY,
                                        default=inspect.Parameter.empty if default is None else ...))
    if args.kwarg is not None:
        params.append(inspect.Parameter(args.kwarg.arg, inspect.Parameter.VAR_KEYWORD))
    return params


def _read_stub(path: Path, module: StubModule, seen: Set[Path]) -> None:
    if path in seen:
        return
    seen.add(path)
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            target = path.parent / (node.module.lstrip(".").replace(".", "/") + ".pyi")
            if target.is_file():
                if any(a.name == "*" for a in node.names):
                    _read_stub(target, module, seen)
                else:  # `from ._curveknob import Shape as Shape`: read the file, keep the names
                    inner = StubModule()
                    _read_stub(target, inner, set())
                    for alias in node.names:
                        name = alias.asname or alias.name
                        if alias.name in inner.classes:
                            module.classes[name] = inner.classes[alias.name]
                        elif alias.name in inner.functions:
                            module.functions[name] = inner.functions[alias.name]
                        else:
                            module.constants.add(name)
        elif isinstance(node, ast.FunctionDef):
            module.functions.setdefault(node.name, StubFunction([])).params.append(_parameters(node))
        elif isinstance(node, ast.ClassDef):
            cls = module.classes.setdefault(node.name, StubClass(node.name, [ast.unparse(b) for b in node.bases]))
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    member = cls.members.get(item.name) or StubFunction([])
                    member.params.append(_parameters(item))
                    cls.members[item.name] = member
                elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    cls.members.setdefault(item.target.id, None)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            module.constants.add(node.target.id)


@pytest.fixture(scope="module")
def stubs() -> Dict[str, StubModule]:
    folder = _stub_dir()
    nuke, rotopaint = StubModule(), StubModule()
    _read_stub(folder / "__init__.pyi", nuke, set())
    _read_stub(folder / "rotopaint.pyi", rotopaint, set())
    # the rotopaint classes point at curvelib/curveknob classes read into other StubModules
    for extra in ("_curvelib.pyi", "_curveknob.pyi"):
        _read_stub(folder / extra, rotopaint, set())
    return {"nuke": nuke, "rotopaint": rotopaint}


def _stub_mro(module: StubModule, name: str) -> List[StubClass]:
    out: List[StubClass] = []
    todo = [name]
    while todo:
        current = todo.pop(0).split(".")[-1]
        cls = module.classes.get(current)
        if cls is None or cls in out:
            continue
        out.append(cls)
        todo.extend(b for b in cls.bases if not b.startswith(("Generic", "Sized", "Iterable")))
    return out


def _check_class(module: StubModule, fake_cls: type, problems: List[str]) -> None:
    name = fake_cls.__name__
    mro = _stub_mro(module, name)
    if not mro:
        problems.append(f"class {name} is not in the stubs")
        return
    stub_names = {c.name for c in mro}
    for base in fake_cls.__mro__[1:]:
        if base is object or base.__name__.startswith("_"):
            continue
        if base.__name__ not in stub_names:
            problems.append(f"fake {name} derives from {base.__name__}, the stub's {name} does not")
    for attr in dir(fake_cls):
        if attr.startswith("_") and attr not in ("__init__", "__getitem__", "__len__", "__iter__", "__call__",
                                                 "__getattr__"):
            continue
        if attr in dir(object) and attr != "__init__":
            continue
        value = inspect.getattr_static(fake_cls, attr)
        stub_member = next((c.members[attr] for c in mro if attr in c.members), "missing")
        if stub_member == "missing":
            if attr == "__init__":
                continue  # the stub class has no constructor of its own: Nuke builds it
            problems.append(f"{name}.{attr} is not in the stubs")
            continue
        if callable(value) and isinstance(stub_member, StubFunction):
            reason = stub_member.accepts(inspect.signature(value))
            if reason:
                problems.append(f"{name}.{attr}: {reason}")


def _check_module(fake: object, names: List[str], module: StubModule) -> List[str]:
    problems: List[str] = []
    for name in names:
        value = getattr(fake, name)
        if inspect.isclass(value):
            _check_class(module, value, problems)
        elif callable(value) and not isinstance(value, fake_nuke.Nodes):
            stub = module.functions.get(name)
            if stub is None:
                problems.append(f"function {name} is not in the stubs")
                continue
            reason = stub.accepts(inspect.signature(value))
            if reason:
                problems.append(f"{name}: {reason}")
        elif name not in module.constants:
            problems.append(f"{name} is not a constant of the stubs")
    return problems


def test_every_name_of_the_fake_nuke_is_in_the_stubs(stubs: Dict[str, StubModule]) -> None:
    assert _check_module(fake_nuke, fake_nuke.__all__, stubs["nuke"]) == []


def test_every_name_of_the_fake_rotopaint_is_in_the_stubs(stubs: Dict[str, StubModule]) -> None:
    assert _check_module(fake_nuke.rotopaint, fake_nuke.rotopaint.__all__, stubs["rotopaint"]) == []


def test_the_fake_keeps_its_helpers_out_of_the_api() -> None:
    public = {n for n in vars(fake_nuke) if not n.startswith("_") and not inspect.ismodule(getattr(fake_nuke, n))}
    imported = {"annotations", "Any", "Callable", "Dict", "Iterator", "List", "Optional", "Sequence", "Tuple",
                "queue", "sys", "threading", "types"}
    # rotopaint classes live at module level too, but are API of nuke.rotopaint
    rotopaint_names = set(fake_nuke.rotopaint.__all__)
    assert public - set(fake_nuke.__all__) - TEST_HELPERS - imported - rotopaint_names == set()


def test_the_checker_catches_names_and_signatures_nuke_does_not_have(stubs: Dict[str, StubModule]) -> None:
    def explode(self: object) -> None: ...

    def set_value(self: object, value: object) -> bool: ...

    def create_node(kind: str) -> None: ...

    def make_coffee() -> None: ...

    # a knob with a method Nuke lacks and a renamed parameter; a renamed and an unknown function
    knob = type("Knob", (), {"explode": explode, "setValue": set_value})
    fake = type("Fake", (), {"Knob": knob, "createNode": staticmethod(create_node),
                             "makeCoffee": staticmethod(make_coffee)})
    problems = "\n".join(_check_module(fake, ["Knob", "createNode", "makeCoffee"], stubs["nuke"]))
    assert "Knob.explode is not in the stubs" in problems
    assert "Knob.setValue: stub takes (val, chan), the fake (value)" in problems
    assert "createNode: stub takes (typ, knobs, inpanel), the fake (kind)" in problems
    assert "function makeCoffee is not in the stubs" in problems


def test_the_fake_refuses_nuke_calls_off_the_main_thread(nuke: object) -> None:
    import threading

    node = fake_nuke.control.make_node("Grade")
    errors: List[BaseException] = []

    def touch() -> None:
        try:
            node.name()
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertion
            errors.append(exc)

    thread = threading.Thread(target=touch)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], fake_nuke.WrongThread)
