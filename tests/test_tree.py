"""The tree shows the pipeline: each stage a package, and no private name crosses a package boundary."""

from __future__ import annotations

import ast
from pathlib import Path

import rnnviz

ROOT = Path(rnnviz.__file__).parent
STAGES = ("model", "recording", "store", "analysis", "views")
OUTSIDE = [ROOT.parent / d for d in ("bench", "scripts", "apps")]


def package_of(path: Path) -> str:
    """The stage a module belongs to ("" for the top-level modules: the API, the CLI and the basics)."""
    parts = path.relative_to(ROOT).parts
    return parts[0] if len(parts) > 1 else ""


def private_names(tree: ast.AST) -> set[str]:
    """Names starting with one underscore that a module defines: functions, classes, methods, constants,
    and attributes it assigns on ``self``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def modules(folder: Path):
    return [(p, ast.parse(p.read_text(encoding="utf-8"))) for p in sorted(folder.rglob("*.py"))]


def test_every_stage_is_a_package_with_a_docstring():
    for stage in STAGES:
        init = ROOT / stage / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc and len(doc.split()) >= 20, f"{stage}/__init__.py needs a paragraph saying what the stage does"
    top = sorted(p.stem for p in ROOT.glob("*.py"))
    assert top == ["__init__", "__main__", "allocator", "cli", "devices", "errors", "fsutil", "memory", "stopping",
                   "threads"], top


def test_no_private_name_crosses_a_package_boundary():
    ours = modules(ROOT)
    defined: dict[str, set[str]] = {}
    for path, tree in ours:
        defined.setdefault(package_of(path), set()).update(private_names(tree))
    crossings = []
    others = [(p, t, None) for folder in OUTSIDE for p, t in modules(folder)]
    for path, tree, pkg in [(p, t, package_of(p)) for p, t in ours] + others:
        own = defined.get(pkg, set()) | private_names(tree)
        foreign = set().union(*(names for stage, names in defined.items() if stage != pkg)) - own
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("rnnviz"):
                parts = node.module.split(".")
                target = parts[1] if len(parts) > 2 else ""
                crossings += [f"{path.name}: imports {a.name} from {node.module}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__") and target != pkg]
            elif isinstance(node, ast.Attribute) and node.attr in foreign:
                crossings.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert not crossings, crossings
