"""Every package face (``saasfw/<package>/__init__.py``) has the one shape (issue 15).

Its docstring; imports (the cheap names); costly names in ``_LAZY`` (and old names in
``_DEPRECATED``) with their imports under ``TYPE_CHECKING``, loaded by saasfw.core's
``lazy_exports``; and ``__all__``. No other code, and ``__all__`` is exactly what the face
imports and lazily exports.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FACES = sorted(
    p for p in ROOT.glob("packages/*/src/saasfw/*/__init__.py") if p.parent.name != "testing"
)


def _ids() -> list[str]:
    return [f"saasfw.{p.parent.name}" for p in FACES]


def _statements(tree: ast.Module) -> list[str]:
    shapes = []
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            shapes.append("docstring")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            shapes.append("import")
        elif isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            shapes.append("type-checking imports")
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            target = node.targets[0] if isinstance(node, ast.Assign) else node.target
            shapes.append(ast.unparse(target))
        else:
            shapes.append(f"other: {ast.unparse(node).splitlines()[0]}")
    return shapes


@pytest.mark.parametrize("face", FACES, ids=_ids())
def test_the_face_has_the_one_shape(face: Path) -> None:
    tree = ast.parse(face.read_text("utf-8"))
    shapes = _statements(tree)
    assert shapes[0] == "docstring"
    allowed = {"docstring", "import", "type-checking imports", "_LAZY", "_DEPRECATED", "__all__"}
    allowed.add("(__getattr__, __dir__)")
    assert set(shapes) <= allowed, [s for s in shapes if s not in allowed]
    if "_LAZY" in shapes:
        assert "(__getattr__, __dir__)" in shapes


@pytest.mark.parametrize("face", FACES, ids=_ids())
def test_all_is_what_the_face_exports(face: Path) -> None:
    module = importlib.import_module(f"saasfw.{face.parent.name}")
    exported = list(module.__all__)
    tree = ast.parse(face.read_text("utf-8"))
    imported = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("saasfw.")
        for alias in node.names
    }
    lazy = set(getattr(module, "_LAZY", {}))
    deprecated = set(getattr(module, "_DEPRECATED", {}))
    own = (imported | lazy | deprecated) - {"lazy_exports"}
    if face.parent.name == "core":
        own.add("lazy_exports")
    assert set(exported) == own
    for name in set(exported) - deprecated:  # a deprecated name warns (an error here)
        assert getattr(module, name) is not None, name
