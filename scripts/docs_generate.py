"""Generate the checkable sections of docs/architecture.md from the code.

Each section is asked of the code itself, never copied into this file:

- ``rules``: the production rules a composed service is checked against, by name, with
  where they are fatal and what they check (``saasfw.app.production_rules()``);
- ``layers``: the settings layers, lowest first. The order is *measured*: every layer sets
  the same setting, and ``saasfw.config.resolve_settings`` is asked which one wins, again
  and again with the winner taken away. A layer this file does not know, or one that never
  wins, fails the build;
- ``middleware``: the factory's one middleware order (``MIDDLEWARE_ORDER``) and the ASGI
  classes a development app built by ``create_app`` really holds, outermost first; each
  class must sit in its slot's place, or the build fails;
- ``dependencies``: the distributions, what each declares in its ``pyproject.toml`` and
  what its sources import (read with ``scripts/check_dependency_rule.py``'s import walk), as
  a Mermaid diagram (plain text where Mermaid is not rendered) and a table.

Usage: ``python scripts/docs_generate.py [--out FILE]`` writes every section as one JSON
object (``{"rules": "<markdown>", ...}``); ``scripts/docs_hooks.py`` runs it at docs build,
in a process of its own, so building an app never touches the docs build's logging.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# What each middleware slot does; a slot of MIDDLEWARE_ORDER missing here fails the build.
SLOT_PROSE = {
    "health": "health probes (`saasfw.k8s`): `/health/*` is answered here, before anything "
    "below runs, so a probe is never authenticated, rate limited, logged or audited",
    "observability": "observability (`saasfw.observability`): correlation id, one server "
    "span, RED metrics by route template, the access log",
    "problems": "unhandled errors: an exception no handler took becomes a 500 problem "
    "carrying the correlation id, never a traceback (inside observability, so it is "
    "counted, traced and logged)",
    "security": "one security layer (`saasfw.security.SecurityMiddleware`): security "
    "headers and CORS, request limits (413 for bodies, 431 for headers), the global rate "
    "limit (429 with `Retry-After`), then the security context (each request starts "
    "without a principal and leaves none behind)",
    "rate_limit": "the rate limiter for per-route `RateLimit(...)` dependencies (app "
    "state, no ASGI layer of its own: the global limit is inside the security layer)",
    "authentication": "the authenticator behind `require(...)`, its OpenAPI security "
    "schemes and its problem handlers (no ASGI layer of its own: the security context is "
    "inside the security layer)",
    "audit": "audit of every state-changing request (method, route template, status, "
    "actor), inside the security context so the actor is the verified principal",
}

# Slots whose prose above says they add no ASGI layer: a class found there fails the build.
NO_LAYER = frozenset({"rate_limit", "authentication"})

# The slot each ASGI class a composed app holds belongs to.
CLASS_SLOT = {
    "saasfw.k8s.HealthProbeMiddleware": "health",
    "saasfw.observability.ObservabilityMiddleware": "observability",
    "saasfw.app.UnhandledErrorMiddleware": "problems",
    "saasfw.security.SecurityMiddleware": "security",
    "saasfw.security.SecurityContextMiddleware": "authentication",
    "saasfw.security.RateLimitMiddleware": "rate_limit",
    "saasfw.audit.AuditMiddleware": "audit",
    "saasfw.messaging.MessagingMiddleware": "messaging",
}

# The settings layers, by the key the probe below gives each: (how to set it, what it is).
LAYERS = {
    "default": ("the model's defaults", "each field's default"),
    "base": ("`config/base.yaml`", "every service of the configuration directory"),
    "service_base": ("`config/<service>/base.yaml`", "this service, every environment"),
    "env": ("`config/<env>.yaml`", "every service, this environment"),
    "service_env": ("`config/<service>/<env>.yaml`", "this service in this environment"),
    "dotenv": ("`.env` (`SAASFW_*` lines)", "a local file, or `$SAASFW_ENV_FILE`"),
    "environ": ("`SAASFW_<SECTION>__<FIELD>` environment variables", "the process"),
    "secrets_dir": (
        "a secrets directory (`$SAASFW_SECRETS_DIR`)",
        "one file per setting, named like the variable (a Kubernetes Secret volume)",
    ),
    "pointer": (
        "`SAASFW_<SECTION>__<FIELD>_FILE` secret files",
        "a variable naming the file that holds the value",
    ),
}


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def rules_section() -> str:
    """The production rules of ``saasfw.app.production_rules()``, in registry order."""
    from saasfw.app import production_rules

    rows = []
    for rule in production_rules():
        fatal = ", ".join(sorted(rule.fatal_in)) if rule.fatal_in else "nowhere (a warning)"
        rows.append((f"`{rule.name}`", fatal, rule.description))
    return _table(("rule", "fatal in", "checks"), rows)


# -- settings layers ---------------------------------------------------------------------


def _write_layers(root: Path, present: set[str]) -> dict[str, Any]:
    """Set ``name`` in each layer of ``present`` to that layer's key; the loader's arguments."""
    config = root / "config"
    (config / "svc").mkdir(parents=True, exist_ok=True)
    for stale in [*config.glob("*.yaml"), *(config / "svc").glob("*.yaml")]:
        stale.unlink()
    files = {
        "base": config / "base.yaml",
        "service_base": config / "svc" / "base.yaml",
        "env": config / "development.yaml",
        "service_env": config / "svc" / "development.yaml",
    }
    for key, path in files.items():
        if key in present:
            path.write_text(f"name: {key}\n", "utf-8")
    dotenv = root / "dotenv"
    dotenv.write_text("SAASFW_NAME=dotenv\n" if "dotenv" in present else "", "utf-8")
    secrets = root / "secrets"
    secrets.mkdir(exist_ok=True)
    for stale in secrets.iterdir():
        stale.unlink()
    if "secrets_dir" in present:
        (secrets / "SAASFW_NAME").write_text("secrets_dir\n", "utf-8")
    pointer = root / "pointer"
    pointer.write_text("pointer\n", "utf-8")
    environ = {"SAASFW_NAME": "environ"} if "environ" in present else {}
    if "pointer" in present:
        environ["SAASFW_NAME_FILE"] = str(pointer)
    return {
        "config_dir": config,
        "env_file": dotenv,
        "secrets_dir": secrets,
        "environ": environ,
        "env": "development",
    }


def measured_layers() -> list[str]:
    """The layer keys, lowest first, as ``saasfw.config.resolve_settings`` ranks them."""
    from pydantic import BaseModel

    from saasfw.config import resolve_settings

    class Probe(BaseModel):
        name: str = "default"

    present = set(LAYERS)
    highest_first: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        while present:
            arguments = _write_layers(Path(scratch), present)
            won = resolve_settings(Probe, service="svc", **arguments).settings.name
            if won not in present:
                raise RuntimeError(f"layer {won!r} won although it was taken away")
            highest_first.append(won)
            present.discard(won)
    return list(reversed(highest_first))


def layers_section() -> str:
    """The settings layers, lowest first, numbered as the loader applies them."""
    lines = []
    for number, key in enumerate(measured_layers(), start=1):
        how, what = LAYERS[key]
        lines.append(f"{number}. {how}: {what};")
    lines[-1] = lines[-1].rstrip(";") + "."
    return "\n".join(lines)


# -- middleware ----------------------------------------------------------------------------


def _public_name(cls: Any) -> str:
    """``saasfw.<package>.<Name>`` when the package exports the class, else its module path."""
    name = str(getattr(cls, "__name__", cls))
    module_name = str(getattr(cls, "__module__", ""))
    package = ".".join(module_name.split(".")[:2])
    module = sys.modules.get(package)
    if module is not None and getattr(module, name, None) is cls:
        return f"{package}.{name}"
    if name == "UnhandledErrorMiddleware":
        return "saasfw.app.UnhandledErrorMiddleware"  # the umbrella keeps it private
    return f"{module_name}.{name}"


def built_middleware() -> list[tuple[str, str]]:
    """``(class, slot)`` for each ASGI middleware of a development app, outermost first."""
    from saasfw.app import ServiceSettings, create_app

    with tempfile.TemporaryDirectory() as data:
        settings = ServiceSettings(service="docs", env="development", data_dir=Path(data))
        app = create_app(settings)
        # Starlette inserts each added middleware first: the list is outermost first.
        names = [_public_name(entry.cls) for entry in app.user_middleware]
    unknown = [name for name in names if name not in CLASS_SLOT]
    if unknown:
        raise RuntimeError(f"middleware with no slot in docs_generate.CLASS_SLOT: {unknown}")
    return [(name, CLASS_SLOT[name]) for name in names]


def middleware_section() -> str:
    """The slots of ``MIDDLEWARE_ORDER`` with the classes a development app holds in each."""
    from saasfw.app._factory import MIDDLEWARE_ORDER

    missing = [slot for slot in MIDDLEWARE_ORDER if slot not in SLOT_PROSE]
    if missing:
        raise RuntimeError(f"middleware slots with no prose in docs_generate.SLOT_PROSE: {missing}")
    built = built_middleware()
    places = [MIDDLEWARE_ORDER.index(slot) for _, slot in built]
    if places != sorted(places):
        raise RuntimeError(f"the built app's middleware is not in MIDDLEWARE_ORDER: {built}")
    layered = [name for name, slot in built if slot in NO_LAYER]
    if layered:
        raise RuntimeError(f"SLOT_PROSE says these slots add no ASGI layer, yet: {layered}")
    lines = []
    for number, slot in enumerate(MIDDLEWARE_ORDER, start=1):
        classes = [f"`{name}`" for name, where in built if where == slot]
        held = "; ASGI: " + ", ".join(classes) if classes else ""
        lines.append(f"{number}. `{slot}`: {SLOT_PROSE[slot]}{held};")
    lines.append(
        f"{len(MIDDLEWARE_ORDER) + 1}. your routes, with `require(...)` (one FastAPI "
        "dependency, no sub-dependencies), per-route `RateLimit(...)` and the DI providers."
    )
    return "\n".join(lines)


# -- package dependencies ------------------------------------------------------------------


def _dependency_rule() -> Any:
    path = ROOT / "scripts" / "check_dependency_rule.py"
    spec = importlib.util.spec_from_file_location("check_dependency_rule", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _requirement_name(requirement: str) -> str:
    name = requirement.split(";", 1)[0]
    for stop in "[<>=!~ ":
        name = name.split(stop, 1)[0]
    return name.strip().lower()


def distributions() -> list[dict[str, Any]]:
    """Each workspace distribution: name, module, declared and imported saasfw siblings."""
    imports_of: Callable[[ast.AST], Iterator[tuple[int, str]]] = (
        _dependency_rule()._imported_modules
    )
    found = []
    for pyproject in sorted((ROOT / "packages").glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text("utf-8"))["project"]
        name = project["name"]
        module = "saasfw.app" if name == "saasfw" else "saasfw." + name.removeprefix("saasfw-")
        declared = {_requirement_name(r) for r in project.get("dependencies", ())}
        imported: set[str] = set()
        for source in (pyproject.parent / "src").rglob("*.py"):
            tree = ast.parse(source.read_bytes(), filename=str(source))
            for _, target in imports_of(tree):
                parts = target.split(".")
                if len(parts) >= 2 and parts[0] == "saasfw" and f"saasfw.{parts[1]}" != module:
                    imported.add("saasfw" if parts[1] == "app" else f"saasfw-{parts[1]}")
        found.append(
            {
                "name": name,
                "module": module,
                "declared": sorted(d for d in declared if d.startswith("saasfw")),
                "imported": sorted(imported),
            }
        )
    return found


def _node(name: str) -> str:
    return "app" if name == "saasfw" else name.removeprefix("saasfw-")


def dependencies_section() -> str:
    """A Mermaid graph of the declared dependencies, then a table of declared vs imported."""
    dists = distributions()
    lines = ["```mermaid", "graph TD"]
    for dist in dists:
        lines.append(f'    {_node(dist["name"])}["{dist["name"]}<br/>{dist["module"]}"]')
    for dist in dists:
        for target in dist["declared"]:
            lines.append(f"    {_node(dist['name'])} --> {_node(target)}")
    lines.append("```")
    rows = [
        (
            f"`{dist['name']}`",
            f"`{dist['module']}`",
            ", ".join(dist["declared"]) or "(none)",
            ", ".join(dist["imported"]) or "(none)",
        )
        for dist in dists
    ]
    table = _table(("distribution", "module", "declares", "its sources import"), rows)
    return "\n".join(lines) + "\n\n" + table


SECTIONS: dict[str, Callable[[], str]] = {
    "rules": rules_section,
    "layers": layers_section,
    "middleware": middleware_section,
    "dependencies": dependencies_section,
}


def main(argv: list[str]) -> int:
    """Write every section as JSON to ``--out PATH`` (default: standard output)."""
    # Only the code speaks: no SAASFW_* variable of the caller's shell may leak in.
    for name in [n for n in os.environ if n.upper().startswith("SAASFW_")]:
        del os.environ[name]
    sections = {name: make() for name, make in SECTIONS.items()}
    if len(argv) == 3 and argv[1] == "--out":
        # A file, so a log line a built app prints on stdout cannot corrupt the JSON.
        Path(argv[2]).write_text(json.dumps(sections), "utf-8")
    else:
        json.dump(sections, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
