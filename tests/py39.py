"""Static checks that code which runs inside the hosts (the bridge client, the Nuke plug-in) stays
Python 3.9: parsed with the 3.9 grammar, and no 3.10+ feature evaluated at run time."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, List, Optional, Set, Tuple

RUNTIME_TYPE_NAMES = {"int", "str", "float", "bytes", "bool", "list", "dict", "tuple", "set", "type", "object"}


def parse(path: Path) -> Tuple[Optional[ast.Module], List[str]]:
    """The module's tree with the 3.9 grammar, or the syntax problem."""
    try:
        return ast.parse(path.read_text(), filename=str(path), feature_version=(3, 9)), []
    except SyntaxError as exc:
        return None, [f"{path.name}:{exc.lineno}: not Python 3.9 syntax: {exc.msg}"]


def has_future_annotations(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.ImportFrom) and n.module == "__future__" and
               any(a.name == "annotations" for a in n.names) for n in tree.body)


def absolute_imports(tree: ast.Module, name: str) -> Iterator[Tuple[ast.stmt, str, str, str]]:
    """Every absolute import: (statement, "file:line", dotted module name, its top-level package)."""
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            continue
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        for module in names:
            yield node, f"{name}:{node.lineno}", module, module.split(".")[0]


def annotation_nodes(tree: ast.AST) -> Set[int]:
    """ids of every node inside an annotation (never evaluated with `from __future__ import annotations`)."""
    inside: Set[int] = set()
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            annotations += [a.annotation for a in args.args + args.kwonlyargs + args.posonlyargs if a.annotation]
            annotations += [a.annotation for a in (args.vararg, args.kwarg) if a is not None and a.annotation]
            if node.returns is not None:
                annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for annotation in annotations:
            inside.update(id(n) for n in ast.walk(annotation))
    return inside


def runtime_problems(tree: ast.AST, name: str) -> List[str]:
    """3.10+ features evaluated at run time: `X | Y` unions, `list[int]`, zip(strict=), dataclass(slots=...)."""
    annotations = annotation_nodes(tree)
    problems = []
    for node in ast.walk(tree):
        where = f"{name}:{getattr(node, 'lineno', '?')}"
        if id(node) in annotations:
            continue
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            sides = (node.left, node.right)
            if any((isinstance(s, ast.Constant) and s.value is None) or (isinstance(s, ast.Name) and s.id in
                   RUNTIME_TYPE_NAMES) or isinstance(s, ast.Subscript) for s in sides):
                problems.append(f"{where}: `X | Y` type union evaluated at run time (3.10+)")
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            keywords = {k.arg for k in node.keywords}
            if called == "zip" and "strict" in keywords:
                problems.append(f"{where}: zip(strict=) is 3.10+")
            if called == "dataclass" and keywords & {"slots", "kw_only", "match_args"}:
                problems.append(f"{where}: dataclass({', '.join(sorted(k for k in keywords if k))}) is 3.10+")
            if called in ("pairwise", "aiter", "anext", "bit_count"):
                problems.append(f"{where}: {called} is 3.10+")
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) \
                and node.value.id in ("list", "dict", "tuple", "set", "type"):
            problems.append(f"{where}: {node.value.id}[...] evaluated at run time (3.9 typing: use typing.List...)")
    return problems
