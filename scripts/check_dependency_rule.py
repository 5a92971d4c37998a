"""Enforce the dependency rule: concern packages import only themselves and saasfw-core.

Walks every Python file of each concern package (``src`` and ``tests``) with ``ast``, so
imports inside functions, ``TYPE_CHECKING`` blocks and ``importlib.import_module("...")`` /
``__import__("...")`` calls with a literal name are all seen. The umbrella (``saasfw.app``)
is the only place allowed to import several concern packages; ``saasfw.core`` imports no
concern at all, so every concern still installs and works with core alone.

Usage: ``python scripts/check_dependency_rule.py [REPO_ROOT]``; exits 1 listing every breach.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

CONCERNS = ("config", "observability", "security", "db", "audit", "k8s", "messaging")
# saasfw-core is checked like a concern: it may import none of them.
CHECKED = (*CONCERNS, "core")


def _imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            # `from saasfw import db` names the sibling in the alias, not the module.
            if node.module == "saasfw":
                for alias in node.names:
                    yield node.lineno, f"saasfw.{alias.name}"
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                name in {"import_module", "__import__", "find_spec"}
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                yield node.lineno, first.value


def _concern_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "saasfw" and parts[1] in CONCERNS:
        return parts[1]
    return None


def find_breaches(root: Path) -> list[str]:
    """Return one human-readable line per forbidden import under ``root/packages``."""
    breaches: list[str] = []
    for concern in CHECKED:
        package_dir = root / "packages" / f"saasfw-{concern}"
        if not package_dir.is_dir():
            continue
        for path in sorted(package_dir.rglob("*.py")):
            if ".venv" in path.parts:
                continue
            try:
                tree = ast.parse(path.read_bytes(), filename=str(path))
            except SyntaxError as exc:
                breaches.append(f"{path.relative_to(root)}:{exc.lineno}: cannot parse: {exc.msg}")
                continue
            for lineno, module in _imported_modules(tree):
                other = _concern_of(module)
                if other is not None and other != concern:
                    breaches.append(
                        f"{path.relative_to(root)}:{lineno}: saasfw.{concern} imports {module}; "
                        f"concern packages import only themselves and saasfw.core (declare a "
                        f"port in saasfw.{concern}, or in saasfw.core when several packages "
                        f"share it, and let saasfw.app wire it)"
                    )
    return breaches


PROBLEM_MEDIA_TYPE = "application/" + "problem+json"  # split so this file does not match


def find_problem_writers(root: Path) -> list[str]:
    """Sources outside saasfw-core that name the problem media type (so write problems).

    saasfw-core holds the one RFC 9457 writer; a second writer is how three dialects of
    problem bodies came about. Tests may check the media type; sources may not write it.
    """
    found: list[str] = []
    for path in sorted((root / "packages").glob("*/src/**/*")):
        if not path.is_file() or "saasfw-core" in path.parts or ".venv" in path.parts:
            continue
        try:
            text = path.read_text("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        for lineno, line in enumerate(text.splitlines(), start=1):
            if PROBLEM_MEDIA_TYPE in line:
                found.append(
                    f"{path.relative_to(root)}:{lineno}: names {PROBLEM_MEDIA_TYPE}; write "
                    f"problems with saasfw.core (send_problem, problem_bytes, "
                    f"PROBLEM_CONTENT_TYPE)"
                )
    return found


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    breaches = find_breaches(root) + find_problem_writers(root)
    for line in breaches:
        print(line, file=sys.stderr)
    if breaches:
        print(f"dependency rule: {len(breaches)} breach(es)", file=sys.stderr)
        return 1
    print(
        "dependency rule: concern packages import only themselves and saasfw.core; "
        "only saasfw.core writes problem responses"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
