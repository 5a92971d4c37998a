"""The state of one load: values merged layer over layer, each leaf keeping its source.

Every layer writes into one plain dict through ``LoadState``; a leaf remembers the layer
(and for YAML the line) it came from, so problems and ``LoadedSettings.sources`` can name
it. The problems of every layer collect here too, to be reported together.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from saasfw.config._errors import Problem, Redactor
from saasfw.config._model import is_complex, is_secret

Path_ = tuple[str | int, ...]


def dotted(path: Path_) -> str:
    """``("db", "hosts", 0)`` -> ``db.hosts[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


@dataclass(frozen=True, slots=True)
class Source:
    """A layer a value came from; for a YAML file, the line of every path in it."""

    label: str
    lines: Mapping[Path_, int] | None = None

    def describe(self, path: Path_) -> str:
        if self.lines is not None:
            for size in range(len(path), 0, -1):
                line = self.lines.get(path[:size])
                if line is not None:
                    return f"{self.label}:{line}"
        return self.label


class LoadState:
    """The state of one load."""

    def __init__(self, model: type[BaseModel], environ: Mapping[str, str], env: str) -> None:
        self.model = model
        self.environ = environ
        self.env = env
        self.data: dict[str, Any] = {}
        self.sources: dict[Path_, Source] = {}
        self.problems: list[Problem] = []
        self.reported: set[Path_] = set()
        self.redact = Redactor()
        self.dotenv: dict[str, str] = {}
        self.pointers: dict[Path_, tuple[str, str]] = {}
        self.unknown: list[tuple[str, str]] = []  # (name, source) of unknown top-level names

    # -- merging ----------------------------------------------------------------------------

    def problem(self, path: Path_, source: str, message: str, kind: str) -> None:
        self.problems.append(Problem(dotted(path), source, message, kind))
        if path:  # a whole-file problem must not hide the other layers' errors
            self.reported.add(path)

    def merge(self, patch: Mapping[str, Any], source: Source) -> None:
        self._merge(self.data, patch, source, ())

    def _merge(
        self, target: dict[str, Any], patch: Mapping[str, Any], source: Source, path: Path_
    ) -> None:
        for key, value in patch.items():
            child = (*path, key)
            if isinstance(value, dict):
                existing = target.get(key)
                if not isinstance(existing, dict):
                    self._drop_sources(child)
                    existing = target[key] = {}
                    if not value:
                        self.sources[child] = source
                self._merge(existing, value, source, child)
            else:
                self._drop_sources(child)
                target[key] = value
                self.sources[child] = source

    def _drop_sources(self, prefix: Path_) -> None:
        size = len(prefix)
        for key in [k for k in self.sources if k[:size] == prefix]:
            del self.sources[key]

    def set_value(self, path: Path_, value: Any, source: Source) -> None:
        patch: Any = value
        for part in reversed(path):
            patch = {part: patch}
        self.merge(patch, source)

    def assign(self, path: Path_, annotation: Any, value: str, source: Source) -> None:
        """Set a string from a variable or secret file; JSON for lists, maps and sections."""
        parsed: Any = value
        if is_secret(annotation):
            self.redact.add(value)
        if is_complex(annotation):
            import json

            try:
                parsed = json.loads(value)
            except ValueError:
                self.problem(
                    path,
                    source.label,
                    "expected a JSON value (this setting is a list, mapping or section)",
                    "invalid_json",
                )
                return
        self.set_value(path, parsed, source)

    def lookup(self, name: str) -> str | None:
        """Variables for ``${VAR}``: the process environment, then the ``.env`` file."""
        value = self.environ.get(name)
        return value if value is not None else self.dotenv.get(name)

    # -- where values came from ---------------------------------------------------------------

    def source_of(self, key: Path_) -> str:
        for size in range(len(key), 0, -1):
            source = self.sources.get(key[:size])
            if source is not None:
                return source.describe(key)
        size = len(key)
        for path, source in self.sources.items():
            if path[:size] == key:  # a section whose values came from one layer or more
                return source.describe(key)
        return "default"

    def leaf_sources(self, settings: BaseModel) -> dict[str, str]:
        out: dict[str, str] = {}
        self._walk_sources(settings, (), out)
        return out

    def _walk_sources(self, value: Any, path: Path_, out: dict[str, str]) -> None:
        if isinstance(value, BaseModel):
            for name, info in type(value).model_fields.items():
                key = info.validation_alias if isinstance(info.validation_alias, str) else None
                self._walk_sources(getattr(value, name), (*path, key or info.alias or name), out)
            return
        size = len(path)
        if isinstance(value, dict) and any(
            len(k) > size and k[:size] == path for k in self.sources
        ):
            for key, item in value.items():
                self._walk_sources(item, (*path, str(key)), out)
            return
        source = self.sources.get(path)
        out[dotted(path)] = source.describe(path) if source is not None else "default"
