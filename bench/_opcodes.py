"""Where a Python request path spends its bytecodes: per package and per function, inclusive.

Callgrind counts machine instructions but sees Python code only as the interpreter's own C
functions, so it cannot say which Python package they ran for. This tracer counts the
bytecode instructions each Python function executes (``sys.settrace`` with opcode
events: deterministic, but blind to work done in C, such as HMAC or JSON encoding, and
to other threads), and attributes them exclusively (the function running the opcode) and
inclusively (every package and function on the stack, each counted once however deep it
recurses). Coroutines count per activation: a suspended frame is off the stack.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from types import FrameType
from typing import Any

_SAASFW = re.compile(r"/packages/saasfw[^/]*/src/saasfw/(\w+)")
_STDLIB = re.compile(r"/lib/python3\.\d+/(\w+)")


def package(filename: str) -> str:
    """A readable package name for a source file."""
    if "/site-packages/" in filename:
        top = filename.split("/site-packages/", 1)[1].split("/", 1)[0]
        return top.removesuffix(".py")
    found = _SAASFW.search(filename)
    if found:
        return f"saasfw.{found.group(1)}"
    if "/bench/" in filename:
        return "bench driver"
    found = _STDLIB.search(filename)
    if found:
        return f"stdlib {found.group(1).removesuffix('.py')}"
    return "stdlib" if filename.startswith("<frozen") else filename


class OpcodeCounter:
    """``with OpcodeCounter() as c: ...`` then ``c.packages()`` / ``c.functions()``."""

    def __init__(self) -> None:
        self.ops = 0
        self.self_ops: Counter[str] = Counter()
        self.pkg_self: Counter[str] = Counter()
        self.fn_incl: Counter[str] = Counter()
        self.pkg_incl: Counter[str] = Counter()
        self._fn_depth: Counter[str] = Counter()
        self._pkg_depth: Counter[str] = Counter()
        self._fn_entry: dict[str, int] = {}
        self._pkg_entry: dict[str, int] = {}
        self._names: dict[Any, tuple[str, str]] = {}

    def _name(self, frame: FrameType) -> tuple[str, str]:
        code = frame.f_code
        found = self._names.get(code)
        if found is None:
            pkg = package(code.co_filename)
            found = (f"{pkg}: {code.co_qualname}", pkg)
            self._names[code] = found
        return found

    def _enter(self, fn: str, pkg: str) -> None:
        if self._fn_depth[fn] == 0:
            self._fn_entry[fn] = self.ops
        self._fn_depth[fn] += 1
        if self._pkg_depth[pkg] == 0:
            self._pkg_entry[pkg] = self.ops
        self._pkg_depth[pkg] += 1

    def _leave(self, fn: str, pkg: str) -> None:
        self._fn_depth[fn] -= 1
        if self._fn_depth[fn] == 0:
            self.fn_incl[fn] += self.ops - self._fn_entry[fn]
        self._pkg_depth[pkg] -= 1
        if self._pkg_depth[pkg] == 0:
            self.pkg_incl[pkg] += self.ops - self._pkg_entry[pkg]

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event != "call":
            return None
        fn, pkg = self._name(frame)
        self._enter(fn, pkg)
        frame.f_trace_opcodes = True
        return self._local

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            self.ops += 1
            fn, pkg = self._name(frame)
            self.self_ops[fn] += 1
            self.pkg_self[pkg] += 1
        elif event == "return":
            self._leave(*self._name(frame))
        return self._local

    def __enter__(self) -> OpcodeCounter:
        sys.settrace(self._global)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(None)
        # Frames still on the stack (the caller of the traced block) close at the end.
        for fn, depth in list(self._fn_depth.items()):
            if depth > 0:
                self.fn_incl[fn] += self.ops - self._fn_entry[fn]
        for pkg, depth in list(self._pkg_depth.items()):
            if depth > 0:
                self.pkg_incl[pkg] += self.ops - self._pkg_entry[pkg]

    def summary(self, requests: int, top: int = 25) -> dict[str, Any]:
        per = float(requests)
        return {
            "opcodes_per_request": self.ops / per,
            "packages": [
                {"package": pkg, "inclusive": incl / per, "self": self.pkg_self[pkg] / per}
                for pkg, incl in self.pkg_incl.most_common()
            ],
            "functions": [
                {"function": fn, "inclusive": incl / per, "self": self.self_ops[fn] / per}
                for fn, incl in self.fn_incl.most_common(top)
            ],
        }
