"""``saasfw <concern> ...``: hand the rest of the command line to a concern package's own CLI.

Each concern package keeps its console script (``saasfw-db``, ``saasfw-config``, ...); the
umbrella finds that script's entry point in the installed metadata and calls the module's
``main(argv)`` with everything after the subcommand, so ``saasfw db upgrade --help`` is
exactly ``saasfw-db upgrade --help``. Nothing here imports a concern package before it is
needed, so ``saasfw --version`` and the other subcommands work with one missing.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, entry_points, requires, version

__all__ = ["CONCERNS", "Concern", "dispatch", "install_hint", "installed_versions"]

UMBRELLA = "saasfw"


@dataclass(frozen=True, slots=True)
class Concern:
    """One concern package's command line, as ``saasfw <command>`` shows it."""

    command: str  # saasfw <command>
    distribution: str  # the distribution that ships the console script
    script: str  # the console script's name
    summary: str  # one line for ``saasfw --help``
    example: str  # one runnable example for ``saasfw --help``


CONCERNS: tuple[Concern, ...] = (
    Concern(
        "config",
        "saasfw-config",
        "saasfw-config",
        "show or check a service's layered settings (masked; production rules)",
        "saasfw config check --service orders --env production",
    ),
    Concern(
        "db",
        "saasfw-db",
        "saasfw-db",
        "run a service's Alembic migrations with its settings",
        "saasfw db --service orders --versions src/orders/migrations/versions upgrade head",
    ),
    Concern(
        "audit",
        "saasfw-audit",
        "saasfw-audit",
        "verify an audit log's hash chain and checkpoints; generate keys",
        "saasfw audit verify var/orders/audit/audit.jsonl --chain-key-file chain.key",
    ),
    Concern(
        "k8s",
        "saasfw-k8s",
        "saasfw-k8s",
        "render and validate Kubernetes manifests",
        "saasfw k8s render --service orders --env production --image orders:1.0 --out deploy/k8s",
    ),
    Concern(
        "messaging",
        "saasfw-messaging",
        "saasfw-messaging",
        "events between services (RabbitMQ, NATS): its tooling",
        "saasfw messaging --version",
    ),
)

_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?([^;]*)(?:;(.*))?$")
_EXTRA = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _umbrella_requirements() -> list[tuple[str, str, str | None]]:
    """(distribution, version range, extra or None) for each saasfw requirement of saasfw."""
    try:
        declared = requires(UMBRELLA) or []
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return []
    found: list[tuple[str, str, str | None]] = []
    for line in declared:
        match = _REQUIREMENT.match(line)
        if match is None:
            continue
        name, _, spec, marker = match.groups()
        extra = _EXTRA.search(marker or "")
        found.append((_normal(name), spec.strip(), extra.group(1) if extra else None))
    return found


def install_hint(distribution: str) -> str:
    """What to install to get ``distribution``: the umbrella's extra, or the package itself."""
    wanted = _normal(distribution)
    plain = [(spec, extra) for name, spec, extra in _umbrella_requirements() if name == wanted]
    extras = sorted({extra for _, extra in plain if extra is not None and extra != "all"})
    if any(extra is None for _, extra in plain) or not extras:
        spec = next((spec for spec, extra in plain if extra is None and spec), "")
        return f'pip install "{distribution}{spec}" (or reinstall saasfw, which depends on it)'
    return f'pip install "saasfw[{extras[0]}]"'


def _version(distribution: str) -> str | None:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def installed_versions() -> list[tuple[str, str | None]]:
    """The umbrella, then every saasfw distribution it depends on, with its version or None."""
    names = sorted({name for name, _, _ in _umbrella_requirements() if name.startswith("saasfw")})
    for concern in CONCERNS:
        if concern.distribution not in names:
            names.append(concern.distribution)
    return [(UMBRELLA, _version(UMBRELLA)), *((name, _version(name)) for name in sorted(names))]


def _script_main(concern: Concern) -> Callable[[Sequence[str]], int] | None:
    """The concern's ``main(argv)``, found through its console script's entry point."""
    if _version(concern.distribution) is None:
        return None
    for point in entry_points(group="console_scripts", name=concern.script):
        dist = point.dist
        if dist is not None and _normal(dist.name) != _normal(concern.distribution):
            continue  # another distribution's script of the same name: never run it
        module = importlib.import_module(point.module)
        main = getattr(module, "main", None)
        if callable(main):
            return main  # type: ignore[no-any-return]
    return None


def dispatch(concern: Concern, argv: Sequence[str]) -> int:
    """Run ``concern``'s CLI with ``argv``; 2 with an install hint when it is not installed."""
    main = _script_main(concern)
    if main is None:
        print(
            f"saasfw {concern.command}: needs {concern.distribution}, which is not installed; "
            f"install it: {install_hint(concern.distribution)}",
            file=sys.stderr,
        )
        return 2
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse's --help and usage errors
        code = exc.code
        if code is None or isinstance(code, int):
            return code or 0
        print(code, file=sys.stderr)
        return 1
    return int(status or 0)
