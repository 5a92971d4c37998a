"""Read a callgrind dump: instructions by shared object, and by function (self, inclusive).

The format (valgrind's "callgrind format"): ``ob=``/``fn=`` set the current object and
function (names compressed as ``(id) name`` the first time, ``(id)`` after); cost lines
(``position cost``) add to the current function's own cost, except the line right after
``calls=``, which is the inclusive cost of that call and is added to the caller's
inclusive cost only. ``cob=``/``cfn=`` name the callee.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

_NAMED = re.compile(r"^\((\d+)\)(?: (.*))?$")


def _name(table: dict[str, str], value: str) -> str:
    found = _NAMED.match(value)
    if found is None:
        return value
    key, name = found.groups()
    if name is not None:
        table[key] = name
    return table.get(key, key)


def _cost(line: str) -> int:
    parts = line.split()
    return int(parts[1]) if len(parts) > 1 else 0


def parse(path: Path) -> tuple[Counter[str], Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    """(self cost by object, self cost by (object, function), inclusive by (object, function))."""
    objects: dict[str, str] = {}
    functions: dict[str, str] = {}
    by_object: Counter[str] = Counter()
    self_cost: Counter[tuple[str, str]] = Counter()
    inclusive: Counter[tuple[str, str]] = Counter()
    ob = fn = cob = cfn = ""
    after_calls = False
    with path.open(errors="replace") as handle:
        for raw in handle:
            line = raw.rstrip("\n")
            if not line:
                continue
            head = line[0]
            if head.isdigit() or head in "+-*":
                cost = _cost(line)
                if after_calls:
                    after_calls = False
                    if (cob or ob, cfn) != (ob, fn):  # recursion adds nothing inclusive
                        inclusive[(ob, fn)] += cost
                    cob = ""
                else:
                    by_object[ob] += cost
                    self_cost[(ob, fn)] += cost
                    inclusive[(ob, fn)] += cost
                continue
            key, _, value = line.partition("=")
            if key == "ob":
                ob = _name(objects, value)
            elif key == "fn":
                fn = _name(functions, value)
                cob = ""
            elif key == "cob":
                cob = _name(objects, value)
            elif key == "cfn":
                cfn = _name(functions, value)
            elif key == "calls":
                after_calls = True
            elif key in {"fl", "fi", "fe", "cfi", "cfl"}:
                continue
    return by_object, self_cost, inclusive


def short_object(path: str) -> str:
    """``/usr/lib/.../libcrypto.so.3`` -> ``libcrypto``; Python extensions by module."""
    name = path.rsplit("/", 1)[-1]
    name = re.sub(r"\.cpython-\d+.*$", "", name)
    name = re.sub(r"\.so(\.[\d.]+)?$", "", name)
    if "site-packages/" in path:
        top = path.split("site-packages/", 1)[1].split("/", 1)[0]
        if top != name:
            name = f"{top}/{name}"
    return name or path
