"""``saasfw new NAME``: a new service that passes its own tests right after generation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

from saasfw.app._errors import AppError

__all__ = ["ScaffoldError", "generate"]

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}[a-z0-9]$")
_TEMPLATES = Path(__file__).parent / "_templates"


class ScaffoldError(AppError):
    """The service cannot be generated (bad name, target exists)."""


@dataclass(frozen=True, slots=True)
class _Names:
    service: str  # orders-api: DNS label, config directory, console script
    package: str  # orders_api: Python package
    title: str  # Orders Api


def _names(name: str) -> _Names:
    if not _NAME.fullmatch(name) or "--" in name:
        raise ScaffoldError(
            f"{name!r} is not a service name: use 2-42 lowercase letters, digits and single "
            "'-', starting with a letter (it becomes a DNS label and a Python package)"
        )
    package = name.replace("-", "_")
    return _Names(name, package, " ".join(p.capitalize() for p in name.split("-")))


def _render(text: str, names: _Names) -> str:
    return Template(text).substitute(
        service=names.service, package=names.package, title=names.title
    )


def generate(name: str, directory: Path, *, image: str | None = None) -> list[Path]:
    """Write the service ``name`` into ``directory/name``; return the files written.

    The project: settings per environment (``config/<name>/*.yaml``), the app module, a
    first route with its tests, an Alembic setup with a first revision, and Kubernetes
    manifests (a base and development/production overlays) rendered by saasfw.k8s.
    """
    names = _names(name)
    root = directory / names.service
    if root.exists():
        raise ScaffoldError(f"{root} already exists; choose another name or directory")
    written: list[Path] = []
    for template in sorted(_TEMPLATES.rglob("*.tmpl")):
        relative = template.relative_to(_TEMPLATES).as_posix()[: -len(".tmpl")]
        relative = relative.replace("__package__", names.package).replace(
            "__service__", names.service
        )
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_render(template.read_text("utf-8"), names), encoding="utf-8")
        written.append(target)
    written.extend(_manifests(names, root, image or f"{names.service}:0.1.0"))
    return written


def _manifests(names: _Names, root: Path, image: str) -> list[Path]:
    from saasfw.k8s import ManifestSpec, render, write_tree

    spec = ManifestSpec(
        service=names.service,
        image=image,
        config={"SAASFW_ENV": "production", "SAASFW_DATA_DIR": "/data"},
        secrets=(f"{names.service}-secrets",),
    )
    return write_tree(render(spec, ["development", "production"]), root / "deploy" / "k8s")
