"""A strict YAML reader that keeps the line of every key and reports every problem.

PyYAML's node graph is composed (no Python objects are built, so no tag can execute code),
then turned into plain data here: only the standard scalar types, mappings and sequences
are accepted; duplicate keys, other tags, unset ``${VAR}``s and malformed expressions each
become a Problem with ``file:line`` while the rest of the file is still read, so one load
reports everything at once. Keys are taken as written (``on:`` is the string ``"on"``, not
YAML 1.1's ``True``). Merge keys (``<<: *defaults``) are supported; alias expansion is
bounded so a "billion laughs" document is refused instead of exhausting memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from saasfw.config._errors import Problem
from saasfw.config._expand import ExpansionProblem, Lookup, expand

Path_ = tuple[str | int, ...]

_YAML = "tag:yaml.org,2002:"
_STR = _YAML + "str"
_MAP = _YAML + "map"
_SEQ = _YAML + "seq"
_MERGE = _YAML + "merge"
_SAFE_SCALARS = frozenset(
    _YAML + name for name in ("str", "int", "float", "bool", "null", "timestamp")
)
MAX_NODES = 100_000
MAX_DEPTH = 64

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Skip:
    """Marker for a value that was reported as a problem and is left out of the data."""


SKIP = _Skip()


@dataclass
class YamlDocument:
    """The data of one YAML file, the line of each key path and the problems found."""

    data: dict[str, Any] = field(default_factory=dict)
    lines: dict[Path_, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    reported: set[Path_] = field(default_factory=set)


def _short_tag(tag: str) -> str:
    return "!!" + tag[len(_YAML) :] if tag.startswith(_YAML) else tag


def dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class _Builder:
    def __init__(self, display: str, lookup: Lookup | None, doc: YamlDocument) -> None:
        self.display = display
        self.lookup = lookup
        self.doc = doc
        self.nodes = 0
        self.scalars = SafeConstructor()

    def problem(self, node: Node, path: Path_, message: str, kind: str) -> None:
        self.doc.problems.append(
            Problem(dotted(path), f"{self.display}:{node.start_mark.line + 1}", message, kind)
        )
        if path:
            self.doc.reported.add(path)

    def build(self, node: Node, path: Path_, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooLarge(f"expands to more than {MAX_NODES} YAML nodes (alias bomb?)")
        if depth > MAX_DEPTH:
            raise _TooLarge(f"is nested deeper than {MAX_DEPTH} levels (recursive alias?)")
        if isinstance(node, ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, SequenceNode):
            if node.tag != _SEQ:
                return self.bad_tag(node, path)
            items: list[Any] = []
            for index, child in enumerate(node.value):
                self.doc.lines.setdefault((*path, index), child.start_mark.line + 1)
                items.append(self.build(child, (*path, index), depth + 1))
            if any(item is SKIP for item in items):
                # Dropping one item would shift the others' indexes in later error reports.
                self.doc.reported.add(path)
                return SKIP
            return items
        if isinstance(node, MappingNode):
            if node.tag != _MAP:
                return self.bad_tag(node, path)
            return self.mapping(node, path, depth)
        return self.bad_tag(node, path)  # pragma: no cover - PyYAML has no other node kinds

    def bad_tag(self, node: Node, path: Path_) -> _Skip:
        self.problem(
            node,
            path,
            f"YAML tag '{_short_tag(node.tag)}' is not allowed: only plain YAML values "
            "(strings, numbers, booleans, null, timestamps, lists, mappings) are accepted",
            "unsafe_tag",
        )
        return SKIP

    def scalar(self, node: ScalarNode, path: Path_) -> Any:
        if node.tag not in _SAFE_SCALARS:
            return self.bad_tag(node, path)
        if node.tag == _STR:
            if self.lookup is None:
                return node.value
            try:
                return expand(node.value, self.lookup)
            except ExpansionProblem as exc:
                self.problem(node, path, exc.message, exc.kind)
                return SKIP
        try:
            return self.scalars.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError):
            self.problem(node, path, f"invalid {_short_tag(node.tag)} value", "yaml")
            return SKIP

    def mapping(self, node: MappingNode, path: Path_, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        first_line: dict[str, int] = {}
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                merges.append(value_node)
                continue
            if not isinstance(key_node, ScalarNode):
                self.problem(key_node, path, "mapping keys must be plain scalars", "yaml")
                continue
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            child = (*path, key)
            if key in first_line:
                self.problem(
                    key_node,
                    child,
                    f"duplicate key '{key}' (first defined at line {first_line[key]})",
                    "duplicate_key",
                )
                continue
            first_line[key] = line
            self.doc.lines[child] = line
            value = self.build(value_node, child, depth + 1)
            if value is not SKIP:
                result[key] = value
        explicit = dict(first_line)
        for merge_node in merges:
            sources = merge_node.value if isinstance(merge_node, SequenceNode) else [merge_node]
            for source in sources:
                if not isinstance(source, MappingNode):
                    self.problem(source, path, "'<<' merge needs a mapping or list of them", "yaml")
                    continue
                merged = self.build(source, path, depth + 1)
                if isinstance(merged, dict):
                    for key, value in merged.items():
                        if key not in first_line:
                            first_line[key] = source.start_mark.line + 1
                            result[key] = value
        for key, line in explicit.items():
            self.doc.lines[(*path, key)] = line
        return result


class _TooLarge(Exception):
    pass


_OPENING = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken)
_FLOW_OPENING = (yaml.FlowMappingStartToken, yaml.FlowSequenceStartToken)
_CLOSING = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def _nesting_depth(text: str) -> int:
    """The deepest collection nesting, from the token stream (scanning does not recurse).

    libyaml 0.2.6 (bundled with PyYAML 6.0.4) refuses nesting past its own limit while it
    scans ahead, before this loop sees the 65th opening token; that refusal is the same
    finding as ours, so it is reported as ours rather than as a syntax error.
    """
    depth = deepest = 0
    try:
        for token in yaml.scan(text, Loader=_Loader):
            if isinstance(token, (*_OPENING, *_FLOW_OPENING)):
                depth += 1
                if depth > deepest:
                    deepest = depth
                    if deepest > MAX_DEPTH:
                        break
            elif isinstance(token, _CLOSING):
                depth -= 1
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" in (exc.problem or ""):
            return MAX_DEPTH + 1
        raise
    return deepest


def parse_yaml(
    text: str, display: str, lookup: Lookup | None, *, require_mapping: bool = True
) -> YamlDocument:
    """Parse ``text`` (the content of ``display``) into a YamlDocument; never raises."""
    doc = YamlDocument()
    if not text.strip():
        doc.problems.append(
            Problem(
                "", display, "file is empty: write '{}' for an intentionally empty layer", "file"
            )
        )
        return doc
    try:
        depth = _nesting_depth(text)
        if depth > MAX_DEPTH:
            # libyaml's composer recurses in C: a deep enough document crashes the process.
            doc.problems.append(
                Problem("", display, f"document is nested deeper than {MAX_DEPTH} levels", "yaml")
            )
            return doc
        nodes: list[Node | None] = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{display}:{mark.line + 1}" if mark is not None else display
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        doc.problems.append(Problem("", where, f"YAML syntax error: {reason}", "yaml"))
        return doc
    except yaml.YAMLError as exc:
        doc.problems.append(Problem("", display, f"YAML error: {type(exc).__name__}", "yaml"))
        return doc
    if not nodes:
        nodes = [None]  # only comments: reported as "holds no settings" below
    if len(nodes) != 1:
        doc.problems.append(
            Problem("", display, f"expected one YAML document, found {len(nodes)}", "yaml")
        )
        return doc
    root: Node | None = nodes[0]
    if root is None or (isinstance(root, ScalarNode) and root.tag == _YAML + "null"):
        doc.problems.append(
            Problem("", display, "file holds no settings: write '{}' for an empty layer", "file")
        )
        return doc
    if require_mapping and not isinstance(root, MappingNode):
        doc.problems.append(
            Problem(
                "",
                f"{display}:{root.start_mark.line + 1}",
                "the top level must be a mapping of setting names to values",
                "yaml",
            )
        )
        return doc
    builder = _Builder(display, lookup, doc)
    try:
        value = builder.build(root, (), 0)
    except _TooLarge as exc:
        doc.problems.append(Problem("", display, f"document {exc}", "yaml"))
        doc.data = {}
        return doc
    except RecursionError:
        doc.problems.append(Problem("", display, "document is nested too deeply", "yaml"))
        doc.data = {}
        return doc
    if isinstance(value, dict):
        doc.data = value
    return doc
