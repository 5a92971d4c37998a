"""``saasfw new NAME``: a new service that passes its own tests right after generation."""

from __future__ import annotations

import re
import shutil
import zipfile
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path
from string import Template

from saasfw.app._errors import AppError

__all__ = ["ScaffoldError", "generate", "local_wheels", "new_project_root"]

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


_WHEEL = re.compile(r"^(saasfw(?:_[a-z0-9]+)*)-([^-]+)-.*\.whl$")
_REQUIRES = re.compile(r"^(saasfw(?:[-_.][a-z0-9]+)*)\s*(?:\[|[<>=!~;]|$)")
_LOCAL_NOTE = """
saasfw comes from the wheels in `wheels/` and from nowhere else: `pyproject.toml` pins
every saasfw distribution to its wheel there (`[tool.uv.sources]` and the `saasfw-local`
group), so no upload to a public index under a saasfw name can replace them. Commit
`wheels/` and `uv.lock`. Once saasfw is published on your index, delete both tables and
the directory, and run `uv lock`.
"""


def _distribution(wheel: Path) -> str | None:
    match = _WHEEL.match(wheel.name)
    return match.group(1).replace("_", "-") if match else None


def _required_by(wheel: Path) -> set[str]:
    """The saasfw distributions a wheel's metadata requires (under any extra too)."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        headers = HeaderParser().parsestr(archive.read(metadata).decode("utf-8"))
    found = set()
    for requirement in headers.get_all("Requires-Dist") or []:
        match = _REQUIRES.match(requirement.strip().lower())
        if match:
            found.add(re.sub(r"[-_.]+", "-", match.group(1)))
    return found


def local_wheels(directory: Path) -> dict[str, Path]:
    """The saasfw wheel of each distribution in ``directory``, checked complete.

    Raises:
        ScaffoldError: no umbrella wheel, two wheels of one distribution, or a saasfw
            distribution the umbrella requires is missing (uv would otherwise look it up
            on a public index, where anyone can upload under that name).
    """
    wheels: dict[str, Path] = {}
    for wheel in sorted(directory.glob("saasfw*.whl")):
        name = _distribution(wheel)
        if name is None:
            continue
        if name in wheels:
            raise ScaffoldError(
                f"{directory} holds two wheels of {name} ({wheels[name].name}, {wheel.name}); "
                "keep one build per distribution"
            )
        wheels[name] = wheel
    if "saasfw" not in wheels:
        raise ScaffoldError(
            f"no saasfw wheel in {directory}: build them in a saasfw checkout with "
            f"'uv build --all-packages --no-sources --wheel --out-dir {directory}'"
        )
    required = set().union(*(_required_by(wheel) for wheel in wheels.values()))
    missing = sorted(required - set(wheels))
    if missing:
        raise ScaffoldError(
            f"{directory} lacks the wheels of {', '.join(missing)}, which saasfw needs; "
            "build every package (uv build --all-packages --no-sources --wheel)"
        )
    return wheels


def _local_sources(wheels: dict[str, Path]) -> tuple[str, str]:
    """The dependency group and uv sources that take every saasfw name from ./wheels only.

    Path sources, one per wheel, are kept relative in ``uv.lock`` (an index URL is made
    absolute there), so the lock still holds in a clone, in CI and in the image build.
    """
    listed = ", ".join(f'"{n}"' for n in sorted(wheels) if n != "saasfw")
    group = (
        "# saasfw is not on a public index yet: every saasfw distribution comes from ./wheels\n"
        "# and from nowhere else ([tool.uv.sources] below). uv applies sources only to names\n"
        "# the project itself lists, so this group lists saasfw's own dependencies too.\n"
        f"saasfw-local = [{listed}]\n"
    )
    pins = "".join(
        f'{name} = {{ path = "wheels/{wheels[name].name}" }}\n' for name in sorted(wheels)
    )
    return group, f"\n[tool.uv.sources]\n{pins}"


def new_project_root(name: str, directory: Path) -> Path:
    """Where ``generate`` would write the service ``name``; refused when taken or invalid."""
    root = directory / _names(name).service
    if root.exists():
        raise ScaffoldError(f"{root} already exists; choose another name or directory")
    return root


def _render(text: str, names: _Names, extra: dict[str, str]) -> str:
    return Template(text).substitute(
        service=names.service, package=names.package, title=names.title, **extra
    )


def generate(
    name: str, directory: Path, *, image: str | None = None, wheels: Path | None = None
) -> list[Path]:
    """Write the service ``name`` into ``directory/name``; return the files written.

    The project: settings per environment (``config/<name>/*.yaml``), the app module, a
    first route with its tests, an Alembic setup with a first revision, a Dockerfile, a CI
    workflow, and Kubernetes manifests (a base and development/production overlays)
    rendered by saasfw.k8s.

    Args:
        name: the service name (a DNS label; its package is the name with ``_``).
        directory: where the project's directory is created.
        image: the container image the manifests name (default ``<name>:0.1.0``).
        wheels: a directory of saasfw wheels. They are copied into the project's
            ``wheels/`` and every saasfw distribution is pinned to them, never to a
            public index. None: saasfw comes from the configured index (once published).
    """
    names = _names(name)
    root = new_project_root(name, directory)
    found = local_wheels(wheels) if wheels is not None else {}
    extra = {"local_group": "", "local_sources": "", "copy_wheels": "", "local_note": ""}
    if found:
        extra["local_group"], extra["local_sources"] = _local_sources(found)
        extra["copy_wheels"] = "COPY wheels/ wheels/"
        extra["local_note"] = _LOCAL_NOTE
    written: list[Path] = []
    for wheel in found.values():
        target = root / "wheels" / wheel.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(wheel, target)
        written.append(target)
    for template in sorted(_TEMPLATES.rglob("*.tmpl")):
        relative = template.relative_to(_TEMPLATES).as_posix()[: -len(".tmpl")]
        relative = relative.replace("__package__", names.package).replace(
            "__service__", names.service
        )
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_render(template.read_text("utf-8"), names, extra), encoding="utf-8")
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
