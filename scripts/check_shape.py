"""Check the shape of the source: no import cycles, small modules and functions, docstrings.

Over every module under ``packages/*/src``:

- no import cycle between modules; an import anywhere in a module counts (inside
  functions too), except under ``if TYPE_CHECKING:``;
- no module over 500 lines and no function over 80 lines;
- every module starts with a docstring that names its one job.

A known breach is listed, with its reason, in ``scripts/shape_exceptions.txt`` (one per
line: ``<path>[::<function>]  # reason``); the check fails on a breach not listed there and
on a listed one that no longer breaches, so the list only ever shrinks.

Usage: ``python scripts/check_shape.py [REPO_ROOT]``; exits 1 listing every finding.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def _modules(root: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(root.glob("packages/*/src/saasfw/**/*.py")):
        src = next(parent for parent in path.parents if parent.name == "src")
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module name imported anywhere in ``tree``, TYPE_CHECKING blocks left out."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - node.level + 1]
                base = ".".join([*package, base] if base else package)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_bytes(), filename=str(path))
        targets = set()
        for imported in _imports(tree, name, path.name == "__init__.py"):
            if imported in modules and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        components.append(sorted(component))
    return components


def breaches(root: Path) -> dict[str, str]:
    """Every breach as ``{key: message}``; the key is what the exceptions file lists."""
    modules = _modules(root)
    found: dict[str, str] = {}
    for cycle in _cycles(_graph(modules)):
        key = "cycle:" + ",".join(cycle)
        found[key] = "import cycle between " + ", ".join(cycle)
    for name, path in modules.items():
        rel = path.relative_to(root).as_posix()
        text = path.read_text("utf-8")
        lines = text.count("\n") + 1
        if lines > MAX_MODULE_LINES:
            found[rel] = f"{lines} lines (at most {MAX_MODULE_LINES})"
        tree = ast.parse(text, filename=rel)
        if not ast.get_docstring(tree):
            found[f"{rel}::<docstring>"] = f"module {name} has no docstring naming its job"
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found[f"{rel}::{node.name}"] = (
                        f"function {node.name} at line {node.lineno} has {length} lines "
                        f"(at most {MAX_FUNCTION_LINES})"
                    )
    return found


def listed_exceptions(root: Path) -> dict[str, str]:
    listing = root / "scripts" / "shape_exceptions.txt"
    exceptions: dict[str, str] = {}
    if listing.is_file():
        for raw in listing.read_text("utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, _, reason = line.partition("#")
            exceptions[key.strip()] = reason.strip()
    return exceptions


def main(argv: list[str]) -> int:
    root = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent
    found = breaches(root)
    exceptions = listed_exceptions(root)
    problems = [
        f"{key}: {message}" for key, message in sorted(found.items()) if key not in exceptions
    ]
    problems += [
        f"{key}: listed in scripts/shape_exceptions.txt but no longer a breach; remove the line"
        for key in sorted(exceptions)
        if key not in found
    ]
    problems += [
        f"{key}: listed without a reason" for key, why in sorted(exceptions.items()) if not why
    ]
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"shape: {len(problems)} finding(s)", file=sys.stderr)
        return 1
    print(f"shape: no cycles, modules and functions within bounds ({len(exceptions)} listed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
